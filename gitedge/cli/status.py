"""``gitedge status``: what the site's agent last verified, wants, mirrored and applied, read
from its state dir (the document each pass writes; before the first pass, what is known)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gitedge.adapters.state import STATUS, State
from gitedge.agent.steps.status import before_first_pass, before_first_pass_text, status_text
from gitedge.cli.common import structured
from gitedge.cli.siteconfig import agent_config


def cmd_status(args: argparse.Namespace) -> int:
    config = agent_config(args.config)
    if not Path(config.state.dir, "state.sqlite3").exists():
        print(f"gitedge status: no agent state in {config.state.dir} yet", file=sys.stderr)
        return 1
    state = State(config.state.dir)
    try:
        doc = state.get_doc(STATUS.name)  # as stored: a wrong shape is reported corrupt below
        early = before_first_pass(state) if doc is None else None
    finally:
        state.close()
    if early is not None:  # e.g. a bundle imported before the agent ever ran
        print(
            structured(early, args.output)
            if args.output != "text"
            else before_first_pass_text(early)
        )
        return 0
    if doc is None:
        print(
            f"gitedge status: the agent has not finished a pass yet ({config.state.dir})",
            file=sys.stderr,
        )
        return 1
    where = f"{Path(config.state.dir, 'state.sqlite3')}: document 'status'"
    print(structured(doc, args.output) if args.output != "text" else status_text(doc, source=where))
    return 0
