"""Mirroring when things go wrong, against real docker-registry instances on 127.0.0.1.

Covers: a TCP proxy cutting every source connection mid-blob (the copy resumes with HTTP Range,
re-sends nothing: our count and the proxy's own byte count agree); a source that ignores Range
(the bytes it sends again are skipped and counted as re-sent); every request answered 500 once,
then served (all retried, the copy exact); an upload failing once (that blob sent again and
counted); 429 with a short Retry-After (retried) and a long one (``Waiting``); a registry that
keeps failing (a bounded number of attempts with jittered backoff, then ``RegistryUnavailable``
naming the image); a blob with a wrong digest, a truncated blob, a blob longer than its
descriptor, and tampered manifests (index by tag, child by digest): each refused with
``DigestMismatch`` naming image and digest, nothing stored under that digest in a registry or
layout, no tag written, no partial files left; missing repositories, tags, digests and blobs
(``ImageNotFound`` naming the image).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from gitedge.adapters.images.mirroring import Mirror
from gitedge.adapters.registry.hosts import RetryPolicy
from gitedge.errors import DigestMismatch, ImageNotFound, RegistryUnavailable, Waiting
from tests.gitserver import tcp_proxy
from tests.registryserver import (
    LayoutImage,
    RegistryServer,
    fail_first,
    http_front,
    make_layout,
    module_registry,
    served,
    sha256,
    skopeo_push,
    skopeo_raw,
)

pytestmark = pytest.mark.timeout(90)

FAST = RetryPolicy(attempts=4, base_delay_s=0.01, max_delay_s=0.05, read_timeout_s=20)


src = module_registry("src")  # shared by the tests of this file; repos keep them apart
dst = module_registry("dst")


def pushed(src: RegistryServer, tmp_path: Path, repo: str, **kw: object) -> LayoutImage:
    """A fresh two-arch image of random bytes, put in ``src`` as ``repo:1.0`` by skopeo."""
    img = make_layout(tmp_path / repo.replace("/", "_"), **kw)  # type: ignore[arg-type]
    skopeo_push(img, f"{src.host}/{repo}:1.0")
    return img


def biggest(img: LayoutImage) -> str:
    return max(img.blobs, key=lambda d: img.blobs[d])


def assert_nothing_stored(dst: RegistryServer, repo: str, digest: str, layout: Path) -> None:
    """No blob under ``digest`` in the registry's store or the layout, no tag, no partials."""
    assert not dst.has_blob_file(digest)
    assert served(dst.host, repo, "1.0") is None
    assert not (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).exists()
    assert not list(layout.rglob(".partial-*"))
    index = layout / "index.json"
    assert not index.exists() or json.loads(index.read_text())["manifests"] == []


# ---------------------------------------------------------------------------- dropped links


def test_connection_cut_mid_blob_resumes_with_range(
    src: RegistryServer, dst: RegistryServer, tmp_path: Path
) -> None:
    img = pushed(src, tmp_path, "cut/os", layer_sizes=(1_500_000, 2_500_000))
    with tcp_proxy(src.port, cut_after=700_000) as proxy, Mirror(retry=FAST, jobs=2) as m:
        r = m.mirror(f"127.0.0.1:{proxy.port}/cut/os:1.0", f"{dst.host}/cut/os:1.0")
    assert r.digest == img.digest == sha256(skopeo_raw(f"{dst.host}/cut/os:1.0"))
    assert proxy.cut >= 5 and r.stats.resumes >= 5
    assert r.stats.bytes_resent == 0  # each resume asked for the rest, and got only that
    assert r.stats.bytes_received == img.total_bytes
    # The proxy's own count: the image once, plus headers and manifests, nothing twice.
    assert img.total_bytes < proxy.bytes_down < img.total_bytes + 100_000


