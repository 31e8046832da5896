"""The git side of creating an offline bundle: a scratch repository holding the commits to bring,
and the ``git bundle`` of them.

It runs the ``git`` CLI with the operator's own configuration, so whatever reaches the fleet repo
from their machine (ssh agent, credential helper) works; every call is bounded in time and its
error text is scrubbed of credentials.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from gitedge.adapters.git.cli import run_git
from gitedge.core.delivery.bundleindex import check_branch
from gitedge.errors import SourceUnavailable, UsageError, scrub

__all__ = ["GitStage", "stage_git", "write_git_bundle"]


@dataclass(frozen=True)
class GitStage:
    """A scratch bare repository holding the commits to bundle."""

    path: Path
    branch: str
    tip: str
    since: str | None


def _git(args: list[str], *, cwd: Path, what: str, timeout_s: float) -> str:
    """With the operator's own git configuration (ssh agent, credential helpers)."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    return run_git(args, env=env, cwd=cwd, what=what, timeout_s=timeout_s).strip()


def stage_git(
    *, repo: str, rev: str, since: str | None, branch: str, into: Path, timeout_s: float = 600.0
) -> GitStage:
    """Fetch ``rev`` (and ``since`` when it is not already an ancestor we hold) of ``repo`` (a
    URL or a directory) into a new bare repository ``into``, as ``refs/heads/<branch>``."""
    try:
        check_branch(branch)
    except ValueError as e:
        raise UsageError(f"--branch: {e}") from None
    local = Path(repo)
    source = str(local.absolute()) if local.exists() else repo
    shown = scrub(repo, limit=200)
    if local.exists():  # any revision expression works in a local repo (HEAD~1, a tag, an id)
        rev = _resolve(local, rev, f"--rev {rev!r} in {shown}")
        since = None if since is None else _resolve(local, since, f"--since {since!r} in {shown}")
    into.mkdir(parents=True, exist_ok=True)
    _git(["init", "-q", "--bare", str(into)], cwd=into, what="bundle create", timeout_s=60)
    fetch = ["fetch", "-q", "--no-tags", "--no-write-fetch-head", "--no-recurse-submodules"]
    what = f"fetch of {rev!r} from {shown}"
    _git([*fetch, source, f"+{rev}:refs/heads/{branch}"], cwd=into, what=what, timeout_s=timeout_s)
    tip = _git(
        ["rev-parse", "--verify", f"refs/heads/{branch}^{{commit}}"],
        cwd=into,
        what=what,
        timeout_s=60,
    )
    base = None
    if since is not None:
        what = f"--since {since!r}"
        try:
            base = _git(
                ["rev-parse", "--verify", "-q", f"{since}^{{commit}}"],
                cwd=into,
                what=what,
                timeout_s=60,
            )
        except SourceUnavailable:
            _git(
                [*fetch, source, f"+{since}:refs/gitedge/since"],
                cwd=into,
                what=f"fetch of {what} from {shown}",
                timeout_s=timeout_s,
            )
            base = _git(
                ["rev-parse", "--verify", "refs/gitedge/since^{commit}"],
                cwd=into,
                what=what,
                timeout_s=60,
            )
        if base == tip:
            raise UsageError(f"--since {since}: it is the tip itself; there is nothing to bundle")
        try:
            _git(["merge-base", "--is-ancestor", base, tip], cwd=into, what=what, timeout_s=60)
        except SourceUnavailable:
            raise UsageError(f"--since {since} ({base}) is not an ancestor of {rev}") from None
    return GitStage(into, branch, tip, base)


def _resolve(repo: Path, rev: str, what: str) -> str:
    try:
        return _git(
            ["rev-parse", "--verify", "-q", f"{rev}^{{commit}}"], cwd=repo, what=what, timeout_s=60
        )
    except SourceUnavailable:
        raise UsageError(f"{what}: no such commit") from None


def write_git_bundle(stage: GitStage, out: Path, *, timeout_s: float = 600.0) -> None:
    """``git bundle create`` of the stage's branch, without what ``since`` already holds."""
    args = ["bundle", "create", "-q", str(out), f"refs/heads/{stage.branch}"]
    if stage.since:
        args.append(f"^{stage.since}")
    with contextlib.suppress(FileNotFoundError):
        out.unlink()
    _git(args, cwd=stage.path, what="git bundle create", timeout_s=timeout_s)
