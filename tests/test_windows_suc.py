"""What SUC's window gate does with the windows gitedge writes (core/rollout/sucwindow.py) and the
admission rules (core/rollout/admission.py, core/rollout/decision.py), checked with the port of kured's
``Contains`` in tests/kuredwindow.py (the check SUC's handle_upgrade.go runs).

Each test here failed on main before issue 14 (#4): the SUC window was the fleet window copied
(a wrap on Fridays opened on Friday 00:00-02:00 and not on Saturday; 05:00:00 was still open),
and every Plan selected every node, so SUC ran the rollout past the window's end.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from gitedge.core.fleet.windows import is_open
from gitedge.core.fleet.windowspec import MaintenanceWindowSpec
from gitedge.core.rollout import admission as adm
from gitedge.core.rollout.clusterstate import ClusterSnapshot, NodeFacts, PlanState, cluster_facts
from gitedge.core.rollout.decision import decide
from gitedge.core.rollout.planning import plan
from gitedge.core.rollout.sucplans import AGENT_PLAN, SERVER_PLAN, suc_window
from gitedge.core.rollout.sucwindow import JOB_TTL, admission_window
from tests import fleetstory as fs
from tests.kubeapi import KubeEmulator
from tests.kuredwindow import suc_window_contains
from tests.sucsim import SucSim, resolved_hash

BERLIN_FRIDAY_NIGHT = MaintenanceWindowSpec.model_validate(
    {"days": ["fri"], "start": "22:00", "end": "02:00", "timeZone": "Europe/Berlin"}
)
NIGHTS = MaintenanceWindowSpec.model_validate(
    {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "01:00", "end": "05:00"}
)
BUDGET = timedelta(minutes=31)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# ------------------------------------------------------------------ the window SUC sees


def test_a_wrap_on_fridays_never_opens_in_suc_on_friday_morning_nor_on_saturday_night():
    static = suc_window(BERLIN_FRIDAY_NIGHT)  # what `gitedge plan` prints, agent-less
    assert static is not None
    for instant in ("2026-12-04T01:00:00+01:00", "2026-12-05T22:30:00+01:00"):
        assert not is_open(BERLIN_FRIDAY_NIGHT, at(instant))
        assert not suc_window_contains(static, at(instant)), instant
    assert suc_window_contains(static, at("2026-12-04T23:30:00+01:00"))
    # the agent writes the occurrence it admits in: before midnight Friday, after it Saturday
    before = admission_window(
        BERLIN_FRIDAY_NIGHT, now=at("2026-12-04T23:30:00+01:00"), budget=BUDGET
    )
    after = admission_window(
        BERLIN_FRIDAY_NIGHT, now=at("2026-12-05T00:30:00+01:00"), budget=BUDGET
    )
    assert before is not None and before.window["days"] == ["fri"] and before.exact
    assert after is not None and after.window["days"] == ["sat"] and after.exact
    assert after.window["endTime"] == "01:28:59"  # 02:00 minus the 31-minute budget
    assert not suc_window_contains(after.window, at("2026-12-05T01:30:00+01:00"))
    assert not suc_window_contains(after.window, at("2026-12-06T00:30:00+01:00"))  # a Sunday


def test_suc_never_opens_at_the_instant_gitedge_closes():
    static = suc_window(NIGHTS)
    assert static is not None and static["endTime"] == "04:59:59"
    assert suc_window_contains(static, at("2026-11-23T04:59:59.999000+00:00"))
    assert not is_open(NIGHTS, at("2026-11-23T05:00:00+00:00"))
    assert not suc_window_contains(static, at("2026-11-23T05:00:00+00:00"))


def test_no_batch_is_admitted_when_its_job_could_not_end_before_the_window_closes():
    assert admission_window(NIGHTS, now=at("2026-11-23T04:28:00+00:00"), budget=BUDGET)
    assert admission_window(NIGHTS, now=at("2026-11-23T04:30:00+00:00"), budget=BUDGET) is None
    assert admission_window(NIGHTS, now=at("2026-11-23T12:00:00+00:00"), budget=BUDGET) is None


def test_a_blackout_or_a_monthly_cron_ahead_makes_the_window_inexact_not_unsafe_today():
    monthly = MaintenanceWindowSpec.model_validate({"cron": "0 1 1 * *", "duration": "3h"})
    got = admission_window(monthly, now=at("2027-01-01T01:10:00+00:00"), budget=BUDGET)
    assert got is not None and not got.exact  # the same Friday next week is no window
    blackout = NIGHTS.model_copy(update={"blackouts": (fs_blackout("2026-12-20", "2027-01-03"),)})
    got = admission_window(blackout, now=at("2026-12-05T02:00:00+00:00"), budget=BUDGET)
    assert got is not None and not got.exact
    got = admission_window(blackout, now=at("2027-01-09T02:00:00+00:00"), budget=BUDGET)
    assert got is not None and got.exact
    assert admission_window(blackout, now=at("2026-12-24T02:00:00+00:00"), budget=BUDGET) is None


def fs_blackout(a: str, b: str) -> Any:
    from gitedge.core.fleet.windowspec import Blackout

    return Blackout.model_validate({"from": a, "to": b})


# ------------------------------------------------------------------------ admission


def node(name: str, kubelet: str, *, cp: bool = False, done: dict[str, str] | None = None):
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
    if cp:
        labels["node-role.kubernetes.io/control-plane"] = "true"
    for p, h in (done or {}).items():
        labels[f"plan.upgrade.cattle.io/{p}"] = h
    return NodeFacts(name=name, labels=labels, architecture="amd64", kubelet_version=kubelet)


def stored(manifest: dict[str, Any], *, applying=(), conditions=()) -> PlanState:
    obj = {**manifest, "metadata": {**manifest["metadata"], "resourceVersion": "7"}}
    obj["status"] = {
        "latestVersion": manifest["spec"]["version"].replace("+", "-"),
        "latestHash": resolved_hash(manifest),
        "applying": list(applying),
        "conditions": list(conditions),
    }
    return PlanState.from_object(obj)


def decide_at(nodes, plans=(), *, now=fs.IN_WINDOW):
    facts = cluster_facts(name="store-1", labels={}, nodes=nodes)
    planned = plan(fs.fleet(), facts, now=now, site=fs.SITE)
    return decide(
        plan=planned,
        snapshot=ClusterSnapshot(nodes=tuple(nodes), plans=tuple(plans)),
        now=now,
        site=fs.SITE,
    )


START_NODES = tuple(node(n, fs.START, cp=cp) for n, cp in fs.NODES)


def first_plans() -> dict[str, dict[str, Any]]:
    d = decide_at(START_NODES)
    return {a.name: dict(a.manifest) for a in d.actions if a.manifest is not None}


def test_the_first_pass_admits_one_server_and_no_agent_with_a_window_that_ends_in_time():
    plans = first_plans()
    assert AGENT_PLAN not in plans  # written once the control plane is done
    server = plans[SERVER_PLAN]["spec"]
    assert adm.admitted(server) == ("server-0",)
    nobody = adm.with_admission(plans[SERVER_PLAN], nodes=[], window=None, at=None, withdrawn={})
    assert nobody["spec"]["nodeSelector"]["matchExpressions"][-1] == {
        "key": "kubernetes.io/hostname",
        "operator": "DoesNotExist",
    }
    budget = adm.budget(server)
    window = server["window"]
    assert suc_window_contains(window, fs.IN_WINDOW)
    last = fs.IN_WINDOW.replace(hour=5) - budget
    assert not suc_window_contains(window, last)  # kured's end is before the last safe start
    assert suc_window_contains(window, last - timedelta(seconds=1))


def test_a_failed_job_is_withdrawn_and_not_readmitted_before_suc_deletes_it():
    plans = first_plans()
    server = plans[SERVER_PLAN]
    failed = {
        "type": "Complete",
        "status": "False",
        "reason": "JobFailed",
        "message": "Job system-upgrade/apply-x failed on Node server-0: BackoffLimitExceeded: x",
        "lastUpdateTime": "2026-11-23T02:05:00Z",
    }
    have = [stored(server, applying=["server-0"], conditions=[failed])]
    later = fs.IN_WINDOW + timedelta(minutes=6)
    d = decide_at(START_NODES, have, now=later)
    assert [(a.verb, a.name) for a in d.actions] == [("update", SERVER_PLAN)]
    written = d.actions[0].manifest
    assert written is not None
    assert adm.admitted(written["spec"]) == ()
    assert "server-0" in written["metadata"]["annotations"][adm.WITHDRAWN]
    assert "withdraws server-0" in d.actions[0].reason
    # SUC has taken it out of applying; within the Job TTL the node is not admitted again
    again = [stored(written)]
    assert decide_at(START_NODES, again, now=later + timedelta(minutes=5)).actions == ()
    after_ttl = decide_at(START_NODES, again, now=later + JOB_TTL)
    assert [a.name for a in after_ttl.actions] == [SERVER_PLAN]
    assert adm.admitted(after_ttl.actions[0].manifest["spec"]) == ("server-0",)


def test_a_node_not_done_when_its_budget_is_over_is_withdrawn_and_a_running_one_is_not():
    plans = first_plans()
    server = plans[SERVER_PLAN]
    have = [stored(server, applying=["server-0"])]
    budget = adm.budget(server["spec"])
    running = decide_at(START_NODES, have, now=fs.IN_WINDOW + budget - timedelta(minutes=1))
    assert running.actions == ()
    assert running.retry_after is not None and running.retry_after <= 60
    late = decide_at(START_NODES, have, now=fs.IN_WINDOW + budget)
    assert [a.name for a in late.actions] == [SERVER_PLAN]
    assert adm.admitted(late.actions[0].manifest["spec"]) == ()


def test_agents_are_admitted_only_once_the_server_plan_is_done_and_a_batch_at_a_time():
    plans = first_plans()
    done = {SERVER_PLAN: resolved_hash(plans[SERVER_PLAN])}
    nodes = [
        node("server-0", fs.PATH[0], cp=True, done=done),
        node("agent-0", fs.START),
        node("agent-1", fs.START),
    ]
    have = [stored(plans[SERVER_PLAN])]
    d = decide_at(nodes, have, now=fs.IN_WINDOW + timedelta(minutes=20))
    assert [(a.verb, a.name) for a in d.actions] == [("create", AGENT_PLAN)]
    agent = d.actions[0].manifest
    assert agent is not None and adm.admitted(agent["spec"]) == ("agent-0", "agent-1")
    # in flight: nothing more is written until the batch is done
    flying = [stored(plans[SERVER_PLAN]), stored(agent, applying=["agent-0", "agent-1"])]
    assert decide_at(nodes, flying, now=fs.IN_WINDOW + timedelta(minutes=25)).actions == ()


def test_outside_the_window_nothing_is_admitted_even_with_nodes_left():
    plans = first_plans()
    done = {SERVER_PLAN: resolved_hash(plans[SERVER_PLAN])}
    nodes = [
        node("server-0", fs.PATH[0], cp=True, done=done),
        node("agent-0", fs.START),
        node("agent-1", fs.START),
    ]
    have = [stored(plans[SERVER_PLAN])]
    d = decide_at(nodes, have, now=fs.OUT_OF_WINDOW)
    assert d.actions == ()
    window = next(c for c in d.conditions if c.type == "WindowClosed")
    assert window.status == "True"
    assert d.retry_after == (fs.NEXT_OPEN - fs.OUT_OF_WINDOW).total_seconds()


def test_a_batch_holds_at_most_one_control_plane_node_whatever_the_concurrency():
    servers = {"server-1", "server-2", "server-3"}
    todo = ["agent-1", "server-1", "server-2", "server-3"]
    assert adm.batch({"concurrency": 3}, todo, control_plane=servers) == ["agent-1", "server-1"]
    assert adm.batch({"concurrency": 3}, todo[1:], control_plane=servers) == ["server-1"]
    assert adm.batch({"concurrency": 2}, todo) == ["agent-1", "server-1"]


# ------------------------------------------------- the agent stops; SUC alone for 60 days


def _write_first_pass(api: KubeEmulator, now: datetime) -> None:
    """One decide() at ``now`` over the emulator's nodes, its Plans stored as written."""
    nodes = [NodeFacts.from_object(n) for n in api.items("nodes")]
    for a in decide_at(nodes, now=now).actions:
        assert a.verb == "create" and a.manifest is not None
        api.put(a.manifest)


