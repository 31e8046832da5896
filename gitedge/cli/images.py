"""Commands that move images and commits: ``mirror``, ``bundle create``, ``bundle import``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from gitedge.cli.common import (
    agent_config,
    cluster_api,
    cluster_files,
    parse_now,
    read_file,
    structured,
)
from gitedge.core.images import ImageRef
from gitedge.errors import GitEdgeError, InvalidInput, UsageError


class _MirrorProgress:
    """Renders the mirror's progress reports on stderr: a redrawn bar (bytes, rate, ETA) on a
    terminal, else one quiet line per blob."""

    def __init__(self, *, tty: bool) -> None:
        import time

        self._clock = time.monotonic
        self.tty = tty
        self.began = self._clock()
        self.drawn = 0.0
        self.width = 0

    def __call__(self, p: Any) -> None:
        if not self.tty:
            if p.event == "blob":
                print(f"blob {p.digest[:19]} {p.detail} ({_mib(p.size)})", file=sys.stderr)
            return
        now = self._clock()
        if p.event != "done" and now - self.drawn < 0.1:
            return
        self.drawn = now
        frac = min(p.done_bytes / p.total_bytes, 1.0) if p.total_bytes else 1.0
        rate = p.done_bytes / max(now - self.began, 1e-3)
        eta = (p.total_bytes - p.done_bytes) / rate if rate > 0 else 0.0
        bar = "=" * int(frac * 24)
        line = (
            f"[{bar:<24}] {frac:4.0%} {_mib(p.done_bytes)}/{_mib(p.total_bytes)} "
            f"{_mib(int(rate))}/s ETA {int(eta) // 60}:{int(eta) % 60:02d} "
            f"({p.blobs_done}/{p.blobs_total} blobs)"
        )
        line = _fit(line)
        self.width = max(self.width, len(line))
        print("\r" + line.ljust(self.width), end="", file=sys.stderr, flush=True)

    def finish(self) -> None:
        if self.tty and self.width:
            print(file=sys.stderr)


def _fit(line: str) -> str:
    """A redrawn line cut to the terminal's width: one that wraps cannot be redrawn by ``\r``,
    and left a copy of itself on every redraw (a bundle's long path: the same line 7 times)."""
    try:  # the terminal the progress is drawn on: stderr (stdout may be a pipe)
        width = os.get_terminal_size(sys.stderr.fileno()).columns - 1
    except (OSError, ValueError):
        return line
    if width < 10:  # a terminal that does not say its size (0 columns)
        return line
    return line if len(line) <= width else line[: width - 1] + "…"


def _mib(n: int) -> str:
    return f"{n / 1048576:.1f} MiB"


def cmd_mirror(args: argparse.Namespace) -> int:
    from gitedge.adapters.endpoints import first_served
    from gitedge.adapters.mirroring import Location, Mirror, parse_location
    from gitedge.adapters.registryhosts import Hosts
    from gitedge.core.images import ImageRef
    from gitedge.core.ocimanifest import Platform

    try:
        src, dst = parse_location(args.src), parse_location(args.dst)
        platforms = [Platform.parse(p) for p in args.platform]
    except ValueError as e:
        raise UsageError(str(e)) from None
    hosts = Hosts()
    sources: list[ImageRef] = [src] if isinstance(src, ImageRef) else []
    if args.config:  # pydantic only when asked: a re-mirror is mostly interpreter start-up
        from gitedge.adapters.endpoints import endpoint_refs
        from gitedge.core.config import AgentConfig, load_site_file

        site = load_site_file(read_file(args.config, "--config"), path=args.config)
        if not isinstance(site, AgentConfig):
            raise UsageError(f"--config {args.config}: expected an AgentConfig")
        hosts = Hosts.from_config(site.registry)
        if isinstance(src, ImageRef):  # registry.endpoints: a regional hub, then the registry
            sources = list(endpoint_refs(src, site.registry.endpoints))
    progress = _MirrorProgress(tty=sys.stderr.isatty() and not args.quiet)
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
            "blobs": {"copied": s.blobs_copied, "present": s.blobs_present,
                      "mounted": s.blobs_mounted},
            "bytes": {"total": s.bytes_total, "copied": s.bytes_copied,
                      "resent": s.bytes_resent},
            "resumes": s.resumes,
            "seconds": round(r.seconds, 3),
        }  # fmt: skip
        print(structured(doc, args.output))
        return 0
    if not args.quiet:
        what = "up to date" if r.up_to_date else (
            f"{s.blobs_copied} blob(s) copied ({_mib(s.bytes_copied)}), {s.blobs_present} present, "
            f"{s.blobs_mounted} mounted"
        )  # fmt: skip
        print(f"{r.source} -> {r.destination}: {what} in {r.seconds:.2f}s", file=sys.stderr)
        if len(sources) > 1 and isinstance(served, ImageRef):
            print(f"{src} served by {served.registry}", file=sys.stderr)
    print(r.digest)
    return 0


