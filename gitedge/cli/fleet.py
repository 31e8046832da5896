"""``gitedge fleet status``: every site's report, read concurrently through a cache by digest,
as a table, JSON, or the self-contained fleet page."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import IO

from gitedge.adapters.registry.hosts import Hosts, RetryPolicy
from gitedge.adapters.reports import scan as fleetscan
from gitedge.adapters.reports.store import ReportRepository, Unreadable
from gitedge.cli.common import parse_now, structured
from gitedge.cli.siteconfig import agent_config
from gitedge.core.fleet.base import parse_duration
from gitedge.core.fleet.selectors import parse_selector
from gitedge.core.status.fleetpage import page_site, render_page
from gitedge.core.status.sitereport import (
    SiteReport,
    fleet_json,
    fleet_rows,
    fleet_table,
    from_document,
    tag_for,
)
from gitedge.core.timefmt import iso_z
from gitedge.errors import SelectorError, UsageError


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[IO[str]]:
    """stdout, or ``path`` written whole or not at all (a temp file renamed at the end)."""
    if path is None:
        yield sys.stdout
        return
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    except OSError as e:
        raise UsageError(f"--out {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
        umask = os.umask(0)
        os.umask(umask)
        Path(tmp).chmod(0o666 & ~umask)  # as an ordinary new file, not mkstemp's 0600
        Path(tmp).replace(target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def cmd_fleet_status(args: argparse.Namespace) -> int:
    try:
        repo = ReportRepository.parse(args.registry)
        stale_after = parse_duration(args.stale_after)
        selector = parse_selector(args.selector) if args.selector else None
    except (ValueError, SelectorError) as e:
        raise UsageError(str(e)) from None
    if args.jobs < 1 or args.jobs > 256:
        raise UsageError(f"--jobs {args.jobs}: give 1 to 256")
    if args.out is not None and not Path(args.out).resolve().parent.is_dir():
        raise UsageError(f"--out {args.out}: no such directory")
    now = parse_now(args.now)
    hosts = Hosts.from_config(agent_config(args.config).registry) if args.config else Hosts()
    where = Path(args.cache_dir) if args.cache_dir else fleetscan.default_cache_dir(repo)
    cache = fleetscan.ReportCache(where)
    scan = fleetscan.scan_reports(
        repo, cache=cache, hosts=hosts, retry=RetryPolicy(attempts=3), jobs=args.jobs
    )

    def slim() -> Iterator[SiteReport]:
        """The reports as they stream from the cache, each cut to what the views show (the
        Ready condition only); the unreadable ones collected on the side."""
        for item in fleetscan.iter_reports(scan):
            if isinstance(item, Unreadable):
                bad.append({"tag": item.tag, "error": item.error})
            else:
                yield replace(
                    item, conditions=tuple(c for c in item.conditions if c.type == "Ready")
                )

    bad: list[dict[str, str]] = []
    rows = fleet_rows(slim(), now=now, stale_after=stale_after, selector=selector)
    print(
        f"gitedge fleet status: {scan.tags} report(s) in {repo}: {scan.fetched} fetched, "
        f"{scan.cached} unchanged (cache {cache.dir})",
        file=sys.stderr,
    )
    with _output(args.out) as out:
        if args.output == "json":
            # Streamed: each site's full report read back from the cache as it is written.
            out.write(json.dumps({"registry": str(repo), "time": iso_z(now)})[:-1])
            out.write(', "sites": [')
            for i, row in enumerate(rows):
                tag = tag_for(row.report.cluster)
                data = cache.get(scan.digests[tag])
                full = from_document(data, where=f"{repo}:{tag}") if data else row.report
                (doc,) = fleet_json([replace(row, report=full)])
                out.write(("," if i else "") + "\n  " + json.dumps(doc))
            out.write(f'\n], "unreadable": {json.dumps(bad, indent=2)}}}\n')
        elif args.output == "yaml":  # not streamed: a yaml document is written whole
            docs = []
            for row in rows:
                tag = tag_for(row.report.cluster)
                data = cache.get(scan.digests[tag])
                full = from_document(data, where=f"{repo}:{tag}") if data else row.report
                docs += fleet_json([replace(row, report=full)])
            doc = {"registry": str(repo), "time": iso_z(now), "sites": docs, "unreadable": bad}
            print(structured(doc, "yaml"), file=out)
        elif args.output == "html":
            out.write(
                render_page(
                    registry=str(repo),
                    now=now,
                    stale_after=stale_after,
                    sites=[page_site(r) for r in rows],
                    unreadable=[(b["tag"], b["error"]) for b in bad],
                )
            )
        else:
            print(fleet_table(rows), file=out)
            if bad:
                print(
                    "\n".join(
                        [f"{len(bad)} report(s) unreadable:"] + [f"  {b['error']}" for b in bad]
                    ),
                    file=out,
                )
    if not scan.tags:
        print(f"gitedge fleet status: no site reports in {repo} yet", file=sys.stderr)
    return 1 if bad else 0
