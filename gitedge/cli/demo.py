"""``gitedge demo``: the whole story on this machine with no services."""

from __future__ import annotations

import argparse
from pathlib import Path

from gitedge.agent.demo import run_demo


def cmd_demo(args: argparse.Namespace) -> int:
    return run_demo(print, keep=Path(args.keep).resolve() if args.keep else None)
