"""Loading and validating a fleet repo: every kind of bad input gets `path:line: message` naming
the file — wrong types, unknown kinds and fields, unquoted times, dangling references, duplicate
names, bad names, alias bombs, oversized files, escaping symlinks, misplaced trust policies; and
the examples validate."""

import os
import textwrap
from pathlib import Path

import pytest

from gitedge.adapters.git.worktree import read_tree
from gitedge.core.fleet.files import MAX_FILE_BYTES
from gitedge.core.fleet.model import load_fleet
from gitedge.errors import InvalidFleetRepo

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

HEAD = "apiVersion: gitedge.io/v1alpha1\n"
RELEASES = (
    HEAD
    + "kind: K3sReleases\nmetadata: {name: cat}\nspec:\n  versions: [v1.29.10+k3s1, v1.30.6+k3s1]\n"
)
WINDOW = (
    HEAD
    + 'kind: MaintenanceWindow\nmetadata: {name: nights}\nspec:\n  days: [mon]\n  start: "01:00"\n  end: "05:00"\n'
)
TARGET = HEAD + textwrap.dedent(
    """\
    kind: UpgradeTarget
    metadata: {name: t1}
    spec:
      clusterSelector: {}
      window: nights
      k3s: {version: v1.30.6+k3s1}
    """
)


