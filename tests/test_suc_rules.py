"""What SUC does with the drain, concurrency and deadline gitedge renders (issue 14: #3, #5, #6).

Covers: ``drain`` carries only the fields the fleet set, so SUC's ``kubectl drain`` gets
``--delete-emptydir-data`` and ``--ignore-daemonsets`` by SUC's defaults (K3s's metrics-server
mounts an emptyDir: with the flag off, drain refuses every node running it), and a field the
fleet sets false reaches SUC; control-plane nodes are upgraded one at a time for every
component, the OS included (a 3-server, 3-agent site with ``concurrency: 3``, passes alternating
with SUC's node selection); every Plan sets ``jobActiveDeadlineSecs`` to fit its drain timeout
plus the upgrade, ``rollout.upgradeTimeout`` configurable.

SUC's rules used here are ported from rancher/system-upgrade-controller (main):
pkg/upgrade/job/job.go ``New`` (drain arguments, deadline) and pkg/upgrade/plan/plan.go
``SelectConcurrentNodes`` (which nodes get a Job).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from gitedge.core.fleet.model import Drain, Rollout, load_fleet
from gitedge.core.fleet.osimage import OsTarget
from gitedge.core.fleet.selectors import LabelSelector
from gitedge.core.rollout.clusterstate import (
    ClusterSnapshot,
    NodeFacts,
    PlanState,
    cluster_facts,
    digest_status,
    munge_version,
)
from gitedge.core.rollout.decision import decide
from gitedge.core.rollout.planning import plan
from gitedge.core.rollout.sucplans import (
    AGENT_PLAN,
    OS_AGENT_PLAN,
    OS_SERVER_PLAN,
    SERVER_PLAN,
    Site,
    k3s_plans,
    os_plans,
)
from tests import fleetstory as fs

SITE = Site(namespace="system-upgrade", cache="cache.site:5000")
CP = "node-role.kubernetes.io/control-plane"


def drain_args(spec: dict[str, Any], node: str = "n1") -> list[str]:
    """The kubectl arguments SUC's drain init container runs (job.go ``New``, 'then we
    cordon/drain'): pointer fields nil mean SUC's default."""
    drain = spec["drain"]
    args = ["drain", node, "--pod-selector", "upgrade.cattle.io/controller!="]
    if drain.get("ignoreDaemonSets") is None or drain["ignoreDaemonSets"]:
        args.append("--ignore-daemonsets")
    local, emptydir = drain.get("deleteLocalData"), drain.get("deleteEmptydirData")
    if (local is None or local) and (emptydir is None or emptydir):
        args.append("--delete-emptydir-data")
    if drain.get("force"):
        args.append("--force")
    if "timeout" in drain:
        args += ["--timeout", str(drain["timeout"])]
    if drain.get("gracePeriod") is not None:
        args += ["--grace-period", str(drain["gracePeriod"])]
    if drain.get("disableEviction"):
        args.append("--disable-eviction=true")
    if drain.get("skipWaitForDeleteTimeout", 0) > 0:
        args += ["--skip-wait-for-delete-timeout", str(drain["skipWaitForDeleteTimeout"])]
    return args


def target_rollout(rollout_yaml: str) -> Rollout:
    head = "apiVersion: gitedge.io/v1alpha1\n"
    doc = (
        head + "kind: UpgradeTarget\nmetadata: {name: t}\nspec:\n  clusterSelector: {}\n"
        "  k3s: {version: v1.30.6+k3s1}\n" + f"  rollout: {rollout_yaml}\n"
    )
    releases = head + "kind: K3sReleases\nmetadata: {name: r}\nspec: {versions: [v1.30.6+k3s1]}\n"
    fleet = load_fleet({"t.yaml": doc.encode(), "r.yaml": releases.encode()})
    return next(iter(fleet.targets.values())).spec.rollout


# ------------------------------------------------------------------------------- 3: drain


def test_drain_leaves_suc_defaults_alone_so_emptydir_pods_do_not_block_it():
    rollout = target_rollout("{concurrency: 2, drain: {timeout: 10m}}")
    _, agent = k3s_plans(
        version="v1.30.6+k3s1",
        upgrade_image="rancher/k3s-upgrade",
        rollout=rollout,
        window=None,
        target="t",
        site=SITE,
    )
    # what the fleet set (and the timeout), nothing else: SUC's defaults stay SUC's
    assert agent["spec"]["drain"] == {"timeout": "600s"}
    args = drain_args(agent["spec"])
    assert "--delete-emptydir-data" in args and "--ignore-daemonsets" in args
    assert "--force" not in args
    for plan_ in os_plans(
        os=OsTarget(image="registry.example.com/os:1"), rollout=rollout, window=None,
        target="t", site=SITE,
    ):  # fmt: skip
        assert "--delete-emptydir-data" in drain_args(plan_["spec"])


def test_drain_fields_the_fleet_sets_reach_suc():
    rollout = target_rollout(
        "{drain: {deleteEmptydirData: false, ignoreDaemonSets: false, force: true, "
        "gracePeriod: 30, disableEviction: true}}"
    )
    assert rollout.drain == Drain(
        delete_emptydir_data=False,
        ignore_daemon_sets=False,
        force=True,
        grace_period=30,
        disable_eviction=True,
    )
    _, agent = k3s_plans(
        version="v1.30.6+k3s1", upgrade_image="rancher/k3s-upgrade", rollout=rollout,
        window=None, target="t", site=SITE,
    )  # fmt: skip
    assert agent["spec"]["drain"] == {
        "timeout": "900s",  # none set: 15m, so the Job's deadline can fit the drain
        "deleteEmptydirData": False,
        "ignoreDaemonSets": False,
        "force": True,
        "gracePeriod": 30,
        "disableEviction": True,
    }
    args = drain_args(agent["spec"])
    assert "--delete-emptydir-data" not in args and "--ignore-daemonsets" not in args
    assert {"--force", "--disable-eviction=true"} <= set(args)


# -------------------------------------------------------------- 5: control plane one at a time


def suc_select(manifest: dict[str, Any], status: dict[str, Any], nodes: list[NodeFacts]) -> list:
    """plan.go SelectConcurrentNodes: nodes the selector matches, with a hostname label, whose
    plan.upgrade.cattle.io/<plan> label is NotIn [disabled, latestHash]; the applying ones
    first, then others up to concurrency."""
    selector = LabelSelector.model_validate(manifest["spec"].get("nodeSelector") or {})
    key = "plan.upgrade.cattle.io/" + manifest["metadata"]["name"]
    candidates = [
        n
        for n in nodes
        if "kubernetes.io/hostname" in n.labels
        and selector.matches(n.labels)
        and n.labels.get(key) not in ("disabled", status["latestHash"])
    ]
    applying = [n for n in candidates if n.name in status.get("applying", ())]
    rest = [n for n in candidates if n.name not in status.get("applying", ())]
    return applying + rest[: max(0, manifest["spec"].get("concurrency", 0) - len(applying))]


def suc_status(manifest: dict[str, Any]) -> dict[str, Any]:
    """handle_upgrade.go: latestVersion = MungeVersion(spec.version), DigestStatus's hash."""
    latest = munge_version(manifest["spec"]["version"])
    return {
        "latestVersion": latest,
        "latestHash": digest_status(
            latest_version=latest,
            spec=manifest["spec"],
            annotations=manifest["metadata"].get("annotations", {}),
        ),
    }


