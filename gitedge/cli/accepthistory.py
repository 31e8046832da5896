"""``gitedge accept-history``: a site's rewritten fleet history (after RollbackRefused) verified
from its root against the trust in force at the last verified commit, then taken."""

from __future__ import annotations

import argparse

from gitedge.agent.recovery import accept_history
from gitedge.cli.common import parse_now
from gitedge.cli.siteconfig import agent_config


def cmd_accept_history(args: argparse.Namespace) -> int:
    config = agent_config(args.config)
    done = accept_history(config=config, commit=args.commit, now=parse_now(args.now))
    if done.already:
        print(
            f"{done.tip} descends from the last verified commit {done.previous}: nothing to "
            "recover, the agent takes it as usual"
        )
        return 0
    print(
        f"accepted {done.tip}: {done.commits} commit(s) verified from the root against the "
        f"trust in force at {done.previous} ({done.trust}); it is now the last verified commit"
    )
    return 0
