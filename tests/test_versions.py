"""K3s versions: parsing, ordering, image tags, and the minor-by-minor upgrade path (multi-minor,
same-minor patch, missing minor, downgrade, major change, release candidates, malformed input)."""

import pytest

from gitedge.core.fleet.versions import K3sVersion, upgrade_path
from gitedge.errors import UpgradePathError, VersionError

V = K3sVersion.parse
CATALOG = [
    V(t)
    for t in [
        "v1.27.16+k3s1",
        "v1.28.14+k3s1",
        "v1.28.15+k3s1",
        "v1.29.9+k3s1",
        "v1.29.10+k3s1",
        "v1.30.6+k3s1",
        "v1.31.0-rc1+k3s1",
        "v1.31.2+k3s1",
        "v1.33.1+k3s1",
    ]
]


@pytest.mark.parametrize(
    "text", ["v1.30.6+k3s1", "v1.30.6-rc1+k3s1", "v1.0.0+k3s2", "v2.10.100+k3s12"]
)
def test_parse_roundtrip(text):
    assert str(V(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "1.30.6+k3s1",
        "v1.30+k3s1",
        "v1.30.6",
        "v1.30.6+k3s",
        "v1.30.6+k3s0",
        "v1.30.6+rke2r1",
        "v01.30.6+k3s1",
        "v1.30.6-beta1+k3s1",
        " v1.30.6+k3s1",
        "",
    ],
)
def test_parse_rejects(text):
    with pytest.raises(VersionError, match="expected the form v1.30.6\\+k3s1"):
        V(text)


@pytest.mark.parametrize(
    ("lower", "higher"),
    [
        ("v1.29.10+k3s1", "v1.30.0+k3s1"),
        ("v1.30.5+k3s1", "v1.30.6+k3s1"),
        ("v1.30.6+k3s1", "v1.30.6+k3s2"),
        ("v1.30.6-rc1+k3s1", "v1.30.6+k3s1"),
        ("v1.30.6-rc1+k3s1", "v1.30.6-rc2+k3s1"),
        ("v1.9.0+k3s1", "v1.10.0+k3s1"),
    ],
)
def test_ordering(lower, higher):
    assert V(lower) < V(higher)
    assert sorted([V(higher), V(lower)]) == [V(lower), V(higher)]


def test_image_tag_and_minor():
    v = V("v1.30.6+k3s1")
    assert v.image_tag == "v1.30.6-k3s1"
    assert v.minor_line == "v1.30"


@pytest.mark.parametrize(
    ("current", "target", "path"),
    [
        # the DESIGN.md example: newest release of each intermediate minor, then the target
        ("v1.27.3+k3s1", "v1.30.6+k3s1", ["v1.28.15+k3s1", "v1.29.10+k3s1", "v1.30.6+k3s1"]),
        ("v1.28.9+k3s1", "v1.30.6+k3s1", ["v1.29.10+k3s1", "v1.30.6+k3s1"]),
        ("v1.29.10+k3s1", "v1.30.6+k3s1", ["v1.30.6+k3s1"]),
        ("v1.30.5+k3s1", "v1.30.6+k3s1", ["v1.30.6+k3s1"]),  # same minor, patch
        ("v1.30.6+k3s1", "v1.30.6+k3s2", ["v1.30.6+k3s2"]),
        ("v1.30.6+k3s1", "v1.30.6+k3s1", []),  # already there
        ("v1.30.6+k3s1", "v1.32.0+k3s1", ["v1.31.2+k3s1", "v1.32.0+k3s1"]),
        ("v1.29.10+k3s1", "v1.31.0-rc1+k3s1", ["v1.30.6+k3s1", "v1.31.0-rc1+k3s1"]),
    ],
)
def test_upgrade_path(current, target, path):
    got = upgrade_path(current=V(current), target=V(target), releases=CATALOG)
    assert [v.text for v in got] == path


def test_missing_minor_names_what_to_add():
    with pytest.raises(UpgradePathError, match=r"minor v1\.32 .*add a release") as e:
        upgrade_path(current=V("v1.31.2+k3s1"), target=V("v1.33.1+k3s1"), releases=CATALOG)
    assert "v1.31.2+k3s1" in str(e.value) and "v1.33.1+k3s1" in str(e.value)


def test_several_missing_minors_are_all_named():
    with pytest.raises(UpgradePathError, match=r"v1\.28, v1\.29"):
        upgrade_path(current=V("v1.27.1+k3s1"), target=V("v1.30.6+k3s1"), releases=[])


