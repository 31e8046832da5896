"""The types one reconcile pass is made of: the context every step reads, each step's output,
a step's result, and the :class:`Pass` the runner assembles at the end.

Each step (``agent/steps/sync``, ``planstep``, ``mirrorstep``, ``applystep``, ``reportstep``) is a
function of the long-lived :class:`Context` and the outputs of the steps before it, passed as
arguments; it returns a :class:`StepResult` (the conditions it owns, its output, when to retry,
and the error that stopped it, if any, next to what it did before). The runner
(``agent/reconcile.py``) calls them in ``core/status/conditions.STEPS`` order. This module imports
no step, so every step and the runner import it and nothing imports back.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from gitedge.adapters.git.source import GitMirror
from gitedge.adapters.images.mirroring import Location
from gitedge.adapters.registry.hosts import Hosts, RetryPolicy
from gitedge.adapters.state import State
from gitedge.adapters.trust.verifiedcommits import VerifiedCommits
from gitedge.agent.server import Metrics
from gitedge.agent.steps.applyplans import ApplyResult, ClusterApi
from gitedge.core.config import AgentConfig
from gitedge.core.fleet.model import Fleet
from gitedge.core.images.refs import ImageRef
from gitedge.core.passrules import NeededImage
from gitedge.core.rollout.clusterstate import ClusterSnapshot
from gitedge.core.rollout.planmanifests import Action
from gitedge.core.rollout.planning import ClusterFacts, Plan
from gitedge.core.status import conditions as cond
from gitedge.core.status.conditions import Condition
from gitedge.core.trust.policy import Policy
from gitedge.errors import GitEdgeError

__all__ = [
    "STEP_ORDER",
    "Applied",
    "Clocked",
    "Context",
    "ImageLocator",
    "Mirrored",
    "Pass",
    "Planned",
    "StepResult",
    "Synced",
    "Verified",
]

#: the steps the runner calls, in the order of core/status/conditions.TABLE (the report runs after)
STEP_ORDER = cond.STEPS[: cond.STEPS.index("apply") + 1]

T = TypeVar("T")


class Context(Protocol):
    """What lives longer than a pass (``reconcile.Agent`` is one)."""

    config: AgentConfig
    cluster: ClusterApi
    metrics: Metrics
    retry: RetryPolicy
    fetch_timeout_s: float
    dir: Path
    state: State
    git: GitMirror
    bootstrap: Policy
    verified: VerifiedCommits
    hosts: Hosts
    stop: threading.Event


class ImageLocator(Protocol):
    """Where the mirror step reads an image: upstream, or an opened bundle's OCI layout."""

    @property
    def from_bundle(self) -> bool: ...

    def location(self, ref: ImageRef) -> Location: ...


@dataclass(frozen=True)
class StepResult(Generic[T]):
    """A step's result: the conditions it owns, its output (also when it failed part way:
    what it did before), when to retry, and the error that stopped it."""

    conditions: tuple[Condition, ...] = ()
    output: T | None = None
    retry_after: float | None = None
    error: GitEdgeError | None = None
    outcome: str = "ok"  # sync: "bundle" when offline a bundle stood in for the fetch


@dataclass(frozen=True)
class Synced:
    fetched: str | None  # the fetched branch tip (None: nothing fetched this pass)
    copied: tuple[tuple[str, str, int], ...] = ()  # images the inbox's bundles put in the cache


@dataclass(frozen=True)
class Verified:
    tip: str  # the last verified commit: everything after works from it
    new_commits: int = 0


@dataclass(frozen=True)
class Clocked:
    ok: bool


@dataclass(frozen=True)
class Planned:
    fleet: Fleet
    plan: Plan | None  # None: the planner refused (the step's error says why)
    snapshot: ClusterSnapshot  # the read the plan was made from
    facts: ClusterFacts  # what the planner saw of it (apply plans again only when it changed)
    needed: tuple[NeededImage, ...] = ()
    suc: dict[str, Any] = field(default_factory=dict)  # SUC's images (agent/steps/sucimages.py)


@dataclass(frozen=True)
class Mirrored:
    complete: bool
    copied: tuple[tuple[str, str, int], ...] = ()  # key, digest, bytes copied
    endpoint_notes: tuple[str, ...] = ()  # registry.endpoints: who served, who was skipped


@dataclass(frozen=True)
class Applied:
    result: ApplyResult


@dataclass(frozen=True)
class Pass:
    """What one pass knew, assembled by the runner; also what ``gitedge run --once`` prints."""

    now: datetime
    fetched: str | None = None
    tip: str | None = None
    new_commits: int = 0
    clock_ok: bool = True
    fleet: Fleet | None = None
    plan: Plan | None = None
    snapshot: ClusterSnapshot | None = None
    needed: tuple[NeededImage, ...] = ()
    mirrored_now: list[tuple[str, str, int]] = field(default_factory=list)  # key, digest, bytes
    mirror_complete: bool = False
    endpoint_notes: list[str] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    applied: ApplyResult | None = None  # what the apply step read, decided and did
    conditions: list[Condition] = field(default_factory=list)
    #: step -> ok|stalled|waiting|retry|skipped; sync also "bundle" (offline, a bundle stood in)
    outcomes: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    retry_after: float | None = None
    status: dict[str, Any] = field(default_factory=dict)
    suc: dict[str, Any] = field(default_factory=dict)

    @property
    def stalled(self) -> bool:
        return "stalled" in self.outcomes.values()

    @property
    def transient(self) -> bool:
        return "retry" in self.outcomes.values()

    @property
    def settled(self) -> bool:
        """The pass left nothing for the next one unless the branch moves: every step ran
        and ended ``ok`` (verify may have refused the fetched commit), the branch was fetched
        from the source, no ``Retry-After``, the clock trusted, every image in the cache, no
        action sent and every component up to date (or untargeted). The agent's parent then
        polls by a ref check alone (``core/passrules.pass_due``)."""
        decision = self.applied.decision if self.applied is not None else None
        # a refused commit (verify stalled) is refused again while the branch stays on it:
        # the steps after it ran from the last verified commit, so that alone leaves no work
        return (
            all(
                self.outcomes.get(step) == "ok"
                or (step == "verify" and self.outcomes.get(step) == "stalled")
                for step in STEP_ORDER
            )
            and self.fetched is not None
            and self.retry_after is None
            and self.clock_ok
            and self.mirror_complete
            and not self.actions
            and decision is not None
            and all(c.complete for c in decision.components)
        )
