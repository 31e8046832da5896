"""Deciding what to do to the cluster (core/rollout/decision.py, core/rollout/clusterstate.py, core/status/conditions.py),
pure, from hand-built snapshots.

Covers: the first step creates the K3s server/agent pair of the first minor only; a running step
is never replaced; a step is done only when every selected node carries the Plan's done label
*and* SUC's status is the current spec's, as SUC writes it (munged latestVersion, DigestStatus's
hash; stale version, stale hash, ``disabled`` nodes); the next minor
starts only when the nodes' kubelets report the step; a three-minor path walked one step per
pass; ``rollout.order`` both ways; no create/advance/correction outside the window or with an
untrusted clock, a running step left alone and ``retry_after`` to the next opening; deletes only
of gitedge-owned Plans, never while SUC runs a job for them; an update keeps others' labels and
the resourceVersion; the cluster's facts from its nodes; condition merging and ``Ready``.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gitedge.core.rollout.clusterstate import (
    ClusterSnapshot,
    NodeFacts,
    PlanState,
    actual_k3s_version,
    cluster_facts,
    plan_progress,
)
from gitedge.core.rollout.decision import decide
from gitedge.core.rollout.planmanifests import merge_for_update
from gitedge.core.rollout.planning import plan
from gitedge.core.rollout.sucplans import AGENT_PLAN, OS_AGENT_PLAN, OS_SERVER_PLAN, SERVER_PLAN
from gitedge.core.status.conditions import Condition, from_json, merge, summarize, to_json
from gitedge.errors import VersionError
from tests import fleetstory as fs


def suc_latest_hash(manifest: dict[str, Any], *, munge: bool = True) -> str:
    """status.latestHash as SUC writes it (system-upgrade-controller pkg/upgrade/plan/plan.go
    DigestStatus): SHA-224 of status.latestVersion (MungeVersion(spec.version),
    handle_upgrade.go), spec.serviceAccountName, then each field the upgrade.cattle.io/digest
    annotation names (addToHashFromAnnotation); no secrets in gitedge's Plans."""
    h = hashlib.sha224()
    version = manifest["spec"]["version"]
    h.update((version.replace("+", "-") if munge else version).encode())
    h.update(manifest["spec"].get("serviceAccountName", "").encode())
    fields = manifest["metadata"].get("annotations", {}).get("upgrade.cattle.io/digest", "")
    for entry in filter(None, fields.split(",")):
        value: Any = manifest
        for key in entry.split("."):
            value = value.get(key, "") if isinstance(value, dict) else ""
        h.update(str(value).encode())
    return h.hexdigest()


def node(name: str, kubelet: str, *, cp: bool = False, done: dict[str, str] | None = None):
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
    if cp:
        labels["node-role.kubernetes.io/control-plane"] = "true"
    for p, h in (done or {}).items():
        labels[f"plan.upgrade.cattle.io/{p}"] = h
    return NodeFacts(name=name, labels=labels, architecture="amd64", kubelet_version=kubelet)


def cluster(kubelet: str, done: dict[str, str] | None = None, **per_node: str):
    return tuple(
        node(n, per_node.get(n.replace("-", "_"), kubelet), cp=cp, done=done) for n, cp in fs.NODES
    )


def stored(
    manifest: dict[str, Any], *, resolved: bool = True, applying=(), rv="7", munge: bool = True
) -> PlanState:
    """A Plan as the API would return it after SUC resolved it (or not yet); ``munge`` False:
    a status with the unmunged version (as a stand-in may write)."""
    obj = {**manifest, "metadata": {**manifest["metadata"], "resourceVersion": rv}}
    if resolved:
        version = manifest["spec"]["version"]
        obj["status"] = {
            "latestVersion": version.replace("+", "-") if munge else version,
            "latestHash": suc_latest_hash(manifest, munge=munge),
            "applying": list(applying),
        }
    return PlanState.from_object(obj)


def decide_at(nodes, plans=(), *, fleet=None, now=fs.IN_WINDOW, clock_trusted=True, os_image=None):
    fleet = fleet or fs.fleet()
    facts = cluster_facts(name="store-1", labels={}, nodes=nodes, os_image=os_image)
    planned = plan(fleet, facts, now=now, site=fs.SITE)
    return planned, decide(
        plan=planned,
        snapshot=ClusterSnapshot(nodes=tuple(nodes), plans=tuple(plans)),
        now=now,
        site=fs.SITE,
        clock_trusted=clock_trusted,
    )


