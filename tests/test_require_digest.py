"""TrustPolicy ``images.requireDigest``: a tag-only image is refused by ``gitedge validate``, by
``gitedge plan`` and by the agent (that component only), and a pinned image stays what the
signed commit named when the upstream moves its tag.

The agent runs against a real ``git daemon`` and real ``docker-registry`` upstream and cache on
127.0.0.1 (the ``site`` fixture of tests/test_agent.py), with commits signed in process.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from gitedge.cli import main
from tests import test_agent as agent_tests
from tests.agentkit import START, push_image, trust_yaml
from tests.registryserver import skopeo_raw
from tests.test_agent import Site, at, conditions, upstream_image

site = agent_tests.site  # the fixture: a signed fleet repo, upstream and cache registries

HEAD = "apiVersion: gitedge.io/v1alpha1\n"
DIGEST = "sha256:" + "5e" * 32


def fleet_dir(tmp: Path, *, os_image: str, release: str, trust: str | None = None) -> Path:
    root = tmp / "fleet"
    (root / ".gitedge").mkdir(parents=True)
    (root / "releases.yaml").write_text(
        HEAD + "kind: K3sReleases\nmetadata: {name: k3s}\nspec:\n" + release
    )
    (root / "targets.yaml").write_text(
        HEAD + "kind: UpgradeTarget\nmetadata: {name: stores}\nspec:\n  clusterSelector: {}\n"
        f"  os: {{image: '{os_image}', upgrader: kairos}}\n  k3s: {{version: v1.30.6+k3s1}}\n"
    )
    if trust is not None:
        (root / ".gitedge" / "trust.yaml").write_text(trust)
    return root


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out + out.err


def cluster_file(tmp: Path) -> Path:
    path = tmp / "store.yaml"
    path.write_text(
        HEAD + "kind: Cluster\nmetadata: {name: store-1, labels: {env: prod}}\n"
        "status: {k3sVersion: v1.29.10+k3s1}\n"
    )
    return path


def test_validate_and_plan_refuse_tag_only_images_naming_file_line_and_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # no TrustPolicy: the default rule applies, digests required
    root = fleet_dir(
        tmp_path,
        os_image="registry.example.com/edge/os:1.5.0",
        release="  versions: [v1.29.10+k3s1]\n  releases:\n    - {version: v1.30.6+k3s1}\n",
    )
    code, out = cli(capsys, "validate", str(root))
    assert code == 1
    assert (
        f"{root}/targets.yaml:6: image registry.example.com/edge/os:1.5.0 is named by tag only"
    ) in out
    assert f"{root}/releases.yaml:5: image rancher/k3s-upgrade:v1.29.10-k3s1 has no digest" in out
    assert "move it to spec.releases" in out
    assert f"{root}/releases.yaml:7: image rancher/k3s-upgrade:v1.30.6-k3s1 has no digest" in out
    assert out.count("run `gitedge pin`") == 3

    cluster = cluster_file(tmp_path)
    code, out = cli(capsys, "plan", "--repo", str(root), "--cluster", str(cluster))
    assert code == 1 and "Traceback" not in out
    assert f"{root}/targets.yaml:6: image registry.example.com/edge/os:1.5.0" in out
    assert f"{root}/releases.yaml:7: image rancher/k3s-upgrade:v1.30.6-k3s1" in out
    assert "v1.29.10" not in out  # the cluster runs it: this plan does not pull it

    # pinned: both pass
    (root / "targets.yaml").write_text(
        (root / "targets.yaml").read_text().replace("os:1.5.0", f"os:1.5.0@{DIGEST}")
    )
    (root / "releases.yaml").write_text(
        HEAD + "kind: K3sReleases\nmetadata: {name: k3s}\nspec:\n  releases:\n"
        f"    - {{version: v1.29.10+k3s1, digest: {DIGEST}}}\n"
        f"    - {{version: v1.30.6+k3s1, digest: {DIGEST}}}\n"
    )
    assert cli(capsys, "validate", str(root))[0] == 0
    code, out = cli(capsys, "plan", "--repo", str(root), "--cluster", str(cluster))
    assert code == 0 and "v1.30.6+k3s1" in out


def test_the_opt_out_is_explicit_in_the_trust_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trust = (
        HEAD + "kind: TrustPolicy\nmetadata: {name: fleet}\nspec:\n"
        "  signers:\n    - {name: a, key: 'ssh-ed25519 AAAA a', roles: [admin]}\n"
    )
    root = fleet_dir(
        tmp_path,
        os_image="registry.example.com/edge/os:1.5.0",
        release="  versions: [v1.29.10+k3s1, v1.30.6+k3s1]\n",
        trust=trust,  # a TrustPolicy that says nothing of images: digests required
    )
    assert cli(capsys, "validate", str(root))[0] == 1
    (root / ".gitedge" / "trust.yaml").write_text(trust + "  images: {requireDigest: false}\n")
    code, out = cli(capsys, "validate", str(root))
    assert code == 0, out
    code, out = cli(capsys, "plan", "--repo", str(root), "--cluster", str(cluster_file(tmp_path)))
    assert code == 0 and "registry.example.com/edge/os:1.5.0" in out


def commit(s: Site, *, os_image: str | None, releases: str, order: str = "[k3s, os]") -> None:
    target = (
        HEAD + "kind: UpgradeTarget\nmetadata: {name: stores}\nspec:\n  clusterSelector: {}\n"
        f"  rollout: {{order: {order}}}\n"
        f"  k3s: {{version: v1.28.15+k3s1, upgradeImage: {s.registry}/rancher/k3s-upgrade}}\n"
    )
    if os_image:
        target += f"  os: {{image: '{os_image}', upgrader: kairos}}\n"
    s.fleet.commit(
        {
            ".gitedge/trust.yaml": trust_yaml(s.fleet.key, require_digest=True),
            "releases.yaml": HEAD + "kind: K3sReleases\nmetadata: {name: k3s}\nspec:\n" + releases,
            "targets.yaml": target,
        },
        at=START,
    )


def test_agent_holds_the_tag_only_component_and_applies_the_other(site: Site) -> None:
    k3s = upstream_image(site, "rancher/k3s-upgrade:v1.28.15-k3s1")
    upstream_image(site, "edge/os:2.0")
    os_image = f"{site.registry}/edge/os:2.0"
    commit(
        site,
        os_image=os_image,
        releases=f"  releases:\n    - {{version: v1.28.15+k3s1, digest: {k3s}}}\n",
        order="[k3s, os]",  # a held component also holds what rollout.order puts after it
    )
    p = site.run(at(0))
    assert p.outcomes["plan"] == "ok" and p.outcomes["mirror"] == "ok"
    c = {x.type: x for x in p.conditions}
    pinned = c["ImagesPinned"]
    assert (pinned.status, pinned.reason) == ("False", "DigestRequired")
    assert f"{p.tip[:12]}/targets.yaml:8: image {os_image} is named by tag only" in pinned.message
    assert "gitedge pin" in pinned.message
    assert conditions(p)["Ready"] == ("False", "DigestRequired")
    # the K3s step is applied; the OS is neither mirrored nor applied
    assert [a.name for a in p.actions] == ["gitedge-k3s-server", "gitedge-k3s-agent"]
    assert all("edge/os" not in text for text in site.printed)
    mirrored = [i["image"] for i in p.status["mirror"]["images"]]
    # the K3s step's image and SUC's kubectl its Jobs run (SUC's choice, not the fleet's to pin)
    assert mirrored == [f"{site.registry}/rancher/k3s-upgrade:v1.28.15-k3s1@{k3s}", site.kubectl]
    assert "os held: " in c["Applying"].message

    # pinned in a new signed commit: the OS is mirrored too (and follows K3s, as ordered)
    os_digest = push_image(site.tmp / "os2", f"{site.upstream.host}/edge/os:2.1").digest
    commit(
        site,
        os_image=f"{site.registry}/edge/os:2.1@{os_digest}",
        releases=f"  releases:\n    - {{version: v1.28.15+k3s1, digest: {k3s}}}\n",
    )
    p = site.run(at(0, hour=3))
    assert conditions(p)["ImagesPinned"] == ("True", "Pinned")
    mirrored = {i["image"] for i in p.status["mirror"]["images"]}
    assert f"{site.registry}/edge/os:2.1@{os_digest}" in mirrored


def test_agent_refuses_a_k3s_path_whose_catalog_has_no_digest(site: Site) -> None:
    upstream_image(site, "rancher/k3s-upgrade:v1.28.15-k3s1")
    os_digest = push_image(site.tmp / "os", f"{site.upstream.host}/edge/os:2.0").digest
    commit(
        site,
        os_image=f"{site.registry}/edge/os:2.0@{os_digest}",
        releases="  versions: [v1.28.15+k3s1]\n",
        order="[os, k3s]",
    )
    p = site.run(at(0))
    c = {x.type: x for x in p.conditions}
    assert (c["ImagesPinned"].status, c["ImagesPinned"].reason) == ("False", "DigestRequired")
    assert "releases.yaml:5: image" in c["ImagesPinned"].message
    assert "rancher/k3s-upgrade:v1.28.15-k3s1 has no digest" in c["ImagesPinned"].message
    assert [a.name for a in p.actions] == ["gitedge-os-server", "gitedge-os-agent"]
    assert all("k3s-upgrade" not in text for text in site.printed)


def test_a_tag_moved_upstream_after_the_commit_changes_nothing_at_the_site(site: Site) -> None:
    k3s = upstream_image(site, "rancher/k3s-upgrade:v1.28.15-k3s1")
    signed = push_image(site.tmp / "signed", f"{site.upstream.host}/edge/os:2.0").digest
    commit(
        site,
        os_image=f"{site.registry}/edge/os:2.0@{signed}",
        releases=f"  releases:\n    - {{version: v1.28.15+k3s1, digest: {k3s}}}\n",
        order="[os, k3s]",
    )
    # after the commit is signed, whoever controls upstream moves the tag
    moved = push_image(site.tmp / "moved", f"{site.upstream.host}/edge/os:2.0").digest
    assert moved != signed
    assert json.loads(skopeo_raw(f"{site.upstream.host}/edge/os:2.0"))  # the tag serves `moved`
    p = site.run(at(0))
    assert p.outcomes["mirror"] == "ok" and conditions(p)["ImagesPinned"][0] == "True"
    images = {i["image"]: i["digest"] for i in p.status["mirror"]["images"]}
    assert images[f"{site.registry}/edge/os:2.0@{signed}"] == signed
    assert moved not in json.dumps(p.status)
    # the cache holds the signed bytes, and the Plans name them
    assert json.loads(skopeo_raw(f"{site.cache.host}/edge/os@{signed}"))
    os_plans = [t for t in site.printed if "edge/os" in t]
    assert os_plans and all(signed in t and moved not in t for t in os_plans)


def test_each_step_of_the_path_and_the_os_image_count_only_while_needed() -> None:
    from gitedge.core.delivery.requiredigest import plan_unpinned
    from gitedge.core.rollout.planning import ClusterFacts, plan
    from tests import fleetstory as fs

    facts = ClusterFacts(name="store", labels={}, k3s_version=fs.START)
    strict = fs.fleet(require_digest=True, os="registry.example.com/edge/os:1.5.0")
    found = plan_unpinned(strict, plan(strict, facts, now=fs.IN_WINDOW))
    assert [u.image for u in found["k3s"]] == [
        f"rancher/k3s-upgrade:{v.replace('+', '-')}" for v in fs.PATH
    ]
    assert [(u.path, u.line) for u in found["os"]] == [("target.yaml", 10)]
    running = ClusterFacts(
        name="store",
        labels={},
        k3s_version=fs.PATH[-1],
        os_image="registry.example.com/edge/os:1.5.0",
    )
    assert plan_unpinned(strict, plan(strict, running, now=fs.IN_WINDOW)) == {}  # nothing to pull
    opted_out = fs.fleet(os="registry.example.com/edge/os:1.5.0")
    assert plan_unpinned(opted_out, plan(opted_out, facts, now=fs.IN_WINDOW)) == {}


def test_an_os_via_image_named_by_tag_only_is_refused_and_pinned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The OS images on the way (os.via) are pulled by the site too: they need digests, and
    `gitedge pin --check` names them (the kiosks example carries one)."""
    example = Path(__file__).resolve().parent.parent / "examples" / "fleet-repo"
    root = tmp_path / "fleet"
    shutil.copytree(example, root)
    kiosks = root / "targets" / "kiosks.yaml"
    text = kiosks.read_text()
    via = text.split("      - image: ", 1)[1].split("\n", 1)[0]
    kiosks.write_text(text.replace(via, via.split("@", 1)[0]))
    code, out = cli(capsys, "validate", str(root))
    assert code == 1
    assert f"image {via.split('@', 1)[0]} is named by tag only" in out
    assert "targets/kiosks.yaml:" in out and "run `gitedge pin`" in out
