"""What to do to the cluster now: SUC Plan actions from the planned components and a snapshot.

Pure: no I/O, the time is a parameter. The agent reads a :class:`ClusterSnapshot` (nodes and the
gitedge-owned SUC Plans with their status), plans from the cluster's *actual* K3s version
(:func:`cluster_facts`: the lowest kubelet version wins, so the path is recomputed from reality
on every pass), and :func:`decide` says which Plans to create, update or delete, and why nothing
else happens. The rules:

- A node is done with a Plan when it carries ``plan.upgrade.cattle.io/<plan>=<status.latestHash>``
  (or ``disabled``) and the Plan's status is the one SUC writes for its current spec
  (:func:`~gitedge.core.rollout.clusterstate.plan_progress`: munged latestVersion, latestHash as
  SUC's DigestStatus computes it); a step is done when every node its Plans select is done (server
  *and* agent Plans; a Plan selecting no node is done).
- One step at a time: a step still running is never replaced by the next one. The K3s path
  advances to the next minor only when the step's Plans are done *and* every node reports the
  step's version (both signals: stale status and lagging kubelets both hold the advance back).
  A running step may be corrected in place (same K3s minor, same OS image), so a broken step can
  be fixed by a signed commit without waiting for it to finish.
- Control plane first, within a step: a worker Plan (``gitedge-k3s-agent``, ``gitedge-os-agent``)
  is written only once its control-plane Plan (``LEADER_PLANS``) has the step's spec and is
  complete, so control-plane nodes go one at a time (their Plans have concurrency 1) and never
  together with workers, and worker Jobs do not wait in ``prepare`` against their deadline.
- Read-back (:mod:`gitedge.core.rollout.readback`): a component with a Plan whose ``spec.window``
the API
  server pruned (SUC older than v0.15.0: nothing would gate its Jobs) is held, no Plan of it
  created or changed, ``Applying`` False ``WindowPruned``; ``PlansAsWritten`` also reports a Job
  deadline SUC clamped.
- ``rollout.order`` (default ``[k3s, os]``): a component starts a step only when every component
  before it is complete and no other component has a step running.
- Windows: no Plan is created or advanced while the component's window is closed (or the clock
  is untrusted); a step already running is left to SUC, which finishes what it started.
- Plans labelled ``app.kubernetes.io/managed-by=gitedge`` are the only ones ever touched: those
  of a component no longer targeted (removed or suspended) and those with names this agent does
  not render are deleted, in or out of the window (deleting starts nothing on a node), but not
  while SUC runs a job for them (``status.applying``): a job cut off mid-upgrade is worse than
  one more node upgraded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gitedge.core.rollout.clusterstate import ClusterSnapshot, NodeFacts, PlanState, plan_progress
from gitedge.core.rollout.planmanifests import Action, differs, merge_for_update, step_key
from gitedge.core.rollout.planning import Plan
from gitedge.core.rollout.readback import WINDOW_PRUNED, plans_as_written, pruned_text, stamp_window
from gitedge.core.rollout.stepadmission import admit_next, admitted_manifest, window_gate
from gitedge.core.rollout.stepstatus import (
    DEFAULT_ORDER,
    OPEN_BUT_SHORT_RETRY,
    PLAN_COMPONENT,
    Component,
    ComponentStatus,
    ComponentView,
    applying_conditions,
    lagging_nodes,
    retry_after,
    window_text,
)
from gitedge.core.rollout.sucplans import (
    COMPONENT_LABEL,
    LEADER_PLANS,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    STEP_ANNOTATION,
    Site,
)
from gitedge.core.status.conditions import UP_TO_DATE, Condition

__all__ = ["Decision", "decide", "windows_open"]


@dataclass(frozen=True)
class Decision:
    actions: tuple[Action, ...]
    components: tuple[ComponentStatus, ...]
    conditions: tuple[Condition, ...]
    retry_after: float | None = None  # seconds until a closed window that holds work opens


def windows_open(plan: Plan, *, clock_trusted: bool = True) -> dict[Component, bool]:
    """Whether each component's window is open, as planned (no window: always open); every
    window is closed when the clock is not trusted."""
    k3s = plan.k3s.window if plan.k3s else None
    os = plan.os.window if plan.os else None
    return {
        "k3s": clock_trusted and (k3s is None or k3s.open),
        "os": clock_trusted and (os is None or os.open),
    }


def _order(plan: Plan) -> tuple[Component, ...]:
    orders = {tuple(c.rollout.order) for c in (plan.k3s, plan.os) if c is not None}
    if len(orders) == 1:
        return orders.pop()
    return DEFAULT_ORDER  # none, or the two targets disagree: the documented default


def decide(
    *,
    plan: Plan,
    snapshot: ClusterSnapshot,
    now: datetime,
    site: Site,
    windows: Mapping[Component, bool] | None = None,
    clock_trusted: bool = True,
    sequence_workers: bool = True,
    held: Mapping[Component, str] | None = None,
) -> Decision:
    """The actions that move the cluster one step on, and the ``Applying`` and
    ``WindowClosed`` conditions that say where it stands (see the module docstring).

    ``plan`` must have been made from :func:`cluster_facts` of the same snapshot; ``windows``
    defaults to :func:`windows_open` of the plan. ``snapshot.plans`` holds gitedge-owned Plans
    only (listed by the ``managed-by`` label); any other is ignored, never deleted.
    ``sequence_workers`` False (print mode: no cluster to read the control plane's progress
    from) decides every Plan of a step at once, a worker Plan's reason naming the Plan it must
    follow, and admits no batch (core/rollout/admission.py): the Plans are printed as rendered.
    ``held`` names components refused this pass (core/delivery/requiredigest.py: images named by tag
    only), with why: no Plan of theirs is created, changed or deleted; they wait, and so does
    whatever ``rollout.order`` puts after them."""
    is_open: dict[Component, bool] = dict(windows) if windows is not None else windows_open(plan)
    if not clock_trusted:
        is_open = {"k3s": False, "os": False}
    nodes = snapshot.nodes
    owned = {p.name: p for p in snapshot.plans if p.labels.get(MANAGED_BY_LABEL) == MANAGED_BY}
    desired: dict[str, list[Mapping[str, Any]]] = {"k3s": [], "os": []}
    for m in plan.manifests:
        comp = m["metadata"]["labels"].get(COMPONENT_LABEL)
        if comp in desired:
            desired[comp].append(m)
    actions: list[Action] = []
    for name, p in sorted(owned.items()):
        if name not in PLAN_COMPONENT:
            _delete(
                p,
                p.labels.get(COMPONENT_LABEL, "?"),
                "a gitedge Plan this agent does not render",
                site,
                actions,
            )
    comps: dict[Component, ComponentView] = {}
    for comp in DEFAULT_ORDER:
        planned = plan.k3s if comp == "k3s" else plan.os
        have = {n: p for n, p in owned.items() if PLAN_COMPONENT.get(n) == comp}
        comps[comp] = ComponentView(
            name=comp,
            targeted=planned is not None,
            window=planned.window if planned is not None else None,
            open=is_open.get(comp, True),
            want=desired[comp],
            have=have,
            progress=[plan_progress(p, nodes) for _, p in sorted(have.items())],
            carries=plan.os.steps[0].k3s if comp == "os" and plan.os and plan.os.steps else None,
        )

    statuses: list[ComponentStatus] = []
    blocked: Component | None = None
    for name in _order(plan):
        c = comps[name]
        if held and name in held and c.targeted:
            statuses.append(ComponentStatus(name, "waiting", "DigestRequired", held[name]))
            blocked = blocked or name
            continue
        status = _one(
            c,
            comps,
            blocked=blocked,
            nodes=nodes,
            now=now,
            site=site,
            clock_trusted=clock_trusted,
            actions=actions,
            sequence_workers=sequence_workers,
        )
        statuses.append(status)
        if not status.complete and blocked is None:
            blocked = name
    return Decision(
        actions=tuple(actions),
        components=tuple(statuses),
        conditions=(
            *applying_conditions(statuses, actions, clock_trusted=clock_trusted),
            plans_as_written(list(owned.values()), snapshot.jobs),
        ),
        retry_after=retry_after(comps, statuses, now) if clock_trusted else None,
    )


def _one(
    c: ComponentView,
    comps: Mapping[Component, ComponentView],
    *,
    blocked: Component | None,
    nodes: Sequence[NodeFacts],
    now: datetime,
    site: Site,
    clock_trusted: bool,
    actions: list[Action],
    sequence_workers: bool = True,
) -> ComponentStatus:
    name = c.name
    if not c.targeted:
        kept = [
            p
            for _, p in sorted(c.have.items())
            if not _delete(p, name, f"{name} is no longer targeted", site, actions)
        ]
        if kept:
            jobs = ", ".join(f"{p.name} on {', '.join(p.applying)}" for p in kept)
            return ComponentStatus(
                name,
                "running",
                "StepRunning",
                f"{name} is no longer targeted; removed once SUC's jobs finish ({jobs})",
            )
        return ComponentStatus(name, "untargeted", "NotTargeted", f"{name}: no target")
    fleet_window = c.window is not None and c.window.spec is not None  # admission writes one
    wants_window = {
        m["metadata"]["name"] for m in c.want if fleet_window or m["spec"].get("window") is not None
    }
    pruned = [p.name for p in c.have.values() if p.window_pruned and p.name in wants_window]
    if pruned:
        return ComponentStatus(name, "waiting", WINDOW_PRUNED, f"{name}: {pruned_text(pruned)}")
    if not c.want:  # the K3s path is empty (the cluster runs the target) / the OS is current
        if c.in_flight:
            if not sequence_workers:  # print mode: no admission (nothing read back)
                return ComponentStatus(name, "running", "StepRunning", f"{name}: {c.describe()}")
            return admit_next(
                c,
                nodes=nodes,
                now=now,
                site=site,
                actions=actions,
                step=None,
                clock_trusted=clock_trusted,
            )
        return ComponentStatus(name, "up-to-date", UP_TO_DATE, f"{name}: up to date")
    step = str(c.want[0]["metadata"]["annotations"].get(STEP_ANNOTATION))
    changes = [(m, c.have.get(m["metadata"]["name"])) for m in c.want]
    changes = [(m, h) for m, h in changes if differs(h, m)]
    if sequence_workers:
        changes = _control_plane_first(c, changes)
    if not changes:
        if c.in_flight:
            if not sequence_workers:  # print mode: no admission (nothing read back)
                text = f"{name} {step}: {c.describe()}"
                return ComponentStatus(name, "running", "StepRunning", text, step)
            return admit_next(
                c,
                nodes=nodes,
                now=now,
                site=site,
                actions=actions,
                step=step,
                clock_trusted=clock_trusted,
            )
        lagging = lagging_nodes(nodes, c.carries) if name == "os" and c.carries else []
        if name == "os" and not lagging:
            return ComponentStatus(
                name, "up-to-date", UP_TO_DATE, f"os: {step} on every node", step
            )
        if name == "os":  # the image carries K3s: the next OS step waits for the kubelets
            text = f"os {step}: Plans done, waiting for {', '.join(lagging)} to report K3s"
            return ComponentStatus(name, "waiting", "WaitingForNodes", f"{text} {c.carries}", step)
        lagging = lagging_nodes(nodes, step)
        return ComponentStatus(
            name,
            "waiting",
            "WaitingForNodes",
            f"k3s {step}: Plans done, waiting for {', '.join(lagging) or 'nodes'} to report it",
            step,
        )
    running_steps = {step_key(name, p.step) for p in c.have.values()}
    if c.in_flight and running_steps != {step_key(name, step)}:
        current = ", ".join(sorted(str(p.step) for p in c.have.values()))
        return ComponentStatus(
            name,
            "running",
            "StepRunning",
            f"{name} {current} still running ({c.describe()}); {step} after it",
            step,
        )
    under = sorted(h.name for m, h in changes if h is not None and h.applying)
    if under and sequence_workers:
        # SUC deletes a running Job whose Plan's version changes and starts the new one at once,
        # gate skipped (handle_batch.go, handle_upgrade.go): change a Plan only between batches
        return ComponentStatus(
            name,
            "running",
            "StepRunning",
            f"{name} {step}: {', '.join(under)} changed once SUC's running Jobs end "
            f"({c.describe()})",
            step,
        )
    if blocked is not None:
        return ComponentStatus(
            name,
            "waiting",
            "WaitingForOrder",
            f"{name} {step} waits for {blocked} to complete (rollout.order)",
            step,
        )
    busy = [o for o, other in comps.items() if o != name and other.targeted and other.in_flight]
    if busy:
        return ComponentStatus(
            name,
            "waiting",
            "WaitingForOrder",
            f"{name} {step} waits for the running {busy[0]} step to finish",
            step,
        )
    if not nodes:
        return ComponentStatus(
            name, "waiting", "NoNodes", f"{name} {step}: the cluster has no nodes", step
        )
    first = window_gate(c, changes[0][0], now) if sequence_workers else {}
    if not c.open or (c.window is not None and c.window.spec is not None and first is None):
        text = window_text(c.window if clock_trusted else None, now)
        if c.open and c.window is not None:  # open, not long enough now: look again soon
            text = f"window {c.window.name!r} closes before a Job started now would end"
            c.retry.append(OPEN_BUT_SHORT_RETRY)
        return ComponentStatus(name, "waiting", "WaitingForWindow", f"{name} {step}: {text}", step)
    names = {m["metadata"]["name"] for m, _ in changes}
    for m, have in changes:
        mname = m["metadata"]["name"]
        if sequence_workers:  # print mode prints the Plans as rendered: nobody admits later
            m = admitted_manifest(c, m, have, nodes=nodes, now=now, fresh=names, fallback=first)
        after = ""
        if not sequence_workers and mname in LEADER_PLANS:
            after = f" (apply once {LEADER_PLANS[mname]} is complete)"
        if have is None:
            actions.append(
                Action(
                    "create",
                    mname,
                    site.namespace,
                    name,
                    f"start {name} step {step}{after}",
                    manifest=stamp_window(m),
                )
            )
        else:
            live = {
                "metadata": {
                    "labels": dict(have.labels),
                    "annotations": dict(have.annotations),
                    "resourceVersion": have.resource_version,
                }
            }
            verb = "advance to" if step_key(name, have.step) != step_key(name, step) else "update"
            manifest = stamp_window(merge_for_update(m, live))
            actions.append(
                Action(
                    "update",
                    mname,
                    site.namespace,
                    name,
                    f"{verb} {name} step {step}",
                    manifest=manifest,
                    resource_version=have.resource_version,
                )
            )
    return ComponentStatus(name, "started", "StepStarted", f"{name}: step {step} started", step)


def _control_plane_first(
    c: ComponentView, changes: list[tuple[Mapping[str, Any], PlanState | None]]
) -> list[tuple[Mapping[str, Any], PlanState | None]]:
    """``changes`` without the worker Plans whose control-plane Plan is being written now or
    is not complete yet (see the module docstring)."""
    changed = {m["metadata"]["name"] for m, _ in changes}
    wanted = {m["metadata"]["name"] for m in c.want}
    progress = {p.plan: p for p in c.progress}
    out = []
    for m, have in changes:
        leader = LEADER_PLANS.get(m["metadata"]["name"])
        if leader is not None and leader in wanted:
            done = leader in progress and progress[leader].complete
            if leader in changed or not done:
                continue
        out.append((m, have))
    return out


def _delete(p: PlanState, component: str, reason: str, site: Site, actions: list[Action]) -> bool:
    """Delete ``p`` unless SUC runs a job for it now; True when the delete was decided."""
    if p.applying:
        return False
    actions.append(
        Action(
            "delete", p.name, site.namespace, component, reason, resource_version=p.resource_version
        )
    )
    return True
