"""OS images that carry K3s (a Kairos "standard" image: ``os.k3s``, ``os.via``), and each
upgrader's Plan against its own project's shape.

- the planner refuses an OS step that would skip a K3s minor, saying what to add; a downgrade;
  a Kairos tag naming another K3s than ``os.k3s``;
- ``gitedge validate`` says when an OS target and a K3s target disagree;
- run by the agent's apply step against the Kubernetes API emulator and the SUC simulation: the
  OS images step K3s one minor at a time, servers before agents, and no k3s-upgrade Plan exists;
- the Kairos, Elemental and bootc Plans as their projects build or document them, and the Jobs
  SUC makes of them (job.go: host namespaces, /host, Secret volumes) as the stand-in runs them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gitedge.adapters.kube.cluster import Kube
from gitedge.agent.steps.applyplans import apply_step
from gitedge.core.fleet.model import Fleet, Rollout, UpgradeTargetSpec, load_fleet
from gitedge.core.fleet.osimage import OsTarget
from gitedge.core.passrules import needed_images
from gitedge.core.rollout.planning import ClusterFacts, plan
from gitedge.core.rollout.sucplans import OS_AGENT_PLAN, OS_SERVER_PLAN, Site, os_plans
from gitedge.errors import InvalidFleetRepo, UpgradePathError
from tests.kubeapi import KubeEmulator, load_deploy_rbac
from tests.plancrd import assert_valid_plan
from tests.sucrules import new_job
from tests.sucsim import SucSim

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
HEAD = "apiVersion: gitedge.io/v1alpha1\n"
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # inside "nights"
KAIROS = "registry.example.com/kairos/ubuntu:24.04-standard-amd64-generic-v3.2.4-k3s"
IMG = {v: f"{KAIROS}{v.replace('+', '-')}" for v in ("v1.29.10+k3s1", "v1.30.6+k3s1")}
NS = "system-upgrade"


def kiosk_fleet(
    *, via: bool = True, k3s_target: str | None = None, k3s_priority: int = 20
) -> Fleet:
    """One Kairos target carrying K3s v1.30.6 (with, or without, an image for v1.29) and,
    optionally, a K3s target of ``k3s_priority`` for the same clusters."""
    os_lines = [
        f"    image: {IMG['v1.30.6+k3s1']}",
        "    k3s: v1.30.6+k3s1",
    ]
    if via:
        os_lines.append(f"    via: [{{image: '{IMG['v1.29.10+k3s1']}', k3s: v1.29.10+k3s1}}]")
    files = {
        # tag-only images: this fleet opts out of requireDigest (tests/test_require_digest.py)
        ".gitedge/trust.yaml": HEAD + "kind: TrustPolicy\nmetadata: {name: fleet}\nspec:\n"
        "  signers: [{name: a, key: 'ssh-ed25519 AAAA', roles: [admin]}]\n"
        "  images: {requireDigest: false}\n",
        "releases.yaml": HEAD + "kind: K3sReleases\nmetadata: {name: catalog}\nspec:\n"
        "  versions: [v1.28.15+k3s1, v1.29.10+k3s1, v1.30.6+k3s1, v1.31.2+k3s1]\n",
        "windows.yaml": HEAD + "kind: MaintenanceWindow\nmetadata: {name: nights}\nspec:\n"
        '  days: [mon, tue, wed, thu, fri, sat, sun]\n  start: "01:00"\n  end: "05:00"\n',
        "kiosks.yaml": HEAD + "kind: UpgradeTarget\nmetadata: {name: kiosks}\nspec:\n"
        "  clusterSelector: {matchLabels: {site-type: kiosk}}\n  priority: 10\n"
        "  window: nights\n  rollout: {concurrency: 2, cordon: true}\n  os:\n"
        + "\n".join(os_lines)
        + "\n",
    }
    if k3s_target:
        files["k3s.yaml"] = (
            HEAD + "kind: UpgradeTarget\nmetadata: {name: k3s-line}\nspec:\n"
            f"  clusterSelector: {{}}\n  priority: {k3s_priority}\n"
            f"  k3s: {{version: {k3s_target}}}\n"
        )
    return load_fleet({k: v.encode() for k, v in files.items()})


def facts(k3s: str | None) -> ClusterFacts:
    return ClusterFacts(name="kiosk-1", labels={"site-type": "kiosk"}, k3s_version=k3s)


# ------------------------------------------------------------------------------ the planner


def test_an_os_step_that_would_skip_a_k3s_minor_is_refused_naming_what_to_add() -> None:
    with pytest.raises(UpgradePathError) as e:
        plan(kiosk_fleet(via=False), facts("v1.28.15+k3s1"), now=NOW)
    msg = str(e.value)
    assert "UpgradeTarget/kiosks" in msg and "kiosks.yaml" in msg
    assert "carries K3s v1.30.6+k3s1 but the cluster runs v1.28.15+k3s1" in msg
    assert "would skip v1.29" in msg and "add to os.via an OS image carrying K3s" in msg
    # one minor up needs nothing more; with via listed, two minors are two OS steps
    one = plan(kiosk_fleet(via=False), facts("v1.29.10+k3s1"), now=NOW)
    assert one.os is not None and one.os.images == (IMG["v1.30.6+k3s1"],)
    two = plan(kiosk_fleet(), facts("v1.28.15+k3s1"), now=NOW)
    assert two.os is not None and two.os.images == (IMG["v1.29.10+k3s1"], IMG["v1.30.6+k3s1"])
    rendered = {m["spec"]["version"] for m in two.manifests}
    assert rendered == {IMG["v1.29.10+k3s1"].rsplit(":", 1)[1]}  # the first step only
    # every image of the way is mirrored before any Plan, and no k3s-upgrade image
    assert [n.key for n in needed_images(two)] == [IMG["v1.29.10+k3s1"], IMG["v1.30.6+k3s1"]]


def test_the_cli_refuses_the_skip_in_the_example_without_its_via(tmp_path: Path) -> None:
    repo = tmp_path / "fleet"
    shutil.copytree(EXAMPLES / "fleet-repo", repo)
    kiosks = repo / "targets" / "kiosks.yaml"
    text = kiosks.read_text()
    kiosks.write_text(text[: text.index("    via:")] + text[text.index("  rollout:") :])
    cluster = EXAMPLES / "clusters" / "kiosk-hamburg-0003.yaml"
    r = subprocess.run(
        [sys.executable, "-m", "gitedge", "plan", "--repo", str(repo), "--cluster", str(cluster)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 1, r.stdout
    assert "would skip v1.30" in r.stderr and "add to os.via" in r.stderr
    assert "Traceback" not in r.stderr


def test_an_os_image_carrying_an_older_k3s_is_refused() -> None:
    with pytest.raises(UpgradePathError, match="cannot be downgraded") as e:
        plan(kiosk_fleet(), facts("v1.30.7+k3s1"), now=NOW)
    assert "carries K3s v1.30.6+k3s1, older than the v1.30.7+k3s1 the cluster runs" in str(e.value)
    same = plan(kiosk_fleet(), facts("v1.30.6+k3s1"), now=NOW)
    assert same.os is not None and same.os.images == (IMG["v1.30.6+k3s1"],)


def test_no_k3s_upgrade_plan_for_a_cluster_whose_os_carries_k3s() -> None:
    # a K3s floor of lower priority loses to the OS target; one that agrees adds nothing
    for fleet in (
        kiosk_fleet(k3s_target="v1.29.10+k3s1", k3s_priority=0),
        kiosk_fleet(k3s_target="v1.30.6+k3s1", k3s_priority=20),
    ):
        p = plan(fleet, facts("v1.29.10+k3s1"), now=NOW)
        assert p.k3s is None
        assert {m["metadata"]["name"] for m in p.manifests} == {OS_SERVER_PLAN, OS_AGENT_PLAN}
        assert not any("k3s-upgrade" in n.key for n in needed_images(p))
    # a cluster the OS target does not select keeps its K3s target
    other = plan(
        kiosk_fleet(k3s_target="v1.29.10+k3s1", k3s_priority=0),
        ClusterFacts(name="store", labels={"site-type": "store"}, k3s_version="v1.28.15+k3s1"),
        now=NOW,
    )
    assert other.k3s is not None and other.k3s.path == ("v1.29.10+k3s1",)


def test_a_kairos_tag_naming_k3s_must_match_os_k3s() -> None:
    spec = {"clusterSelector": {}, "os": {"image": IMG["v1.30.6+k3s1"]}}
    with pytest.raises(ValidationError, match=r"names K3s v1\.30\.6\+k3s1.*set k3s: v1\.30\.6"):
        UpgradeTargetSpec.model_validate(spec)
    spec["os"]["k3s"] = "v1.30.7+k3s1"  # type: ignore[index]
    with pytest.raises(ValidationError, match="set k3s: v1.30.6"):
        UpgradeTargetSpec.model_validate(spec)
    # a core image (no K3s in its tag) and other upgraders need nothing
    UpgradeTargetSpec.model_validate(
        {"clusterSelector": {}, "os": {"image": "quay.io/kairos/ubuntu:24.04-core-amd64-v3.2.4"}}
    )


# ------------------------------------------------------------------------------- validate


def validate(repo: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gitedge", "validate", str(repo), *extra],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_validate_says_when_an_os_target_and_a_k3s_target_disagree(tmp_path: Path) -> None:
    repo = tmp_path / "fleet"
    shutil.copytree(EXAMPLES / "fleet-repo", repo)
    assert validate(repo).returncode == 0
    (repo / "targets" / "kiosk-k3s.yaml").write_text(
        HEAD + "kind: UpgradeTarget\nmetadata: {name: kiosk-k3s}\nspec:\n"
        "  clusterSelector: {matchExpressions: [{key: site-type, operator: In, values: [kiosk]}]}\n"
        "  priority: 10\n  k3s: {version: v1.30.6+k3s1}\n"
    )
    r = validate(repo)
    assert r.returncode == 1
    line = next(x for x in r.stdout.splitlines() if "kiosk-k3s" in x)
    assert line.startswith(f"{repo}/targets/kiosks.yaml:")
    assert "UpgradeTarget/kiosks sets os.k3s v1.31.2+k3s1" in line
    assert "UpgradeTarget/kiosk-k3s" in line and "sets k3s.version v1.30.6+k3s1" in line
    # with the clusters, the kiosk itself is named too
    r = validate(repo, "--clusters", str(EXAMPLES / "clusters"))
    assert "cluster kiosk-hamburg-0003: UpgradeTarget/kiosks" in r.stdout
    # provably other clusters (site-type NotIn kiosk): no disagreement
    (repo / "targets" / "kiosk-k3s.yaml").write_text(
        HEAD + "kind: UpgradeTarget\nmetadata: {name: kiosk-k3s}\nspec:\n"
        "  clusterSelector: {matchExpressions: [{key: site-type, operator: In, values: [shop]}]}\n"
        "  priority: 10\n  k3s: {version: v1.30.6+k3s1}\n"
    )
    assert validate(repo).returncode == 0


def test_one_target_whose_os_k3s_and_k3s_version_differ_does_not_load() -> None:
    with pytest.raises(ValidationError, match="os.k3s says the OS image carries K3s v1.30.6"):
        UpgradeTargetSpec.model_validate(
            {
                "clusterSelector": {},
                "os": {"image": "x/os:1", "k3s": "v1.30.6+k3s1"},
                "k3s": {"version": "v1.31.2+k3s1"},
            }
        )
    with pytest.raises(InvalidFleetRepo):
        kiosk_fleet(k3s_target="not-a-version")


# ------------------------------------------------- the agent, SUC and the Jobs (simulated)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[KubeEmulator, Kube]]:
    grants = load_deploy_rbac(ROOT / "deploy")
    with KubeEmulator(token="t0ken", grants=grants) as api:
        api.add_node("server-0", kubelet="v1.28.15+k3s1", control_plane=True)
        api.add_node("agent-0", kubelet="v1.28.15+k3s1")
        api.add_node("agent-1", kubelet="v1.28.15+k3s1")
        with Kube.connect(
            kubeconfig=str(api.kubeconfig(tmp_path / "kubeconfig")), request_timeout=10
        ) as kube:
            yield api, kube


def carried(image: str) -> str | None:
    """What each test image installs (its /etc/kairos-release): by tag."""
    return next((v for v, img in IMG.items() if image.endswith(img.rsplit(":", 1)[1])), None)


def test_the_os_steps_k3s_a_minor_at_a_time_servers_first_with_no_k3s_upgrade_plan(
    cluster: tuple[KubeEmulator, Kube],
) -> None:
    api, kube = cluster
    sim = SucSim(api, now=NOW, namespace=NS, job_minutes=5, os_k3s=carried)
    fleet, site = kiosk_fleet(), Site(namespace=NS, cache="cache.site.internal:5000")
    written: set[str] = set()
    seen: dict[str, list[str]] = {n: ["v1.28.15+k3s1"] for n in ("server-0", "agent-0", "agent-1")}
    for _ in range(12):
        result = apply_step(
            api=kube, fleet=fleet, cluster="kiosk-1", labels={"site-type": "kiosk"},
            site=site, now=sim.now,
        )  # fmt: skip
        assert result.error is None, result.error
        written |= {a.name for a in result.performed}
        sim.settle()
        for n, versions in seen.items():
            v = api.get("nodes", n)["status"]["nodeInfo"]["kubeletVersion"]
            if versions[-1] != v:
                versions.append(v)
        if all(v[-1] == "v1.30.6+k3s1" for v in seen.values()) and not result.performed:
            break
    assert seen == {n: ["v1.28.15+k3s1", "v1.29.10+k3s1", "v1.30.6+k3s1"] for n in seen}
    assert written == {OS_SERVER_PLAN, OS_AGENT_PLAN}  # never a k3s-upgrade Plan
    assert {p["metadata"]["name"] for p in api.items("plans", NS)} == written
    done = [e for e in sim.log if e.kind == "upgrade-done"]
    for version in ("v1.29.10+k3s1", "v1.30.6+k3s1"):
        step = [e for e in done if e.detail.endswith(f"k3s:{version}")]
        server = next(e.at for e in step if e.node == "server-0")
        for e in step:
            if e.node == "server-0":
                continue
            began = max(x.at for x in sim.starts() if x.node == e.node and x.at <= e.at)
            assert began >= server  # no agent Job of the step before the server is done
    jobs = api.items("jobs", NS)
    assert jobs and all(j["spec"]["template"]["spec"]["hostPID"] for j in jobs)


def test_an_image_that_does_not_bring_its_declared_k3s_holds_the_next_os_step(
    cluster: tuple[KubeEmulator, Kube],
) -> None:
    """The via image's Plans complete, but the kubelets stay on v1.28: the OS component waits
    for them (it is the K3s step) instead of reporting up to date or booting the v1.30 image."""
    api, kube = cluster
    sim = SucSim(api, now=NOW, namespace=NS, job_minutes=5, os_k3s=lambda image: None)
    fleet, site = kiosk_fleet(), Site(namespace=NS, cache="cache.site.internal:5000")
    for _ in range(4):
        result = apply_step(
            api=kube, fleet=fleet, cluster="kiosk-1", labels={"site-type": "kiosk"},
            site=site, now=sim.now,
        )  # fmt: skip
        sim.settle()
    assert result.decision is not None
    os_status = next(c for c in result.decision.components if c.component == "os")
    assert (os_status.state, os_status.reason) == ("waiting", "WaitingForNodes")
    assert "to report K3s v1.29.10+k3s1" in os_status.message
    versions = {p["spec"]["upgrade"]["image"] for p in api.items("plans", NS)}
    assert versions == {"cache.site.internal:5000/kairos/ubuntu"}
    assert {p["spec"]["version"] for p in api.items("plans", NS)} == {
        IMG["v1.29.10+k3s1"].rsplit(":", 1)[1]
    }


# --------------------------------------------------------- each upgrader as its project


def os_plan(os: OsTarget) -> dict[str, Any]:
    site = Site(namespace=NS, cache="cache.site.lan:5000")
    p = os_plans(os=os, rollout=Rollout(concurrency=2), window=None, target="t", site=site)[1]
    assert_valid_plan(p)  # against SUC's Plan CRD
    return p


def node(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}}


def job_of(p: dict[str, Any]) -> dict[str, Any]:
    p = json.loads(json.dumps(p))
    p["status"] = {"latestVersion": p["spec"]["version"], "latestHash": "h", "applying": ["n1"]}
    return new_job(p, node("n1"), env={})


def test_kairos_plan_is_kairos_shipped_example() -> None:
    """kairos-io/kairos examples/plans/system-upgrade.yaml: upgrade.image the OS image,
    command ["/usr/sbin/suc-upgrade"], no args, no secrets; its script reaches the host through
    SUC's /host mount and `nsenter -i -m -t 1` (kairos-init bundled.go SucUpgrade), which
    job.go's pod allows (hostPID, hostIPC, privileged)."""
    p = os_plan(OsTarget(image="registry.example.com/kairos/ubuntu:24.04-core-amd64-v3.2.4"))
    assert p["spec"]["upgrade"] == {
        "image": "cache.site.lan:5000/kairos/ubuntu",
        "command": ["/usr/sbin/suc-upgrade"],
    }
    assert p["spec"]["version"] == "24.04-core-amd64-v3.2.4" and "secrets" not in p["spec"]
    pod = job_of(p)["spec"]["template"]["spec"]
    assert pod["hostPID"] and pod["hostIPC"]
    upgrade = pod["containers"][0]
    assert upgrade["image"] == "cache.site.lan:5000/kairos/ubuntu:24.04-core-amd64-v3.2.4"
    assert {"name": "host-root", "mountPath": "/host"} in upgrade["volumeMounts"]
    assert upgrade["securityContext"]["privileged"] is True


