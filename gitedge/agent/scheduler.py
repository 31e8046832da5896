"""When passes run: APScheduler jobs, no busy loop.

- ``sync``: the next pass, ``source.interval`` after the last one (+-10% jitter); after a pass
  whose fetch failed, exponential backoff with jitter instead (``core/passrules.next_delay``),
  so a site offline for months tries now and then, and a fleet that reconnects spreads out.
- ``window``: a one-off pass at the instant a closed window that holds work opens (or when a
  registry's ``Retry-After`` ends), so the agent does not wait for the next interval.

Both jobs run on one worker thread: passes never overlap. A pass is whatever ``reconcile`` the
loop is given: in ``gitedge run`` a child process per pass (``agent/passes.py``), so the loop's
process stays small. SIGTERM (and SIGINT) set the stop flag (and ``interrupt()`` the running
pass, which ends after its current step; state is consistent after every step) and shut the
scheduler down; ``run_forever`` then returns once the pass has ended.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any, Protocol

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from gitedge.agent.bundles.inbox import pending_bundles
from gitedge.core.passrules import next_delay
from gitedge.errors import scrub

log = logging.getLogger("gitedge.agent")

#: How often ``source.bundleDir`` is looked at between passes (a listing and a stat per file).
BUNDLE_POLL_S = 30.0

__all__ = ["AgentLoop", "Passes"]


class Passes(Protocol):
    """What the loop runs: :class:`~gitedge.agent.passes.ChildPasses` (or an in-process
    :class:`~gitedge.agent.reconcile.Agent`). ``reconcile`` returns a pass with ``outcomes``,
    ``transient``, ``retry_after`` and ``tip``, or raises (retried with backoff)."""

    config: Any
    stop: threading.Event

    def reconcile(self, *, now: datetime) -> Any: ...


class AgentLoop:
    """Runs ``passes.reconcile`` on the schedule above until SIGTERM."""

    def __init__(
        self,
        agent: Passes,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: Callable[[], float] = random.random,
        on_pass: Callable[[Any], None] | None = None,
    ) -> None:
        self.agent = agent
        self.clock = clock
        self.rng = rng
        self.on_pass = on_pass
        self.failures = 0
        self.passes = 0
        self.last_tick = time.monotonic()
        #: readiness (``/readyz``): the agent can do its job when its last pass ended with a
        #: result, whatever the steps said (offline, waiting, refused: they are its job, and
        #: retried); not before the first pass ends, nor when a pass ended without a result
        self.readiness: tuple[bool, str] = (False, "the first pass has not finished yet")
        # max_instances 2: a pass schedules its own job's next run; should that fall due before
        # the pass's _tick has returned (a log write blocked on a full stderr pipe, a stalled
        # machine), APScheduler would skip the run as "too many instances", and a one-off
        # job skipped is gone: the agent would never sync again. With 2 it waits in the one
        # worker's queue and runs right after (passes still never overlap: one worker, the lock).
        self.scheduler = BlockingScheduler(
            executors={"default": ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "max_instances": 2, "misfire_grace_time": None},
            timezone=UTC,
        )
        self._lock = threading.Lock()
        self.next_run: dict[str, datetime] = {}  # job -> when it runs next (as last scheduled)

    def _schedule(self, job: str, when: datetime) -> None:
        self.next_run[job] = when
        self.scheduler.add_job(
            self._tick,
            trigger=DateTrigger(run_date=when),
            id=job,
            args=[job],
            replace_existing=True,
        )

    def _tick(self, job: str) -> None:
        with self._lock:
            self.last_tick = time.monotonic()
            if self.agent.stop.is_set():
                return
            started = self.last_tick
            try:
                p = self.agent.reconcile(now=self.clock())
            except Exception as e:  # a bug must not end the agent: log it, back off, go on
                log.error("pass failed: %s", scrub(str(e)))
                p = None
                self.readiness = (False, f"the last pass failed: {scrub(str(e))}; retrying")
            else:
                steps = ", ".join(f"{k} {v}" for k, v in (p.outcomes or {}).items())
                at = f"; at {p.tip}" if getattr(p, "tip", None) else ""
                self.readiness = (True, f"last pass finished ({steps}){at}")
            self.passes += 1
            self.last_tick = time.monotonic()
            took = self.last_tick - started
            offline = p is None or p.outcomes.get("sync") == "retry" or p.transient
            self.failures = self.failures + 1 if offline else 0
            interval = self.agent.config.source.interval.total_seconds()
            delay = next_delay(interval_s=interval, failures=self.failures, u=self.rng())
            now = self.clock()
            if self.agent.stop.is_set():
                return
            self._schedule("sync", now + timedelta(seconds=delay))
            if p is not None and p.retry_after is not None and p.retry_after < delay:
                self._schedule("window", now + timedelta(seconds=p.retry_after + 1))
            log.info(
                "pass %d (%s) %s in %.2fs; next sync in %.0fs%s",
                self.passes,
                job,
                "done" if p is not None else "failed",
                took,
                delay,
                f" (backing off: {self.failures} failed)" if self.failures else "",
            )
            if self.on_pass is not None and p is not None:
                self.on_pass(p)

    def _poll_bundles(self) -> None:
        """A bundle dropped into ``source.bundleDir`` starts a pass now, not at the next sync
        (which may be an hour of offline backoff away). The pass imports it."""
        config = self.agent.config
        if self.agent.stop.is_set() or not config.source.bundle_dir:
            return
        try:
            new = pending_bundles(bundle_dir=config.source.bundle_dir, state_dir=config.state.dir)
        except Exception as e:  # the state busy or unreadable: the next poll, or pass, sees it
            log.warning("cannot look at %s: %s", config.source.bundle_dir, scrub(str(e)))
            return
        if new and not self.agent.stop.is_set():
            log.info("bundle %s dropped into %s: starting a pass", new[0].name, new[0].parent)
            self._schedule("sync", self.clock())

    def shutdown(self, *_: object) -> None:
        """Stop after the current step; safe from a signal handler."""
        self.agent.stop.set()
        interrupt = getattr(self.agent, "interrupt", None)
        if interrupt is not None:
            interrupt()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def run_forever(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            log.info("signal %d: shutting down", signum)
            self.shutdown()

        # given back on return: a process that goes on after the loop (a test, an embedding)
        # would otherwise take SIGTERM and Ctrl-C as "shut down a loop that is gone"
        kept = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self._schedule("sync", self.clock())
            if self.agent.config.source.bundle_dir:
                self.scheduler.add_job(
                    self._poll_bundles, trigger=IntervalTrigger(seconds=BUNDLE_POLL_S), id="bundles"
                )
            self.scheduler.start()  # blocks until shutdown
            with self._lock:  # wait for a pass still running to end its step
                pass
        finally:
            for sig, previous in kept.items():
                signal.signal(sig, previous)
        log.info("stopped after %d pass(es)", self.passes)
