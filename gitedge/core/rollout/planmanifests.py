"""The Plan manifests a decision writes: :class:`Action` (create, update or delete one SUC Plan),
the PUT body of an update (:func:`merge_for_update`) and the comparisons that say whether a
live Plan already has the rendered spec (:func:`differs`) or must start Jobs anew
(:func:`rollout_key`, :func:`step_key`).

Pure: no I/O.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from gitedge.core.fleet.versions import K3sVersion
from gitedge.core.rollout import admission as adm
from gitedge.core.rollout.clusterstate import PlanState, get_path, str_map
from gitedge.errors import VersionError

__all__ = ["Action", "differs", "merge_for_update", "rollout_key", "step_key"]


@dataclass(frozen=True)
class Action:
    """One change to make: ``create``/``update`` carry the whole Plan (an update also the
    ``resourceVersion`` it was decided on); ``delete`` the name and the version seen."""

    verb: Literal["create", "update", "delete"]
    name: str
    namespace: str
    component: str
    reason: str
    manifest: Mapping[str, Any] | None = None
    resource_version: str | None = None


State = Literal["untargeted", "up-to-date", "running", "started", "waiting"]


def _contains(live: object, want: object) -> bool:
    """``want`` is contained in ``live``: every key of a mapping (recursively), lists and
    scalars equal. Fields the API server defaults do not count as differences."""
    if isinstance(want, Mapping):
        return isinstance(live, Mapping) and all(
            k in live and _contains(live[k], v) for k, v in want.items()
        )
    if isinstance(want, list | tuple):
        return (
            isinstance(live, list | tuple)
            and len(live) == len(want)
            and all(_contains(a, b) for a, b in zip(live, want, strict=True))
        )
    return live == want


def differs(have: PlanState | None, want: Mapping[str, Any]) -> bool:
    if have is None:
        return True
    meta = want.get("metadata", {})
    return not (
        _contains(have.labels, meta.get("labels", {}))
        and _contains(have.annotations, meta.get("annotations", {}))
        and _contains(_fleet_part(have.spec), _fleet_part(want.get("spec", {})))
    )


def _fleet_part(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A Plan spec without what admission sets per batch (its node entry and SUC window)."""
    out = dict(spec)
    out.pop("window", None)
    if "nodeSelector" in out:
        out["nodeSelector"] = adm.base_selector(spec)
    return out


def merge_for_update(desired: Mapping[str, Any], live: Mapping[str, Any]) -> dict[str, Any]:
    """The object to PUT: ``desired`` with the live object's other labels and annotations kept
    and its ``resourceVersion`` (a write on a stale version is a 409, never a lost update)."""
    out = copy.deepcopy(dict(desired))
    meta = out.setdefault("metadata", {})
    meta["labels"] = {**str_map(get_path(live, "metadata", "labels")), **meta.get("labels", {})}
    meta["annotations"] = {
        **str_map(get_path(live, "metadata", "annotations")),
        **meta.get("annotations", {}),
    }
    version = get_path(live, "metadata", "resourceVersion")
    if version:
        meta["resourceVersion"] = str(version)
    return out


def step_key(component: str, step: str | None) -> str | None:
    """What makes two steps the same step: the K3s minor, or the OS image."""
    if step is not None and component == "k3s":
        try:
            return K3sVersion.parse(step).minor_line
        except VersionError:
            return step
    return step


def rollout_key(spec: Mapping[str, Any]) -> tuple[object, object]:
    """What makes SUC start Jobs anew: the Plan's version and its upgrade image."""
    upgrade = spec.get("upgrade")
    return spec.get("version"), upgrade.get("image") if isinstance(upgrade, Mapping) else None
