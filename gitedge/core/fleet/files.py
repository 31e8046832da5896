"""Which files of a snapshot are fleet documents, read and checked for size, parsed ahead.

Kept apart from the models (:mod:`gitedge.core.fleet.model`) so that it imports in milliseconds:
given the forked parser (:func:`gitedge.adapters.yamlworkers.parse_many`, as
:func:`gitedge.adapters.yamlworkers.fleet_files` gives it), :class:`FleetFiles` starts parsing a
large repo on every core while the caller is still importing the models that will validate it.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import dataclass

from gitedge.core.fleet.snapshot import Snapshot, resolve
from gitedge.core.fleet.yamldoc import Document, ParseMany, parse_serial
from gitedge.errors import Problem

TRUST_PATH = ".gitedge/trust.yaml"
MAX_FILE_BYTES = 1 << 20
MAX_REPO_BYTES = 64 << 20


def fleet_files(snapshot: Snapshot, *, subdir: str = "") -> list[str]:
    """The snapshot paths that hold fleet documents, sorted."""
    base = _base(subdir)
    out = []
    for path in snapshot:
        if not path.endswith((".yaml", ".yml")):
            continue
        rel = path
        if base:
            if not path.startswith(base + "/"):
                continue
            rel = path[len(base) + 1 :]
        if rel == TRUST_PATH or not any(part.startswith(".") for part in rel.split("/")):
            out.append(path)
    return sorted(out)


@dataclass(frozen=True)
class FleetFile:
    """A fleet file to parse; ``shown`` is its path as problems print it."""

    shown: str
    data: bytes
    is_trust: bool


Parsed = tuple[list[Document], list[Problem]]


class FleetFiles:
    """Every fleet file of a snapshot, or the problem that keeps it from being parsed, in order.

    Reading is done here; parsing starts here too (by ``parse``: in parallel for a large repo
    when an adapter passes its forked parser) and its
    results are taken, in path order, by iterating: ``(file, parsed)``, or ``(problem, None)``.
    Iterate once.
    """

    def __init__(
        self,
        snapshot: Snapshot,
        *,
        subdir: str = "",
        origin: str = "",
        parse: ParseMany = parse_serial,
    ) -> None:
        self.entries = _read(snapshot, subdir=subdir, origin=origin)
        self._parsed = parse([(e.data, e.shown) for e in self.entries if isinstance(e, FleetFile)])

    def __iter__(self) -> Iterator[tuple[FleetFile, Parsed] | tuple[Problem, None]]:
        for entry in self.entries:
            if isinstance(entry, Problem):
                yield entry, None
            else:
                yield entry, next(self._parsed)
        self._parsed.close()


def _base(subdir: str) -> str:
    return posixpath.normpath(subdir).strip("/") if subdir and subdir not in (".", "/") else ""


def _read(snapshot: Snapshot, *, subdir: str, origin: str) -> list[FleetFile | Problem]:
    out: list[FleetFile | Problem] = []
    total = 0
    base = _base(subdir)
    trust_path = f"{base}/{TRUST_PATH}" if base else TRUST_PATH
    for path in fleet_files(snapshot, subdir=subdir):
        shown = posixpath.join(origin, path) if origin else path
        resolved = resolve(snapshot, path)
        if isinstance(resolved, str):
            out.append(Problem(shown, 0, resolved))
            continue
        data = resolved[1]
        if len(data) > MAX_FILE_BYTES:
            out.append(Problem(shown, 0, f"file is {len(data)} bytes; the limit is 1 MiB"))
            continue
        total += len(data)
        if total > MAX_REPO_BYTES:
            out.append(Problem(shown, 0, "the repo's YAML exceeds 64 MiB in all; stopped here"))
            break
        out.append(FleetFile(shown, data, is_trust=path == trust_path))
    return out


def trust_file(snapshot: Snapshot, *, subdir: str = "") -> tuple[str, bytes] | None:
    """The path and bytes of the fleet's trust file in ``snapshot``; None when it has none.
    Raises ValueError when the file is there but cannot be read (a dangling symlink...)."""
    base = _base(subdir)
    path = f"{base}/{TRUST_PATH}" if base else TRUST_PATH
    if path not in snapshot:
        return None
    resolved = resolve(snapshot, path)
    if isinstance(resolved, str):
        raise ValueError(f"{path}: {resolved}")
    return path, resolved[1]
