"""Attacks on the agent-too-old rule (core/fleet/compat.py, DESIGN.md section 6): a commit is "for a
newer agent" only when every problem is a kind or field a newer gitedge could define. A commit
that is merely malformed (a document without a kind, a kind that is a number, a list or empty, a
field name no model could spell) is an invalid repo: treating it as too-old would make the
agent keep applying the last commit it understood and tell the operator to upgrade it.

Found by atk16: ``kind: [a]`` (an unhashable YAML value) crashed the loader with a TypeError
(a traceback out of ``gitedge validate``, a crashed plan step in the agent), and a document
without ``kind`` (``unknown kind None``) counted as too-old."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitedge.core.fleet.compat import newer_than_agent
from gitedge.core.fleet.model import FLEET_KINDS, NOT_IN_FLEET, load_fleet
from gitedge.errors import InvalidFleetRepo
from tests.agentkit import fleet_files

HEAD = "apiVersion: gitedge.io/v1alpha1\n"
DOC = "metadata: {name: x}\nspec: {}\n"


def _fleet(extra: dict[str, str]) -> dict[str, bytes]:
    files = fleet_files(registry="127.0.0.1:5000", releases=["v1.27.16+k3s1"],
                        k3s="v1.27.16+k3s1", os_image="127.0.0.1:5000/edge/os:1.0")  # fmt: skip
    files.update(extra)
    return {k: v.encode() for k, v in files.items()}


def _problems(extra: dict[str, str]) -> InvalidFleetRepo:
    with pytest.raises(InvalidFleetRepo) as e:
        load_fleet(_fleet(extra))
    return e.value


@pytest.mark.parametrize("kind", ["[a]", "{a: 1}"])
def test_an_unhashable_kind_is_a_problem_not_a_crash(kind: str, tmp_path: Path) -> None:
    e = _problems({"extra.yaml": f"{HEAD}kind: {kind}\n{DOC}"})
    assert any("unknown kind" in p.message for p in e.problems)
    assert not newer_than_agent(e.problems)  # a list is no kind a newer agent defines
    for name, data in _fleet({"extra.yaml": f"{HEAD}kind: {kind}\n{DOC}"}).items():
        (tmp_path / name).write_bytes(data)
    r = subprocess.run([sys.executable, "-m", "gitedge", "validate", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stdout + r.stderr
    assert "extra.yaml" in r.stdout and "unknown kind" in r.stdout


@pytest.mark.parametrize("kind", ["", "kind: 7\n", "kind: ''\n", "kind: upgradeTarget\n",
                                  "kind: 'Upgrade Target'\n", "kind: null\n"])  # fmt: skip
def test_a_document_without_a_proper_kind_is_invalid_not_too_old(kind: str) -> None:
    e = _problems({"extra.yaml": f"{HEAD}{kind}{DOC}"})
    assert not newer_than_agent(e.problems), [p.message for p in e.problems]


def test_a_new_kind_or_camel_case_field_is_too_old_a_field_no_model_spells_is_not() -> None:
    assert newer_than_agent(_problems({"extra.yaml": f"{HEAD}kind: OsCatalog\n{DOC}"}).problems)
    files = _fleet({})
    targets = files["targets.yaml"].decode()
    assert "upgrader: kairos}" in targets
    for field, newer in [("rollbackOnFailure: true", True), ("Image: x", False),
                         ("'image ': x", False), ("1: x", False), ("roll-back: x", False)]:  # fmt: skip
        changed = dict(files)
        changed["targets.yaml"] = targets.replace("upgrader: kairos}",
                                                  f"upgrader: kairos, {field}}}").encode()  # fmt: skip
        with pytest.raises(InvalidFleetRepo) as e:
            load_fleet(changed)
        assert newer_than_agent(e.value.problems) is newer, (field, e.value.problems)


_yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=_yaml_values)
def test_any_kind_value_is_a_problem_and_only_a_camel_case_name_is_newer(kind: object) -> None:
    """Whatever YAML value ``kind`` holds, loading says so as a problem (it raised TypeError for
    a list or a map), and only a CamelCase name counts as a kind of a newer agent."""
    doc = {"apiVersion": "gitedge.io/v1alpha1", "kind": kind, "metadata": {"name": "x"},
           "spec": {}}  # fmt: skip
    try:
        load_fleet(_fleet({"extra.yaml": yaml.safe_dump(doc)}))
    except InvalidFleetRepo as e:
        known = {*FLEET_KINDS, *NOT_IN_FLEET}
        newer = (
            isinstance(kind, str)
            and kind not in known
            and re.fullmatch(r"[A-Z][A-Za-z0-9]*", kind) is not None
        )
        assert newer_than_agent(e.problems) is newer, (kind, e.problems)
    else:
        assert kind in FLEET_KINDS
