"""Progress on stderr for ``mirror`` and ``bundle``: one redrawn line on a terminal, else
quiet lines, one per blob, image or phase done."""

from __future__ import annotations

import os
import sys
import time
from typing import Any


class MirrorProgress:
    """Renders the mirror's progress reports on stderr: a redrawn bar (bytes, rate, ETA) on a
    terminal, else one quiet line per blob."""

    def __init__(self, *, tty: bool) -> None:
        self._clock = time.monotonic
        self.tty = tty
        self.began = self._clock()
        self.drawn = 0.0
        self.width = 0

    def __call__(self, p: Any) -> None:
        if not self.tty:
            if p.event == "blob":
                print(f"blob {p.digest[:19]} {p.detail} ({mib(p.size)})", file=sys.stderr)
            return
        now = self._clock()
        if p.event != "done" and now - self.drawn < 0.1:
            return
        self.drawn = now
        frac = min(p.done_bytes / p.total_bytes, 1.0) if p.total_bytes else 1.0
        rate = p.done_bytes / max(now - self.began, 1e-3)
        eta = (p.total_bytes - p.done_bytes) / rate if rate > 0 else 0.0
        bar = "=" * int(frac * 24)
        line = (
            f"[{bar:<24}] {frac:4.0%} {mib(p.done_bytes)}/{mib(p.total_bytes)} "
            f"{mib(int(rate))}/s ETA {int(eta) // 60}:{int(eta) % 60:02d} "
            f"({p.blobs_done}/{p.blobs_total} blobs)"
        )
        line = fit_line(line)
        self.width = max(self.width, len(line))
        print("\r" + line.ljust(self.width), end="", file=sys.stderr, flush=True)

    def finish(self) -> None:
        if self.tty and self.width:
            print(file=sys.stderr)


def fit_line(line: str) -> str:
    """A redrawn line cut to the terminal's width: one that wraps cannot be redrawn by ``\r``,
    and left a copy of itself on every redraw (a bundle's long path: the same line 7 times)."""
    try:  # the terminal the progress is drawn on: stderr (stdout may be a pipe)
        width = os.get_terminal_size(sys.stderr.fileno()).columns - 1
    except (OSError, ValueError):
        return line
    if width < 10:  # a terminal that does not say its size (0 columns)
        return line
    return line if len(line) <= width else line[: width - 1] + "…"


def mib(n: int) -> str:
    return f"{n / 1048576:.1f} MiB"


class BundleProgress:
    """``gitedge bundle`` progress on stderr: one redrawn line on a terminal (phase, image i/n,
    bytes), else one quiet line per image and per phase done."""

    def __init__(self, *, tty: bool) -> None:
        self._clock = time.monotonic
        self.tty = tty
        self.drawn = 0.0
        self.width = 0

    def __call__(self, p: Any) -> None:
        count = f" {p.index}/{p.count}" if p.count else ""
        size = f" {size_text(p.done_bytes)}/{size_text(p.total_bytes)}" if p.total_bytes else ""
        line = f"{p.phase}{count} {p.item}{size}"
        if not self.tty:
            if p.finished or p.phase in ("fetch", "git"):
                print(line, file=sys.stderr)
            return
        now = self._clock()
        if not p.finished and now - self.drawn < 0.1:
            return
        self.drawn = now
        line = fit_line(line)
        self.width = max(self.width, len(line))
        end = "\n" if p.finished else ""
        print("\r" + line.ljust(self.width), end=end, file=sys.stderr, flush=True)
        self.width = 0 if p.finished else self.width

    def finish(self) -> None:
        if self.tty and self.width:
            print(file=sys.stderr)


def size_text(n: int) -> str:
    x, unit = float(n), "B"
    for bigger in ("KiB", "MiB", "GiB"):
        if x < 1024:
            break
        x, unit = x / 1024, bigger
    return f"{n} B" if unit == "B" else f"{x:.1f} {unit}"
