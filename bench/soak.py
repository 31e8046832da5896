"""Soak: ``gitedge run`` for ``--minutes`` (default 120) as a site runs it, on 127.0.0.1 only.

    python3 bench/soak.py [--minutes 120] [--warmup 10] [--interval 10s]

A real ``git daemon`` serves a signed fleet repo and two Debian ``docker-registry`` processes
stand for the upstream registry and the site's cache, each behind a TCP relay that the schedule
cuts (every connection refused and dropped, as when the uplink is down) and brings back:
the git path is down one minute in four, the registries one minute in six (offset), and a
signed commit is pushed every seven minutes. The fleet's window is written from the wall clock
at start so that it opens 40% into the run and closes at 60%: the agent (its own clock, the
real one) must mirror the K3s upgrade image before it opens and print the SUC Plan inside it.

Every 30 s it samples, for every process of the agent (the parent and a pass child if one runs):
RssAnon (``/proc/PID/status``; VmRSS misleads, file pages come and go), open fds and threads;
zombies among the parent's children are counted. At the end it prints the parent's RssAnon
after the warm-up, its least-squares slope after the warm-up (KiB/hour and over 2 hours), fds
and threads at start and end, passes run and failed (per the agent's log), and missed windows
(a window with pending work in which the agent printed no Plan).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from gitedge.core.rollout.sucplans import k3s_image_tag  # noqa: E402
from tests.agentkit import fleet_files, push_image, relay, served_fleet_repo  # noqa: E402
from tests.gitserver import git_daemon  # noqa: E402
from tests.registryserver import docker_registry  # noqa: E402

FROM, TO = "v1.27.16+k3s1", "v1.28.15+k3s1"
SAMPLE_S = 30.0
PROBE_S = 10.0  # /healthz, as a kubelet liveness probe

#: ``--tracemalloc DIR``: the agent's parent traced, a snapshot dumped to DIR at each SIGUSR1
#: (after the warm-up and at the end), the growth between them printed by source line.
TRACED = """
import gc, signal, sys, tracemalloc
tracemalloc.start(12)
n = [0]
def dump(*_):
    n[0] += 1
    gc.collect()
    tracemalloc.take_snapshot().dump(f"{sys.argv[1]}/snap-{n[0]}")
