"""Durable agent state (adapters/state.py): values survive reopening; a process killed with
SIGKILL in the middle of a stream of updates leaves a consistent database (each update whole or
absent); a state file from a newer gitedge is refused with its path."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gitedge.adapters.state import (
    BUNDLE_INBOX,
    CONDITIONS,
    DESIRED,
    STATUS,
    LastVerified,
    Mirrored,
    State,
)
from gitedge.errors import StateError

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)


def test_values_survive_reopening(tmp_path: Path) -> None:
    s = State(tmp_path)
    assert s.last_verified is None and s.mirrored() == {} and s.applied() == []
    lv = LastVerified("a" * 40, T0, T0, ".gitedge/trust.yaml@abc", "sha256:" + "0" * 64)
    s.record_verified(lv)
    s.put_doc("desired", {"k3s": "v1.30.6+k3s1"})
    s.record_mirrored(
        Mirrored(
            "docker.io/rancher/k3s-upgrade:v1.30.6-k3s1",
            "sha256:" + "1" * 64,
            "cache:5000/rancher/k3s-upgrade@sha256:" + "1" * 64,
            123,
            T0,
        )
    )
    s.record_step_started(component="k3s", step="v1.29.10+k3s1", at=T0)
    s.record_step_started(
        component="k3s", step="v1.29.10+k3s1", at=datetime(2027, 1, 1, tzinfo=UTC)
    )  # no double
    s.record_step_done(component="k3s", step="v1.29.10+k3s1", at=T0)
    s.close()
    r = State(tmp_path)
    assert r.last_verified == lv
    assert r.get_doc("desired") == {"k3s": "v1.30.6+k3s1"}
    assert list(r.mirrored()) == ["docker.io/rancher/k3s-upgrade:v1.30.6-k3s1"]
    assert r.applied() == [("k3s", "v1.29.10+k3s1", T0, T0)]


WRITER = """
import sys
from datetime import UTC, datetime
from gitedge.adapters.state import Mirrored, State
s = State(sys.argv[1])
i = 0
print("ready", flush=True)
while True:
    i += 1
    s.put_doc("counter", {"i": i, "pad": "x" * 5000, "check": i * 7})
    s.record_mirrored(Mirrored(f"img{i % 50}", f"sha256:{i:064d}", f"c/img@sha256:{i:064d}", i, datetime.now(UTC)))
"""


def test_sigkill_mid_update_leaves_a_consistent_state(tmp_path: Path) -> None:
    for _ in range(3):
        p = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE)
        assert p.stdout is not None and p.stdout.readline().strip() == b"ready"
        time.sleep(0.3)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=10)
        s = State(tmp_path)
        doc = s.get_doc("counter")
        assert doc is not None and doc["check"] == doc["i"] * 7 and len(doc["pad"]) == 5000
        for m in s.mirrored().values():
            assert m.digest == f"sha256:{m.bytes:064d}"  # each row whole
        db = sqlite3.connect(s.path)
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        db.close()
        s.close()


def test_state_from_a_newer_gitedge_is_refused(tmp_path: Path) -> None:
    State(tmp_path).close()
    db = sqlite3.connect(tmp_path / "state.sqlite3")
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (json.dumps(99),))
    db.commit()
    db.close()
    with pytest.raises(StateError, match="state.sqlite3.*newer gitedge"):
        State(tmp_path)


def test_unusable_state_dir_is_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StateError, match="file"):
        State(tmp_path / "file" / "sub")


def test_typed_documents_are_the_string_keyed_ones_and_check_their_shape(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """State.doc/put take a DocKey (name and shape): stored as put_doc stores them, so callers
    not yet switched read the same rows; a value of another shape reads as absent, warned."""
    s = State(tmp_path)
    s.put(DESIRED, {"commit": "a" * 40})
    s.put(CONDITIONS, [{"type": "Ready"}])
    assert s.get_doc("desired") == {"commit": "a" * 40}
    assert s.doc(CONDITIONS) == [{"type": "Ready"}]
    s.put_doc("status", ["not", "an", "object"])  # a writer that got the shape wrong
    with caplog.at_level("WARNING", logger="gitedge.state"):
        assert s.doc(STATUS) is None
    assert "document 'status' is not a JSON object" in caplog.text
    assert s.doc(BUNDLE_INBOX) is None  # absent
    s.close()
    row = sqlite3.connect(tmp_path / "state.sqlite3").execute(
        "SELECT value FROM meta WHERE key = 'doc:desired'"
    )
    assert json.loads(row.fetchone()[0]) == {"commit": "a" * 40}
