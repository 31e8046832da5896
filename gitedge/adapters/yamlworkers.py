"""YAML files parsed by forked workers (:mod:`gitedge.adapters.forkpool`), for a large fleet repo.

Parsing is CPU-bound (mostly PyYAML building nodes) and files are independent, so a large set is
parsed by one worker per CPU, started by :func:`parse_many`: the caller can go on (import,
validate what is ready) meanwhile. Worker ``i`` parses files ``i, i+n, ...`` (inherited through
fork, nothing sent) and streams back plain values, which pickle ten times faster than validated
models; results are taken in file order. A file whose result does not arrive (its worker died or
raised) is parsed in the caller, which then raises whatever the worker could not report.
The parsing itself is :func:`gitedge.core.fleet.yamldoc.parse_values` (pure).
"""

from __future__ import annotations

from collections.abc import Sequence

from gitedge.adapters.forkpool import Ordered, can_fork, cpus
from gitedge.core.fleet.files import FleetFiles
from gitedge.core.fleet.snapshot import Snapshot
from gitedge.core.fleet.yamldoc import Document, Parsed, documents, parse_values
from gitedge.errors import Problem, WorkerFailed

PARALLEL_BYTES = 2 << 20  # below this much YAML, starting workers costs more than it saves

__all__ = ["PARALLEL_BYTES", "ParsedFiles", "fleet_files", "parse_many"]


def fleet_files(snapshot: Snapshot, *, subdir: str = "", origin: str = "") -> FleetFiles:
    """The fleet files of ``snapshot``, read, and parsed ahead by workers for a large repo. This
    module imports in milliseconds (not the models): the parse starts while the caller imports
    them, then validates with :func:`gitedge.adapters.fleetload.load_files`."""
    return FleetFiles(snapshot, subdir=subdir, origin=origin, parse=parse_many)


def parse_many(files: Sequence[tuple[bytes, str]]) -> ParsedFiles:
    """:func:`gitedge.core.fleet.yamldoc.parse_documents` over ``(data, path)`` pairs, in forked
    workers when there is enough YAML and forking is safe; take the results with next()."""
    return ParsedFiles(files, workers(sum(len(data) for data, _ in files)))


def workers(total_bytes: int) -> int:
    """How many processes should parse ``total_bytes`` of YAML (1: parse here)."""
    if total_bytes < PARALLEL_BYTES or not can_fork():
        return 1
    return cpus()


class ParsedFiles:
    """The results of :func:`parse_many`, in file order; ``close()`` stops the workers."""

    def __init__(self, files: Sequence[tuple[bytes, str]], workers: int) -> None:
        self._files = files
        self._next = 0
        self._pool: Ordered[Parsed] | None = None
        if workers >= 2 and len(files) > 1:
            try:
                self._pool = Ordered(
                    lambda k: parse_values(files[k]), count=len(files), workers=workers
                )
            except OSError:  # no fork now (out of processes): parsed here
                self._pool = None

    def __iter__(self) -> ParsedFiles:
        return self

    def __next__(self) -> tuple[list[Document], list[Problem]]:
        k = self._next
        if k >= len(self._files):
            self.close()
            raise StopIteration
        self._next += 1
        data, path = self._files[k]
        parsed: Parsed | None = None
        if self._pool is not None:
            try:
                parsed = self._pool.get(k)
            except WorkerFailed:  # parsed here: raises what the worker could not tell
                parsed = None
        return documents(data, parsed or parse_values((data, path)))

    @property
    def pids(self) -> list[int]:
        """The workers' process ids (none when parsing here)."""
        return self._pool.pids if self._pool is not None else []

    def close(self) -> None:
        """Stop: the workers are stopped and reaped, and no more results are given."""
        self._next = len(self._files)
        if self._pool is not None:
            self._pool.close()
