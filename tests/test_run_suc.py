"""``gitedge run`` in ``apply.mode: suc``, as processes, against the Kubernetes API emulator
(tests/kubeapi.py, deploy/'s RBAC enforced for the agent's bearer token), a real git daemon and
real docker-registries on 127.0.0.1:

- the process is SIGKILLed between its Plan write and its status write (the API holds the status
  write until the kill, and never carries it out); run again, it writes no Plan again and the
  status; a third pass writes no Plan at all: nothing applied twice;
- every pass writes the status ConfigMap (conditions and the same facts as ``gitedge status``);
- the K3s step advances to the next minor once SUC marks the nodes done, one step per pass.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.agentkit import START, fleet_files, push_image, served_fleet_repo, sigkill_when
from tests.gitserver import git_daemon
from tests.kubeapi import ApiError, KubeEmulator, load_deploy_rbac
from tests.registryserver import docker_registry
from tests.sucsim import SucSim

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
TOKEN = "agent-sa-token-never-logged"
NS = "system-upgrade"
IN_WINDOW = "2026-01-02T02:00:00Z"
RELEASES = ["v1.27.16+k3s1", "v1.28.15+k3s1", "v1.29.10+k3s1"]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A signed fleet repo on a git daemon, the K3s upgrade images upstream, a cache registry,
    a cluster of one server and one agent node on v1.27, and the agent's config (suc mode)."""
    repo = served_fleet_repo(tmp_path)
    with (
        docker_registry(tmp_path / "upstream") as upstream,
        docker_registry(tmp_path / "cache") as cache,
        git_daemon(tmp_path / "served") as git,
        KubeEmulator(token=TOKEN, grants=load_deploy_rbac(DEPLOY)) as api,
    ):
        for version in RELEASES[1:]:
            push_image(tmp_path, f"{upstream.host}/rancher/k3s-upgrade:{version.replace('+', '-')}")
        push_image(tmp_path, f"{upstream.host}/rancher/kubectl:v1.30.3")  # SUC's (issue 15)
        repo.commit(
            fleet_files(registry=upstream.host, releases=RELEASES, k3s=RELEASES[-1], os_image=None),
            at=START,
        )
        api.add_node("server-1", kubelet=RELEASES[0], control_plane=True)
        api.add_node("agent-1", kubelet=RELEASES[0])
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


