"""The JSON Schemas in schemas/: generated from the models (a test fails when they drift), and
usable as editors use them: every example file validates against the schema of its kind, and a
wrong document does not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from gitedge.cli import main
from gitedge.core.schemas import all_schemas

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "schemas"


def test_committed_schemas_match_the_models(tmp_path: Path) -> None:
    assert main(["schema", "--write", str(tmp_path)]) == 0
    fresh = {p.name: p.read_text() for p in tmp_path.iterdir()}
    committed = {p.name: p.read_text() for p in SCHEMAS.glob("*.json")}
    assert fresh == committed, (
        "schemas/ drifted from the models: run `gitedge schema --write schemas/`"
    )
    assert set(fresh) == set(all_schemas())


def _registry() -> Registry:
    resources = [
        (p.name, Resource.from_contents(json.loads(p.read_text()))) for p in SCHEMAS.glob("*.json")
    ]
    return Registry().with_resources(resources)


def _validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=_registry())


EXAMPLES = sorted(  # site-overlay/ holds Kubernetes manifests: tests/test_deploy.py
    p for p in (ROOT / "examples").rglob("*.yaml") if "site-overlay" not in p.parts
)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_validates_against_its_schema_and_the_union(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        doc = json.loads(json.dumps(doc, default=str))  # dates as the strings editors see
        kind = doc["kind"]
        errors = list(_validator(f"{kind.lower()}.schema.json").iter_errors(doc))
        assert not errors, [e.message for e in errors]
        if kind not in ("Cluster", "AgentConfig"):
            assert not list(_validator("fleet.schema.json").iter_errors(doc))


def test_schema_rejects_what_the_loader_rejects() -> None:
    v = _validator("upgradetarget.schema.json")
    good = {
        "apiVersion": "gitedge.io/v1alpha1",
        "kind": "UpgradeTarget",
        "metadata": {"name": "t"},
        "spec": {"clusterSelector": {}, "k3s": {"version": "v1.30.6+k3s1"}},
    }
    assert not list(v.iter_errors(good))
    assert list(v.iter_errors({**good, "spec": {**good["spec"], "windw": "x"}}))  # unknown field
    assert list(v.iter_errors({**good, "spec": {**good["spec"], "priority": "high"}}))
    assert list(v.iter_errors({**good, "kind": "Rollout"}))
