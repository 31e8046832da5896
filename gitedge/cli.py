"""The gitedge command line: parses arguments, calls the library, prints. Nothing else prints.

Exit codes: 0 success, 1 the thing failed (invalid repo, bad commit, unreachable source), 2 usage.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gitedge import __version__
from gitedge.errors import GitEdgeError, InvalidInput, UsageError, VerificationFailed

Handler = Callable[[argparse.Namespace], int]


def _now(text: str | None) -> datetime:
    if not text:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--now {text!r}: expected ISO 8601, e.g. 2026-11-23T01:30:00Z") from None
    if value.tzinfo is None:
        raise UsageError(f"--now {text!r}: give a time zone, e.g. 2026-11-23T01:30:00Z")
    return value


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise UsageError(f"{what} {path}: {e.strerror}") from None


def _cluster_files(path: str) -> dict[str, bytes]:
    p = Path(path)
    if p.is_dir():
        files = sorted(q for q in p.iterdir() if q.suffix in (".yaml", ".yml") and q.is_file())
        return {str(q): q.read_bytes() for q in files}
    return {path: _read(path, "--clusters")}


def cmd_validate(args: argparse.Namespace) -> int:
    from gitedge.adapters.worktree import read_tree
    from gitedge.core.validation import validate

    snapshot = read_tree(args.dir)
    clusters = _cluster_files(args.clusters) if args.clusters else {}
    fleet, problems, plans = validate(
        snapshot, clusters=clusters, now=_now(None), origin=args.dir.rstrip("/")
    )
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s)", file=sys.stderr)
        return 1
    assert fleet is not None
    print(
        f"{args.dir}: ok ({len(fleet.targets)} targets, {len(fleet.windows)} windows, "
        f"{len(fleet.groups)} groups, {len(fleet.k3s_releases())} K3s releases"
        + (f"; {len(plans)} cluster(s) planned without conflict)" if clusters else ")")
    )
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from gitedge.core.fleetfiles import FleetFiles

    if args.rev:
        from gitedge.adapters.gitsource import read_commit_tree

        snapshot = read_commit_tree(repo=args.repo, rev=args.rev)
        origin = f"{args.repo}@{args.rev}"
    else:
        from gitedge.adapters.worktree import read_tree

        snapshot, origin = read_tree(args.repo), args.repo.rstrip("/")
    files = FleetFiles(snapshot, origin=origin)  # a large repo is parsed while we import
    from gitedge.core.config import load_site_file
    from gitedge.core.fleet import load_files
    from gitedge.core.planning import plan, plan_json
    from gitedge.core.validation import cluster_facts, site_of

    fleet = load_files(files)
    site = load_site_file(_read(args.cluster, "--cluster"), path=args.cluster)
    facts = cluster_facts(site, current_k3s=args.current_k3s, current_os=args.current_os)
    result = plan(fleet, facts, now=_now(args.now), site=site_of(site))
    doc = plan_json(result)
    if args.output == "json":
        print(json.dumps(doc, indent=2))
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
    if k3s is None:
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
        lines.append(f"  window:  {_window_text(os_['window'])}")
    if doc["manifests"]:
        lines.append(f"manifests: {len(doc['manifests'])} SUC Plan(s) (see -o json)")
    return "\n".join(lines)


def cmd_schema(args: argparse.Namespace) -> int:
    from gitedge.core.schemas import all_schemas

    out = Path(args.write)
    out.mkdir(parents=True, exist_ok=True)
    schemas = all_schemas()
    for name, text in schemas.items():
        (out / name).write_text(text, encoding="utf-8")
    print(f"wrote {len(schemas)} schemas to {out}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from gitedge.adapters.gitsource import GitRepo
    from gitedge.agent.verifying import VerifiedCommits, load_bootstrap, verify_range

    bootstrap = load_bootstrap(args.trust)
    cache = VerifiedCommits(args.cache, bootstrap=bootstrap) if args.cache else None
    try:
        d = verify_range(
            GitRepo(path=args.repo),
            bootstrap=bootstrap,
            rev=args.rev,
            since=args.since,
            cache=cache,
        )
    except VerificationFailed as e:
        if args.output == "json":
            doc = {"verified": False, "commit": e.commit, "reason": e.reason, "detail": e.detail}
            print(json.dumps(doc, indent=2))
            return 1
        raise
    if args.output == "json":
        doc = {
            "verified": True,
            "tip": d.tip,
            "policy": d.policy.source,
            "commits": [
                {"id": a.commit, "signer": a.signer, "key": a.key_id, "trustChange": a.trust_change}
                for a in d.accepted
            ],
            "cached": d.skipped_cached,
            "exempt": d.exempt,
        }
        print(json.dumps(doc, indent=2))
        return 0
    lines = [  # one write, not a print() per commit: a quarter of the time on 10,000
        f"{a.commit[:12]}  good  {a.signer}  {a.key_id}"
        f"{'  (trust change)' if a.trust_change else ''}\n"
        for a in d.accepted
    ]
    sys.stdout.write("".join(lines))
    extra = [
        f"{n} {what}"
        for n, what in (
            (d.skipped_cached, "already verified"),
            (d.exempt, "exempt: brought in by first-parent merges"),
        )
        if n
    ]
    print(
        f"verified {len(d.accepted)} commit(s) up to {d.tip}"
        + (f" ({'; '.join(extra)})" if extra else "")
        + f"; trust in force: {d.policy.source}"
    )
    return 0


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
        self.width = max(self.width, len(line))
        print("\r" + line.ljust(self.width), end="", file=sys.stderr, flush=True)

    def finish(self) -> None:
        if self.tty and self.width:
            print(file=sys.stderr)


def _mib(n: int) -> str:
    return f"{n / 1048576:.1f} MiB"


def cmd_mirror(args: argparse.Namespace) -> int:
    from gitedge.adapters.mirroring import Mirror, parse_location
    from gitedge.adapters.registryhosts import Hosts
    from gitedge.core.ocimanifest import Platform

    try:
        src, dst = parse_location(args.src), parse_location(args.dst)
        platforms = [Platform.parse(p) for p in args.platform]
    except ValueError as e:
        raise UsageError(str(e)) from None
    hosts = Hosts()
    if args.config:  # pydantic only when asked: a re-mirror is mostly interpreter start-up
        from gitedge.core.config import AgentConfig, load_site_file

        site = load_site_file(_read(args.config, "--config"), path=args.config)
        if not isinstance(site, AgentConfig):
            raise UsageError(f"--config {args.config}: expected an AgentConfig")
        hosts = Hosts.from_config(site.registry)
    progress = _MirrorProgress(tty=sys.stderr.isatty() and not args.quiet)
    try:
        with Mirror(hosts=hosts, jobs=args.jobs, progress=progress) as mirror:
            r = mirror.mirror(src, dst, platforms=platforms)
    finally:
        progress.finish()
    s = r.stats
    if args.output == "json":
        doc = {
            "source": r.source,
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
        print(json.dumps(doc, indent=2))
        return 0
    if not args.quiet:
        what = "up to date" if r.up_to_date else (
            f"{s.blobs_copied} blob(s) copied ({_mib(s.bytes_copied)}), {s.blobs_present} present, "
            f"{s.blobs_mounted} mounted"
        )  # fmt: skip
        print(f"{r.source} -> {r.destination}: {what} in {r.seconds:.2f}s", file=sys.stderr)
    print(r.digest)
    return 0


def _agent_config(path: str) -> Any:
    from gitedge.core.config import AgentConfig, load_site_file

    site = load_site_file(_read(path, "--config"), path=path)
    if not isinstance(site, AgentConfig):
        raise UsageError(f"--config {path}: expected an AgentConfig, not a Cluster identity")
    return site


def _cluster_api(config: Any) -> Any:
    """``apply.mode: print`` prints Plans on stdout; ``suc`` talks to the cluster's API (the
    pod's service account in the cluster, else ``$KUBECONFIG`` / ``~/.kube/config``)."""
    if config.apply.mode == "print":
        from gitedge.agent.clusters import PrintCluster

        return PrintCluster(config=config, out=print)
    from gitedge.adapters.kube import Kube

    return Kube.connect(namespace=config.apply.namespace)


