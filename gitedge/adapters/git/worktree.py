"""Read a fleet repo's working tree from disk into a snapshot for the pure loader."""

from __future__ import annotations

import os
from pathlib import Path

from gitedge.adapters.localfiles import kind_of, read_bounded
from gitedge.core.fleet.files import MAX_FILE_BYTES
from gitedge.core.fleet.snapshot import Symlink
from gitedge.errors import InvalidFleetRepo, Problem

_SKIP_DIRS = {".git"}


def read_tree(root: str | Path) -> dict[str, bytes | Symlink]:
    """Every YAML file under ``root`` (bytes) and every symlink (as :class:`Symlink`).

    Files larger than the loader's cap are read only up to one byte past it, so the loader can
    report them without this reading gigabytes. Symlinks are never followed here: the pure
    loader decides which ones stay inside the repo. A YAML name that is not a regular file (a
    FIFO, a device, a socket) is a problem naming it, found from ``lstat`` and never opened
    (opening a FIFO waits for a writer).
    """
    base = Path(root)
    if not base.is_dir():
        raise InvalidFleetRepo([Problem(str(root), 0, "not a directory")])
    out: dict[str, bytes | Symlink] = {}
    problems: list[Problem] = []
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        here = Path(dirpath)
        rel_dir = here.relative_to(base).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in [*dirnames, *filenames]:
            full = here / name
            rel = prefix + name
            try:
                if full.is_symlink():
                    out[rel] = Symlink(str(full.readlink()))
                elif name in filenames and name.endswith((".yaml", ".yml")):
                    kind = kind_of(full.lstat().st_mode)
                    if kind is not None:
                        problems.append(Problem(str(full), 0, f"not a regular file ({kind})"))
                        continue
                    out[rel] = read_bounded(
                        full, limit=MAX_FILE_BYTES, follow_symlinks=False, cut=True
                    )
            except OSError as e:
                problems.append(Problem(str(full), 0, f"cannot read: {e.strerror}"))
    if problems:
        raise InvalidFleetRepo(problems)
    return out
