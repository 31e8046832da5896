"""Cosign signatures for tests, made with ``cryptography`` in exactly the formats cosign writes
(no cosign binary here: neither Debian nor the offline machine has one). Each field follows the
source line named beside it (sigstore/cosign d6d86c22, sigstore/sigstore, go-containerregistry,
sigstore-go, all read from their repositories):

- :func:`sign_simple` pushes the ``sha256-<hex>.sig`` image cosign's ``WriteSignatures``
  (``pkg/oci/remote/write.go``) writes: OCI manifest (``pkg/oci/empty/empty.go`` ``Signatures``:
  ``OCIManifestSchema1``, config ``OCIConfigJSON``), one layer per signature of media type
  ``application/vnd.dev.cosign.simplesigning.v1+json`` (``pkg/types/media.go``) annotated
  ``dev.cosignproject.cosign/signature`` = base64 signature (``pkg/oci/static/signature.go``),
  the payload being sigstore/sigstore ``payload.Cosign.MarshalJSON`` (Go ``json.Marshal``:
  compact, struct order, ``"optional":null`` with no annotations).
- :func:`sign_bundle` pushes the referrer ``WriteAttestationNewBundleFormat`` -> ``WriteReferrer``
  writes (``pkg/oci/remote/write.go``): empty config ``{}`` (``writeEmptyConfigLayer``, media type
  ``application/vnd.oci.empty.v1+json`` with the artifactType in the config descriptor), one
  layer ``application/vnd.dev.sigstore.bundle.v0.3+json``, ``subject``, the annotations
  ``org.opencontainers.image.created``, ``dev.sigstore.bundle.content: dsse-envelope`` and
  ``dev.sigstore.bundle.predicateType``, and the top-level ``artifactType`` (``referrerManifest``);
  then, the registry having no referrers API, the ``sha256-<hex>`` index go-containerregistry's
  ``commitSubjectReferrers`` (``pkg/v1/remote/write.go``) writes. The bundle: DSSE over the
  in-toto Statement of ``signDigestBundle`` (``cmd/cosign/cli/sign/sign.go``), payloadType
  ``application/vnd.in-toto+json`` (``signcommon/common.go`` ``NewAttestationBundle``), signed over
  sigstore-go's ``DSSEData.PreAuthEncoding``; key material as a ``publicKey`` hint, no tlog
  entries (``--tlog-upload=false``).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from gitedge.adapters.registry.client import RegistryClient, sized_body
from gitedge.adapters.registry.hosts import RetryPolicy
from gitedge.core.images.cosign import pae
from gitedge.core.images.manifests import OCI_INDEX, OCI_MANIFEST, parse_manifest

SIMPLE = "application/vnd.dev.cosign.simplesigning.v1+json"
BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
EMPTY = "application/vnd.oci.empty.v1+json"


@dataclass
class CosignKey:
    private: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

    @property
    def public_pem(self) -> str:
        return (
            self.private.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def sign(self, message: bytes) -> bytes:
        if isinstance(self.private, ec.EllipticCurvePrivateKey):
            return self.private.sign(message, ec.ECDSA(hashes.SHA256()))
        return self.private.sign(message)


def make_key(kind: str = "ecdsa") -> CosignKey:
    """``cosign generate-key-pair`` makes ECDSA P-256; ed25519 is the other kind accepted."""
    if kind == "ecdsa":
        return CosignKey(ec.generate_private_key(ec.SECP256R1()))
    return CosignKey(ed25519.Ed25519PrivateKey.generate())


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _go_json(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def push_blob(client: RegistryClient, repo: str, data: bytes) -> str:
    d = _digest(data)
    loc = client.start_upload(repo, what="test")
    assert loc is not None
    loc = client.patch_upload(loc, sized_body(iter([data]), len(data)), repo=repo, what="test")
    client.finish_upload(loc, d, repo=repo, what="test")
    return d


def push_manifest(client: RegistryClient, repo: str, ref: str, data: bytes, media: str) -> str:
    m = parse_manifest(data, digest=_digest(data), content_type=media, where="test")
    client.put_manifest(repo, ref, m, what="test")
    return m.digest


def client_for(host: str) -> RegistryClient:
    return RegistryClient(host=host, retry=RetryPolicy(attempts=1))


def simple_payload(repository: str, digest: str) -> bytes:
    """sigstore/sigstore payload.Cosign{Image: digest}.MarshalJSON()."""
    return _go_json({
        "critical": {
            "identity": {"docker-reference": repository},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": None,
    })  # fmt: skip


def sign_simple(host: str, repo: str, digest: str, key: CosignKey, *,
                payload_digest: str | None = None) -> str:  # fmt: skip
    """Push ``sha256-<hex>.sig`` for ``digest`` (the payload names ``payload_digest`` if given)."""
    c = client_for(host)
    try:
        payload = simple_payload(f"{host}/{repo}", payload_digest or digest)
        sig = base64.b64encode(key.sign(payload)).decode()
        layer = push_blob(c, repo, payload)
        config = _go_json({
            "architecture": "", "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"}], "os": "",
            "rootfs": {"type": "layers", "diff_ids": [layer]}, "config": {},
        })  # fmt: skip
        cfg = push_blob(c, repo, config)
        manifest = _go_json({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "size": len(config), "digest": cfg},
            "layers": [{"mediaType": SIMPLE, "size": len(payload), "digest": layer,
                        "annotations": {"dev.cosignproject.cosign/signature": sig}}],
        })  # fmt: skip
        tag = digest.replace(":", "-") + ".sig"
        return push_manifest(c, repo, tag, manifest, OCI_MANIFEST)
    finally:
        c.close()


def bundle_bytes(digest: str, key: CosignKey, *, statement_digest: str | None = None) -> bytes:
    hexpart = (statement_digest or digest).split(":", 1)[1]
    statement = _go_json({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"digest": {"sha256": hexpart}, "annotations": {}}],
        "predicateType": "https://sigstore.dev/cosign/sign/v1",
        "predicate": {},
    })  # fmt: skip
    sig = key.sign(pae("application/vnd.in-toto+json", statement))
    der = key.private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _go_json({
        "mediaType": BUNDLE,
        "verificationMaterial": {
            "publicKey": {"hint": base64.b64encode(hashlib.sha256(der).digest()).decode()},
            "tlogEntries": [],
        },
        "dsseEnvelope": {
            "payload": base64.b64encode(statement).decode(),
            "payloadType": "application/vnd.in-toto+json",
            "signatures": [{"sig": base64.b64encode(sig).decode()}],
        },
    })  # fmt: skip


def referrer_manifest(*, bundle: bytes, subject: tuple[str, str, int], layer_media: str = BUNDLE,
                      artifact_type: str = BUNDLE) -> bytes:  # fmt: skip
    media, digest, size = subject
    return _go_json({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": EMPTY, "size": 2, "digest": _digest(b"{}"),
                   "artifactType": artifact_type},
        "layers": [{"mediaType": layer_media, "size": len(bundle), "digest": _digest(bundle)}],
        "annotations": {"dev.sigstore.bundle.content": "dsse-envelope",
                        "dev.sigstore.bundle.predicateType": "https://sigstore.dev/cosign/sign/v1",
                        "org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
        "subject": {"mediaType": media, "size": size, "digest": digest},
        "artifactType": artifact_type,
    })  # fmt: skip


def sign_bundle(host: str, repo: str, digest: str, key: CosignKey, *,
                statement_digest: str | None = None) -> str:  # fmt: skip
    """Push a bundle referrer for ``digest`` and the ``sha256-<hex>`` fallback index."""
    c = client_for(host)
    try:
        top = c.get_manifest(repo, digest, what="test")
        bundle = bundle_bytes(digest, key, statement_digest=statement_digest)
        push_blob(c, repo, bundle)
        push_blob(c, repo, b"{}")
        manifest = referrer_manifest(bundle=bundle, subject=(top.media_type, digest, len(top.data)))
        ref = push_manifest(c, repo, _digest(manifest), manifest, OCI_MANIFEST)
        doc = json.loads(manifest)
        index = _go_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "size": len(manifest), "digest": ref,
             "annotations": doc["annotations"], "artifactType": BUNDLE}]})  # fmt: skip
        push_manifest(c, repo, digest.replace(":", "-"), index, OCI_INDEX)
        return ref
    finally:
        c.close()
