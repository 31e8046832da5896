"""Commands of a site: ``run``, ``status``, ``demo`` (``fleet status`` is in cli/fleet.py)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from gitedge.adapters.state import STATUS
from gitedge.cli.common import agent_config, cluster_api, parse_now, structured
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


def _run_in_process(args: argparse.Namespace, config: Any) -> int:
    """``--once`` (a pass, printed) and ``--pass-fd`` (one pass of ``gitedge run``, in its child
    process, summary written on the fd): the only paths that load the pass's libraries."""
    from gitedge.agent.reconcile import Agent

    agent = Agent(config, cluster=cluster_api(config))
    try:
        if args.pass_fd is not None:
            from gitedge.agent.passes import run_child_pass

            return run_child_pass(agent, result_fd=args.pass_fd, now=parse_now(args.now))
        p = agent.reconcile(now=parse_now(args.now))
        print(_pass_text(p), file=sys.stderr)
        return 1 if p.stalled or p.transient else 0
    finally:
        agent.close()


def cmd_run(args: argparse.Namespace) -> int:
    from gitedge.agent.logs import setup_logging

    config = agent_config(args.config)
    setup_logging(json_logs=args.log_format == "json" if args.log_format else None)
    if args.now and not (args.once or args.pass_fd is not None):
        raise UsageError("--now goes with --once (a pass at a chosen instant)")
    if args.once or args.pass_fd is not None:
        return _run_in_process(args, config)
    host, port = _listen(args.listen)
    # the long-lived agent: scheduler, status server, metrics; each pass in a child process
    import time

    from gitedge.adapters.state import State
    from gitedge.agent.passes import ChildPasses
    from gitedge.agent.scheduler import AgentLoop
    from gitedge.agent.server import Metrics, StatusServer

    state = State(config.state.dir)  # a state that cannot be used stops the agent here
    try:
        state.last_verified  # noqa: B018 - read for its check
    finally:
        state.close()
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


def cmd_status(args: argparse.Namespace) -> int:
    from gitedge.adapters.state import State
    from gitedge.agent.status import before_first_pass, before_first_pass_text, status_text

    config = agent_config(args.config)
    if not Path(config.state.dir, "state.sqlite3").exists():
        print(f"gitedge status: no agent state in {config.state.dir} yet", file=sys.stderr)
        return 1
    state = State(config.state.dir)
    try:
        doc = state.doc(STATUS)
        early = before_first_pass(state) if doc is None else None
    finally:
        state.close()
    if early is not None:  # e.g. a bundle imported before the agent ever ran
        print(structured(early, args.output) if args.output != "text" else
              before_first_pass_text(early))  # fmt: skip
        return 0
    if doc is None:
        print(f"gitedge status: the agent has not finished a pass yet ({config.state.dir})",
              file=sys.stderr)  # fmt: skip
        return 1
    where = f"{Path(config.state.dir, 'state.sqlite3')}: document 'status'"
    print(structured(doc, args.output) if args.output != "text" else status_text(doc, source=where))
    return 0


def cmd_accept_history(args: argparse.Namespace) -> int:
    from gitedge.agent.recovery import accept_history

    config = agent_config(args.config)
    done = accept_history(config=config, commit=args.commit, now=parse_now(args.now))
    if done.already:
        print(f"{done.tip} descends from the last verified commit {done.previous}: nothing to "
              "recover, the agent takes it as usual")  # fmt: skip
        return 0
    print(
        f"accepted {done.tip}: {done.commits} commit(s) verified from the root against the "
        f"trust in force at {done.previous} ({done.trust}); it is now the last verified commit"
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from gitedge.agent.demo import run_demo

    return run_demo(print, keep=Path(args.keep).resolve() if args.keep else None)
