"""When passes run: APScheduler jobs, no busy loop.

- ``sync``: the next pass, ``source.interval`` after the last one (+-10% jitter); after a pass
  whose fetch failed, exponential backoff with jitter instead (``core/agentrules.next_delay``),
  so a site offline for months tries now and then, and a fleet that reconnects spreads out.
- ``window``: a one-off pass at the instant a closed window that holds work opens (or when a
  registry's ``Retry-After`` ends), so the agent does not wait for the next interval.

Both jobs run on one worker thread: passes never overlap. SIGTERM (and SIGINT) set the agent's
stop flag (the running pass ends after its current step; state is consistent after every step)
and shut the scheduler down; ``run_forever`` then returns.
"""

from __future__ import annotations

import json
import logging
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import FrameType

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from gitedge.agent.reconcile import Agent, Pass
from gitedge.core.agentrules import next_delay
from gitedge.errors import scrub

log = logging.getLogger("gitedge.agent")

#: How often ``source.bundleDir`` is looked at between passes (a listing and a stat per file).
BUNDLE_POLL_S = 30.0

__all__ = ["AgentLoop", "setup_logging"]


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub(record.getMessage(), limit=2000),
        }
        return json.dumps(doc)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        return f"{when} {record.levelname.lower():<7} {scrub(record.getMessage(), limit=2000)}"


def setup_logging(*, json_logs: bool | None = None, level: int = logging.INFO) -> None:
    """JSON lines in the cluster (stderr not a terminal), readable lines on a terminal."""
    use_json = (not sys.stderr.isatty()) if json_logs is None else json_logs
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if use_json else _TextFormatter())
    root = logging.getLogger("gitedge")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


class AgentLoop:
    """Runs :meth:`Agent.reconcile` on the schedule above until SIGTERM."""

    def __init__(
        self,
        agent: Agent,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: Callable[[], float] = random.random,
        on_pass: Callable[[Pass], None] | None = None,
    ) -> None:
        self.agent = agent
        self.clock = clock
        self.rng = rng
        self.on_pass = on_pass
        self.failures = 0
        self.passes = 0
        self.last_tick = time.monotonic()
        self.scheduler = BlockingScheduler(
            executors={"default": ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC,
        )
        self._lock = threading.Lock()

    def _schedule(self, job: str, when: datetime) -> None:
        self.scheduler.add_job(
            self._tick, trigger=DateTrigger(run_date=when), id=job, args=[job],
            replace_existing=True,
        )  # fmt: skip

    def _tick(self, job: str) -> None:
        with self._lock:
            self.last_tick = time.monotonic()
            if self.agent.stop.is_set():
                return
            try:
                p = self.agent.reconcile(now=self.clock())
            except Exception as e:  # a bug must not end the agent: log it, back off, go on
                log.exception("pass failed: %s", scrub(str(e)))
                p = None
            self.passes += 1
            self.last_tick = time.monotonic()
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
                "pass %d (%s) done; next sync in %.0fs%s",
                self.passes,
                job,
                delay,
                f" (backing off: {self.failures} failed)" if self.failures else "",
            )
            if self.on_pass is not None and p is not None:
                self.on_pass(p)

    def _poll_bundles(self) -> None:
        """A bundle dropped into ``source.bundleDir`` starts a pass now, not at the next sync
        (which may be an hour of offline backoff away). The pass imports it."""
        from gitedge.agent.inbox import pending_bundles

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
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def run_forever(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            log.info("signal %d: shutting down", signum)
            self.shutdown()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, handler)
        self._schedule("sync", self.clock())
        if self.agent.config.source.bundle_dir:
            self.scheduler.add_job(
                self._poll_bundles, trigger=IntervalTrigger(seconds=BUNDLE_POLL_S), id="bundles"
            )
        self.scheduler.start()  # blocks until shutdown
        with self._lock:  # wait for a pass still running to end its step
            pass
        log.info("stopped after %d pass(es)", self.passes)
