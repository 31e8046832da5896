"""SUC's Plan CRD as a validator: every Plan written to the Kubernetes API emulator is checked
against the CRD's ``openAPIV3Schema`` (tests/data/upgrade.cattle.io_plans.yaml, copied from
rancher/system-upgrade-controller at :data:`SUC_COMMIT`, header of that file).

A CRD schema is *structural*: a real API server silently prunes fields the schema does not
declare (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#field-pruning).
A Plan field gitedge writes that SUC's schema lacks would therefore vanish without an error on a
real cluster; here it is an error: every object schema with ``properties`` (and neither
``additionalProperties`` nor ``x-kubernetes-preserve-unknown-fields``) is closed with
``additionalProperties: false``. ``nullable: true`` admits null as OpenAPI v3 says;
``x-kubernetes-int-or-string`` fields already carry ``anyOf: [integer, string]`` in the CRD.

SUC before v0.15.0 has no ``spec.window`` (TimeWindowSpec arrived in SUC commit
:data:`WINDOW_COMMIT`, first tagged v0.15.0): :func:`prune_for_old_suc` drops it, as that
version's API server does.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

CRD_FILE = Path(__file__).resolve().parent / "data" / "upgrade.cattle.io_plans.yaml"
SUC_COMMIT = "d357e2302999662071e0467b96e94f31b5c470ba"
WINDOW_COMMIT = "938216d3fc8536f3d66fee1bf22886b9941462ff"


def _close(node: Any) -> Any:
    """The CRD schema as a JSON Schema that treats undeclared fields as errors."""
    if isinstance(node, list):
        return [_close(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _close(v) for k, v in node.items() if k != "description"}
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@cache
def _schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD_FILE.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    closed: dict[str, Any] = _close(version["schema"]["openAPIV3Schema"])
    return closed


def plan_errors(plan: Mapping[str, Any]) -> list[str]:
    """Every way ``plan`` breaks SUC's CRD schema, as ``path: message``; [] when valid."""
    validator = jsonschema.Draft7Validator(_schema())
    return sorted(
        f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in validator.iter_errors(dict(plan))
    )


def assert_valid_plan(plan: Mapping[str, Any]) -> None:
    errors = plan_errors(plan)
    name = (plan.get("metadata") or {}).get("name")
    assert not errors, f"Plan {name} breaks SUC's CRD schema: {errors}"


def prune_for_old_suc(plan: Mapping[str, Any]) -> dict[str, Any]:
    """The Plan as an API server with SUC < v0.15.0's CRD stores it: no ``spec.window``."""
    out = copy.deepcopy(dict(plan))
    (out.get("spec") or {}).pop("window", None)
    return out
