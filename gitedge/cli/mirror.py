"""``gitedge mirror SRC DST``: one image or index copied between registries and OCI layouts.

A no-op re-mirror is mostly interpreter start-up, so this module loads the HTTP client and the
copy engine and nothing else: no pydantic unless ``--config`` (tests/test_mirror.py lists what
it must not load; bench/mirror.py times it).
"""

from __future__ import annotations

import argparse
import sys

from gitedge.adapters.images.endpoints import endpoint_refs, first_served
from gitedge.adapters.images.mirroring import Location, Mirror, parse_location
from gitedge.adapters.registry.hosts import Hosts
from gitedge.cli.common import structured
from gitedge.cli.progress import MirrorProgress, mib
from gitedge.core.images.manifests import Platform
from gitedge.core.images.refs import ImageRef
from gitedge.errors import UsageError


def cmd_mirror(args: argparse.Namespace) -> int:
    try:
        src, dst = parse_location(args.src), parse_location(args.dst)
        platforms = [Platform.parse(p) for p in args.platform]
    except ValueError as e:
        raise UsageError(str(e)) from None
    hosts = Hosts()
    sources: list[ImageRef] = [src] if isinstance(src, ImageRef) else []
    if args.config:
        from gitedge.cli.siteconfig import agent_config  # pydantic only with --config: docstring

        registry = agent_config(args.config).registry
        hosts = Hosts.from_config(registry)
        if isinstance(src, ImageRef):  # registry.endpoints: a regional hub, then the registry
            sources = list(endpoint_refs(src, registry.endpoints))
    progress = MirrorProgress(tty=sys.stderr.isatty() and not args.quiet)
    try:
        with Mirror(hosts=hosts, jobs=args.jobs, progress=progress) as mirror:
            served: Location = src
            skipped: list[str] = []
            if sources:
                r, served, skipped = first_served(
                    sources, lambda s: mirror.mirror(s, dst, platforms=platforms)
                )
            else:
                r = mirror.mirror(src, dst, platforms=platforms)
    finally:
        progress.finish()
    for why in skipped:
        print(f"gitedge mirror: {why}", file=sys.stderr)
    s = r.stats
    if args.output != "text":
        doc = {
            "source": r.source,
            "servedBy": served.registry if isinstance(served, ImageRef) else None,
            "skipped": skipped,
            "destination": r.destination,
            "digest": r.digest,
            "sourceDigest": r.source_digest,
            "mediaType": r.media_type,
            "manifests": [{"digest": d, "platform": p} for d, p in r.manifests],
            "upToDate": r.up_to_date,
            "blobs": {
                "copied": s.blobs_copied,
                "present": s.blobs_present,
                "mounted": s.blobs_mounted,
            },
            "bytes": {"total": s.bytes_total, "copied": s.bytes_copied, "resent": s.bytes_resent},
            "resumes": s.resumes,
            "seconds": round(r.seconds, 3),
        }
        print(structured(doc, args.output))
        return 0
    if not args.quiet:
        what = "up to date"
        if not r.up_to_date:
            what = (
                f"{s.blobs_copied} blob(s) copied ({mib(s.bytes_copied)}), "
                f"{s.blobs_present} present, {s.blobs_mounted} mounted"
            )
        print(f"{r.source} -> {r.destination}: {what} in {r.seconds:.2f}s", file=sys.stderr)
        if len(sources) > 1 and isinstance(served, ImageRef):
            print(f"{src} served by {served.registry}", file=sys.stderr)
    print(r.digest)
    return 0
