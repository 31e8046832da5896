"""The git walking the verify step needs (agent/steps/verifyrange.py), with pygit2 kept on this
side.

Trust decisions are pure (:func:`gitedge.core.trust.decision.decide`); what they need from the
repository is read here: the latest committer date in a parent's history (the date rule's
measure of a parent outside the range), the exact range (since, tip], commits in parents-first
order from an unsorted walk, and trust blobs read only when asked for.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime

import pygit2
from pygit2.enums import SortMode

from gitedge.adapters.git.repo import CommitFacts, GitRepo
from gitedge.errors import InvalidFleetRepo, SourceUnavailable

ASK_EACH = 8  # exact_range: commits asked about one by one before one walk answers for all

__all__ = [
    "ASK_EACH",
    "LATEST",
    "TrustBlobs",
    "exact_range",
    "latest_dates",
    "parents_first",
    "remember",
]


# a commit id's latest date in its history, for as long as the process runs: the id names that
# history, so the date holds in any repo; bounded (the agent needs its last tip or two)
LATEST: dict[str, datetime] = {}
LATEST_MAX = 64


def remember(commit: str, when: datetime) -> None:
    if len(LATEST) >= LATEST_MAX:
        LATEST.pop(next(iter(LATEST)))
    LATEST[commit] = when


def latest_dates(repo: GitRepo, commits: Iterable[str]) -> dict[str, datetime]:
    """The latest committer date in the history of each of ``commits`` (its own included), the
    date rule's measure of a parent outside the range: a walk of commit headers, one for all of
    them (memoised per commit only when there are several; a range's parents outside it are
    ``since`` and the bases of its side branches, a straight history has one)."""
    starts = sorted(commits)
    if not starts:
        return {}
    try:
        return _latest_dates_walk(repo, starts)
    except (KeyError, pygit2.GitError) as e:  # a history the repo does not hold whole
        raise SourceUnavailable(
            f"cannot read the history of {', '.join(starts)} (an incomplete history): {e}"
        ) from None


def _latest_dates_walk(repo: GitRepo, starts: list[str]) -> dict[str, datetime]:
    if len(starts) == 1:
        best = max(repo.repo.walk(repo.resolve(starts[0]), SortMode.NONE), key=_seconds)
        return {starts[0]: repo.committer_time(str(best.id))}
    walker = repo.repo.walk(None, SortMode.TOPOLOGICAL | SortMode.REVERSE)
    for cid in starts:
        walker.push(repo.resolve(cid))
    latest: dict[pygit2.Oid, tuple[int, pygit2.Oid]] = {}  # the latest commit in its history
    for c in walker:
        late = (c.commit_time, c.id)
        for pid in c.parent_ids:
            if latest[pid][0] > late[0]:
                late = latest[pid]
        latest[c.id] = late
    return {
        cid: repo.committer_time(str(latest[pygit2.Oid(hex=repo.resolve(cid))][1]))
        for cid in starts
    }


def _seconds(c: pygit2.Commit) -> int:
    return c.commit_time


def exact_range(repo: GitRepo, commits: list[CommitFacts], *, since: str) -> list[CommitFacts]:
    """``commits`` (a walk of (since, tip], parents first) without the ancestors of ``since``
    in it. libgit2's walk, like ``git rev-list tip ^since``, stops marking ancestors of the
    hidden commit once only older commits are left to walk, so dates that go back (each within
    the tolerance) made it hand back ancestors of ``since`` as new. A commit with a parent in
    the range is in it; only the others are asked about: one on a straight history, each by a
    merge-base query up to :data:`ASK_EACH`, then all at once by one walk of ``since``'s
    history (a pusher's thousands of new roots would each cost a walk of it)."""
    inside: set[str] = set()
    older: set[str] | None = None
    asked = 0
    for c in commits:
        if any(p in inside for p in c.parents):
            inside.add(c.id)
            continue
        if older is None and asked >= ASK_EACH:
            older = repo.ancestor_ids(since)
        asked += 1
        if older is not None:
            if c.id not in older:
                inside.add(c.id)
        elif not repo.is_descendant(commit=since, ancestor=c.id):
            inside.add(c.id)
    return commits if len(inside) == len(commits) else [c for c in commits if c.id in inside]


class TrustBlobs(Mapping[str, bytes]):
    """Trust blobs read when ``decide`` asks for one, not every blob of the range up front: a
    push of a few hundred KiB (thousands of distinct 1 MiB trust files, each a small delta of
    the last) made the verify step read gigabytes before it refused the first commit."""

    def __init__(self, repo: GitRepo) -> None:
        self._repo = repo

    def __getitem__(self, blob_id: str) -> bytes:
        try:
            return self._repo.blob_by_id(blob_id)
        except InvalidFleetRepo as e:  # too large, or no blob: the commit's trust file is bad
            raise ValueError(str(e)) from None

    def __iter__(self) -> Iterator[str]:
        return iter(())  # not enumerable: decide only looks blobs up

    def __len__(self) -> int:
        return 0


def parents_first(
    repo: GitRepo, commits: list[CommitFacts], *, tip: str, since: str | None
) -> list[CommitFacts]:
    """``commits`` as ``repo.commit_facts`` orders them (parents before children), from the
    order an unsorted walk reached them in. Speed: the sorted walk reads every commit before it
    yields the first, and the workers would wait for that; unsorted, they start at once. A
    straight history has a single such order, its chain from the tip reversed; with a merge in
    the range libgit2's order is asked for (a second walk, ids only)."""
    by_id = {c.id: c for c in commits}
    chain: list[CommitFacts] = []
    cur: str | None = tip
    while cur in by_id:
        c = by_id[cur]
        if len(c.parents) > 1:
            break
        chain.append(c)
        cur = c.parents[0] if c.parents else None
    else:
        if len(chain) == len(by_id):
            chain.reverse()
            return chain
    ids = repo.topological_ids(since=since, rev=tip)
    if len(ids) != len(by_id) or not all(i in by_id for i in ids):  # pragma: no cover
        return repo.commit_facts(since=since, rev=tip, first_parent=False)
    return [by_id[i] for i in ids]