def test_an_os_rollout_never_upgrades_two_servers_at_once():
    """3 servers, 3 agents, ``concurrency: 3`` and an OS step: at every instant SUC could run
    Jobs on at most one control-plane node, and the rollout still completes."""
    fleet = fs.fleet(k3s=None, window=None)
    target = next(iter(fleet.targets.values()))
    rollout = target.spec.rollout.model_copy(update={"concurrency": 3})
    fleet.targets[target.metadata.name] = target.model_copy(
        update={"spec": target.spec.model_copy(update={"rollout": rollout})}
    )

    def mk(name: str, cp: bool, labels: dict[str, str]) -> NodeFacts:
        base = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
        if cp:
            base[CP] = "true"
        return NodeFacts(name, {**base, **labels}, "amd64", fs.PATH[-1])

    roles = {f"server-{i}": True for i in range(3)} | {f"agent-{i}": False for i in range(3)}
    labels: dict[str, dict[str, str]] = {n: {} for n in roles}
    written: dict[str, dict[str, Any]] = {}
    upgraded_together: list[set[str]] = []
    for _ in range(20):
        nodes = [mk(n, cp, labels[n]) for n, cp in roles.items()]
        plans = [
            PlanState.from_object({**m, "status": suc_status(m), "metadata": {**m["metadata"]}})
            for m in written.values()
        ]
        facts = cluster_facts(name="site", labels={}, nodes=nodes, os_image=None)
        planned = plan(fleet, facts, now=fs.IN_WINDOW, site=SITE)
        d = decide(plan=planned, snapshot=ClusterSnapshot(tuple(nodes), tuple(plans)),
                   now=fs.IN_WINDOW, site=SITE)  # fmt: skip
        for a in d.actions:
            assert a.manifest is not None
            written[a.name] = dict(a.manifest)
        # SUC acts on every Plan written: the nodes it starts Jobs on now, together
        running = {n.name for m in written.values() for n in suc_select(m, suc_status(m), nodes)}
        if not running:
            break
        upgraded_together.append({n for n in running if roles[n]})
        for m in written.values():  # the Jobs complete: SUC labels the nodes (handle_batch.go)
            status = suc_status(m)
            for n in suc_select(m, status, nodes):
                labels[n.name]["plan.upgrade.cattle.io/" + m["metadata"]["name"]] = status[
                    "latestHash"
                ]
    assert set(written) == {OS_SERVER_PLAN, OS_AGENT_PLAN}
    assert all(len(servers) <= 1 for servers in upgraded_together), upgraded_together
    assert set().union(*upgraded_together) == {"server-0", "server-1", "server-2"}
    assert all(  # every node done
        labels[n].get("plan.upgrade.cattle.io/" + (OS_SERVER_PLAN if cp else OS_AGENT_PLAN))
        for n, cp in roles.items()
    )
    assert written[OS_AGENT_PLAN]["spec"]["concurrency"] == 3
    assert written[OS_SERVER_PLAN]["spec"]["concurrency"] == 1


