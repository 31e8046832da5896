"""The image cache (issue 13): an image counts as cached only when whole, and is applied only
from bytes verified in the cache.

Real parts: ``docker-registry`` upstream and cache on 127.0.0.1 (blobs tampered with in the
cache registry's own storage), a signed fleet repo served by ``git daemon``, ``gitedge mirror``
as a process, bundles made by ``create_bundle`` (what ``gitedge bundle create`` runs).

Covers: ``gitedge mirror`` into an OCI layout whose blobs were overwritten or removed (the
manifest file alone made it "up to date") copies them again; into a registry whose blob file
is gone, the same; an agent whose cache registry already holds the image with a blob of other
bytes (same size) refuses to apply it, names the blob and says to delete it, and after the
blob is deleted copies and applies; a registry cache's blobs are read back once per new image,
not every pass; a layout cache repairs a bad blob itself; a recorded image whose blob went
missing is copied again by the next pass (the row alone made it "in the cache"); a bundle
imported into a layout cache holding bad bytes repairs them from the bundle.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitedge.adapters.images.mirroring import Mirror
from gitedge.agent.bundles.importing import import_bundle
from gitedge.agent.reconcile import Agent, Pass
from gitedge.core.images.manifests import Platform
from gitedge.errors import DigestMismatch
from tests.agentkit import START
from tests.registryserver import RegistryServer, docker_registry, http_front
from tests.test_bundle import IN_WINDOW, RELEASES, World, agent_of, tag, write_site
from tests.test_bundle import world as world  # the module's shared upstream (fixture)

AMD64 = [Platform.parse("linux/amd64")]


def gitedge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gitedge", *args], capture_output=True, text=True, timeout=120
    )


def hashes_to(path: Path, digest: str) -> bool:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest() == digest


def hashes_to_name(path: Path) -> bool:
    return hashes_to(path, "sha256:" + path.name)


def garble(path: Path, *, same_size: bool) -> None:
    """Other bytes under a blob's name: of the same size, or one byte."""
    size = path.stat().st_size
    path.write_bytes(bytes(b ^ 0xFF for b in path.read_bytes()) if same_size else b"x")
    assert not same_size or path.stat().st_size == size