def _cluster(api: KubeEmulator) -> None:
    api.add_node("server-0", kubelet=fs.START, control_plane=True)
    api.add_node("agent-0", kubelet=fs.START)
    api.add_node("agent-1", kubelet=fs.START)


def test_the_agent_stops_after_its_pass_and_suc_alone_for_60_days_starts_only_that_batch():
    with KubeEmulator() as api:
        _cluster(api)
        _write_first_pass(api, fs.IN_WINDOW)  # the agent's last pass; it never comes back
        sim = SucSim(api, now=fs.IN_WINDOW, namespace="system-upgrade", job_minutes=10)
        sim.advance_to(fs.IN_WINDOW + timedelta(days=60))
        work = sim.starts() + sim.disruptions()
        assert {(e.plan, e.node) for e in work} == {(SERVER_PLAN, "server-0")}
        for e in work:
            assert is_open(NIGHTS, e.at), e
        upgrade = sim.upgrades()
        assert len(upgrade) == 1 and upgrade[0][3] is not None
        assert is_open(NIGHTS, upgrade[0][3])  # it ended inside the window too


def test_suc_down_when_the_agent_admitted_starts_the_batch_at_a_later_occurrence_inside():
    """The window written is exact (weekly): SUC coming back days later, outside the window,
    waits for the same weekday's opening and starts the admitted node there, in time."""
    with KubeEmulator() as api:
        _cluster(api)
        _write_first_pass(api, fs.IN_WINDOW)
        back = fs.IN_WINDOW + timedelta(days=3, hours=10)  # Thursday 12:00: closed
        sim = SucSim(api, now=back, namespace="system-upgrade", job_minutes=10)
        sim.advance_to(fs.IN_WINDOW + timedelta(days=8))
        work = sim.starts() + sim.disruptions()
        assert work and {e.node for e in work} == {"server-0"}
        first = min(e.at for e in work)
        assert first == fs.IN_WINDOW + timedelta(weeks=1)  # next Monday, 02:00
        for e in work:
            assert is_open(NIGHTS, e.at), e


