"""A fleet of site reports that looks like a real one, for the fleet page test and
bench/fleet_status.py: stores in regions and rings, two K3s targets part-way through their
paths (v1.27 -> v1.28 -> v1.29 -> v1.30 for production, a canary ring on v1.31), an OS image
rollout, sites waiting for their window, applying a step, failing to mirror, and a few silent
for days. Deterministic for a seed; the conditions are the agent's own types and reasons
(gitedge/core/status/conditions.py ``summarize``), each with a realistic message length.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from gitedge.adapters.registry.client import RegistryClient
from gitedge.adapters.reports.store import ReportRepository, push_report
from gitedge.core.status.conditions import Condition
from gitedge.core.status.sitereport import SiteReport, Versions

PROD_PATH = ("v1.27.16+k3s1", "v1.28.15+k3s1", "v1.29.10+k3s1", "v1.30.6+k3s1")
CANARY_PATH = ("v1.30.6+k3s1", "v1.31.2+k3s1")
OS_OLD, OS_NEW = "registry.example.com/edge/os:1.4.1", "registry.example.com/edge/os:1.4.2"
REGIONS = ("eu-west", "eu-central", "us-east", "us-west", "ap-south")


def example_report(i: int, *, now: datetime, rng: random.Random) -> SiteReport:
    """Site ``i`` of the example fleet."""
    region = REGIONS[i % len(REGIONS)]
    ring = "canary" if i % 50 == 0 else ("early" if i % 7 == 0 else "main")
    env = "staging" if i % 23 == 0 else "prod"
    canary = ring == "canary"
    path, target = (CANARY_PATH, "k3s-canary") if canary else (PROD_PATH, "k3s-stable")
    # how far along: most production sites are done, the rest spread over the steps
    step = len(path) - 1 if rng.random() < 0.55 else rng.randrange(len(path))
    applied = path[step]
    os_applied = OS_NEW if rng.random() < 0.85 else OS_OLD
    age = timedelta(minutes=rng.randrange(1, 10))
    roll = rng.random()
    if roll < 0.03:
        age = timedelta(hours=rng.randrange(30, 24 * 9))  # silent: offline, or its agent is down
    conds = [
        Condition("SourceVerified", "True", "LastVerified", "at " + "3f" * 20, now - age),
        Condition("Mirrored", "True", "Mirrored", "12 image(s) in the cache", now - age),
    ]
    if roll > 0.97:
        ready = ("False", "RegistryUnavailable",
                 "registry.example.com still failing after 5 attempt(s): connection refused")  # fmt: skip
        conds[1] = Condition("Mirrored", "False", ready[1], ready[2], now - age)
    elif applied != path[-1] and roll > 0.8:
        ready = ("False", "StepRunning", f"k3s {path[step + 1]}: 1 of 3 node(s) upgraded")
    elif applied != path[-1] or os_applied != OS_NEW:
        ready = ("False", "WindowClosed", "window weeknights opens at 01:00 Europe/Berlin")
    else:
        ready = ("True", "UpToDate", "k3s and os as the fleet asks")
    conds.append(Condition("Applying", "False" if ready[0] == "True" else "True",
                           ready[1], ready[2], now - age))  # fmt: skip
    conds.append(Condition("Ready", ready[0], ready[1], ready[2], now - age))
    return SiteReport(
        cluster=f"store-{region}-{i:05d}",
        time=now - age,
        labels={
            "env": env,
            "region": region,
            "ring": ring,
            "gitedge.io/arch": "amd64",
            "gitedge.io/k3s-minor": applied.rsplit(".", 1)[0],
        },
        k3s=Versions(path[-1], applied, target, path[step + 1 :]),
        os=Versions(OS_NEW, os_applied, "os-1.4.2"),
        last_verified="3f" * 20,
        conditions=tuple(conds),
        agent_version="0.1.0",
    )


def example_fleet(n: int, *, now: datetime, seed: int = 19) -> Iterator[SiteReport]:
    rng = random.Random(seed)
    for i in range(n):
        yield example_report(i, now=now, rng=rng)


def push_reports(host: str, repo: str, reports: Iterable[SiteReport], *, jobs: int = 16) -> int:
    """Push every report (as an agent would) with ``jobs`` at once; returns how many."""
    client = RegistryClient(host=host, pool_size=jobs)
    where = ReportRepository(host, repo)
    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            return sum(1 for _ in pool.map(lambda r: push_report(client, where, r), reports))
    finally:
        client.close()
