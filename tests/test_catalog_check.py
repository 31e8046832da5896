"""`gitedge validate` against the K3sReleases catalog: build months k3s-upgrade would refuse
(k3s-io/k3s-upgrade scripts/upgrade.sh, ``compare_build_dates``), a newer patch dated before an
older one, and one catalog digest for targets naming different upgrade image repositories."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from gitedge.core.validation import validate

HEAD = "apiVersion: gitedge.io/v1alpha1\n"
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
D29 = "sha256:" + "29" * 32
D30 = "sha256:" + "30" * 32
# requireDigest is on by default (tests/test_require_digest.py): a catalog entry that a path may
# use carries its digest, so that only the catalog check under test speaks
PINNED = ", digest: sha256:"


def catalog(*entries: str) -> str:
    rows = "".join(f"    - {{{e}}}\n" for e in entries)
    return HEAD + "kind: K3sReleases\nmetadata: {name: cat}\nspec:\n  releases:\n" + rows


def target(name: str, version: str, image: str | None = None) -> str:
    extra = f", upgradeImage: {image}" if image else ""
    return (
        HEAD + f"kind: UpgradeTarget\nmetadata: {{name: {name}}}\nspec:\n  clusterSelector: {{}}\n"
        f"  k3s: {{version: {version}{extra}}}\n"
    )


def problems(files: dict[str, str]) -> list[str]:
    fleet, found, _ = validate({k: v.encode() for k, v in files.items()}, clusters={}, now=NOW)
    assert fleet is not None
    return [str(p) for p in found]


def test_target_built_before_a_catalog_release_below_it_is_an_error():
    files = {
        "releases.yaml": catalog(
            "version: v1.29.9+k3s1, released: 2024-09" + PINNED + "29" * 32,
            "version: v1.29.12+k3s1, released: 2024-12" + PINNED + "2c" * 32,
            "version: v1.30.6+k3s1, released: 2024-10" + PINNED + "30" * 32,
        ),
        "t.yaml": target("edge", "v1.30.6+k3s1"),
    }
    [found] = problems(files)
    assert found.startswith("t.yaml:6: UpgradeTarget/edge: a cluster running v1.29.12+k3s1")
    assert "v1.30.6+k3s1 (built 2024-10)" in found and "v1.29.12+k3s1 (2024-12)" in found
    assert "raise the target to a v1.30 release built in 2024-12 or later" in found
    # the same catalog by version alone, or with months in order: nothing to say
    files["releases.yaml"] = files["releases.yaml"].replace(
        "released: 2024-12", "released: 2024-10"
    )
    assert problems(files) == []


def test_intermediate_minor_with_no_release_old_enough_is_an_error():
    files = {
        "releases.yaml": catalog(
            "version: v1.28.15+k3s1, released: 2024-10",
            "version: v1.29.12+k3s1, released: 2024-12",
            "version: v1.30.6+k3s1, released: 2024-10",
        ),
        "t.yaml": target("edge", "v1.30.6+k3s1"),
    }
    found = problems(files)
    assert any(
        "a cluster running v1.28.15+k3s1 cannot reach v1.30.6+k3s1" in p
        and "add a v1.29 release built in 2024-10 or earlier" in p
        for p in found
    ), found


def test_newer_patch_dated_before_an_older_one_is_an_error():
    files = {
        "releases.yaml": catalog(
            "version: v1.30.5+k3s1, released: 2024-11", "version: v1.30.6+k3s1, released: 2024-10"
        ),
        "t.yaml": target("edge", "v1.30.6+k3s1"),
    }
    found = problems(files)
    assert any(
        p.startswith("releases.yaml:6: K3sReleases: v1.30.6+k3s1 is dated 2024-10, before")
        for p in found
    ), found


def test_one_digest_for_two_upgrade_image_repositories_is_an_error():
    files = {
        "releases.yaml": catalog(
            f"version: v1.29.10+k3s1, digest: {D29}", f"version: v1.30.6+k3s1, digest: {D30}"
        ),
        "a.yaml": target("a", "v1.30.6+k3s1"),  # steps through v1.29.10 on rancher/k3s-upgrade
        "b.yaml": target("b", "v1.29.10+k3s1", image="registry.example.com/k3s/upgrade"),
    }
    [found] = problems(files)
    assert "the digest of v1.29.10+k3s1 pins one upgrade image" in found
    assert "docker.io/rancher/k3s-upgrade (a)" in found
    assert "registry.example.com/k3s/upgrade (b)" in found
    files["b.yaml"] = target("b", "v1.29.10+k3s1")
    assert problems(files) == []


def test_cli_validate_fails_on_a_month_refusal(tmp_path: Path):
    (tmp_path / "releases.yaml").write_text(
        catalog(
            "version: v1.29.12+k3s1, released: 2024-12", "version: v1.30.6+k3s1, released: 2024-10"
        )
    )
    (tmp_path / "t.yaml").write_text(target("edge", "v1.30.6+k3s1"))
    r = subprocess.run(
        [sys.executable, "-m", "gitedge", "validate", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "compare_build_dates" in r.stdout and "Traceback" not in r.stderr


def test_validate_with_a_cluster_whose_running_build_is_newer_than_its_target():
    files = {
        "releases.yaml": catalog(
            "version: v1.29.12+k3s1, released: 2024-12", "version: v1.30.6+k3s1, released: 2024-10"
        ),
        "t.yaml": target("edge", "v1.30.6+k3s1"),
    }
    cluster = (
        HEAD + "kind: Cluster\nmetadata: {name: s1}\nstatus: {k3sVersion: v1.29.13+k3s1}\n"
    ).encode()
    fleet, found, plans = validate(
        {k: v.encode() for k, v in files.items()}, clusters={"s1.yaml": cluster}, now=NOW
    )
    assert fleet is not None and plans == []
    [mine] = [str(p) for p in found if p.path == "s1.yaml"]
    # v1.29.13 is not in the catalog: it follows v1.29.12, so it was built in 2024-12 or later
    assert "cluster s1: k3s-upgrade refuses the step to v1.30.6+k3s1 (built 2024-10)" in mine
    assert "v1.29.13+k3s1 (built 2024-12 or later" in mine
