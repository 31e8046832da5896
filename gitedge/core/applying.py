"""What to do to the cluster now: SUC Plan actions from the planned components and a snapshot.

Pure: no I/O, the time is a parameter. The agent reads a :class:`ClusterSnapshot` (nodes and the
gitedge-owned SUC Plans with their status), plans from the cluster's *actual* K3s version
(:func:`cluster_facts`: the lowest kubelet version wins, so the path is recomputed from reality
on every pass), and :func:`decide` says which Plans to create, update or delete, and why nothing
else happens. The rules:

- A node is done with a Plan when it carries ``plan.upgrade.cattle.io/<plan>=<status.latestHash>``
  (or ``disabled``) and the Plan's status is the one SUC writes for its current spec
  (:func:`~gitedge.core.clusterstate.plan_progress`: munged latestVersion, latestHash as SUC's
  DigestStatus computes it); a step is done when every node its Plans select is done (server
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
- Read-back (:mod:`gitedge.core.readback`): a component with a Plan whose ``spec.window`` the API
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

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from gitedge.core import admission as adm
from gitedge.core.clusterstate import (
    ClusterSnapshot,
    NodeFacts,
    PlanState,
    Progress,
    actual_k3s_version,
    cluster_facts,
    get_path,
    plan_progress,
    str_map,
)
from gitedge.core.conditions import APPLYING, UP_TO_DATE, WINDOW_CLOSED, Condition
from gitedge.core.planning import Plan, WindowView
from gitedge.core.readback import WINDOW_PRUNED, plans_as_written, pruned_text, stamp_window
from gitedge.core.suc import (
    AGENT_PLAN,
    API_VERSION,
    COMPONENT_LABEL,
    LEADER_PLANS,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    OS_AGENT_PLAN,
    OS_SERVER_PLAN,
    SERVER_PLAN,
    STEP_ANNOTATION,
    Site,
)
from gitedge.core.timefmt import iso_z
from gitedge.core.versions import K3sVersion
from gitedge.errors import VersionError

Component = Literal["k3s", "os"]
PLAN_COMPONENT: Mapping[str, Component] = {
    SERVER_PLAN: "k3s",
    AGENT_PLAN: "k3s",
    OS_SERVER_PLAN: "os",
    OS_AGENT_PLAN: "os",
}
DEFAULT_ORDER: tuple[Component, Component] = ("k3s", "os")
OPEN_BUT_SHORT_RETRY = 300.0  # s: a window open but too short now may allow a batch later

__all__ = [
    "Action",
    "ClusterSnapshot",
    "ComponentStatus",
    "Decision",
    "NodeFacts",
    "PlanState",
    "Progress",
    "actual_k3s_version",
    "cluster_facts",
    "decide",
    "merge_for_update",
    "plan_progress",
    "windows_open",
]


@dataclass(frozen=True)
class Action:
    """One change to make: ``create``/``update`` carry the whole Plan (an update also the
    ``resourceVersion`` it was decided on); ``delete`` the name and the version seen."""

    verb: Literal["create", "update", "delete"]
    name: str
    namespace: str
    component: str
    reason: str
    manifest: Mapping[str, Any] | None = None
    resource_version: str | None = None


State = Literal["untargeted", "up-to-date", "running", "started", "waiting"]


@dataclass(frozen=True)
class ComponentStatus:
    component: Component
    state: State
    reason: str
    message: str
    step: str | None = None

    @property
    def complete(self) -> bool:
        return self.state in ("untargeted", "up-to-date")


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


def _contains(live: object, want: object) -> bool:
    """``want`` is contained in ``live``: every key of a mapping (recursively), lists and
    scalars equal. Fields the API server defaults do not count as differences."""
    if isinstance(want, Mapping):
        return isinstance(live, Mapping) and all(
            k in live and _contains(live[k], v) for k, v in want.items()
        )
    if isinstance(want, list | tuple):
        return (
            isinstance(live, list | tuple)
            and len(live) == len(want)
            and all(_contains(a, b) for a, b in zip(live, want, strict=True))
        )
    return live == want


def _differs(have: PlanState | None, want: Mapping[str, Any]) -> bool:
    if have is None:
        return True
    meta = want.get("metadata", {})
    return not (
        _contains(have.labels, meta.get("labels", {}))
        and _contains(have.annotations, meta.get("annotations", {}))
        and _contains(_fleet_part(have.spec), _fleet_part(want.get("spec", {})))
    )


def _fleet_part(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A Plan spec without what admission sets per batch (its node entry and SUC window)."""
    out = dict(spec)
    out.pop("window", None)
    if "nodeSelector" in out:
        out["nodeSelector"] = adm.base_selector(spec)
    return out