def cond(decision, ctype):
    return next(c for c in decision.conditions if c.type == ctype)


def k3s_manifests(planned):
    return [m for m in planned.manifests if m["metadata"]["name"] in (SERVER_PLAN, AGENT_PLAN)]


def done_labels(manifests) -> dict[str, str]:
    return {m["metadata"]["name"]: suc_latest_hash(m) for m in manifests}


# ------------------------------------------------------------------------------ first steps


def test_first_pass_creates_the_first_minor_server_plan_only_and_the_os_waits_for_k3s():
    planned, d = decide_at(cluster(fs.START))
    assert planned.k3s.path == fs.PATH
    # the agent Plan follows once the control plane is done (test_control_plane_first_*)
    assert [(a.verb, a.name) for a in d.actions] == [("create", SERVER_PLAN)]
    assert {a.manifest["spec"]["version"] for a in d.actions} == {fs.PATH[0]}
    os_status = next(s for s in d.components if s.component == "os")
    assert (os_status.state, os_status.reason) == ("waiting", "WaitingForOrder")
    assert cond(d, "Applying").status == "True" and cond(d, "Applying").reason == "StepStarted"
    assert cond(d, "WindowClosed").status == "False"


def test_os_first_when_rollout_order_says_so():
    _, d = decide_at(cluster(fs.START), fleet=fs.fleet(order="[os, k3s]"))
    assert [(a.verb, a.name) for a in d.actions] == [("create", OS_SERVER_PLAN)]
    k3s = next(s for s in d.components if s.component == "k3s")
    assert k3s.reason == "WaitingForOrder" and "os" in k3s.message


def test_a_running_step_is_not_replaced_and_reports_progress():
    planned, first = decide_at(cluster(fs.START))
    plans = [stored(a.manifest) for a in first.actions]  # as written: server-0 admitted
    server_done = {SERVER_PLAN: suc_latest_hash(k3s_manifests(planned)[0])}
    nodes = [
        node("server-0", fs.PATH[0], cp=True, done=server_done),
        node("agent-0", fs.START),
        node("agent-1", fs.START),
    ]
    _, d = decide_at(nodes, plans)
    # the same step: the agent Plan follows the done control plane, its first batch admitted
    assert [(a.verb, a.name) for a in d.actions] == [("create", AGENT_PLAN)]
    spec = d.actions[0].manifest["spec"]
    assert spec["version"] == fs.PATH[0]
    assert spec["nodeSelector"]["matchExpressions"][-1] == {
        "key": "kubernetes.io/hostname",
        "operator": "In",
        "values": ["agent-0", "agent-1"],
    }
    applying = cond(d, "Applying")
    assert (applying.status, applying.reason) == ("True", "StepStarted")
    # the next pass, the agent Plan written with its batch in flight: progress, nothing written
    plans.append(stored(d.actions[0].manifest, applying=["agent-0", "agent-1"]))
    _, d = decide_at(nodes, plans)
    assert d.actions == ()
    applying = cond(d, "Applying")
    assert (applying.status, applying.reason) == ("True", "StepRunning")
    assert "gitedge-k3s-agent 0/2 nodes done" in applying.message
    assert "gitedge-k3s-server 1/1 nodes done" in applying.message


# --------------------------------------------------------------------------- done or not


def test_stale_status_does_not_read_as_done():
    planned, _ = decide_at(cluster(fs.START))
    server = k3s_manifests(planned)[0]
    # SUC has not seen the new spec yet: its status still names the previous version
    obj = {**server, "status": {"latestVersion": fs.START, "latestHash": "old"}}
    old_done = [node(n, fs.START, cp=cp, done={SERVER_PLAN: "old"}) for n, cp in fs.NODES]
    p = plan_progress(PlanState.from_object(obj), old_done)
    assert not p.resolved and not p.complete
    # the current version, but the hash is an earlier spec's (a new image under one tag)
    munged = fs.PATH[0].replace("+", "-")
    obj = {**server, "status": {"latestVersion": munged, "latestHash": "old"}}
    assert not plan_progress(PlanState.from_object(obj), old_done).complete
    # resolved, every selected node labelled with the current hash: done
    h = suc_latest_hash(server)
    fresh = [node(n, fs.START, cp=cp, done={SERVER_PLAN: h}) for n, cp in fs.NODES]
    assert plan_progress(stored(server), fresh).complete