def test_k3s_worker_plan_follows_its_complete_control_plane_plan():
    """The K3s agent Plan is written once the server Plan is complete, so its Jobs never wait
    in k3s-upgrade's ``prepare`` against their deadline while the servers upgrade."""
    nodes = [
        NodeFacts("server-0", {"kubernetes.io/hostname": "server-0", CP: "true"}, "amd64", fs.START),
        NodeFacts("agent-0", {"kubernetes.io/hostname": "agent-0"}, "amd64", fs.START),
    ]  # fmt: skip
    fleet = fs.fleet(os=None, window=None)
    facts = cluster_facts(name="site", labels={}, nodes=nodes)
    planned = plan(fleet, facts, now=fs.IN_WINDOW, site=SITE)
    first = decide(plan=planned, snapshot=ClusterSnapshot(tuple(nodes), ()), now=fs.IN_WINDOW,
                   site=SITE)  # fmt: skip
    server = dict(
        first.actions[0].manifest
    )  # as written: server-0 admitted (core/rollout/admission)
    live = PlanState.from_object({**server, "status": suc_status(server)})
    d = decide(plan=planned, snapshot=ClusterSnapshot(tuple(nodes), (live,)), now=fs.IN_WINDOW,
               site=SITE)  # fmt: skip
    assert d.actions == ()  # server-0 not done yet
    done = {"plan.upgrade.cattle.io/" + SERVER_PLAN: suc_status(server)["latestHash"]}
    nodes[0] = NodeFacts("server-0", {**nodes[0].labels, **done}, "amd64", fs.PATH[0])
    d = decide(plan=planned, snapshot=ClusterSnapshot(tuple(nodes), (live,)), now=fs.IN_WINDOW,
               site=SITE)  # fmt: skip
    assert [(a.verb, a.name) for a in d.actions] == [("create", AGENT_PLAN)]


# --------------------------------------------------------------------------- 6: deadlines


def test_every_plan_sets_a_deadline_that_fits_drain_and_upgrade():
    rollout = target_rollout("{concurrency: 2, drain: {timeout: 10m}, upgradeTimeout: 30m}")
    assert rollout.upgrade_timeout == timedelta(minutes=30)
    server, agent = k3s_plans(
        version="v1.30.6+k3s1", upgrade_image="rancher/k3s-upgrade", rollout=rollout,
        window=None, target="t", site=SITE,
    )  # fmt: skip
    os_server, os_agent = os_plans(
        os=OsTarget(image="registry.example.com/os:1"), rollout=rollout, window=None,
        target="t", site=SITE,
    )  # fmt: skip
    minutes = {
        p["metadata"]["name"]: p["spec"]["jobActiveDeadlineSecs"] / 60
        for p in (server, agent, os_server, os_agent)
    }
    # start-up 3m (+ prepare 5m on the K3s agent Plan) + drain 10m where it drains + upgrade 30m
    assert minutes == {
        SERVER_PLAN: 3 + 30,  # servers are cordoned, never drained
        AGENT_PLAN: 3 + 5 + 10 + 30,
        OS_SERVER_PLAN: 3 + 10 + 30,
        OS_AGENT_PLAN: 3 + 10 + 30,
    }
    for p in (agent, os_server, os_agent):  # job.go warns when the drain exceeds the deadline
        assert p["spec"]["jobActiveDeadlineSecs"] > 600 + 30 * 60
    # defaults: a 15m drain and a 20m upgrade, well past SUC's own 600 s default
    _, agent = k3s_plans(
        version="v1.30.6+k3s1", upgrade_image="rancher/k3s-upgrade",
        rollout=Rollout(drain=Drain()), window=None, target="t", site=SITE,
    )  # fmt: skip
    assert agent["spec"]["jobActiveDeadlineSecs"] == (3 + 5 + 15 + 20) * 60
    assert agent["spec"]["drain"]["timeout"] == "900s"
    # a timeout of 0 is kubectl's "wait forever", which no deadline fits: 15m too
    _, agent = k3s_plans(
        version="v1.30.6+k3s1", upgrade_image="rancher/k3s-upgrade",
        rollout=target_rollout("{drain: {timeout: 0s}}"), window=None, target="t", site=SITE,
    )  # fmt: skip
    assert agent["spec"]["drain"]["timeout"] == "900s"
    assert agent["spec"]["jobActiveDeadlineSecs"] == (3 + 5 + 15 + 20) * 60
