"""A corrupt or busy state (issue 13): each case is an error of the tree naming the file and
saying how to recover, or a clean recovery with a warning where the value is only a cache.

- the last verified commit not JSON, or not a commit: StateError, never a silent reset (trust and
  rollback protection start from it), from ``State``, the agent, ``gitedge run --once`` and
  ``gitedge status``-free paths alike; the record is left as it was;
- a bad ``mirrored`` or ``applied`` row: dropped with a warning, the good rows kept;
- a corrupt document: read as absent with a warning (every pass writes it again); a status
  document of the wrong shape: ``gitedge status`` says so;
- the verified-commit cache not ASCII, not commit ids, or a directory: ignored with a warning,
  its commits verified again (real ``git`` history signed with an ssh-keygen key);
- the database locked by another process past the timeout (``bundle import`` beside a pass).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gitedge.adapters.state import LastVerified, Mirrored, State
from gitedge.adapters.trust.verifiedcommits import RULES, VerifiedCommits, legacy_file
from gitedge.agent.steps.verifyrange import load_bootstrap
from gitedge.errors import StateError
from tests.agentkit import START, FleetRepo
from tests.sigtools import allowed_signers_line, make_ssh_key
from tests.test_bundle import agent_of, write_site

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
LV = LastVerified("a" * 40, T0, T0, ".gitedge/trust.yaml@abc", "sha256:" + "0" * 64)


def gitedge(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gitedge", *args], capture_output=True, text=True, timeout=timeout
    )


def poke(state_dir: Path, sql: str, *args: object) -> None:
    """Write into the state database behind gitedge's back (a disk fault, a hand edit)."""
    db = sqlite3.connect(state_dir / "state.sqlite3")
    db.execute(sql, args)
    db.commit()
    db.close()


def meta(state_dir: Path, key: str) -> object:
    db = sqlite3.connect(state_dir / "state.sqlite3")
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    db.close()
    return None if row is None else row[0]


def a_site(tmp_path: Path) -> Path:
    key = make_ssh_key(tmp_path / "keys", "ed25519", comment="release@fleet.example")
    return write_site(tmp_path / "site", git_url="git://127.0.0.1:9/absent.git", key=key,
                      k3s="v1.27.16+k3s1")  # fmt: skip


_GOOD_TIME = "2026-11-23T01:00:00+00:00"
CORRUPT_LAST = [
    "{not json",
    json.dumps(["a" * 40]),
    "null",  # never written by gitedge: not "none yet" (found by tests/test_state_fuzz.py)
    json.dumps({"commit": "a" * 40}),
    json.dumps(
        {
            "commit": "not-a-commit",
            "committedAt": _GOOD_TIME,
            "verifiedAt": _GOOD_TIME,
            "policySource": "x",
            "policyDigest": "y",
        }
    ),
    json.dumps(
        {
            "commit": "a" * 40,
            "committedAt": "2026-11-23T01:00:00",
            "verifiedAt": "yesterday",
            "policySource": "x",
            "policyDigest": "y",
        }
    ),
]


@pytest.mark.parametrize("value", CORRUPT_LAST)
def test_a_corrupt_last_verified_commit_is_refused_not_reset(tmp_path: Path, value: str) -> None:
    s = State(tmp_path)
    s.record_verified(LV)
    s.close()
    poke(tmp_path, "UPDATE meta SET value = ? WHERE key = 'last_verified'", value)
    s = State(tmp_path)
    try:
        with pytest.raises(StateError) as e:
            s.last_verified  # noqa: B018
        text = str(e.value)
        assert str(tmp_path / "state.sqlite3") in text
        assert "rollback" in text and "DELETE FROM meta WHERE key = 'last_verified'" in text
        assert "kept" in text
    finally:
        s.close()
    assert meta(tmp_path, "last_verified") == value  # left as it was: a person decides


def test_the_agent_and_run_once_stop_on_a_corrupt_last_verified(tmp_path: Path) -> None:
    cfg = a_site(tmp_path)
    state_dir = tmp_path / "site" / "state"
    s = State(state_dir)
    s.record_verified(LV)
    s.close()
    poke(state_dir, "UPDATE meta SET value = '\"half' WHERE key = 'last_verified'")
    with pytest.raises(StateError, match="last verified commit is corrupt"):
        agent_of(cfg)
    r = gitedge("run", "--once", "--config", str(cfg))
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert "gitedge run: " in r.stderr and str(state_dir / "state.sqlite3") in r.stderr
    assert meta(state_dir, "last_verified") == '"half'


