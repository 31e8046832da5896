"""Fuzz over the agent's state documents (issue 13): arbitrary bytes, text and JSON (fresh, or a
real document with one part replaced) written into the SQLite store's values and rows and into
the verified-commit ids (their table, and an earlier version's file), then the agent starts, runs a pass, and ``gitedge status`` reads
the result. Each must end in an error of the tree (``gitedge/errors.py``) or a clean recovery,
never anything else, and a corrupt last verified commit is never silently replaced.

The state is a real one: a site that imported a signed commits-only bundle (real ``git``, keys
made by ssh-keygen), with the bundle still in its ``bundleDir`` so each pass reads the inbox.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitedge.adapters.trust.verifiedcommits import legacy_file
from gitedge.agent.reconcile import Agent, PrintCluster
from gitedge.agent.steps.verifyrange import load_bootstrap
from gitedge.cli.status import cmd_status
from gitedge.core.config import AgentConfig, load_site_file
from gitedge.errors import GitEdgeError
from tests.agentkit import START, FleetRepo
from tests.sigtools import make_ssh_key
from tests.test_bundle import write_site

NOW = datetime.fromtimestamp(START, UTC) + timedelta(days=3)
KEYS = ["last_verified", "schema_version", "doc:status", "doc:conditions", "doc:printed",
        "doc:bundles", "doc:report", "doc:desired"]  # fmt: skip
NAMES = ["commit", "committedAt", "verifiedAt", "policySource", "policyDigest", "files", "seen",
         "stamp", "digest", "type", "status", "reason", "message", "lastTransitionTime",
         "lastVerified", "applied", "mirror", "images", "windows", "conditions", "desired",
         "k3s", "os", "path", "version", "open", "name", "nextOpen", "closesAt", "running",
         "fingerprint", "pushedAt", "doneAt", "startedAt", "component", "step", "image"]  # fmt: skip
TEXTS = st.sampled_from([
    "2026-11-23T01:00:00+00:00", "2026-11-23T01:00:00", "sha256:" + "1" * 64, "a" * 40,
    "registry.example/edge/os:1.0", "k3s", "os", "True", "",
]) | st.text(max_size=20)  # fmt: skip
INTS = st.integers(-(2**63), 2**63 - 1)  # what SQLite can hold
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXTS
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=15,
)
CELL = TEXTS | st.binary(max_size=24) | INTS | st.floats() | st.none()


@dataclass
class Base:
    """A site's state after one real import, kept as the template every example copies."""

    state: Path
    config: bytes
    docs: dict[str, Any]
    bundle_dir: Path


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Base]:
    tmp = tmp_path_factory.mktemp("fuzz")
    key = make_ssh_key(tmp / "keys", "ed25519", comment="release@fleet.example")
    fleet = FleetRepo(tmp / "fleet.git", key)
    fleet.commit({"README.md": "no target\n"}, at=START)
    inbox = tmp / "inbox"
    inbox.mkdir()
    from gitedge.agent.bundles.create import create_bundle

    create_bundle(repo=str(fleet.path), out=inbox / "b.tar", now=NOW, all_targets=True)
    cfg = write_site(tmp / "site", git_url="git://127.0.0.1:9/absent.git", key=key,
                     k3s="v1.27.16+k3s1", bundle_dir=inbox)  # fmt: skip
    config = _config(cfg.read_bytes())
    agent = Agent(config, cluster=PrintCluster(config=config, out=lambda _: None))
    try:
        p = agent.reconcile(now=NOW)
        assert p.tip == str(fleet.head), p.errors  # imported from the inbox
        agent.verified.add([p.tip])
    finally:
        agent.close()
    state = tmp / "site" / "state"
    db = sqlite3.connect(state / "state.sqlite3")
    docs = {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM meta")}
    db.close()
    assert {"last_verified", "doc:status", "doc:bundles", "doc:conditions"} <= set(docs)
    yield Base(state, cfg.read_bytes(), docs, inbox)


def _config(data: bytes, state_dir: Path | None = None) -> AgentConfig:
    doc = yaml.safe_load(data)
    if state_dir is not None:
        doc["state"]["dir"] = str(state_dir)
    site = load_site_file(yaml.safe_dump(doc).encode(), path="agent.yaml")
    assert isinstance(site, AgentConfig)
    return site


def mutate(data: st.DataObject, value: Any) -> Any:
    """``value`` with one part (perhaps all of it) replaced by drawn JSON."""
    if isinstance(value, dict) and value and data.draw(st.booleans()):
        k = data.draw(st.sampled_from(sorted(value)))
        return {**value, k: mutate(data, value[k])}
    if isinstance(value, list) and value and data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(value) - 1))
        return [*value[:i], mutate(data, value[i]), *value[i + 1 :]]
    return data.draw(JSON)