def test_downgrade_refused():
    with pytest.raises(UpgradePathError, match="cannot be downgraded"):
        upgrade_path(current=V("v1.30.6+k3s1"), target=V("v1.29.10+k3s1"), releases=CATALOG)


def test_major_change_refused():
    with pytest.raises(UpgradePathError, match="major"):
        upgrade_path(current=V("v1.30.6+k3s1"), target=V("v2.0.1+k3s1"), releases=CATALOG)


def test_release_candidates_are_never_intermediate_steps():
    only_rc = [V("v1.31.0-rc1+k3s1")]
    with pytest.raises(UpgradePathError, match=r"v1\.31"):
        upgrade_path(current=V("v1.30.6+k3s1"), target=V("v1.32.0+k3s1"), releases=only_rc)


# Build months (k3s-io/k3s-upgrade scripts/upgrade.sh, replace_binary -> compare_build_dates:
# `date -u +%Y%m` of each binary's buildDate, the Job fails when the new one is earlier).
MONTHS = {
    V("v1.29.15+k3s1"): "2025-03",
    V("v1.30.8+k3s1"): "2024-12",
    V("v1.30.11+k3s1"): "2025-03",
    V("v1.30.12+k3s1"): "2025-04",
    V("v1.31.4+k3s1"): "2024-12",
    V("v1.31.7+k3s1"): "2025-03",
}
DATED = list(MONTHS)


def path_of(current, target, releases=DATED, months=MONTHS):
    got = upgrade_path(current=V(current), target=V(target), releases=releases, months=months)
    return [v.text for v in got]


def test_intermediate_patch_is_the_newest_built_no_later_than_the_next_step():
    # by version alone the path would take v1.30.12 (2025-04), then step back to a 2025-03 build
    assert path_of("v1.29.15+k3s1", "v1.31.7+k3s1") == ["v1.30.11+k3s1", "v1.31.7+k3s1"]
    assert path_of("v1.29.15+k3s1", "v1.31.7+k3s1", months={}) == ["v1.30.12+k3s1", "v1.31.7+k3s1"]


def test_target_built_before_the_running_version_is_refused_naming_both():
    with pytest.raises(UpgradePathError) as e:
        path_of("v1.30.12+k3s1", "v1.31.7+k3s1")
    msg = str(e.value)
    assert "v1.31.7+k3s1 (built 2025-03)" in msg and "v1.30.12+k3s1 (2025-04)" in msg
    assert "compare_build_dates" in msg
    assert "raise the target to a v1.31 release built in 2025-04 or later" in msg


def test_intermediate_older_than_the_running_month_says_which_release_to_add():
    months = {k: v for k, v in MONTHS.items() if k not in (V("v1.30.11+k3s1"), V("v1.30.12+k3s1"))}
    months[V("v1.31.9+k3s1")] = "2025-05"
    with pytest.raises(UpgradePathError) as e:
        path_of("v1.29.15+k3s1", "v1.31.9+k3s1", releases=list(months), months=months)
    msg = str(e.value)
    assert "v1.30.8+k3s1 (built 2024-12)" in msg and "v1.29.15+k3s1 (2025-03)" in msg
    assert "add a v1.30 release built in 2025-03 or later and no later than 2025-05" in msg


def test_every_release_of_a_minor_newer_than_the_next_step_is_refused():
    months = {V("v1.29.15+k3s1"): "2025-03", V("v1.30.12+k3s1"): "2025-04"}
    months[V("v1.31.4+k3s1")] = "2024-12"
    with pytest.raises(UpgradePathError, match=r"add a v1\.30 release built in 2024-12 or earlier"):
        path_of("v1.29.1+k3s1", "v1.31.4+k3s1", releases=list(months), months=months)


def test_running_version_without_a_month_is_bounded_by_older_patches_of_its_minor():
    # v1.29.16 is not in the catalog: it follows v1.29.15 (2025-03), so it is at least 2025-03
    with pytest.raises(UpgradePathError, match=r"v1\.29\.16\+k3s1 \(built 2025-03 or later"):
        path_of("v1.29.16+k3s1", "v1.31.4+k3s1")


def test_unknown_months_are_not_checked():
    # nothing older in its minor has a month: the first step cannot be checked (k3s-upgrade does)
    assert path_of("v1.29.1+k3s1", "v1.31.4+k3s1") == ["v1.30.8+k3s1", "v1.31.4+k3s1"]
    # a release of unknown month fits anywhere
    releases = [*DATED, V("v1.30.20+k3s1")]
    assert path_of("v1.29.15+k3s1", "v1.31.7+k3s1", releases=releases)[0] == "v1.30.20+k3s1"