def test_done_as_suc_writes_it_munged_or_not_and_disabled_nodes():
    """SUC's status for a K3s Plan names v1.28.15-k3s1 for spec.version v1.28.15+k3s1
    (handle_upgrade.go MungeVersion) and hashes that; the step is done when SUC's nodes carry
    that hash. An unmunged status with its own hash reads as done too; a node labelled
    ``disabled`` is never selected by SUC (SelectConcurrentNodes), so it is not waited for."""
    planned, _ = decide_at(cluster(fs.START))
    server = k3s_manifests(planned)[0]
    assert "+" in server["spec"]["version"]
    for munge in (True, False):
        h = suc_latest_hash(server, munge=munge)
        done = [node(n, fs.START, cp=cp, done={SERVER_PLAN: h}) for n, cp in fs.NODES]
        p = plan_progress(stored(server, munge=munge), done)
        assert p.resolved and p.complete, (munge, p)
        # the other form's hash on the nodes is an earlier spec's, not this one
        other = suc_latest_hash(server, munge=not munge)
        old = [node(n, fs.START, cp=cp, done={SERVER_PLAN: other}) for n, cp in fs.NODES]
        assert not plan_progress(stored(server, munge=munge), old).complete
    disabled = [node(n, fs.START, cp=cp, done={SERVER_PLAN: "disabled"}) for n, cp in fs.NODES]
    assert plan_progress(stored(server), disabled).complete


def test_nodes_without_hostname_are_not_selected_and_a_plan_selecting_none_is_done():
    planned, _ = decide_at(cluster(fs.START))
    server = stored(k3s_manifests(planned)[0])
    headless = NodeFacts(
        name="odd", labels={"node-role.kubernetes.io/control-plane": "true"}, kubelet_version="x"
    )
    p = plan_progress(server, [headless, node("agent-0", fs.START)])
    assert (p.selected, p.complete) == (0, True)


def test_next_minor_waits_for_kubelets_then_advances():
    planned, _ = decide_at(cluster(fs.START))
    manifests = k3s_manifests(planned)
    plans = [stored(m) for m in manifests]
    labels = done_labels(manifests)
    # every node done, but agent-1's kubelet still reports the old version
    nodes = cluster(fs.PATH[0], done=labels, agent_1=fs.START)
    _, d = decide_at(nodes, plans)
    assert d.actions == ()
    assert cond(d, "Applying").reason == "WaitingForNodes"
    assert "agent-1" in cond(d, "Applying").message
    # the kubelet reports it: the same Plans move to the next minor, on the version read
    _, d = decide_at(cluster(fs.PATH[0], done=labels), plans)
    assert [(a.verb, a.name) for a in d.actions] == [("update", SERVER_PLAN)]
    for a, m in zip(d.actions, manifests, strict=False):
        assert a.reason == f"advance to k3s step {fs.PATH[1]}"
        assert a.resource_version == "7" and a.manifest["metadata"]["resourceVersion"] == "7"
        assert a.manifest["spec"]["version"] == fs.PATH[1]
        assert m["metadata"]["name"] == a.name


def test_three_minor_path_one_step_per_pass():
    """Simulate SUC between passes: each pass moves at most one minor, in order (a step's
    control-plane Plan in one pass, its worker Plan in a later one)."""
    nodes = list(cluster(fs.START))
    plans: dict[str, PlanState] = {}
    steps: list[str] = []
    for _ in range(10):
        _, d = decide_at(nodes, plans.values())
        versions = {a.manifest["spec"]["version"] for a in d.actions if a.manifest}
        assert len(versions) <= 1
        if not d.actions:
            break
        for a in d.actions:
            plans[a.name] = stored(a.manifest)  # SUC resolves it
        version = versions.pop()
        if not steps or steps[-1] != version:
            steps.append(version)
        # SUC runs every job: done labels, kubelets at the step (k3s) or the OS image
        labels = done_labels(
            [
                {
                    "metadata": {"name": p.name, "annotations": dict(p.annotations)},
                    "spec": dict(p.spec),
                }
                for p in plans.values()
            ]
        )
        k3s_version = plans[SERVER_PLAN].spec["version"]
        nodes = list(cluster(str(k3s_version), done=labels))
    assert steps == [*fs.PATH, "1.4.2"]
    assert cond(d, "Applying").reason == "UpToDate"
    assert summarize(d.conditions).status == "True"


