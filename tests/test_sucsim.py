"""The SUC simulation (tests/sucsim.py, tests/jobsim.py) does what SUC's source says, rule by
rule, on Plans written straight into the emulator's store (no gitedge code involved), and the
emulator checks Plans against SUC's CRD (tests/plancrd.py)."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.jobsim import k3s_stock_pods, pod_object
from tests.kubeapi import KubeEmulator
from tests.plancrd import plan_errors, prune_for_old_suc
from tests.sucrules import with_latest_tag
from tests.sucsim import (
    SucSim,
    active_deadline_seconds,
    digest_status,
    drain_args,
    get_cond,
    label_plan_name,
    munge_version,
    new_job,
    select_concurrent_nodes,
)

NS = "system-upgrade"
MONDAY_2AM = datetime(2026, 11, 23, 2, tzinfo=UTC)
K3S = "docker.io/rancher/k3s-upgrade"
NIGHTS = {"days": ["mon"], "startTime": "01:00", "endTime": "05:00", "timeZone": "UTC"}


def plan(name: str, version: str, *, selector: dict[str, Any] | None = None, **spec: Any):
    return {
        "apiVersion": "upgrade.cattle.io/v1",
        "kind": "Plan",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "version": version,
            "concurrency": 1,
            "serviceAccountName": "system-upgrade",
            "nodeSelector": selector if selector is not None else {},
            "upgrade": {"image": K3S},
            **spec,
        },
    }


SERVERS = {"matchExpressions": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]}  # fmt: skip
AGENTS = {"matchExpressions": [{"key": "node-role.kubernetes.io/control-plane", "operator": "DoesNotExist"}]}  # fmt: skip


@pytest.fixture
def api() -> Iterator[KubeEmulator]:
    with KubeEmulator(token=None) as emulator:
        for i in range(3):
            emulator.add_node(f"server-{i}", kubelet="v1.27.16+k3s1", control_plane=True)
            emulator.add_node(f"agent-{i}", kubelet="v1.27.16+k3s1")
        yield emulator


def status(api: KubeEmulator, name: str) -> dict[str, Any]:
    return api.get("plans", name, NS)["status"]


def test_munge_version_and_digest_status_as_plan_go_computes_them(api):
    api.put(plan("p", "v1.28.15+k3s1", selector=SERVERS))
    SucSim(api, now=MONDAY_2AM).reconcile()
    st = status(api, "p")
    assert st["latestVersion"] == munge_version("v1.28.15+k3s1") == "v1.28.15-k3s1"
    expected = hashlib.sha224(b"v1.28.15-k3s1" + b"system-upgrade").hexdigest()
    assert st["latestHash"] == expected == digest_status(api.get("plans", "p", NS))
    # the digest annotation adds the named fields (wrangler convert.ToString of each path)
    p = plan("q", "1.0", selector=SERVERS)
    p["metadata"]["annotations"] = {
        "upgrade.cattle.io/digest": "spec.upgrade.image,spec.concurrency"
    }
    p["status"] = {"latestVersion": "1.0"}
    assert (
        digest_status(p) == hashlib.sha224(b"1.0system-upgrade" + K3S.encode() + b"1").hexdigest()
    )
    # data.Convert marshals the *typed* Plan (types.go): a zero pointer field stays (drain's
    # *bool false prints "false", nodeSelector *LabelSelector {} prints "map[]",
    # jobActiveDeadlineSecs *int64 0 prints "0"); a zero non-pointer omitempty field is gone
    # (drain.force, concurrency 0: ""); no separator between entries; an entry not trimmed
    # (" spec.version" names no field: "")
    p["metadata"]["annotations"]["upgrade.cattle.io/digest"] = (
        "spec.drain.deleteEmptydirData,spec.nodeSelector,spec.jobActiveDeadlineSecs,"
        "spec.drain.force,spec.concurrency,spec.drain, spec.version"
    )
    p["spec"].update(
        drain={"deleteEmptydirData": False, "force": False},
        nodeSelector={},
        jobActiveDeadlineSecs=0,
        concurrency=0,
    )
    want = b"1.0system-upgrade" + b"false" + b"map[]" + b"0" + b"" + b"" + b"map[deleteEmptydirData:false]" + b""  # fmt: skip
    assert digest_status(p) == hashlib.sha224(want).hexdigest()


def test_select_concurrent_nodes_applying_first_then_not_done_not_disabled(api):
    p = plan("p", "v1", selector=AGENTS, concurrency=2)
    p["metadata"]["uid"] = "plan-uid"
    p["status"] = {"latestHash": "h1", "applying": ["agent-2"]}
    nodes = api.items("nodes")
    names = lambda sel: [n["metadata"]["name"] for n in sel]  # noqa: E731
    picked = names(select_concurrent_nodes(p, nodes))
    assert "agent-2" in picked and len(picked) == 2 and all(n.startswith("agent") for n in picked)
    for n in nodes:  # agent-0 done with this hash, agent-1 disabled: only agent-2 is left
        if n["metadata"]["name"] == "agent-0":
            n["metadata"]["labels"][label_plan_name("p")] = "h1"
        if n["metadata"]["name"] == "agent-1":
            n["metadata"]["labels"][label_plan_name("p")] = "disabled"
    assert names(select_concurrent_nodes(p, nodes)) == ["agent-2"]
    # a nil nodeSelector is labels.Nothing(); a node without a hostname label is never selected
    assert select_concurrent_nodes({**p, "spec": {**p["spec"], "nodeSelector": None}}, nodes) == []
    del nodes[5]["metadata"]["labels"]["kubernetes.io/hostname"]
    assert nodes[5]["metadata"]["name"] not in names(select_concurrent_nodes(p, nodes))


def test_window_gate_with_its_applying_exception_and_complete(api):
    api.put(plan("p", "v1.28.15+k3s1", selector=AGENTS, window=NIGHTS))
    sim = SucSim(api, now=MONDAY_2AM + timedelta(hours=2, minutes=58), job_minutes=5)
    sim.reconcile()  # 04:58: inside, one node starts
    assert len(status(api, "p")["applying"]) == 1
    sim.settle()  # the next two nodes start after 05:00: status.applying was never empty
    assert [e.at.strftime("%H:%M") for e in sim.starts()] == ["04:58", "05:03", "05:08"]
    assert get_cond(api.get("plans", "p", NS), "Complete")["status"] == "True"
    assert all(
        n["metadata"]["labels"].get(label_plan_name("p")) == status(api, "p")["latestHash"]
        for n in api.items("nodes")
        if "agent" in n["metadata"]["name"]
    )
    # a new version outside the window: no Job, Complete False "Waiting"
    api.modify("plans", "p", NS, lambda o: o["spec"].update(version="v1.29.10+k3s1"))
    sim.advance(minutes=60)
    assert len(sim.starts()) == 3
    c = get_cond(api.get("plans", "p", NS), "Complete")
    assert (c["status"], c["reason"]) == ("False", "Waiting")
    sim.now = MONDAY_2AM + timedelta(days=7) - timedelta(minutes=62)  # next Monday 00:58
    sim.advance(minutes=1)  # 00:59: closed
    assert len(sim.starts()) == 3
    sim.advance(minutes=1)  # 01:00:00 is inside
    assert len(sim.starts()) == 4


def test_k3s_agent_prepare_waits_for_the_server_plan_and_every_server_at_the_version(api):
    api.put(plan("server", "v1.28.15+k3s1", selector=SERVERS))
    prepare = {"image": K3S, "args": ["prepare", "server"]}
    api.put(plan("agent", "v1.28.15+k3s1", selector=AGENTS, concurrency=3, prepare=prepare))
    sim = SucSim(api, now=MONDAY_2AM, job_minutes=2)  # agents: 6 minutes in prepare + 2 < 600 s
    sim.settle()
    ends = {e.node: e.at for e in sim.log if e.kind == "upgrade-done"}
    agent_upgrades = [e.at for e in sim.log if e.kind == "upgrade-started" and "agent" in e.node]
    assert min(agent_upgrades) >= max(t for n, t in ends.items() if "server" in n)
    # one server at a time, each kubelet at the version
    servers = sorted(e.at for e in sim.log if e.kind == "upgrade-started" and "server" in e.node)
    assert [b - a for a, b in itertools.pairwise(servers)] == [timedelta(minutes=2)] * 2
    assert sim.max_concurrent_upgrades(["server-0", "server-1", "server-2"]) == 1
    assert sim.max_concurrent_upgrades(["agent-0", "agent-1", "agent-2"]) == 3
    assert {n["status"]["nodeInfo"]["kubeletVersion"] for n in api.items("nodes")} == {
        "v1.28.15+k3s1"
    }


def test_job_deadline_env_default_clamp_and_failed_job_deleted_after_ttl_not_recreated(api):
    assert active_deadline_seconds(None, env={}) == 600
    assert (
        active_deadline_seconds(None, env={"SYSTEM_UPGRADE_JOB_ACTIVE_DEADLINE_SECONDS": "900"})
        == 900
    )
    assert active_deadline_seconds(0, env={}) is None
    assert (
        active_deadline_seconds(
            3600, env={"SYSTEM_UPGRADE_JOB_ACTIVE_DEADLINE_SECONDS_MAX": "1800"}
        )
        == 1800
    )
    assert (
        active_deadline_seconds(0, env={"SYSTEM_UPGRADE_JOB_ACTIVE_DEADLINE_SECONDS_MAX": "1800"})
        == 1800
    )
    api.put(plan("p", "v1.28.15+k3s1", selector=SERVERS, window=NIGHTS))
    sim = SucSim(api, now=MONDAY_2AM + timedelta(hours=2, minutes=50), job_minutes=15)
    sim.reconcile()
    sim.advance(minutes=20)  # 600 s deadline < 15 minutes: fails at 05:00
    job = api.items("jobs", NS)[0]
    assert job["spec"]["activeDeadlineSeconds"] == 600 and job["spec"]["backoffLimit"] == 2
    c = get_cond(api.get("plans", "p", NS), "Complete")
    assert c["reason"] == "JobFailed" and "DeadlineExceeded" in c["message"]
    # handle_batch.go enqueueOrDelete deletes it 900 s (job.go TTL default) after it failed;
    # wrangler applies a Plan's Jobs once per Plan resourceVersion (plan.go generated Handle,
    # isNewResourceVersion; handle_upgrade.go UniqueApplyForResourceVersion: true) and nothing
    # else re-creates it: the node stays in status.applying with no Job, for hours
    sim.advance(minutes=6 * 60)
    kinds = [(e.at.strftime("%H:%M"), e.kind) for e in sim.log if e.kind in ("pod-started", "job-failed", "job-deleted", "job-created")]  # fmt: skip
    assert kinds == [("04:50", "job-created"), ("04:50", "pod-started"), ("05:00", "job-failed"), ("05:15", "job-deleted")]  # fmt: skip
    assert api.items("jobs", NS) == [] and sim.plan("p")["status"]["applying"]
    # any change to the Plan object (here an annotation, at 11:10, window closed) makes a new
    # resourceVersion: the Job is applied again at once, the window gate skipped (applying set)
    api.modify(
        "plans", "p", NS, lambda o: o["metadata"].setdefault("annotations", {}).update(x="1")
    )
    sim.advance()
    assert [(e.at.strftime("%H:%M"), e.kind) for e in sim.log if e.kind in ("job-created", "pod-started")][-2:] == [("11:11", "job-created"), ("11:11", "pod-started")]  # fmt: skip


def test_a_suc_restart_applies_every_plan_again(api):
    """Wrangler's ``seen`` map is in memory: a restarted SUC applies each Plan's Jobs on its first
    pass, so a failed Job deleted after its TTL comes back, at any hour (applying is set)."""
    api.put(plan("p", "v1.28.15+k3s1", selector=SERVERS, window=NIGHTS))
    sim = SucSim(api, now=MONDAY_2AM + timedelta(hours=2, minutes=50), job_minutes=15)
    sim.advance(minutes=3 * 60)
    assert api.items("jobs", NS) == []
    sim.restart_controller()
    sim.advance()
    assert [(e.at.strftime("%H:%M"), e.kind) for e in sim.log if e.kind in ("job-created", "pod-started")][-2:] == [("07:51", "job-created"), ("07:51", "pod-started")]  # fmt: skip


def test_a_failing_upgrade_is_retried_by_the_job_then_fails_past_the_backoff_limit(api):
    api.put(plan("once", "v1.28.15+k3s1", selector={"matchLabels": {"kubernetes.io/hostname": "agent-0"}}))  # fmt: skip
    api.put(plan("never", "v1.28.15+k3s1", selector={"matchLabels": {"kubernetes.io/hostname": "agent-1"}}))  # fmt: skip
    sim = SucSim(api, now=MONDAY_2AM, job_minutes=1, fail=lambda p, n, attempt: p == "never" or attempt == 1)  # fmt: skip
    sim.reconcile()
    sim.advance(minutes=10)
    once = [(e.kind, e.detail) for e in sim.log if e.plan == "once" and e.kind in ("pod-started", "pod-failed", "job-succeeded")]  # fmt: skip
    assert once == [("pod-started", "attempt 1"), ("pod-failed", "upgrade container exited 1"), ("pod-started", "attempt 2"), ("job-succeeded", "")]  # fmt: skip
    never = [e for e in sim.log if e.plan == "never"]
    assert [e.detail for e in never if e.kind == "pod-started"] == [
        "attempt 1",
        "attempt 2",
        "attempt 3",
    ]
    assert [e.detail for e in never if e.kind == "job-failed"] == ["BackoffLimitExceeded"]
    sim.advance(minutes=15)  # the TTL: deleted (handle_batch.go enqueueOrDelete), not re-created
    kinds = [e.kind for e in sim.log if e.plan == "never"]
    assert kinds.index("job-deleted") > kinds.index("job-failed")
    assert kinds.count("job-created") == 1 and kinds[-1] == "job-deleted"
    # SUC's Validate: a Plan both deleteEmptydirData and deleteLocalData is not valid, no Job
    api.put(plan("bad", "v1", selector=AGENTS, drain={"deleteEmptydirData": True, "deleteLocalData": True}))  # fmt: skip
    sim.reconcile()
    c = get_cond(api.get("plans", "bad", NS), "Validated")
    assert c["status"] == "False" and "deleteLocalData" in c["message"]
    assert not [e for e in sim.log if e.plan == "bad"]


def test_new_job_as_suc_job_suite_and_flags_tests_check_it(api):
    """pkg/upgrade/job/job_suite_test.go and flags_test.go, ported."""
    p = plan("test-1", "v1", selector=SERVERS)
    p["metadata"]["uid"], p["status"] = "u", {"latestVersion": "v1", "latestHash": "h"}
    node = {"metadata": {"name": "prod.test.local", "labels": {}}}
    deadline = lambda plan_value, **env: new_job(  # noqa: E731
        {**p, "spec": {**p["spec"], "jobActiveDeadlineSecs": plan_value}}, node, env=env
    )["spec"].get("activeDeadlineSeconds")
    assert deadline(12345) == 12345
    assert deadline(None, SYSTEM_UPGRADE_JOB_ACTIVE_DEADLINE_SECONDS="300") == 300
    assert deadline(0, SYSTEM_UPGRADE_JOB_ACTIVE_DEADLINE_SECONDS="300") is None
    assert deadline(-1, SYSTEM_UPGRADE_JOB_ACTIVE_DEADLINE_SECONDS="3600") == 3600
    assert deadline(600, SYSTEM_UPGRADE_JOB_ACTIVE_DEADLINE_SECONDS_MAX="300") == 300
    p["metadata"]["annotations"] = {
        "cattle.io/some-annotation": "foo",
        "plan.cattle.io/some-annotation": "bar",
        "some.other/annotation": "baz",
    }
    p["metadata"]["labels"] = {"cattle.io/some-label": "biz", "plan.cattle.io/some-label": "buz", "some.other/label": "bla"}  # fmt: skip
    job = new_job(p, node, env={})
    for meta in (job["metadata"], job["spec"]["template"]["metadata"]):
        assert meta["annotations"].get("some.other/annotation") == "baz"
        assert not {"cattle.io/some-annotation", "plan.cattle.io/some-annotation"} & set(meta["annotations"])  # fmt: skip
        assert meta["labels"].get("some.other/label") == "bla"
        assert not {"cattle.io/some-label", "plan.cattle.io/some-label"} & set(meta["labels"])
    assert job["metadata"]["name"] == "apply-test-1-on-prod-with-h"  # shortNodeName
    # container_test.go WithLatestTag
    assert with_latest_tag("test/image", "test") == "test/image:test"
    assert with_latest_tag("test/image:test-with-image-tag", "test") == "test/image:test-with-image-tag"  # fmt: skip
    assert with_latest_tag("img.example.com:5000/test/image", "test") == "img.example.com:5000/test/image:test"  # fmt: skip
    assert with_latest_tag("img.example.com:5000/test/image:x", "test") == "img.example.com:5000/test/image:x"  # fmt: skip
    assert with_latest_tag("docker.io/rancher/k3s-upgrade", "v1") == "rancher/k3s-upgrade:v1"
    for val, present in ((-1, False), (0, False), (1, True)):  # flags_test.go TestNew
        args = drain_args({"drain": {"skipWaitForDeleteTimeout": val}}, node)
        assert ("--skip-wait-for-delete-timeout" in args) is present


def test_running_job_deleted_when_the_version_changes_or_its_node_leaves_applying(api):
    """handle_batch.go deletes a Job applying another version, or whose node is not in
    status.applying, but only when its handler runs: on a change of that Job, an EnqueueAfter,
    the 2-hour resync (main.go) -- never on a Plan change (handle_upgrade.go, handle_core.go
    enqueue Plans, not Jobs)."""
    api.put(plan("p", "v1.28.15+k3s1", selector=AGENTS, concurrency=1, window=NIGHTS, jobActiveDeadlineSecs=1800))  # fmt: skip
    sim = SucSim(api, now=MONDAY_2AM + timedelta(hours=2, minutes=55), job_minutes=9)
    sim.reconcile()
    sim.advance(minutes=6)  # 05:01, outside the window, the 04:55 job still runs
    (node,) = status(api, "p")["applying"]
    api.modify("plans", "p", NS, lambda o: o["spec"].update(version="v1.29.10+k3s1"))
    sim.reconcile()
    assert not [e for e in sim.log if e.kind == "job-deleted"]  # the old Job runs on
    # the new version's Job exists at once (applying names the node: parallelism 1) but its pod
    # stays Pending (job.go PodAntiAffinity: one pod of a Plan per hostname) until the old Job,
    # changed by its completion at 05:04, is handled and deleted
    sim.advance(minutes=3)
    deleted = [e for e in sim.log if e.kind == "job-deleted"]
    assert [(e.at.strftime("%H:%M"), e.node, e.detail) for e in deleted] == [("05:04", node, "its Plan's version changed")]  # fmt: skip
    assert not [e for e in sim.log if e.kind == "node-done"]  # deleted before it labels
    assert [(e.at.strftime("%H:%M"), e.node) for e in sim.starts()] == [("04:55", node), ("05:04", node)]  # fmt: skip
    # the node drops out of applying (a nodeSelector edit at 05:09): its running Job is not
    # deleted; it completes at 05:13, and the Complete branch (before the applying check)
    # labels the node done
    sim.advance(minutes=5)
    api.modify(
        "plans", "p", NS,
        lambda o: o["spec"].update(nodeSelector={"matchLabels": {"kubernetes.io/hostname": "none"}}),
    )  # fmt: skip
    sim.advance(minutes=5)
    assert "applying" not in status(api, "p")
    assert len([e for e in sim.log if e.kind == "job-deleted"]) == 1
    done = [(e.at.strftime("%H:%M"), e.node) for e in sim.log if e.kind == "node-done"]
    assert done == [("05:13", node)]
    assert api.get("nodes", node)["metadata"]["labels"][label_plan_name("p")] == status(api, "p")["latestHash"]  # fmt: skip


def test_a_job_out_of_turn_is_deleted_at_the_next_resync_if_nothing_changes_it(api):
    """main.go NewController(..., 2*time.Hour): the informers' resync runs the Job handler on
    every Job; a Job still running when its node left status.applying is deleted then."""
    api.put(plan("p", "v1.28.15+k3s1", selector=AGENTS, concurrency=1, jobActiveDeadlineSecs=0))
    sim = SucSim(api, now=MONDAY_2AM, job_minutes=300)
    sim.reconcile()
    sim.advance(minutes=10)
    api.modify("plans", "p", NS, lambda o: o["spec"].update(nodeSelector={"matchLabels": {"x": "none"}}))  # fmt: skip
    sim.advance(minutes=200)
    gone = [(e.at.strftime("%H:%M"), e.detail) for e in sim.log if e.kind == "job-deleted"]
    assert gone == [("04:00", "its node is not in the Plan's status.applying")]


def test_a_pending_pod_spends_its_jobs_deadline(api):
    """The Job's activeDeadlineSeconds counts from the Job's status.startTime (the Job controller
    sets it at the first sync of an unsuspended Job; parallelism 0 is not suspend), so the time
    its pod waits Pending behind the previous version's Job (job.go PodAntiAffinity) counts."""
    api.put(plan("p", "v1.28.15+k3s1", selector=AGENTS, concurrency=1))
    sim = SucSim(api, now=MONDAY_2AM, job_minutes=9)
    sim.reconcile()
    sim.advance(minutes=6)
    api.modify("plans", "p", NS, lambda o: o["spec"].update(version="v1.29.10+k3s1"))
    sim.advance(minutes=20)  # new Job at 02:07, its pod starts 02:09, 600 s end at 02:17
    failed = [(e.at.strftime("%H:%M"), e.detail) for e in sim.log if e.kind == "job-failed"]
    assert failed == [("02:17", "DeadlineExceeded")]


