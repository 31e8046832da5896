"""Ed25519 checks run ahead in forked worker processes (adapters/sshworkers.py, adapters/sshsig.py).

Covers: verdicts from the workers equal the in-process check against the embedded key, and the
reference (``ssh-keygen -Y verify``), for good, tampered and re-used signatures across many
chunks and both workers; signatures the workers do not decide (ecdsa, rsa, sha256 vs sha512,
malformed) come back undecided; a signature never handed over is undecided; a worker killed
mid-way leaves its signatures undecided (checked in-process), never wrong; ``close`` reaps every
worker; no fork from a process running other threads.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest
from sigtools import (
    SshKey,
    allowed_signers_line,
    make_ssh_key,
    ssh_sign,
    ssh_verify,
    sshsig_sign_fast,
)

from gitedge.adapters import sshworkers
from gitedge.adapters.sshsig import embedded_ed25519
from gitedge.adapters.sshworkers import AheadChecks

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
