"""Running the ``git`` CLI for what libgit2 cannot do (bundles, local paths): bounded in time,
never asking on a terminal, and its error text turned into one scrubbed line naming what was
being done. The CLI fetch path of a mirror: :func:`fetch_local` (a repository on a local path)
and :func:`fetch_bundle` (a ``git bundle`` file), each into a ref the caller names."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from gitedge.errors import SourceUnavailable, scrub

__all__ = ["GIT", "fetch_bundle", "fetch_local", "mirror_git", "run_git"]

# no background gc or maintenance, no hooks: a bundle import or create runs nothing of the repo's
GIT = ("git", "-c", "gc.auto=0", "-c", "maintenance.auto=0", "-c", "core.hooksPath=/dev/null")

# git fetch as the bundle import and local paths run it: one index-pack thread (each thread's
# stack counts against the data limit), a small delta base cache: the memory cap then bounds
# the objects, not the machine's cores
CLI_FETCH = (
    *("-c", "pack.threads=1", "-c", "core.deltaBaseCacheLimit=16m"),
    *("fetch", "--no-tags", "--no-write-fetch-head", "--no-recurse-submodules"),
)


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
            cmd,
            cwd=cwd,
            env=dict(env),
            capture_output=True,
            timeout=timeout_s,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise SourceUnavailable(f"{what}: git {args[0]} timed out after {timeout_s:g}s") from None
    except OSError as e:
        raise SourceUnavailable(f"{what}: cannot run git: {e.strerror}") from None
    if proc.returncode != 0:
        lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        text = "; ".join(ln.removeprefix("error: ").removeprefix("fatal: ") for ln in lines)
        raise SourceUnavailable(f"{what}: {scrub(text or 'git failed')}")
    return proc.stdout.decode("utf-8", "replace")


def mirror_git(
    args: Sequence[str],
    *,
    git_dir: Path,
    what: str,
    timeout_s: float,
    memory_bytes: int | None = None,
) -> str:
    """Run the git CLI on the repository ``git_dir``, isolated from user and system config,
    time-bounded (:func:`run_git`)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(git_dir)}
    env |= {"GIT_DIR": str(git_dir), "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C"}
    env |= {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0"}
    return run_git(args, env=env, what=what, timeout_s=timeout_s, memory_bytes=memory_bytes)


def fetch_local(
    *,
    git_dir: Path,
    local: Path,
    branch: str,
    into: str,
    what: str,
    timeout_s: float,
    memory_bytes: int,
) -> None:
    """Fetch ``branch`` of the repository at path ``local`` into ref ``into`` of ``git_dir``
    with git's own fetch: it streams the pack through upload-pack, each git bounded by
    ``memory_bytes``, where libgit2's local transport builds the whole pack in this process."""
    source = str(local.absolute())
    heads = mirror_git(
        ["ls-remote", "--heads", "--", source],
        git_dir=git_dir,
        what=what,
        timeout_s=timeout_s,
        memory_bytes=memory_bytes,
    )
    if not any(line.endswith(f"\trefs/heads/{branch}") for line in heads.splitlines()):
        raise SourceUnavailable(f"{what} failed: no such branch at {local}")
    mirror_git(
        [*CLI_FETCH, source, f"+refs/heads/{branch}:{into}"],
        git_dir=git_dir,
        what=what,
        timeout_s=timeout_s,
        memory_bytes=memory_bytes,
    )


def fetch_bundle(
    *,
    git_dir: Path,
    bundle: Path,
    branch: str,
    into: str,
    what: str,
    timeout_s: float,
    memory_bytes: int,
) -> None:
    """Fetch ``branch`` of the git bundle ``bundle`` (``git bundle create``) into ref ``into``
    of ``git_dir``, after ``git bundle verify``; each git runs with ``memory_bytes`` of data at
    most (a huge object fails the import, not the pod)."""

    def git(*args: str) -> str:
        return mirror_git(
            args, git_dir=git_dir, what=what, timeout_s=timeout_s, memory_bytes=memory_bytes
        )

    git("bundle", "verify", str(bundle))
    heads = git("bundle", "list-heads", str(bundle))
    if not any(line.endswith(f" refs/heads/{branch}") for line in heads.splitlines()):
        raise SourceUnavailable(f"{what}: has no branch {branch!r}")
    git(*CLI_FETCH, str(bundle), f"+refs/heads/{branch}:{into}")
