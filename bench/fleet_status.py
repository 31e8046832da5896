"""Benchmark: ``gitedge fleet status`` over N site reports in a local docker-registry (issue 19).

N reports of the example fleet (tests/fleetkit.py: realistic labels, conditions and versions,
~1.3 KiB each) are pushed as the agents push them into a fresh Debian ``docker-registry`` on
127.0.0.1. Then ``gitedge fleet status`` runs as a process, its wall time and peak RSS
(ru_maxrss from wait4 on exactly that child) measured:
1. cold: an empty cache dir, every report fetched;
2. warm: nothing changed (a manifest GET per site, no report fetched);
3. after ``--changed`` reports were pushed again (newer time, a K3s step further);
4. ``-o html`` of the same fleet (warm), and the page's size.
Prints the figures; asserts nothing.

    python3 bench/fleet_status.py [--sites 10000] [--changed 100] [--jobs 16]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.fleetkit import example_fleet, push_reports  # noqa: E402
from tests.registryserver import docker_registry  # noqa: E402

GITEDGE = [sys.executable, "-m", "gitedge"]


def run_measured(cmd: list[str]) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds, peak RSS (MiB) of exactly this child, and its stderr."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({code}): {err[-800:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, err.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sites", type=int, default=10_000)
    ap.add_argument("--changed", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=16)
    args = ap.parse_args()
    now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    with (
        tempfile.TemporaryDirectory(prefix="gitedge-bench-fleet-") as tmp,
        docker_registry(Path(tmp) / "registry") as registry,
    ):
        repo = "fleet/sites"
        t0 = time.perf_counter()
        pushed = push_reports(registry.host, repo, example_fleet(args.sites, now=now),
                              jobs=args.jobs)  # fmt: skip
        push_s = time.perf_counter() - t0
        print(f"pushed {pushed} reports in {push_s:.1f} s ({pushed / push_s:.0f}/s)")
        cache = Path(tmp) / "cache"
        base = [*GITEDGE, "fleet", "status", "--registry", f"{registry.host}/{repo}",
                "--cache-dir", str(cache), "--now", now.isoformat(),
                "--jobs", str(args.jobs)]  # fmt: skip
        figures = []
        for name in ("cold (empty cache)", "warm (nothing changed)"):
            figures.append((name, *run_measured([*base, "--out", f"{tmp}/table.txt"])))
        # some sites report again: newer time, one K3s step further where there is one
        rng = random.Random(7)
        later = now + timedelta(minutes=10)
        picked = sorted(rng.sample(range(args.sites), args.changed))
        fleet = list(example_fleet(args.sites, now=now))
        changed = []
        for i in picked:
            r = fleet[i]
            k3s = r.k3s
            if k3s.path:
                k3s = dataclasses.replace(k3s, applied=k3s.path[0], path=k3s.path[1:])
            changed.append(dataclasses.replace(r, time=later, k3s=k3s))
        push_reports(registry.host, repo, changed, jobs=args.jobs)
        figures.append((f"after {args.changed} changed",
                        *run_measured([*base, "--out", f"{tmp}/table.txt"])))  # fmt: skip
        html = Path(tmp) / "fleet.html"
        figures.append(("-o html (warm)",
                        *run_measured([*base, "-o", "html", "--out", str(html)])))  # fmt: skip
        lines = Path(f"{tmp}/table.txt").read_text().splitlines()
        page_kib = html.stat().st_size / 1024
    print(f"\n`gitedge fleet status` over {args.sites} reports, --jobs {args.jobs}:")
    print(f"{'run':28} {'wall s':>7} {'CPU s':>6} {'peak RSS MiB':>13}  what it says")
    for name, wall, cpu, rss, err in figures:
        print(f"{name:28} {wall:7.2f} {cpu:6.2f} {rss:13.1f}  {err.splitlines()[0][22:]}")
    print(f"table: {lines[-1]}; html page: {page_kib:.0f} KiB")


if __name__ == "__main__":
    main()
