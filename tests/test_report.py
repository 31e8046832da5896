"""Site status reports and the fleet view: round trip, bad documents, stale sites, selectors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from gitedge.core.fleet.selectors import parse_selector
from gitedge.core.status.conditions import Condition
from gitedge.core.status.sitereport import (
    ReportError,
    SiteReport,
    Versions,
    fleet_json,
    fleet_rows,
    fleet_table,
    from_document,
    tag_for,
    to_document,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def site(name: str, *, age: timedelta, ready: bool = True, **labels: str) -> SiteReport:
    return SiteReport(
        cluster=name,
        time=NOW - age,
        labels={"region": "eu-west", **labels},
        k3s=Versions("v1.30.6+k3s1", "v1.30.6+k3s1" if ready else "v1.29.10+k3s1"),
        os=Versions("registry.example.com/os:1.4", "registry.example.com/os:1.4"),
        last_verified="0123456789abcdef0123456789abcdef01234567",
        conditions=(
            Condition("Ready", "True", "UpToDate", "", T0)
            if ready
            else Condition("Ready", "False", "WindowClosed", "next window 2026-11-24T01:00Z", T0),
        ),
        agent_version="0.1.0",
    )


def test_round_trip_keeps_everything() -> None:
    r = site("store-0042", age=timedelta(minutes=5), ready=False, ring="canary")
    back = from_document(to_document(r), where="reports:store-0042")
    assert back == r
    doc = json.loads(to_document(r))
    assert doc["time"] == "2026-11-23T11:55:00Z"
    assert doc["k3s"] == {"desired": "v1.30.6+k3s1", "applied": "v1.29.10+k3s1"}
    assert doc["conditions"][0]["reason"] == "WindowClosed"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\xff", "not JSON"),
        (b"[]", "not a gitedge site status"),
        (b'{"schema": "other"}', "not a gitedge site status"),
        (b'{"schema": "gitedge.io/site-status/v1", "time": "2026-11-23T00:00:00Z"}', "no cluster"),
        (
            b'{"schema": "gitedge.io/site-status/v1", "cluster": "a", "time": "yesterday"}',
            "bad time",
        ),
        (
            b'{"schema": "gitedge.io/site-status/v1", "cluster": "a", "time": "2026-11-23T00:00:00Z",'
            b' "labels": {"a": 1}}',
            "labels must map strings",
        ),
        (
            b'{"schema": "gitedge.io/site-status/v1", "cluster": "a", "time": "2026-11-23T00:00:00Z",'
            b' "k3s": "v1.30"}',
            "k3s must be an object",
        ),
        (b" " * (65 << 10), "the limit is 64 KiB"),
    ],
)
def test_bad_documents_are_named(data: bytes, words: str) -> None:
    with pytest.raises(ReportError) as e:
        from_document(data, where="reg.example:5000/fleet/status:store-1")
    assert str(e.value).startswith("reg.example:5000/fleet/status:store-1: ")
    assert words in str(e.value)


def test_tags_are_valid_oci_tags() -> None:
    assert tag_for("store-0042") == "store-0042"
    assert tag_for("wind/farm 7") == "wind_farm_7"
    assert tag_for(".hidden") == "_.hidden"
    assert len(tag_for("x" * 300)) == 128


def test_fleet_view_marks_stale_sites_and_filters_by_selector() -> None:
    reports = [
        site("store-b", age=timedelta(minutes=3), ring="canary"),
        site("store-a", age=timedelta(days=40), ring="main"),
        site("ship-1", age=timedelta(hours=2), ready=False, region="north-sea", ring="main"),
        site("future", age=timedelta(minutes=-10), ring="main"),  # its clock is ahead
    ]
    rows = fleet_rows(reports, now=NOW)
    assert [(r.report.cluster, r.state) for r in rows] == [
        ("future", "ready"),
        ("ship-1", "WindowClosed"),
        ("store-a", "stale"),
        ("store-b", "ready"),
    ]
    assert rows[0].age == timedelta(0)
    table = fleet_table(rows).splitlines()
    assert table[0].split() == ["CLUSTER", "STATE", "K3S", "OS", "COMMIT", "AGE"]
    assert table[2].split() == [
        "ship-1",
        "WindowClosed",
        "v1.29.10+k3s1",
        "->",
        "v1.30.6+k3s1",
        "registry.example.com/os:1.4",
        "0123456789ab",
        "2h",
    ]
    assert table[3].split()[:2] == ["store-a", "stale"] and table[3].endswith("40d")
    assert table[-1] == "4 site(s), 1 stale"

    main_eu = fleet_rows(reports, now=NOW, selector=parse_selector("ring=main,region=eu-west"))
    assert [r.report.cluster for r in main_eu] == ["future", "store-a"]
    shorter = fleet_rows(reports, now=NOW, stale_after=timedelta(hours=1))
    assert [r.report.cluster for r in shorter if r.stale] == ["ship-1", "store-a"]
    docs = fleet_json(rows)
    assert docs[2]["stale"] is True and docs[2]["ageSeconds"] == 40 * 86400
    assert docs[1]["state"] == "WindowClosed" and docs[1]["labels"]["region"] == "north-sea"


def test_target_and_path_round_trip_and_older_documents_still_read() -> None:
    r = site("s1", age=timedelta(hours=1))
    r = SiteReport(**{**r.__dict__, "k3s": Versions("v1.30.6+k3s1", "v1.28.15+k3s1", "stable",
                                                   ("v1.29.10+k3s1", "v1.30.6+k3s1"))})  # fmt: skip
    doc = json.loads(to_document(r))
    assert doc["k3s"] == {"desired": "v1.30.6+k3s1", "applied": "v1.28.15+k3s1",
                          "target": "stable", "path": ["v1.29.10+k3s1", "v1.30.6+k3s1"]}  # fmt: skip
    assert "target" not in doc["os"] and "path" not in doc["os"]  # unset: not written
    assert from_document(to_document(r), where="t") == r
    del doc["k3s"]["target"], doc["k3s"]["path"]  # what an agent before issue 19 pushed
    old = from_document(json.dumps(doc).encode(), where="t")
    assert old.k3s == Versions("v1.30.6+k3s1", "v1.28.15+k3s1")
    for bad in ({"path": "v1.29.10+k3s1"}, {"path": [1]}, {"path": ["v"] * 65}, {"target": 3}):
        with pytest.raises(ReportError, match="t: k3s"):
            from_document(json.dumps({**doc, "k3s": {**doc["k3s"], **bad}}).encode(), where="t")


def test_rollout_steps_are_ordered_by_k3s_version_not_by_text() -> None:
    from gitedge.core.status.fleetpage import rollout_steps

    def s(applied: str, desired: str, target: str | None, *path: str) -> dict[str, object]:
        return {"k": [applied, desired, target, list(path)]}

    steps = rollout_steps([
        s("v1.9.2+k3s1", "v1.11.1+k3s1", "t", "v1.10.4+k3s1", "v1.11.1+k3s1"),
        s("v1.10.4+k3s1", "v1.11.1+k3s1", "t", "v1.11.1+k3s1"),
        s("v1.9.10+k3s1", "v1.11.1+k3s1", "t", "v1.10.4+k3s1", "v1.11.1+k3s1"),
        s("v1.30.6+k3s1", "v1.30.6+k3s1", None),  # an older agent: no target name
        s("v1.30.6+k3s1", None, None),  # no K3s target at all
    ])  # fmt: skip
    assert steps == {
        "t": ["v1.9.2+k3s1", "v1.9.10+k3s1", "v1.10.4+k3s1", "v1.11.1+k3s1"],
        "k3s v1.30.6+k3s1": ["v1.30.6+k3s1"],
    }