def merge_for_update(desired: Mapping[str, Any], live: Mapping[str, Any]) -> dict[str, Any]:
    """The object to PUT: ``desired`` with the live object's other labels and annotations kept
    and its ``resourceVersion`` (a write on a stale version is a 409, never a lost update)."""
    out = copy.deepcopy(dict(desired))
    meta = out.setdefault("metadata", {})
    meta["labels"] = {**str_map(get_path(live, "metadata", "labels")), **meta.get("labels", {})}
    meta["annotations"] = {
        **str_map(get_path(live, "metadata", "annotations")),
        **meta.get("annotations", {}),
    }
    version = get_path(live, "metadata", "resourceVersion")
    if version:
        meta["resourceVersion"] = str(version)
    return out


def _step_key(component: Component, step: str | None) -> str | None:
    """What makes two steps the same step: the K3s minor, or the OS image."""
    if step is not None and component == "k3s":
        try:
            return K3sVersion.parse(step).minor_line
        except VersionError:
            return step
    return step


def _window_text(view: WindowView | None, now: datetime) -> str:
    if view is None:
        return "the clock is not trusted"
    if view.next_open is None:
        return f"window {view.name!r} is closed and never opens again"
    return f"window {view.name!r} is closed until {iso_z(view.next_open)}"


@dataclass
class _Comp:
    name: Component
    targeted: bool
    window: WindowView | None
    open: bool
    want: list[Mapping[str, Any]]
    have: dict[str, PlanState]
    progress: list[Progress]
    retry: list[float] = field(default_factory=list)  # seconds until a pass must look again
    carries: str | None = None  # the K3s the OS step's image carries (core/osk3s.py)

    @property
    def in_flight(self) -> bool:
        return any(not p.complete for p in self.progress)

    def describe(self) -> str:
        return "; ".join(p.describe() for p in self.progress)


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
    follow, and admits no batch (core/admission.py): the Plans are printed as rendered.
    ``held`` names components refused this pass (core/pins.py: images named by tag only), with
    why: no Plan of theirs is created, changed or deleted; they wait, and so does whatever
    ``rollout.order`` puts after them."""
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
    comps: dict[Component, _Comp] = {}
    for comp in DEFAULT_ORDER:
        planned = plan.k3s if comp == "k3s" else plan.os
        have = {n: p for n, p in owned.items() if PLAN_COMPONENT.get(n) == comp}
        comps[comp] = _Comp(
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
            *_conditions(statuses, actions, clock_trusted=clock_trusted),
            plans_as_written(list(owned.values()), snapshot.jobs),
        ),
        retry_after=_retry_after(comps, statuses, now) if clock_trusted else None,
    )


def _one(
    c: _Comp,
    comps: Mapping[Component, _Comp],
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
            return _admit_next(
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
    changes = [(m, h) for m, h in changes if _differs(h, m)]
    if sequence_workers:
        changes = _control_plane_first(c, changes)
    if not changes:
        if c.in_flight:
            if not sequence_workers:  # print mode: no admission (nothing read back)
                text = f"{name} {step}: {c.describe()}"
                return ComponentStatus(name, "running", "StepRunning", text, step)
            return _admit_next(
                c,
                nodes=nodes,
                now=now,
                site=site,
                actions=actions,
                step=step,
                clock_trusted=clock_trusted,
            )
        lagging = _lagging(nodes, c.carries) if name == "os" and c.carries else []
        if name == "os" and not lagging:
            return ComponentStatus(
                name, "up-to-date", UP_TO_DATE, f"os: {step} on every node", step
            )
        if name == "os":  # the image carries K3s: the next OS step waits for the kubelets
            text = f"os {step}: Plans done, waiting for {', '.join(lagging)} to report K3s"
            return ComponentStatus(name, "waiting", "WaitingForNodes", f"{text} {c.carries}", step)
        lagging = _lagging(nodes, step)
        return ComponentStatus(
            name,
            "waiting",
            "WaitingForNodes",
            f"k3s {step}: Plans done, waiting for {', '.join(lagging) or 'nodes'} to report it",
            step,
        )
    running_steps = {_step_key(name, p.step) for p in c.have.values()}
    if c.in_flight and running_steps != {_step_key(name, step)}:
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
    first = _gate(c, changes[0][0], now) if sequence_workers else {}
    if not c.open or (c.window is not None and c.window.spec is not None and first is None):
        text = _window_text(c.window if clock_trusted else None, now)
        if c.open and c.window is not None:  # open, not long enough now: look again soon
            text = f"window {c.window.name!r} closes before a Job started now would end"
            c.retry.append(OPEN_BUT_SHORT_RETRY)
        return ComponentStatus(name, "waiting", "WaitingForWindow", f"{name} {step}: {text}", step)
    names = {m["metadata"]["name"] for m, _ in changes}
    for m, have in changes:
        mname = m["metadata"]["name"]
        if sequence_workers:  # print mode prints the Plans as rendered: nobody admits later
            m = _admitted_manifest(c, m, have, nodes=nodes, now=now, fresh=names, fallback=first)
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
            verb = "advance to" if _step_key(name, have.step) != _step_key(name, step) else "update"
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
    c: _Comp, changes: list[tuple[Mapping[str, Any], PlanState | None]]
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


def _lagging(nodes: Sequence[NodeFacts], step: str) -> list[str]:
    want = K3sVersion.parse(step)
    out = []
    for n in nodes:
        try:
            if K3sVersion.parse(n.kubelet_version) < want:
                out.append(f"{n.name} ({n.kubelet_version})")
        except VersionError:
            out.append(n.name)
    return out


def _conditions(
    statuses: Sequence[ComponentStatus], actions: Sequence[Action], *, clock_trusted: bool
) -> tuple[Condition, ...]:
    message = "; ".join(s.message for s in statuses if s.state != "untargeted") or "no target"
    deleted = [a.name for a in actions if a.verb == "delete"]
    if deleted:
        message += f"; removing {', '.join(deleted)}"
    started = [s for s in statuses if s.state == "started"]
    running = [s for s in statuses if s.state == "running"]
    waiting = [s for s in statuses if s.state == "waiting"]
    pruned = [s for s in statuses if s.reason == WINDOW_PRUNED]
    if pruned:  # held, whatever else runs: the operator must act
        applying = Condition(APPLYING, "False", WINDOW_PRUNED, message)
    elif started:
        applying = Condition(APPLYING, "True", "StepStarted", message)
    elif running:
        applying = Condition(APPLYING, "True", "StepRunning", message)
    elif waiting:
        applying = Condition(APPLYING, "False", waiting[0].reason, message)
    else:
        applying = Condition(APPLYING, "False", UP_TO_DATE, message)
    held = [s for s in statuses if s.reason == "WaitingForWindow"]
    if held:
        reason = "OutsideWindow" if clock_trusted else "ClockUntrusted"
        window = Condition(WINDOW_CLOSED, "True", reason, "; ".join(s.message for s in held))
    else:
        window = Condition(WINDOW_CLOSED, "False", "NothingHeldBack", "no work waits for a window")
    return (applying, window)


def _retry_after(
    comps: Mapping[Component, _Comp], statuses: Sequence[ComponentStatus], now: datetime
) -> float | None:
    waits = [r for c in comps.values() for r in c.retry]
    for s in statuses:
        view = comps[s.component].window
        if s.reason == "WaitingForWindow" and view is not None and view.next_open is not None:
            waits.append(max(0.0, (view.next_open - now).total_seconds()))
    return min(waits) if waits else None


# ------------------------------------------------------------------------------ admission


def _gate(c: _Comp, manifest: Mapping[str, Any], now: datetime) -> dict[str, Any] | None:
    view = c.window
    return adm.gate(view.spec if view is not None else None, manifest["spec"], now=now, open=c.open)


def _admitted_manifest(
    c: _Comp,
    m: Mapping[str, Any],
    have: PlanState | None,
    *,
    nodes: Sequence[NodeFacts],
    now: datetime,
    fresh: set[str],
    fallback: dict[str, Any] | None,
) -> dict[str, Any]:
    """``m`` as written: a Plan corrected in place with the same version and image keeps its
    admission; a new step or version admits its first batch, or none while its ``prepare`` Plan
    is not done."""
    if have is not None and _rollout_key(have.spec) == _rollout_key(m["spec"]):
        return adm.with_admission(
            m,
            nodes=adm.admitted(have.spec),
            window=have.spec.get("window"),
            at=adm.admitted_at(have.annotations),
            withdrawn=adm.withdrawn(have.annotations, now=now),
        )
    window = _gate(c, m, now)
    waits = adm.prerequisite(m["spec"])
    other = next((p for p in c.progress if p.plan == waits), None)
    ready = waits is None or (waits not in fresh and other is not None and other.complete)
    todo = adm.selected(m["spec"], [n.labels for n in nodes])
    servers = {n.labels.get(adm.HOSTNAME, n.name) for n in nodes if n.control_plane}
    batch = (
        adm.batch(m["spec"], todo, control_plane=servers) if ready and window is not None else []
    )
    gate = window if window is not None else fallback
    return adm.with_admission(
        m, nodes=batch, window=gate or None, at=now if batch else None, withdrawn={}
    )


def _admit_next(
    c: _Comp,
    *,
    nodes: Sequence[NodeFacts],
    now: datetime,
    site: Site,
    actions: list[Action],
    step: str | None,
    clock_trusted: bool,
) -> ComponentStatus:
    """A step whose Plans are written and not done: each Plan's next admission
    (:func:`gitedge.core.admission.next_batch`), written when it changes."""
    done = {p.plan: p.complete for p in c.progress}
    pending = {p.plan: p.pending for p in c.progress}
    hosts = {n.name: n.labels.get(adm.HOSTNAME, n.name) for n in nodes}
    notes: list[str] = []
    held = False
    for name in sorted(c.have, key=lambda n: (adm.prerequisite(c.have[n].spec) is not None, n)):
        have = c.have[name]
        waits = adm.prerequisite(have.spec)
        move = adm.next_batch(
            plan=name,
            spec=have.spec,
            annotations=have.annotations,
            conditions=have.conditions,
            todo=[hosts.get(n, n) for n in pending.get(name, ())],
            ready=clock_trusted and (waits is None or done.get(waits, False)),
            gate=lambda spec: _gate(c, {"spec": spec}, now),
            now=now,
            control_plane={hosts[n.name] for n in nodes if n.control_plane},
        )
        notes += move.notes
        c.retry += move.retry
        held = held or move.held
        if move.manifest_fields is None:
            continue
        desired = {
            "apiVersion": API_VERSION,
            "kind": "Plan",
            "metadata": {
                "name": name,
                "namespace": site.namespace,
                "labels": dict(have.labels),
                "annotations": dict(have.annotations),
            },
            "spec": dict(have.spec),
        }
        manifest = stamp_window(
            merge_for_update(
                adm.with_admission(desired, **move.manifest_fields),
                {"metadata": {"resourceVersion": have.resource_version}},
            )
        )
        actions.append(
            Action(
                "update",
                name,
                site.namespace,
                c.name,
                "; ".join(move.notes),
                manifest=manifest,
                resource_version=have.resource_version,
            )
        )
    where = f"{c.name} {step}" if step else c.name
    text = f"{where}: {c.describe()}" + (f"; {'; '.join(notes)}" if notes else "")
    if held and not any(p.applying for p in c.have.values()):
        view = c.window
        if view is not None and not view.open:
            text += f"; {_window_text(view, now)}"
        elif view is not None:
            text += f"; window {view.name!r} closes before a Job started now would end"
            c.retry.append(OPEN_BUT_SHORT_RETRY)
        return ComponentStatus(c.name, "waiting", "WaitingForWindow", text, step)
    return ComponentStatus(c.name, "running", "StepRunning", text, step)


def _rollout_key(spec: Mapping[str, Any]) -> tuple[object, object]:
    """What makes SUC start Jobs anew: the Plan's version and its upgrade image."""
    upgrade = spec.get("upgrade")
    return spec.get("version"), upgrade.get("image") if isinstance(upgrade, Mapping) else None
