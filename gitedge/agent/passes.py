"""Each reconcile pass of ``gitedge run`` in a short-lived child process.

The long-lived parent holds only the scheduler, the status server and the metrics; it never
imports the pass's libraries (pygit2, cryptography, the OCI client, the Kubernetes client). At
each tick it starts ``python -m gitedge run --config F --pass-fd N --now T``; the child builds
the :class:`~gitedge.agent.reconcile.Agent`, runs one pass, writes a JSON summary (outcomes,
errors, the verified tip, ``retry_after``, the metrics it set) on fd N and exits. So the agent's
idle memory is the parent's alone, and a pass that leaks or crashes cannot take the agent down
with it: a child that exits without a summary counts as a failed pass (``Transient``), retried
with backoff. A pass that hangs holds back the next one (passes never overlap, and a long
mirror is not a hang) until ``/healthz`` reports the agent not alive, after three intervals
(at least three hours), and its supervisor (the kubelet's liveness probe) restarts it.

SIGTERM on the parent is forwarded to a running child, which ends its pass after the current
step (state is consistent after every step); a child still running ``stop_grace_s`` later (a
fetch blocked in libgit2 does not see the signal) is killed, which the state also survives.

Everything kept between passes lives in the durable state (``adapters/state.py``) or on disk
(the git mirror, the verified-commit cache, the image cache); metrics come back through the
summary: gauge families the child set replace the parent's, counters are added.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from gitedge.adapters.git.refs import remote_tip
from gitedge.agent.bundles.inbox import pending_bundles
from gitedge.agent.server import Metrics
from gitedge.core.passrules import FULL_PASS_EVERY_S, LastPass, pass_due, poll_needs_pass
from gitedge.errors import Transient, scrub

log = logging.getLogger("gitedge.agent")

__all__ = ["ChildPasses", "PassSummary", "run_child_pass"]


@dataclass(frozen=True)
class PassSummary:
    """What the scheduler and the status server need of a pass (crosses the pipe as JSON)."""

    outcomes: dict[str, str] = field(default_factory=dict)  # step -> ok|stalled|waiting|retry
    errors: dict[str, str] = field(default_factory=dict)
    tip: str | None = None
    new_commits: int = 0
    retry_after: float | None = None
    fetched: str | None = None  # the commit the pass fetched from the source (None: no fetch)
    settled: bool = False  # the pass left nothing to do (``Pass.settled``)
    skipped: bool = False  # no pass ran: the poll found the branch unchanged

    @property
    def stalled(self) -> bool:
        return "stalled" in self.outcomes.values()

    @property
    def transient(self) -> bool:
        return "retry" in self.outcomes.values()

    def to_json(self) -> dict[str, Any]:
        return {
            "outcomes": self.outcomes,
            "errors": self.errors,
            "tip": self.tip,
            "newCommits": self.new_commits,
            "retryAfter": self.retry_after,
            "fetched": self.fetched,
            "settled": self.settled,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> PassSummary:
        retry = doc.get("retryAfter")
        return cls(
            outcomes={str(k): str(v) for k, v in dict(doc.get("outcomes") or {}).items()},
            errors={str(k): str(v) for k, v in dict(doc.get("errors") or {}).items()},
            tip=str(doc["tip"]) if doc.get("tip") else None,
            new_commits=int(doc.get("newCommits") or 0),
            retry_after=float(retry) if retry is not None else None,
            fetched=str(doc["fetched"]) if doc.get("fetched") else None,
            settled=doc.get("settled") is True,
        )


class _PassLike(Protocol):
    outcomes: dict[str, str]
    errors: dict[str, str]
    tip: str | None
    new_commits: int
    retry_after: float | None
    fetched: str | None

    @property
    def settled(self) -> bool: ...


class _AgentLike(Protocol):
    stop: threading.Event
    metrics: Metrics

    def reconcile(self, *, now: datetime | None = None) -> Any: ...


def summarize(p: _PassLike) -> PassSummary:
    return PassSummary(
        outcomes=dict(p.outcomes),
        errors=dict(p.errors),
        tip=p.tip,
        new_commits=p.new_commits,
        retry_after=p.retry_after,
        fetched=p.fetched,
        settled=p.settled,
    )


def run_child_pass(agent: _AgentLike, *, result_fd: int, now: datetime) -> int:
    """The child's side: one pass, its summary written on ``result_fd``; 0 when written.

    SIGTERM and SIGINT set the agent's stop flag: the pass ends after its current step."""

    def handler(signum: int, frame: object) -> None:
        log.info("signal %d: ending the pass after its current step", signum)
        agent.stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)
    os.set_inheritable(result_fd, False)  # not for the git processes a pass may start
    out = os.fdopen(result_fd, "w", encoding="utf-8")
    try:
        p = agent.reconcile(now=now)
        doc = {"pass": summarize(p).to_json(), "metrics": agent.metrics.dump()}
        try:
            out.write(json.dumps(doc))
            out.flush()  # the write is buffered: a closed pipe shows in the flush
        except BrokenPipeError:  # the parent is gone: the state holds the pass anyway
            return 1
    finally:  # a failed flush leaves the text in the buffer: closing fails again
        with contextlib.suppress(BrokenPipeError):
            out.close()
    return 0


