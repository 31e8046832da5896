"""The one fork pool: worker processes made with ``fork``, for CPU-bound work on data already here.

Used by YAML parsing (:mod:`gitedge.adapters.yamlworkers`) and by the ahead-of-time signature
checks (:mod:`gitedge.adapters.trust.sshworkers`). A fork costs milliseconds (no new interpreter, no
imports) and the child inherits the work through memory, so nothing is sent to it.

- :func:`cpus`: how many CPUs this process may run on (its affinity mask), capped.
- :func:`can_fork`: forking is safe only from a single-threaded process (a fork copies one
  thread, and a lock another thread holds would stay held in the child): the CLI is one, the
  agent is not.
- :func:`fork_worker` / :func:`stop`: one worker with a pipe each way; stopping closes its
  pipes, kills it if it still runs, and reaps it (no zombie is left).
- :class:`Ordered`: ``n`` workers computing ``work(k)`` for ``k`` in ``i, i+n, ...`` and
  streaming pickled results back; taken in order. A worker that raised or died makes
  :class:`gitedge.errors.WorkerFailed` raise for the results it did not give.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pickle
import signal
import struct
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from gitedge.errors import WorkerFailed

MAX_WORKERS = 8
_FRAME = struct.Struct("<BQ")  # kind (0 result, 1 error text), length of what follows
_OK, _ERR = 0, 1
T = TypeVar("T")

__all__ = ["MAX_WORKERS", "Ordered", "Worker", "can_fork", "cpus", "fork_worker", "stop"]


def cpus(limit: int = MAX_WORKERS) -> int:
    """The CPUs this process may run on (``sched_getaffinity``), at most ``limit``."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return max(1, min(n, limit))


def can_fork() -> bool:
    """Whether this process may fork workers: Linux's fork, and no other thread running."""
    return hasattr(os, "fork") and threading.active_count() == 1


class Worker:
    """A forked worker: ``to_child`` (write end) and ``from_child`` (read end) pipes."""

    __slots__ = ("from_child", "pid", "to_child")

    def __init__(self, pid: int, to_child: int, from_child: int) -> None:
        self.pid = pid
        self.to_child = to_child
        self.from_child = from_child


def fork_worker(
    serve: Callable[[int, int], None], *, siblings: Sequence[Worker] = (), pipe_size: int = 0
) -> Worker:
    """Fork a worker running ``serve(from_parent, to_parent)``; it exits when ``serve`` returns
    (status 0) or raises (status 1: the parent reads end-of-file). The siblings' pipe ends are
    closed in the child, so that a sibling sees end-of-file when the parent closes its pipe.
    ``pipe_size``: room in the pipe back (F_SETPIPE_SZ), where answers may wait unread."""
    down_r, down_w = os.pipe()
    up_r, up_w = os.pipe()
    if pipe_size:
        with contextlib.suppress(OSError, AttributeError):
            fcntl.fcntl(up_w, fcntl.F_SETPIPE_SZ, pipe_size)
    pid = os.fork()
    if pid == 0:  # the worker: never returns
        code = 1
        try:
            os.close(down_w)
            os.close(up_r)
            for s in siblings:
                for fd in (s.to_child, s.from_child):
                    with contextlib.suppress(OSError):
                        os.close(fd)
            serve(down_r, up_w)
            code = 0
        finally:
            os._exit(code)
    os.close(down_r)
    os.close(up_w)
    return Worker(pid, down_w, up_r)


def stop(w: Worker) -> None:
    """Close the worker's pipes, kill it if it still runs, and reap it."""
    for fd in (w.to_child, w.from_child):
        with contextlib.suppress(OSError):
            os.close(fd)
    with contextlib.suppress(ProcessLookupError):
        os.kill(w.pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(w.pid, 0)


def read_exact(fd: int, n: int) -> bytes:
    """``n`` bytes from ``fd``, fewer only at end-of-file."""
    parts: list[bytes] = []
    while n > 0:
        part = os.read(fd, min(n, 1 << 20))
        if not part:
            break
        parts.append(part)
        n -= len(part)
    return b"".join(parts)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class Ordered(Generic[T]):
    """``work(k)`` for ``k`` in ``range(count)``, computed by ``workers`` forked processes and
    taken in order with :meth:`get`. Call :meth:`close` (or drop it) to stop and reap them."""

    def __init__(self, work: Callable[[int], T], *, count: int, workers: int) -> None:
        self._count = count
        self._workers: list[Worker] = []
        try:
            for i in range(workers):
                self._workers.append(
                    fork_worker(_streamer(work, i, workers, count), siblings=self._workers)
                )
        except OSError:
            for w in self._workers:
                stop(w)
            raise
        for w in self._workers:
            os.close(w.to_child)  # nothing is sent: the work came with the fork
            w.to_child = -1
        self._finalizer = weakref.finalize(self, _stop_all, self._workers)

    @property
    def pids(self) -> list[int]:
        return [w.pid for w in self._workers]

    def get(self, k: int) -> T:
        """The ``k``-th result; results must be taken in order, each once. Raises
        :class:`WorkerFailed` when its worker raised or died before giving it."""
        w = self._workers[k % len(self._workers)]
        head = read_exact(w.from_child, _FRAME.size) if w.from_child >= 0 else b""
        if len(head) < _FRAME.size:
            raise WorkerFailed(f"worker {w.pid} ended before giving result {k} of {self._count}")
        kind, length = _FRAME.unpack(head)
        body = read_exact(w.from_child, length)
        if len(body) < length:
            raise WorkerFailed(f"worker {w.pid} ended while giving result {k} of {self._count}")
        if kind == _ERR:
            raise WorkerFailed(f"worker {w.pid}, result {k}: {body.decode('utf-8', 'replace')}")
        value: T = pickle.loads(body)  # noqa: S301 - our own forked worker wrote it
        return value

    def close(self) -> None:
        self._finalizer()


def _streamer(
    work: Callable[[int], object], i: int, n: int, count: int
) -> Callable[[int, int], None]:
    def serve(_from_parent: int, out: int) -> None:
        try:
            for k in range(i, count, n):
                try:
                    body, kind = pickle.dumps(work(k), protocol=pickle.HIGHEST_PROTOCOL), _OK
                except Exception as e:
                    body, kind = f"{type(e).__name__}: {e}"[:2000].encode(), _ERR
                write_all(out, _FRAME.pack(kind, len(body)) + body)
                if kind == _ERR:
                    return
        except OSError:  # pragma: no cover - the parent stopped reading
            return

    return serve


def _stop_all(workers: list[Worker]) -> None:
    for w in workers:
        stop(w)
    workers.clear()
