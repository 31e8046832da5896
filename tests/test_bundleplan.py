"""Which K3s upgrade images a bundle carries when the catalog gives build months and digests:
the intermediate patch the path would take (k3s-upgrade's ``compare_build_dates`` refuses an
earlier month, scripts/upgrade.sh), each pinned ``repo:tag@digest`` where the catalog says."""

from __future__ import annotations

from datetime import UTC, datetime

from gitedge.core.delivery.bundlecontents import bundle_images, every_step
from gitedge.core.fleet.model import load_fleet
from gitedge.core.fleet.versions import K3sVersion
from gitedge.core.rollout.planning import ClusterFacts

HEAD = "apiVersion: gitedge.io/v1alpha1\n"
D30 = "sha256:" + "30" * 32
CATALOG = HEAD + (
    "kind: K3sReleases\nmetadata: {name: cat}\nspec:\n  versions: [v1.28.15+k3s1]\n  releases:\n"
    "    - {version: v1.29.9+k3s1, released: 2024-09}\n"
    "    - {version: v1.29.12+k3s1, released: 2024-12}\n"
    "    - {version: v1.30.6+k3s1, released: 2024-10, digest: " + D30 + "}\n"
)
TARGET = HEAD + (
    "kind: UpgradeTarget\nmetadata: {name: t}\nspec:\n  clusterSelector: {}\n"
    "  k3s: {version: v1.30.6+k3s1}\n"
)
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
UP = "docker.io/rancher/k3s-upgrade"
# SUC v0.20.1's default kubectl image closes the list: every Job that cordons or drains runs it
KUBECTL = "docker.io/rancher/kubectl:v1.30.3"
EXPECTED = [f"{UP}:v1.28.15-k3s1", f"{UP}:v1.29.9-k3s1", f"{UP}:v1.30.6-k3s1@{D30}", KUBECTL]


def test_every_step_takes_the_patch_built_no_later_than_the_next_step():
    v = K3sVersion.parse
    releases = [v("v1.29.9+k3s1"), v("v1.29.12+k3s1")]
    months = {v("v1.29.9+k3s1"): "2024-09", v("v1.29.12+k3s1"): "2024-12"}
    months[v("v1.30.6+k3s1")] = "2024-10"
    assert [s.text for s in every_step(releases, v("v1.30.6+k3s1"), months)] == [
        "v1.29.9+k3s1",
        "v1.30.6+k3s1",
    ]
    assert every_step(releases, v("v1.30.6+k3s1"))[0].text == "v1.29.12+k3s1"  # no months


def test_bundle_for_an_unknown_version_and_for_all_targets_follows_months_and_pins():
    fleet = load_fleet({"r.yaml": CATALOG.encode(), "t.yaml": TARGET.encode()})
    unknown = ClusterFacts(name="new", labels={})
    got = bundle_images(fleet, [unknown], all_targets=False, now=NOW)
    assert [str(r) for r in got] == EXPECTED
    assert [str(r) for r in bundle_images(fleet, [], all_targets=True, now=NOW)] == EXPECTED
