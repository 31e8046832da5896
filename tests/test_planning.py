"""Planning: per-component resolution by priority, ties that agree vs AmbiguousTarget, suspended
targets, clusterGroup AND clusterSelector, each component in its own target's window, the K3s
path in the plan, and the exact JSON shape of `gitedge plan -o json`."""

from datetime import UTC, datetime

import pytest

from gitedge.core.fleet.model import load_fleet
from gitedge.core.passrules import needed_images
from gitedge.core.rollout.planning import ClusterFacts, plan, plan_json
from gitedge.core.rollout.sucplans import Site
from gitedge.errors import AmbiguousTarget, UpgradePathError

HEAD = "apiVersion: gitedge.io/v1alpha1\n"
BASE = {
    "releases.yaml": HEAD
    + "kind: K3sReleases\nmetadata: {name: cat}\nspec:\n  versions: [v1.28.15+k3s1, v1.29.10+k3s1, v1.30.6+k3s1]\n",
    "windows.yaml": HEAD
    + 'kind: MaintenanceWindow\nmetadata: {name: nights}\nspec:\n  days: [mon, tue, wed, thu, fri, sat, sun]\n  start: "01:00"\n  end: "05:00"\n'
    + "---\n"
    + HEAD
    + 'kind: MaintenanceWindow\nmetadata: {name: sundays}\nspec:\n  days: [sun]\n  start: "10:00"\n  end: "12:00"\n',
    "groups.yaml": HEAD
    + "kind: ClusterGroup\nmetadata: {name: stores}\nspec:\n  selector: {matchLabels: {type: store}}\n",
}


def target(
    name, *, selector="{}", group=None, priority=0, window=None, os=None, k3s=None, suspend=False
):
    lines = [
        HEAD + "kind: UpgradeTarget",
        f"metadata: {{name: {name}}}",
        "spec:",
        f"  clusterSelector: {selector}",
    ]
    if group:
        lines.append(f"  clusterGroup: {group}")
    lines.append(f"  priority: {priority}")
    if window:
        lines.append(f"  window: {window}")
    if suspend:
        lines.append("  suspend: true")
    if os:
        lines.append(f"  os: {{image: '{os}'}}")
    if k3s:
        lines.append(f"  k3s: {{version: {k3s}}}")
    return "\n".join(lines) + "\n"


def fleet_of(*targets):
    files = dict(BASE)
    for i, t in enumerate(targets):
        files[f"t{i}.yaml"] = t
    return load_fleet({k: v.encode() for k, v in files.items()})


STORE = ClusterFacts(name="s1", labels={"type": "store", "env": "prod"}, k3s_version="v1.28.9+k3s1")
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # a Monday, 02:00 UTC: inside "nights"


def test_highest_priority_wins_per_component():
    fleet = fleet_of(
        target("base", priority=0, k3s="v1.29.10+k3s1", os="os:1"),
        target("stores", priority=10, group="stores", k3s="v1.30.6+k3s1"),
    )
    p = plan(fleet, STORE, now=NOW)
    assert (p.k3s.target, p.k3s.version) == ("stores", "v1.30.6+k3s1")
    assert (p.os.target, p.os.image) == ("base", "os:1")  # stores sets no os: base still applies


def test_tie_with_equal_values_is_not_ambiguous():
    fleet = fleet_of(target("a", k3s="v1.30.6+k3s1"), target("b", k3s="v1.30.6+k3s1"))
    assert plan(fleet, STORE, now=NOW).k3s.target == "a"


@pytest.mark.parametrize(
    ("a", "b", "detail"),
    [
        ({"k3s": "v1.30.6+k3s1"}, {"k3s": "v1.29.10+k3s1"}, "k3s.version"),
        ({"os": "os:1"}, {"os": "os:2"}, "os.image"),
        (
            {"k3s": "v1.30.6+k3s1", "window": "nights"},
            {"k3s": "v1.30.6+k3s1", "window": "sundays"},
            "window",
        ),
    ],
)
def test_tie_with_different_values_is_ambiguous_and_names_both(a, b, detail):
    fleet = fleet_of(target("alpha", priority=5, **a), target("beta", priority=5, **b))
    with pytest.raises(AmbiguousTarget) as e:
        plan(fleet, STORE, now=NOW)
    assert e.value.targets == ("alpha", "beta")
    assert "'alpha'" in str(e.value) and "'beta'" in str(e.value) and detail in str(e.value)
    assert "s1" in str(e.value)


def test_lower_priority_disagreement_is_not_ambiguous():
    fleet = fleet_of(
        target("top", priority=9, k3s="v1.30.6+k3s1"),
        target("x", priority=1, k3s="v1.29.10+k3s1"),
        target("y", priority=1, k3s="v1.28.15+k3s1"),
    )
    assert plan(fleet, STORE, now=NOW).k3s.target == "top"


def test_suspended_targets_are_ignored():
    fleet = fleet_of(
        target("base", k3s="v1.29.10+k3s1"),
        target("next", priority=50, k3s="v1.30.6+k3s1", suspend=True),
    )
    assert plan(fleet, STORE, now=NOW).k3s.target == "base"


@pytest.mark.parametrize(
    ("labels", "selected"),
    [
        ({"type": "store", "env": "prod"}, "stores-prod"),
        ({"type": "store", "env": "dev"}, "base"),  # group matches, selector does not
        ({"type": "farm", "env": "prod"}, "base"),  # selector matches, group does not
    ],
)
def test_group_and_selector_are_anded(labels, selected):
    fleet = fleet_of(
        target("base", k3s="v1.29.10+k3s1"),
        target(
            "stores-prod",
            selector="{matchLabels: {env: prod}}",
            group="stores",
            priority=10,
            k3s="v1.30.6+k3s1",
        ),
    )
    facts = ClusterFacts(name="c", labels=labels, k3s_version="v1.29.10+k3s1")
    assert plan(fleet, facts, now=NOW).k3s.target == selected