def write(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return root


def problems(root: Path) -> list[str]:
    with pytest.raises(InvalidFleetRepo) as e:
        load_fleet(read_tree(root))
    return [str(p) for p in e.value.problems]


def test_minimal_repo_loads(tmp_path):
    fleet = load_fleet(
        read_tree(write(tmp_path, {"r.yaml": RELEASES, "w.yaml": WINDOW, "t.yaml": TARGET}))
    )
    assert list(fleet.targets) == ["t1"]
    assert fleet.where("UpgradeTarget", "t1") == "t.yaml:1"


BAD_CASES = [
    pytest.param(
        {"t.yaml": TARGET.replace("clusterSelector: {}", "clusterSelector: {}\n  priority: high")},
        "t.yaml:6: UpgradeTarget/t1: spec.priority: Input should be a valid integer",
        id="wrong-type",
    ),
    pytest.param(
        {"x.yaml": HEAD + "kind: Rollout\nmetadata: {name: x}\nspec: {}\n"},
        "x.yaml:1: unknown kind 'Rollout'",
        id="unknown-kind",
    ),
    pytest.param(
        {"t.yaml": TARGET.replace("  window: nights", "  windw: nights")},
        "t.yaml:6: UpgradeTarget/t1: spec.windw: unknown field",
        id="unknown-field",
    ),
    pytest.param(
        {"w.yaml": WINDOW.replace('start: "01:00"', "start: 19:00")},
        "w.yaml:6: MaintenanceWindow/nights: spec.start: ",
        id="unquoted-time",
    ),
    pytest.param(
        {"t.yaml": TARGET.replace("window: nights", "window: weekends")},
        "t.yaml:6: UpgradeTarget/t1: window 'weekends' is not a MaintenanceWindow",
        id="dangling-window",
    ),
    pytest.param(
        {"t.yaml": TARGET.replace("clusterSelector: {}", "clusterGroup: stores")},
        "t.yaml:5: UpgradeTarget/t1: clusterGroup 'stores' is not a ClusterGroup",
        id="dangling-group",
    ),
    pytest.param(
        {"t2.yaml": TARGET},
        "t2.yaml:1: UpgradeTarget 't1' is already defined at t.yaml:1",
        id="duplicate-name",
    ),
    pytest.param(
        {"t.yaml": TARGET.replace("name: t1", "name: Stores_Stable")},
        "t.yaml:3: UpgradeTarget/Stores_Stable: metadata.name: name 'Stores_Stable' must be a DNS-1123 label",
        id="bad-name",
    ),
    pytest.param(
        {"t.yaml": TARGET.replace("v1.30.6+k3s1", "1.30.6")},
        "t.yaml:7: UpgradeTarget/t1: spec.k3s.version: invalid K3s version '1.30.6'",
        id="bad-version",
    ),
    pytest.param(
        {"t.yaml": TARGET.replace("  clusterSelector: {}\n", "")},
        "t.yaml:5: UpgradeTarget/t1: spec: set clusterSelector",
        id="no-selector",
    ),
    pytest.param(
        {"t.yaml": TARGET.replace("k3s: {version: v1.30.6+k3s1}", "os: {image: Registry/OS}")},
        "t.yaml:7: UpgradeTarget/t1: spec.os.image: invalid image reference 'Registry/OS'",
        id="bad-image",
    ),
    pytest.param(
        {
            "t.yaml": TARGET.replace(
                "k3s: {version: v1.30.6+k3s1}", "os: {image: a/b, upgrader: custom}"
            )
        },
        "t.yaml:7: UpgradeTarget/t1: spec.os: upgrader 'custom' needs a command",
        id="custom-without-command",
    ),
    pytest.param(
        {"t.yaml": TARGET + "  rollout: {order: [k3s, k3s]}\n"},
        "t.yaml:8: UpgradeTarget/t1: spec.rollout.order: order must list k3s and os once each",
        id="bad-order",
    ),
    pytest.param(
        {"t.yaml": TARGET.replace("{}", "{matchLabels: {env: [prod]}}")},
        "t.yaml:5: UpgradeTarget/t1: spec.clusterSelector.matchLabels.env: Input should be a valid string",
        id="label-value-list",
    ),
    pytest.param(
        {"y.yaml": "apiVersion: gitedge.io/v1alpha1\nkind: [unclosed\n"},
        "y.yaml:3: YAML syntax error",
        id="malformed-yaml",
    ),
    pytest.param(
        {"y.yaml": HEAD + "kind: K3sReleases\nkind: K3sReleases\n"},
        "y.yaml:3: duplicate key 'kind'",
        id="duplicate-key",
    ),
    pytest.param(
        {"y.yaml": HEAD + "kind: !!python/object/apply:os.system [ls]\n"},
        "y.yaml:2: YAML tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed",
        id="python-tag",
    ),
    pytest.param(
        {"y.yaml": "- just\n- a list\n"},
        "y.yaml:1: a document must be a mapping",
        id="not-a-mapping",
    ),
    pytest.param(
        {"y.yaml": "apiVersion: v1\nkind: ConfigMap\n"},
        "y.yaml:1: apiVersion must be 'gitedge.io/v1alpha1', not 'v1'",
        id="foreign-api-version",
    ),
    pytest.param(
        {"y.yaml": b"kind: \xff\xfe\n"},
        "y.yaml: not valid UTF-8",
        id="not-utf8",
    ),
    pytest.param(
        {
            "trust.yaml": HEAD
            + "kind: TrustPolicy\nmetadata: {name: x}\nspec:\n  signers: [{name: a, key: k, roles: [release]}]\n"
        },
        "trust.yaml:1: a TrustPolicy is only read from .gitedge/trust.yaml",
        id="misplaced-trust",
    ),
    pytest.param(
        {
            ".gitedge/trust.yaml": HEAD
            + "kind: TrustPolicy\nmetadata: {name: x}\nspec:\n  signers: [{name: a, key: k, roles: [owner]}]\n"
        },
        ".gitedge/trust.yaml:5: TrustPolicy/x: spec.signers[0].roles[0]: Input should be 'release' or 'admin'",
        id="bad-role",
    ),
    pytest.param(
        {"c.yaml": HEAD + "kind: Cluster\nmetadata: {name: c}\n"},
        "c.yaml:1: kind Cluster belongs to a site's files, not the fleet repo",
        id="cluster-in-fleet",
    ),
]


@pytest.mark.parametrize(("extra", "expected"), BAD_CASES)
def test_bad_input_is_reported_with_path_and_line(tmp_path, extra, expected):
    files = {"r.yaml": RELEASES, "w.yaml": WINDOW, "t.yaml": TARGET, **extra}
    found = problems(write(tmp_path, files))
    assert any(p.startswith(expected) for p in found), found


def test_all_problems_are_reported_at_once(tmp_path):
    files = {
        "a.yaml": HEAD + "kind: Nope\n",
        "b.yaml": TARGET.replace("window: nights", "window: gone"),
        "r.yaml": RELEASES,
    }
    found = problems(write(tmp_path, files))
    assert [p.split(":")[0] for p in found] == ["a.yaml", "b.yaml"]


def test_alias_bomb_is_refused_quickly(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    found = problems(write(tmp_path, {"bomb.yaml": "\n".join(lines) + "\n"}))
    assert any(p.startswith("bomb.yaml:") and "alias bomb" in p for p in found), found


def test_oversized_file_is_refused(tmp_path):
    big = TARGET + "# " + "x" * MAX_FILE_BYTES + "\n"
    found = problems(write(tmp_path, {"big.yaml": big}))
    assert any(p.startswith("big.yaml: file is") and "1 MiB" in p for p in found), found


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("../outside.yaml", "symlink escapes the repo (target '../outside.yaml')"),
        ("/etc/passwd", "symlink escapes the repo (absolute target '/etc/passwd')"),
        ("sub/../../outside.yaml", "symlink escapes the repo"),
        ("missing.yaml", "does not exist in the repo"),
    ],
)
def test_escaping_symlinks_are_refused(tmp_path, target, message):
    repo = write(tmp_path / "repo", {"r.yaml": RELEASES})
    (tmp_path / "outside.yaml").write_text(TARGET)
    os.symlink(target, repo / "link.yaml")
    found = problems(repo)
    assert any(p.startswith("link.yaml: ") and message in p for p in found), found