# ---------------------------------------------------------------------------------- windows


def test_outside_the_window_nothing_starts_and_retry_after_points_at_the_opening():
    _, d = decide_at(cluster(fs.START), now=fs.OUT_OF_WINDOW)
    assert d.actions == ()
    held = cond(d, "WindowClosed")
    assert (held.status, held.reason) == ("True", "OutsideWindow")
    assert "nights" in held.message
    assert d.retry_after == (fs.NEXT_OPEN - fs.OUT_OF_WINDOW).total_seconds()
    assert cond(d, "Applying").reason == "WaitingForWindow"


def test_a_step_running_when_the_window_closes_is_left_to_finish_and_the_next_waits():
    planned, _ = decide_at(cluster(fs.START))
    manifests = k3s_manifests(planned)
    plans = [stored(m, applying=["agent-0"]) for m in manifests]
    _, d = decide_at(cluster(fs.START), plans, now=fs.OUT_OF_WINDOW)
    assert d.actions == ()
    assert cond(d, "Applying").reason == "StepRunning"  # SUC finishes what it started
    # finished after the window closed: the next minor waits for the next window
    finished = [stored(m) for m in manifests]
    nodes = cluster(fs.PATH[0], done=done_labels(manifests))
    _, d = decide_at(nodes, finished, now=fs.OUT_OF_WINDOW)
    assert d.actions == ()
    assert cond(d, "WindowClosed").status == "True"
    _, d = decide_at(nodes, finished, now=fs.NEXT_OPEN + timedelta(minutes=1))
    assert {a.manifest["spec"]["version"] for a in d.actions} == {fs.PATH[1]}


def test_no_correction_of_a_running_step_outside_the_window_but_inside_it_yes():
    # a step on v1.28.14 runs; the fleet now wants v1.28.15 for that minor: a fix in place
    planned, _ = decide_at(cluster(fs.START))
    old = []
    for m in k3s_manifests(planned):
        m = {**m, "spec": {**m["spec"], "version": "v1.28.14+k3s1"}}
        m["metadata"] = {**m["metadata"], "annotations": {"gitedge.io/step": "v1.28.14+k3s1"}}
        old.append(stored(m))
    _, d = decide_at(cluster(fs.START), old, now=fs.OUT_OF_WINDOW)
    assert d.actions == ()
    _, d = decide_at(cluster(fs.START), old)
    assert [(a.verb, a.name) for a in d.actions] == [("update", SERVER_PLAN)]
    assert all(a.reason == f"update k3s step {fs.PATH[0]}" for a in d.actions)


def test_untrusted_clock_holds_everything():
    _, d = decide_at(cluster(fs.START), fleet=fs.fleet(window=None), clock_trusted=False)
    assert d.actions == ()
    assert cond(d, "WindowClosed").reason == "ClockUntrusted"
    assert d.retry_after is None


# ------------------------------------------------------------------------ ownership, deletes


def test_untargeted_component_plans_are_deleted_but_not_while_a_job_runs():
    planned, _ = decide_at(cluster(fs.START), fleet=fs.fleet(order="[os, k3s]"))
    os_manifest = next(m for m in planned.manifests if m["metadata"]["name"] == OS_AGENT_PLAN)
    no_os = fs.fleet(os=None)
    _, d = decide_at(cluster(fs.START), [stored(os_manifest, applying=["agent-0"])], fleet=no_os)
    assert all(a.name != OS_AGENT_PLAN for a in d.actions)
    assert "removed once SUC's jobs finish" in cond(d, "Applying").message
    _, d = decide_at(cluster(fs.START), [stored(os_manifest, rv="42")], fleet=no_os)
    deletes = [a for a in d.actions if a.verb == "delete"]
    assert [(a.name, a.resource_version) for a in deletes] == [(OS_AGENT_PLAN, "42")]