def test_residual_a_job_failing_while_the_agent_is_down_waits_until_suc_restarts():
    """The residual risk docs/architecture.md names. With the agent gone and the admitted
    node's Job failing, SUC deletes the failed Job after its TTL and does not create it again
    by itself (wrangler applies a Plan's Jobs once per resourceVersion; tests/sucsim.py): the
    node waits. But a SUC restart (or any change to the Plan) applies the Plan again, and with
    ``applying`` still naming the node the gate is skipped: the Job starts again at that hour,
    window closed or not. What admission bounds is *where*: the admitted node only."""
    with KubeEmulator() as api:
        _cluster(api)
        _write_first_pass(api, fs.IN_WINDOW)
        sim = SucSim(
            api, now=fs.IN_WINDOW, namespace="system-upgrade", job_minutes=10,
            fail=lambda plan, node, attempt: True,
        )  # fmt: skip
        sim.advance_to(fs.IN_WINDOW + timedelta(days=2))
        work = sim.starts() + sim.disruptions()
        assert {e.node for e in work} == {"server-0"}
        assert all(is_open(NIGHTS, e.at) for e in work)  # no retry on its own, at any hour
        closed = fs.IN_WINDOW + timedelta(days=2, hours=10)  # Wednesday 12:00 UTC
        assert not is_open(NIGHTS, closed)
        sim.advance_to(closed)
        sim.restart_controller()
        sim.advance(minutes=30)
        late = [e for e in sim.starts() + sim.disruptions() if e.at >= closed]
        assert late and {e.node for e in late} == {"server-0"}  # the named residual, not hidden
        assert any(not is_open(NIGHTS, e.at) for e in late)


