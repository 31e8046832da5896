"""The plan step: the fleet at the verified tip, the cluster read once, the pure plan
(``core/rollout/planning``), and the images it needs (the whole K3s path, the OS image, SUC's
kubectl).

The plan it makes is the one the mirror step mirrors and the apply step applies: the apply
step plans again only when the cluster changed since this read (``agent/steps/apply.py``).
"""

from __future__ import annotations

from datetime import datetime

from gitedge.adapters.state import DESIRED
from gitedge.agent.passtypes import Context, Planned, StepResult
from gitedge.agent.steps.compat import understood_fleet
from gitedge.agent.steps.sucimages import suc_needs
from gitedge.core.delivery.requiredigest import pins_condition, plan_unpinned
from gitedge.core.images.refs import ImageRef, cache_host
from gitedge.core.passrules import needed_images
from gitedge.core.rollout.clusterstate import ClusterSnapshot, cluster_facts
from gitedge.core.rollout.planning import ClusterFacts, plan_json
from gitedge.core.rollout.planning import plan as make_plan
from gitedge.core.rollout.sucplans import Site
from gitedge.core.status.conditions import PLANNED, Condition
from gitedge.errors import GitEdgeError, SourceUnavailable

__all__ = ["facts_of", "plan_step", "site_of"]


def site_of(ctx: Context) -> Site:
    """Where the Plans go and the digests the cache holds for tagged images."""
    cache = ctx.config.registry.cache
    digests = {}
    for m in ctx.state.mirrored().values():
        ref = ImageRef.parse(m.source)
        if ref.tag and not ref.digest:
            digests[f"{ref.name}:{ref.tag}"] = m.digest
    return Site(
        namespace=ctx.config.apply.namespace,
        cache=cache_host(cache.url) if cache else None,
        digests=digests,
    )


def facts_of(ctx: Context, snapshot: ClusterSnapshot) -> ClusterFacts:
    """What the planner sees of the cluster: its configured name and labels, its nodes."""
    c = ctx.config.cluster
    return cluster_facts(
        name=c.name, labels=c.labels, nodes=snapshot.nodes, os_image=c.status.os_image
    )


def plan_step(ctx: Context, tip: str | None, *, now: datetime) -> StepResult[Planned]:
    """Plan from the fleet at ``tip`` (the last verified commit)."""
    if tip is None:
        raise SourceUnavailable("no verified commit yet: nothing to plan from")
    commit, fleet, too_old = understood_fleet(
        git=ctx.git, state=ctx.state, tip=tip, subdir=ctx.config.source.path
    )
    snapshot = ctx.cluster.snapshot()
    facts = facts_of(ctx, snapshot)
    try:
        plan = make_plan(fleet, facts, now=now, site=site_of(ctx))
    except GitEdgeError as e:  # what was read stays in the pass (status, report)
        return StepResult(output=Planned(fleet, None, snapshot, facts), error=e)
    refused = plan_unpinned(fleet, plan)
    needed = tuple(n for n in needed_images(plan) if n.component not in refused)
    kubectl, suc = suc_needs(ctx, plan, others=len(needed))  # + SUC's kubectl image
    ctx.state.put(DESIRED, {"commit": commit, **plan_json(plan)})
    out = Planned(fleet, plan, snapshot, facts, needed + kubectl, suc)
    if too_old is not None:
        reason = str(too_old).split("\n")[0]
        return StepResult((Condition(PLANNED, "False", "AgentTooOld", reason),), out)
    parts = []
    if plan.k3s:
        parts.append(f"k3s {plan.k3s.version} via {' -> '.join(plan.k3s.path) or '-'}")
    if plan.os:
        parts.append(f"os {plan.os.image}")
    ok = Condition(PLANNED, "True", "Planned", "; ".join(parts) or "no target")
    return StepResult((ok, pins_condition(refused)), out)
