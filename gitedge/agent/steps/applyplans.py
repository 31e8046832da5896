"""The apply step: read the cluster, decide (pure), change the Plans, say what happened.

One pass: :meth:`Kube.snapshot` (nodes and gitedge's Plans) -> the cluster's facts from its nodes
(:func:`~gitedge.core.rollout.clusterstate.cluster_facts`: the lowest kubelet version is the running
K3s version, so the path is recomputed from reality every pass) -> the plan the mirror step mirrored
when those facts are the ones it was made from (its SUC Plans rendered again with the digests now
in the cache), else :func:`~gitedge.core.rollout.planning.plan` again ->
:func:`~gitedge.core.rollout.decision.decide` -> each decided action through the API, an Event per
change. A ``Conflict`` (a Plan changed between the read and the write) makes the pass start over
from a fresh read (and a fresh plan), a few times; any other API error stops the pass and is
reported in the ``Applying`` condition (reason: the API's word, ``Forbidden``,
``AlreadyExists``, ...), and in a Warning Event. A fleet that cannot be planned for this
cluster (no path through the minors, two targets in a tie) is reported the same way, with the
error's class as reason.

The step sets only its own conditions (``Applying``, ``WindowClosed``); :func:`report` folds
them, with the other steps', into the status ConfigMap and derives ``Ready`` once.

Nothing is remembered between passes: what to do next is read back from the cluster (the Plans'
specs and status, the nodes' labels and kubelet versions), so an agent killed at any point and
restarted decides the same thing again and never applies a step twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from gitedge.agent.clusters import PrintCluster
from gitedge.core.delivery.requiredigest import held_components
from gitedge.core.fleet.model import Fleet
from gitedge.core.rollout.clusterstate import ClusterSnapshot, cluster_facts
from gitedge.core.rollout.decision import Decision, decide
from gitedge.core.rollout.planmanifests import Action
from gitedge.core.rollout.planning import ClusterFacts, Plan, plan, render_next_steps
from gitedge.core.rollout.readback import plans_as_written, stored_problem
from gitedge.core.rollout.sucplans import Site
from gitedge.core.status.conditions import APPLYING, PLANS_AS_WRITTEN, Condition
from gitedge.core.timefmt import iso_z
from gitedge.errors import GitEdgeError, KubeApiError, Stalled

__all__ = ["ApplyResult", "ClusterApi", "apply_step", "report", "status_fields"]

ATTEMPTS = 3


class ClusterApi(Protocol):
    """What applying needs of a cluster: :class:`gitedge.adapters.kube.cluster.Kube` in ``suc``
    mode, :class:`gitedge.agent.clusters.PrintCluster` in ``print`` mode."""

    def snapshot(self) -> ClusterSnapshot: ...

    def execute(self, action: Action, *, now: datetime | None = None) -> object: ...

    def warn(self, reason: str, message: str, *, now: datetime) -> None: ...

    def write_status(
        self,
        updates: Iterable[Condition],
        *,
        now: datetime,
        fields: Mapping[str, Any] | None = None,
    ) -> list[Condition]: ...


@dataclass(frozen=True)
class ApplyResult:
    """What one pass did: the actions carried out, the conditions it sets, and the error that
    stopped it (None: it went through)."""

    conditions: tuple[Condition, ...]
    performed: tuple[Action, ...] = ()
    decision: Decision | None = None
    plan: Plan | None = None
    error: GitEdgeError | None = None
    snapshot: ClusterSnapshot | None = None  # the read the decision was made on

    @property
    def retry_after(self) -> float | None:
        return self.decision.retry_after if self.decision is not None else None


def _failed(reason: str, message: str, **kw: Any) -> ApplyResult:
    return ApplyResult(conditions=(Condition(APPLYING, "False", reason, message),), **kw)


def apply_step(
    *,
    api: ClusterApi,
    fleet: Fleet,
    cluster: str,
    labels: Mapping[str, str],
    site: Site,
    now: datetime,
    clock_trusted: bool = True,
    os_image: str | None = None,
    before: Callable[[Action], None] | None = None,
    planned_check: Callable[[Plan], None] | None = None,
    planned: Plan | None = None,
    planned_facts: ClusterFacts | None = None,
) -> ApplyResult:
    """One apply pass for ``cluster`` (its name and configured labels) at ``now``.

    ``site`` says where the Plans go and which images they use (namespace, cache, mirrored
    digests); only images already mirrored and verified should be passed in it. With
    ``clock_trusted`` False every window counts as closed. ``before`` is called with each action
    just before it is sent (the agent records the step it starts). A component whose images
    the fleet names by tag only under ``images.requireDigest`` is held
    (core/delivery/requiredigest.py). ``planned`` is the plan the pass mirrored, made from
    ``planned_facts``: applied as long as the fresh read gives the same facts. Otherwise (a node
    changed, a Conflict, or no plan given) the step plans again, and ``planned_check`` sees that
    plan before anything is decided; what it raises stops the step (the agent waits when that plan
    needs an image its mirror step did not bring and judge)."""
    performed: list[Action] = []
    for attempt in range(ATTEMPTS):
        try:
            snapshot = api.snapshot()
        except KubeApiError as e:
            return _failed(e.reason, f"cannot read the cluster: {e}", error=e)
        try:
            facts = cluster_facts(
                name=cluster, labels=labels, nodes=snapshot.nodes, os_image=os_image
            )
            if attempt == 0 and planned is not None and facts == planned_facts:
                # the mirrored plan, its SUC Plans rendered with the digests now in the cache
                manifests = render_next_steps(fleet, planned.os, planned.k3s, site=site)
                chosen = replace(planned, manifests=manifests)
            else:  # the cluster changed since the plan step (or a Plan did): plan again
                chosen = plan(fleet, facts, now=now, site=site)
                if planned_check is not None:
                    planned_check(chosen)
            decision = decide(
                plan=chosen,
                snapshot=snapshot,
                now=now,
                site=site,
                clock_trusted=clock_trusted,
                # a printed step is applied by hand: every Plan printed, workers marked
                sequence_workers=not isinstance(api, PrintCluster),
                held=held_components(fleet, chosen),
            )
        except Stalled as e:
            return _failed(type(e).__name__, str(e), error=e, snapshot=snapshot)
        try:
            for action in decision.actions:
                if before is not None:
                    before(action)
                stored = api.execute(action, now=now)  # and an Event about it
                performed.append(action)
                problem = (
                    stored_problem(action.manifest, stored)
                    if action.manifest is not None and isinstance(stored, Mapping)
                    else None
                )
                if problem is not None:  # read back: stop here, the next pass holds it
                    api.warn("PlanNotAsWritten", problem[1], now=now)
                    return _not_as_written(
                        problem, performed, decision=decision, plan=chosen, snapshot=snapshot
                    )
        except KubeApiError as e:
            if e.reason == "Conflict" and attempt + 1 < ATTEMPTS:
                continue  # a Plan changed under us: read again and decide again
            api.warn("ApplyFailed", str(e), now=now)
            return _failed(
                e.reason,
                f"{e}" + (f" (done before it: {_summary(performed)})" if performed else ""),
                error=e,
                performed=tuple(performed),
                decision=decision,
                plan=chosen,
                snapshot=snapshot,
            )
        return ApplyResult(
            conditions=decision.conditions,
            performed=tuple(performed),
            decision=decision,
            plan=chosen,
            snapshot=snapshot,
        )
    raise AssertionError("unreachable")  # pragma: no cover


def _not_as_written(
    problem: tuple[str, str],
    performed: list[Action],
    *,
    decision: Decision,
    plan: Plan,
    snapshot: ClusterSnapshot,
) -> ApplyResult:
    """The pass stopped on a Plan the API server stored other than written."""
    keep = [c for c in decision.conditions if c.type not in (APPLYING, PLANS_AS_WRITTEN)]
    conditions = (
        Condition(APPLYING, "False", *problem),
        *keep,
        plans_as_written(snapshot.plans, snapshot.jobs, stored=problem),
    )
    return ApplyResult(
        conditions=conditions,
        performed=tuple(performed),
        decision=decision,
        plan=plan,
        snapshot=snapshot,
    )


def _summary(actions: Iterable[Action]) -> str:
    return ", ".join(f"{a.verb} {a.name}" for a in actions)


def status_fields(result: ApplyResult) -> dict[str, Any]:
    """The facts the status ConfigMap shows next to the conditions: desired versions, the K3s
    path left, the step each component is at, and when a window that holds work opens."""
    out: dict[str, Any] = {}
    p = result.plan
    if p is None:
        return out
    steps = {s.component: s for s in result.decision.components} if result.decision else {}
    if p.k3s is not None:
        k3s = steps.get("k3s")
        out["k3s"] = {
            "target": p.k3s.target,
            "version": p.k3s.version,
            "running": p.k3s.current,
            "path": list(p.k3s.path),
            "state": k3s.state if k3s else None,
            "step": k3s.step if k3s else None,
            "nextOpen": iso_z(p.k3s.window.next_open) if p.k3s.window else None,
        }
    if p.os is not None:
        os = steps.get("os")
        out["os"] = {
            "target": p.os.target,
            "image": p.os.image,
            "state": os.state if os else None,
            "nextOpen": iso_z(p.os.window.next_open) if p.os.window else None,
        }
    return out


def report(
    api: ClusterApi,
    conditions: Iterable[Condition],
    *,
    now: datetime,
    fields: Mapping[str, Any] | None = None,
) -> list[Condition]:
    """Write the pass's conditions (every step's) to the status ConfigMap, ``Ready`` derived
    once; raises KubeApiError when even that cannot be written."""
    return api.write_status(conditions, now=now, fields=fields)