def test_elemental_plan_is_elemental_operators_with_its_run_data_secret() -> None:
    """rancher/elemental-operator managedosimage_controller.go newFleetBundleResources:
    command ["/usr/sbin/suc-upgrade"], tolerations [{operator: Exists}], Secrets [{Name,
    Path: "/run/data"}]; gitedge sets ignoreUpdates (see core/rollout/upgraders.py)."""
    p = os_plan(OsTarget(image="r.example/elemental/os:1.2", upgrader="elemental",
                         cloud_config_secret="node-cloud-config"))  # fmt: skip
    assert p["spec"]["upgrade"]["command"] == ["/usr/sbin/suc-upgrade"]
    assert p["spec"]["tolerations"] == [{"operator": "Exists"}]
    assert p["spec"]["secrets"] == [
        {"name": "node-cloud-config", "path": "/run/data", "ignoreUpdates": True}
    ]
    pod = job_of(p)["spec"]["template"]["spec"]
    assert {"name": "secret-node-cloud-config", "mountPath": "/run/data", "readOnly": True} in (
        pod["containers"][0]["volumeMounts"]
    )
    vol = next(v for v in pod["volumes"] if v["name"] == "secret-node-cloud-config")
    assert vol["secret"] == {"secretName": "node-cloud-config", "optional": True}
    assert "secrets" not in os_plan(OsTarget(image="r.example/os:1", upgrader="elemental"))["spec"]
    with pytest.raises(ValidationError, match="only for upgrader 'elemental'"):
        OsTarget(image="r.example/os:1", cloud_config_secret="x")