def test_source_ignoring_range_sends_again_and_that_is_counted(
    src: RegistryServer, dst: RegistryServer, tmp_path: Path
) -> None:
    img = pushed(src, tmp_path, "norange/os", layer_sizes=(2_000_000,))
    big = biggest(img)

    def cut(method: str, path: str, n: int) -> int | None:
        return 1_000_000 if method == "GET" and big in path and n == 0 else None

    with http_front(src.port, cut=cut, drop_headers=("Range",)) as front, Mirror(retry=FAST) as m:
        r = m.mirror(f"{front.host}/norange/os:1.0", f"{dst.host}/norange/os:1.0")
    assert r.digest == img.digest == sha256(skopeo_raw(f"{dst.host}/norange/os:1.0"))
    assert front.cuts == 1 and r.stats.resumes == 1
    assert 0 < r.stats.bytes_resent <= 1_000_000  # what arrived before the cut, sent again
    assert r.stats.bytes_received == img.total_bytes + r.stats.bytes_resent
    assert front.statuses("GET", big) == [200, 200]  # the Range was dropped: full answers


# ---------------------------------------------------------------------------- 5xx and 429


def test_every_request_answered_500_once_then_served(
    src: RegistryServer, dst: RegistryServer, tmp_path: Path
) -> None:
    img = pushed(src, tmp_path, "e500/os")
    once = fail_first(1, status=500)

    def dst_fail(method: str, path: str, n: int) -> tuple[int, dict[str, str]] | None:
        # An upload URL is new for every upload, so failing each one's first PATCH would fail
        # every attempt; uploads failing are test_upload_failing_once_sends_that_blob_again's.
        return None if method == "PATCH" else once(method, path, n)

    with (
        http_front(src.port, fail=once) as sf,
        http_front(dst.port, fail=dst_fail) as df,
        Mirror(retry=FAST) as m,
    ):
        r = m.mirror(f"{sf.host}/e500/os:1.0", f"{df.host}/e500/os:1.0")
    assert r.digest == img.digest == sha256(skopeo_raw(f"{dst.host}/e500/os:1.0"))
    assert sf.statuses("GET", "/manifests/1.0") == [500, 200]
    for digest in img.blobs:
        assert sf.statuses("GET", digest) == [500, 200]
        assert df.statuses("HEAD", digest) == [500, 404]
    assert df.statuses("PUT", "/manifests/1.0") == [500, 201]
    assert 500 in df.statuses("POST", "/blobs/uploads/")
    assert r.stats.bytes_resent == 0


def test_upload_failing_once_sends_that_blob_again(
    src: RegistryServer, dst: RegistryServer, tmp_path: Path
) -> None:
    img = pushed(src, tmp_path, "patch500/os")
    patches = []

    def first_patch(method: str, path: str, n: int) -> tuple[int, dict[str, str]] | None:
        if method == "PATCH":
            patches.append(path)
            if len(patches) == 1:
                return 500, {}
        return None

    with http_front(dst.port, fail=first_patch) as df, Mirror(retry=FAST, jobs=1) as m:
        r = m.mirror(f"{src.host}/patch500/os:1.0", f"{df.host}/patch500/os:1.0")
    assert r.digest == img.digest == sha256(skopeo_raw(f"{dst.host}/patch500/os:1.0"))
    assert len(patches) == len(img.blobs) + 1
    largest = img.blobs[biggest(img)]  # jobs=1 copies the biggest first: that one failed
    assert r.stats.bytes_resent == largest
    assert r.stats.bytes_received == img.total_bytes + largest


def test_429_short_retry_after_is_retried_long_one_means_waiting(
    src: RegistryServer, dst: RegistryServer, tmp_path: Path
) -> None:
    img = pushed(src, tmp_path, "e429/os")
    short = fail_first(
        1, status=429, where="/manifests/", method="GET", headers={"Retry-After": "0"}
    )
    with http_front(src.port, fail=short) as front, Mirror(retry=FAST) as m:
        r = m.mirror(f"{front.host}/e429/os:1.0", f"{dst.host}/e429/os:1.0")
    assert r.digest == img.digest
    assert front.statuses("GET", "/manifests/1.0") == [429, 200]
    long = fail_first(99, status=429, where="/manifests/", headers={"Retry-After": "3600"})
    with (
        http_front(src.port, fail=long) as front,
        Mirror(retry=FAST) as m,
        pytest.raises(Waiting) as e,
    ):
        m.mirror(f"{front.host}/e429/os:1.0", f"{dst.host}/e429/os:2.0")
    assert e.value.retry_after == 3600
    assert f"{front.host}/e429/os:1.0" in str(e.value)
    assert front.statuses("GET", "/manifests/1.0") == [429]  # no hour-long sleep in a thread


