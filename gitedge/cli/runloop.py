"""The long-lived ``gitedge run``: the scheduler, the status server and metrics; each pass in a
child process (``run --pass-fd``). See cli/run.py for why it is a module of its own."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from gitedge.agent.passes import ChildPasses
from gitedge.agent.scheduler import AgentLoop
from gitedge.agent.server import Metrics, StatusServer
from gitedge.cli.siteconfig import last_verified
from gitedge.core.config import AgentConfig
from gitedge.errors import UsageError


def run_loop(args: argparse.Namespace, config: AgentConfig, *, host: str, port: int) -> int:
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
