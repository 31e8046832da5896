"""One pass of ``gitedge run``: ``--once`` (printed) or ``--pass-fd`` (the child process the
long-lived agent starts for each pass). See cli/run.py for why it is a module of its own."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gitedge.agent.passes import run_child_pass
from gitedge.agent.reconcile import Agent
from gitedge.cli.clusterapi import cluster_api
from gitedge.cli.common import parse_now
from gitedge.core.config import AgentConfig


def _pass_text(p: Any) -> str:
    lines = ["steps: " + ", ".join(f"{k} {v}" for k, v in p.outcomes.items())]
    lines += [f"  {step}: {text}" for step, text in p.errors.items()]
    if p.new_commits:
        lines.append(f"verified {p.new_commits} new commit(s), now at {p.tip}")
    lines += [f"mirrored {k} -> {d} ({n} bytes)" for k, d, n in p.mirrored_now]
    lines += [f"{a.verb} {a.name}: {a.reason}" for a in p.actions]
    lines += [f"{c.type}={c.status} ({c.reason})" for c in p.conditions if c.type == "Ready"]
    return "\n".join(lines)


def run_pass(args: argparse.Namespace, config: AgentConfig) -> int:
    """``--once`` (a pass, printed) and ``--pass-fd`` (one pass of ``gitedge run``, in its child
    process, summary written on the fd)."""
    agent = Agent(config, cluster=cluster_api(config))
    try:
        if args.pass_fd is not None:
            return run_child_pass(agent, result_fd=args.pass_fd, now=parse_now(args.now))
        p = agent.reconcile(now=parse_now(args.now))
        print(_pass_text(p), file=sys.stderr)
        return 1 if p.stalled or p.transient else 0
    finally:
        agent.close()
