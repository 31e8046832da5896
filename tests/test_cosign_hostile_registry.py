"""Signature artifacts are hostile input: a real ``docker-registry`` on 127.0.0.1 serving a
``.sig`` layer over the size cap, a referrers index naming more referrers than are read, a
``sha256-<hex>`` tag that is not an index, and referrers of other kinds. Each ends in a clear
problem (never a crash, never a large read), and a valid signature beside them still counts.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from gitedge.adapters.images.mirroring import Mirror
from gitedge.adapters.trust.imagesigs import SigSite, find_signatures, verify
from gitedge.core.images.cosign import (
    MAX_SIGNATURE_BLOB,
    MAX_SIGNATURES,
    SignerKey,
    load_public_key,
)
from gitedge.core.images.manifests import OCI_INDEX, OCI_MANIFEST
from gitedge.core.images.refs import ImageRef
from tests.agentkit import push_image
from tests.cosigntools import (
    SIMPLE,
    client_for,
    make_key,
    push_blob,
    push_manifest,
    sign_bundle,
)
from tests.registryserver import RegistryServer, _threaded_server, docker_registry


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    with docker_registry(tmp_path_factory.mktemp("hostile-sigs")) as r:
        yield r


def image(reg: RegistryServer, tmp: Path, repo: str) -> str:
    return push_image(tmp, f"{reg.host}/{repo}:1").digest


def found(reg: RegistryServer, repo: str, digest: str) -> Any:
    with Mirror() as m:
        return find_signatures(m, SigSite(ref=ImageRef(reg.host, repo)), digest, what=repo)


def test_oversized_signature_layer_is_not_read(reg: RegistryServer, tmp_path: Path) -> None:
    digest = image(reg, tmp_path, "big/sig")
    c = client_for(reg.host)
    try:
        payload = b" " * (MAX_SIGNATURE_BLOB + 10)
        layer = push_blob(c, "big/sig", payload)
        cfg = push_blob(c, "big/sig", b"{}")
        m = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                   "digest": cfg, "size": 2},
                        "layers": [{"mediaType": SIMPLE, "digest": layer, "size": len(payload),
                                    "annotations": {"dev.cosignproject.cosign/signature": "AA=="}}]
                        }).encode()  # fmt: skip
        push_manifest(c, "big/sig", digest.replace(":", "-") + ".sig", m, OCI_MANIFEST)
    finally:
        c.close()
    f = found(reg, "big/sig", digest)
    assert f.candidates == [] and any(f"more than the {MAX_SIGNATURE_BLOB}" in p
                                      for p in f.problems)  # fmt: skip


def test_too_many_referrers_and_a_fallback_tag_that_is_not_an_index(
    reg: RegistryServer, tmp_path: Path
) -> None:
    digest = image(reg, tmp_path, "many/refs")
    key = make_key()
    ref = sign_bundle(reg.host, "many/refs", digest, key)
    c = client_for(reg.host)
    try:  # the fallback index names the real referrer after 40 of another kind... and itself
        entries = [
            {
                "mediaType": OCI_MANIFEST,
                "digest": ref,
                "size": 1,
                "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            }
        ] * 40
        idx = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
        push_manifest(c, "many/refs", digest.replace(":", "-"), idx.encode(), OCI_INDEX)
    finally:
        c.close()
    f = found(reg, "many/refs", digest)
    assert any(f"only {MAX_SIGNATURES} read" in p for p in f.problems)
    assert any("not a bundle referrer" in p for p in f.problems)  # size 1 is a lie: refused
    keys = (SignerKey("k", load_public_key(key.public_pem), ("*",)),)
    v = verify(f, keys=keys, repository=f"{reg.host}/many/refs", digest=digest)
    assert not v.ok and "no signature found" in v.reason and "also:" in v.reason


def test_fallback_tag_holding_a_platform_index_not_referrers(
    reg: RegistryServer, tmp_path: Path
) -> None:
    digest = image(reg, tmp_path, "odd/tag")
    other = push_image(tmp_path / "o", f"{reg.host}/odd/tag:{digest.replace(':', '-')}")
    assert other.digest
    f = found(reg, "odd/tag", digest)
    assert f.candidates == []
    assert f.problems  # named, not crashed on


def test_a_cut_index_is_held_to_the_signed_index_child_by_child(tmp_path: Path) -> None:
    """The cache holds a platform cut (new digest) and the signed index as a blob: the cut of
    the signed image passes; an index naming a child the signed index lacks does not."""
    from gitedge.adapters.images.mirroring import LayoutRef
    from gitedge.adapters.images.signedindex import check_cut_index, keep_signed_index
    from gitedge.core.images.manifests import Platform
    from tests.registryserver import make_layout

    signed = make_layout(tmp_path / "a", tag="1", layer_sizes=(1000,))
    other = make_layout(tmp_path / "b", tag="1", layer_sizes=(1000,))
    cache = tmp_path / "cache"
    amd64 = [Platform.parse("linux/amd64")]
    with Mirror() as m:
        cut = m.mirror(f"oci:{signed.path}:1", f"oci:{cache}:cut", platforms=amd64)
        foreign = m.mirror(f"oci:{other.path}:1", f"oci:{cache}:foreign", platforms=amd64)
        assert cut.digest != signed.digest
        dst = LayoutRef(cache)
        missing = check_cut_index(m, dst=dst, signed=signed.digest, cached=cut.digest, what="t")
        assert missing and "not the signed index" in missing
        keep_signed_index(m, src_image=LayoutRef(signed.path, "1"), dst=dst,
                          digest=signed.digest, what="t")  # fmt: skip
        assert check_cut_index(m, dst=dst, signed=signed.digest, cached=cut.digest,
                               what="t") is None  # fmt: skip
        bad = check_cut_index(m, dst=dst, signed=signed.digest, cached=foreign.digest, what="t")
        assert bad and "which the signed index does not" in bad


@contextlib.contextmanager
def referrers_api(target: RegistryServer, answers: dict[str, bytes]) -> Iterator[str]:
    """A registry with the OCI 1.1 referrers API, played in front of docker-registry (which has
    none): ``GET /v2/<repo>/referrers/<digest>`` answers the index in ``answers`` (an empty
    one otherwise) with Content-Type ``application/vnd.oci.image.index.v1+json``, as the
    distribution spec's "Listing Referrers" says; every other GET/HEAD is forwarded."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:
            if "/referrers/" in self.path:
                digest = self.path.split("?", 1)[0].rsplit("/", 1)[1]
                empty = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
                body = answers.get(digest, empty.encode())
                self._answer(200, {"Content-Type": OCI_INDEX}, body)
                return
            conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=30)
            try:
                conn.request(self.command, self.path,
                             headers={k: v for k, v in self.headers.items()
                                      if k.lower() in ("accept", "range")})  # fmt: skip
                r = conn.getresponse()
                body = r.read()
                keep = ("content-type", "docker-content-digest", "content-range")
                self._answer(r.status, {k: v for k, v in r.getheaders() if k.lower() in keep},
                             body)  # fmt: skip
            finally:
                conn.close()

        do_HEAD = do_GET  # noqa: N815 (http.server dispatches on the method name)

    with _threaded_server(Handler) as port:
        yield f"127.0.0.1:{port}"


