"""The cosign artifacts the tests sign (tests/cosigntools.py) and the referrers index gitedge
writes into a cache (``adapters/trust/imagesigs.referrers_index``), byte for byte against the upstream
type definitions run by Go's encoding/json: tests/data/cosign-formats (sigstore/sigstore's
simple-signing payload types, go-containerregistry's manifest types, cosign's referrerManifest,
sigstore-go's DSSE PAE; each copied unchanged, named in main.go), built with the machine's Go
(no module downloads: standard library only). Also the PAE gitedge verifies against."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from gitedge.adapters.trust.imagesigs import referrers_index
from gitedge.core.images.cosign import pae
from gitedge.core.images.manifests import OCI_MANIFEST, parse_manifest
from tests.cosigntools import BUNDLE, bundle_bytes, make_key, referrer_manifest, simple_payload

SRC = Path(__file__).parent / "data" / "cosign-formats"
ANNOTATIONS = {
    "dev.sigstore.bundle.content": "dsse-envelope",
    "dev.sigstore.bundle.predicateType": "https://sigstore.dev/cosign/sign/v1",
    "org.opencontainers.image.created": "2026-01-01T00:00:00Z",
}


def _harness(tmp_path: Path, req: dict[str, Any]) -> dict[str, bytes]:
    work = tmp_path / "cosign-formats"
    shutil.copytree(SRC, work)
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod", "GOPROXY": "off",
           "GOCACHE": str(tmp_path / "gocache"), "GOPATH": str(tmp_path / "gopath")}  # fmt: skip
    subprocess.run(["go", "build", "-o", "h", "."], cwd=work, env=env, check=True, timeout=300)
    out = subprocess.run([str(work / "h")], input=json.dumps(req).encode(), capture_output=True,
                         check=True, timeout=60)  # fmt: skip
    return {k: base64.b64decode(v) for k, v in json.loads(out.stdout).items()}


def _d(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_artifacts_match_the_upstream_types_byte_for_byte(tmp_path: Path) -> None:
    digest = _d(b"an image index")
    repository = "registry.example.com/edge/os"
    bundle = bundle_bytes(digest, make_key("ed25519"))
    statement = base64.b64decode(json.loads(bundle)["dsseEnvelope"]["payload"])
    subject = ("application/vnd.oci.image.index.v1+json", digest, 1234)
    ours = referrer_manifest(bundle=bundle, subject=subject)
    other = referrer_manifest(bundle=bundle + b" ", subject=subject)
    referrers = [parse_manifest(m, digest=_d(m), content_type=OCI_MANIFEST, where="t")
                 for m in (ours, other)]  # fmt: skip
    assert len(ours) == len(other)
    go = _harness(tmp_path, {
        "repository": repository, "digest": digest,
        "statement": base64.b64encode(statement).decode(),
        "bundle": {"mediaType": BUNDLE, "size": len(bundle), "digest": _d(bundle)},
        "subject": {"mediaType": subject[0], "size": subject[2], "digest": subject[1]},
        "annotations": ANNOTATIONS,
        "referrerDigests": [_d(ours), _d(other)], "referrerSize": len(ours),
    })  # fmt: skip
    assert simple_payload(repository, digest) == go["payload"]
    assert pae("application/vnd.in-toto+json", statement) == go["pae"]
    assert ours == go["referrer"]
    assert referrers_index(referrers) == go["index"]
