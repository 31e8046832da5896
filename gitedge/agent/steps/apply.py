"""The apply step of a pass, around :func:`~gitedge.agent.steps.applyplans.apply_step`: only with
every image of the path in the cache, every signature judged again from the cache, then the plan the
mirror step mirrored applied to a fresh read of the cluster (planned again only when the cluster
changed since the plan step); the step each action starts is recorded before it is sent, and a
step the cluster runs now is recorded done.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime

from gitedge.adapters.images.mirroring import Mirror
from gitedge.adapters.trust.imagesigs import signer_keys
from gitedge.agent.passtypes import Applied, Clocked, Context, Mirrored, Planned, StepResult
from gitedge.agent.steps.applyplans import apply_step
from gitedge.agent.steps.imagetrust import check_needed, fleet_named
from gitedge.agent.steps.mirror import cache_location
from gitedge.agent.steps.plan import site_of
from gitedge.core.delivery.requiredigest import plan_unpinned
from gitedge.core.fleet.versions import K3sVersion
from gitedge.core.passrules import same_images
from gitedge.core.rollout.clusterstate import ClusterSnapshot
from gitedge.core.rollout.planmanifests import Action
from gitedge.core.rollout.planning import Plan
from gitedge.errors import GitEdgeError, Transient, Waiting

log = logging.getLogger("gitedge.agent")

__all__ = ["apply_planned"]


def apply_planned(
    ctx: Context,
    planned: Planned | None,
    mirrored: Mirrored | None,
    clock: Clocked | None,
    *,
    now: datetime,
) -> StepResult[Applied]:
    if planned is None or planned.plan is None:
        raise Waiting("no plan to apply")
    if mirrored is None or not mirrored.complete:
        raise Waiting("waiting for every image of the path to be in the cache")
    _check_signatures(ctx, planned, now=now)
    c = ctx.config.cluster

    def starting(action: Action) -> None:
        if ctx.stop.is_set():
            raise Transient("stopping: apply step interrupted")
        step = _step_of(action)
        if action.verb != "delete" and step:
            ctx.state.record_step_started(component=action.component, step=step, at=now)

    def check(again: Plan) -> None:  # a plan made again may need no image the pass lacks
        same_images(planned.needed, again, held=plan_unpinned(planned.fleet, again))

    r = apply_step(
        api=ctx.cluster,
        fleet=planned.fleet,
        cluster=c.name,
        labels=c.labels,
        site=site_of(ctx),
        now=now,
        clock_trusted=clock.ok if clock is not None else True,
        os_image=c.status.os_image,
        before=starting,
        planned_check=check,
        planned=planned.plan,
        planned_facts=planned.facts,
    )
    for action in r.performed:
        log.info("%s %s: %s", action.verb, action.name, action.reason)
    if r.error is None and r.decision is not None:
        up = [(s.component, s.step) for s in r.decision.components if s.state == "up-to-date"]
        _record_done(ctx, r.snapshot or planned.snapshot, up, now=now)
    if r.error is not None:  # the runner says why, in Applying (and RollbackRefused)
        return StepResult(output=Applied(r), error=r.error)
    return StepResult(r.conditions, Applied(r), retry_after=r.retry_after)


def _check_signatures(ctx: Context, planned: Planned, *, now: datetime) -> None:
    """Before any Plan is written: every image's signature judged again from the cache."""
    keys = signer_keys(planned.fleet)
    if keys:
        with Mirror(hosts=ctx.hosts, retry=ctx.retry) as mirror:
            named = [n for n in planned.needed if fleet_named(n)]
            check_needed(
                mirror,
                needed=named,
                keys=keys,
                state=ctx.state,
                now=now,
                cache_location=lambda ref: cache_location(ctx, ref),
            )


def _record_done(
    ctx: Context,
    snapshot: ClusterSnapshot,
    up_to_date: Sequence[tuple[str, str | None]],
    *,
    now: datetime,
) -> None:
    running = None
    if snapshot.nodes:
        try:
            running = min(K3sVersion.parse(n.kubelet_version) for n in snapshot.nodes)
        except GitEdgeError:
            running = None
    for component, step, _, finished in ctx.state.applied():
        if finished is not None:
            continue
        done = (component, step) in up_to_date
        if component == "k3s" and running is not None:
            with contextlib.suppress(GitEdgeError):
                done = done or K3sVersion.parse(step) <= running
        if done:
            ctx.state.record_step_done(component=component, step=step, at=now)


def _step_of(action: Action) -> str | None:
    meta = (action.manifest or {}).get("metadata", {})
    step = (meta.get("annotations") or {}).get("gitedge.io/step")
    return str(step) if step else None
