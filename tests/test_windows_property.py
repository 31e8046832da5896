"""Property: SUC's gating of the window gitedge writes stays inside the fleet window.

Over generated fleet windows (days/start/end with wraps past midnight and ``24:00`` ends,
weekly, daily and monthly cron + duration, blackouts, zones with DST in both hemispheres and a
30-minute one), an instant at which the agent admits a batch, and a Job deadline, the SUC
``window`` :func:`~gitedge.core.rollout.sucwindow.admission_window` returns is read with the port of
kured's ``Contains`` (tests/kuredwindow.py, what SUC's generating handler calls when
``status.applying`` is empty):

1. the model (SUC acts within a minute; the agent stops right after writing): every instant of
   the minute after admission is open in SUC, and a Job started at any of them ends, its whole
   deadline, inside the fleet window. The batch is all SUC may start with that Plan: nodes not
   admitted are not selected, and the ``applying`` exception only continues the admitted batch.
2. SUC late (down, restarted any time in the following 60 days, with the agent down too): when
   the window is reported ``exact``, every instant in those 60 days at which SUC would open it is
   one where a Job started then ends inside the fleet window. Weekly windows (days/start/end,
   weekly or daily cron) in UTC without blackouts are always exact (SUC can express them).

Breakpoints of both sides are whole minutes (kured's end is written HH:MM:59, inclusive to the
last nanosecond, so SUC closes at the next whole minute; zone transitions and fleet windows are
whole minutes), so checking each minute checks every instant.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gitedge.core.fleet.model import Fleet, load_fleet
from gitedge.core.fleet.windows import window_state
from gitedge.core.fleet.windowspec import MaintenanceWindowSpec
from gitedge.core.rollout import admission as adm
from gitedge.core.rollout.clusterstate import ClusterSnapshot, NodeFacts, PlanState, cluster_facts
from gitedge.core.rollout.decision import decide
from gitedge.core.rollout.planning import plan
from gitedge.core.rollout.sucplans import Site
from gitedge.core.rollout.sucwindow import SAFE_FOR, SUC_LATENCY, admission_window
from gitedge.core.timefmt import iso_z
from tests.kuredwindow import TimeWindow
from tests.sucsim import resolved_hash

ZONES = (
    "UTC",
    "Europe/Berlin",
    "Europe/London",
    "America/New_York",
    "America/Santiago",
    "Australia/Sydney",
    "Australia/Lord_Howe",  # DST of 30 minutes
)
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
EPOCH = datetime(2026, 9, 1, tzinfo=UTC)
# instants near DST changes: Europe, US, southern hemisphere (2026-27)
DST_DAYS = (
    datetime(2026, 10, 4, tzinfo=UTC),
    datetime(2026, 10, 25, tzinfo=UTC),
    datetime(2026, 11, 1, tzinfo=UTC),
    datetime(2027, 3, 14, tzinfo=UTC),
    datetime(2027, 3, 28, tzinfo=UTC),
    datetime(2027, 4, 4, tzinfo=UTC),
)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@st.composite
def window_docs(draw: st.DrawFn) -> dict[str, object]:
    zone = draw(st.sampled_from(ZONES))
    doc: dict[str, object] = {"timeZone": zone}
    shape = draw(st.sampled_from(("days", "days", "weekly-cron", "daily-cron", "monthly-cron")))
    if shape == "days":
        doc["days"] = draw(st.lists(st.sampled_from(DAYS), min_size=1, max_size=7, unique=True))
        start = draw(st.integers(0, 24 * 60 - 1))
        end = draw(st.integers(0, 24 * 60).filter(lambda e: e != start))
        doc["start"], doc["end"] = _hhmm(start), "24:00" if end == 24 * 60 else _hhmm(end)
    else:
        minute = draw(st.sampled_from((0, 15, 30, 45)))
        hour = draw(st.integers(0, 23))
        if shape == "weekly-cron":
            dows = draw(st.lists(st.integers(0, 6), min_size=1, max_size=7, unique=True))
            doc["cron"] = f"{minute} {hour} * * {','.join(map(str, sorted(dows)))}"
        elif shape == "daily-cron":
            last = draw(st.integers(hour, 23))
            doc["cron"] = f"{minute} {hour}-{last} * * *"
        else:
            doc["cron"] = f"{minute} {hour} {draw(st.integers(1, 28))} * *"
        doc["duration"] = f"{draw(st.integers(10, 30 * 60))}m"
    blackouts = []
    for _ in range(draw(st.integers(0, 2))):
        first = date(2026, 9, 1) + timedelta(days=draw(st.integers(0, 300)))
        blackouts.append(
            {
                "from": first.isoformat(),
                "to": (first + timedelta(days=draw(st.integers(0, 20)))).isoformat(),
            }
        )
    doc["blackouts"] = blackouts
    return doc


def windows() -> st.SearchStrategy[MaintenanceWindowSpec]:
    return window_docs().map(MaintenanceWindowSpec.model_validate)


@st.composite
def instants(draw: st.DrawFn, spec: MaintenanceWindowSpec) -> datetime:
    """An instant inside an opening (where admission can happen), often near a DST change."""
    base = draw(
        st.one_of(
            st.integers(0, 240 * 24 * 60).map(lambda m: EPOCH + timedelta(minutes=m)),
            st.tuples(st.sampled_from(DST_DAYS), st.integers(-3 * 24 * 60, 24 * 60)).map(
                lambda p: p[0] + timedelta(minutes=p[1])
            ),
        )
    )
    state = window_state(spec, base)
    if state.open:
        return base + timedelta(seconds=draw(st.integers(0, 59)))
    opening = state.next_open or base
    return opening + timedelta(
        minutes=draw(st.integers(0, 6 * 60)), seconds=draw(st.integers(0, 59))
    )


def _job_fits(spec: MaintenanceWindowSpec, start: datetime, deadline: timedelta) -> bool:
    state = window_state(spec, start)
    return state.open and (state.closes_at is None or start + deadline <= state.closes_at)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(data=st.data(), spec=windows(), deadline_min=st.integers(5, 90))
def test_suc_gating_of_what_gitedge_writes_stays_inside_the_fleet_window(
    data: st.DataObject, spec: MaintenanceWindowSpec, deadline_min: int
) -> None:
    now = data.draw(instants(spec))
    deadline = timedelta(minutes=deadline_min)
    got = admission_window(spec, now=now, budget=SUC_LATENCY + deadline)
    event("admitted" if got is not None else "nothing admitted")
    if got is None:
        return  # nothing admitted: the Plan selects no node SUC could start
    w = got.window
    kured = TimeWindow.new(w["days"], w["startTime"], w["endTime"], w["timeZone"])
    # 1. SUC acts within the minute after admission: open all that minute, and each Job fits
    for second in range(0, 60, 5):
        at = now + timedelta(seconds=second)
        assert kured.contains(at), (w, at)
        assert _job_fits(spec, at, deadline), (w, at)
    # 2. SUC acting any time in the next 60 days, the agent down: exact windows stay inside
    zone = ZoneInfo(spec.time_zone)
    weekly = spec.cron is None or spec.cron.split()[2:4] == ["*", "*"]  # days, weekly/daily cron
    simple = spec.time_zone == "UTC" and not spec.blackouts and weekly
    assert got.exact or not simple, (spec, now, w)
    event("exact for 60 days" if got.exact else "this occurrence only")
    if not got.exact:
        return
    day = now.astimezone(zone).date()
    minute = now.replace(second=0, microsecond=0)
    end = now + SAFE_FOR
    while day <= end.astimezone(zone).date():
        local_midnight = datetime.combine(day, datetime.min.time(), tzinfo=zone)
        t = max(minute, local_midnight.astimezone(UTC) - timedelta(hours=3))
        stop = min(end, local_midnight.astimezone(UTC) + timedelta(hours=27))
        while t < stop:
            if kured.contains(t):
                state = window_state(spec, t)
                assert _job_fits(spec, t, deadline), (spec, w, now, t)
                if state.closes_at is None:
                    break
                # every start up to closes_at - deadline fits: look again just after it
                last = (state.closes_at - deadline).replace(second=0, microsecond=0)
                t = max(t, last)
            t += timedelta(minutes=1)
        day += timedelta(weeks=1)


# ------------------------------------------------------------- every Plan decide() writes


def _fleet(window: dict[str, object]) -> Fleet:
    head = "apiVersion: gitedge.io/v1alpha1\n"
    files = {
        "releases.yaml": head + "kind: K3sReleases\nmetadata: {name: catalog}\nspec:\n"
        "  versions: [v1.28.15+k3s1, v1.29.10+k3s1]\n",
        "windows.yaml": head + "kind: MaintenanceWindow\nmetadata: {name: w}\n"
        f"spec: {json.dumps(window)}\n",
        "target.yaml": head + "kind: UpgradeTarget\nmetadata: {name: t}\nspec:\n"
        "  clusterSelector: {}\n  window: w\n  rollout: {concurrency: 2}\n"
        "  k3s: {version: v1.29.10+k3s1}\n",
    }
    return load_fleet({k: v.encode() for k, v in files.items()})


def _node(name: str, *, cp: bool, done: dict[str, str] | None = None) -> NodeFacts:
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
    if cp:
        labels["node-role.kubernetes.io/control-plane"] = "true"
    for plan_name, h in (done or {}).items():
        labels[f"plan.upgrade.cattle.io/{plan_name}"] = h
    return NodeFacts(name, labels, "amd64", "v1.28.15+k3s1" if done else "v1.27.16+k3s1")


def _decide(fleet: Fleet, nodes: list[NodeFacts], plans: list[PlanState], now: datetime) -> Any:
    facts = cluster_facts(name="c", labels={}, nodes=nodes)
    planned = plan(fleet, facts, now=now, site=Site())
    return decide(
        plan=planned, snapshot=ClusterSnapshot(nodes=tuple(nodes), plans=tuple(plans)), now=now,
        site=Site(),
    )  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data(), doc=window_docs(), servers_done=st.booleans())
def test_every_plan_decide_writes_admits_only_jobs_that_end_inside_the_window(
    data: st.DataObject, doc: dict[str, object], servers_done: bool
) -> None:
    """decide() as the agent runs it (a cluster of 3 servers and 3 agents, the first K3s step
    not started, or its server Plan done so the agent Plan is written next): every Plan it writes
    either admits no node, or admits nodes at ``now`` under a SUC window that kured opens for the
    minute after, each Job (its ``jobActiveDeadlineSecs``) ending inside the fleet window."""
    spec = MaintenanceWindowSpec.model_validate(doc)
    fleet = _fleet(doc)
    now = data.draw(instants(spec))
    nodes = [_node(f"server-{i}", cp=True) for i in range(3)]
    nodes += [_node(f"agent-{i}", cp=False) for i in range(3)]
    plans: list[PlanState] = []
    if servers_done:
        first = _decide(fleet, nodes, [], data.draw(instants(spec)))
        if not first.actions:
            return
        server = dict(first.actions[0].manifest)
        h = resolved_hash(server)
        server["status"] = {"latestVersion": server["spec"]["version"].replace("+", "-"),
                            "latestHash": h}  # fmt: skip
        plans = [PlanState.from_object(server)]
        done = {first.actions[0].name: h}
        nodes = [_node(n.name, cp=n.control_plane, done=done if n.control_plane else None)
                 for n in nodes]  # fmt: skip
    d = _decide(fleet, nodes, plans, now)
    for a in d.actions:
        assert a.manifest is not None
        written = a.manifest["spec"]
        admitted = adm.admitted(written)
        event(f"{a.verb} {a.name} admitting {len(admitted)}")
        if not admitted:
            continue
        assert a.manifest["metadata"]["annotations"][adm.ADMITTED_AT] == iso_z(now)
        assert sum(n.startswith("server-") for n in admitted) <= 1
        w = written["window"]
        kured = TimeWindow.new(w["days"], w["startTime"], w["endTime"], w["timeZone"])
        deadline = timedelta(seconds=written["jobActiveDeadlineSecs"])
        for second in range(0, 60, 5):
            at = now + timedelta(seconds=second)
            assert kured.contains(at), (w, at)
            assert _job_fits(spec, at, deadline), (doc, w, at)
