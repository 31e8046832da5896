"""Rendering of system-upgrade-controller Plans (core/rollout/sucplans.py, and ``manifests`` in plan JSON).

Covers: the documented shape of upgrade.cattle.io/v1 Plans (a schema written in this file from
SUC's API types: spec fields, container spec, drain spec, window with SUC's day names), the K3s
server/agent pair (control-plane selection, concurrency 1 + cordon for servers, ``prepare`` on
the server plan for agents), every OS upgrader (kairos, elemental, bootc, custom), windows of
both shapes (cron: no SUC window; ``24:00``), images on the cache and pinned by digest where SUC
leaves them alone (tag added by SUC only to name-only images), rollout settings carried over,
the ownership label, a new OS digest under one tag changing SUC's latestHash, and that plan
JSON carries the Plans of each component's next step only.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from gitedge.core.fleet.model import Drain, Rollout
from gitedge.core.fleet.osimage import OsTarget
from gitedge.core.fleet.windowspec import MaintenanceWindowSpec
from gitedge.core.rollout.sucplans import (
    AGENT_PLAN,
    OS_AGENT_PLAN,
    OS_SERVER_PLAN,
    SERVER_PLAN,
    Site,
    k3s_image_tag,
    k3s_plans,
    os_plans,
)
from tests.plancrd import assert_valid_plan

DIGEST = "sha256:" + "ab" * 32


def os_plan(**kwargs: Any) -> dict[str, Any]:
    """The worker OS Plan (the control-plane one differs in selector and concurrency only:
    tests/test_suc_rules.py)."""
    server, agent = os_plans(**kwargs)
    assert server["metadata"]["name"] == OS_SERVER_PLAN
    return agent


SUC_DAYS = [
    "0",
    "su",
    "sun",
    "sunday",
    "1",
    "mo",
    "mon",
    "monday",
    "2",
    "tu",
    "tue",
    "tuesday",
    "3",
    "we",
    "wed",
    "wednesday",
    "4",
    "th",
    "thu",
    "thursday",
    "5",
    "fr",
    "fri",
    "friday",
    "6",
    "sa",
    "sat",
    "saturday",
]
_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["key", "operator"],
                "properties": {
                    "key": {"type": "string"},
                    "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                    "values": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}
_CONTAINER = {
    "type": "object",
    "additionalProperties": False,
    "required": ["image"],
    "properties": {
        "image": {"type": "string", "minLength": 1},
        "command": {"type": "array", "items": {"type": "string"}},
        "args": {"type": "array", "items": {"type": "string"}},
        "envs": {"type": "array"},
        "envFrom": {"type": "array"},
        "volumes": {"type": "array"},
        "securityContext": {"type": "object"},
    },
}
PLAN_SCHEMA: dict[str, Any] = {  # upgrade.cattle.io/v1 Plan, from SUC's pkg/apis types
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "upgrade.cattle.io/v1"},
        "kind": {"const": "Plan"},
        "metadata": {
            "type": "object",
            "required": ["name", "namespace"],
            "properties": {
                "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"},
                "namespace": {"type": "string"},
                "labels": {
                    "type": "object",
                    "additionalProperties": {"type": "string", "maxLength": 63},
                },
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["upgrade"],
            "oneOf": [{"required": ["version"]}, {"required": ["channel"]}],
            "properties": {
                "concurrency": {"type": "integer", "minimum": 1},
                "jobActiveDeadlineSecs": {"type": "integer"},
                "nodeSelector": _SELECTOR,
                "serviceAccountName": {"type": "string"},
                "channel": {"type": "string"},
                "version": {"type": "string", "pattern": r"^[A-Za-z0-9][-A-Za-z0-9_.+]{0,62}$"},
                "secrets": {"type": "array"},
                "tolerations": {"type": "array", "items": {"type": "object"}},
                "exclusive": {"type": "boolean"},
                "window": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "days": {"type": "array", "minItems": 1, "items": {"enum": SUC_DAYS}},
                        "startTime": {
                            "type": "string",
                            # kured's parseTime layouts "15:04" and "15:04:05" (gitedge writes
                            # seconds: kured's end is inclusive to its second's last nanosecond)
                            "pattern": r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$",
                        },
                        "endTime": {
                            "type": "string",
                            # kured's parseTime layouts "15:04" and "15:04:05" (gitedge writes
                            # seconds: kured's end is inclusive to its second's last nanosecond)
                            "pattern": r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$",
                        },
                        "timeZone": {"type": "string"},
                    },
                },
                "prepare": _CONTAINER,
                "upgrade": _CONTAINER,
                "cordon": {"type": "boolean"},
                "drain": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "timeout": {"type": ["string", "integer"]},
                        "gracePeriod": {"type": "integer"},
                        "deleteLocalData": {"type": "boolean"},
                        "deleteEmptydirData": {"type": "boolean"},
                        "ignoreDaemonSets": {"type": "boolean"},
                        "force": {"type": "boolean"},
                        "disableEviction": {"type": "boolean"},
                        "skipWaitForDeleteTimeout": {"type": "integer"},
                        "podSelector": _SELECTOR,
                    },
                },
                "imagePullSecrets": {"type": "array"},
                "postCompleteDelay": {"type": "string"},
                "priorityClassName": {"type": "string"},
            },
        },
    },
}
VALIDATOR = Draft202012Validator(PLAN_SCHEMA)

NIGHTS = MaintenanceWindowSpec.model_validate(
    {"timeZone": "Europe/Berlin", "days": ["mon", "tue"], "start": "22:00", "end": "24:00"}
)
CRON = MaintenanceWindowSpec.model_validate({"cron": "0 22 * * *", "duration": "6h"})
SITE = Site(namespace="upgrades", cache="cache.site.lan:5000")


def valid(plan: dict[str, Any]) -> dict[str, Any]:
    errors = [f"{list(e.path)}: {e.message}" for e in VALIDATOR.iter_errors(plan)]
    assert not errors, errors
    assert_valid_plan(plan)  # and SUC's own CRD schema (tests/data), unknown fields refused
    return plan


def test_k3s_server_and_agent_plans() -> None:
    rollout = Rollout(
        concurrency=3, cordon=True, drain=Drain(force=True, timeout=timedelta(minutes=15))
    )
    server, agent = map(
        valid,
        k3s_plans(
            version="v1.29.10+k3s1",
            upgrade_image="rancher/k3s-upgrade",
            rollout=rollout,
            window=NIGHTS,
            target="t1",
            site=SITE,
        ),
    )
    assert server["metadata"]["name"] == SERVER_PLAN and agent["metadata"]["name"] == AGENT_PLAN
    for p in (server, agent):
        assert p["metadata"]["namespace"] == "upgrades"
        assert p["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "gitedge"
        assert p["spec"]["version"] == "v1.29.10+k3s1"
        # name only on the cache: SUC appends the tag v1.29.10-k3s1 from version
        assert p["spec"]["upgrade"]["image"] == "cache.site.lan:5000/rancher/k3s-upgrade"
        assert p["spec"]["window"] == {
            "days": ["mon", "tue"],
            "startTime": "22:00:00",
            "endTime": "23:59:59",  # 24:00 is not a time to Go: the last second of the day
            "timeZone": "Europe/Berlin",
        }
    assert server["spec"]["nodeSelector"]["matchExpressions"] == [
        {"key": "node-role.kubernetes.io/control-plane", "operator": "In", "values": ["true"]}
    ]
    assert server["spec"]["concurrency"] == 1 and server["spec"]["cordon"] is True
    assert "drain" not in server["spec"]
    assert agent["spec"]["nodeSelector"]["matchExpressions"] == [
        {"key": "node-role.kubernetes.io/control-plane", "operator": "DoesNotExist"}
    ]
    assert agent["spec"]["prepare"]["args"] == ["prepare", SERVER_PLAN]
    assert agent["spec"]["concurrency"] == 3
    assert agent["spec"]["drain"]["force"] is True and agent["spec"]["drain"]["timeout"] == "900s"


def test_k3s_image_pinned_by_digest_once_mirrored() -> None:
    site = Site(
        cache="10.0.0.5:5000",
        digests={f"docker.io/rancher/k3s-upgrade:{k3s_image_tag('v1.30.6+k3s1')}": DIGEST},
    )
    server, agent = map(
        valid,
        k3s_plans(
            version="v1.30.6+k3s1",
            upgrade_image="rancher/k3s-upgrade",
            rollout=Rollout(),
            window=None,
            target="t",
            site=site,
        ),
    )
    assert server["spec"]["upgrade"]["image"] == f"10.0.0.5:5000/rancher/k3s-upgrade@{DIGEST}"
    assert agent["spec"]["prepare"]["image"] == server["spec"]["upgrade"]["image"]
    assert "window" not in server["spec"]


@pytest.mark.parametrize(
    ("os", "command", "args"),
    [
        (
            OsTarget(image="registry.example.com/edge/os:1.5.0", upgrader="kairos"),
            ["/usr/sbin/suc-upgrade"],
            None,
        ),
        (
            OsTarget(image="registry.example.com/edge/os:1.5.0", upgrader="elemental"),
            ["/usr/sbin/suc-upgrade"],
            None,
        ),
        (
            OsTarget(image="registry.example.com/edge/os:1.5.0", upgrader="bootc"),
            # bootc documents no SUC Plan: its CLI's `switch --apply`, run as the host's own
            # bootc in the host's namespaces (core/rollout/upgraders.py cites bootc's docs and source)
            [
                "nsenter",
                "-i",
                "-m",
                "-t",
                "1",
                "--",
                "env",
                "-u",
                "container",
                "bootc",
                "switch",
                "--apply",
            ],
            [f"cache.site.lan:5000/edge/os@{DIGEST}"],
        ),
        (
            OsTarget(
                image="registry.example.com/edge/os:1.5.0",
                upgrader="custom",
                command=("/bin/sh", "-c"),
                args=("upgrade.sh",),
            ),
            ["/bin/sh", "-c"],
            ["upgrade.sh"],
        ),
    ],
    ids=["kairos", "elemental", "bootc", "custom"],
)
def test_os_plan_for_every_upgrader(
    os: OsTarget, command: list[str], args: list[str] | None
) -> None:
    site = Site(
        namespace="upgrades",
        cache="cache.site.lan:5000",
        digests={"registry.example.com/edge/os:1.5.0": DIGEST},
    )
    p = valid(
        os_plan(
            os=os,
            rollout=Rollout(concurrency=2, cordon=False),
            window=CRON,
            target="stores",
            site=site,
        )
    )
    assert p["metadata"]["name"] == OS_AGENT_PLAN
    assert p["spec"]["upgrade"]["image"] == f"cache.site.lan:5000/edge/os@{DIGEST}"
    assert p["spec"]["upgrade"]["command"] == command
    assert p["spec"]["upgrade"].get("args") == args
    assert p["spec"]["version"] == "1.5.0"
    assert p["spec"]["concurrency"] == 2 and p["spec"]["cordon"] is False
    assert "window" not in p["spec"]  # a cron window has no SUC equivalent


def test_os_image_not_yet_mirrored_is_name_only_and_digest_in_target_is_kept() -> None:
    p = valid(
        os_plan(
            os=OsTarget(image="registry.example.com/edge/os:1.5.0"),
            rollout=Rollout(),
            window=NIGHTS,
            target="t",
            site=SITE,
        )
    )
    assert (
        p["spec"]["upgrade"]["image"] == "cache.site.lan:5000/edge/os"
        and p["spec"]["version"] == "1.5.0"
    )
    pinned = valid(
        os_plan(
            os=OsTarget(image=f"registry.example.com/edge/os@{DIGEST}", upgrader="bootc"),
            rollout=Rollout(),
            window=None,
            target="t",
            site=Site(),
        )
    )
    assert pinned["spec"]["upgrade"]["image"] == f"registry.example.com/edge/os@{DIGEST}"
    assert pinned["spec"]["version"] == "ab" * 6  # a label-safe version from the digest
    assert pinned["spec"]["upgrade"]["args"] == [f"registry.example.com/edge/os@{DIGEST}"]


def test_a_new_os_digest_under_the_same_tag_is_a_new_suc_rollout() -> None:
    """SUC's latestHash covers version + serviceAccountName + the fields its
    upgrade.cattle.io/digest annotation names: the OS Plan names its image there."""
    from tests.sucsim import resolved_hash

    def rendered(digest: str) -> dict[str, Any]:
        return os_plan(
            os=OsTarget(image=f"registry.example.com/edge/os:1.5.0@{digest}"),
            rollout=Rollout(),
            window=None,
            target="t",
            site=SITE,
        )

    a, b = rendered(DIGEST), rendered("sha256:" + "cd" * 32)
    assert a["metadata"]["annotations"]["upgrade.cattle.io/digest"] == "spec.upgrade.image"
    assert a["spec"]["version"] == b["spec"]["version"] == "1.5.0"
    assert resolved_hash(a) != resolved_hash(b)


def test_plan_json_carries_the_next_step_only() -> None:
    from pathlib import Path

    from gitedge.adapters.git.worktree import read_tree
    from gitedge.core.config import load_site_file
    from gitedge.core.fleet.model import load_fleet
    from gitedge.core.rollout.planning import plan, plan_json
    from gitedge.core.validation import site_facts, site_of

    root = Path(__file__).resolve().parent.parent / "examples"
    fleet = load_fleet(read_tree(str(root / "fleet-repo")))
    site = load_site_file(
        (root / "clusters" / "windfarm-north-03.yaml").read_bytes(), path="c.yaml"
    )
    doc = plan_json(
        plan(
            fleet,
            site_facts(site),
            now=datetime(2026, 11, 24, 1, 30, tzinfo=UTC),
            site=site_of(site),
        )
    )
    assert doc["k3s"]["path"] == ["v1.28.15+k3s1", "v1.29.10+k3s1", "v1.30.6+k3s1"]
    names = [m["metadata"]["name"] for m in doc["manifests"]]
    assert names == [SERVER_PLAN, AGENT_PLAN, OS_SERVER_PLAN, OS_AGENT_PLAN]
    for m in doc["manifests"]:
        valid(m)
        assert m["metadata"]["namespace"] == "system-upgrade"
    assert {m["spec"]["version"] for m in doc["manifests"][:2]} == {"v1.28.15+k3s1"}  # first step
    assert "window" not in doc["manifests"][0]["spec"]  # calm-evenings is a cron window
    # nothing to do: at the target already, no Plans
    farm_os = fleet.targets["wind-farms"].spec.os
    assert farm_os is not None and farm_os.image.startswith(
        "registry.example.com/edge/farm-os:2.1.0@"
    )
    done = site_facts(site, current_k3s="v1.30.6+k3s1", current_os=farm_os.image)
    assert plan_json(plan(fleet, done, now=datetime(2026, 11, 24, tzinfo=UTC)))["manifests"] == []
    # an AgentConfig's cache and namespace reach the Plans
    agent = load_site_file((root / "agent.yaml").read_bytes(), path="agent.yaml")
    doc = plan_json(
        plan(fleet, site_facts(agent), now=datetime(2026, 11, 24, tzinfo=UTC), site=site_of(agent))
    )
    assert all(
        m["spec"]["upgrade"]["image"].startswith("127.0.0.1:5000/") for m in doc["manifests"]
    )
