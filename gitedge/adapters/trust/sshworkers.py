"""Ed25519 checks of SSH commit signatures, run ahead in forked worker processes.

``gitedge verify`` of a long range (a first sync: 10,000 commits) spends most of its CPU in
libsodium's ed25519 verification (~0.1 ms a signature here). Threads do not help: every check
needs the GIL for its parsing, and the main thread holds it while it walks the repository and
imports, so threads wait on the GIL more than they verify. So the checks run in worker processes
made with ``fork`` (no new interpreter, no imports: a fork costs milliseconds), while the main
process goes on walking, importing and deciding.

What a worker computes is :func:`gitedge.adapters.trust.sshsig.embedded_ed25519`: the verdict on a
signature against the key written inside it, a function of the signature and payload bytes
alone. The keyring uses it only for a key it trusts whose blob is that embedded key, where it is
the keyring's own verdict; trust itself is decided in the main process, in commit order
(``core/trust/decision.py``). A check that was not sent, or whose worker died, is done in-process.

Plumbing (a trick for speed, kept small): chunks of work (pickled) go into an anonymous
in-memory file (memfd) that every worker shares, so that handing one over never blocks the main
process whatever the workers' pace; a pipe per worker carries short chunk notices, another
carries the answers back, one verdict byte per signature (``1`` good, ``0`` bad, ``-`` not an
ed25519 SSHSIG) after the chunk's number. Chunks go round-robin. A worker answers the chunk
handed over *last* first: the walk hands over the newest commits first (it starts at the tip)
and the decision asks for the oldest first, so the answers it needs first are computed first.

Forking is only done from a single-threaded process (the CLI): a fork copies one thread, and a
lock another thread holds would stay held in the child. Elsewhere :func:`AheadChecks.start`
returns None and everything is checked in-process.
"""

from __future__ import annotations

import os
import pickle
import select
import struct
from collections.abc import Sequence

from gitedge.adapters import forkpool
from gitedge.adapters.forkpool import read_exact as _read_exact
from gitedge.adapters.forkpool import write_all as _write_all
from gitedge.adapters.trust.sshsig import HAVE_SODIUM, embedded_ed25519

CHUNK = 256  # signatures per notice: ~30 ms of work; small enough that the first come early
_NOTICE = struct.Struct("<IQI")  # chunk number, offset and length of its pickle in the memfd
_ANSWERS = struct.Struct("<II")  # chunk number, how many verdict bytes follow
_ANSWER = {True: b"1", False: b"0", None: b"-"}
_VERDICT = {ord("1"): True, ord("0"): False}  # and "-": None, not computed

__all__ = ["CHUNK", "AheadChecks"]


class _Worker:
    __slots__ = ("chunks", "notices", "pid", "proc", "results")

    def __init__(self, proc: forkpool.Worker) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.notices = proc.to_child  # write end: chunk notices to the worker
        self.results = proc.from_child  # read end: answers from the worker
        self.chunks: list[int] = []  # chunk numbers handed to it