def test_only_gitedge_labelled_plans_are_ever_touched():
    planned, _ = decide_at(cluster(fs.START))
    foreign = dict(k3s_manifests(planned)[0])
    foreign["metadata"] = {
        "name": "gitedge-k3s-server",
        "namespace": "system-upgrade",
        "labels": {},
    }
    stray = {
        "metadata": {
            "name": "old-gitedge-plan",
            "labels": {"app.kubernetes.io/managed-by": "gitedge"},
        },
        "spec": {"version": "x"},
    }
    others = {"metadata": {"name": "k3s-server", "labels": {"app": "ops"}}, "spec": {}}
    plans = [PlanState.from_object(o) for o in (foreign, stray, others)]
    _, d = decide_at(cluster(fs.START), plans)
    touched = {a.name for a in d.actions}
    assert "k3s-server" not in touched
    assert ("delete", "old-gitedge-plan") in {(a.verb, a.name) for a in d.actions}
    # the unlabelled Plan named like ours is not ours: the agent would create its own (and the
    # API refuses with AlreadyExists, which the apply step reports), never update it
    assert ("create", SERVER_PLAN) in {(a.verb, a.name) for a in d.actions}


def test_update_keeps_labels_and_annotations_others_added():
    desired = {
        "metadata": {"name": "p", "labels": {"a": "1"}, "annotations": {"gitedge.io/step": "2"}},
        "spec": {"version": "2"},
    }
    live = {
        "metadata": {
            "labels": {"a": "0", "team": "ops"},
            "annotations": {"note": "x", "gitedge.io/step": "1"},
            "resourceVersion": "9",
        }
    }
    out = merge_for_update(desired, live)
    assert out["metadata"]["labels"] == {"a": "1", "team": "ops"}
    assert out["metadata"]["annotations"] == {"note": "x", "gitedge.io/step": "2"}
    assert out["metadata"]["resourceVersion"] == "9"
    assert desired["metadata"]["labels"] == {"a": "1"}  # not mutated


def test_fields_the_api_adds_are_not_differences():
    _, first = decide_at(cluster(fs.START))
    manifests = [a.manifest for a in first.actions]  # as written, with their admission
    plans = []
    for m in manifests:
        m = {**m, "spec": {**m["spec"], "exclusive": False}}  # defaulted by someone
        plans.append(stored(m))
    _, d = decide_at(cluster(fs.START), plans)
    assert d.actions == ()


# ------------------------------------------------------------------------------- facts


def test_cluster_facts_come_from_the_nodes():
    nodes = [
        NodeFacts("a", {}, "arm64", "v1.29.3+k3s1"),
        NodeFacts("b", {}, "amd64", "v1.28.9+k3s2"),
    ]
    assert actual_k3s_version(nodes).text == "v1.28.9+k3s2"
    facts = cluster_facts(name="c", labels={"env": "prod"}, nodes=nodes)
    assert facts.k3s_version == "v1.28.9+k3s2"
    assert facts.labels == {
        "env": "prod",
        "gitedge.io/arch": "amd64-arm64",
        "gitedge.io/k3s-minor": "v1.28",
    }
    with pytest.raises(VersionError, match="node 'x'"):
        actual_k3s_version([NodeFacts("x", {}, "amd64", "v1.29-weird")])
    assert actual_k3s_version([]) is None


# --------------------------------------------------------------------------- conditions


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_merge_moves_transition_time_only_on_status_change():
    first = merge([], [Condition("Mirrored", "True", "AllMirrored", "3 images")], now=T0)
    later = T0 + timedelta(hours=1)
    same = merge(first, [Condition("Mirrored", "True", "AllMirrored", "4 images")], now=later)
    assert same[0].last_transition_time == T0 and same[0].message == "4 images"
    flipped = merge(same, [Condition("Mirrored", "False", "DigestMismatch", "x")], now=later)
    assert flipped[0].last_transition_time == later


def test_ready_names_the_first_thing_wrong():
    ok = [
        Condition("SourceVerified", "True", "Verified"),
        Condition("Mirrored", "True", "AllMirrored"),
        Condition("Applying", "False", "UpToDate", "all good"),
    ]
    assert summarize(ok) == Condition("Ready", "True", "UpToDate", "all good")
    bad = [*ok, Condition("RollbackRefused", "True", "RollbackRefused", "older commit")]
    bad.append(Condition("Mirrored", "False", "DigestMismatch", "bad blob"))
    assert summarize(bad).reason == "RollbackRefused"
    assert summarize([Condition("Applying", "False", "Forbidden", "rbac")]).reason == "Forbidden"
    assert summarize([]).status == "Unknown"


def test_conditions_round_trip_and_garbage_is_dropped():
    cs = merge([], [Condition("Applying", "True", "StepStarted", "k3s")], now=T0)
    assert from_json(to_json(cs)) == cs
    assert from_json([{"type": 1}, "x", {"type": "A", "status": "Maybe"}, None]) == []
    assert from_json("nope") == []
