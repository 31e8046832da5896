"""K3sReleases digests at the site, against real ``docker-registry`` upstream and cache on
127.0.0.1: the K3s upgrade image of a version the catalog pins is mirrored by that digest and the
Plans name the cache image by it; a tag that moved upstream after the digest was written is
refused (nothing copied, no Plan written, the Mirrored condition names the image, the tag and
both digests); ``bundle create`` carries the pinned reference and refuses a moved tag too, and a
site importing a bundle made before the tag moved installs the approved bytes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gitedge.adapters.registry.client import RegistryClient
from gitedge.agent.bundles.create import create_bundle
from gitedge.agent.bundles.importing import import_bundle
from gitedge.agent.reconcile import Agent, Pass, PrintCluster
from gitedge.core.config import AgentConfig, load_site_file
from gitedge.errors import DigestMismatch
from tests.agentkit import START, FleetRepo, fleet_files, push_image, push_kubectl
from tests.gitserver import git_daemon
from tests.registryserver import RegistryServer, docker_registry
from tests.sigtools import allowed_signers_line, make_ssh_key

RUNNING, TARGET = "v1.27.16+k3s1", "v1.28.15+k3s1"
TAG = "v1.28.15-k3s1"
WHEN = datetime.fromtimestamp(START, UTC) + timedelta(days=1, hours=2)


@dataclass
class Site:
    tmp: Path
    fleet: FleetRepo
    upstream: RegistryServer
    cache: RegistryServer
    config: Path
    printed: list[str]
    kubectl: str  # SUC's kubectl image on the upstream, named by the AgentConfig
    kubectl_digest: str

    def run(self) -> Pass:
        cfg = load_site_file(self.config.read_bytes(), path=str(self.config))
        assert isinstance(cfg, AgentConfig)
        agent = Agent(cfg, cluster=PrintCluster(config=cfg, out=self.printed.append))
        try:
            return agent.reconcile(now=WHEN)
        finally:
            agent.close()

    def push(self, seed: str) -> str:
        """A new image under the upgrade image's tag upstream (moving the tag): its digest."""
        return push_image(self.tmp / seed, f"{self.upstream.host}/rancher/k3s-upgrade:{TAG}").digest

    def publish(self, digest: str) -> None:
        """A signed commit whose catalog pins TARGET's upgrade image to ``digest``."""
        files = fleet_files(
            registry=self.upstream.host, releases=[RUNNING], k3s=TARGET, os_image=None, window=False
        )
        files["releases.yaml"] = (
            "apiVersion: gitedge.io/v1alpha1\nkind: K3sReleases\nmetadata: {name: k3s}\nspec:\n"
            f"  versions: [{RUNNING}]\n  releases:\n    - {{version: {TARGET}, digest: '{digest}'}}\n"
        )
        self.fleet.commit(files)

    def cached(self) -> str | None:
        client = RegistryClient(host=self.cache.host)
        try:
            return client.manifest_digest("rancher/k3s-upgrade", TAG, what="cache")
        finally:
            client.close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    key = make_ssh_key(tmp_path / "keys", "ed25519")
    (tmp_path / "allowed_signers").write_text(allowed_signers_line("release", key) + "\n")
    served = tmp_path / "served"
    fleet = FleetRepo(served / "fleet.git", key)
    with (
        docker_registry(tmp_path / "upstream") as upstream,
        docker_registry(tmp_path / "cache") as cache,
        git_daemon(served) as url,
    ):
        kubectl, kubectl_img = push_kubectl(tmp_path, upstream.host)
        cfg = tmp_path / "agent.yaml"
        cfg.write_text(
            "apiVersion: gitedge.io/v1alpha1\nkind: AgentConfig\n"
            f"cluster:\n  name: s1\n  status: {{k3sVersion: {RUNNING}, arches: [amd64]}}\n"
            f"source: {{url: '{url}/fleet.git', branch: main}}\n"
            f"trust: {{bootstrap: {tmp_path / 'allowed_signers'}}}\n"
            f"registry:\n  cache: {{url: 'http://{cache.host}'}}\n"
            f"apply: {{mode: print, kubectlImage: '{kubectl}'}}\n"
            f"state: {{dir: {tmp_path / 'state'}}}\n"
        )
        yield Site(tmp_path, fleet, upstream, cache, cfg, [], kubectl, kubectl_img.digest)