signal.signal(signal.SIGUSR1, dump)
from gitedge.cli import main
sys.exit(main(sys.argv[2:]))
"""


@dataclass
class Sample:
    t: float  # seconds since the agent started
    anon_kib: int  # the parent's RssAnon
    fds: int
    threads: int
    children: int  # pass processes alive (each counted below too)
    zombies: int
    tree_anon_kib: int  # every process of the agent


@dataclass
class Log:
    lines: list[tuple[float, str]] = field(default_factory=list)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


def status_fields(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def kib(text: str) -> int:
    return int(text.split()[0])


def children(pid: int) -> list[int]:
    """Children of every thread of ``pid`` (a pass is started from the scheduler's worker)."""
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                out += [int(k) for k in (task / "children").read_text().split()]
    return out


def sample(pid: int, t: float) -> Sample:
    st = status_fields(pid)
    kids, zombies, tree_anon = children(pid), 0, kib(st["RssAnon"])
    for k in kids:
        with contextlib.suppress(OSError, KeyError):
            ks = status_fields(k)
            if ks["State"].startswith("Z"):
                zombies += 1
            else:
                tree_anon += kib(ks["RssAnon"])
    return Sample(
        t, kib(st["RssAnon"]), len(list(Path(f"/proc/{pid}/fd").iterdir())),
        int(st["Threads"]), len(kids) - zombies, zombies, tree_anon,
    )  # fmt: skip


def slope_kib_per_hour(points: list[tuple[float, int]]) -> float:
    """Least-squares slope of (seconds, KiB), in KiB per hour."""
    n = len(points)
    if n < 2:
        return float("nan")
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    sxx = sum((t - mx) ** 2 for t, _ in points)
    sxy = sum((t - mx) * (v - my) for t, v in points)
    return sxy / sxx * 3600 if sxx else float("nan")


def probe(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


def traced_growth(directory: Path) -> None:
    import tracemalloc

    a, b = (tracemalloc.Snapshot.load(str(directory / f"snap-{n}")) for n in (1, 2))
    stats = b.compare_to(a, "lineno")
    print(f"traced Python memory of the parent, end minus warm-up: "
          f"{sum(s.size_diff for s in stats):+d} B; largest changes:")  # fmt: skip
    for s in stats[:8]:
        print(f"  {s.size_diff:+7d} B {s.count_diff:+5d} blocks  {s.traceback[0]}")


def hhmm(t: datetime) -> str:
    return t.strftime("%H:%M")


def read_logs(proc: subprocess.Popen[str], log: Log, t0: float, out: Path) -> None:
    assert proc.stderr is not None
    with out.open("w") as f:
        for line in proc.stderr:
            f.write(line)
            f.flush()
            msg = json.loads(line)["msg"] if line.startswith("{") else line.rstrip("\n")
            if "status on http://" in msg:
                log.url = msg.rsplit(" ", 1)[1]
            with log.lock:
                log.lines.append((time.monotonic() - t0, msg))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=120.0)
    ap.add_argument("--warmup", type=float, default=10.0, help="minutes left out of the slope")
    ap.add_argument("--interval", default="10s", help="the agent's source.interval")
    ap.add_argument("--keep", metavar="DIR", help="work in DIR (kept) instead of a temp dir")
    ap.add_argument("--tracemalloc", metavar="DIR", help="trace the parent: see TRACED")
    args = ap.parse_args()
    run_s = args.minutes * 60
    warm_s = min(args.warmup * 60, run_s / 2)
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="gitedge-soak-"))
    tmp.mkdir(parents=True, exist_ok=True)
    repo = served_fleet_repo(tmp)
    try:
        with (
            docker_registry(tmp / "upstream") as upstream,
            docker_registry(tmp / "cache") as cache,
            git_daemon(tmp / "served") as git,
            relay(int(git.rsplit(":", 1)[1])) as git_link,
            relay(upstream.port) as up_link,
            relay(cache.port) as cache_link,
        ):
            up_host = f"127.0.0.1:{up_link.port}"
            push_image(tmp, f"{upstream.host}/rancher/k3s-upgrade:{k3s_image_tag(TO)}")
            start = datetime.now(UTC)
            w_open = (start + timedelta(seconds=run_s * 0.4)).replace(second=0, microsecond=0)
            w_close = max(
                w_open + timedelta(minutes=2),
                (start + timedelta(seconds=run_s * 0.6)).replace(second=0, microsecond=0),
            )
            files = fleet_files(registry=up_host, releases=[FROM, TO], k3s=TO, os_image=None)
            files["windows.yaml"] = (
                files["windows.yaml"]
                .replace('"01:00"', f'"{hhmm(w_open)}"')
                .replace('"05:00"', f'"{hhmm(w_close)}"')
            )
            repo.commit(files, at=int(start.timestamp()) - 3600)
            cfg = tmp / "agent.yaml"
            cfg.write_text(
                "apiVersion: gitedge.io/v1alpha1\nkind: AgentConfig\n"
                f"cluster:\n  name: soak\n  status: {{k3sVersion: {FROM}, arches: [amd64]}}\n"
                f"source: {{url: 'git://127.0.0.1:{git_link.port}/fleet.git', "
                f"interval: {args.interval}}}\n"
                f"trust: {{bootstrap: {tmp / 'allowed_signers'}}}\n"
                f"registry: {{cache: {{url: 'http://127.0.0.1:{cache_link.port}'}}}}\n"
                f"apply: {{mode: print}}\nstate: {{dir: {tmp / 'state'}}}\n"
            )
            print(f"soak: {args.minutes:g} min from {start:%H:%M:%S} UTC in {tmp}; window "
                  f"{hhmm(w_open)}-{hhmm(w_close)} UTC; git down 1 min in 4, registries 1 in "
                  f"6, a commit every 7 min; samples every {SAMPLE_S:.0f} s", flush=True)  # fmt: skip
            traced = ["-c", TRACED, args.tracemalloc] if args.tracemalloc else ["-m", "gitedge"]
            if args.tracemalloc:
                Path(args.tracemalloc).mkdir(parents=True, exist_ok=True)
            proc = subprocess.Popen(
                [sys.executable, *traced, "run", "--config", str(cfg),
                 "--listen", "127.0.0.1:0", "--log-format", "json"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            t0 = time.monotonic()
            log = Log()
            reader = threading.Thread(
                target=read_logs, args=(proc, log, t0, tmp / "agent.log"), daemon=True
            )
            reader.start()
            samples: list[Sample] = []
            commits, outages = 0, {"git": 0, "registry": 0}
            next_sample = 10.0  # the agent's imports done
            next_probe, probes, dumped = 10.0, Counter[int](), False
            try:
                while (now := time.monotonic() - t0) < run_s:
                    if proc.poll() is not None:
                        raise SystemExit(
                            f"soak: the agent exited ({proc.returncode}) at {now:.0f}s"
                        )
                    minute = int(now // 60)
                    git_up = minute % 4 != 2
                    reg_up = minute % 6 != 4
                    if git_link.online and not git_up:
                        outages["git"] += 1
                    if up_link.online and not reg_up:
                        outages["registry"] += 1
                    git_link.online = git_up
                    up_link.online = cache_link.online = reg_up
                    if now >= 7 * 60 * (commits + 1):
                        commits += 1
                        repo.commit(at=int(time.time()) - 60)
                    if args.tracemalloc and not dumped and now >= warm_s:
                        proc.send_signal(signal.SIGUSR1)
                        dumped = True
                    if now >= next_sample:
                        s = sample(proc.pid, now)
                        samples.append(s)
                        print(f"  {now / 60:6.1f} min  RssAnon {s.anon_kib} KiB  fds {s.fds}  "
                              f"threads {s.threads}  children {s.children}  zombies {s.zombies}"
                              f"  tree {s.tree_anon_kib} KiB", flush=True)  # fmt: skip
                        next_sample += SAMPLE_S
                    if now >= next_probe and log.url:
                        probes[probe(log.url + "/healthz")] += 1
                        next_probe += PROBE_S
                    time.sleep(0.5)
                samples.append(sample(proc.pid, time.monotonic() - t0))
                if args.tracemalloc:
                    proc.send_signal(signal.SIGUSR1)
                    time.sleep(5)
            finally:
                proc.send_signal(signal.SIGTERM)
                code = proc.wait(120)
                reader.join(timeout=10)
            report(samples, log, warm_s=warm_s, code=code, commits=commits, outages=outages,
                   window=(w_open, w_close), t0_wall=start)  # fmt: skip
            print(f"/healthz answers: {dict(probes)}")
            if args.tracemalloc:
                traced_growth(Path(args.tracemalloc))
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def report(
    samples: list[Sample],
    log: Log,
    *,
    warm_s: float,
    code: int,
    commits: int,
    outages: dict[str, int],
    window: tuple[datetime, datetime],
    t0_wall: datetime,
) -> None:
    with log.lock:
        lines = list(log.lines)
    passes = [m for _, m in lines if m.startswith("pass ") and " in " in m]
    failed = [m for m in passes if " failed in " in m or "backing off" in m]
    plans = [t for t, m in lines if m.startswith(("create ", "update ", "advance to "))]
    mirrored = [t for t, m in lines if m.startswith("mirrored ")]
    errors = [m for _, m in lines if "Traceback" in m]
    w_open, w_close = ((w - t0_wall).total_seconds() for w in window)
    missed = 0 if any(w_open <= t <= w_close + 60 for t in plans) else 1
    outside = sum(1 for t in plans if not w_open - 60 <= t <= w_close + 60)
    plans = plans[:1]  # the Plan is logged at every pass while it is pending
    after = [s for s in samples if s.t >= warm_s]
    first, last = samples[0], samples[-1]
    slope = slope_kib_per_hour([(s.t, s.anon_kib) for s in after])
    span_h = (after[-1].t - after[0].t) / 3600 if len(after) > 1 else 0.0
    print(f"\nsoak: {last.t / 60:.1f} min, {len(samples)} samples; the agent exited {code}")
    print(f"parent RssAnon: {first.anon_kib} KiB at start, {after[0].anon_kib} KiB after the "
          f"{warm_s / 60:.0f}-min warm-up, {last.anon_kib} KiB at the end "
          f"(min {min(s.anon_kib for s in after)}, max {max(s.anon_kib for s in after)})")  # fmt: skip
    print(f"parent RssAnon slope after warm-up: {slope:+.1f} KiB/hour over {span_h:.2f} h "
          f"= {slope * 2 / 1024:+.3f} MiB over 2 hours (goal <= 1 MiB)")  # fmt: skip
    print(f"fds: {first.fds} at start, {last.fds} at end (max {max(s.fds for s in samples)}); "
          f"threads: {first.threads} at start, {last.threads} at end "
          f"(max {max(s.threads for s in samples)}); zombies seen: "
          f"{max(s.zombies for s in samples)}")  # fmt: skip
    print(f"passes run: {len(passes)}, failed or backing off: {len(failed)}; outages: "
          f"git {outages['git']}, registry {outages['registry']}; commits pushed: {commits}")  # fmt: skip
    print(f"window {window[0]:%H:%M}-{window[1]:%H:%M} UTC: image mirrored at "
          f"{', '.join(f'{t / 60:.1f}' for t in mirrored[:3]) or 'never'} min, Plan first printed at "
          f"{', '.join(f'{t / 60:.1f}' for t in plans) or 'never'} min; missed windows: "
          f"{missed}; Plans printed outside the window: {outside}")  # fmt: skip
    if errors:
        print(f"tracebacks in the log: {len(errors)}")


if __name__ == "__main__":
    main()