def run_once(site: dict[str, Any], now: str = IN_WINDOW) -> subprocess.CompletedProcess[str]:
    args = ["run", "--config", str(site["cfg"]), "--once", "--now", now]
    return subprocess.run(
        [sys.executable, "-m", "gitedge", *args],
        env=site["env"], capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def plan_creates(api: KubeEmulator) -> int:
    return sum(1 for r in api.writes("plans") if r.method == "POST" and r.code == 201)


def plans(api: KubeEmulator) -> dict[str, str]:
    return {p["metadata"]["name"]: p["spec"]["version"] for p in api.items("plans", NS)}


def status(api: KubeEmulator) -> dict[str, Any]:
    cm = api.get("configmaps", "gitedge-status", "gitedge-system")
    assert cm is not None, "no status ConfigMap"
    doc: dict[str, Any] = json.loads(cm["data"]["status.json"])
    return doc


def conditions(doc: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in doc["conditions"]}


def test_killed_between_the_plan_write_and_the_status_then_restarted_writes_no_plan_twice(
    site: dict[str, Any],
) -> None:
    """One pass writes one Plan (a step's worker Plan follows its control-plane Plan in a later
    pass): killed after it and before the status, the restarted agent writes no Plan again."""
    api: KubeEmulator = site["api"]
    reached, release = threading.Event(), threading.Event()

    def hold_status(method: str) -> Callable[[KubeEmulator], None]:
        def hook(emulator: KubeEmulator) -> None:
            if reached.is_set():
                return  # held once: the restarted agent writes freely
            if not emulator.items("plans", NS):
                emulator.before(method, "configmaps", hook)  # an earlier step's status write
                return
            reached.set()
            release.wait(60)  # the process is killed meanwhile; this write never happens
            raise ApiError(503, "ServiceUnavailable", "the client went away")

        return hook

    api.before("POST", "configmaps", hold_status("POST"))
    api.before("PUT", "configmaps", hold_status("PUT"))
    args = ["run", "--config", str(site["cfg"]), "--once", "--now", IN_WINDOW]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gitedge", *args],
        env=site["env"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    sigkill_when(proc, reached, release, what="the agent never wrote its status after the Plan")
    assert plans(api) == {"gitedge-k3s-server": RELEASES[1]}
    assert plan_creates(api) == 1

    again = run_once(site)
    assert again.returncode == 0, again.stderr
    assert plans(api) == {"gitedge-k3s-server": RELEASES[1]}
    assert plan_creates(api) == 1  # the server Plan was not created again
    doc = status(api)
    assert doc["lastVerified"]["commit"] and doc["mirror"]["complete"] is True
    assert doc["apply"]["k3s"]["step"] == RELEASES[1]
    assert doc["apply"]["k3s"]["path"] == RELEASES[1:]
    assert conditions(doc)["SourceVerified"][0] == "True"
    assert conditions(doc)["Mirrored"][0] == "True"
    assert TOKEN not in json.dumps(doc) and TOKEN not in again.stderr

    writes_before = len(api.writes("plans"))
    third = run_once(site)
    assert third.returncode == 0, third.stderr
    assert len(api.writes("plans")) == writes_before  # the step is running: nothing to write


def test_each_pass_writes_status_and_advances_one_minor_when_suc_is_done(
    site: dict[str, Any],
) -> None:
    api: KubeEmulator = site["api"]
    sim = SucSim(api, now=datetime.fromisoformat(IN_WINDOW), namespace=NS)
    first = run_once(site)
    assert first.returncode == 0, first.stderr
    assert plans(api) == {"gitedge-k3s-server": RELEASES[1]}  # the agent Plan after the server
    doc = status(api)
    assert conditions(doc)["Applying"] == ("True", "StepStarted")
    assert conditions(doc)["Ready"] == ("False", "StepStarted")
    assert doc["running"]["k3s"] == [RELEASES[0]]
    applied = [(a["component"], a["step"], a["doneAt"]) for a in doc["applied"]]
    assert applied == [("k3s", RELEASES[1], None)]

    sim.settle()  # SUC upgrades the server to v1.28
    assert sim.now < datetime.fromisoformat("2026-01-02T02:15:00Z")
    worker = run_once(site, "2026-01-02T02:15:00Z")
    assert worker.returncode == 0, worker.stderr
    assert plans(api) == {"gitedge-k3s-server": RELEASES[1], "gitedge-k3s-agent": RELEASES[1]}
    sim.now = datetime.fromisoformat("2026-01-02T02:15:00Z")
    sim.settle()  # and the agent
    assert sim.now < datetime.fromisoformat("2026-01-02T02:30:00Z")
    second = run_once(site, "2026-01-02T02:30:00Z")
    assert second.returncode == 0, second.stderr
    assert plans(api) == {"gitedge-k3s-server": RELEASES[2], "gitedge-k3s-agent": RELEASES[1]}
    doc = status(api)
    assert doc["running"]["k3s"] == [RELEASES[1]]
    assert doc["apply"]["k3s"]["path"] == [RELEASES[2]]
    done = {a["step"]: a["doneAt"] for a in doc["applied"]}
    assert done[RELEASES[1]] is not None and done[RELEASES[2]] is None

    sim.now = datetime.fromisoformat("2026-01-02T02:30:00Z")
    sim.settle()
    assert run_once(site, "2026-01-02T02:45:00Z").returncode == 0
    sim.now = datetime.fromisoformat("2026-01-02T02:45:00Z")
    sim.settle()
    third = run_once(site, "2026-01-02T03:00:00Z")
    assert third.returncode == 0, third.stderr
    doc = status(api)
    assert doc["running"]["k3s"] == [RELEASES[2]]
    assert conditions(doc)["Ready"] == ("True", "UpToDate")
    assert conditions(doc)["Applying"] == ("False", "UpToDate")
    assert all(a["doneAt"] for a in doc["applied"])


def test_outside_the_window_no_plan_is_written_but_status_is(site: dict[str, Any]) -> None:
    api: KubeEmulator = site["api"]
    done = run_once(site, "2026-01-02T12:00:00Z")
    assert done.returncode == 0, done.stderr
    assert api.writes("plans") == []
    doc = status(api)
    assert conditions(doc)["WindowClosed"][0] == "True"
    assert doc["mirror"]["complete"] is True  # mirrored ahead of the window
    assert doc["nextWindow"] == "2026-01-03T01:00:00Z"