def test_drain_flags_as_job_go_builds_them_and_kubectl_drain_refusals(api):
    node = api.get("nodes", "agent-0")
    spec = {"drain": {"force": True, "timeout": "900s"}}
    assert drain_args(spec, node) == [
        "drain", "agent-0", "--pod-selector", "!upgrade.cattle.io/controller",
        "--ignore-daemonsets", "--delete-emptydir-data", "--force", "--timeout", "900s",
    ]  # fmt: skip
    assert "--delete-emptydir-data" not in drain_args(
        {"drain": {"deleteEmptydirData": False}}, node
    )
    assert "--ignore-daemonsets" not in drain_args({"drain": {"ignoreDaemonSets": False}}, node)
    assert drain_args({"drain": {"timeout": 900}}, node)[-2:] == ["--timeout", "900ns"]
    for pod in k3s_stock_pods("agent-0"):
        api.put(pod)
    drain = {"force": True, "ignoreDaemonSets": True, "deleteEmptydirData": False}
    api.put(plan("p", "v1.28.15+k3s1", selector=AGENTS, drain=drain))
    sim = SucSim(api, now=MONDAY_2AM)
    sim.settle()
    refused = [e for e in sim.log if e.kind == "drain-refused" and e.node == "agent-0"]
    assert refused and "Pods with local storage" in refused[0].detail
    assert api.get("nodes", "agent-0")["spec"]["unschedulable"] is True  # left cordoned
    # an unmanaged pod without --force; a DaemonSet pod without --ignore-daemonsets
    api.put(pod_object("bare", node="agent-1", owner=None))
    drain = {"ignoreDaemonSets": False}
    api.put(plan("d", "v1", selector={"matchLabels": {"kubernetes.io/hostname": "agent-1"}}, drain=drain))  # fmt: skip
    api.put(pod_object("svclb", node="agent-1", owner="DaemonSet"))
    sim.advance(minutes=2)
    msgs = [e.detail for e in sim.log if e.kind == "drain-refused" and e.plan == "d"]
    assert "use --force" in msgs[0] and "use --ignore-daemonsets" in msgs[0]


