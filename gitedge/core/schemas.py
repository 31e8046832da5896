"""JSON Schemas of every fleet-repo kind and of the site files, generated from the models.

``gitedge schema --write schemas/`` writes them; a test fails when the committed files drift.
Editors' YAML language servers use them through a modeline in a file, e.g.
``# yaml-language-server: $schema=../schemas/upgradetarget.schema.json``, or ``fleet.schema.json``
(any fleet kind) mapped to a glob in the editor's settings.
"""

from __future__ import annotations

import json
from typing import Any

from gitedge.core.config import AgentConfig, Cluster
from gitedge.core.fleet.base import Model
from gitedge.core.fleet.model import FLEET_KINDS

DRAFT = "https://json-schema.org/draft/2020-12/schema"


def _schema(model: type[Model], *, title: str) -> dict[str, Any]:
    body = model.model_json_schema(mode="validation", by_alias=True)
    return {"$schema": DRAFT, **body, "title": title}


def all_schemas() -> dict[str, str]:
    """``{file name: JSON text}`` for every kind, the site files, and the any-fleet-kind union."""
    models: dict[str, type[Model]] = {**FLEET_KINDS, "Cluster": Cluster, "AgentConfig": AgentConfig}
    out: dict[str, str] = {}
    for title, model in models.items():
        out[f"{title.lower()}.schema.json"] = _dump(_schema(model, title=title))
    union = {
        "$schema": DRAFT,
        "title": "gitedge fleet document",
        "description": "Any document of a gitedge fleet repo, chosen by its kind.",
        "oneOf": [{"$ref": f"{kind.lower()}.schema.json"} for kind in FLEET_KINDS],
    }
    out["fleet.schema.json"] = _dump(union)
    return out


def _dump(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
