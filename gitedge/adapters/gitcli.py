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
) -> str:
    """``git args`` with ``env``; its stdout, or SourceUnavailable saying why not."""
    try:
        proc = subprocess.run(
            [*GIT, *args], cwd=cwd, env=dict(env), capture_output=True, timeout=timeout_s,
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
