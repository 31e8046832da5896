"""The report step of a real agent pass (issue 13): a target without ``window`` (optional by
design: apply once mirrored) used to crash every pass in ``reconcile._metrics`` (``.get("open")``
on None), so the status ConfigMap was never written. Real ``git daemon``, real
``docker-registry`` upstream and cache, commits signed in process (``tests/test_agent.py``'s
site), and the real Kubernetes adapter against the API emulator with deploy/'s RBAC enforced.
"""

from __future__ import annotations

import json
from pathlib import Path

from gitedge.adapters.kube.cluster import Kube
from gitedge.agent.reconcile import Agent
from gitedge.core.config import AgentConfig, load_site_file
from tests.agentkit import START, fleet_files
from tests.kubeapi import KubeEmulator, load_deploy_rbac
from tests.test_agent import OLD, Site, at, site, upstream_image

__all__ = ["site"]  # the fixture, imported for pytest

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def test_a_target_without_window_is_reported_open_and_the_status_written(site: Site) -> None:
    upstream_image(site, "edge/os:1.0")
    files = fleet_files(registry=site.registry, releases=OLD, k3s=OLD[0],
                        os_image=f"{site.registry}/edge/os:1.0", window=False)  # fmt: skip
    site.fleet.commit(files, at=START)
    config = load_site_file(site.config_path.read_bytes(), path=str(site.config_path))
    assert isinstance(config, AgentConfig)
    with KubeEmulator(token="agent-token", grants=load_deploy_rbac(DEPLOY)) as api:
        api.add_node("server-1", kubelet=OLD[0], control_plane=True)
        kube = Kube.connect(kubeconfig=str(api.kubeconfig(site.tmp / "kubeconfig")),
                            namespace="system-upgrade", status_namespace="gitedge-system")  # fmt: skip
        agent = Agent(config, cluster=kube)
        try:
            p = agent.reconcile(now=at(0, hour=12))  # 12:00: no window to wait for
            metrics = {c: agent.metrics.get("gitedge_window_open", {"component": c})
                       for c in ("k3s", "os")}  # fmt: skip
        finally:
            agent.close()
        cm = api.get("configmaps", "gitedge-status", "gitedge-system")
    assert p.outcomes["verify"] == "ok" and p.outcomes["mirror"] == "ok", p.errors
    assert p.status["windows"] == {"k3s": None, "os": None}
    assert metrics == {"k3s": 1.0, "os": 1.0}  # no window: always open
    assert cm is not None, "no status ConfigMap"
    doc = json.loads(cm["data"]["status.json"])
    assert doc["windows"] == {"k3s": None, "os": None}
    assert {c["type"] for c in doc["conditions"]} >= {"SourceVerified", "Mirrored", "Ready"}
