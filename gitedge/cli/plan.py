"""``gitedge plan``: what a cluster should run and when, from a fleet repo alone (pure: no
cluster, no network).

In two modules: this one reads the repo and starts parsing it (in worker processes when it is
large) with light imports; :mod:`gitedge.cli.planresult` (the models and the planner, pydantic)
is imported while the workers parse, then plans and prints."""

from __future__ import annotations

import argparse

from gitedge.adapters.git.worktree import read_tree
from gitedge.adapters.yamlworkers import fleet_files


def cmd_plan(args: argparse.Namespace) -> int:
    if args.rev:
        from gitedge.adapters.git.repo import read_commit_tree  # pygit2 (~13 MiB) for --rev only

        snapshot = read_commit_tree(repo=args.repo, rev=args.rev)
        origin = f"{args.repo}@{args.rev}"
    else:
        snapshot, origin = read_tree(args.repo), args.repo.rstrip("/")
    files = fleet_files(snapshot, origin=origin)  # a large repo is parsed from here on
    from gitedge.cli.planresult import plan_and_print  # lazy: overlaps the parse (docstring)

    return plan_and_print(args, files=files, origin=origin)