def test_bad_mirrored_and_applied_rows_are_dropped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = State(tmp_path)
    good = Mirrored("registry.example/edge/os:1.0", "sha256:" + "1" * 64,
                    "cache:5000/edge/os@sha256:" + "1" * 64, 10, T0)  # fmt: skip
    s.record_mirrored(good)
    s.record_step_started(component="k3s", step="v1.30.6+k3s1", at=T0)
    s.close()
    rows = [
        ("bad-digest:1", "md5:abc", "c", 1, T0.isoformat()),
        ("Not A Reference!", "sha256:" + "2" * 64, "c", 1, T0.isoformat()),
        ("registry.example/a:1", "sha256:" + "3" * 64, "c", "many", T0.isoformat()),
        ("registry.example/b:1", "sha256:" + "4" * 64, "c", 1, "last tuesday"),
        ("registry.example/c:1", "sha256:" + "5" * 64, b"\xff", 1, T0.isoformat()),
    ]
    for row in rows:
        poke(tmp_path, "INSERT INTO mirrored VALUES (?,?,?,?,?)", *row)
    poke(tmp_path, "INSERT INTO applied VALUES ('k3s', 'v1.29.10+k3s1', 'soon', NULL)")
    poke(tmp_path, "INSERT INTO applied VALUES ('kernel', 'v1', ?, NULL)", T0.isoformat())
    s = State(tmp_path)
    try:
        with caplog.at_level(logging.WARNING, logger="gitedge.state"):
            assert s.mirrored() == {good.source: good}
            assert s.applied() == [("k3s", "v1.30.6+k3s1", T0, None)]
        warned = [r.getMessage() for r in caplog.records]
        assert len(warned) == len(rows) + 2
        assert all(str(tmp_path / "state.sqlite3") in w and "dropped" in w for w in warned)
        caplog.clear()
        assert s.mirrored() == {good.source: good}  # the bad rows are gone: no second warning
        assert s.applied() == [("k3s", "v1.30.6+k3s1", T0, None)]
        assert caplog.records == []
    finally:
        s.close()