def test_a_tag_moved_after_the_catalog_digest_is_refused_and_a_matching_one_is_pinned(
    site: Site,
) -> None:
    approved = site.push("a")
    site.publish(approved)
    moved = site.push("b")  # upstream moves the tag after the commit was signed
    assert moved != approved
    p = site.run()
    assert p.outcomes["mirror"] == "stalled" and p.outcomes["apply"] != "ok"
    [c] = [c for c in p.conditions if c.type == "Mirrored"]
    assert c.status == "False" and c.reason == "DigestMismatch"
    assert f"{site.upstream.host}/rancher/k3s-upgrade:{TAG}" in c.message
    assert approved in c.message and moved in c.message and "tag moved" in c.message
    assert site.cached() is None  # nothing copied
    assert site.printed == []  # no Plan written

    site.publish(moved)  # the fleet checks the new image and approves its digest
    p = site.run()
    assert p.outcomes["mirror"] == "ok" and p.outcomes["apply"] == "ok", p.errors
    assert site.cached() == moved
    plans = "\n".join(site.printed)
    assert f"image: {site.cache.host}/rancher/k3s-upgrade@{moved}" in plans
    assert f"version: {TARGET}" in plans


def test_bundle_create_carries_the_catalog_digest_and_refuses_a_moved_tag(site: Site) -> None:
    approved = site.push("a")
    site.publish(approved)
    old = f"{site.upstream.host}/rancher/k3s-upgrade:v1.27.16-k3s1"  # a step of --all, no digest
    older = push_image(site.tmp / "c", old).digest
    repo = str(site.tmp / "served" / "fleet.git")
    kubectl = [site.kubectl]  # the site's (its AgentConfig's apply.kubectlImage)
    r = create_bundle(
        repo=repo, out=site.tmp / "ok.tar", now=WHEN, all_targets=True, kubectl=kubectl
    )
    held = {i.ref: i.digest for i in r.images}
    upgrade = f"{site.upstream.host}/rancher/k3s-upgrade"
    # SUC's kubectl rides along by tag (the site's SUC chose it, not the fleet: no digest to check)
    assert held == {
        f"{upgrade}:{TAG}@{approved}": approved,
        old: older,
        site.kubectl: site.kubectl_digest,
    }

    moved = site.push("b")
    with pytest.raises(DigestMismatch) as e:
        create_bundle(
            repo=repo, out=site.tmp / "moved.tar", now=WHEN, all_targets=True, kubectl=kubectl
        )
    assert approved in str(e.value) and moved in str(e.value) and TAG in str(e.value)
    assert not (site.tmp / "moved.tar").exists()

    # the site imports the bundle made before the tag moved: it holds the approved bytes, the
    # import checks them against the catalog digest, and the Plans name them
    cfg = load_site_file(site.config.read_bytes(), path=str(site.config))
    assert isinstance(cfg, AgentConfig)
    agent = Agent(cfg, cluster=PrintCluster(config=cfg, out=site.printed.append))
    try:
        imported = import_bundle(agent, site.tmp / "ok.tar", now=WHEN)
    finally:
        agent.close()
    copied = {k: d for k, d, _ in imported.copied}
    # the approved bytes, then SUC's kubectl (what its Jobs run, issue 15; named by tag, its
    # cached digest is not the catalog's to check)
    assert list(copied) == [f"{upgrade}:{TAG}@{approved}", site.kubectl]
    assert copied[f"{upgrade}:{TAG}@{approved}"] == approved
    assert site.cached() == approved
    p = site.run()
    assert p.outcomes["apply"] == "ok", p.errors
    assert f"image: {site.cache.host}/rancher/k3s-upgrade@{approved}" in "\n".join(site.printed)
