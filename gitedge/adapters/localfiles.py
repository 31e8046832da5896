"""Bounded reads of local files: a trust file, an agent config, a secret, a CA bundle.

``Path.read_bytes`` after a size check from ``stat`` is not a bound: ``/dev/zero`` and a FIFO
have size 0 and then read forever (or block forever on open). :func:`read_bounded` opens
without blocking, checks on the open descriptor that it is a regular file, and reads at most
``limit + 1`` bytes, so nothing but a regular file of at most ``limit`` bytes is ever returned.

Refusals are :class:`OSError` with ``strerror`` set to a message for people (``not a regular
file (a FIFO)``, ``larger than 1 MiB``): every caller already turns an OSError into the error of
its own kind (TrustError, UsageError, a Problem, ...) with the path and ``e.strerror``.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def kind_of(mode: int) -> str | None:
    """What a non-regular file is (``a FIFO``, ...); None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def size_text(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 and n % (1 << 20) == 0 else f"{n} bytes"


def read_bounded(
    path: str | Path, *, limit: int, follow_symlinks: bool = True, cut: bool = False
) -> bytes:
    """The content of regular file ``path``, at most ``limit`` bytes. Raises OSError: the
    system's (absent, unreadable), or ours for a non-regular file or one over ``limit`` (with
    ``cut``, its first ``limit + 1`` bytes are returned instead, for the caller to report). A
    FIFO is opened non-blocking (no writer needed) and refused before any read."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    fd = os.open(path, flags)
    try:
        kind = kind_of(os.fstat(fd).st_mode)
        if kind is not None:
            raise OSError(errno.EINVAL, f"not a regular file ({kind})", str(path))
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        left = limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit and not cut:
        raise OSError(errno.EFBIG, f"larger than {size_text(limit)}", str(path))
    return data