def test_bootc_plan_runs_the_hosts_bootc_switch_in_the_hosts_namespaces() -> None:
    """bootc documents no SUC Plan: `bootc switch --apply <image>` (docs/src/man/bootc-switch.md)
    of the host's bootc, which refuses to run in a container (lib/src/cli.rs
    prepare_for_write), entered as Kairos and Elemental enter the host."""
    p = os_plan(OsTarget(image="r.example/farm-os:2.1.0", upgrader="bootc"))
    up = p["spec"]["upgrade"]
    assert up["command"][:6] == ["nsenter", "-i", "-m", "-t", "1", "--"]
    assert up["command"][6:] == ["env", "-u", "container", "bootc", "switch", "--apply"]
    assert up["args"] == ["cache.site.lan:5000/farm-os:2.1.0"]
    assert "chroot" not in up["command"]


@pytest.mark.parametrize("exists", [True, False], ids=["secret", "no-secret"])
def test_the_sim_runs_elemental_with_or_without_its_secret(exists: bool) -> None:
    with KubeEmulator(token=None) as api:
        api.add_node("n1", kubelet="v1.30.6+k3s1")
        p = os_plan(OsTarget(image="r.example/os:1.2", upgrader="elemental",
                             cloud_config_secret="cc"))  # fmt: skip
        sim = SucSim(api, now=NOW, namespace=NS, job_minutes=3)
        if exists:
            sim.jobs.secrets.add("cc")
        api.put(p)
        sim.settle(limit_minutes=60)
        done = [e.detail for e in sim.log if e.kind == "upgrade-done"]
        assert done == [
            "cache.site.lan:5000/os:1.2 /run/data/cloud-config:"
            + ("present" if exists else "absent")
        ]