def _pass_text(p: Any) -> str:
    lines = ["steps: " + ", ".join(f"{k} {v}" for k, v in p.outcomes.items())]
    lines += [f"  {step}: {text}" for step, text in p.errors.items()]
    if p.new_commits:
        lines.append(f"verified {p.new_commits} new commit(s), now at {p.tip}")
    lines += [f"mirrored {k} -> {d} ({n} bytes)" for k, d, n in p.mirrored_now]
    lines += [f"{a.verb} {a.name}: {a.reason}" for a in p.actions]
    lines += [f"{c.type}={c.status} ({c.reason})" for c in p.conditions if c.type == "Ready"]
    return "\n".join(lines)


def _run_in_process(args: argparse.Namespace, config: Any) -> int:
    """``--once`` (a pass, printed) and ``--pass-fd`` (one pass of ``gitedge run``, in its child
    process, summary written on the fd): the only paths that load the pass's libraries."""
    from gitedge.agent.reconcile import Agent

    agent = Agent(config, cluster=_cluster_api(config))
    try:
        if args.pass_fd is not None:
            from gitedge.agent.passes import run_child_pass

            return run_child_pass(agent, result_fd=args.pass_fd, now=_now(args.now))
        p = agent.reconcile(now=_now(args.now))
        print(_pass_text(p), file=sys.stderr)
        return 1 if p.stalled or p.transient else 0
    finally:
        agent.close()


def cmd_run(args: argparse.Namespace) -> int:
    from gitedge.agent.logs import setup_logging

    config = _agent_config(args.config)
    setup_logging(json_logs=args.log_format == "json" if args.log_format else None)
    if args.now and not (args.once or args.pass_fd is not None):
        raise UsageError("--now goes with --once (a pass at a chosen instant)")
    if args.once or args.pass_fd is not None:
        return _run_in_process(args, config)
    # the long-lived agent: scheduler, status server, metrics; each pass in a child process
    import time

    from gitedge.adapters.state import State
    from gitedge.agent.passes import ChildPasses
    from gitedge.agent.scheduler import AgentLoop
    from gitedge.agent.server import Metrics, StatusServer

    host, _, port = args.listen.rpartition(":")
    state = State(config.state.dir)
    try:
        verified: list[str] = [lv.commit] if (lv := state.last_verified) else []
    finally:
        state.close()
    passes = ChildPasses(
        config=config,
        config_path=args.config,
        metrics=Metrics(),
        log_format=args.log_format,
        stop_grace_s=args.stop_grace,
    )

    def on_pass(p: Any) -> None:  # the server thread reads this, never the state
        if p.tip:
            verified[:] = [p.tip]

    loop = AgentLoop(passes, on_pass=on_pass)
    limit = 3 * max(config.source.interval.total_seconds(), 3600.0)

    def alive() -> tuple[bool, str]:
        idle = time.monotonic() - loop.last_tick
        return idle < limit, f"last pass {idle:.0f}s ago"

    def ready() -> tuple[bool, str]:
        return bool(verified), f"at {verified[0]}" if verified else "no verified commit yet"

    server = StatusServer(
        metrics=passes.metrics, ready=ready, alive=alive, host=host or "127.0.0.1", port=int(port)
    ).start()
    print(f"gitedge run: status on http://{host or '127.0.0.1'}:{server.port}", file=sys.stderr)
    try:
        loop.run_forever()
    finally:
        server.stop()
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from gitedge.adapters.state import State
    from gitedge.agent.status import status_text

    config = _agent_config(args.config)
    if not Path(config.state.dir, "state.sqlite3").is_file():
        print(f"gitedge status: no agent state in {config.state.dir} yet", file=sys.stderr)
        return 1
    state = State(config.state.dir)
    try:
        doc = state.get_doc("status")
    finally:
        state.close()
    if doc is None:
        print(f"gitedge status: the agent has not finished a pass yet ({config.state.dir})",
              file=sys.stderr)  # fmt: skip
        return 1
    print(json.dumps(doc, indent=2) if args.output == "json" else status_text(doc))
    return 0


def cmd_fleet_status(args: argparse.Namespace) -> int:
    from gitedge.adapters.registryhosts import Hosts, RetryPolicy
    from gitedge.adapters.reports import ReportRepository, read_reports
    from gitedge.core.base import parse_duration
    from gitedge.core.report import fleet_json, fleet_rows, fleet_table
    from gitedge.core.selectors import parse_selector
    from gitedge.errors import SelectorError

    try:
        repo = ReportRepository.parse(args.registry)
        stale_after = parse_duration(args.stale_after)
        selector = parse_selector(args.selector) if args.selector else None
    except (ValueError, SelectorError) as e:
        raise UsageError(str(e)) from None
    now = _now(args.now)
    hosts = Hosts.from_config(_agent_config(args.config).registry) if args.config else Hosts()
    fleet = read_reports(repo, hosts=hosts, retry=RetryPolicy(attempts=3))
    rows = fleet_rows(fleet.reports, now=now, stale_after=stale_after, selector=selector)
    bad = [{"tag": u.tag, "error": u.error} for u in fleet.unreadable]
    if args.output == "json":
        doc = {"registry": str(repo), "time": now.isoformat(), "sites": fleet_json(rows),
               "unreadable": bad}  # fmt: skip
        print(json.dumps(doc, indent=2))
    else:
        print(fleet_table(rows))
        print("\n".join([f"{len(bad)} report(s) unreadable:"] + [f"  {b['error']}" for b in bad])
              if bad else "", end="\n" if bad else "")  # fmt: skip
    if not fleet.reports and not bad:
        print(f"gitedge fleet status: no site reports in {repo} yet", file=sys.stderr)
    return 1 if bad else 0


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
        for name, data in _cluster_files(path).items()
    ]
    hosts = Hosts.from_config(_agent_config(args.config).registry) if args.config else Hosts()
    progress = _BundleProgress(tty=sys.stderr.isatty() and not args.quiet)
    try:
        r = create_bundle(
            repo=args.repo, out=Path(args.out), now=_now(None), rev=args.rev, since=args.since,
            branch=args.branch, sites=sites, all_targets=args.all, platforms=args.platform,
            layouts=Path(args.layouts) if args.layouts else None, hosts=hosts, jobs=args.jobs,
            progress=None if args.quiet else progress,
        )  # fmt: skip
    finally:
        progress.finish()
    since = f" (commits after {r.since})" if r.since else ""
    print(f"{r.out}: {r.branch} at {r.tip}{since}; {len(r.images)} image(s), {r.blobs} blob(s), "
          f"{_size(r.size)}")  # fmt: skip
    return 0


def cmd_bundle_import(args: argparse.Namespace) -> int:
    from gitedge.agent.bundles import import_bundle, record_import
    from gitedge.agent.reconcile import Agent
    from gitedge.errors import InvalidInput

    config = _agent_config(args.config)
    agent = Agent(config, cluster=_cluster_api(config))
    progress = _BundleProgress(tty=sys.stderr.isatty() and not args.quiet)
    now = _now(None)
    try:
        try:
            r = import_bundle(agent, Path(args.file), now=now,
                              progress=None if args.quiet else progress)  # fmt: skip
        except InvalidInput:
            raise
        except GitEdgeError as e:  # name the file: the steps' errors name the commit or image
            print(f"gitedge bundle import: {args.file}: {e}", file=sys.stderr)
            return 1
        finally:
            progress.finish()
        record_import(agent.state, r, now=now)
    finally:
        agent.close()
    for key, digest, n in r.copied:
        print(f"cached {key} -> {digest} ({_size(n)} copied)")
    print(r.summary())
    if r.missing:
        n = len(r.missing)
        print(f"gitedge bundle import: {n} image(s) this site needs are not in the bundle; the "
              "agent mirrors them from upstream when it can", file=sys.stderr)  # fmt: skip
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from gitedge.agent.demo import run_demo

    return run_demo(print, keep=Path(args.keep) if args.keep else None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gitedge",
        description="GitOps agent for disconnected K3s edge sites: signed fleet repo, "
        "mirrored images, OS and K3s upgrades in maintenance windows.",
    )
    parser.add_argument("--version", action="version", version=f"gitedge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("validate", help="check a fleet repo (schema, references, conflicts)")
    p.add_argument("dir", metavar="DIR", help="the fleet repo's working tree")
    p.add_argument("--clusters", metavar="PATH", help="a cluster file or a directory of them")
    p.set_defaults(handler=cmd_validate)

    p = sub.add_parser("plan", help="what a cluster should run, and when (pure, no cluster needed)")
    p.add_argument(
        "--repo", required=True, metavar="PATH", help="fleet repo (a git repo with --rev)"
    )
    p.add_argument("--rev", metavar="REV", help="read the repo at this git revision")
    p.add_argument("--cluster", required=True, metavar="FILE", help="Cluster or AgentConfig file")
    p.add_argument("--now", metavar="ISO8601", help="plan at this instant (default: now)")
    p.add_argument("--current-k3s", metavar="V", help="override the cluster's running K3s version")
    p.add_argument("--current-os", metavar="REF", help="override the cluster's running OS image")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p.set_defaults(handler=cmd_plan)

    p = sub.add_parser("verify", help="verify the signatures of a range of fleet-repo commits")
    p.add_argument("--repo", required=True, metavar="GITDIR", help="a git repository (bare or not)")
    p.add_argument(
        "--trust",
        required=True,
        metavar="FILE",
        help="pinned trust: TrustPolicy YAML, allowed_signers, or armored OpenPGP keys",
    )
    p.add_argument("--since", metavar="REV", help="a commit already trusted (default: the root)")
    p.add_argument("--rev", default="HEAD", metavar="REV", help="newest commit (default HEAD)")
    p.add_argument("--cache", metavar="DIR", help="remember verified commit ids in DIR")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p.set_defaults(handler=cmd_verify)

    p = sub.add_parser("schema", help="write JSON Schemas of every kind")
    p.add_argument("--write", required=True, metavar="DIR")
    p.set_defaults(handler=cmd_schema)
    p = sub.add_parser("mirror", help="copy an image or index, digests kept (registry or oci:DIR)")
    p.add_argument("src", metavar="SRC", help="host[:port]/repo[:tag][@digest] or oci:DIR[:tag]")
    p.add_argument("dst", metavar="DST", help="host[:port]/repo[:tag] or oci:DIR[:tag]")
    p.add_argument(
        "--platform", action="append", default=[], metavar="OS/ARCH",
        help="copy only this platform of an index (repeatable)",
    )  # fmt: skip
    p.add_argument("--config", metavar="FILE", help="AgentConfig: registry credentials, CA, cache")
    p.add_argument("--jobs", type=int, default=4, metavar="N", help="parallel blob transfers")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress, only the digest")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p.set_defaults(handler=cmd_mirror)
    p = sub.add_parser("run", help="the agent: sync, verify, mirror, apply in windows")
    p.add_argument("--config", required=True, metavar="FILE", help="AgentConfig file")
    p.add_argument("--once", action="store_true", help="one reconcile pass, then exit")
    p.add_argument("--now", metavar="ISO8601", help="with --once: run the pass at this instant")
    p.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT",
                   help="/healthz /readyz /metrics (0.0.0.0:8080 in a pod)")  # fmt: skip
    p.add_argument("--log-format", choices=["json", "text"], help="default: text on a terminal")
    p.add_argument("--stop-grace", type=float, default=20.0, metavar="SECONDS",
                   help="on SIGTERM, how long a running pass may take to end before it is "
                   "killed (default 20; the state survives either way)")  # fmt: skip
    p.add_argument("--pass-fd", type=int, help=argparse.SUPPRESS)  # the pass's child process
    p.set_defaults(handler=cmd_run)
    p = sub.add_parser("status", help="what the agent last verified, mirrored and applied")
    p.add_argument("--config", required=True, metavar="FILE", help="AgentConfig file")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p.set_defaults(handler=cmd_status)
    p = sub.add_parser("fleet", help="the fleet view, from the status reports sites push")
    fleet = p.add_subparsers(dest="fleet_command", metavar="SUBCOMMAND", required=True)
    p = fleet.add_parser("status", help="one row per site: versions, commit, state, stale ones")
    p.add_argument(
        "--registry",
        required=True,
        metavar="REPO",
        help="host[:port]/repository the agents push reports to (report.repository)",
    )
    p.add_argument(
        "-l",
        "--selector",
        metavar="SEL",
        help="only sites whose labels match, e.g. 'env=prod,region in (eu-west)'",
    )
    p.add_argument(
        "--stale-after",
        default="24h",
        metavar="DUR",
        help="a report older than this marks its site stale (default 24h)",
    )
    p.add_argument("--config", metavar="FILE", help="AgentConfig: registry credentials, CA")
    p.add_argument("--now", metavar="ISO8601", help="judge ages at this instant (default: now)")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p.set_defaults(handler=cmd_fleet_status)  # fmt: skip
    p = sub.add_parser("bundle", help="offline bundles: commits and images for a site, one file")
    bundle = p.add_subparsers(dest="bundle_command", metavar="SUBCOMMAND", required=True)
    p = bundle.add_parser("create", help="write a bundle: git bundle + OCI layout + index")
    p.add_argument("--repo", required=True, metavar="URL_OR_DIR", help="the fleet repo")
    p.add_argument("--rev", metavar="REV", help="the commit to bring (default: HEAD)")
    p.add_argument("--since", metavar="REV", help="a commit the sites have: bring what follows")
    p.add_argument("--out", required=True, metavar="FILE", help="the bundle to write (a tar)")
    p.add_argument("--cluster", action="append", default=[], metavar="FILE",
                   help="a Cluster identity or AgentConfig (or a directory of them); repeatable: "
                   "the images their plans need, whole K3s path included")  # fmt: skip
    p.add_argument("--all", action="store_true", help="every image any target references")
    p.add_argument("--branch", help="the branch sites track (default: the AgentConfigs', or main)")
    p.add_argument("--platform", action="append", default=[], metavar="OS/ARCH",
                   help="only these platforms of indexes (repeatable; default all)")  # fmt: skip
    p.add_argument("--layouts", metavar="DIR",
                   help="prefer OCI layouts DIR/<registry>/<repository> to registries")  # fmt: skip
    p.add_argument("--config", metavar="FILE", help="AgentConfig: registry credentials, CA")
    p.add_argument("--jobs", type=int, default=4, metavar="N", help="parallel blob transfers")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress")
    p.set_defaults(handler=cmd_bundle_create)
    p = bundle.add_parser("import", help="verify a bundle and fill the site's cache from it")
    p.add_argument("file", metavar="FILE", help="the bundle")
    p.add_argument("--config", required=True, metavar="FILE", help="the site's AgentConfig")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress")
    p.set_defaults(handler=cmd_bundle_import)
    p = sub.add_parser("demo", help="the whole story on this machine, no services needed")
    p.add_argument("--keep", metavar="DIR", help="build in DIR (kept) instead of a temp dir")
    p.set_defaults(handler=cmd_demo)
    return parser


@contextmanager
def _collector_off(one_shot: bool) -> Iterator[None]:
    """Keep Python's cyclic garbage collector off while a one-shot command runs.

    A command builds its objects once and exits; reference counting frees its garbage. With the
    collector on, the first collection after a large repo is loaded walks every object of it to
    free nothing (a tenth of ``plan``'s time on 10,000 targets). The long-running agent keeps it.
    """
    was_enabled = gc.isenabled()
    if one_shot:
        gc.disable()
    try:
        yield
    finally:
        if one_shot and was_enabled:
            gc.enable()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on usage errors, 0 on --help/--version
        return int(e.code or 0)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        with _collector_off(args.command != "run"):
            return handler(args)
    except UsageError as e:
        print(f"gitedge {args.command}: {e}", file=sys.stderr)
        return 2
    except InvalidInput as e:
        for problem in e.problems:
            print(problem)
        print(f"gitedge {args.command}: {len(e.problems)} problem(s)", file=sys.stderr)
        return 1
    except GitEdgeError as e:
        print(f"gitedge {args.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
