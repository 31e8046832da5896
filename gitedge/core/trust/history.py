"""The history-shaped parts of the trust rules (core/trust/decision.py uses them): which commits a
``verify: first-parent`` merge exempts, the first-parent chain a new tip must have, the
rollback rule, and the date rule (a commit not dated before its parents). Pure.

A policy here is anything with a ``verify`` attribute (a ``Policy``); anything else (a trust
file that did not parse) counts as ``all``: nothing is exempt by a policy nobody can read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from gitedge.core.timefmt import iso_z
from gitedge.errors import RollbackRefused, VerificationFailed

HasMode = object  # a trust.Policy, or the ValueError of a trust file that does not parse

__all__ = [
    "DATE_TOLERANCE",
    "Commit",
    "check_dates",
    "exempt_side_commits",
    "require_descendant",
    "require_first_parent_chain",
]


class Commit(Protocol):
    """The facts of one commit (``gitrepo.CommitFacts`` fits)."""

    @property
    def id(self) -> str: ...
    @property
    def parents(self) -> tuple[str, ...]: ...
    @property
    def committer_time(self) -> datetime: ...
    @property
    def signature(self) -> bytes | None: ...
    @property
    def payload(self) -> bytes | None: ...
    @property
    def trust_blob_id(self) -> str | None: ...


DATE_TOLERANCE = timedelta(minutes=5)  # a commit may be dated this much before a parent
_TOLERANCE_TEXT = "5 minutes"


def check_dates(*, c: Commit, parents: Sequence[str], time_of: Callable[[str], datetime]) -> None:
    """The date rule: ``c`` may not be dated before a parent (``time_of``: the latest date in
    its history) by more than the tolerance. For exempt commits too: else a checked child of
    one dated back could use a closed window."""
    for parent in parents:
        when = time_of(parent)
        if c.committer_time < when - DATE_TOLERANCE:
            raise VerificationFailed(
                commit=c.id,
                reason="date-before-parent",
                detail=f"committer date {iso_z(c.committer_time)} is earlier than the "
                f"latest date in the history of its parent {parent} ({iso_z(when)}) by "
                f"more than {_TOLERANCE_TEXT}",
            )


def require_descendant(*, last_verified: str | None, offered: str, descends: bool) -> None:
    """The rollback rule: the tracked tip must descend from (or be) the last verified commit."""
    if last_verified is not None and offered != last_verified and not descends:
        raise RollbackRefused(
            last_verified=last_verified,
            offered=offered,
            detail="history rewritten or an older commit replayed; the last verified commit stays",
        )


def require_first_parent_chain(
    *, since: str, tip: str, by_id: Mapping[str, Commit], at_since: HasMode
) -> None:
    """``verify: first-parent`` in the policy in force at the last verified commit: the new
    tip's first-parent chain must pass through it (else the signer's parent order would choose
    the mainline, and so which commits are exempt)."""
    if getattr(at_since, "verify", None) != "first-parent":
        return
    cur: str | None = tip
    while cur is not None and cur in by_id:
        parents = by_id[cur].parents
        cur = parents[0] if parents else None
    if cur != since:
        raise RollbackRefused(
            last_verified=since,
            offered=tip,
            detail=f"{getattr(at_since, 'source', '')} says verify: first-parent, and the "
            "first-parent chain of the new tip does not pass through the last verified commit",
        )


def exempt_side_commits(
    *,
    commits: Sequence[Commit],
    tip: str,
    by_id: Mapping[str, Commit],
    policy_at: Callable[[str], HasMode],
) -> set[str]:
    """Commits brought in from the side by a mainline merge when the policy in force on every
    one of its parents says ``first-parent`` (so parent order cannot pick the laxer mode). The
    mainline is the first-parent chain from ``tip`` within the range. ``decide`` still checks
    an exempt commit that changes the trust file."""
    if tip not in by_id:
        return set()
    mainline: list[str] = []
    cur: str | None = tip
    while cur is not None and cur in by_id:
        mainline.append(cur)
        parents = by_id[cur].parents
        cur = parents[0] if parents else None
    on_mainline = set(mainline)
    claimed: set[str] = set()
    exempt: set[str] = set()
    for merge_id in reversed(mainline):  # oldest first: a side commit belongs to the first merge
        merge = by_id[merge_id]
        if len(merge.parents) < 2:
            continue
        brought: set[str] = set()
        stack = [p for p in merge.parents[1:] if p in by_id]
        while stack:
            cid = stack.pop()
            if cid in on_mainline or cid in claimed or cid in brought:
                continue
            brought.add(cid)
            stack.extend(p for p in by_id[cid].parents if p in by_id)
        claimed |= brought
        modes = [policy_at(p) for p in merge.parents]
        if all(getattr(m, "verify", None) == "first-parent" for m in modes):
            exempt |= brought
    return exempt