def test_the_sim_holds_a_job_whose_required_secret_is_missing() -> None:
    """kubelet: a Secret volume that is not optional and does not exist keeps the pod from
    starting; job.go makes it optional exactly when the Plan's secret ignores updates."""
    with KubeEmulator(token=None) as api:
        sim = SucSim(api, now=NOW, namespace=NS)
        p = os_plan(OsTarget(image="r.example/os:1.2", upgrader="elemental",
                             cloud_config_secret="cc"))  # fmt: skip
        assert not sim.jobs._secret_missing(job_of(p))  # optional: runs without it
        p["spec"]["secrets"][0]["ignoreUpdates"] = False  # as elemental-operator writes it
        required = job_of(p)
        assert sim.jobs._secret_missing(required)
        sim.jobs.secrets.add("cc")
        assert not sim.jobs._secret_missing(required)


def test_the_sim_refuses_bootc_without_the_hosts_pid_namespace() -> None:
    p = os_plan(OsTarget(image="r.example/farm-os:2.1.0", upgrader="bootc"))
    for host_pid in (True, False):
        with KubeEmulator(token=None) as api:
            api.add_node("n1", kubelet="v1.30.6+k3s1")
            sim = SucSim(api, now=NOW, namespace=NS, job_minutes=3)
            api.put(p)
            sim.reconcile()
            job = api.items("jobs", NS)[0]["metadata"]["name"]
            api.modify("jobs", job, NS, lambda j, v=host_pid: j["spec"]["template"]["spec"]
                       .__setitem__("hostPID", v))  # fmt: skip
            sim.advance(minutes=10)
            failed = [e.detail for e in sim.log if e.kind == "pod-failed"]
            done = [e for e in sim.log if e.kind == "upgrade-done"]
            if host_pid:
                assert done and not failed
            else:
                assert not done and failed and "Detected container" in failed[0]


def test_docs_link_each_upgraders_source() -> None:
    doc = (ROOT / "docs" / "fleet-repo.md").read_text()
    for link in (
        "kairos-io/kairos/blob/master/examples/plans/system-upgrade.yaml",
        "rancher/elemental-operator/blob/main/controllers/managedosimage_controller.go",
        "containers/bootc/blob/main/docs/src/man/bootc-switch.md",
    ):
        assert link in doc, link


def test_offline_bundles_carry_every_via_image() -> None:
    from gitedge.core.delivery.bundlecontents import bundle_images

    fleet = kiosk_fleet()
    via, final = IMG["v1.29.10+k3s1"], IMG["v1.30.6+k3s1"]
    for clusters, every in (([facts(None)], False), ([], True), ([facts("v1.28.15+k3s1")], False)):
        refs = [str(r) for r in bundle_images(fleet, clusters, all_targets=every, now=NOW)]
        # then SUC v0.20.1's default kubectl: every Job that cordons or drains runs it
        assert refs == [via, final, "docker.io/rancher/kubectl:v1.30.3"]
