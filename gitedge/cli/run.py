"""``gitedge run``: the agent, in one of two processes.

The long-lived one (:mod:`gitedge.cli.runloop`) schedules passes and serves /healthz, /readyz and
/metrics, each pass in a child process; it never loads the pass's libraries (pygit2,
cryptography, requests: ~25 MiB; bench/agent.py: idle RSS goal <= 64 MiB). A pass's process
(``--pass-fd``, or ``--once`` in this one: :mod:`gitedge.cli.runpass`) loads no scheduler or
status server (apscheduler and asyncio: ~30 ms and ~2 MiB a pass). So this module imports
either lazily, after the arguments are checked.
"""

from __future__ import annotations

import argparse

from gitedge.agent.logs import setup_logging
from gitedge.cli.siteconfig import agent_config
from gitedge.errors import UsageError


def cmd_run(args: argparse.Namespace) -> int:
    config = agent_config(args.config)
    setup_logging(json_logs=args.log_format == "json" if args.log_format else None)
    if args.now and not (args.once or args.pass_fd is not None):
        raise UsageError("--now goes with --once (a pass at a chosen instant)")
    if args.once or args.pass_fd is not None:
        from gitedge.cli.runpass import run_pass  # lazy: no scheduler or server in a pass

        return run_pass(args, config)
    host, port = _listen(args.listen)
    from gitedge.cli.runloop import run_loop  # lazy: none of the pass's libraries (RSS)

    return run_loop(args, config, host=host, port=port)


def _listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6; no host: 127.0.0.1)."""
    host, _, port = text.rpartition(":")
    if not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--listen {text!r}: expected HOST:PORT with a port 0-65535")
    return host.removeprefix("[").removesuffix("]") or "127.0.0.1", int(port)
