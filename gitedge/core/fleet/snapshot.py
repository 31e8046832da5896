"""A fleet-repo snapshot: the files of a working tree or of a git commit, as plain data.

The same loader serves a directory on disk and a commit in a bare mirror, because both adapters
hand it a ``{posix path: bytes | Symlink}`` mapping. Symlinks are kept as data (their target
text) so the pure core decides, the same way for both sources, which ones stay inside the repo.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Symlink:
    """A symbolic link in the repo; ``target`` is the link text exactly as stored."""

    target: str


Snapshot = Mapping[str, "bytes | Symlink"]

MAX_SYMLINK_HOPS = 16


def resolve(snapshot: Snapshot, path: str) -> tuple[str, bytes] | str:
    """Follow symlinks from ``path`` inside the snapshot.

    Returns ``(resolved_path, content)`` or an error message when a link leaves the repo, dangles,
    or loops. Absolute targets always leave the repo.
    """
    seen = 0
    current = path
    while True:
        entry = snapshot.get(current)
        if entry is None:
            return f"symlink target {current!r} does not exist in the repo"
        if isinstance(entry, bytes):
            return current, entry
        seen += 1
        if seen > MAX_SYMLINK_HOPS:
            return "too many levels of symlinks"
        target = entry.target
        if target.startswith("/"):
            return f"symlink escapes the repo (absolute target {target!r})"
        joined = posixpath.normpath(posixpath.join(posixpath.dirname(current), target))
        if joined == ".." or joined.startswith("../"):
            return f"symlink escapes the repo (target {target!r})"
        current = joined
