"""The apply story against a real K3s cluster with the system-upgrade-controller (SUC).

Runs only when ``GITEDGE_E2E_KUBECONFIG`` names a kubeconfig (skipped otherwise); see README,
"End-to-end tests on a real K3s". It changes the cluster: it upgrades K3s through every minor up
to the target. Settings (environment):

- ``GITEDGE_E2E_KUBECONFIG``  kubeconfig of a K3s cluster with SUC installed (cluster-admin)
- ``GITEDGE_E2E_RELEASES``    comma-separated K3s releases the fleet allows, the last one being
                              the target (default: v1.28.15+k3s1,v1.29.10+k3s1,v1.30.6+k3s1,
                              a three-minor path for a cluster on v1.27.x)
- ``GITEDGE_E2E_NAMESPACE``   SUC's namespace (default ``system-upgrade``); the agent's status
                              ConfigMap goes there too unless ``GITEDGE_E2E_STATUS_NAMESPACE``
- ``GITEDGE_E2E_CACHE``       registry cache host[:port] for the upgrade image (default: none,
                              the nodes pull rancher/k3s-upgrade themselves)
- ``GITEDGE_E2E_TIMEOUT``     seconds the whole path may take (default 3600)
- ``GITEDGE_E2E_POLL``        seconds between agent passes (default 15)
- ``GITEDGE_E2E_IMAGE``       the gitedge image (built from the Containerfile, pullable by the
                              nodes): deploys deploy/ with it and checks the agent container
                              starts and keeps running (skipped when unset)

Covers, as tests/test_kube.py does over the emulator: with the window closed nothing is written;
with it open the path is walked one minor at a time (each step done on every node, by SUC's done
labels and the kubelets, before the next starts), Events and the status ConfigMap say so, a Plan
gitedge does not own is never touched, and suspending the target deletes gitedge's Plans only.
Issue 14, on the real thing: SUC's status is read as SUC writes it (munged latestVersion, the
latestHash gitedge recomputes, the per-node done label) and the path goes past the first minor;
the agents are drained with only a timeout set (stock K3s's metrics-server emptyDir does not
block kubectl drain); at most one control-plane node is in any gitedge Plan's
``status.applying`` at a time and the agent Plan is written only once the server Plan is done;
every Plan sets ``jobActiveDeadlineSecs`` and SUC's Jobs carry it (or ``PlansAsWritten`` says
SUC clamped it); ``PlansAsWritten`` agrees with what the API server stored (``WindowPruned``
on a SUC older than v0.15.0, whose CRD has no window).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gitedge.adapters.kube.cluster import PLAN_GROUP, PLAN_PLURAL, PLAN_VERSION, Kube
from gitedge.agent.steps.applyplans import apply_step, report, status_fields
from gitedge.core.fleet.model import Fleet, load_fleet
from gitedge.core.fleet.versions import K3sVersion
from gitedge.core.rollout.clusterstate import (
    DONE_LABEL_PREFIX,
    munge_version,
    resolved_hash,
)
from gitedge.core.rollout.readback import plans_as_written
from gitedge.core.rollout.sucplans import AGENT_PLAN, CONTROL_PLANE, SERVER_PLAN, Site

KUBECONFIG = os.environ.get("GITEDGE_E2E_KUBECONFIG")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not KUBECONFIG, reason="GITEDGE_E2E_KUBECONFIG is not set"),
]
RELEASES = [
    v.strip()
    for v in os.environ.get(
        "GITEDGE_E2E_RELEASES", "v1.28.15+k3s1,v1.29.10+k3s1,v1.30.6+k3s1"
    ).split(",")
    if v.strip()
]
NS = os.environ.get("GITEDGE_E2E_NAMESPACE", "system-upgrade")
STATUS_NS = os.environ.get("GITEDGE_E2E_STATUS_NAMESPACE", NS)
CACHE = os.environ.get("GITEDGE_E2E_CACHE") or None
TIMEOUT = float(os.environ.get("GITEDGE_E2E_TIMEOUT", "3600"))
POLL = float(os.environ.get("GITEDGE_E2E_POLL", "15"))
FOREIGN = "gitedge-e2e-not-ours"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HEAD = "apiVersion: gitedge.io/v1alpha1\n"


def fleet(*, window_days: list[str], suspend: bool = False) -> Fleet:
    files = {
        "releases.yaml": HEAD + "kind: K3sReleases\nmetadata: {name: e2e}\nspec:\n"
        f"  versions: [{', '.join(RELEASES)}]\n",
        "window.yaml": HEAD + "kind: MaintenanceWindow\nmetadata: {name: e2e}\nspec:\n"
        f'  days: [{", ".join(window_days)}]\n  start: "00:00"\n  end: "24:00"\n',
        "target.yaml": HEAD + "kind: UpgradeTarget\nmetadata: {name: e2e}\nspec:\n"
        f"  clusterSelector: {{}}\n  window: e2e\n  suspend: {str(suspend).lower()}\n"
        f"  k3s: {{version: {RELEASES[-1]}}}\n"
        # a drain with only a timeout: SUC's defaults (--delete-emptydir-data,
        # --ignore-daemonsets) must get it past stock K3s's metrics-server and svclb pods
        "  rollout: {concurrency: 1, cordon: true, drain: {timeout: 10m}}\n",
        # the catalog names versions without digests: opt out of images.requireDigest
        ".gitedge/trust.yaml": HEAD + "kind: TrustPolicy\nmetadata: {name: e2e}\nspec:\n"
        "  signers: [{name: e2e, key: 'ssh-ed25519 AAAA e2e', roles: [release, admin]}]\n"
        "  images: {requireDigest: false}\n",
    }
    return load_fleet({k: v.encode() for k, v in files.items()})


def today() -> str:
    return DAYS[datetime.now(UTC).weekday()]


@pytest.fixture(scope="module")
def kube() -> Iterator[Kube]:
    with Kube.connect(kubeconfig=KUBECONFIG, namespace=NS, status_namespace=STATUS_NS) as k:
        yield k


def one_pass(kube: Kube, f: Fleet):
    now = datetime.now(UTC)
    result = apply_step(
        api=kube, fleet=f, cluster="e2e", labels={}, site=Site(namespace=NS, cache=CACHE), now=now
    )
    report(kube, result.conditions, now=now, fields=status_fields(result))
    status = kube.read_status()
    assert status is not None
    return result, {c.type: c for c in status.conditions}


def check_plans_as_suc_sees_them(kube: Kube, conds: dict) -> None:
    """Issue 14 on the real cluster, at one instant (see the module docstring)."""
    plans = {p.name: p for p in kube.owned_plans()}
    jobs = kube.plan_jobs(plans)
    nodes = {n.name: n for n in kube.nodes()}
    as_written = conds.get("PlansAsWritten")
    for p in plans.values():
        deadline = p.spec.get("jobActiveDeadlineSecs")
        assert isinstance(deadline, int) and deadline > 600, (p.name, deadline)
        if p.latest_version is not None and p.latest_version == munge_version(
            str(p.spec["version"])
        ):
            # SUC munges the version, and its hash is the one gitedge computes
            assert p.latest_hash == resolved_hash(p), (p.name, p.latest_hash)
        for j in (j for j in jobs if j.plan == p.name and j.version == p.latest_version):
            if j.active_deadline != deadline:  # read-back over this same read reports it
                again = plans_as_written(list(plans.values()), jobs)
                assert again.reason == "DeadlineClamped" and p.name in again.message, j
        if "window" not in p.spec and p.annotations.get("gitedge.io/window"):
            assert as_written is not None and as_written.reason == "WindowPruned"
    applying_servers = {
        n for p in plans.values() for n in p.applying if nodes.get(n) and nodes[n].control_plane
    }
    assert len(applying_servers) <= 1, f"control-plane nodes upgrading together: {applying_servers}"
    if AGENT_PLAN in plans and SERVER_PLAN in plans:
        server = plans[SERVER_PLAN]
        if plans[AGENT_PLAN].spec.get("version") == server.spec.get("version"):
            # the agent Plan of a step is written only once every server is done with it
            done = DONE_LABEL_PREFIX + SERVER_PLAN
            servers = [n for n in nodes.values() if n.labels.get(CONTROL_PLANE) == "true"]
            want = resolved_hash(server)
            assert all(n.labels.get(done) == want for n in servers), "agent Plan before servers"


def test_closed_window_writes_nothing(kube):
    before = {p.name: p.resource_version for p in kube.owned_plans()}
    closed = [d for d in DAYS if d != today() and d != DAYS[(DAYS.index(today()) + 1) % 7]]
    result, conds = one_pass(kube, fleet(window_days=closed[:1]))
    assert result.performed == ()
    assert {p.name: p.resource_version for p in kube.owned_plans()} == before
    if result.plan is not None and result.plan.k3s is not None and result.plan.k3s.path:
        assert conds["WindowClosed"].status == "True"


@pytest.mark.timeout(TIMEOUT + 600)
def test_path_one_minor_at_a_time_foreign_plan_untouched_then_removed(kube):
    custom = kube.custom
    foreign = {
        "apiVersion": f"{PLAN_GROUP}/{PLAN_VERSION}",
        "kind": "Plan",
        "metadata": {"name": FOREIGN, "namespace": NS, "labels": {"app": "e2e"}},
        "spec": {
            "concurrency": 1,
            "nodeSelector": {"matchLabels": {"gitedge-e2e/never": "true"}},
            "serviceAccountName": "system-upgrade",
            "upgrade": {"image": "rancher/k3s-upgrade"},
            "version": RELEASES[0],
        },
    }
    created = custom.create_namespaced_custom_object(
        PLAN_GROUP, PLAN_VERSION, NS, PLAN_PLURAL, foreign
    )
    try:
        open_all = list(DAYS)
        steps: list[str] = []
        deadline = time.monotonic() + TIMEOUT
        while True:
            result, conds = one_pass(kube, fleet(window_days=open_all))
            assert result.error is None, result.error
            check_plans_as_suc_sees_them(kube, conds)
            started = {a.manifest["spec"]["version"] for a in result.performed if a.manifest}
            assert len(started) <= 1, f"two steps in one pass: {started}"
            if started:
                step = started.pop()
                if not steps or steps[-1] != step:
                    # every node runs the previous step before the next one starts
                    running = min(K3sVersion.parse(n.kubelet_version) for n in kube.nodes())
                    if steps:
                        assert running >= K3sVersion.parse(steps[-1]), (running, steps)
                    steps.append(step)
            if conds["Applying"].reason == "UpToDate":
                break
            assert time.monotonic() < deadline, (
                f"not done in {TIMEOUT}s: {conds['Applying'].message}"
            )
            time.sleep(POLL)
        minors = [K3sVersion.parse(s).minor for s in steps]
        assert minors == sorted(minors) and len(set(minors)) == len(minors), steps
        assert all(b - a == 1 for a, b in itertools.pairwise(minors)), steps
        assert {n.kubelet_version for n in kube.nodes()} == {RELEASES[-1]}
        assert conds["Ready"].status == "True"
        events = kube.core.list_namespaced_event(
            NS, field_selector=f"involvedObject.name={SERVER_PLAN}"
        )
        assert any(e.reason in ("StepStarted", "StepAdvanced") for e in events.items) or not steps
        still = custom.get_namespaced_custom_object(
            PLAN_GROUP, PLAN_VERSION, NS, PLAN_PLURAL, FOREIGN
        )
        # SUC writes its status (a new resourceVersion); nobody changed what it is or asks
        for key in ("generation", "labels", "annotations"):
            assert still["metadata"].get(key) == created["metadata"].get(key), key
        assert still["spec"] == created["spec"]
        # suspending the target removes gitedge's Plans, and only those
        one_pass(kube, fleet(window_days=open_all, suspend=True))
        assert kube.owned_plans() == ()
        custom.get_namespaced_custom_object(PLAN_GROUP, PLAN_VERSION, NS, PLAN_PLURAL, FOREIGN)
    finally:
        custom.delete_namespaced_custom_object(PLAN_GROUP, PLAN_VERSION, NS, PLAN_PLURAL, FOREIGN)


def test_status_configmap_is_readable(kube):
    status = kube.read_status()
    assert status is not None and any(c.type == "Ready" for c in status.conditions)
    assert datetime.fromisoformat(
        str(status.fields["updated"]).replace("Z", "+00:00")
    ) > datetime.now(UTC) - timedelta(days=1)


IMAGE = os.environ.get("GITEDGE_E2E_IMAGE")


@pytest.mark.skipif(not IMAGE, reason="GITEDGE_E2E_IMAGE is not set")
@pytest.mark.timeout(900)
def test_the_agent_pod_starts_from_the_image_and_deploy(tmp_path):
    """deploy/ applied with the image built from the Containerfile: the container runs what
    ENTRYPOINT and the Deployment's args compose and keeps running (a usage error exits 2 and
    crash-loops). The namespace gitedge-system is left in place; delete it to clean up."""
    deploy = Path(__file__).resolve().parents[2] / "deploy"
    kubectl = ["kubectl", "--kubeconfig", str(KUBECONFIG)]
    subprocess.run([*kubectl, "apply", "-f", str(deploy)], check=True, timeout=120)
    subprocess.run(
        [*kubectl, "-n", "gitedge-system", "set", "image", "deployment/gitedge", f"agent={IMAGE}"],
        check=True, timeout=60,
    )  # fmt: skip
    subprocess.run(
        [*kubectl, "-n", "gitedge-system", "rollout", "status", "deployment/gitedge",
         "--timeout=600s"],
        check=True, timeout=660,
    )  # fmt: skip
    time.sleep(60)  # long enough for a crash loop to show
    out = subprocess.run(
        [*kubectl, "-n", "gitedge-system", "get", "pods", "-l", "app.kubernetes.io/name=gitedge",
         "-o", "jsonpath={.items[*].status.containerStatuses[*].restartCount}"],
        check=True, timeout=60, capture_output=True, text=True,
    )  # fmt: skip
    assert out.stdout.split() == ["0"], out.stdout
