"""Commands on a fleet repo's files: ``validate`` and ``schema`` (``plan``: plan.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gitedge.adapters.git.worktree import read_tree
from gitedge.cli.common import cluster_files, counted, parse_now
from gitedge.core.schemas import all_schemas
from gitedge.core.validation import validate
from gitedge.errors import UsageError


def cmd_validate(args: argparse.Namespace) -> int:
    snapshot = read_tree(args.dir)
    clusters = cluster_files(args.clusters) if args.clusters else {}
    fleet, problems, plans = validate(
        snapshot, clusters=clusters, now=parse_now(None), origin=args.dir.rstrip("/")
    )
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s)", file=sys.stderr)
        return 1
    assert fleet is not None
    print(
        f"{args.dir}: ok ({counted(len(fleet.targets), 'target')}, "
        f"{counted(len(fleet.windows), 'window')}, {counted(len(fleet.groups), 'group')}, "
        f"{counted(len(fleet.k3s_releases()), 'K3s release')}"
        + (f"; {counted(len(plans), 'cluster')} planned without conflict)" if clusters else ")")
    )
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    schemas = all_schemas()
    if args.write is None:  # one kind's schema on stdout (default: any fleet kind)
        name = f"{args.kind.lower()}.schema.json"
        if name not in schemas:
            kinds = ", ".join(n.split(".")[0] for n in schemas)
            raise UsageError(f"--kind {args.kind!r}: no such kind; one of {kinds}")
        sys.stdout.write(schemas[name])
        return 0
    out = Path(args.write)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in schemas.items():
            (out / name).write_text(text, encoding="utf-8")
    except FileExistsError:
        raise UsageError(f"--write {out}: not a directory; give a directory") from None
    except OSError as e:
        where = e.filename or out
        raise UsageError(f"--write {out}: cannot write {where}: {e.strerror}") from None
    print(f"wrote {len(schemas)} schemas to {out}")
    return 0