def test_a_corrupt_document_reads_as_absent_and_status_says_what_it_is(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = a_site(tmp_path)
    state_dir = tmp_path / "site" / "state"
    s = State(state_dir)
    s.put_doc("conditions", [])
    s.put_doc("status", {"cluster": "store-0042"})
    s.close()
    poke(state_dir, "UPDATE meta SET value = X'FF00' WHERE key = 'doc:conditions'")
    s = State(state_dir)
    try:
        with caplog.at_level(logging.WARNING, logger="gitedge.state"):
            assert s.get_doc("conditions") is None
        assert "document 'conditions' is corrupt" in caplog.text
    finally:
        s.close()
    for doc in ('{"cluster": "x", "applied": [1]}', "[1, 2]", '{"lastVerified": "abc"}'):
        poke(state_dir, "UPDATE meta SET value = ? WHERE key = 'doc:status'", doc)
        r = gitedge("status", "--config", str(cfg))
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert "gitedge status: " in r.stderr and "document 'status' is corrupt" in r.stderr
        assert "the next agent pass writes again" in r.stderr
    poke(state_dir, "UPDATE meta SET value = 'nope' WHERE key = 'doc:status'")
    r = gitedge("status", "--config", str(cfg))
    assert r.returncode == 1 and "not finished a pass yet" in r.stderr
    assert "document 'status' is corrupt" in r.stderr  # the warning names it


def _stored_ids(directory: Path, signers: Path) -> set[str]:
    name = load_bootstrap(str(signers)).digest.removeprefix("sha256:")[:16]
    state = State(directory)
    try:
        return state.verified_commits(rules=RULES, bootstrap=name)
    finally:
        state.close()


def _verify(fleet: FleetRepo, signers: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    return gitedge(
        "verify", "--repo", str(fleet.path), "--trust", str(signers), "--cache", str(cache),
        "-o", "json",
    )  # fmt: skip


def test_a_corrupt_verified_commit_cache_is_dropped_and_its_commits_verified_again(
    tmp_path: Path,
) -> None:
    """The ids live in the state's SQLite (table ``verified``); an earlier version's text file
    that is junk is ignored with a warning, its commits verified again and stored in the table."""
    key = make_ssh_key(tmp_path / "keys", "ed25519", comment="release@fleet.example")
    signers = tmp_path / "allowed_signers"
    signers.write_text(allowed_signers_line("release@fleet.example", key) + "\n")
    fleet = FleetRepo(tmp_path / "fleet.git", key)
    fleet.commit(at=START)
    tip = fleet.commit(at=START + 60)
    cache = tmp_path / "cache"
    r = _verify(fleet, signers, cache)
    assert r.returncode == 0, r.stderr
    assert not list(cache.glob("verified-*.txt"))
    assert tip in _stored_ids(cache, signers)
    name = load_bootstrap(str(signers)).digest.removeprefix("sha256:")[:16]
    junks = (b"\xff\xfe not ascii\n", b"../../etc/passwd\n", ("a" * 39 + "\n").encode())
    for n, junk in enumerate(junks):
        fresh = tmp_path / f"cache{n}"
        fresh.mkdir()
        file = legacy_file(fresh, name=name)
        file.write_bytes(junk)
        r = _verify(fleet, signers, fresh)
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        assert f"verified-commit cache {file} is unusable" in r.stderr
        assert "verified again" in r.stderr
        out = json.loads(r.stdout)
        assert out["cached"] == 0 and len(out["commits"]) == 2  # both verified again
        assert tip in _stored_ids(fresh, signers) and not file.exists()  # replaced by the table
    file = legacy_file(cache, name=name)
    file.mkdir()  # a directory in its place: left as it is, the table is used
    bootstrap = load_bootstrap(str(signers))
    v = VerifiedCommits(cache, bootstrap=bootstrap)
    v.add([tip])
    assert tip in v and file.is_dir()
    v.close()
    r = _verify(fleet, signers, cache)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "unusable" in r.stderr
    assert json.loads(r.stdout)["cached"] == 2


def test_an_old_verified_file_is_migrated_into_the_state(tmp_path: Path) -> None:
    """A state dir of an earlier version: its verified-<rules>-<name>.txt of these rules is
    taken into the SQLite table and removed (its commits are not verified again); a file of
    older rules is not read."""
    key = make_ssh_key(tmp_path / "keys", "ed25519", comment="release@fleet.example")
    signers = tmp_path / "allowed_signers"
    signers.write_text(allowed_signers_line("release@fleet.example", key) + "\n")
    fleet = FleetRepo(tmp_path / "fleet.git", key)
    first = fleet.commit(at=START)
    tip = fleet.commit(at=START + 60)
    name = load_bootstrap(str(signers)).digest.removeprefix("sha256:")[:16]
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    State(state_dir).close()  # a state of the version before: no verified rows
    old = legacy_file(state_dir, name=name)
    old.write_text(f"{first}\n{tip}\n")
    older = legacy_file(state_dir, name=name, rules="r2")
    older.write_text(f"{tip}\n")
    r = _verify(fleet, signers, state_dir)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["cached"] == 2  # migrated: not verified again
    assert _stored_ids(state_dir, signers) == {first, tip}
    assert not old.exists() and older.exists()
    newer = f"r{int(RULES[1:]) + 1}"  # the next rules version, whatever the current one
    v = VerifiedCommits(state_dir, bootstrap=load_bootstrap(str(signers)), rules=newer)
    assert tip not in v and len(v) == 0  # newer rules check again what older ones cached
    v.close()


def test_verified_ids_under_older_rules_are_deleted_at_the_next_write(tmp_path: Path) -> None:
    signers = tmp_path / "allowed_signers"
    key = make_ssh_key(tmp_path / "keys", "ed25519", comment="a@fleet.example")
    signers.write_text(allowed_signers_line("a@fleet.example", key) + "\n")
    boot = load_bootstrap(str(signers))
    old = VerifiedCommits(tmp_path, bootstrap=boot, rules="r1")
    old.add(["a" * 40])
    old.close()
    new = VerifiedCommits(tmp_path, bootstrap=boot)
    assert "a" * 40 not in new
    new.add(["b" * 40])
    new.close()
    rows = sqlite3.connect(tmp_path / "state.sqlite3").execute("SELECT * FROM verified")
    assert rows.fetchall() == [(RULES, boot.digest.removeprefix("sha256:")[:16], "b" * 40)]


def test_a_state_locked_past_its_timeout_is_a_state_error(tmp_path: Path) -> None:
    s = State(tmp_path)
    holder = sqlite3.connect(tmp_path / "state.sqlite3", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
    try:
        busy = State(tmp_path, timeout_s=0.2)
        try:
            with pytest.raises(StateError, match="locked by another process.*nothing was changed"):
                busy.put_doc("status", {})
        finally:
            busy.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        s.close()


def test_bundle_import_beside_a_write_in_progress_says_locked(tmp_path: Path) -> None:
    key = make_ssh_key(tmp_path / "keys", "ed25519", comment="release@fleet.example")
    fleet = FleetRepo(tmp_path / "fleet.git", key)
    fleet.commit(at=START)
    bundle = tmp_path / "b.tar"
    r = gitedge("bundle", "create", "--repo", str(fleet.path), "--all", "--out", str(bundle))
    assert r.returncode == 0, r.stderr
    cfg = write_site(tmp_path / "site", git_url="git://127.0.0.1:9/absent.git", key=key,
                     k3s="v1.27.16+k3s1")  # fmt: skip
    State(tmp_path / "site" / "state").close()
    holder = sqlite3.connect(tmp_path / "site" / "state" / "state.sqlite3", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        r = gitedge("bundle", "import", str(bundle), "--config", str(cfg), "-q")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "locked by another process for more than 10s" in r.stderr
    assert str(bundle) in r.stderr


@pytest.mark.parametrize("value", ["one", "null", "[1]", "0", "true", "{"])
def test_a_corrupt_schema_version_says_how_to_set_it_back(tmp_path: Path, value: str) -> None:
    State(tmp_path).close()
    poke(tmp_path, "UPDATE meta SET value = ? WHERE key = 'schema_version'", value)
    with pytest.raises(StateError, match="schema_version is corrupt") as e:
        State(tmp_path)
    assert "UPDATE meta SET value = '1' WHERE key = 'schema_version'" in str(e.value)
    poke(tmp_path, "UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    State(tmp_path).close()  # set back as told: it opens
