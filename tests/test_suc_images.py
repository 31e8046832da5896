"""Issue 15: every image every Job of gitedge's Plans pulls is in the site's cache before the
Plan exists, for each upgrader, and the nodes pull each one from the cache.

The site: the agent in-process (``Agent`` with the ``Kube`` adapter) against the Kubernetes API
emulator with deploy/'s RBAC; SUC's own Deployment and ConfigMap as gitedge/data/suc/v0.20.1 ships
them, its ConfigMap naming a kubectl image on a second upstream registry (the stand-in for
Docker Hub); the SUC simulation (tests/sucsim.py) creating the Jobs as job.go does, run by
tests/jobsim.py. Real docker-registries: the upstream (behind two relays: the fleet's registry
and the kubectl's registry) and the cache.

Both relays close just before the agent's first Plan create reaches the API: from then on no
image can come from upstream. Every image of every Job (init containers included: prepare,
cordon/drain's kubectl, upgrade) is then collected from the Jobs SUC created and from job.go's
``New`` applied to each written Plan and each node, and each is pulled with skopeo from where
containerd would pull it: the first host of the hosts.toml K3s writes from ``gitedge
node-config``'s registries.yaml (tests/k3sregistries.py).
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitedge.adapters.kube.cluster import Kube
from gitedge.agent.reconcile import Agent
from gitedge.agent.steps.status import status_text
from gitedge.cli import main as cli_main
from gitedge.core.config import AgentConfig, load_site_file
from gitedge.core.images.refs import ImageRef
from gitedge.core.rollout.sucplans import AGENT_PLAN, OS_AGENT_PLAN, OS_SERVER_PLAN, SERVER_PLAN
from tests import k3sregistries as k3s
from tests.agentkit import START, push_image, relay, served_fleet_repo
from tests.gitserver import git_daemon
from tests.kubeapi import KubeEmulator, load_deploy_rbac
from tests.registryserver import docker_registry, skopeo
from tests.sucrules import new_job
from tests.sucsim import SucSim

ROOT = Path(__file__).resolve().parent.parent
SUC_MANIFEST = ROOT / "gitedge" / "data" / "suc" / "v0.20.1" / "system-upgrade-controller.yaml"
NS = "system-upgrade"
TOKEN = "agent-token"
RELEASES = ["v1.29.10+k3s1", "v1.30.6+k3s1"]
T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
UPGRADERS = {
    "kairos": "",
    "elemental": "",
    "bootc": "",
    "custom": ", command: [/bin/sh], args: [-c, 'apply-os /host']",
}


def suc_objects(kubectl: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """SUC's Deployment and ConfigMap as its v0.20.1 manifest ships them, the ConfigMap's
    kubectl image set to ``kubectl``."""
    docs = [d for d in yaml.safe_load_all(SUC_MANIFEST.read_text()) if d]
    dep = next(d for d in docs if d["kind"] == "Deployment")
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    cm["data"]["SYSTEM_UPGRADE_JOB_KUBECTL_IMAGE"] = kubectl
    return dep, cm


def fleet(upstream: str, upgrader: str) -> dict[str, str]:
    head = "apiVersion: gitedge.io/v1alpha1\n"
    return {
        "releases.yaml": head + "kind: K3sReleases\nmetadata: {name: k3s}\nspec:\n"
        f"  versions: [{', '.join(RELEASES)}]\n",
        "targets.yaml": head + "kind: UpgradeTarget\nmetadata: {name: all}\nspec:\n"
        "  clusterSelector: {}\n  rollout: {concurrency: 1, cordon: true}\n"
        f"  k3s: {{version: {RELEASES[-1]}, upgradeImage: {upstream}/rancher/k3s-upgrade}}\n"
        f"  os: {{image: '{upstream}/edge/os:2.0', upgrader: {upgrader}"
        f"{UPGRADERS[upgrader]}}}\n",
    }


@pytest.fixture
def site(tmp_path: Path) -> Iterator[dict[str, Any]]:
    repo = served_fleet_repo(tmp_path)
    with (
        docker_registry(tmp_path / "upstream") as upstream,
        docker_registry(tmp_path / "cache") as cache,
        relay(upstream.port) as fleet_reg,
        relay(upstream.port) as hub,
        git_daemon(tmp_path / "served") as git,
        KubeEmulator(token=TOKEN, grants=load_deploy_rbac(ROOT / "deploy")) as api,
    ):
        up, hub_host = f"127.0.0.1:{fleet_reg.port}", f"127.0.0.1:{hub.port}"
        push_image(tmp_path, f"{up}/rancher/k3s-upgrade:{RELEASES[-1].replace('+', '-')}")
        push_image(tmp_path, f"{up}/edge/os:2.0")
        kubectl = f"{hub_host}/rancher/kubectl:v1.30.3"
        push_image(tmp_path, kubectl)
        dep, cm = suc_objects(kubectl)
        api.put(dep)
        api.put(cm)
        api.add_node("server-0", kubelet=RELEASES[0], control_plane=True)
        api.add_node("agent-0", kubelet=RELEASES[0])
        cfg = tmp_path / "agent.yaml"
        cfg.write_text(
            "apiVersion: gitedge.io/v1alpha1\nkind: AgentConfig\ncluster: {name: site-1}\n"
            f"source: {{url: '{git}/fleet.git'}}\n"
            f"trust: {{bootstrap: {tmp_path / 'allowed_signers'}}}\n"
            f"registry: {{cache: {{url: 'http://{cache.host}'}}}}\n"
            f"apply: {{mode: suc, namespace: {NS}}}\nstate: {{dir: {tmp_path / 'state'}}}\n"
        )
        yield {
            "api": api, "cfg": cfg, "repo": repo, "up": up, "cache": cache.host,
            "relays": (fleet_reg, hub), "kubectl": kubectl, "env": dict(cm["data"]),
            "tmp": tmp_path,
        }  # fmt: skip


def load_config(path: Path) -> AgentConfig:
    c = load_site_file(path.read_bytes(), path=str(path))
    assert isinstance(c, AgentConfig)
    return c


def job_images(job: dict[str, Any]) -> list[tuple[str, str]]:
    """Each container's image; and an image a container's command names for the host to pull
    (bootc ``switch`` pulls through containers/image on the host, not containerd)."""
    spec = job["spec"]["template"]["spec"]
    out = []
    for c in (*spec["initContainers"], *spec["containers"]):
        out.append((c["name"], c["image"]))
        for word in [*(c.get("command") or ()), *(c.get("args") or ())]:
            if "/" in word and ("@sha256:" in word or ":" in word.rsplit("/", 1)[-1]):
                with contextlib.suppress(ValueError):
                    out.append((f"{c['name']}-host-pull", str(ImageRef.parse(word))))
    return out


def node_config(cfg: Path) -> str:
    """``gitedge node-config -o json`` (the fleet from the agent's own mirror): registries.yaml."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(["node-config", "--config", str(cfg), "-o", "json"]) == 0
    doc = json.loads(out.getvalue())
    return next(f["content"] for f in doc["files"] if f["path"].endswith("registries.yaml"))


def pull_from(hosts_dir: dict[str, str], image: str, dest: Path) -> str:
    """Where containerd would pull ``image`` first, and that pull done with skopeo."""
    ref = ImageRef.parse(image)
    first = k3s.resolve(hosts_dir, f"{ref.registry}/{ref.repository}:{ref.tag or 'x'}")[0]
    host = first.url.split("://", 1)[1].split("/", 1)[0]
    pinned = f"@{ref.digest}" if ref.digest else f":{ref.tag}"
    skopeo("copy", "--quiet", "--src-tls-verify=false",
           f"docker://{host}/{ref.repository}{pinned}", f"dir:{dest}")  # fmt: skip
    return host


@pytest.mark.parametrize("upgrader", sorted(UPGRADERS))
def test_every_job_image_is_in_the_cache_before_its_plan_exists(site, upgrader, tmp_path):
    api: KubeEmulator = site["api"]
    site["repo"].commit(fleet(site["up"], upgrader), at=START)

    def uplink_down(_: KubeEmulator) -> None:
        for r in site["relays"]:
            r.close()

    api.before("POST", "plans", uplink_down)
    sim = SucSim(api, now=T0, namespace=NS, env=site["env"], job_minutes=3)
    config = load_config(site["cfg"])
    seen: dict[tuple[str, str, str], str] = {}  # (plan, node, container) -> image
    plans: set[str] = set()
    kube = Kube.connect(kubeconfig=str(api.kubeconfig(tmp_path / "kubeconfig")))
    agent = Agent(config, cluster=kube)
    try:
        now = T0
        for _ in range(40):
            p = agent.reconcile(now=now)
            sim.now = now
            sim.reconcile()
            for plan in api.items("plans", NS):
                plans.add(plan["metadata"]["name"])
                if (plan.get("status") or {}).get("latestHash"):
                    for node in api.items("nodes"):
                        job = new_job(plan, node, env=site["env"])  # job.go New
                        for c, image in job_images(job):
                            seen[(plan["metadata"]["name"], node["metadata"]["name"], c)] = image
            for job in api.items("jobs", NS):  # the Jobs SUC created
                for c, image in job_images(job):
                    labels = job["metadata"]["labels"]
                    seen[
                        (labels["upgrade.cattle.io/plan"], labels["upgrade.cattle.io/node"], c)
                    ] = image
            if (
                p.outcomes.get("apply") == "ok"
                and {OS_AGENT_PLAN, AGENT_PLAN} <= plans
                and not api.items("jobs", NS)
            ):
                break
            now += timedelta(minutes=10)
            sim.advance(minutes=10)
    finally:
        agent.close()
        kube.close()
    assert {SERVER_PLAN, AGENT_PLAN, OS_SERVER_PLAN, OS_AGENT_PLAN} <= plans
    assert all(r._closed for r in site["relays"]), "the uplink went down before the first Plan"
    containers = {c for _, _, c in seen}
    assert {"cordon", "upgrade"} <= containers
    if upgrader == "bootc":  # the image bootc switches the host to, named in its command
        assert "upgrade-host-pull" in containers
    assert site["kubectl"] in set(seen.values())  # SUC's kubectl, from its ConfigMap
    status = json.loads(
        api.get("configmaps", "gitedge-status", "gitedge-system")["data"]["status.json"]
    )
    assert status["suc"]["kubectlImage"] == site["kubectl"]
    assert "ConfigMap default-controller-env" in status["suc"]["kubectlFrom"]
    hosts_dir = k3s.k3s_hosts_dir(node_config(site["cfg"]))
    for i, image in enumerate(sorted(set(seen.values()))):
        host = pull_from(hosts_dir, image, tmp_path / f"pulled-{i}")
        assert host == site["cache"], f"{image} would be pulled from {host}, not the cache"


def test_status_names_a_job_that_cannot_pull_a_far_kubectl_and_a_stale_node_config(site, tmp_path):
    """A Job pod of a gitedge Plan waiting in ErrImagePull (and a kubelet Event about another
    one) is named in the status with its image, node and docs/site-setup.md; a kubectl image
    (here set by ``apply.kubectlImage``, v1.27) more than one minor from the servers' K3s during
    the step (v1.29 -> v1.30) is warned about; ``registry.nodeMirrors`` lacking the registries
    the site's images come from is a stale node config."""
    api: KubeEmulator = site["api"]
    far = site["kubectl"].replace("v1.30.3", "v1.27.1")
    push_image(site["tmp"], far)
    text = site["cfg"].read_text()
    text = text.replace("apply: {mode: suc,", f"apply: {{kubectlImage: '{far}', mode: suc,")
    up_registry = site["up"]
    text = text.replace("registry: {cache:", f"registry: {{nodeMirrors: ['{up_registry}'], cache:")
    site["cfg"].write_text(text)
    site["repo"].commit(fleet(site["up"], "kairos"), at=START)
    kube = Kube.connect(kubeconfig=str(api.kubeconfig(tmp_path / "kubeconfig")))
    agent = Agent(load_config(site["cfg"]), cluster=kube)
    try:
        agent.reconcile(now=T0)
        assert api.get("plans", SERVER_PLAN, NS) is not None
        api.put(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": "apply-gitedge-k3s-server-on-server-0-with-abc-x1",
                    "namespace": NS,
                    "labels": {"upgrade.cattle.io/plan": SERVER_PLAN},
                },
                "spec": {"nodeName": "server-0"},
                "status": {
                    "initContainerStatuses": [
                        {
                            "name": "cordon",
                            "image": far,
                            "state": {"waiting": {"reason": "ErrImagePull"}},
                        }
                    ]
                },
            }
        )
        api.put(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": "ev-1", "namespace": NS},
                "involvedObject": {
                    "kind": "Pod",
                    "name": "apply-gitedge-k3s-server-on-server-1-with-abc-x2",
                },
                "reason": "Failed",
                "source": {"host": "server-1"},
                "message": f'Failed to pull image "{site["up"]}/rancher/k3s-upgrade:v1.30.6-k3s1": not found',
            }
        )
        api.put(
            {  # another Plan's pod: not gitedge's, not reported
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": "apply-other-on-agent-0-x",
                    "namespace": NS,
                    "labels": {"upgrade.cattle.io/plan": "other"},
                },
                "spec": {"nodeName": "agent-0"},
                "status": {
                    "containerStatuses": [
                        {
                            "name": "upgrade",
                            "image": "x/y:1",
                            "state": {"waiting": {"reason": "ImagePullBackOff"}},
                        }
                    ]
                },
            }
        )
        agent.reconcile(now=T0 + timedelta(minutes=5))
    finally:
        agent.close()
        kube.close()
    status = json.loads(
        api.get("configmaps", "gitedge-status", "gitedge-system")["data"]["status.json"]
    )
    suc = status["suc"]
    assert suc["kubectlFrom"] == "apply.kubectlImage"
    assert suc["pullFailures"] == [
        {"image": far, "node": "server-0", "plan": SERVER_PLAN, "reason": "ErrImagePull"},
        {
            "image": f"{site['up']}/rancher/k3s-upgrade:v1.30.6-k3s1",
            "node": "server-1",
            "plan": SERVER_PLAN,
            "reason": "ErrImagePull",
        },
    ]
    warnings = "\n".join(suc["warnings"])
    assert f"node server-0 cannot pull {far}" in warnings and "docs/site-setup.md" in warnings
    assert "x/y:1" not in warnings
    assert (
        "(1.27) is more than one minor from the servers' K3s v1.29.10+k3s1, v1.30.6+k3s1"
        in warnings
    )
    hub = ImageRef.parse(far).registry
    assert suc["nodeConfig"] == "stale"
    assert f"registries.yaml sends no {hub} to the cache" in warnings
    shown = status_text(status)  # gitedge status
    assert f"suc: kubectl {far} (apply.kubectlImage)" in shown
    assert f"  warning: node server-0 cannot pull {far}" in shown


def test_a_malformed_kubectl_in_sucs_configmap_is_a_warning_not_a_crash(site, tmp_path):
    api: KubeEmulator = site["api"]
    api.modify(
        "configmaps", "default-controller-env", NS,
        lambda cm: cm["data"].update(SYSTEM_UPGRADE_JOB_KUBECTL_IMAGE="Not/An:Image!"),
    )  # fmt: skip
    site["repo"].commit(fleet(site["up"], "kairos"), at=START)
    kube = Kube.connect(kubeconfig=str(api.kubeconfig(tmp_path / "kubeconfig")))
    agent = Agent(load_config(site["cfg"]), cluster=kube)
    try:
        p = agent.reconcile(now=T0)
    finally:
        agent.close()
        kube.close()
    assert p.outcomes["plan"] == "ok" and p.outcomes["mirror"] == "ok", p.errors
    assert "is no image reference" in "\n".join(p.status["suc"]["warnings"])
