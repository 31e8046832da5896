"""``registry.endpoints`` outside the agent's pass: ``gitedge bundle create`` and ``gitedge mirror
--config`` read each image from a regional hub first, then the registry itself, exactly as the
agent's mirror step does (adapters/images/endpoints.py). A hub whose stored blob bytes were tampered with
is caught by the digest and skipped for the next endpoint, and the command says which endpoint
served the image. Real docker-registry instances on 127.0.0.1 and a real ``git daemon``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gitedge.adapters.images.mirroring import Mirror
from gitedge.adapters.images.ocilayout import OciLayout
from tests.agentkit import KUBECTL, START, fleet_files, push_image, push_kubectl, served_fleet_repo
from tests.gitserver import git_daemon
from tests.registryserver import RegistryServer, docker_registry


def tamper_layers(hub: RegistryServer) -> None:
    """One byte flipped in every layer the hub stores (the only blobs over 100 kB)."""
    layers = [f for f in (hub.root / "docker").rglob("data") if f.stat().st_size > 100_000]
    assert layers
    for layer in layers:
        data = bytearray(layer.read_bytes())
        data[len(data) // 2] ^= 0xFF
        layer.write_bytes(bytes(data))


@dataclass(frozen=True)
class World:
    tmp: Path
    git: str
    origin: str
    hub: str
    digest: str  # the image's digest at the origin
    config: Path  # an AgentConfig whose registry.endpoints put the hub before the origin


@contextmanager
def world(tmp: Path, *, tamper: bool) -> Iterator[World]:
    repo = served_fleet_repo(tmp)
    with (
        docker_registry(tmp / "origin") as origin,
        docker_registry(tmp / "hub") as hub,
        git_daemon(tmp / "served") as git,
    ):
        image = f"{origin.host}/edge/os:2.0"
        push_image(tmp, image, sizes=(300_000,))
        # SUC's kubectl (issue 15), which a bundle carries with any step: from the origin too
        kubectl, _ = push_kubectl(tmp, origin.host)
        with Mirror() as m:  # the hub holds a copy of each, as a pull-through cache would
            digest = m.mirror(image, f"{hub.host}/edge/os:2.0").source_digest
            m.mirror(kubectl, f"{hub.host}/{KUBECTL}")
        if tamper:
            tamper_layers(hub)
        repo.commit(
            fleet_files(registry=origin.host, releases=["v1.27.16+k3s1"], k3s="v1.27.16+k3s1",
                        os_image=image, window=False),
            at=START,
        )  # fmt: skip
        cfg = tmp / "agent.yaml"
        cfg.write_text(
            "apiVersion: gitedge.io/v1alpha1\nkind: AgentConfig\n"
            "cluster:\n  name: site-1\n  status: {k3sVersion: v1.27.16+k3s1, arches: [amd64]}\n"
            f"source: {{url: '{git}/fleet.git', interval: 1h}}\n"
            f"trust: {{bootstrap: {tmp / 'allowed_signers'}}}\n"
            f"registry: {{endpoints: {{'{origin.host}': ['{hub.host}']}}}}\n"
            f"apply: {{mode: print, kubectlImage: '{kubectl}'}}\n"
            f"state: {{dir: {tmp / 'state'}}}\n"
        )
        yield World(tmp, git, origin.host, hub.host, digest, cfg)


def gitedge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gitedge", *args], capture_output=True, text=True, timeout=120
    )


def bundle_create(w: World) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = w.tmp / "site-1.tar"
    r = gitedge("bundle", "create", "--repo", f"{w.git}/fleet.git", "--cluster", str(w.config),
                "--config", str(w.config), "--out", str(out), "-q")  # fmt: skip
    return r, out


def bundled_digest(w: World, bundle: Path) -> str | None:
    into = w.tmp / "unpacked"
    into.mkdir()
    subprocess.run(["tar", "-xf", str(bundle), "-C", str(into)], check=True, timeout=60)
    index = json.loads((into / "gitedge-bundle.json").read_text())
    (img,) = [i for i in index["images"] if i["ref"] == f"{w.origin}/edge/os:2.0"]
    layout = OciLayout(path=next(into.rglob("oci-layout")).parent)
    # every blob of the bundled image is in the layout and hashes to its digest
    assert layout.manifest_digest(img["ref"], what="test") == img["digest"]
    return str(img["digest"])


def test_bundle_create_reads_the_image_from_the_hub(tmp_path: Path) -> None:
    with world(tmp_path, tamper=False) as w:
        r, out = bundle_create(w)
        assert r.returncode == 0, r.stderr
        assert f"{w.origin}/edge/os:2.0 served by {w.hub}" in r.stdout.splitlines()
        # and SUC's kubectl, named by the AgentConfig's apply.kubectlImage
        assert f"{w.origin}/{KUBECTL} served by {w.hub}" in r.stdout.splitlines()
        assert "skipped" not in r.stderr
        assert bundled_digest(w, out) == w.digest


def test_bundle_create_skips_a_hub_serving_a_tampered_blob(tmp_path: Path) -> None:
    with world(tmp_path, tamper=True) as w:
        r, out = bundle_create(w)
        assert r.returncode == 0, r.stderr
        assert f"{w.origin}/edge/os:2.0 served by {w.origin}" in r.stdout.splitlines()
        # SUC's kubectl (small layers, not tampered with) is still read from the hub
        assert f"{w.origin}/{KUBECTL} served by {w.hub}" in r.stdout.splitlines()
        assert f"endpoint {w.hub} skipped" in r.stderr and "sha256:" in r.stderr, r.stderr
        assert bundled_digest(w, out) == w.digest


def mirror(w: World) -> dict[str, object]:
    r = gitedge("mirror", "--config", str(w.config), f"{w.origin}/edge/os:2.0",
                f"oci:{w.tmp / 'copy'}:2.0", "-q", "-o", "json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert isinstance(doc, dict)
    return doc


def test_mirror_with_config_reads_from_the_hub(tmp_path: Path) -> None:
    with world(tmp_path, tamper=False) as w:
        doc = mirror(w)
        assert (doc["servedBy"], doc["skipped"]) == (w.hub, [])
        assert doc["sourceDigest"] == w.digest


def test_mirror_with_config_skips_a_tampered_hub(tmp_path: Path) -> None:
    with world(tmp_path, tamper=True) as w:
        doc = mirror(w)
        assert doc["servedBy"] == w.origin
        (why,) = doc["skipped"]  # type: ignore[misc]
        assert why.startswith(f"endpoint {w.hub} skipped") and "sha256:" in why
        assert doc["sourceDigest"] == w.digest
        assert OciLayout(path=w.tmp / "copy").manifest_digest("2.0", what="t") == w.digest