def test_symlink_inside_repo_is_followed(tmp_path):
    repo = write(tmp_path, {"r.yaml": RELEASES, "w.yaml": WINDOW, "real/t.yaml": TARGET})
    os.symlink("real/t.yaml", repo / "t.yaml")
    with pytest.raises(InvalidFleetRepo, match=r"t.yaml:1: UpgradeTarget 't1' is already defined"):
        load_fleet(read_tree(repo))  # the same target reached twice is still a duplicate


def test_hidden_directories_are_not_fleet_documents(tmp_path):
    repo = write(
        tmp_path,
        {
            "r.yaml": RELEASES,
            "w.yaml": WINDOW,
            "t.yaml": TARGET,
            ".github/workflows/ci.yml": "on: push\n",
        },
    )
    assert list(load_fleet(read_tree(repo)).targets) == ["t1"]


def test_examples_validate():
    fleet = load_fleet(read_tree(EXAMPLES / "fleet-repo"))
    assert set(fleet.targets) == {
        "fleet-baseline",
        "stores-stable",
        "stores-canary",
        "wind-farms",
        "wind-farms-next",
        "kiosks",
    }
    assert fleet.trust_policy is not None
    assert {w for w in fleet.windows} == {"store-nights", "calm-evenings"}


def test_catalog_releases_carry_month_and_digest(tmp_path):
    digest = "sha256:" + "ab" * 32
    cat = (
        HEAD + "kind: K3sReleases\nmetadata: {name: cat}\nspec:\n  versions: [v1.29.10+k3s1]\n"
        "  releases:\n    - {version: v1.30.6+k3s1, released: 2024-10, digest: " + digest + "}\n"
    )
    fleet = load_fleet(
        read_tree(write(tmp_path, {"r.yaml": cat, "w.yaml": WINDOW, "t.yaml": TARGET}))
    )
    assert sorted(str(v) for v in fleet.k3s_releases()) == ["v1.29.10+k3s1", "v1.30.6+k3s1"]
    [(version, entry)] = fleet.k3s_release_details().items()
    assert (str(version), entry.released, entry.digest) == ("v1.30.6+k3s1", "2024-10", digest)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("  versions: [v1.30.6+k3s1]\n  releases: [{version: v1.30.6+k3s1}]\n", "listed twice"),
        ("  releases: [{version: v1.30.6+k3s1, released: 2024-13}]\n", "YYYY-MM"),
        ("  releases: [{version: v1.30.6+k3s1, digest: sha256:abc}]\n", "sha256:<64"),
        ("  versions: []\n", "at least one release"),
    ],
)
def test_bad_catalog_entries_are_named(tmp_path, spec, expected):
    cat = HEAD + "kind: K3sReleases\nmetadata: {name: cat}\nspec:\n" + spec
    found = problems(write(tmp_path, {"r.yaml": cat, "w.yaml": WINDOW, "t.yaml": TARGET}))
    assert any(p.startswith("r.yaml:") and expected in p for p in found), found
