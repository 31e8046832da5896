"""``gitedge bundle create`` and ``bundle import``: the commits and images a site without
network needs, in one file, and that file verified into a site's cache."""

from __future__ import annotations

import argparse
import sys
from importlib.resources import files
from pathlib import Path

from gitedge.adapters.registry.hosts import Hosts
from gitedge.agent.bundles.create import create_bundle
from gitedge.agent.bundles.importing import import_bundle, record_import
from gitedge.agent.reconcile import Agent
from gitedge.cli.clusterapi import cluster_api
from gitedge.cli.common import cluster_files, parse_now
from gitedge.cli.progress import BundleProgress, size_text
from gitedge.cli.siteconfig import agent_config
from gitedge.core.config import load_site_file
from gitedge.core.delivery.sucimages import SUC_MANIFESTS, SUC_RELEASE
from gitedge.core.images.refs import ImageRef
from gitedge.errors import GitEdgeError, InvalidInput, UsageError


def cmd_bundle_create(args: argparse.Namespace) -> int:
    sites = [
        load_site_file(data, path=name)
        for path in args.cluster
        for name, data in cluster_files(path).items()
    ]
    registry = agent_config(args.config).registry if args.config else None
    hosts = Hosts.from_config(registry) if registry is not None else Hosts()
    for image in args.kubectl_image:
        try:
            ImageRef.parse(image)
        except ValueError as e:
            raise UsageError(f"--kubectl-image: {e}") from None
    progress = BundleProgress(tty=sys.stderr.isatty() and not args.quiet)
    try:
        r = create_bundle(
            repo=args.repo,
            out=Path(args.out),
            now=parse_now(None),
            rev=args.rev,
            since=args.since,
            branch=args.branch,
            sites=sites,
            all_targets=args.all,
            platforms=args.platform,
            layouts=Path(args.layouts) if args.layouts else None,
            hosts=hosts,
            endpoints=registry.endpoints if registry is not None else None,
            jobs=args.jobs,
            progress=None if args.quiet else progress,
            suc=args.suc,
            kubectl=args.kubectl_image,
        )
    finally:
        progress.finish()
    for why in r.skipped:  # registry.endpoints: a hub passed over, and why
        print(f"gitedge bundle create: {why}", file=sys.stderr)
    for image, endpoint in r.served:
        print(f"{image} served by {endpoint}")
    since = f" (commits after {r.since})" if r.since else ""
    print(
        f"{r.out}: {r.branch} at {r.tip}{since}; {len(r.images)} image(s), {r.blobs} blob(s), "
        f"{size_text(r.size)}"
    )
    return 0


def cmd_bundle_import(args: argparse.Namespace) -> int:
    config = agent_config(args.config)
    file = Path(args.file)
    if not file.is_file():
        what = "a directory" if file.is_dir() else "no such file" if not file.exists() else ""
        raise UsageError(f"{file}: {what or 'not a regular file'}; give the bundle (a .tar file)")
    agent = Agent(config, cluster=cluster_api(config))
    progress = BundleProgress(tty=sys.stderr.isatty() and not args.quiet)
    now = parse_now(None)
    try:
        try:
            r = import_bundle(
                agent,
                file,
                now=now,
                suc=bool(args.suc_manifests),
                progress=None if args.quiet else progress,
            )
        except InvalidInput:
            raise
        except GitEdgeError as e:  # name the file: the steps' errors name the commit or image
            print(f"gitedge bundle import: {args.file}: {e}", file=sys.stderr)
            return 1
        except OSError as e:  # the file went away or cannot be read; nothing was recorded
            print(f"gitedge bundle import: {args.file}: {e.strerror}", file=sys.stderr)
            return 1
        finally:
            progress.finish()
        record_import(agent.state, r, now=now)
    finally:
        agent.close()
    for key, digest, n in r.copied:
        print(f"cached {key} -> {digest} ({size_text(n)} copied)")
    print(r.summary())
    if args.suc_manifests:
        _write_suc_manifests(Path(args.suc_manifests))
    if r.missing:
        n = len(r.missing)
        print(
            f"gitedge bundle import: {n} image(s) this site needs are not in the bundle; the "
            "agent mirrors them from upstream when it can",
            file=sys.stderr,
        )
    return 0


def _write_suc_manifests(out: Path) -> None:
    """SUC's pinned release manifests (shipped in gitedge: gitedge/data/suc) into ``out``."""
    src = files("gitedge").joinpath("data", "suc", SUC_RELEASE)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name in SUC_MANIFESTS:
            (out / name).write_bytes(src.joinpath(name).read_bytes())
    except OSError as e:
        raise UsageError(f"--suc-manifests {out}: cannot write there: {e.strerror}") from None
    paths = " && ".join(f"kubectl apply -f {out / n}" for n in SUC_MANIFESTS)
    print(f"wrote SUC {SUC_RELEASE}'s manifests to {out}; bring SUC up with: {paths}")
