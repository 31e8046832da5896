"""The command line as users and CI scripts meet it (DESIGN.md section 5): ``validate`` on the
examples, ``plan`` on every example cluster (text and the exact JSON shape), ``schema --write``,
``--version``, and exit codes 0 / 1 / 2 with problems printed as ``path:line: message``.

Runs the installed console script in a subprocess where the exit code and the streams matter.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gitedge import __version__

ROOT = Path(__file__).resolve().parent.parent
REPO = ROOT / "examples" / "fleet-repo"
CLUSTERS = ROOT / "examples" / "clusters"
NOW = "2026-11-24T01:30:00Z"  # a Tuesday night: store-nights (Europe/Berlin) is open


def gitedge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gitedge", *args], capture_output=True, text=True, timeout=60
    )


def test_version_and_usage_errors() -> None:
    r = gitedge("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"gitedge {__version__}"
    assert gitedge().returncode == 2
    assert gitedge("plan", "--repo", str(REPO)).returncode == 2  # --cluster missing
    r = gitedge(
        "plan",
        "--repo",
        str(REPO),
        "--cluster",
        str(CLUSTERS / "ship-atlantic-11.yaml"),
        "--now",
        "yesterday",
    )
    assert r.returncode == 2 and "--now 'yesterday'" in r.stderr
    r = gitedge("plan", "--repo", str(REPO), "--cluster", "/nonexistent.yaml")
    assert r.returncode == 2 and "/nonexistent.yaml" in r.stderr


def test_a_command_parses_with_only_its_own_parser_built(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``main`` builds only the parser of the command it runs (argparse set-up of every command
    is ~1% of a no-op mirror): same help, usage errors and defaults as the whole parser's, for
    every command and subcommand; an unknown command still lists them all."""
    import argparse

    from gitedge.cli import _build, build_parser, main

    def subcommands(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        return dict(sub.choices)

    whole = subcommands(build_parser())
    for name, full in whole.items():
        only = _build(name)
        assert only is not None and list(subcommands(only)) == [name]
        alone = subcommands(only)[name]
        assert alone.format_help() == full.format_help()
        for child, p in subcommands(full).items() if name in ("fleet", "bundle") else ():
            assert subcommands(alone)[child].format_help() == p.format_help()
    assert _build("bogus") is None
    assert main(["mirror", "a"]) == 2
    assert "gitedge mirror: error: the following arguments are required: DST" in (
        capsys.readouterr().err
    )
    assert main(["bogus"]) == 2 and "'mirror'" in capsys.readouterr().err
    args = _build("mirror").parse_args(["mirror", "a", "b"])  # type: ignore[union-attr]
    assert vars(args) == vars(build_parser().parse_args(["mirror", "a", "b"]))


def test_validate_examples_with_and_without_clusters() -> None:
    r = gitedge("validate", str(REPO))
    assert r.returncode == 0, r.stdout + r.stderr
    r = gitedge("validate", str(REPO), "--clusters", str(CLUSTERS))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "5 clusters planned without conflict" in r.stdout


def test_validate_prints_each_problem_as_path_line_message(tmp_path: Path) -> None:
    bad = tmp_path / "repo"
    bad.mkdir()
    (bad / "t.yaml").write_text(
        "apiVersion: gitedge.io/v1alpha1\nkind: UpgradeTarget\nmetadata: {name: Bad_Name}\n"
        "spec:\n  clusterSelector: {}\n  window: nope\n  k3s: {version: v1.30.6+k3s1}\n"
    )
    (bad / "w.yaml").write_text("a: [1\n")
    r = gitedge("validate", str(bad))
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert any(line.startswith(f"{bad}/t.yaml:3: ") and "Bad_Name" in line for line in lines), lines
    assert any(line.startswith(f"{bad}/w.yaml:") and "YAML" in line for line in lines), lines
    assert "problem(s)" in r.stderr


EXPECTED = {
    # cluster: (k3s target, k3s path, os target, os image prefix)
    "store-berlin-0042": (
        "stores-stable",
        ["v1.29.10+k3s1", "v1.30.6+k3s1"],
        "stores-stable",
        "registry.example.com/edge/os:1.4.2@sha256:",
    ),
    "store-lyon-0007": (
        "stores-canary",
        ["v1.31.2+k3s1"],
        "stores-canary",
        "registry.example.com/edge/os:1.5.0",
    ),
    "windfarm-north-03": (
        "wind-farms",
        ["v1.28.15+k3s1", "v1.29.10+k3s1", "v1.30.6+k3s1"],
        "wind-farms",
        "registry.example.com/edge/farm-os:2.1.0",
    ),
    "ship-atlantic-11": ("fleet-baseline", ["v1.29.10+k3s1"], None, None),
}


@pytest.mark.parametrize("cluster", sorted(EXPECTED))
def test_plan_on_each_example_cluster(cluster: str) -> None:
    k3s_target, path, os_target, os_image = EXPECTED[cluster]
    r = gitedge(
        "plan",
        "--repo",
        str(REPO),
        "--cluster",
        str(CLUSTERS / f"{cluster}.yaml"),
        "--now",
        NOW,
        "-o",
        "json",
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) == {"cluster", "os", "k3s", "manifests"}
    assert doc["cluster"] == cluster
    assert doc["k3s"]["target"] == k3s_target and doc["k3s"]["path"] == path
    assert doc["k3s"]["version"] == path[-1]
    if os_target is None:
        assert doc["os"] is None
    else:
        assert doc["os"]["target"] == os_target and doc["os"]["image"].startswith(os_image)
    for component in ("os", "k3s"):
        w = doc[component] and doc[component]["window"]
        if w:
            assert set(w) == {"name", "open", "nextOpen", "closesAt"}
    text = gitedge(
        "plan", "--repo", str(REPO), "--cluster", str(CLUSTERS / f"{cluster}.yaml"), "--now", NOW
    )
    assert text.returncode == 0 and f"cluster {cluster}" in text.stdout
    assert " -> ".join(path) in text.stdout


def test_plan_from_a_git_revision(tmp_path: Path) -> None:
    work = tmp_path / "fleet"
    subprocess.run(["cp", "-r", str(REPO), str(work)], check=True)
    env = ["-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    subprocess.run(["git", *env, "-C", str(work), "add", "-A"], check=True)
    subprocess.run(["git", *env, "-C", str(work), "commit", "-qm", "fleet"], check=True)
    first = subprocess.run(
        ["git", "-C", str(work), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    stores = work / "targets" / "stores.yaml"
    stores.write_text(stores.read_text().replace("v1.30.6+k3s1", "v1.31.2+k3s1"))
    subprocess.run(["git", *env, "-C", str(work), "commit", "-qam", "stores to 1.31"], check=True)
    cluster = str(CLUSTERS / "store-berlin-0042.yaml")

    def plan_at(rev: str) -> dict:
        args = ["--repo", str(work), "--rev", rev, "--cluster", cluster, "--now", NOW]
        return json.loads(gitedge("plan", *args, "-o", "json").stdout)

    old, new = plan_at(first), plan_at("main")
    assert old["k3s"]["version"] == "v1.30.6+k3s1" and new["k3s"]["version"] == "v1.31.2+k3s1"
    assert new["k3s"]["path"] == ["v1.29.10+k3s1", "v1.30.6+k3s1", "v1.31.2+k3s1"]
    r = gitedge("plan", "--repo", str(work), "--rev", "no-such-rev", "--cluster", cluster)
    assert r.returncode == 1 and "no-such-rev" in r.stderr


def test_ambiguous_targets_fail_plan_and_validate(tmp_path: Path) -> None:
    repo = tmp_path / "fleet"
    subprocess.run(["cp", "-r", str(REPO), str(repo)], check=True)
    clone = (repo / "targets" / "stores.yaml").read_text().split("---")[0]  # stores-stable
    (repo / "targets" / "stores-copy.yaml").write_text(
        clone.replace("name: stores-stable", "name: stores-stable-copy").replace(
            "v1.30.6+k3s1", "v1.31.2+k3s1"
        )
    )
    cluster = str(CLUSTERS / "store-berlin-0042.yaml")
    r = gitedge("plan", "--repo", str(repo), "--cluster", cluster, "--now", NOW)
    assert r.returncode == 1
    assert "'stores-stable' and 'stores-stable-copy'" in r.stderr
    assert "targets/stores-copy.yaml:3" in r.stderr  # names the files of both targets
    assert "targets/stores.yaml:3" in r.stderr
    r = gitedge("validate", str(repo), "--clusters", cluster)
    assert r.returncode == 1 and "stores-stable-copy" in (r.stdout + r.stderr)
