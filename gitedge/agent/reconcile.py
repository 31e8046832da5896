"""One reconcile pass: sync -> verify -> clock -> plan -> mirror -> apply -> report.

Each step is a function of the long-lived context (the :class:`Agent`) and the outputs of the
steps before it, passed as arguments (``agent/passtypes.py``); it returns the conditions it owns,
its output and when to retry (``StepResult``). The runner here calls them in the order of
``core/status/conditions.TABLE``, records each outcome, and assembles the :class:`Pass` the report
step records. A step that fails is classified by what happens next (``errors.py``):

- ``Stalled``   a person must act (bad signature, rewritten branch, invalid repo, ambiguous
                target, wrong digest): the step's condition says so, nothing is retried early;
- ``Waiting``   nothing is wrong but the work waits (window closed, registry 429): the pass
                carries ``retry_after``;
- ``Transient`` (and any other I/O failure) retried by the scheduler with backoff and jitter.

The pass always works from the **last verified commit**: a failed fetch, a bad commit or a
rewritten branch leave it where it was and the later steps go on from it (a site offline for a
year keeps applying what it verified). The mirror step copies every image of the whole K3s path
(and the OS image) into the cache before the apply step may start any step: a site that is online
for an hour holds the whole path afterwards; the apply step applies that plan (it plans again
only when the cluster changed since the plan step). Decisions are pure (``core/rollout/planning``,
``core/rollout/decision``, ``core/passrules``, ``core/status/conditions``); effects happen in the
steps.

Steps: ``agent/steps/sync.py`` (sync, over a ``agent/sources.Source``), ``steps/verify.py`` (verify,
clock), ``steps/plan.py``, ``steps/mirror.py``, ``steps/apply.py``, ``steps/report.py``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from gitedge.adapters.git.source import GitMirror
from gitedge.adapters.registry.hosts import Hosts, RetryPolicy
from gitedge.adapters.state import State
from gitedge.adapters.trust.verifiedcommits import VerifiedCommits
from gitedge.agent.clusters import PrintCluster
from gitedge.agent.passtypes import STEP_ORDER, Context, Pass, StepResult
from gitedge.agent.server import Metrics
from gitedge.agent.sources import NetworkSource, Source
from gitedge.agent.steps.apply import apply_planned
from gitedge.agent.steps.applyplans import ClusterApi
from gitedge.agent.steps.mirror import mirror_step
from gitedge.agent.steps.plan import plan_step
from gitedge.agent.steps.report import report_step
from gitedge.agent.steps.sync import sync_step
from gitedge.agent.steps.verify import clock_step, last_verified_tip, verify_step
from gitedge.agent.steps.verifyrange import load_bootstrap
from gitedge.core.config import AgentConfig
from gitedge.core.status import conditions as cond
from gitedge.core.status.conditions import Condition
from gitedge.errors import (
    GitEdgeError,
    KubeApiError,
    RollbackRefused,
    Stalled,
    Transient,
    Waiting,
    scrub,
)

log = logging.getLogger("gitedge.agent")

T = TypeVar("T")
_OWN_CONDITION = cond.STEP_CONDITION  # core/status/conditions.TABLE: what a failed step sets False

__all__ = ["STEP_ORDER", "Agent", "ClusterApi", "Pass", "PrintCluster", "run_pass"]


class Agent:
    """The long-lived parts of the agent (the steps' context); :meth:`reconcile` runs one
    pass."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        cluster: ClusterApi,
        metrics: Metrics | None = None,
        retry: RetryPolicy | None = None,
        fetch_timeout_s: float = 60.0,
    ) -> None:
        self.config = config
        self.cluster = cluster
        self.metrics = metrics or Metrics()
        self.retry = retry or RetryPolicy()
        self.fetch_timeout_s = fetch_timeout_s
        self.dir = Path(config.state.dir)
        self.state = State(self.dir)
        try:
            self.state.check()  # a corrupt state stops here (StateError), before any fetch
        except BaseException:
            self.state.close()
            raise
        if isinstance(cluster, PrintCluster):
            cluster.remember_in(self.state)  # printed Plans stay printed across passes
        self.git = GitMirror(mirror_dir=self.dir / "fleet.git")
        self.bootstrap = load_bootstrap(config.trust.bootstrap)
        self.verified = VerifiedCommits(self.dir, bootstrap=self.bootstrap, state=self.state)
        self.hosts = Hosts.from_config(config.registry)
        self.stop = threading.Event()  # set on SIGTERM: the pass ends after its current step
        self.last_tick = 0.0
        self.source: Source = NetworkSource()

    def close(self) -> None:
        self.state.close()

    def reconcile(self, *, now: datetime | None = None) -> Pass:
        return run_pass(self, source=self.source, now=now or datetime.now(UTC))


