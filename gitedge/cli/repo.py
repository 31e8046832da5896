"""Commands on a fleet repo's files: ``validate``, ``plan``, ``schema`` (signatures: verify.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gitedge.adapters.worktree import read_tree
from gitedge.cli.common import cluster_files, counted, parse_now, read_file, structured
from gitedge.core.config import load_site_file
from gitedge.core.fleet import load_files
from gitedge.core.fleetfiles import FleetFiles
from gitedge.core.pins import plan_unpinned
from gitedge.core.planning import plan, plan_json
from gitedge.core.schemas import all_schemas
from gitedge.core.validation import cluster_facts, no_documents, site_of, validate
from gitedge.errors import DigestRequired, InvalidInput, UsageError


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


def cmd_plan(args: argparse.Namespace) -> int:
    if args.rev:
        from gitedge.adapters.gitsource import read_commit_tree  # pygit2 (~10 MiB) for --rev only

        snapshot = read_commit_tree(repo=args.repo, rev=args.rev)
        origin = f"{args.repo}@{args.rev}"
    else:
        snapshot, origin = read_tree(args.repo), args.repo.rstrip("/")
    files = FleetFiles(snapshot, origin=origin)  # a large repo is parsed from here on
    fleet = load_files(files)
    empty = no_documents(fleet, origin=origin)
    if empty is not None:
        raise InvalidInput([empty])
    site = load_site_file(read_file(args.cluster, "--cluster"), path=args.cluster)
    facts = cluster_facts(site, current_k3s=args.current_k3s, current_os=args.current_os)
    result = plan(fleet, facts, now=parse_now(args.now), site=site_of(site))
    refused = plan_unpinned(fleet, result)
    if refused:
        found = [u.problem for us in refused.values() for u in us]
        raise DigestRequired(
            found, summary=f"{origin}: {len(found)} image(s) of the plan are named by tag only"
        )
    doc = plan_json(result)
    if args.output != "text":
        print(structured(doc, args.output))
    else:
        print(_plan_text(doc, facts.labels, facts.k3s_version, facts.os_image))
    return 0


def _window_text(w: dict[str, Any] | None) -> str:
    if w is None:
        return "no window: applies as soon as its images are mirrored"
    if w["open"]:
        return f"{w['name']}: OPEN now, closes {w['closesAt']}"
    nxt = w["nextOpen"] or "never within two years (blackouts?)"
    return f"{w['name']}: closed, next opens {nxt}"


def _plan_text(
    doc: dict[str, Any], labels: Any, current_k3s: str | None, current_os: str | None
) -> str:
    lines = [f"cluster {doc['cluster']}"]
    lines.append("  labels: " + (", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"))
    k3s = doc["k3s"]
    if k3s is None and doc["os"] and doc["os"].get("k3s"):
        lines.append(f"k3s: {doc['os']['k3s']}  (carried by the OS image: no k3s-upgrade Plan)")
    elif k3s is None:
        lines.append("k3s: no target selects this cluster")
    else:
        lines.append(f"k3s: {k3s['version']}  (target {k3s['target']})")
        lines.append(f"  running: {current_k3s or 'unknown (path assumes one step)'}")
        path = " -> ".join(k3s["path"]) if k3s["path"] else "nothing to do: already there"
        lines.append(f"  path:    {path}")
        lines.append(f"  window:  {_window_text(k3s['window'])}")
    os_ = doc["os"]
    if os_ is None:
        lines.append("os: no target selects this cluster")
    else:
        lines.append(f"os: {os_['image']}  (target {os_['target']})")
        lines.append(f"  running: {current_os or 'unknown'}")
        if os_.get("path"):  # an OS carrying K3s: one image per K3s minor (os.via)
            lines.append(f"  path:    {' -> '.join(os_['path'])}")
        lines.append(f"  window:  {_window_text(os_['window'])}")
    if doc["manifests"]:
        lines.append(f"manifests: {len(doc['manifests'])} SUC Plan(s) (see -o json)")
    return "\n".join(lines)


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
