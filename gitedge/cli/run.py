"""``gitedge run``: the agent. The long-lived process schedules passes, serves /healthz,
/readyz and /metrics; each pass runs in a child process (``--pass-fd``) or, with ``--once``, in
this one."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from gitedge.agent.logs import setup_logging
from gitedge.agent.passes import ChildPasses, run_child_pass
from gitedge.agent.scheduler import AgentLoop
from gitedge.agent.server import Metrics, StatusServer
from gitedge.cli.common import parse_now
from gitedge.cli.siteconfig import agent_config, last_verified
from gitedge.core.config import AgentConfig
from gitedge.errors import UsageError


def _pass_text(p: Any) -> str:
    lines = ["steps: " + ", ".join(f"{k} {v}" for k, v in p.outcomes.items())]
    lines += [f"  {step}: {text}" for step, text in p.errors.items()]
    if p.new_commits:
        lines.append(f"verified {p.new_commits} new commit(s), now at {p.tip}")
    lines += [f"mirrored {k} -> {d} ({n} bytes)" for k, d, n in p.mirrored_now]
    lines += [f"{a.verb} {a.name}: {a.reason}" for a in p.actions]
    lines += [f"{c.type}={c.status} ({c.reason})" for c in p.conditions if c.type == "Ready"]
    return "\n".join(lines)


def _run_in_process(args: argparse.Namespace, config: AgentConfig) -> int:
    """``--once`` (a pass, printed) and ``--pass-fd`` (one pass of ``gitedge run``, in its child
    process, summary written on the fd): the only paths that load the pass's libraries."""
    # the pass's libraries (pygit2, cryptography, requests: ~25 MiB) load here, in a pass's own
    # process, never in the long-lived agent (bench/agent.py: idle RSS goal <= 64 MiB)
    from gitedge.agent.reconcile import Agent  # lazy: not in the long-lived agent (RSS)
    from gitedge.cli.clusterapi import cluster_api  # lazy: not in the long-lived agent (RSS)

    agent = Agent(config, cluster=cluster_api(config))
    try:
        if args.pass_fd is not None:
            return run_child_pass(agent, result_fd=args.pass_fd, now=parse_now(args.now))
        p = agent.reconcile(now=parse_now(args.now))
        print(_pass_text(p), file=sys.stderr)
        return 1 if p.stalled or p.transient else 0
    finally:
        agent.close()


def cmd_run(args: argparse.Namespace) -> int:
    config = agent_config(args.config)
    setup_logging(json_logs=args.log_format == "json" if args.log_format else None)
    if args.now and not (args.once or args.pass_fd is not None):
        raise UsageError("--now goes with --once (a pass at a chosen instant)")
    if args.once or args.pass_fd is not None:
        return _run_in_process(args, config)
    host, port = _listen(args.listen)
    # the long-lived agent: scheduler, status server, metrics; each pass in a child process
    last_verified(config.state.dir)  # a state that cannot be used stops the agent here
    passes = ChildPasses(
        config=config,
        config_path=args.config,
        metrics=Metrics(),
        log_format=args.log_format,
        stop_grace_s=args.stop_grace,
    )

    loop = AgentLoop(passes)
    limit = 3 * max(config.source.interval.total_seconds(), 3600.0)

    def alive() -> tuple[bool, str]:
        idle = time.monotonic() - loop.last_tick
        return idle < limit, f"last pass {idle:.0f}s ago"

    state_file = Path(config.state.dir, "state.sqlite3")

    def ready() -> tuple[bool, str]:  # not Ready: see AgentLoop.readiness and the README
        if not os.access(state_file, os.R_OK | os.W_OK):
            return False, f"the state {state_file} cannot be read and written"
        return loop.readiness

    try:
        server = StatusServer(
            metrics=passes.metrics, ready=ready, alive=alive, host=host, port=port
        ).start()
    except OSError as e:  # the port in use, an address not on this machine
        hint = {
            98: ": another process listens there; stop it or pick a free port",
            99: ": no interface of this machine has that address",
        }.get(e.errno or 0, "")
        raise UsageError(f"--listen {args.listen}: {e.strerror or e}{hint}") from None
    print(f"gitedge run: status on http://{host}:{server.port}", file=sys.stderr)
    try:
        loop.run_forever()
    finally:
        server.stop()
    return 0


def _listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6; no host: 127.0.0.1)."""
    host, _, port = text.rpartition(":")
    if not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--listen {text!r}: expected HOST:PORT with a port 0-65535")
    return host.removeprefix("[").removesuffix("]") or "127.0.0.1", int(port)