class AheadChecks:
    """Signatures handed to worker processes with :meth:`submit`; :meth:`get` waits for the
    verdict on one. Use as a context manager, or call :meth:`close`: it stops the workers (still
    running if the caller stopped early, at a bad commit) and reaps them."""

    def __init__(self, buf: int, workers: list[_Worker]) -> None:
        self._buf = buf
        self._workers = workers
        self._live = list(workers)  # those still taking chunks
        self._offset = 0
        self._where: dict[tuple[bytes, bytes], tuple[int, int]] = {}
        self._answers: list[bytes | None] = []  # by chunk number; None: not read yet
        self._owner: list[_Worker] = []  # by chunk number

    @classmethod
    def start(cls, workers: int) -> AheadChecks | None:
        """Fork ``workers`` processes, or return None where that is not worthwhile or not safe
        (one CPU, no libsodium, other threads running, no fork)."""
        if workers < 1 or not HAVE_SODIUM or not forkpool.can_fork():
            return None
        if not hasattr(os, "memfd_create"):  # pragma: no cover
            return None  # not Linux
        buf = os.memfd_create("gitedge-verify", os.MFD_CLOEXEC)
        started: list[_Worker] = []
        try:
            for _ in range(workers):
                started.append(_fork_worker(buf, started))
        except OSError:
            for w in started:
                forkpool.stop(w.proc)
            os.close(buf)
            return None
        return cls(buf, started)

    def __enter__(self) -> AheadChecks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        """Queue (signature, payload) pairs. What is handed over last is answered first."""
        for start in range(0, len(items), CHUNK):
            chunk = list(items[start : start + CHUNK])
            number = len(self._answers)
            frame = pickle.dumps(chunk, protocol=pickle.HIGHEST_PROTOCOL)
            try:
                _write_all(self._buf, frame)
            except OSError:  # out of memory: the rest is checked in-process
                return
            notice = _NOTICE.pack(number, self._offset, len(frame))
            worker = self._hand(number, notice)
            if worker is None:  # no worker left: checked in-process
                return
            self._offset += len(frame)
            self._answers.append(None)
            self._owner.append(worker)
            worker.chunks.append(number)
            for i, item in enumerate(chunk):
                self._where.setdefault(item, (number, i))

    def _hand(self, number: int, notice: bytes) -> _Worker | None:
        """Send a chunk notice to its worker in turn, or to another if that one is gone."""
        while self._live:
            worker = self._live[number % len(self._live)]
            try:
                _write_all(worker.notices, notice)
                return worker
            except OSError:  # EPIPE: it died; its chunks already sent stay undecided
                self._live.remove(worker)
        return None

    def get(self, signature: bytes, payload: bytes) -> bool | None:
        """The worker's verdict (waiting for it), or None when it was not computed."""
        where = self._where.get((signature, payload))
        if where is None or not self._workers:  # not handed over, or closed
            return None
        number, i = where
        answers = self._answers[number]
        if answers is None:
            answers = self._read_until(number)
        if i >= len(answers):  # the worker died before it answered
            return None
        return _VERDICT.get(answers[i])

    def _read_until(self, number: int) -> bytes:
        """Read the worker's answers (in its order) until those to chunk ``number`` came."""
        worker = self._owner[number]
        while self._answers[number] is None:
            head = _read_exact(worker.results, _ANSWERS.size)
            if len(head) < _ANSWERS.size:  # it died: what it had not answered is undecided
                for k in worker.chunks:
                    if self._answers[k] is None:
                        self._answers[k] = b""
                break
            k, count = _ANSWERS.unpack(head)
            self._answers[k] = _read_exact(worker.results, count)
        return self._answers[number] or b""

    def close(self) -> None:
        for w in self._workers:
            forkpool.stop(w.proc)
        self._workers = self._live = []
        if self._buf >= 0:
            os.close(self._buf)
            self._buf = -1


def _fork_worker(buf: int, siblings: Sequence[_Worker]) -> _Worker:
    """A worker serving chunk notices; answers wait unread in its pipe until the walk ends:
    room for 4,096 chunks."""
    proc = forkpool.fork_worker(
        lambda notices, results: _serve(buf, notices, results),
        siblings=[s.proc for s in siblings],
        pipe_size=1 << 20,
    )
    return _Worker(proc)


def _serve(buf: int, notices: int, results: int) -> None:
    """The worker's loop: take every notice there is, answer the last one first; wait only when
    none is left; stop when the main process has closed the pipe and all are answered."""
    os.set_blocking(notices, False)
    stack: list[tuple[int, int, int]] = []
    unread, open_ = b"", True
    while stack or open_:
        if open_:
            if not stack:
                select.select([notices], [], [])
            unread, open_ = _drain(notices, unread)
            whole = len(unread) - len(unread) % _NOTICE.size
            stack += _NOTICE.iter_unpack(unread[:whole])
            unread = unread[whole:]
        if stack:
            number, offset, length = stack.pop()
            # the parent wrote it, into a memfd only it and its workers hold
            chunk = pickle.loads(os.pread(buf, length, offset))  # noqa: S301
            out = b"".join([_ANSWER[embedded_ed25519(sig, payload)] for sig, payload in chunk])
            _write_all(results, _ANSWERS.pack(number, len(out)) + out)


def _drain(fd: int, unread: bytes) -> tuple[bytes, bool]:
    """Everything a non-blocking pipe holds now, after ``unread``; and whether it is still open."""
    while True:
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return unread, True
        if not data:
            return unread, False
        unread += data