def raw_value(data: st.DataObject, base: Base, key: str) -> Any:
    kind = data.draw(st.sampled_from(["mutated", "json", "text", "bytes", "int"]))
    if kind == "mutated" and key in base.docs:
        return json.dumps(mutate(data, base.docs[key]))
    if kind == "json":
        return json.dumps(data.draw(JSON))
    if kind == "text":
        return data.draw(st.text(max_size=60))
    if kind == "bytes":
        return data.draw(st.binary(max_size=60))
    return data.draw(INTS)


def meta_value(state: Path, key: str) -> Any:
    db = sqlite3.connect(state / "state.sqlite3")
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    db.close()
    return None if row is None else row[0]


@pytest.mark.timeout(600)  # 120 passes take ~25 s alone; a loaded machine is slower
@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # fmt: skip
@given(data=st.data())
def test_corrupt_state_is_an_error_of_the_tree_or_a_clean_recovery(
    base: Base, data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory(prefix="gitedge-fuzz-") as tmp_name:
        state = Path(tmp_name) / "state"
        shutil.copytree(base.state, state)
        db = sqlite3.connect(state / "state.sqlite3")
        written: dict[str, Any] = {}
        for key in data.draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=3)):
            written[key] = raw_value(data, base, key)
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                       (key, written[key]))  # fmt: skip
        for table, n in (("mirrored", 5), ("applied", 4)):
            for row in data.draw(st.lists(st.tuples(*[CELL] * n), max_size=2)):
                with contextlib.suppress(sqlite3.IntegrityError):  # NOT NULL columns
                    db.execute(f"INSERT OR REPLACE INTO {table} VALUES ({','.join('?' * n)})", row)
        # the verified-commit ids: rows of their table, and an earlier version's file
        for row in data.draw(st.lists(st.tuples(CELL, CELL, CELL), max_size=2)):
            with contextlib.suppress(sqlite3.IntegrityError):
                db.execute("INSERT OR REPLACE INTO verified VALUES (?, ?, ?)", row)
        db.commit()
        db.close()
        boot = load_bootstrap(yaml.safe_load(base.config)["trust"]["bootstrap"])
        cache = legacy_file(state, name=boot.digest.removeprefix("sha256:")[:16])
        if data.draw(st.booleans()):
            if data.draw(st.booleans()):
                cache.mkdir()
            else:
                cache.write_bytes(data.draw(st.binary(max_size=200)))
        config = _config(base.config, state)
        stored = meta_value(state, "last_verified")  # as SQLite keeps it (TEXT affinity)

        try:
            agent = Agent(config, cluster=PrintCluster(config=config, out=lambda _: None))
        except GitEdgeError:
            pass
        else:
            try:
                agent.reconcile(now=NOW)
            except GitEdgeError:
                pass
            finally:
                agent.close()
        if "last_verified" in written:  # refused or kept: never replaced behind a person's back
            assert meta_value(state, "last_verified") == stored

        cfg_file = Path(tmp_name) / "agent.yaml"
        doc = yaml.safe_load(base.config)
        doc["state"]["dir"] = str(state)
        cfg_file.write_text(yaml.safe_dump(doc))
        for output in ("text", "json"):
            out = io.StringIO()
            args = argparse.Namespace(config=str(cfg_file), output=output)
            err = io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), contextlib.suppress(GitEdgeError):  # fmt: skip
                cmd_status(args)
