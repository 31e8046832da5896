"""The ``source.bundleDir`` inbox's bookkeeping, light enough for the scheduler's process.

Which files are bundles (``*.tar``, not hidden, regular), and what the state remembers of them
(the ``bundles`` document): per path, the file's size/mtime/inode stamp and content digest (so a
file is hashed once, not every pass), and per digest, what was done with it (imported, with the
tip; or refused, with the reason). Importing lives in ``agent/bundles/create.py``; this module
imports only the standard library and the state adapter, so the scheduler can poll it between passes
without loading what a pass needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gitedge.adapters.state import BUNDLE_INBOX, State

INBOX_SUFFIX = ".tar"
DOC = "bundles"

__all__ = ["DOC", "INBOX_SUFFIX", "candidates", "load", "pending_bundles", "stamp"]


def candidates(directory: str | Path | None) -> list[Path]:
    """The bundle files in ``directory``, oldest first (an incremental bundle after the one it
    builds on); none when the directory is unset or unreadable."""
    if not directory:
        return []
    found: list[tuple[int, str, Path]] = []
    try:
        for f in Path(directory).iterdir():
            if f.name.startswith(".") or not f.name.endswith(INBOX_SUFFIX):
                continue  # ".name.tar": still being copied in, by convention
            try:
                if f.is_file():
                    found.append((f.stat().st_mtime_ns, f.name, f.absolute()))
            except OSError:
                continue
    except OSError:
        return []
    return [f for _, _, f in sorted(found)]


def stamp(f: Path) -> list[int]:
    """What changes when a file is replaced or still being written: size, mtime, inode."""
    st = f.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def load(state: State) -> dict[str, Any]:
    """The ``bundles`` document: ``{"files": {path: {stamp, digest}}, "seen": {digest: {...}}}``."""
    doc = state.doc(BUNDLE_INBOX)
    if not isinstance(doc, dict):
        doc = {}
    if not isinstance(doc.get("files"), dict):
        doc["files"] = {}
    if not isinstance(doc.get("seen"), dict):
        doc["seen"] = {}
    return doc


def pending_bundles(*, bundle_dir: str | None, state_dir: str | Path) -> list[Path]:
    """Files in ``bundle_dir`` not looked at in their present form (a listing and a stat per
    file, no hashing): the scheduler starts a pass when there are any."""
    files = candidates(bundle_dir)
    if not files:
        return []
    state = State(state_dir)
    try:
        known = load(state)["files"]
    finally:
        state.close()
    out = []
    for f in files:
        try:
            entry = known.get(str(f))
            if not isinstance(entry, dict) or entry.get("stamp") != stamp(f):
                out.append(f)
        except OSError:
            continue
    return out