class ChildPasses:
    """The parent's side: :meth:`reconcile` runs one pass in a child and returns its summary.

    Shaped like the in-process agent for :class:`~gitedge.agent.scheduler.AgentLoop`
    (``config``, ``stop``, ``reconcile``), plus :meth:`interrupt` for SIGTERM."""

    def __init__(
        self,
        *,
        config: Any,
        config_path: str,
        metrics: Metrics,
        log_format: str | None = None,
        stop_grace_s: float = 20.0,
        python: str = sys.executable,
        full_every_s: float = FULL_PASS_EVERY_S,
        ref_timeout_s: float = 30.0,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.metrics = metrics
        self.log_format = log_format
        self.stop_grace_s = stop_grace_s
        self.python = python
        self.full_every_s = full_every_s
        self.ref_timeout_s = ref_timeout_s
        self.stop = threading.Event()
        self.last: PassSummary | None = None  # the last pass that ran (not a skipped poll)
        self.last_at = 0.0  # when it ended (monotonic)
        self.started = 0  # pass processes started (tests, diagnostics)
        self.child_pid: int | None = None  # the running pass, if any (tests, diagnostics)
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None

    def _argv(self, fd: int, now: datetime) -> list[str]:
        argv = [self.python, "-m", "gitedge", "run", "--config", self.config_path]
        argv += ["--pass-fd", str(fd), "--now", now.isoformat()]
        if self.log_format:
            argv += ["--log-format", self.log_format]
        return argv

    def reconcile(self, *, now: datetime) -> PassSummary:
        """One poll: a ref check alone when nothing else is due and the branch is where the
        last pass fetched it (:meth:`poll`); else one pass in a child."""
        why = self.poll()
        if why is None:
            self.metrics.inc(
                "gitedge_polls_without_pass_total",
                help="polls that found the branch unchanged and nothing due: no pass ran",
            )
            self.metrics.set(
                "gitedge_last_sync_timestamp_seconds",
                now.timestamp(),
                help="when the fleet repo was last fetched (the site clock)",
            )
            assert self.last is not None
            log.info("branch unchanged at %s: no pass", self.last.fetched)
            return replace(self.last, new_commits=0, skipped=True)
        log.debug("pass needed: %s", why)
        self.last = None  # a pass that ends without a summary leaves nothing known
        summary = self.run_pass(now=now)
        self.last, self.last_at = summary, time.monotonic()
        return summary

    def poll(self) -> str | None:
        """Why this poll runs a pass (None: it need not). The ref check (``git ls-remote``,
        :mod:`~gitedge.adapters.git.refs`) is made only when nothing else makes a pass due."""
        last = None
        if self.last is not None:
            age = time.monotonic() - self.last_at
            last = LastPass(fetched=self.last.fetched, settled=self.last.settled, age_s=age)
        src = self.config.source
        pending = False
        if src.bundle_dir and last is not None:
            try:
                pending = bool(
                    pending_bundles(bundle_dir=src.bundle_dir, state_dir=self.config.state.dir)
                )
            except Exception:  # unreadable: the pass looks (and says why)
                pending = True
        due = pass_due(last=last, bundles_pending=pending, full_every_s=self.full_every_s)
        tip = None
        if due is None:
            a = src.auth
            tip = remote_tip(
                url=src.url,
                branch=src.branch,
                timeout_s=self.ref_timeout_s,
                ssh_key_file=a.ssh_key_file,
                known_hosts_file=a.known_hosts_file,
                username_file=a.username_file,
                password_file=a.password_file,
                ca_file=a.ca_file,
            )
        return poll_needs_pass(last=last, remote_tip=tip, due=due)

    def run_pass(self, *, now: datetime) -> PassSummary:
        """One pass in a child; raises :class:`Transient` when it ends without a summary."""
        self.started += 1
        started, cpu = time.monotonic(), _children_cpu()
        r, w = os.pipe()
        try:
            with self._lock:  # so interrupt() sees either no child or a started one
                if self.stop.is_set():
                    raise Transient("stopping: no new pass")
                proc = subprocess.Popen(
                    self._argv(w, now), stdin=subprocess.DEVNULL, pass_fds=(w,), close_fds=True
                )
                self._proc, self.child_pid = proc, proc.pid
            os.close(w)
            w = -1
            with os.fdopen(r, "rb") as pipe:
                r = -1
                raw = pipe.read()  # until the child closes its end (it exits)
            code = proc.wait()
        finally:
            for fd in (r, w):
                if fd >= 0:
                    os.close(fd)
            with self._lock:
                self._proc = self.child_pid = None
        self._account(time.monotonic() - started, _children_cpu() - cpu)
        try:
            doc = json.loads(raw) if raw else None
            summary = PassSummary.from_json(doc["pass"]) if doc else None
        except (ValueError, KeyError, TypeError) as e:
            summary, doc = None, None
            log.warning("pass summary unreadable: %s", scrub(str(e)))
        if summary is None or doc is None:
            self.metrics.inc(
                "gitedge_pass_crashes_total", help="passes whose process ended without a result"
            )
            how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
            raise Transient(f"the pass process ended without a result ({how})")
        self.metrics.absorb(doc.get("metrics") or {})
        return summary

    def _account(self, took: float, cpu: float) -> None:
        m = self.metrics
        m.set(
            "gitedge_last_pass_duration_seconds",
            took,
            help="wall time of the last pass, its process start included",
        )
        m.inc("gitedge_pass_cpu_seconds_total", cpu, help="CPU time of the pass processes")
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        m.set(
            "gitedge_pass_max_rss_bytes",
            peak,
            help="the largest peak RSS of a pass process so far (the agent idles without one)",
        )

    def interrupt(self) -> None:
        """Stop: no new pass; a running child gets SIGTERM now and SIGKILL ``stop_grace_s``
        later if it is still running. Safe from a signal handler (never waits for the pass)."""
        self.stop.set()
        with self._lock:
            proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        timer = threading.Timer(self.stop_grace_s, self._kill, args=(proc,))
        timer.daemon = True
        timer.start()

    def _kill(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            log.warning(
                "the pass did not end within %gs of the stop signal: killed (the state survives)",
                self.stop_grace_s,
            )
            proc.kill()


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime
