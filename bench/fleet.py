"""Fleet simulation: N simulated sites doing on the wire what the agent does, against one real
``git daemon`` (and docker-registry: an origin, and a hub registry as its pull-through cache)
on 127.0.0.1. Not part of the test suite.

    python3 bench/fleet.py [--sites 1000] [--catchup-sites 20] [--image-mib 8] [--skip-registry]

Prints, per site and in total:

- unchanged poll: what the agent's parent does at each poll (``adapters/git/refs.remote_tip``:
  ``git ls-remote``, protocol v2, one ref prefix), for every site: bytes both ways (counted by
  a TCP proxy in front of the daemon), server CPU (the daemon and the upload-pack processes it
  reaped, from /proc), site CPU (this process and its ``git`` children, per poll);
- catch-up of 1,000 and 5,000 signed commits: the agent's own fetch (``GitMirror.fetch``,
  libgit2) into a site mirror holding the old tip, for ``--catchup-sites`` sites (each fetch is
  the same request, so the server's work is linear in sites: the total is per-site x N);
- reconnect storm: N sites polling every 5 minutes (random phases) meet a 6-hour outage; the
  schedule is the agent's own (``core/passrules.next_delay``: +-10% online, exponential
  backoff with full jitter offline). Arrivals at the origin after it returns, in 10-second
  bins over one poll interval, and over the hour after: peak bin vs mean bin. The same with
  no jitter (the herd it avoids) for comparison;
- an image pulled directly vs through a hub: the origin's bytes per site and per hub.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from gitedge.adapters.git.refs import remote_tip  # noqa: E402
from gitedge.adapters.git.repo import FETCHED_PREFIX  # noqa: E402
from gitedge.adapters.git.source import GitMirror  # noqa: E402
from gitedge.core.passrules import next_delay  # noqa: E402
from tests.agentkit import START, FleetRepo, fleet_files  # noqa: E402
from tests.gitserver import _start, _stop, git_env  # noqa: E402
from tests.sigtools import make_ssh_key  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------- measuring


@dataclass
class Wire:
    up: int = 0  # client -> server bytes
    down: int = 0  # server -> client bytes
    connections: int = 0


@contextlib.contextmanager
def counting_proxy(target: int) -> Iterator[tuple[int, Wire]]:
    """127.0.0.1:N forwarding to ``target``, counting bytes both ways."""
    wire, lock, stop = Wire(), threading.Lock(), threading.Event()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)
    listener.settimeout(0.2)

    def pump(a: socket.socket, b: socket.socket, field: str) -> None:
        try:
            while data := a.recv(1 << 16):
                b.sendall(data)
                with lock:
                    setattr(wire, field, getattr(wire, field) + len(data))
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                b.shutdown(socket.SHUT_WR)

    def serve(client: socket.socket) -> None:
        server = socket.create_connection(("127.0.0.1", target))
        t = threading.Thread(target=pump, args=(server, client, "down"), daemon=True)
        t.start()
        pump(client, server, "up")
        t.join()
        client.close()
        server.close()

    def accept() -> None:
        while not stop.is_set():
            try:
                c, _ = listener.accept()
            except TimeoutError:
                continue
            with lock:
                wire.connections += 1
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    th = threading.Thread(target=accept, daemon=True)
    th.start()
    try:
        yield int(listener.getsockname()[1]), wire
    finally:
        stop.set()
        th.join()
        listener.close()


def proc_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and the children it reaped (utime+stime+cutime+cstime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / TICK


def site_cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


@contextlib.contextmanager
def daemon(base: Path) -> Iterator[tuple[int, int]]:
    """``git daemon`` serving ``base``; yields (port, pid)."""

    def cmd(port: int) -> list[str]:
        return ["git", "daemon", "--export-all", f"--base-path={base}", "--reuseaddr",
                "--listen=127.0.0.1", f"--port={port}", "--max-connections=64", str(base)]  # fmt: skip

    proc, port = _start(cmd, env=git_env(base.parent / ".daemon-home"))
    threading.Thread(target=lambda: proc.stderr and proc.stderr.read(), daemon=True).start()
    # ``git daemon`` is the git wrapper running ``git-daemon``: the daemon is its child, and
    # reaps the processes serving each connection (their CPU shows in its cutime/cstime)
    kids: list[str] = []
    for task in Path(f"/proc/{proc.pid}/task").iterdir():
        kids += (task / "children").read_text().split()
    try:
        yield port, int(kids[0]) if kids else proc.pid
    finally:
        _stop(proc)


def settle(pid: int) -> float:
    """The daemon's CPU once its children are reaped (it reaps them between accepts)."""
    time.sleep(0.5)
    return proc_cpu(pid)


def kib(n: float) -> str:
    return f"{n / 1024:,.1f} KiB"


def mib(n: float) -> str:
    return f"{n / (1 << 20):,.1f} MiB"


# ---------------------------------------------------------------------------- git


def make_origin(tmp: Path) -> tuple[FleetRepo, str]:
    key = make_ssh_key(tmp / "keys", "ed25519")
    repo = FleetRepo(tmp / "served" / "fleet.git", key)
    base = repo.commit(
        fleet_files(registry="127.0.0.1:1", releases=["v1.27.16+k3s1"], k3s="v1.27.16+k3s1",
                    os_image=None),
        at=START,
    )  # fmt: skip
    for total, name in ((1000, "c1000"), (5000, "c5000")):
        while repo.n - 1 < total:
            repo.commit()
        repo.repo.references.create(f"refs/heads/{name}", repo.head, force=True)
    repo.set_main(base)
    return repo, base


def repack(repo: Path) -> None:
    """As a Git host keeps its repositories: packed, with a reachability bitmap."""
    subprocess.run(["git", "-C", str(repo), "repack", "-adq", "--write-bitmap-index"], check=True)


def unchanged_polls(port: int, pid: int, sites: int, base: str) -> dict[str, float]:
    with counting_proxy(port) as (pport, wire):
        url = f"git://127.0.0.1:{pport}/fleet.git"
        assert remote_tip(url=url, branch="main") == base
        wire.up = wire.down = wire.connections = 0
        cpu0, srv0, t0 = site_cpu(), settle(pid), time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            tips = list(pool.map(lambda _: remote_tip(url=url, branch="main"), range(sites)))
        took, cpu1, srv1 = time.monotonic() - t0, site_cpu(), settle(pid)
    assert tips == [base] * sites, "a poll failed"
    return {
        "sites": sites, "connections": wire.connections, "bytes_up": wire.up,
        "bytes_down": wire.down, "bytes_per_poll": (wire.up + wire.down) / sites,
        "server_cpu_s": srv1 - srv0, "server_cpu_per_poll_s": (srv1 - srv0) / sites,
        "site_cpu_per_poll_s": (cpu1 - cpu0) / sites, "wall_s": took,
    }  # fmt: skip


def http_polls(tmp: Path, polls: int, base: str) -> dict[str, float]:
    """The same ref check over http and https (``git http-backend`` behind the tests' threaded
    HTTP server): bytes per poll both ways; the TLS handshake is the difference."""
    from tests.gitserver import http_git_server, make_tls_files

    tls = make_tls_files(tmp / "tls")
    out: dict[str, float] = {}
    for scheme, files in (("http", None), ("https", tls)):
        with (
            http_git_server(tmp / "served", tls=files) as srv,
            counting_proxy(srv.port) as (
                pport,
                wire,
            ),
        ):
            url = f"{scheme}://127.0.0.1:{pport}/fleet.git"
            ca = str(tls.ca_file) if files else None
            for _ in range(polls):
                assert remote_tip(url=url, branch="main", ca_file=ca) == base
            out[f"{scheme}_bytes_per_poll"] = (wire.up + wire.down) / polls
            out[f"{scheme}_connections_per_poll"] = wire.connections / polls
    out["tls_overhead_per_poll"] = out["https_bytes_per_poll"] - out["http_bytes_per_poll"]
    return out


def catchups(
    tmp: Path, port: int, pid: int, base: str, sites: int, fleet: int
) -> list[dict[str, float]]:
    """The agent's fetch of 1,000 and 5,000 new commits, from a mirror at ``base``."""
    seed = tmp / "site-seed.git"
    subprocess.run(["git", "init", "-q", "--bare", str(seed)], check=True)
    subprocess.run(["git", "-C", str(seed), "fetch", "-q", str(tmp / "served" / "fleet.git"),
                    f"+{base}:refs/gitedge/fetched/main"], check=True)  # fmt: skip
    out = []
    for branch in ("c1000", "c5000"):
        with counting_proxy(port) as (pport, wire):
            url = f"git://127.0.0.1:{pport}/fleet.git"
            cpu = srv = took = 0.0
            for i in range(sites):
                site = tmp / f"site-{branch}-{i}.git"
                subprocess.run(["git", "init", "-q", "--bare", str(site)], check=True)
                (site / "objects" / "info" / "alternates").write_text(str(seed / "objects") + "\n")
                ref = site / FETCHED_PREFIX / branch
                ref.parent.mkdir(parents=True, exist_ok=True)
                ref.write_text(base + "\n")
                srv0, c0, t0 = settle(pid), site_cpu(), time.monotonic()
                GitMirror(mirror_dir=site).fetch(url=url, branch=branch)
                took += time.monotonic() - t0
                cpu, srv = cpu + site_cpu() - c0, srv + settle(pid) - srv0
                shutil.rmtree(site)
            per = (wire.up + wire.down) / sites
            out.append({
                "commits": int(branch[1:]), "sites": sites, "bytes_per_site": per,
                "server_cpu_per_site_s": srv / sites, "site_cpu_per_site_s": cpu / sites,
                "wall_per_site_s": took / sites, "fleet": fleet,
                "fleet_bytes": per * fleet, "fleet_server_cpu_s": srv / sites * fleet,
            })  # fmt: skip
    return out


# ---------------------------------------------------------------------------- storm


def storm(
    sites: int,
    *,
    interval_s: float = 300.0,
    outage_s: float = 6 * 3600.0,
    seed: int = 19,
    delay: Callable[[int, float], float] | None = None,
) -> dict[str, float]:
    """Arrivals at the origin after an outage, with the agent's schedule (``delay``: another
    schedule to compare). Sites poll with random phases before the outage."""
    rng = random.Random(seed)
    step = delay or (lambda failures, u: next_delay(interval_s=interval_s, failures=failures, u=u))
    horizon = outage_s + 3600.0
    arrivals: list[float] = []
    back: list[float] = []  # when each site first reached the origin again
    for _ in range(sites):
        t, failures = rng.random() * interval_s, 0
        while t < horizon:
            if t >= outage_s:
                arrivals.append(t - outage_s)
                if failures:
                    back.append(t - outage_s)
            failures = failures + 1 if t < outage_s else 0
            t += step(failures, rng.random())

    def bins(span: float) -> tuple[float, float]:
        counts = [0] * int(span // 10)
        for a in arrivals:
            if a < span:
                counts[int(a // 10)] += 1
        mean = sum(counts) / len(counts)
        return max(counts), mean

    back.sort()
    first_peak, first_mean = bins(interval_s)
    hour_peak, hour_mean = bins(3600.0)
    return {
        "sites": sites, "interval_s": interval_s,
        "first_interval_peak": first_peak, "first_interval_mean": first_mean,
        "first_interval_peak_over_mean": first_peak / first_mean,
        "hour_peak": hour_peak, "hour_mean": hour_mean, "hour_peak_over_mean": hour_peak / hour_mean,
        "steady_bin_mean": sites * 10 / interval_s,
        "hour_peak_over_steady": hour_peak / (sites * 10 / interval_s),
        "back_50pct_s": back[len(back) // 2], "back_99pct_s": back[int(len(back) * 0.99)],
    }  # fmt: skip


# ---------------------------------------------------------------------------- registry


def registry_part(tmp: Path, sites: int, image_mib: int, direct_sites: int) -> dict[str, float]:
    from gitedge.adapters.images.mirroring import Mirror
    from tests.registryserver import docker_registry, make_layout

    img = make_layout(tmp / "layout", tag="os", layer_sizes=(image_mib << 20,))
    with docker_registry(tmp / "origin") as origin, counting_proxy(origin.port) as (oport, owire):
        with Mirror() as m:
            m.mirror(f"oci:{img.path}:os", f"{origin.host}/edge/os:1")
        with docker_registry(tmp / "hub", proxy_remote=f"http://127.0.0.1:{oport}") as hub:

            def pull(host: str) -> int:
                """What the mirror step reads of the image: manifest(s), config, layers."""
                got, todo = 0, [("manifests", "1")]
                accept = ", ".join([
                    "application/vnd.oci.image.index.v1+json",
                    "application/vnd.oci.image.manifest.v1+json",
                    "application/vnd.docker.distribution.manifest.v2+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json",
                ])  # fmt: skip
                while todo:
                    kind, ref = todo.pop()
                    req = urllib.request.Request(
                        f"http://{host}/v2/edge/os/{kind}/{ref}", headers={"Accept": accept}
                    )
                    with urllib.request.urlopen(req, timeout=60) as r:
                        if kind == "blobs":
                            while chunk := r.read(1 << 20):
                                got += len(chunk)  # counted and discarded
                            continue
                        body = r.read()
                        got += len(body)
                    doc = json.loads(body)
                    # one platform, as a site mirrors those of its nodes
                    todo += [("manifests", d["digest"]) for d in doc.get("manifests", [])[:1]]
                    if "config" in doc:
                        todo.append(("blobs", doc["config"]["digest"]))
                    todo += [("blobs", d["digest"]) for d in doc.get("layers", [])]
                return got

            owire.down = owire.up = 0
            hub_bytes = pull(hub.host)  # one site first: the hub caches what it fetched
            first = owire.down
            with ThreadPoolExecutor(8) as pool:
                hub_bytes += sum(pool.map(lambda _: pull(hub.host), range(sites - 1)))
            via_hub = owire.down
            owire.down = 0
            with ThreadPoolExecutor(8) as pool:
                direct_bytes = sum(
                    pool.map(lambda _: pull(f"127.0.0.1:{oport}"), range(direct_sites))
                )
            direct = owire.down
        # a cold hub met by 8 sites at once: distribution's proxy does not merge its misses
        with docker_registry(tmp / "hub2", proxy_remote=f"http://127.0.0.1:{oport}") as hub2:
            owire.down = 0
            with ThreadPoolExecutor(8) as pool:
                sum(pool.map(lambda _: pull(hub2.host), range(8)))
            cold = owire.down
    return {
        "origin_bytes_cold_hub_8_at_once": cold,
        "origin_bytes_first_site_via_hub": first,
        "image_bytes": hub_bytes / sites, "sites_via_hub": sites,
        "origin_bytes_via_hub": via_hub, "hub_bytes_served": hub_bytes,
        "sites_direct": direct_sites, "origin_bytes_direct": direct,
        "origin_bytes_per_site_direct": direct / direct_sites,
        "site_bytes_direct": direct_bytes,
    }  # fmt: skip


# ---------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sites", type=int, default=1000)
    ap.add_argument("--catchup-sites", type=int, default=20)
    ap.add_argument("--image-mib", type=int, default=8)
    ap.add_argument("--direct-sites", type=int, default=50)
    ap.add_argument("--skip-registry", action="store_true")
    ap.add_argument("--loose", action="store_true", help="leave the origin's objects unpacked")
    ap.add_argument("--json", type=Path, help="write the figures here too")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gitedge-fleet-"))
    figures: dict[str, object] = {}
    try:
        t0 = time.monotonic()
        repo, base = make_origin(tmp)
        print(f"origin: {repo.n} signed commits made in {time.monotonic() - t0:.1f}s", flush=True)
        if not args.loose:
            repack(repo.path)
        figures["origin_packed"] = not args.loose
        with daemon(tmp / "served") as (port, pid):
            poll = unchanged_polls(port, pid, args.sites, base)
            figures["unchanged_poll"] = poll
            print(f"unchanged poll x{args.sites}: {poll['bytes_per_poll']:.0f} B/poll on the wire "
                  f"({poll['bytes_up'] / args.sites:.0f} up, {poll['bytes_down'] / args.sites:.0f} "
                  f"down), site CPU {poll['site_cpu_per_poll_s'] * 1000:.1f} ms/poll, server CPU "
                  f"{poll['server_cpu_s']:.2f} s total ({poll['server_cpu_per_poll_s'] * 1000:.1f} "
                  f"ms/poll), {poll['wall_s']:.1f}s wall", flush=True)  # fmt: skip
        figures["http_poll"] = hp = http_polls(tmp, 20, base)
        print(f"unchanged poll over http: {hp['http_bytes_per_poll']:.0f} B/poll "
              f"({hp['http_connections_per_poll']:.0f} connection(s)); over https "
              f"{hp['https_bytes_per_poll']:.0f} B/poll, of which the TLS handshake and framing "
              f"{hp['tls_overhead_per_poll']:.0f} B", flush=True)  # fmt: skip
        with daemon(tmp / "served") as (port, pid):
            figures["catchup"] = cu = catchups(tmp, port, pid, base, args.catchup_sites, args.sites)
            for c in cu:
                print(f"catch-up {c['commits']} commits (x{c['sites']} sites measured): "
                      f"{kib(c['bytes_per_site'])}/site, server CPU {c['server_cpu_per_site_s']:.3f}"
                      f" s/site, site CPU {c['site_cpu_per_site_s']:.3f} s; for {args.sites} "
                      f"sites: {mib(c['fleet_bytes'])}, {c['fleet_server_cpu_s']:.0f} server CPU-s",
                      flush=True)  # fmt: skip
        for n in sorted({args.sites, 10_000}):
            s = storm(n)
            flat = storm(n, delay=lambda f, u: 300.0 if f == 0 else 30.0)
            figures[f"storm_{n}"] = {"jittered": s, "no_jitter": flat}
            print(f"storm N={n}: first interval (30 bins of 10 s) peak {s['first_interval_peak']}"
                  f" vs mean {s['first_interval_mean']:.1f} = {s['first_interval_peak_over_mean']:.2f}x;"
                  f" first hour peak {s['hour_peak']} vs mean {s['hour_mean']:.1f} = "
                  f"{s['hour_peak_over_mean']:.2f}x, vs the steady poll rate "
                  f"{s['hour_peak_over_steady']:.2f}x; half the sites back in "
                  f"{s['back_50pct_s']:.0f}s, 99% in {s['back_99pct_s']:.0f}s (no jitter: "
                  f"{flat['first_interval_peak_over_mean']:.1f}x)", flush=True)  # fmt: skip
        if not args.skip_registry:
            r = registry_part(tmp, args.sites, args.image_mib, args.direct_sites)
            figures["registry"] = r
            print(f"image {mib(r['image_bytes'])}: through the hub, {r['sites_via_hub']} sites "
                  f"cost the origin {mib(r['origin_bytes_via_hub'])} (the hub served "
                  f"{mib(r['hub_bytes_served'])}); directly, {mib(r['origin_bytes_per_site_direct'])}"
                  f" per site ({r['sites_direct']} measured); a cold hub met by 8 sites at once cost "
                  f"the origin {mib(r['origin_bytes_cold_hub_8_at_once'])}", flush=True)  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
