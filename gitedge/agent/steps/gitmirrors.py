"""The sync step with ``source.mirrors``: Git URLs a site fetches from for the bytes.

A mirror is as authentic as the origin (every commit is verified by signature in the verify
step, whoever served it) but maybe not as fresh. So:

1. each mirror, in order, is fetched into its own ref ``refs/gitedge/mirrors/<i>/<branch>``
   (a mirror that fails is noted and skipped);
2. then the origin is fetched as without mirrors: its ref decides the branch, and libgit2 asks
   it only for what the mirrors did not bring (nothing at all when a mirror is current). A
   stale mirror therefore never holds a site on an older tip while the origin answers;
3. only when the origin does not answer does a mirror's tip stand in, and only one that
   descends from the commit fetched before (a stale mirror never moves the branch back;
   a mirror that diverges is not followed);
4. the ``MirrorsCurrent`` condition (and the ``gitedge_mirror_lag_commits`` gauge) says how
   far each mirror lags behind the origin, or that it diverges or did not answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from gitedge.adapters.git.source import GitMirror
from gitedge.adapters.git.transport import redact_url
from gitedge.core.status.conditions import MIRRORS_CURRENT, SOURCE_REACHABLE, Condition
from gitedge.errors import SourceUnavailable, scrub

log = logging.getLogger("gitedge.agent")

MIRROR_PREFIX = "refs/gitedge/mirrors/"

__all__ = ["MIRRORS_CURRENT", "MirrorLag", "MirrorSync", "sync_with_mirrors"]


@dataclass(frozen=True)
class MirrorLag:
    """One mirror as this pass found it."""

    url: str  # redacted
    tip: str | None  # None: it did not answer
    behind: int | None = None  # commits the origin's tip has that the mirror's lacks
    diverged: bool = False  # the mirror's tip is not in the origin's history
    error: str | None = None

    def text(self) -> str:
        if self.tip is None:
            return f"mirror {self.url} did not answer: {self.error}"
        if self.diverged:
            return f"mirror {self.url} at {self.tip} is not in the origin's history"
        if self.behind is None:
            return f"mirror {self.url} at {self.tip} (the origin not checked)"
        if self.behind == 0:
            return f"mirror {self.url} is current"
        return f"mirror {self.url} lags {self.behind} commit(s) behind the origin"


@dataclass(frozen=True)
class MirrorSync:
    fetched: str
    conditions: list[Condition]
    lags: list[MirrorLag]


def sync_with_mirrors(
    git: GitMirror,
    *,
    origin: str,
    mirrors: tuple[str, ...],
    branch: str,
    fetch: Callable[[str, str | None], str],
) -> MirrorSync:
    """The sync step's fetch with mirrors; ``fetch(url, target)`` is ``GitMirror.fetch`` with
    the source's auth and limits (``target`` None: the fetched ref). Raises SourceUnavailable
    when neither the origin nor a usable mirror answered."""
    tips: list[tuple[str, str | None, str | None]] = []  # shown url, tip, error
    for i, url in enumerate(mirrors):
        shown = redact_url(url)
        try:
            tips.append((shown, fetch(url, f"{MIRROR_PREFIX}{i}/{branch}"), None))
        except SourceUnavailable as e:
            log.warning("mirror %s: %s", shown, scrub(str(e)))
            tips.append((shown, None, scrub(str(e), limit=300)))
    try:
        tip = fetch(origin, None)
    except SourceUnavailable as e:
        return _origin_down(git, branch=branch, tips=tips, why=scrub(str(e), limit=300))
    lags = [_lag(git, shown, t, err, origin_tip=tip) for shown, t, err in tips]
    reach = Condition(SOURCE_REACHABLE, "True", "Fetched", f"{branch} at {tip}")
    return MirrorSync(tip, [reach, _condition(lags)], lags)


def _lag(
    git: GitMirror, shown: str, tip: str | None, err: str | None, *, origin_tip: str
) -> MirrorLag:
    if tip is None:
        return MirrorLag(shown, None, error=err)
    if tip == origin_tip:
        return MirrorLag(shown, tip, behind=0)
    if not git.is_descendant(commit=origin_tip, ancestor=tip):
        return MirrorLag(shown, tip, diverged=True)
    return MirrorLag(shown, tip, behind=git.commits_ahead(origin_tip, tip))


def _origin_down(
    git: GitMirror, *, branch: str, tips: list[tuple[str, str | None, str | None]], why: str
) -> MirrorSync:
    if all(tip is None for _, tip, _ in tips):
        raise SourceUnavailable(f"the origin did not answer ({why}) and no mirror did")
    current = git.fetched_tip(branch)
    best, source = current, None
    for shown, tip, _ in tips:
        if tip is None or tip == best:
            continue
        if best is None or git.is_descendant(commit=tip, ancestor=best):
            best, source = tip, shown
    if best is None:  # only mirrors that diverge from... nothing: cannot happen; be safe
        raise SourceUnavailable(f"the origin did not answer ({why}); no mirror to follow")
    if best != current:
        git.set_fetched(branch, best)
    lags = [MirrorLag(s, t, error=e) for s, t, e in tips]
    where = f"from mirror {source}" if source else "(no mirror is newer)"
    msg = f"the origin did not answer ({why}); {branch} at {best} {where}, not checked against it"
    reach = Condition(SOURCE_REACHABLE, "False", "FetchedFromMirror", msg)
    return MirrorSync(best, [reach, _condition(lags)], lags)


def _condition(lags: list[MirrorLag]) -> Condition:
    bad = [m for m in lags if m.tip is None or m.diverged or m.behind != 0]
    if not bad:
        return Condition(MIRRORS_CURRENT, "True", "Current", "; ".join(m.text() for m in lags))
    reason = "Unchecked" if all(m.behind is None for m in lags if m.tip) else "Lagging"
    return Condition(MIRRORS_CURRENT, "False", reason, "; ".join(m.text() for m in bad))
