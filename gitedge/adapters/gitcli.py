"""Running the ``git`` CLI for what libgit2 cannot do (bundles): bounded in time, never asking
on a terminal, and its error text turned into one scrubbed line naming what was being done."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from gitedge.errors import SourceUnavailable, scrub

__all__ = ["GIT", "run_git"]

# no background gc or maintenance, no hooks: a bundle import or create runs nothing of the repo's
GIT = ("git", "-c", "gc.auto=0", "-c", "maintenance.auto=0", "-c", "core.hooksPath=/dev/null")


def run_git(
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    what: str,
    timeout_s: float,
    cwd: Path | None = None,
    memory_bytes: int | None = None,
) -> str:
    """``git args`` with ``env``; its stdout, or SourceUnavailable saying why not.

    ``memory_bytes``: git runs under that RLIMIT_DATA (set by ``sh``'s ``ulimit -d`` before the
    exec, no preexec_fn in a threaded process), so a hostile bundle's huge object fails git's
    allocation ("out of memory") instead of growing the pod past its limit."""
    cmd = [*GIT, *args]
    if memory_bytes is not None:
        cmd = ["sh", "-c", 'ulimit -d "$0" && exec "$@"', str(memory_bytes >> 10), *cmd]
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, env=dict(env), capture_output=True, timeout=timeout_s,
            check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise SourceUnavailable(f"{what}: git {args[0]} timed out after {timeout_s:g}s") from None
    except OSError as e:
        raise SourceUnavailable(f"{what}: cannot run git: {e.strerror}") from None
    if proc.returncode != 0:
        lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        text = "; ".join(ln.removeprefix("error: ").removeprefix("fatal: ") for ln in lines)
        raise SourceUnavailable(f"{what}: {scrub(text or 'git failed')}")
    return proc.stdout.decode("utf-8", "replace")