def test_registry_that_keeps_failing_gives_up_after_bounded_backoff(
    src: RegistryServer, dst: RegistryServer, tmp_path: Path
) -> None:
    pushed(src, tmp_path, "e503/os")
    delays: list[float] = []
    always = fail_first(99, status=503, where="/manifests/")
    with (
        http_front(src.port, fail=always) as front,
        Mirror(retry=FAST, sleep=delays.append) as m,
        pytest.raises(RegistryUnavailable) as e,
    ):
        m.mirror(f"{front.host}/e503/os:1.0", f"{dst.host}/e503/os:1.0")
    assert f"{front.host}/e503/os:1.0" in str(e.value) and "503" in str(e.value)
    assert front.statuses("GET", "/manifests/1.0") == [503] * FAST.attempts
    assert len(delays) == FAST.attempts - 1
    assert all(0 <= d <= FAST.max_delay_s for d in delays)
    assert served(dst.host, "e503/os", "1.0") is None


# ---------------------------------------------------------------------------- bad content


def test_blob_with_a_wrong_digest_is_refused_and_nothing_stored(
    src: RegistryServer, dst: RegistryServer, tmp_path: Path
) -> None:
    img = pushed(src, tmp_path, "tamper/os")
    bad = biggest(img)
    path = src.blob_file(bad)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes: only the digest can tell
    path.write_bytes(bytes(data))
    layout = tmp_path / "out"
    with Mirror(retry=FAST) as m:
        with pytest.raises(DigestMismatch) as to_registry:
            m.mirror(f"{src.host}/tamper/os:1.0", f"{dst.host}/tamper/os:1.0")
        with pytest.raises(DigestMismatch) as to_layout:
            m.mirror(f"{src.host}/tamper/os:1.0", f"oci:{layout}:1.0")
    for e in (to_registry.value, to_layout.value):
        assert e.digest == bad and e.image == f"{src.host}/tamper/os:1.0"
        assert f"image {src.host}/tamper/os:1.0" in str(e) and "hash to sha256:" in str(e)
    assert_nothing_stored(dst, "tamper/os", bad, layout)


