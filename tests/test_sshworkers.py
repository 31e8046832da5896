"""Ed25519 checks run ahead in forked worker processes (adapters/trust/sshworkers.py, adapters/trust/sshsig.py).

Covers: verdicts from the workers equal the in-process check against the embedded key, and the
reference (``ssh-keygen -Y verify``), for good, tampered and re-used signatures across many
chunks and both workers; signatures the workers do not decide (ecdsa, rsa, malformed) come back
undecided; a signature never handed over is undecided; a worker dead before or during the
hand-over leaves its signatures undecided (checked in-process), never wrong; ``close`` reaps every
worker; no fork from a process running other threads; and ``gitedge verify`` over a range long
enough for workers names the same first bad commit, reason and detail as a one-CPU run (a
signature over other bytes, a good signature by an untrusted key), with no worker left behind.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pygit2
import pytest
from gitserver import wait_single_threaded
from sigtools import (
    SshKey,
    allowed_signers_line,
    make_ssh_key,
    ssh_sign,
    ssh_verify,
    sshsig_sign_fast,
)

from gitedge.adapters.trust import sshworkers
from gitedge.adapters.trust.sshsig import embedded_ed25519
from gitedge.adapters.trust.sshworkers import AheadChecks
from gitedge.agent.steps import verifyrange as verifying
from gitedge.cli import main

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SshKey]:
    d = tmp_path_factory.mktemp("keys")
    return {kind: make_ssh_key(d, kind) for kind in ("ed25519", "ecdsa256", "rsa")}


def tampered(signature: bytes) -> bytes:
    """The armored signature with one base64 character of its last line changed."""
    lines = signature.splitlines()
    last = bytearray(lines[-2])
    last[3] = ord("A") if last[3] != ord("A") else ord("B")
    return b"\n".join([*lines[:-2], bytes(last), lines[-1]]) + b"\n"


@pytest.fixture(scope="module")
def items(keys: dict[str, SshKey]) -> list[tuple[bytes, bytes]]:
    """Signatures by ssh-keygen (the reference) and many fast ones, good and bad."""
    ed = keys["ed25519"]
    out = [
        (ssh_sign(ed, b"commit 1\n"), b"commit 1\n"),
        (ssh_sign(ed, b"commit 2\n"), b"commit two\n"),  # payload changed after signing
        (ssh_sign(ed, b"commit 3\n", hashalg="sha256"), b"commit 3\n"),
        (tampered(ssh_sign(ed, b"commit 4\n")), b"commit 4\n"),
        (ssh_sign(keys["ecdsa256"], b"commit 5\n"), b"commit 5\n"),
        (ssh_sign(keys["rsa"], b"commit 6\n"), b"commit 6\n"),
        (b"-----BEGIN SSH SIGNATURE-----\nnot base64\n-----END SSH SIGNATURE-----\n", b"x"),
    ]
    for i in range(40):
        data = f"commit {i + 7}\n".encode()
        sig = sshsig_sign_fast(ed, data)
        out.append((sig, data) if i % 7 else (sig, data + b"tampered"))
    return out


def started(workers: int) -> AheadChecks:
    wait_single_threaded()
    assert threading.active_count() == 1, "the test process runs other threads"
    ahead = AheadChecks.start(workers)
    assert ahead is not None
    return ahead


def test_workers_give_the_embedded_key_verdicts(
    items: list[tuple[bytes, bytes]], keys: dict[str, SshKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sshworkers, "CHUNK", 3)  # many chunks, both workers
    expected = [embedded_ed25519(s, p) for s, p in items]
    assert expected[:7] == [True, False, True, False, None, None, None]
    ed = keys["ed25519"]
    allowed = allowed_signers_line("ed", ed)
    for (s, p), v in zip(items[:4], expected, strict=False):  # the reference agrees
        assert (
            ssh_verify(allowed_signers=allowed, principal="ed", signature=s, data=p, env=ed.env)
            == v
        )
    with started(2) as ahead:
        ahead.submit(items[:10])
        ahead.submit(items[10:])  # a second hand-over, chunk numbers go on
        got = [ahead.get(s, p) for s, p in reversed(items)][::-1]  # any order of asking
        assert got == expected
        assert ahead.get(b"never handed over", b"") is None


def test_a_worker_dead_before_the_hand_over_gets_no_chunks(
    items: list[tuple[bytes, bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sshworkers, "CHUNK", 4)
    with started(2) as ahead:
        dead = ahead._workers[1].pid
        os.kill(dead, signal.SIGKILL)
        os.waitpid(dead, 0)
        ahead.submit(items)  # its turn goes to the other worker
        got = [ahead.get(s, p) for s, p in items]
    assert got == [embedded_ed25519(s, p) for s, p in items]


def test_a_worker_dying_mid_way_leaves_its_signatures_undecided_never_wrong(
    items: list[tuple[bytes, bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sshworkers, "CHUNK", 4)
    with started(2) as ahead:
        ahead.submit(items)
        os.kill(ahead._workers[1].pid, signal.SIGKILL)  # it may have answered some chunks
        got = [ahead.get(s, p) for s, p in items]
    expected = [embedded_ed25519(s, p) for s, p in items]
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        assert g == e if (i // 4) % 2 == 0 else g in (e, None)


def test_close_reaps_every_worker(items: list[tuple[bytes, bytes]]) -> None:
    ahead = started(2)
    pids = [w.pid for w in ahead._workers]
    ahead.submit(items)  # still verifying when closed
    ahead.close()
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    assert ahead.get(*items[0]) is None  # asked after close: undecided, not an error


def test_no_fork_while_other_threads_run(tmp_path: Path) -> None:
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert AheadChecks.start(2) is None
    finally:
        stop.set()
        t.join()


def long_repo(path: Path, key: SshKey, stranger: SshKey, n: int) -> list[str]:
    """``n`` ed25519-signed commits (signatures byte-compatible with ssh-keygen's); commit 300
    carries a signature over other bytes, commit 500 a good signature by ``stranger``."""
    repo = pygit2.init_repository(str(path), bare=True, initial_head="main")
    tree = repo.TreeBuilder().write()
    parents: list[pygit2.Oid] = []
    ids = []
    for i in range(n):
        who = pygit2.Signature("Bot", "bot@fleet.example", 1_767_225_600 + 60 * i, 0)
        payload = repo.create_commit_string(who, who, f"change {i}\n", tree, parents)
        signed = payload.replace("change", "chang3") if i == 300 else payload
        sig = sshsig_sign_fast(stranger if i == 500 else key, signed.encode())
        oid = repo.create_commit_with_signature(payload, sig.decode())
        parents = [oid]
        ids.append(str(oid))
    repo.references.create("refs/heads/main", parents[0], force=True)
    return ids


def test_gitedge_verify_with_workers_answers_as_one_cpu_does(
    tmp_path: Path,
    keys: dict[str, SshKey],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stranger = make_ssh_key(tmp_path, "ed25519")
    ids = long_repo(tmp_path / "fleet.git", keys["ed25519"], stranger, 600)
    trust = tmp_path / "allowed_signers"
    trust.write_text(allowed_signers_line("bot", keys["ed25519"]) + "\n")
    forked: list[int] = []
    start = AheadChecks.start.__func__  # type: ignore[attr-defined]

    def counted(cls: type[AheadChecks], workers: int) -> AheadChecks | None:
        ahead = start(cls, workers)
        if ahead is not None:
            forked.extend(w.pid for w in ahead._workers)
        return ahead

    monkeypatch.setattr(AheadChecks, "start", classmethod(counted))

    def run(*extra: str) -> dict[str, object]:
        base = ["verify", "--repo", str(tmp_path / "fleet.git"), "--trust", str(trust)]
        main([*base, *extra, "-o", "json"])
        doc: dict[str, object] = json.loads(capsys.readouterr().out)
        return doc

    ranges = [("--rev", ids[299]), (), ("--since", ids[300])]
    monkeypatch.setattr(verifying, "_cpus", lambda: 2)
    with_workers = [run(*r) for r in ranges]
    assert len(forked) == 2 * len(ranges)  # every range was long enough for workers
    monkeypatch.setattr(verifying, "_cpus", lambda: 1)
    assert [run(*r) for r in ranges] == with_workers
    assert len(forked) == 2 * len(ranges)  # none with one CPU
    good, bad, stranger_fails = with_workers
    assert good["verified"] is True and len(good["commits"]) == 300  # type: ignore[arg-type]
    assert (bad["commit"], bad["reason"]) == (ids[300], "bad-signature")
    assert (stranger_fails["commit"], stranger_fails["reason"]) == (ids[500], "unknown-key")
    for pid in forked:  # every worker was reaped
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
