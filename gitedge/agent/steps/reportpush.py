"""The report step's last act: push this site's status report when ``report`` is configured.

The report (:class:`~gitedge.core.status.sitereport.SiteReport`) is built from what the pass knows:
the cluster's name and labels (with the derived ``gitedge.io/arch``/``k3s-minor`` labels), desired
versions from the plan, applied versions from the nodes (the lowest kubelet) and the applied-step
records, the last verified commit, the merged conditions, and the pass's time. Names, versions,
commit ids and condition words only: never a secret (condition messages were scrubbed).

Pushing is bounded: a report is pushed when its content (all but the time) changed since the last
push, or when the last push is ``source.interval`` old (so ``gitedge fleet status`` sees the site
is alive and can mark silent ones stale); never more often. A push failure never fails the pass
and never hides another condition: it is logged, counted in
``gitedge_report_pushes_total{result="failed"}``, and said by the ``Reported`` condition, which is
not part of the ``Ready`` summary.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from gitedge import __version__
from gitedge.adapters.registry.client import RegistryClient
from gitedge.adapters.registry.hosts import Hosts, RetryPolicy
from gitedge.adapters.reports.store import ReportRepository, push_report
from gitedge.adapters.state import State
from gitedge.agent.passtypes import Pass
from gitedge.agent.server import Metrics
from gitedge.core.config import AgentConfig, derived_labels
from gitedge.core.rollout.clusterstate import actual_k3s_version, cluster_facts
from gitedge.core.status.conditions import REPORTED, Condition
from gitedge.core.status.sitereport import SiteReport, Versions, to_document
from gitedge.errors import GitEdgeError, scrub

log = logging.getLogger("gitedge.agent")

#: The push talks to a registry the site may not reach: little patience, the next pass retries.
PUSH_RETRY = RetryPolicy(
    attempts=2,
    base_delay_s=0.5,
    max_delay_s=2.0,
    max_retry_after_s=0.0,
    connect_timeout_s=5.0,
    read_timeout_s=20.0,
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

__all__ = ["REPORTED", "Reporter", "push_due", "site_report"]


def site_report(
    config: AgentConfig,
    p: Pass,
    *,
    applied: list[tuple[str, str, datetime, datetime | None]],
    last_verified: str | None,
) -> SiteReport:
    """This site's report from one pass (pure: every fact is a parameter)."""
    c = config.cluster
    nodes = p.snapshot.nodes if p.snapshot is not None else ()
    try:
        running = actual_k3s_version(nodes)
        labels = cluster_facts(name=c.name, labels=c.labels, nodes=nodes).labels if nodes else None
    except GitEdgeError:  # a node with a strange kubelet version: the apply step reports it
        running, labels = None, None
    if labels is None:
        labels = derived_labels(dict(c.labels), c.status)
    done = {comp: step for comp, step, _, finished in applied if finished is not None}
    plan = p.plan
    k3s_applied = running.text if running else (done.get("k3s") or c.status.k3s_version)
    return SiteReport(
        cluster=c.name,
        time=p.now,
        labels=dict(labels),
        k3s=Versions(
            plan.k3s.version if plan and plan.k3s else None,
            k3s_applied,
            plan.k3s.target if plan and plan.k3s else None,
            plan.k3s.path if plan and plan.k3s else (),
        ),
        os=Versions(
            plan.os.image if plan and plan.os else None,
            done.get("os") or c.status.os_image,
            plan.os.target if plan and plan.os else None,
        ),
        last_verified=last_verified,
        conditions=tuple(x for x in p.conditions if x.type != REPORTED),
        agent_version=__version__,
    )


def fingerprint(report: SiteReport) -> str:
    """What the report says that matters for a push: all but its time and the conditions'
    messages (they carry per-pass detail, "0 new commits"; type, status and reason stay)."""
    quiet = tuple(replace(c, message="", last_transition_time=None) for c in report.conditions)
    return hashlib.sha256(to_document(replace(report, time=_EPOCH, conditions=quiet))).hexdigest()


def push_due(last: Any, *, fingerprint: str, now: datetime, interval: timedelta) -> bool:
    """Whether to push: never pushed, content changed, the last push is ``interval`` old, or the
    clock went back past it (``last`` is the state's ``report`` document, or None)."""
    if not isinstance(last, dict) or last.get("fingerprint") != fingerprint:
        return True
    try:
        at = datetime.fromisoformat(str(last.get("pushedAt")))
    except ValueError:
        return True
    return now - at >= interval or now < at


class Reporter:
    """Pushes the site's report to ``report.repository`` (credentials from ``registry``)."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        state: State,
        metrics: Metrics,
        hosts: Hosts,
        retry: RetryPolicy = PUSH_RETRY,
    ) -> None:
        assert config.report is not None
        self.config = config
        self.state = state
        self.metrics = metrics
        self.hosts = hosts
        self.retry = retry
        self.where = config.report.repository

    def push(self, p: Pass) -> Condition | None:
        """Push if due; the ``Reported`` condition to record, or None when nothing was tried."""
        last = self.state.last_verified
        report = site_report(
            self.config,
            p,
            applied=self.state.applied(),
            last_verified=last.commit if last else None,
        )
        fp = fingerprint(report)
        previous = self.state.get_doc("report")
        if not push_due(previous, fingerprint=fp, now=p.now, interval=self.config.source.interval):
            return None
        try:
            repo = ReportRepository.parse(self.where)
            client = RegistryClient(
                host=repo.host, config=self.hosts.get(repo.host), retry=self.retry
            )
            try:
                digest = push_report(client, repo, report)
            finally:
                client.close()
        except Exception as e:  # whatever it is, the pass goes on
            text = scrub(str(e), limit=400)
            log.warning("status report to %s not pushed: %s", scrub(self.where), text)
            self._count("failed")
            return Condition(REPORTED, "False", type(e).__name__, text)
        self.state.put_doc(
            "report", {"fingerprint": fp, "pushedAt": p.now.isoformat(), "digest": digest}
        )
        self._count("pushed")
        self.metrics.set(
            "gitedge_report_last_push_timestamp_seconds",
            p.now.timestamp(),
            help="when this site's status report was last pushed (the site clock)",
        )
        log.info("status report pushed to %s (%s)", scrub(self.where), digest)
        return Condition(REPORTED, "True", "Pushed", f"{self.where}@{digest}")

    def _count(self, result: str) -> None:
        self.metrics.inc(
            "gitedge_report_pushes_total",
            help="status report pushes, by result",
            labels={"result": result},
        )