def mirror_json(src: str, dst: str) -> dict[str, object]:
    proc = gitedge("mirror", src, dst, "-o", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert isinstance(doc, dict)
    return doc


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[RegistryServer]:
    with docker_registry(tmp_path / "cache") as server:
        yield server


# ---------------------------------------------------------------------------- gitedge mirror


def test_mirror_into_a_layout_whose_blobs_were_overwritten_copies_them_again(
    world: World, tmp_path: Path
) -> None:
    src = f"{world.reg}/edge/os:1.0"
    layout = tmp_path / "layout"
    first = mirror_json(src, f"oci:{layout}:1.0")
    assert first["upToDate"] is False
    blobs = [layout / "blobs" / "sha256" / d.split(":")[1] for d in world.os_img.blobs]
    for i, path in enumerate(blobs):
        if i == 0:
            path.unlink()
        else:
            garble(path, same_size=False)
    again = mirror_json(src, f"oci:{layout}:1.0")
    assert again["upToDate"] is False and again["digest"] == first["digest"]
    assert again["blobs"] == {"copied": len(blobs), "present": 0, "mounted": 0}
    assert all(hashes_to_name(p) for p in blobs)
    assert mirror_json(src, f"oci:{layout}:1.0")["upToDate"] is True  # whole again: a no-op


def test_mirror_into_a_layout_whose_child_manifest_was_overwritten_rewrites_it(
    world: World, tmp_path: Path
) -> None:
    """Other bytes of the same size under a platform manifest's name: the manifest is read
    back and hashed on the fast path, and the copy rewrites it (its size alone matched)."""
    src = f"{world.reg}/edge/os:1.0"
    layout = tmp_path / "layout"
    mirror_json(src, f"oci:{layout}:1.0")
    child = layout / "blobs" / "sha256" / world.os_img.manifests["linux/amd64"].split(":")[1]
    garble(child, same_size=True)
    again = mirror_json(src, f"oci:{layout}:1.0")
    assert again["upToDate"] is False and again["blobs"] == {
        "copied": 0, "present": len(world.os_img.blobs), "mounted": 0
    }  # fmt: skip
    assert hashes_to_name(child)
    assert mirror_json(src, f"oci:{layout}:1.0")["upToDate"] is True


def test_mirror_into_a_registry_that_lost_a_blob_copies_it_again(
    world: World, cache: RegistryServer
) -> None:
    src, dst = f"{world.reg}/edge/os:1.0", f"{cache.host}/edge/os:1.0"
    mirror_json(src, dst)
    lost = sorted(world.os_img.blobs)[0]
    cache.blob_file(lost).unlink()
    again = mirror_json(src, dst)
    assert again["upToDate"] is False
    assert again["blobs"] == {"copied": 1, "present": len(world.os_img.blobs) - 1, "mounted": 0}
    assert hashes_to(cache.blob_file(lost), lost)


# ---------------------------------------------------------------------------- the agent


def site_with_cache(world: World, d: Path, name: str, cache: str | None) -> Path:
    """A site (K3s v1.29.10: its plan needs k3s v1.30.6 and the OS image) on a served fleet."""
    fleet = world.repo(name)
    if fleet.head is None:
        fleet.commit(world.files(), at=START)
    return write_site(d, git_url=f"{world.url}/{name}.git", key=world.key, k3s=RELEASES[2],
                      cache=cache, kubectl=world.kubectl)  # fmt: skip


def run(cfg: Path, printed: list[str] | None = None) -> Pass:
    agent = agent_of(cfg, printed)
    try:
        return agent.reconcile(now=IN_WINDOW)
    finally:
        agent.close()


def mirrored(cfg: Path) -> dict[str, str]:
    agent = agent_of(cfg)
    try:
        return {k: m.digest for k, m in agent.state.mirrored().items()}
    finally:
        agent.close()


def test_a_cache_registry_holding_other_bytes_is_not_applied_until_the_blob_is_deleted(
    world: World, cache: RegistryServer, tmp_path: Path
) -> None:
    """The image is in the cache registry already (another site put it there), but one of its
    blobs holds other bytes of the same size: whole by every cheap check. Before, the pass
    recorded it and applied; now every blob is read back once before the image is recorded, the
    mirror step stalls naming the image and blob, nothing is applied or recorded. Deleting the
    blob from the cache registry, as the message says, lets the next pass copy and apply."""
    os_ref = f"{world.reg}/edge/os:1.0"
    with Mirror() as m:
        m.mirror(os_ref, f"{cache.host}/edge/os:1.0", platforms=AMD64)
    bad = next(d for d in sorted(world.os_img.blobs) if cache.has_blob_file(d))
    garble(cache.blob_file(bad), same_size=True)

    cfg = site_with_cache(world, tmp_path / "site", "corrupt-cache", cache.host)
    printed: list[str] = []
    p = run(cfg, printed)
    assert p.outcomes["mirror"] == "stalled" and p.outcomes["apply"] == "waiting"
    assert printed == [] and not p.mirror_complete
    text = p.errors["mirror"]
    assert f"image {os_ref}" in text and bad in text and "delete it from the cache registry" in text
    assert os_ref not in mirrored(cfg)  # the k3s image (copied, verified) is; this one is not
    assert f"{world.reg}/rancher/k3s-upgrade:{tag(RELEASES[3])}" in mirrored(cfg)

    cache.blob_file(bad).parent.rename(tmp_path / "deleted-blob")  # what the operator does
    p = run(cfg, printed)
    assert p.outcomes["mirror"] == "ok" and p.outcomes["apply"] == "ok" and printed
    assert os_ref in mirrored(cfg) and hashes_to(cache.blob_file(bad), bad)


def test_a_registry_cache_is_read_back_once_per_image_not_every_pass(
    world: World, cache: RegistryServer, tmp_path: Path
) -> None:
    os_ref = f"{world.reg}/edge/os:1.0"
    with Mirror() as m:  # already there, put by someone else: its blobs must be read back
        m.mirror(os_ref, f"{cache.host}/edge/os:1.0", platforms=AMD64)
    with http_front(cache.port) as front:
        cfg = site_with_cache(world, tmp_path / "site", "read-once", front.host)
        assert run(cfg).outcomes["mirror"] == "ok"
        os_gets = front.statuses("GET", "/v2/edge/os/blobs/")
        k3s_gets = front.statuses("GET", "/v2/rancher/k3s-upgrade/blobs/")
        # the os image's two blobs (amd64 config and layer) read back once; the k3s image's
        # blobs were copied by this pass, hashed on their way in: not read back
        assert os_gets == [200, 200] and k3s_gets == []
        front.seen.clear()
        p = run(cfg)
        assert p.outcomes["mirror"] == "ok" and p.mirrored_now == []
        assert front.statuses("GET", "/blobs/") == []  # the next pass: HEADs only
        assert len(front.statuses("HEAD", "/blobs/")) == 6  # every blob of the three images


def test_a_layout_cache_repairs_a_blob_of_other_bytes(world: World, tmp_path: Path) -> None:
    cfg = site_with_cache(world, tmp_path / "site", "layout-repair", None)
    os_layout = tmp_path / "site" / "state" / "cache" / world.reg / "edge" / "os"
    with Mirror() as m:  # the layout the agent uses already holds the image
        m.mirror(f"{world.reg}/edge/os:1.0", f"oci:{os_layout}:1.0", platforms=AMD64)
    files = [f for f in (os_layout / "blobs" / "sha256").iterdir() if f"sha256:{f.name}"
             in world.os_img.blobs]  # fmt: skip
    assert len(files) == 2
    for f in files:
        garble(f, same_size=True)
    printed: list[str] = []
    p = run(cfg, printed)
    assert p.outcomes["mirror"] == "ok" and p.outcomes["apply"] == "ok" and printed
    assert all(hashes_to_name(f) for f in files)


def test_a_recorded_image_whose_blob_went_missing_is_copied_again(
    world: World, tmp_path: Path
) -> None:
    cfg = site_with_cache(world, tmp_path / "site", "layout-gap", None)
    assert run(cfg).outcomes["mirror"] == "ok"
    os_layout = tmp_path / "site" / "state" / "cache" / world.reg / "edge" / "os"
    lost = next(f for f in (os_layout / "blobs" / "sha256").iterdir()
                if f"sha256:{f.name}" in world.os_img.blobs)  # fmt: skip
    lost.unlink()
    p = run(cfg)
    assert p.outcomes["mirror"] == "ok"
    assert [k for k, _, _ in p.mirrored_now] == [f"{world.reg}/edge/os:1.0"]
    assert hashes_to_name(lost)


# ---------------------------------------------------------------------------- bundle import


def test_a_bundle_import_repairs_a_layout_cache_holding_other_bytes(
    world: World, tmp_path: Path
) -> None:
    fleet = world.repo("bundle-repair")
    tip = fleet.commit(world.files(), at=START)
    out = world.bundle("bundle-repair", tmp_path / "b.tar", rev=tip)
    cfg = world.site(tmp_path / "site")
    os_layout = tmp_path / "site" / "state" / "cache" / world.reg / "edge" / "os"
    with Mirror() as m:
        m.mirror(f"{world.reg}/edge/os:1.0", f"oci:{os_layout}:1.0", platforms=AMD64)
    files = [f for f in (os_layout / "blobs" / "sha256").iterdir() if f"sha256:{f.name}"
             in world.os_img.blobs]  # fmt: skip
    for f in files:
        garble(f, same_size=True)
    agent: Agent = agent_of(cfg)
    try:
        r = import_bundle(agent, out, now=IN_WINDOW)
    finally:
        agent.close()
    assert r.tip == tip and f"{world.reg}/edge/os:1.0" in {k for k, _, _ in r.copied}
    assert all(hashes_to_name(f) for f in files)


def test_a_bundle_import_into_a_registry_cache_holding_other_bytes_is_refused(
    world: World, cache: RegistryServer, tmp_path: Path
) -> None:
    fleet = world.repo("bundle-refused")
    tip = fleet.commit(world.files(), at=START)
    out = world.bundle("bundle-refused", tmp_path / "b.tar", rev=tip)
    cfg = write_site(tmp_path / "site", git_url=f"{world.url}/absent.git", key=world.key,
                     k3s=RELEASES[2], cache=cache.host)  # fmt: skip
    os_ref = f"{world.reg}/edge/os:1.0"
    with Mirror() as m:
        m.mirror(os_ref, f"{cache.host}/edge/os:1.0", platforms=AMD64)
    bad = next(d for d in sorted(world.os_img.blobs) if cache.has_blob_file(d))
    garble(cache.blob_file(bad), same_size=True)
    agent = agent_of(cfg)
    try:
        with pytest.raises(DigestMismatch) as e:
            import_bundle(agent, out, now=IN_WINDOW)
        assert e.value.image == os_ref and e.value.digest == bad
        assert os_ref not in {k for k in agent.state.mirrored()}
    finally:
        agent.close()


# ---------------------------------------------------------------------------- a hostile layout


@pytest.mark.parametrize("what", ["index-fifo", "index-dev-zero", "index-huge", "blob-fifo"])
def test_a_layout_on_a_stick_that_is_not_files_is_refused_not_waited_on(
    world: World, tmp_path: Path, what: str
) -> None:
    """A layout nobody checked: index.json a FIFO (opening it would block for ever), a symlink
    to /dev/zero (reading it, endless), 17 MiB of it; a blob that is a FIFO. Each is refused
    naming the file, within the subprocess timeout, and the destination gets no tag."""
    layout = tmp_path / "stick"
    mirror_json(f"{world.reg}/edge/os:1.0", f"oci:{layout}:1.0")
    index = layout / "index.json"
    if what == "index-fifo":
        index.unlink()
        os.mkfifo(index)
    elif what == "index-dev-zero":
        index.unlink()
        index.symlink_to("/dev/zero")
    elif what == "index-huge":
        index.write_bytes(b" " * (17 << 20) + index.read_bytes())
    else:
        blob = layout / "blobs" / "sha256" / sorted(world.os_img.blobs)[0].split(":")[1]
        blob.unlink()
        os.mkfifo(blob)
    out = tmp_path / "out"
    proc = gitedge("mirror", f"oci:{layout}:1.0", f"oci:{out}:1.0")
    assert proc.returncode == 1, proc.stderr
    said = proc.stdout + proc.stderr
    assert "Traceback" not in said
    assert ("not a regular file" if what != "index-huge" else "over the 16 MiB limit") in said
    assert str(layout) in said
    assert not (out / "index.json").exists()  # no tag: at most verified blobs were written
