"""The report step: what SUC's Jobs need (``agent/steps/sucimages.observe``), the pass's conditions
merged with the last ones and ``Ready`` derived once (``core/status/conditions``), the status
document recorded, the site's report pushed (``agent/steps/reportpush.py``, bounded), the metrics
set and the status written to the cluster (best effort).
"""

from __future__ import annotations

import logging
from dataclasses import replace

from gitedge.adapters.state import CONDITIONS, STATUS
from gitedge.agent.passtypes import Context, Pass
from gitedge.agent.steps.reportpush import Reporter
from gitedge.agent.steps.status import build_status
from gitedge.agent.steps.sucimages import observe
from gitedge.core.status import conditions as cond
from gitedge.errors import GitEdgeError, scrub

log = logging.getLogger("gitedge.agent")

__all__ = ["report_step"]


def report_step(ctx: Context, p: Pass) -> Pass:
    """``p`` as recorded: its conditions merged (``Ready`` included), its status and SUC facts."""
    suc = observe(ctx, p.suc, snap=p.snapshot, plan=p.plan, needed=p.needed)
    previous = cond.from_json(ctx.state.doc(CONDITIONS))
    merged = cond.merge(previous, p.conditions, now=p.now)
    merged = cond.merge(merged, [cond.summarize(merged)], now=p.now)
    ctx.state.put(CONDITIONS, cond.to_json(merged))
    p = replace(p, conditions=merged, suc=suc)
    p = replace(p, status=build_status(ctx.config, ctx.state, p))
    ctx.state.put(STATUS, p.status)
    p = _push_report(ctx, p)
    _metrics(ctx, p)
    _publish_status(ctx, p)
    return p


def _publish_status(ctx: Context, p: Pass) -> None:
    """The same status in the cluster (``suc`` mode: the status ConfigMap), best effort:
    the state dir holds it already, and the next pass writes it again."""
    fields = {k: v for k, v in p.status.items() if k != "conditions"}
    try:
        ctx.cluster.write_status(p.conditions, now=p.now, fields=fields)
    except GitEdgeError as e:
        log.warning("status not written to the cluster: %s", scrub(str(e)))
        ctx.metrics.inc(
            "gitedge_status_write_failures_total",
            1,
            help="passes whose status could not be written to the cluster",
        )


def _push_report(ctx: Context, p: Pass) -> Pass:
    """This site's report to ``report.repository`` (``agent/steps/reportpush.py``), bounded to once
    per interval unless it changed; a failure only sets the ``Reported`` condition."""
    if ctx.config.report is None or ctx.stop.is_set():
        return p
    reporter = Reporter(ctx.config, state=ctx.state, metrics=ctx.metrics, hosts=ctx.hosts)
    reported = reporter.push(p)
    if reported is None:
        return p
    merged = cond.merge(p.conditions, [reported], now=p.now)
    status = {**p.status, "conditions": cond.to_json(merged)}
    ctx.state.put(CONDITIONS, status["conditions"])
    ctx.state.put(STATUS, status)
    return replace(p, conditions=merged, status=status)


def _metrics(ctx: Context, p: Pass) -> None:
    m = ctx.metrics
    last = ctx.state.last_verified
    if last is not None:
        m.set(
            "gitedge_last_verified_commit_age_seconds",
            max(0.0, (p.now - last.committed_at).total_seconds()),
            help="age of the newest verified commit (the site clock)",
        )
    m.replace(
        "gitedge_applied_version",
        {
            (("component", c), ("step", s)): 1.0 if done else 0.0
            for c, s, _, done in ctx.state.applied()
        },
        help="steps applied (1: done, 0: started)",
    )
    for c in p.conditions:
        m.set(
            "gitedge_condition",
            1.0 if c.status == "True" else 0.0,
            help="agent conditions (1: True)",
            labels={"type": c.type},
        )
    for name, w in (p.status.get("windows") or {}).items():
        m.set(
            "gitedge_window_open",
            1.0 if w is None or w.get("open") else 0.0,  # no window: apply once mirrored
            help="whether a component's maintenance window is open",
            labels={"component": name},
        )
