"""The cache of commit ids already verified, in the state's SQLite (table ``verified``).

A commit verified once is not verified again, across restarts. Ids are kept by trust-rules
version (:data:`RULES`) and bootstrap policy: a different bootstrap (a reinstall with other
keys) starts afresh, and a commit accepted by older rules is checked again by these.

Earlier versions kept the ids in a text file per rules version and bootstrap
(``verified-<rules>-<digest>.txt`` beside the state). Such a file of the current rules is
migrated into the table on open and removed; one that cannot be read, or holds anything but
commit ids, is ignored with a warning (the ids are a cache: those commits are verified again).
Files of older rules are not read. A state that cannot be opened keeps the ids in memory only.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from pathlib import Path

from gitedge.adapters.state import State
from gitedge.core.trust.policy import Policy
from gitedge.errors import StateError

# The version of the trust rules in core/trust/decision.py. "r2": every parent's policy, the
# committer date not before a parent's (issue 13); "verified-<digest>" files were written by the
# first-parent-only rules, which accepted a retired key's merge.
RULES = "r4"  # r4: a commit a shallow clone or info/grafts shows with other parents is
# refused (r3 judged a cut commit as a root and cached it); r3: a trust change whose keys do not
# parse is refused (r2 accepted it)
MAX_LEGACY_BYTES = 64 << 20  # a million commit ids; a larger file is not one we wrote

log = logging.getLogger("gitedge.agent")

__all__ = ["MAX_LEGACY_BYTES", "RULES", "VerifiedCommits", "legacy_file"]


def legacy_file(directory: Path, *, name: str, rules: str = RULES) -> Path:
    """Where earlier versions kept the ids verified under ``rules`` and a bootstrap ``name``."""
    return directory / f"verified-{rules}-{name}.txt"


class VerifiedCommits:
    """Ids of commits already verified under one bootstrap policy and these rules, kept in the
    state's SQLite under ``directory`` (None: in memory only). ``state``: a State already open
    on ``directory`` (the agent's), else one is opened here."""

    def __init__(
        self,
        directory: str | Path | None,
        *,
        bootstrap: Policy,
        state: State | None = None,
        rules: str = RULES,
    ) -> None:
        self._name = bootstrap.digest.removeprefix("sha256:")[:16] or "none"
        self._rules = rules
        self._ids: set[str] = set()
        self._state: State | None = None
        self._own = False
        if directory is None:
            return
        try:
            self._state = state if state is not None else State(directory)
            self._own = state is None
            self._ids = self._state.verified_commits(rules=rules, bootstrap=self._name)
        except StateError as e:  # only a cache: verified again, kept in memory
            log.warning(
                "verified-commit cache in %s is unusable (%s): kept in memory; its "
                "commits are verified again",
                directory,
                e,
            )
            self._state = None
            return
        self._migrate(legacy_file(Path(directory), name=self._name, rules=rules))

    def _migrate(self, file: Path) -> None:
        """Take the ids of an earlier version's text file into the table, and remove it."""
        ids = _read_legacy(file)
        if ids is None:
            return
        if ids:
            self.add(ids)
        if self._state is not None:
            with contextlib.suppress(OSError):  # a directory in its place: left as it is
                file.unlink()

    def __contains__(self, commit: object) -> bool:
        return commit in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, commits: Iterable[str]) -> None:
        new = set(commits) - self._ids
        if not new:
            return
        self._ids |= new
        if self._state is not None:
            try:
                self._state.record_verified_commits(
                    sorted(new), rules=self._rules, bootstrap=self._name
                )
            except StateError as e:  # only a cache: the ids stay in memory
                log.warning(
                    "verified-commit cache %s not written (%s): kept in memory", self._state.path, e
                )

    def close(self) -> None:
        """Close the state if it was opened here."""
        if self._state is not None and self._own:
            self._state.close()
        self._state = None


def _read_legacy(file: Path) -> set[str] | None:
    """The ids in an earlier version's file; None when there is none. One that cannot be read
    or holds anything but commit ids is ignored with a warning (set())."""
    try:
        with file.open("rb") as f:
            data = f.read(MAX_LEGACY_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as e:
        _drop(file, e.strerror or str(e))
        return None if file.is_dir() else set()
    try:
        if len(data) > MAX_LEGACY_BYTES:
            raise ValueError(f"larger than {MAX_LEGACY_BYTES >> 20} MiB")
        ids = set(data.decode("ascii").split())
    except ValueError as e:  # UnicodeDecodeError is one
        _drop(file, str(e)[:100])
        return set()
    bad = next((i for i in ids if len(i) not in (40, 64) or i.strip("0123456789abcdef")), None)
    if bad is not None:
        _drop(file, f"not a commit id: {bad[:80]!r}")
        return set()
    return ids


def _drop(file: Path, why: str) -> None:
    log.warning(
        "verified-commit cache %s is unusable (%s): ignored, its commits are verified again",
        file,
        why,
    )
