"""Image signatures carried in an offline bundle: ``gitedge bundle create --platform`` copies each
image's cosign artifacts (both forms) and its signed index into the bundle; the site, with the
upstream registry and git server stopped, imports it into its own docker-registry cache and
judges the signatures from there against the TrustPolicy the bundle's commits carry. An image
the bundle carries unsigned is imported but not recorded as mirrored, naming the image.
"""

from __future__ import annotations

import socket
from contextlib import ExitStack
from pathlib import Path

import pytest

from gitedge.agent.steps.imagetrust import DOC
from tests.agentkit import START, FleetRepo, fleet_files, push_image, push_kubectl, trust_yaml
from tests.cosigntools import make_key, sign_bundle, sign_simple
from tests.gitserver import git_daemon
from tests.registryserver import docker_registry
from tests.sigtools import make_ssh_key
from tests.test_bundle import IN_WINDOW, agent_of, gitedge, write_site

RELEASES = ["v1.27.16+k3s1"]
TWO = ["v1.27.16+k3s1", "v1.28.15+k3s1"]


def test_bundle_carries_signatures_and_the_site_verifies_them_offline(tmp_path: Path) -> None:
    key = make_ssh_key(tmp_path / "keys", "ed25519", comment="release@fleet.example")
    served_dir = tmp_path / "served"
    fleet = FleetRepo(served_dir / "fleet.git", key)
    out = tmp_path / "stick" / "fleet.tar"
    signer = make_key("ed25519")
    pem = "\n".join("          " + ln for ln in signer.public_pem.strip().splitlines())
    with docker_registry(tmp_path / "cache") as site_cache, ExitStack() as upstream_side:
        upstream = upstream_side.enter_context(docker_registry(tmp_path / "upstream"))
        url = upstream_side.enter_context(git_daemon(served_dir))
        reg = upstream.host
        os_img = push_image(tmp_path, f"{reg}/edge/os:1.0")
        k3s_img = push_image(tmp_path / "k3s", f"{reg}/rancher/k3s-upgrade:v1.28.15-k3s1")
        sign_simple(reg, "edge/os", os_img.digest, signer)
        sign_bundle(reg, "rancher/k3s-upgrade", k3s_img.digest, signer)
        kubectl, _ = push_kubectl(tmp_path, reg)  # SUC's (issue 15): the site's choice, unsigned
        files = fleet_files(registry=reg, releases=TWO, k3s=TWO[1],
                            os_image=f"{reg}/edge/os:1.0")  # fmt: skip
        files[".gitedge/trust.yaml"] = trust_yaml(key).replace(
            "  images: {requireDigest: false}\n", ""
        ) + (
            "  images:\n    requireDigest: false\n    signers:\n      - name: edge-ci\n"
            f"        repositories: ['{reg}/edge/*', '{reg}/rancher/k3s-upgrade']\n"
            f"        key: |\n{pem}\n"
        )
        fleet.commit(files, at=START)
        cfg = write_site(tmp_path / "site", git_url=f"{url}/fleet.git", key=key,
                         k3s=RELEASES[0], cache=site_cache.host, kubectl=kubectl)  # fmt: skip
        created = gitedge("bundle", "create", "--repo", f"{url}/fleet.git", "--cluster",
                          str(cfg), "--platform", "linux/amd64", "--out", str(out))  # fmt: skip
        assert created.returncode == 0, created.stderr
        upstream_side.close()  # the upstream registry and git server are gone
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", upstream.port), timeout=2).close()

        imported = gitedge("bundle", "import", str(out), "--config", str(cfg))
        assert imported.returncode == 0, imported.stderr
        printed: list[str] = []
        agent = agent_of(cfg, printed)
        try:
            sigs = agent.state.get_doc(DOC)
            mirrored = agent.state.mirrored()
            p = agent.reconcile(now=IN_WINDOW)
        finally:
            agent.close()
    os_key, k3s_key = f"{reg}/edge/os:1.0", f"{reg}/rancher/k3s-upgrade:v1.28.15-k3s1"
    assert sigs[os_key]["verified"] and sigs[os_key]["form"] == "simple-signing"
    assert sigs[k3s_key]["verified"] and sigs[k3s_key]["form"] == "bundle"
    assert sigs[os_key]["digest"] == os_img.digest  # what was signed upstream
    assert sigs[k3s_key]["digest"] == k3s_img.digest
    assert mirrored[os_key].digest != os_img.digest  # the cache holds the amd64 cut of it
    # SUC's kubectl came along and is cached; the fleet's signers do not judge it (fleet_named)
    assert kubectl in mirrored and kubectl not in sigs
    assert p.outcomes["mirror"] == "ok" and p.outcomes["apply"] == "ok", p.errors
    assert printed