def test_plan_crd_validation_and_an_old_suc_pruning_window(api):
    p = plan("p", "v1", selector=SERVERS, window=NIGHTS)
    assert plan_errors(p) == []
    assert plan_errors({**p, "spec": {**p["spec"], "windows": NIGHTS}})  # unknown field
    assert (
        plan_errors({**p, "spec": {**p["spec"], "drain": {"timeout": 90}}}) == []
    )  # int-or-string
    assert plan_errors({**p, "spec": {**p["spec"], "window": {**NIGHTS, "days": ["monday", "xx"]}}})
    assert "window" not in prune_for_old_suc(p)["spec"]
    import json
    import urllib.error
    import urllib.request

    bad = {**p, "spec": {**p["spec"], "surprise": 1}}
    req = urllib.request.Request(
        f"{api.url}/apis/upgrade.cattle.io/v1/namespaces/{NS}/plans",
        data=json.dumps(bad).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 422 and "surprise" in e.value.read().decode()
    with KubeEmulator(token=None, old_suc=True) as old:
        req = urllib.request.Request(
            f"{old.url}/apis/upgrade.cattle.io/v1/namespaces/{NS}/plans",
            data=json.dumps(p).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 201
        assert "window" not in old.get("plans", "p", NS)["spec"]


def test_job_ttl_covers_post_complete_delay_and_int_drain_timeout_prints_as_go_duration(api):
    """job.go New: ttlSecondsAfterFinished is raised to postCompleteDelay + 1 minute when
    shorter (and the annotation with it); a drain timeout given as an integer is nanoseconds,
    passed to kubectl as time.Duration(IntVal).String()."""
    p = plan("p", "v1", selector=SERVERS, postCompleteDelay="30m", drain={"timeout": 900_000_000_000})  # fmt: skip
    p["metadata"]["uid"], p["status"] = "u", {"latestVersion": "v1", "latestHash": "h"}
    node = api.get("nodes", "server-0")
    job = new_job(p, node, env={})
    assert job["spec"]["ttlSecondsAfterFinished"] == 1860
    assert job["metadata"]["annotations"]["upgrade.cattle.io/ttl-seconds-after-finished"] == "1860"
    assert new_job(p, node, env={"SYSTEM_UPGRADE_JOB_TTL_SECONDS_AFTER_FINISH": "7200"})["spec"]["ttlSecondsAfterFinished"] == 7200  # fmt: skip
    args = drain_args(p["spec"], node)
    assert args[args.index("--timeout") + 1] == "15m0s"
    for ns, text in [(900, "900ns"), (1500, "1.5µs"), (2_000_000, "2ms"), (3_723_500_000_000, "1h2m3.5s")]:  # fmt: skip
        p["spec"]["drain"]["timeout"] = ns
        args = drain_args(p["spec"], node)
        assert args[args.index("--timeout") + 1] == text


def test_validation_message_and_condition_timestamps_as_suc_writes_them(api):
    """plan.go Validate returns merr.NewErrors(ErrInvalidWindow, err) (wrangler merr joins with
    ", "; kured v1.13.1's texts are capitalised); pkg/apis/condition touches lastUpdateTime on a
    status or message change, not on a reason change, and never writes lastTransitionTime."""
    api.put(plan("bad", "v1", selector=SERVERS, window={"days": ["mon"], "startTime": "1:00am", "endTime": "05:00"}))  # fmt: skip
    sim = SucSim(api, now=MONDAY_2AM)
    sim.reconcile()
    c = get_cond(api.get("plans", "bad", NS), "Validated")
    assert c["message"] == "spec.window is invalid, Invalid time format: 1:00am"
    api.put(plan("ok", "v1", selector={"matchLabels": {"x": "none"}}))
    sim.reconcile()
    for cond in status(api, "ok")["conditions"]:
        assert "lastTransitionTime" not in cond
    complete = get_cond(api.get("plans", "ok", NS), "Complete")
    assert complete == {"type": "Complete", "status": "True", "reason": "Complete", "lastUpdateTime": "2026-11-23T02:00:00Z"}  # fmt: skip


def test_job_container_env_as_container_go_builds_it(api):
    """container.go New: SYSTEM_UPGRADE_NODE_NAME / POD_NAME / POD_UID from the downward API,
    then the ContainerSpec's ``envs`` (types.go's JSON name, not ``env``), then
    WithPlanEnvironment; drain and cordon containers get no ``envs``."""
    p = plan("p", "v1", selector=SERVERS, drain={})
    p["spec"]["upgrade"]["envs"] = [{"name": "A", "value": "1"}]
    p["metadata"]["uid"], p["status"] = "u", {"latestVersion": "v1", "latestHash": "h"}
    job = new_job(p, api.get("nodes", "server-0"), env={})
    pod = job["spec"]["template"]["spec"]
    names = [e["name"] for e in pod["containers"][0]["env"]]
    plan_vars = ["SYSTEM_UPGRADE_PLAN_NAME", "SYSTEM_UPGRADE_PLAN_LATEST_HASH", "SYSTEM_UPGRADE_PLAN_LATEST_VERSION"]  # fmt: skip
    pod_vars = ["SYSTEM_UPGRADE_NODE_NAME", "SYSTEM_UPGRADE_POD_NAME", "SYSTEM_UPGRADE_POD_UID"]
    assert names == [*pod_vars, "A", *plan_vars]
    assert [e["name"] for e in pod["initContainers"][0]["env"]] == [*pod_vars, *plan_vars]
    assert not plan_errors(p)  # the CRD knows upgrade.envs


def _http(api: KubeEmulator, method: str, path: str, body: Any = None) -> Any:
    import json
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(api.url + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


def test_an_update_that_changes_nothing_is_no_new_resource_version(api):
    """The API server does not write an update that changes nothing (same resourceVersion, no
    event), so it does not make SUC apply the Plan's Jobs again; any real change does."""
    api.put(plan("p", "v1.28.15+k3s1", selector=SERVERS, window=NIGHTS))
    sim = SucSim(api, now=MONDAY_2AM + timedelta(hours=2, minutes=50), job_minutes=15)
    sim.advance(minutes=3 * 60)  # failed at 05:00, deleted at 05:15, not re-created
    path = f"/apis/upgrade.cattle.io/v1/namespaces/{NS}/plans/p"
    stored = _http(api, "GET", path)
    same = _http(api, "PUT", path, stored)
    assert same["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]
    sim.advance(minutes=5)
    assert [e.kind for e in sim.log].count("job-created") == 1
    stored["metadata"].setdefault("annotations", {})["note"] = "x"
    changed = _http(api, "PUT", path, stored)
    assert changed["metadata"]["resourceVersion"] != stored["metadata"]["resourceVersion"]
    sim.advance()
    assert [e.kind for e in sim.log].count("job-created") == 2


def test_a_not_ready_node_takes_a_concurrency_slot_and_its_job_waits_to_its_deadline(api):
    """SelectConcurrentNodes (plan.go) reads labels only: a cordoned or NotReady node is
    selected and counts toward concurrency. The Job tolerates node.kubernetes.io/unschedulable
    (job.go New), so it runs on a cordoned node, but not the not-ready taint: Pending, it fails
    at its deadline and holds the Plan's slot meanwhile (and after: the node stays applying)."""
    api.put(plan("p", "v1.28.15+k3s1", selector=AGENTS, concurrency=1))
    not_ready = [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]
    for name in ("agent-0", "agent-1", "agent-2"):
        api.modify("nodes", name, "", lambda o: o.setdefault("spec", {}).update(taints=not_ready))
    sim = SucSim(api, now=MONDAY_2AM, job_minutes=5)
    sim.reconcile()
    (first,) = status(api, "p")["applying"]
    sim.advance(minutes=60)
    assert not sim.starts()
    failed = [(e.at.strftime("%H:%M"), e.node, e.detail) for e in sim.log if e.kind == "job-failed"]
    assert failed == [("02:10", first, "DeadlineExceeded")]
    assert status(api, "p")["applying"] == [first]
    # cordoned (spec.unschedulable and its taint): tolerated, a Job runs there
    cordon = {"unschedulable": True, "taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]}  # fmt: skip
    api.modify("nodes", "server-0", "", lambda o: o.setdefault("spec", {}).update(cordon))
    p = plan("q", "v1.28.15+k3s1", selector={"matchLabels": {"kubernetes.io/hostname": "server-0"}})  # fmt: skip
    api.put(p)
    sim.advance()
    assert [e.node for e in sim.starts()] == ["server-0"]


def test_two_failed_jobs_alternate_the_jobfailed_message_and_are_applied_again(api):
    """The worst case of a race the sim settles one way: with two failed Jobs, the TTL pass over
    each writes its own JobFailed message (handle_batch.go), a status change, so the Plan gets a
    new resourceVersion just before that Job is deleted, and its Jobs are applied again (at any
    hour: status.applying is set)."""
    api.put(plan("p", "v1.28.15+k3s1", selector=AGENTS, concurrency=2, window=NIGHTS))
    sim = SucSim(api, now=MONDAY_2AM + timedelta(hours=2, minutes=40), job_minutes=5, fail=lambda p, n, a: True)  # fmt: skip
    sim.advance(minutes=60)
    created = [e.at.strftime("%H:%M") for e in sim.log if e.kind == "job-created"]
    assert created == ["04:41", "04:41", "05:06", "05:06", "05:31", "05:31"]