def test_truncated_blob_is_refused_and_nothing_stored(
    src: RegistryServer, dst: RegistryServer, tmp_path: Path
) -> None:
    img = pushed(src, tmp_path, "trunc/os")
    bad = biggest(img)
    path = src.blob_file(bad)
    path.write_bytes(path.read_bytes()[: img.blobs[bad] // 2])
    layout = tmp_path / "out"
    with Mirror(retry=FAST) as m:
        with pytest.raises(DigestMismatch, match="truncated") as to_registry:
            m.mirror(f"{src.host}/trunc/os:1.0", f"{dst.host}/trunc/os:1.0")
        with pytest.raises(DigestMismatch, match="truncated") as to_layout:
            m.mirror(f"{src.host}/trunc/os:1.0", f"oci:{layout}:1.0")
    assert to_registry.value.digest == to_layout.value.digest == bad
    assert f"{src.host}/trunc/os:1.0" in str(to_registry.value)
    assert_nothing_stored(dst, "trunc/os", bad, layout)


def test_blob_longer_than_its_descriptor_is_refused(dst: RegistryServer, tmp_path: Path) -> None:
    img = make_layout(tmp_path / "long", single=True, layer_sizes=(100_000,))
    blobs = img.path / "blobs" / "sha256"
    manifest = json.loads((blobs / img.digest[7:]).read_bytes())
    layer = manifest["layers"][0]
    layer["size"] -= 10  # the blob has ten bytes more than the manifest admits
    data = json.dumps(manifest).encode()
    (blobs / sha256(data)[7:]).write_bytes(data)
    index = json.loads((img.path / "index.json").read_text())
    index["manifests"][0].update(digest=sha256(data), size=len(data))
    (img.path / "index.json").write_text(json.dumps(index))
    with Mirror(retry=FAST) as m, pytest.raises(DigestMismatch, match="longer than") as e:
        m.mirror(f"oci:{img.path}:1.0", f"{dst.host}/long/os:1.0")
    assert e.value.digest == layer["digest"] and f"oci:{img.path}:1.0" in str(e.value)
    assert not dst.has_blob_file(layer["digest"])
    assert served(dst.host, "long/os", "1.0") is None


def test_tampered_manifests_are_refused(
    src: RegistryServer, dst: RegistryServer, tmp_path: Path
) -> None:
    child_img = pushed(src, tmp_path, "badchild/os")
    index_img = pushed(src, tmp_path, "badindex/os")
    child = child_img.manifests["linux/arm64"]
    for digest in (child, index_img.digest):
        path = src.blob_file(digest)
        path.write_bytes(path.read_bytes().replace(b'"schemaVersion"', b'"schemaVersioN"'))
    with Mirror(retry=FAST) as m:
        with pytest.raises(DigestMismatch, match="manifest bytes hash to") as bad_child:
            m.mirror(f"{src.host}/badchild/os:1.0", f"{dst.host}/badchild/os:1.0")
        with pytest.raises(DigestMismatch, match="manifest bytes hash to") as bad_index:
            m.mirror(f"{src.host}/badindex/os:1.0", f"{dst.host}/badindex/os:1.0")
    assert bad_child.value.digest == child and bad_index.value.digest == index_img.digest
    assert f"{src.host}/badchild/os:1.0" in str(bad_child.value)
    for repo, img in (("badchild/os", child_img), ("badindex/os", index_img)):
        assert served(dst.host, repo, "1.0") is None
        assert all(served(dst.host, repo, d) is None for d in img.manifests.values())
        assert not any(dst.has_blob_file(d) for d in img.blobs)  # refused before any blob


# ---------------------------------------------------------------------------- missing


def test_missing_repository_tag_digest_and_blob_are_named(
    src: RegistryServer, dst: RegistryServer, tmp_path: Path
) -> None:
    img = pushed(src, tmp_path, "present/os")
    absent = "sha256:" + "0" * 64
    refs = (
        f"{src.host}/nothing/here:1.0",
        f"{src.host}/present/os:9.9",
        f"{src.host}/present/os@{absent}",
    )
    with Mirror(retry=FAST) as m:
        for ref in refs:
            with pytest.raises(ImageNotFound) as e:
                m.mirror(ref, f"{dst.host}/missing/os:1.0")
            assert f"image {ref} not found in {src.host}" in str(e.value)
        src.blob_file(biggest(img)).unlink()
        with pytest.raises(ImageNotFound) as e:
            m.mirror(f"{src.host}/present/os:1.0", f"{dst.host}/missing/os:1.0")
    assert f"image {src.host}/present/os:1.0" in str(e.value) and biggest(img) in str(e.value)
    assert served(dst.host, "missing/os", "1.0") is None


def test_a_failed_blob_stops_the_other_transfers(
    src: RegistryServer, dst: RegistryServer, tmp_path: Path
) -> None:
    img = pushed(src, tmp_path, "stop/os", layer_sizes=(8_000_000, 20_000))
    bad = min(img.blobs, key=lambda d: img.blobs[d])  # a config: read in a few milliseconds
    src.blob_file(bad).write_bytes(src.blob_file(bad).read_bytes()[:-1])
    big = [d for d, n in img.blobs.items() if n > 8_000_000]
    before = threading.active_count()
    # The source trickles at 1 MB/s: the big layers would take 8 s, the bad blob fails at once.
    with (
        tcp_proxy(src.port, rate=1_000_000) as proxy,
        Mirror(retry=FAST, jobs=4) as m,
        pytest.raises(DigestMismatch) as e,
    ):
        m.mirror(f"127.0.0.1:{proxy.port}/stop/os:1.0", f"{dst.host}/stop/os:1.0")
    assert e.value.digest == bad  # the first failure is the one raised, not a cancellation
    assert len(big) == 2 and not any(dst.has_blob_file(d) for d in big)  # stopped, not finished
    assert threading.active_count() <= before  # the pool's threads are gone
    assert served(dst.host, "stop/os", "1.0") is None
