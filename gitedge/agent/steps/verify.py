"""The verify and clock steps.

- verify: (last verified, fetched] through ``agent/steps/verifyrange.verify_range``; only a fully
  verified tip moves the last verified commit. Without a fetch this pass, the mirror's fetched
  ref is verified again (cheap: verified ids are cached), so a bad commit stays reported while
  offline.
- clock: the site clock is trusted only when it reads no earlier than the newest verified
  commit (``core/passrules.clock_trusted``); untrusted, every window counts as closed.
"""

from __future__ import annotations

import logging
from datetime import datetime

from gitedge.adapters.state import LastVerified
from gitedge.agent.passtypes import Clocked, Context, StepResult, Synced, Verified
from gitedge.agent.steps.verifyrange import verify_range
from gitedge.core.passrules import clock_trusted
from gitedge.core.status import conditions as cond
from gitedge.core.status.conditions import Condition
from gitedge.core.timefmt import iso_z
from gitedge.errors import SourceUnavailable, StateMoved, Transient

log = logging.getLogger("gitedge.agent")

__all__ = ["clock_step", "last_verified_tip", "verify_step"]


def last_verified_tip(ctx: Context) -> str | None:
    """The commit a pass works from when its verify step did not run through."""
    last = ctx.state.last_verified
    return last.commit if last else None


def verify_step(ctx: Context, synced: Synced | None, *, now: datetime) -> StepResult[Verified]:
    """Verify what ``synced`` fetched (None: the mirror's fetched ref) from the last verified
    commit on (module docstring)."""
    tip = last_verified_tip(ctx)
    rev = synced.fetched if synced is not None else None
    if rev is None:
        rev = ctx.git.fetched_tip(ctx.config.source.branch)
    if rev is None:
        if tip is None:
            raise SourceUnavailable("nothing fetched yet: no verified commit to work from")
        ok = Condition(cond.SOURCE_VERIFIED, "True", "LastVerified", f"at {tip}")
        return StepResult((ok,), Verified(tip))
    decision = verify_range(
        ctx.git,
        bootstrap=ctx.bootstrap,
        rev=rev,
        since=tip,
        cache=ctx.verified,
        max_range_bytes=ctx.config.source.limits.max_range_bytes,
    )
    new = len(decision.accepted)
    if decision.tip != tip:
        try:
            ctx.state.record_verified(
                LastVerified(
                    commit=decision.tip,
                    committed_at=ctx.git.committer_time(decision.tip),
                    verified_at=now,
                    policy_source=decision.policy.source,
                    policy_digest=decision.policy.digest,
                ),
                # unless another process (bundle import, accept-history) moved it meanwhile: the
                # range was verified from ``tip``, and overwriting a newer record skips the
                # rollback rule: the next pass verifies again, from the new record
                replacing=tip,
            )
        except StateMoved as e:  # a retry, not a stall: nothing is wrong with the fleet repo
            raise Transient(str(e)) from None
        log.info("verified %d new commit(s) up to %s", new, decision.tip)
    msg = f"{decision.tip} verified ({new} new); trust in force: {decision.policy.source}"
    return StepResult(
        (
            Condition(cond.SOURCE_VERIFIED, "True", "Verified", msg),
            Condition(cond.ROLLBACK_REFUSED, "False", "Descends", "the branch descends"),
        ),
        Verified(decision.tip, new),
    )


def clock_step(ctx: Context, *, now: datetime) -> StepResult[Clocked]:
    last = ctx.state.last_verified
    newest = last.committed_at if last else None
    if clock_trusted(now=now, newest_commit=newest):
        msg = (
            f"the clock reads {iso_z(now)}, not before the newest verified commit ({iso_z(newest)})"
            if newest
            else f"the clock reads {iso_z(now)}; no verified commit to compare it with yet"
        )
        return StepResult(
            (Condition(cond.CLOCK_UNTRUSTED, "False", "ClockSane", msg),), Clocked(ok=True)
        )
    msg = (
        f"the clock reads {iso_z(now)}, before the newest verified commit "
        f"({iso_z(newest) if newest else '?'}): every window is treated as closed"
    )
    return StepResult(
        (Condition(cond.CLOCK_UNTRUSTED, "True", "ClockUntrusted", msg),), Clocked(ok=False)
    )