def test_a_plan_is_not_corrected_under_a_running_job_but_between_batches():
    """handle_batch.go deletes a running Job whose Plan's version changed, and with
    ``applying`` still naming the node SUC starts the new version's Job at once, gate skipped:
    the fleet's in-place fix (v1.28.14 -> v1.28.15) waits for the running batch, then admits
    afresh under a new window."""
    plans = first_plans()
    old = dict(plans[SERVER_PLAN])
    old["spec"] = {**old["spec"], "version": "v1.28.14+k3s1"}
    old["metadata"] = {
        **old["metadata"],
        "annotations": {**old["metadata"]["annotations"], "gitedge.io/step": "v1.28.14+k3s1"},
    }
    running = decide_at(START_NODES, [stored(old, applying=["server-0"])])
    assert running.actions == ()
    assert "changed once SUC's running Jobs end" in cond_message(running)
    later = fs.IN_WINDOW + timedelta(minutes=30)
    between = decide_at(START_NODES, [stored(old)], now=later)
    assert [(a.verb, a.name) for a in between.actions] == [("update", SERVER_PLAN)]
    fixed = between.actions[0].manifest
    assert fixed is not None and fixed["spec"]["version"] == fs.PATH[0]
    assert fixed["metadata"]["annotations"][adm.ADMITTED_AT] == "2026-11-23T02:30:00Z"
    assert fixed["spec"]["window"]["startTime"] == "02:30:00"


def cond_message(d: Any) -> str:
    return next(c.message for c in d.conditions if c.type == "Applying")


def test_a_window_open_but_too_short_for_a_job_is_looked_at_again_soon_not_next_opening():
    late = fs.IN_WINDOW.replace(hour=4, minute=50)  # "nights" closes at 05:00
    d = decide_at(START_NODES, now=late)
    assert d.actions == ()
    assert "closes before a Job started now would end" in cond_message(d)
    assert d.retry_after is not None and d.retry_after <= 300
