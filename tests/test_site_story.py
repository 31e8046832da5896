"""A site's whole path, K3s v1.27 to v1.30 and then an OS upgrade, driven by ``gitedge run --once``
passes (processes, against the Kubernetes API emulator with deploy/'s RBAC, a real git daemon and
real docker-registries) alternating with the SUC simulation of tests/sucsim.py, which follows
SUC's source (window gate with its ``applying`` exception, Jobs with deadlines, failures, TTL,
re-creation) on a simulated clock, one reconcile per minute.

The site: 3 servers and 3 agents. The fleet window: every night 01:00-03:00 Europe/Berlin, with
a blackout day. The story crosses the Berlin fall-back night (2026-10-25: the window lasts three
real hours), the blackout, one failed Job (the agent Plan's Job on agent-2 at v1.30 fails until
SUC's deadline), and the agent down for a day in the middle. Jobs run 12 minutes, so the path
spans several window occurrences. Checked at every simulated minute: no Job (or pod of one)
starts outside the fleet window, and never more than one server runs an upgrade.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gitedge.core.fleet.windows import is_open, window_state
from gitedge.core.fleet.windowspec import MaintenanceWindowSpec
from gitedge.core.rollout.sucplans import OS_AGENT_PLAN, OS_SERVER_PLAN
from tests.agentkit import START, push_image, served_fleet_repo
from tests.gitserver import git_daemon
from tests.kubeapi import KubeEmulator, load_deploy_rbac
from tests.registryserver import docker_registry
from tests.sucsim import SHIPPED_ENV, SucSim

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
TOKEN = "agent-sa-token"
NS = "system-upgrade"
RELEASES = ["v1.27.16+k3s1", "v1.28.15+k3s1", "v1.29.10+k3s1", "v1.30.6+k3s1"]
SERVERS = ("server-1", "server-2", "server-3")
AGENTS = ("agent-1", "agent-2", "agent-3")
WINDOW = {
    "timeZone": "Europe/Berlin",
    "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
    "start": "01:00",
    "end": "03:00",
    "blackouts": [{"from": "2026-10-26", "to": "2026-10-26"}],
}
SPEC = MaintenanceWindowSpec.model_validate(WINDOW)
BEGIN = datetime(2026, 10, 21, 22, 30, tzinfo=UTC)  # Thursday 00:30 in Berlin
AGENT_DOWN = (
    datetime(2026, 10, 23, 23, 20, tzinfo=UTC),
    datetime(2026, 10, 24, 23, 40, tzinfo=UTC),
)
FALL_BACK_HOUR = (
    datetime(2026, 10, 25, 1, 0, tzinfo=UTC),
    datetime(2026, 10, 25, 2, 0, tzinfo=UTC),
)
JOB_MINUTES = 12
LIMIT = timedelta(days=20)


def _fleet(upstream: str) -> dict[str, str]:
    head = "apiVersion: gitedge.io/v1alpha1\n"
    return {
        "releases.yaml": head + "kind: K3sReleases\nmetadata: {name: k3s}\nspec:\n"
        f"  versions: [{', '.join(RELEASES)}]\n",
        "windows.yaml": head + "kind: MaintenanceWindow\nmetadata: {name: nights}\n"
        f"spec: {json.dumps(WINDOW)}\n",
        "targets.yaml": head + "kind: UpgradeTarget\nmetadata: {name: all}\nspec:\n"
        "  clusterSelector: {}\n  window: nights\n"
        "  rollout: {concurrency: 2, cordon: true}\n"
        f"  k3s: {{version: {RELEASES[-1]}, upgradeImage: {upstream}/rancher/k3s-upgrade}}\n"
        f"  os: {{image: '{upstream}/kairos/os:v2', upgrader: kairos}}\n",
    }


@pytest.fixture
def site(tmp_path: Path) -> Iterator[dict[str, Any]]:
    repo = served_fleet_repo(tmp_path)
    with (
        docker_registry(tmp_path / "upstream") as upstream,
        docker_registry(tmp_path / "cache") as cache,
        git_daemon(tmp_path / "served") as git,
        KubeEmulator(token=TOKEN, grants=load_deploy_rbac(DEPLOY)) as api,
    ):
        for version in RELEASES[1:]:
            push_image(tmp_path, f"{upstream.host}/rancher/k3s-upgrade:{version.replace('+', '-')}")
        push_image(tmp_path, f"{upstream.host}/kairos/os:v2")
        push_image(tmp_path, f"{upstream.host}/rancher/kubectl:v1.30.3")  # SUC's (issue 15)
        repo.commit(_fleet(upstream.host), at=START)
        for name in SERVERS:
            api.add_node(name, kubelet=RELEASES[0], control_plane=True)
        for name in AGENTS:
            api.add_node(name, kubelet=RELEASES[0])
        cfg = tmp_path / "agent.yaml"
        cfg.write_text(
            "apiVersion: gitedge.io/v1alpha1\nkind: AgentConfig\n"
            "cluster: {name: site-1}\n"
            f"source: {{url: '{git}/fleet.git', interval: 1h}}\n"
            f"trust: {{bootstrap: {tmp_path / 'allowed_signers'}}}\n"
            f"registry: {{cache: {{url: 'http://{cache.host}'}}}}\n"
            f"apply: {{mode: suc, namespace: {NS}, "
            f"kubectlImage: '{upstream.host}/rancher/kubectl:v1.30.3'}}\n"
            f"state: {{dir: {tmp_path / 'state'}}}\n"
        )
        env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
        env["KUBECONFIG"] = str(api.kubeconfig(tmp_path / "kubeconfig"))
        env["POD_NAMESPACE"] = "gitedge-system"
        yield {"api": api, "cfg": cfg, "env": env}


def run_once(site: dict[str, Any], now: datetime) -> subprocess.CompletedProcess[str]:
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    args = ["run", "--config", str(site["cfg"]), "--once", "--now", stamp]
    return subprocess.run(
        [sys.executable, "-m", "gitedge", *args],
        env=site["env"], capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def status(api: KubeEmulator) -> dict[str, Any]:
    cm = api.get("configmaps", "gitedge-status", "gitedge-system")
    assert cm is not None, "no status ConfigMap"
    doc: dict[str, Any] = json.loads(cm["data"]["status.json"])
    return doc


def ready(api: KubeEmulator) -> bool:
    conds = {c["type"]: c["status"] for c in status(api)["conditions"]}
    return conds.get("Ready") == "True"


def next_pass(t: datetime) -> datetime:
    """The agent's cadence in this story: every 10 minutes around an opening, else at the
    next opening (and at least every 6 hours, for status)."""
    soon = t + timedelta(minutes=10)
    state = window_state(SPEC, t)
    if state.open or is_open(SPEC, soon):
        return soon
    return min(t + timedelta(hours=6), state.next_open or t + timedelta(hours=6))


@pytest.mark.timeout(1800)  # some 60 agent processes and three weeks of simulated minutes
def test_a_site_goes_from_v127_to_v130_and_a_new_os_inside_its_windows(
    site: dict[str, Any],
) -> None:
    api: KubeEmulator = site["api"]
    failing = {"on": True}

    def fail(plan: str, node: str, attempt: int) -> bool:
        spec = (api.get("plans", plan, NS) or {}).get("spec") or {}
        return (
            failing["on"]
            and plan == "gitedge-k3s-agent"
            and node == "agent-2"
            and spec.get("version") == RELEASES[-1]
        )

    sim = SucSim(api, now=BEGIN, namespace=NS, env=SHIPPED_ENV, job_minutes=JOB_MINUTES, fail=fail)
    passes: list[datetime] = []
    t, due = BEGIN, BEGIN
    while t < BEGIN + LIMIT:
        if t >= due:
            if not AGENT_DOWN[0] <= t < AGENT_DOWN[1]:
                done = run_once(site, t)
                assert done.returncode == 0, done.stderr
                passes.append(t)
                if ready(api):
                    break
            due = next_pass(t)
        sim.advance()
        t = sim.now
        running = {r.node for r in sim.jobs.running() if r.node in SERVERS}
        assert len(running) <= 1, f"{t}: servers upgrading at once: {sorted(running)}"
        if any(e.kind == "job-failed" and e.node == "agent-2" for e in sim.log):
            failing["on"] = False  # fixed: the next attempt (a new admission) succeeds
    else:
        pytest.fail(f"not done after {LIMIT}: {status(api)['conditions']}")

    starts = [e for e in sim.log if e.kind in ("job-created", "pod-started")]
    starts += sim.disruptions()  # cordons and upgrade containers starting
    assert starts, "SUC started no Job"
    for e in starts:  # the core promise
        assert is_open(SPEC, e.at), f"{e.kind} {e.plan} on {e.node} at {e.at}: window closed"
    assert sim.max_concurrent_upgrades(SERVERS) == 1
    # the whole path happened: every node on v1.30, every node done with the OS Plan
    nodes = api.items("nodes")
    assert {n["status"]["nodeInfo"]["kubeletVersion"] for n in nodes} == {RELEASES[-1]}
    for plan, names in ((OS_SERVER_PLAN, SERVERS), (OS_AGENT_PLAN, AGENTS)):
        done = api.get("plans", plan, NS)["status"]["latestHash"]
        for n in nodes:
            if n["metadata"]["name"] in names:
                assert n["metadata"]["labels"].get(f"plan.upgrade.cattle.io/{plan}") == done
    # what the story had to cross
    nights = {e.at.astimezone(SPEC_ZONE).date() for e in starts}
    assert len(nights) >= 3, nights
    assert any(FALL_BACK_HOUR[0] <= e.at < FALL_BACK_HOUR[1] for e in starts), "DST hour unused"
    assert not any(str(e.at.astimezone(SPEC_ZONE).date()) == "2026-10-26" for e in starts)
    assert passes[0] < datetime(2026, 10, 26, tzinfo=UTC) < passes[-1], "blackout not crossed"
    assert any(e.kind == "job-failed" and e.node == "agent-2" for e in sim.log)
    said = [str(e.get("message")) for e in api.items("events")]
    assert any("withdraws agent-2" in m for m in said), "the failed node was not withdrawn"
    failed_at = min(e.at for e in sim.log if e.kind == "job-failed" and e.node == "agent-2")
    retried = [e for e in sim.log if e.kind == "pod-started" and e.node == "agent-2"]
    assert any(e.at > failed_at for e in retried)  # admitted again later, inside a window
    down = [p for p in passes if AGENT_DOWN[0] <= p < AGENT_DOWN[1]]
    assert not down and passes[0] < AGENT_DOWN[0] and passes[-1] > AGENT_DOWN[1]
    print(f"site story: {len(passes)} agent passes, {len(starts)} Job/pod starts, {t}")


SPEC_ZONE = __import__("zoneinfo").ZoneInfo("Europe/Berlin")
