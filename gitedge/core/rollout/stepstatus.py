"""Where each component of a decision stands: :class:`ComponentStatus` per component, the
working view of one component while deciding (:class:`ComponentView`), and what the statuses
say as conditions (``Applying``, ``WindowClosed``: :func:`applying_conditions`) and as the time
until a pass must look again (:func:`retry_after`).

Pure: no I/O, the time is a parameter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from gitedge.core.fleet.versions import K3sVersion
from gitedge.core.rollout.clusterstate import NodeFacts, PlanState, Progress
from gitedge.core.rollout.planmanifests import Action
from gitedge.core.rollout.planning import WindowView
from gitedge.core.rollout.readback import WINDOW_PRUNED
from gitedge.core.rollout.sucplans import AGENT_PLAN, OS_AGENT_PLAN, OS_SERVER_PLAN, SERVER_PLAN
from gitedge.core.status.conditions import APPLYING, UP_TO_DATE, WINDOW_CLOSED, Condition
from gitedge.core.timefmt import iso_z
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
    "DEFAULT_ORDER",
    "OPEN_BUT_SHORT_RETRY",
    "PLAN_COMPONENT",
    "Component",
    "ComponentStatus",
    "ComponentView",
    "applying_conditions",
    "lagging_nodes",
    "retry_after",
    "window_text",
]


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


def window_text(view: WindowView | None, now: datetime) -> str:
    if view is None:
        return "the clock is not trusted"
    if view.next_open is None:
        return f"window {view.name!r} is closed and never opens again"
    return f"window {view.name!r} is closed until {iso_z(view.next_open)}"


@dataclass
class ComponentView:
    name: Component
    targeted: bool
    window: WindowView | None
    open: bool
    want: list[Mapping[str, Any]]
    have: dict[str, PlanState]
    progress: list[Progress]
    retry: list[float] = field(default_factory=list)  # seconds until a pass must look again
    carries: str | None = None  # the K3s the OS step's image carries (core/rollout/osk3s.py)

    @property
    def in_flight(self) -> bool:
        return any(not p.complete for p in self.progress)

    def describe(self) -> str:
        return "; ".join(p.describe() for p in self.progress)


def lagging_nodes(nodes: Sequence[NodeFacts], step: str) -> list[str]:
    want = K3sVersion.parse(step)
    out = []
    for n in nodes:
        try:
            if K3sVersion.parse(n.kubelet_version) < want:
                out.append(f"{n.name} ({n.kubelet_version})")
        except VersionError:
            out.append(n.name)
    return out


def applying_conditions(
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


def retry_after(
    comps: Mapping[Component, ComponentView], statuses: Sequence[ComponentStatus], now: datetime
) -> float | None:
    waits = [r for c in comps.values() for r in c.retry]
    for s in statuses:
        view = comps[s.component].window
        if s.reason == "WaitingForWindow" and view is not None and view.next_open is not None:
            waits.append(max(0.0, (view.next_open - now).total_seconds()))
    return min(waits) if waits else None
