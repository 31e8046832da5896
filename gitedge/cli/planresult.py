"""``gitedge plan``'s second half (see cli/plan.py): the parsed fleet planned for the cluster
given, the plan printed as text, JSON or YAML."""

from __future__ import annotations

import argparse
from typing import Any

from gitedge.adapters.fleetload import load_files
from gitedge.cli.common import parse_now, read_file, structured
from gitedge.core.config import load_site_file
from gitedge.core.delivery.requiredigest import plan_unpinned
from gitedge.core.fleet.files import FleetFiles
from gitedge.core.rollout.planning import plan, plan_json
from gitedge.core.validation import no_documents, site_facts, site_of
from gitedge.errors import DigestRequired, InvalidInput


def plan_and_print(args: argparse.Namespace, *, files: FleetFiles, origin: str) -> int:
    fleet = load_files(files)
    empty = no_documents(fleet, origin=origin)
    if empty is not None:
        raise InvalidInput([empty])
    site = load_site_file(read_file(args.cluster, "--cluster"), path=args.cluster)
    facts = site_facts(site, current_k3s=args.current_k3s, current_os=args.current_os)
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
        print(plan_text(doc, facts.labels, facts.k3s_version, facts.os_image))
    return 0


def window_text(w: dict[str, Any] | None) -> str:
    if w is None:
        return "no window: applies as soon as its images are mirrored"
    if w["open"]:
        return f"{w['name']}: OPEN now, closes {w['closesAt']}"
    nxt = w["nextOpen"] or "never within two years (blackouts?)"
    return f"{w['name']}: closed, next opens {nxt}"


def plan_text(
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
        lines.append(f"  window:  {window_text(k3s['window'])}")
    os_ = doc["os"]
    if os_ is None:
        lines.append("os: no target selects this cluster")
    else:
        lines.append(f"os: {os_['image']}  (target {os_['target']})")
        lines.append(f"  running: {current_os or 'unknown'}")
        if os_.get("path"):  # an OS carrying K3s: one image per K3s minor (os.via)
            lines.append(f"  path:    {' -> '.join(os_['path'])}")
        lines.append(f"  window:  {window_text(os_['window'])}")
    if doc["manifests"]:
        lines.append(f"manifests: {len(doc['manifests'])} SUC Plan(s) (see -o json)")
    return "\n".join(lines)