def test_bundle_with_an_unsigned_image_is_not_applied(tmp_path: Path) -> None:
    key = make_ssh_key(tmp_path / "keys", "ed25519", comment="release@fleet.example")
    served_dir = tmp_path / "served"
    fleet = FleetRepo(served_dir / "fleet.git", key)
    out = tmp_path / "fleet.tar"
    signer = make_key()
    pem = "\n".join("          " + ln for ln in signer.public_pem.strip().splitlines())
    with docker_registry(tmp_path / "cache") as site_cache, ExitStack() as upstream_side:
        upstream = upstream_side.enter_context(docker_registry(tmp_path / "upstream"))
        url = upstream_side.enter_context(git_daemon(served_dir))
        reg = upstream.host
        push_image(tmp_path, f"{reg}/edge/os:1.0")
        kubectl, _ = push_kubectl(tmp_path, reg)  # SUC's (issue 15), unsigned too
        files = fleet_files(registry=reg, releases=RELEASES, k3s=RELEASES[0],
                            os_image=f"{reg}/edge/os:1.0")  # fmt: skip
        files[".gitedge/trust.yaml"] = trust_yaml(key).replace(
            "  images: {requireDigest: false}\n", ""
        ) + (
            "  images:\n    requireDigest: false\n    signers:\n      - name: edge-ci\n"
            f"        repositories: ['*']\n        key: |\n{pem}\n"
        )
        fleet.commit(files, at=START)
        cfg = write_site(tmp_path / "site", git_url=f"{url}/fleet.git", key=key,
                         k3s=RELEASES[0], cache=site_cache.host, kubectl=kubectl)  # fmt: skip
        created = gitedge("bundle", "create", "--repo", f"{url}/fleet.git", "--cluster",
                          str(cfg), "--out", str(out))  # fmt: skip
        assert created.returncode == 0, created.stderr
        upstream_side.close()
        imported = gitedge("bundle", "import", str(out), "--config", str(cfg))
        assert f"{reg}/edge/os:1.0" in imported.stdout + imported.stderr
        assert "no signature found" in imported.stdout + imported.stderr
        printed: list[str] = []
        agent = agent_of(cfg, printed)
        try:
            assert f"{reg}/edge/os:1.0" not in agent.state.mirrored()
            # signers of '*' still judge only what the fleet names: SUC's kubectl is cached
            assert kubectl in agent.state.mirrored()
            p = agent.reconcile(now=IN_WINDOW)
        finally:
            agent.close()
    assert p.outcomes["apply"] == "waiting" and printed == []


def test_two_cut_images_of_one_repository_each_find_their_signed_digest(tmp_path: Path) -> None:
    """A bundle holding two tags of one repository, each cut to amd64 and signed: the import
    finds, for each cut index, the signed digest whose index lists its children."""
    from gitedge.adapters.images.mirroring import LayoutRef, Mirror
    from gitedge.agent.steps.imagetrust import bundle_signed_digest, carry_signatures
    from gitedge.core.images.manifests import Platform
    from gitedge.core.images.refs import ImageRef

    signer = make_key()
    layout = tmp_path / "bundle-layout"
    with docker_registry(tmp_path / "up") as up, Mirror() as m:
        got = {}
        for t in ("1.0", "1.1"):
            digest = push_image(tmp_path / t, f"{up.host}/edge/os:{t}").digest
            sign_simple(up.host, "edge/os", digest, signer)
            ref = ImageRef.parse(f"{up.host}/edge/os:{t}")
            r = m.mirror(
                ref, LayoutRef(layout, str(ref)), platforms=[Platform.parse("linux/amd64")]
            )
            assert r.digest != digest
            assert carry_signatures(m, ref=ref, src_image=ref, layout=layout, signed=digest,
                                    cached=r.digest, what=str(ref)) == 1  # fmt: skip
            got[t] = (digest, r.digest)
        for digest, cut in got.values():
            ref = ImageRef.parse(f"{up.host}/edge/os:x")
            assert bundle_signed_digest(m, layout=layout, ref=ref, cached=cut) == digest
        stranger = ImageRef.parse(f"{up.host}/edge/other:1")
        assert bundle_signed_digest(m, layout=layout, ref=stranger, cached=got["1.0"][1]) is None