class _BundleProgress:
    """``gitedge bundle`` progress on stderr: one redrawn line on a terminal (phase, image i/n,
    bytes), else one quiet line per image and per phase done."""

    def __init__(self, *, tty: bool) -> None:
        import time

        self._clock = time.monotonic
        self.tty = tty
        self.drawn = 0.0
        self.width = 0

    def __call__(self, p: Any) -> None:
        count = f" {p.index}/{p.count}" if p.count else ""
        size = f" {_size(p.done_bytes)}/{_size(p.total_bytes)}" if p.total_bytes else ""
        line = f"{p.phase}{count} {p.item}{size}"
        if not self.tty:
            if p.finished or p.phase in ("fetch", "git"):
                print(line, file=sys.stderr)
            return
        now = self._clock()
        if not p.finished and now - self.drawn < 0.1:
            return
        self.drawn = now
        line = _fit(line)
        self.width = max(self.width, len(line))
        end = "\n" if p.finished else ""
        print("\r" + line.ljust(self.width), end=end, file=sys.stderr, flush=True)
        self.width = 0 if p.finished else self.width

    def finish(self) -> None:
        if self.tty and self.width:
            print(file=sys.stderr)


def _size(n: int) -> str:
    x, unit = float(n), "B"
    for bigger in ("KiB", "MiB", "GiB"):
        if x < 1024:
            break
        x, unit = x / 1024, bigger
    return f"{n} B" if unit == "B" else f"{x:.1f} {unit}"


def cmd_bundle_create(args: argparse.Namespace) -> int:
    from gitedge.adapters.registryhosts import Hosts
    from gitedge.agent.bundles import create_bundle
    from gitedge.core.config import load_site_file

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
    progress = _BundleProgress(tty=sys.stderr.isatty() and not args.quiet)
    try:
        r = create_bundle(
            repo=args.repo, out=Path(args.out), now=parse_now(None), rev=args.rev, since=args.since,
            branch=args.branch, sites=sites, all_targets=args.all, platforms=args.platform,
            layouts=Path(args.layouts) if args.layouts else None, hosts=hosts,
            endpoints=registry.endpoints if registry is not None else None, jobs=args.jobs,
            progress=None if args.quiet else progress, suc=args.suc, kubectl=args.kubectl_image,
        )  # fmt: skip
    finally:
        progress.finish()
    for why in r.skipped:  # registry.endpoints: a hub passed over, and why
        print(f"gitedge bundle create: {why}", file=sys.stderr)
    for image, endpoint in r.served:
        print(f"{image} served by {endpoint}")
    since = f" (commits after {r.since})" if r.since else ""
    print(f"{r.out}: {r.branch} at {r.tip}{since}; {len(r.images)} image(s), {r.blobs} blob(s), "
          f"{_size(r.size)}")  # fmt: skip
    return 0


def cmd_bundle_import(args: argparse.Namespace) -> int:
    from gitedge.agent.bundles import import_bundle, record_import
    from gitedge.agent.reconcile import Agent

    config = agent_config(args.config)
    file = Path(args.file)
    if not file.is_file():
        what = "a directory" if file.is_dir() else "no such file" if not file.exists() else ""
        raise UsageError(f"{file}: {what or 'not a regular file'}; give the bundle (a .tar file)")
    agent = Agent(config, cluster=cluster_api(config))
    progress = _BundleProgress(tty=sys.stderr.isatty() and not args.quiet)
    now = parse_now(None)
    try:
        try:
            r = import_bundle(agent, file, now=now, suc=bool(args.suc_manifests),
                              progress=None if args.quiet else progress)  # fmt: skip
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
        print(f"cached {key} -> {digest} ({_size(n)} copied)")
    print(r.summary())
    if args.suc_manifests:
        _write_suc_manifests(Path(args.suc_manifests))
    if r.missing:
        n = len(r.missing)
        print(f"gitedge bundle import: {n} image(s) this site needs are not in the bundle; the "
              "agent mirrors them from upstream when it can", file=sys.stderr)  # fmt: skip
    return 0


def _write_suc_manifests(out: Path) -> None:
    """SUC's pinned release manifests (shipped in gitedge: gitedge/data/suc) into ``out``."""
    from importlib.resources import files

    from gitedge.core.sucimages import SUC_MANIFESTS, SUC_RELEASE

    src = files("gitedge").joinpath("data", "suc", SUC_RELEASE)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name in SUC_MANIFESTS:
            (out / name).write_bytes(src.joinpath(name).read_bytes())
    except OSError as e:
        raise UsageError(f"--suc-manifests {out}: cannot write there: {e.strerror}") from None
    paths = " && ".join(f"kubectl apply -f {out / n}" for n in SUC_MANIFESTS)
    print(f"wrote SUC {SUC_RELEASE}'s manifests to {out}; bring SUC up with: {paths}")