def test_nothing_selects_gives_null_components():
    fleet = fleet_of(target("stores", group="stores", k3s="v1.30.6+k3s1"))
    doc = plan_json(plan(fleet, ClusterFacts(name="ship", labels={"type": "ship"}), now=NOW))
    assert doc == {"cluster": "ship", "os": None, "k3s": None, "manifests": []}


def test_each_component_in_its_own_targets_window():
    fleet = fleet_of(
        target("k", priority=1, window="nights", k3s="v1.30.6+k3s1"),
        target("o", priority=1, window="sundays", os="os:2"),
    )
    doc = plan_json(plan(fleet, STORE, now=NOW))
    assert doc["k3s"]["window"] == {
        "name": "nights",
        "open": True,
        "nextOpen": "2026-11-24T01:00:00Z",
        "closesAt": "2026-11-23T05:00:00Z",
    }
    assert doc["os"]["window"] == {
        "name": "sundays",
        "open": False,
        "nextOpen": "2026-11-29T10:00:00Z",
        "closesAt": None,
    }


def test_plan_json_shape_and_path():
    fleet = fleet_of(
        target("t", k3s="v1.30.6+k3s1", os="registry.example.com/os:1.2@sha256:" + "b" * 64)
    )
    doc = plan_json(plan(fleet, STORE, now=NOW))
    assert doc == {
        "cluster": "s1",
        "os": {
            "image": "registry.example.com/os:1.2@sha256:" + "b" * 64,
            "target": "t",
            "window": None,
        },
        "k3s": {
            "version": "v1.30.6+k3s1",
            "target": "t",
            "path": ["v1.29.10+k3s1", "v1.30.6+k3s1"],
            "window": None,
        },
        "manifests": doc["manifests"],  # rendered Plans: tests/test_suc.py checks them
    }
    names = [(m["metadata"]["name"], m["spec"]["version"]) for m in doc["manifests"]]
    assert names == [
        ("gitedge-k3s-server", "v1.29.10+k3s1"),
        ("gitedge-k3s-agent", "v1.29.10+k3s1"),
        ("gitedge-os-server", "1.2"),
        ("gitedge-os-agent", "1.2"),
    ]


def test_unreachable_k3s_target_is_an_error_naming_the_minor():
    fleet = fleet_of(target("t", k3s="v1.30.6+k3s1"))
    old = ClusterFacts(name="old", labels={}, k3s_version="v1.26.3+k3s1")
    with pytest.raises(UpgradePathError, match=r"v1\.27"):
        plan(fleet, old, now=NOW)


def test_unknown_current_version_plans_the_target_only():
    fleet = fleet_of(target("t", k3s="v1.30.6+k3s1"))
    p = plan(fleet, ClusterFacts(name="new", labels={}), now=NOW)
    assert p.k3s.path == ("v1.30.6+k3s1",)


DIGEST_29 = "sha256:" + "29" * 32
DIGEST_30 = "sha256:" + "30" * 32
DATED = HEAD + (
    "kind: K3sReleases\nmetadata: {name: cat}\nspec:\n  releases:\n"
    "    - {version: v1.28.15+k3s1, released: 2024-10}\n"
    "    - {version: v1.29.9+k3s1, released: 2024-09, digest: " + DIGEST_29 + "}\n"
    "    - {version: v1.29.12+k3s1, released: 2024-12}\n"
    "    - {version: v1.30.6+k3s1, released: 2024-10, digest: " + DIGEST_30 + "}\n"
)


def dated_fleet(*targets):
    files = {**BASE, "releases.yaml": DATED}
    files.update({f"t{i}.yaml": t for i, t in enumerate(targets)})
    return load_fleet({k: v.encode() for k, v in files.items()})


def test_path_keeps_build_months_in_order_and_pins_catalog_digests():
    """k3s-upgrade's compare_build_dates (scripts/upgrade.sh) refuses v1.29.12 (2024-12) ->
    v1.30.6 (2024-10): the path takes v1.29.9 (2024-09), and each Plan names its digest."""
    fleet = dated_fleet(target("t", k3s="v1.30.6+k3s1"))
    old = ClusterFacts(name="old", labels={}, k3s_version="v1.28.9+k3s1")
    p = plan(fleet, old, now=NOW, site=Site(cache="cache.local:5000"))
    assert p.k3s.path == ("v1.29.9+k3s1", "v1.30.6+k3s1")
    images = {m["spec"]["upgrade"]["image"] for m in p.manifests}
    assert images == {f"cache.local:5000/rancher/k3s-upgrade@{DIGEST_29}"}
    assert [str(n.ref) for n in needed_images(p)] == [
        f"docker.io/rancher/k3s-upgrade:v1.29.9-k3s1@{DIGEST_29}",
        f"docker.io/rancher/k3s-upgrade:v1.30.6-k3s1@{DIGEST_30}",
    ]
    assert all(n.tag_checked for n in needed_images(p))


def test_running_build_newer_than_the_target_is_refused_by_the_planner():
    fleet = dated_fleet(target("t", k3s="v1.30.6+k3s1"))
    running = ClusterFacts(name="s", labels={}, k3s_version="v1.29.12+k3s1")
    with pytest.raises(UpgradePathError) as e:
        plan(fleet, running, now=NOW)
    assert "v1.30.6+k3s1 (built 2024-10)" in str(e.value)
    assert "v1.29.12+k3s1 (2024-12)" in str(e.value)
