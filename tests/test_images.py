"""Image references: Docker's defaults (docker.io, library/), registries with ports, tags,
digests, and malformed references; cache URLs."""

import pytest

from gitedge.core.images.refs import ImageRef, cache_host

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "registry", "repo", "tag", "digest"),
    [
        ("rancher/k3s-upgrade", "docker.io", "rancher/k3s-upgrade", None, None),
        ("busybox:1.36", "docker.io", "library/busybox", "1.36", None),
        ("registry.example.com/edge/os:1.4.2", "registry.example.com", "edge/os", "1.4.2", None),
        (f"registry.example.com/edge/os:1.4.2@{D}", "registry.example.com", "edge/os", "1.4.2", D),
        (f"127.0.0.1:5000/edge/os@{D}", "127.0.0.1:5000", "edge/os", None, D),
        ("localhost/x", "localhost", "x", None, None),
        ("[::1]:5000/a/b:t", "[::1]:5000", "a/b", "t", None),
    ],
)
def test_parse(text, registry, repo, tag, digest):
    ref = ImageRef.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repo, tag, digest)


def test_with_registry_keeps_tag_and_digest():
    ref = ImageRef.parse(f"registry.example.com/edge/os:1.4.2@{D}").with_registry("10.0.0.1:5000")
    assert str(ref) == f"10.0.0.1:5000/edge/os:1.4.2@{D}"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "UPPER/case",
        "a/b:bad tag",
        "a@sha256:short",
        "a@md5:" + "a" * 32,
        " a",
        "a//b",
        "host:99999999/a",
    ],
)
def test_rejects(text):
    with pytest.raises(ValueError, match="invalid image reference"):
        ImageRef.parse(text)


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("127.0.0.1:5000", "127.0.0.1:5000"),
        ("http://cache.local:5000/", "cache.local:5000"),
        ("https://r.io", "r.io"),
    ],
)
def test_cache_host(url, host):
    assert cache_host(url) == host


def test_cache_host_rejects_path():
    with pytest.raises(ValueError, match="invalid registry cache url"):
        cache_host("http://cache:5000/some/path")


def test_a_digest_with_a_final_newline_is_not_a_digest() -> None:
    """``$`` in a pattern also matches before a final newline; a digest read from a header or a
    file must not carry one into a path or a reference."""
    from gitedge.core.images.manifests import is_digest

    good = "sha256:" + "a" * 64
    assert is_digest(good) and not is_digest(good + "\n")
    with pytest.raises(ValueError):
        ImageRef.parse(f"registry.example.com/edge/os@{good}\n")