def test_the_referrers_api_is_asked_first(reg: RegistryServer, tmp_path: Path) -> None:
    """A registry with the referrers API lists the bundle there; no fallback tag exists. Its
    answer is what is read (go-containerregistry ``fetchReferrers`` asks the API first)."""
    digest = image(reg, tmp_path, "api/refs")
    key = make_key("ed25519")
    ref = sign_bundle(reg.host, "api/refs", digest, key)
    c = client_for(reg.host)
    try:  # the fallback tag goes: only the API lists the referrer now
        r = c.call("GET", f"/v2/api/refs/manifests/{digest.replace(':', '-')}", repo="api/refs",
                   what="t", headers={"Accept": OCI_INDEX})  # fmt: skip
        listed = r.content
        d = c.call("DELETE", f"/v2/api/refs/manifests/{r.headers['Docker-Content-Digest']}",
                   repo="api/refs", what="t")  # fmt: skip
        assert d.status_code == 202
    finally:
        c.close()
    assert ref in listed.decode()
    keys = (SignerKey("k", load_public_key(key.public_pem), ("*",)),)
    with referrers_api(reg, {digest: listed}) as host:
        with Mirror() as m:
            f = find_signatures(m, SigSite(ref=ImageRef(host, "api/refs")), digest, what="t")
        assert verify(f, keys=keys, repository=f"{host}/api/refs", digest=digest).ok
        with Mirror() as m:  # the API lists nothing: no signature, though the registry holds one
            f = find_signatures(m, SigSite(ref=ImageRef(host, "api/refs")), OTHER, what="t")
        assert f.candidates == []
    with Mirror() as m:  # without the API, and with the fallback tag gone: nothing found
        f = find_signatures(m, SigSite(ref=ImageRef(reg.host, "api/refs")), digest, what="t")
    assert f.referrers == []


OTHER = "sha256:" + "0" * 64


def test_a_registry_that_fails_is_retried_later_not_a_refusal(
    reg: RegistryServer, tmp_path: Path
) -> None:
    """503 on the fallback tag: RegistryUnavailable (the pass retries), never a verdict that
    says the signature is missing."""
    from gitedge.adapters.registry.hosts import RetryPolicy
    from gitedge.errors import RegistryUnavailable
    from tests.registryserver import http_front

    digest = image(reg, tmp_path, "flaky/sig")
    tag = digest.replace(":", "-")

    def fail(method: str, path: str, n: int) -> tuple[int, dict[str, str]] | None:
        return (503, {}) if path.endswith(f"/manifests/{tag}") else None

    with (
        http_front(reg.port, fail=fail) as front,
        Mirror(retry=RetryPolicy(attempts=1)) as m,
        pytest.raises(RegistryUnavailable),
    ):
        find_signatures(m, SigSite(ref=ImageRef(front.host, "flaky/sig")), digest, what="t")


def test_a_sig_manifest_with_a_huge_config_is_neither_judged_nor_copied(
    reg: RegistryServer, tmp_path: Path
) -> None:
    """A valid signature layer beside a config blob over the cap: the artifact is refused as a
    whole (it would be copied into every site's cache), naming the config's size."""
    from tests.cosigntools import simple_payload

    digest = image(reg, tmp_path, "big/config")
    key = make_key()
    c = client_for(reg.host)
    try:
        payload = simple_payload(f"{reg.host}/big/config", digest)
        sig = base64.b64encode(key.sign(payload)).decode()
        layer = push_blob(c, "big/config", payload)
        config = b"{" + b" " * (MAX_SIGNATURE_BLOB + 10) + b"}"
        cfg = push_blob(c, "big/config", config)
        m = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                   "digest": cfg, "size": len(config)},
                        "layers": [{"mediaType": SIMPLE, "digest": layer, "size": len(payload),
                                    "annotations": {"dev.cosignproject.cosign/signature": sig}}]
                        }).encode()  # fmt: skip
        push_manifest(c, "big/config", digest.replace(":", "-") + ".sig", m, OCI_MANIFEST)
    finally:
        c.close()
    f = found(reg, "big/config", digest)
    assert f.sig is None and f.candidates == []
    assert any(f"config blob of {len(config)} bytes" in p for p in f.problems)