@dataclass
class _Record:
    """The runner's own record of a pass (no step reads it): outcomes, errors, conditions."""

    conditions: list[Condition] = field(default_factory=list)
    outcomes: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    retry_after: float | None = None

    def run(self, ctx: Context, name: str, step: Callable[[], StepResult[T]]) -> T | None:
        """Run the next step (``name``, checked against the table's order); its output, or
        None when it was skipped or failed before it had any."""
        if name != STEP_ORDER[len(self.outcomes)]:
            raise AssertionError(f"step {name} out of core/status/conditions.TABLE order")
        if ctx.stop.is_set():
            self.outcomes[name] = "skipped"
            return None
        try:
            r = step()
        except GitEdgeError as e:
            self.failed(name, e)
            return None
        except OSError as e:  # the disk, a socket: retried like any Transient
            self.failed(name, Transient(f"{name}: {e}"))
            return None
        self.conditions += r.conditions
        if r.error is not None:
            self.failed(name, r.error)
        else:
            self.outcomes[name] = r.outcome
            self.wait(r.retry_after)
        return r.output

    def wait(self, retry_after: float | None) -> None:
        if retry_after is not None:
            self.retry_after = min(self.retry_after or retry_after, retry_after)

    def failed(self, step: str, e: GitEdgeError) -> None:
        text = scrub(str(e), limit=1000)
        self.errors[step] = text
        if isinstance(e, Stalled):
            self.outcomes[step] = "stalled"
            log.error("%s stalled: %s", step, text)
        elif isinstance(e, Waiting):
            self.outcomes[step] = "waiting"
            self.wait(e.retry_after)
            log.info("%s waiting: %s", step, text)
        else:
            self.outcomes[step] = "retry"
            log.warning("%s failed, will retry: %s", step, text)
        reason = e.reason if isinstance(e, KubeApiError) else type(e).__name__
        if step == "clock":
            self.conditions.append(Condition(cond.CLOCK_UNTRUSTED, "Unknown", reason, text))
            return
        self.conditions.append(Condition(_OWN_CONDITION[step], "False", reason, text))
        if isinstance(e, RollbackRefused):
            refused = Condition(cond.ROLLBACK_REFUSED, "True", "RollbackRefused", text)
            self.conditions.append(refused)


def run_pass(ctx: Context, *, source: Source, now: datetime) -> Pass:
    """One pass over ``source``: each step gets what the steps before it produced."""
    rec = _Record()
    synced = rec.run(ctx, "sync", lambda: sync_step(ctx, source=source, now=now))
    verified = rec.run(ctx, "verify", lambda: verify_step(ctx, synced, now=now))
    skipped = rec.outcomes["verify"] == "skipped"
    tip = verified.tip if verified else None if skipped else last_verified_tip(ctx)
    clock = rec.run(ctx, "clock", lambda: clock_step(ctx, now=now))
    planned = rec.run(ctx, "plan", lambda: plan_step(ctx, tip, now=now))
    mirrored = rec.run(
        ctx, "mirror", lambda: mirror_step(ctx, planned, images=source.images, now=now)
    )
    applied = rec.run(ctx, "apply", lambda: apply_planned(ctx, planned, mirrored, clock, now=now))
    result = applied.result if applied else None
    snapshot = planned.snapshot if planned else None
    if result is not None and result.snapshot is not None:
        snapshot = result.snapshot
    p = Pass(
        now=now,
        fetched=synced.fetched if synced else None,
        tip=tip,
        new_commits=verified.new_commits if verified else 0,
        clock_ok=clock.ok if clock else True,
        fleet=planned.fleet if planned else None,
        plan=planned.plan if planned else None,
        snapshot=snapshot,
        needed=planned.needed if planned else (),
        mirrored_now=[*(synced.copied if synced else ()), *(mirrored.copied if mirrored else ())],
        mirror_complete=mirrored.complete if mirrored else False,
        endpoint_notes=list(mirrored.endpoint_notes) if mirrored else [],
        actions=list(result.performed) if result else [],
        applied=result,
        conditions=rec.conditions,
        outcomes=rec.outcomes,
        errors=rec.errors,
        retry_after=rec.retry_after,
        suc=dict(planned.suc) if planned else {},
    )
    return report_step(ctx, p)
