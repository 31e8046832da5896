"""The cosign signature parser and judge (``core/images/cosign.py``) on hostile input: malformed and
deeply nested JSON, oversized blobs, wrong media types and artifact types, bad base64, subjects
and payloads naming other digests, and random mutations of valid artifacts (hypothesis). Only
ValueError may come out, and nothing but an untouched, allowed signature is ever accepted.
The artifacts are the bytes ``tests/cosigntools.py`` builds as cosign writes them.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitedge.core.images.cosign import (
    MAX_SIGNATURE_BLOB,
    SignerKey,
    bundle_referrer,
    judge,
    load_public_key,
    simple_signing,
)
from tests.cosigntools import (
    SIMPLE,
    CosignKey,
    bundle_bytes,
    make_key,
    referrer_manifest,
    simple_payload,
)

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
REPO = "registry.example.com/edge/os"
KEY = make_key("ecdsa")
ED = make_key("ed25519")


def _d(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sig_artifact(key: CosignKey, *, digest: str = DIGEST, media: str = SIMPLE,
                 sig: str | None = None) -> tuple[bytes, dict[str, bytes]]:  # fmt: skip
    payload = simple_payload(REPO, digest)
    b64 = sig if sig is not None else base64.b64encode(key.sign(payload)).decode()
    manifest = json.dumps({"schemaVersion": 2, "layers": [
        {"mediaType": media, "digest": _d(payload), "size": len(payload),
         "annotations": {"dev.cosignproject.cosign/signature": b64}}]}).encode()  # fmt: skip
    return manifest, {_d(payload): payload}


def bundle_artifact(key: CosignKey, *, statement_digest: str | None = None, **kw: Any
                    ) -> tuple[bytes, dict[str, bytes]]:  # fmt: skip
    b = bundle_bytes(DIGEST, key, statement_digest=statement_digest)
    m = referrer_manifest(bundle=b, subject=("application/vnd.oci.image.index.v1+json", DIGEST,
                                             1000), **kw)  # fmt: skip
    return m, {_d(b): b}


def signers(*keys: CosignKey, globs: tuple[str, ...] = ("registry.example.com/edge/*",)
            ) -> list[SignerKey]:  # fmt: skip
    return [SignerKey(f"k{i}", load_public_key(k.public_pem), globs) for i, k in enumerate(keys)]


def verdict_simple(manifest: bytes, blobs: dict[str, bytes], keys: list[SignerKey]) -> Any:
    cands, problems = simple_signing(manifest, blobs, where="t.sig")
    return judge(repository=REPO, digest=DIGEST, candidates=cands, signers=keys, problems=problems)


def test_valid_artifacts_of_both_kinds_and_keys_are_accepted() -> None:
    for key in (KEY, ED):
        assert verdict_simple(*sig_artifact(key), signers(key)).ok
        c = bundle_referrer(*bundle_artifact(key), subject=DIGEST, where="r")
        assert judge(repository=REPO, digest=DIGEST, candidates=[c], signers=signers(key)).ok


def test_reasons_other_digest_foreign_repository_unknown_key_missing() -> None:
    v = verdict_simple(*sig_artifact(KEY, digest=OTHER), signers(KEY))
    assert not v.ok and f"over another digest, {OTHER}" in v.reason
    v = verdict_simple(*sig_artifact(KEY), signers(KEY, globs=("registry.example.com/other/*",)))
    assert not v.ok and "not allowed to sign registry.example.com/edge/os" in v.reason
    v = verdict_simple(*sig_artifact(KEY), signers(ED))
    assert not v.ok and "none verifies" in v.reason
    v = judge(repository=REPO, digest=DIGEST, candidates=[], signers=signers(KEY))
    assert not v.ok and "no signature found" in v.reason
    c = bundle_referrer(*bundle_artifact(KEY, statement_digest=OTHER), subject=DIGEST, where="r")
    assert c.claimed == OTHER
    assert "over another digest" in judge(repository=REPO, digest=DIGEST, candidates=[c],
                                          signers=signers(KEY)).reason  # fmt: skip


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"media": "application/vnd.oci.image.layer.v1.tar+gzip"}, "not simple signing"),
        ({"sig": "%%%not base64%%%"}, "not valid base64"),
        ({"sig": ""}, ""),  # empty signature: verifies with nobody
    ],
)
def test_simple_signing_layer_problems_are_listed_not_raised(kw: Any, needle: str) -> None:
    v = verdict_simple(*sig_artifact(KEY, **kw), signers(KEY))
    assert not v.ok and needle in v.reason


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"artifact_type": "application/vnd.dev.cosign.artifact.sig.v1+json"}, "artifactType"),
        ({"layer_media": "application/octet-stream"}, "layer media type"),
    ],
)
def test_wrong_bundle_media_types_are_refused(kw: Any, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        bundle_referrer(*bundle_artifact(KEY, **kw), subject=DIGEST, where="r")


def test_referrer_of_another_subject_is_refused() -> None:
    with pytest.raises(ValueError, match="subject"):
        bundle_referrer(*bundle_artifact(KEY), subject=OTHER, where="r")


def test_oversized_nested_and_non_object_payloads() -> None:
    manifest, blobs = sig_artifact(KEY)
    (digest,) = blobs
    for bad in (b"{" * 5 + b"}" * 5, b"[" * 100_000 + b"]" * 100_000, b"[1,2]", b"\xff\xfe",
                b'{"a":' * 40 + b"1" + b"}" * 40, b" " * (MAX_SIGNATURE_BLOB + 1)):  # fmt: skip
        v = verdict_simple(manifest, {digest: bad}, signers(KEY))
        assert not v.ok
    with pytest.raises(ValueError, match="more than"):
        simple_signing(b" " * (MAX_SIGNATURE_BLOB + 1), {}, where="t")
    many = json.dumps({"layers": [{}] * 33}).encode()
    with pytest.raises(ValueError, match="33 layers"):
        simple_signing(many, {}, where="t")


def test_keys_other_than_p256_and_ed25519_are_refused() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    for priv in (ec.generate_private_key(ec.SECP384R1()),
                 rsa.generate_private_key(public_exponent=65537, key_size=2048)):  # fmt: skip
        pem = (
            priv.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        with pytest.raises(ValueError, match="only"):
            load_public_key(pem)
    with pytest.raises(ValueError, match="not a PEM"):
        load_public_key("ssh-ed25519 AAAA")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=2048))
def test_arbitrary_bytes_only_raise_value_error(data: bytes) -> None:
    with contextlib.suppress(ValueError):
        simple_signing(data, {}, where="t")
    with pytest.raises(ValueError):
        bundle_referrer(data, {}, subject=DIGEST, where="r")


@settings(max_examples=300, deadline=None)
@given(at=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7),
       which=st.sampled_from(["payload", "bundle"]))  # fmt: skip
def test_a_flipped_bit_in_what_is_signed_is_never_accepted(at: int, bit: int, which: str) -> None:
    if which == "payload":
        manifest, blobs = sig_artifact(KEY)
        ((digest, payload),) = blobs.items()
        i = at % len(payload)
        bad = payload[:i] + bytes([payload[i] ^ (1 << bit)]) + payload[i + 1 :]
        assert not verdict_simple(manifest, {digest: bad}, signers(KEY)).ok
        return
    # the bundle's signed statement, changed inside its base64 payload
    manifest, blobs = bundle_artifact(KEY)
    ((digest, bundle),) = blobs.items()
    doc = json.loads(bundle)
    statement = bytearray(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    statement[at % len(statement)] ^= 1 << bit
    doc["dsseEnvelope"]["payload"] = base64.b64encode(bytes(statement)).decode()
    try:
        c = bundle_referrer(manifest, {digest: json.dumps(doc).encode()}, subject=DIGEST,
                            where="r")  # fmt: skip
    except ValueError:
        return
    assert not judge(repository=REPO, digest=DIGEST, candidates=[c], signers=signers(KEY)).ok


def test_trust_policy_image_signers_validated_and_the_example_lists_one() -> None:
    from pathlib import Path

    from gitedge.adapters.git.worktree import read_tree
    from gitedge.adapters.trust.imagesigs import signer_keys
    from gitedge.core.fleet.model import load_fleet
    from gitedge.core.trust.policy import parse_trust_policy

    base = ("apiVersion: gitedge.io/v1alpha1\nkind: TrustPolicy\nmetadata: {name: fleet}\n"
            "spec:\n  signers:\n    - {name: a, key: 'ssh-ed25519 AAAA', roles: [admin]}\n"
            "  images:\n    signers:\n      - name: ci\n        repositories: ['*']\n")  # fmt: skip
    with pytest.raises(ValueError, match=r"trust.yaml:\d+: .*not a PEM public key"):
        parse_trust_policy((base + "        key: 'ssh-ed25519 AAAA'\n").encode(),
                           path=".gitedge/trust.yaml")  # fmt: skip
    pem = "".join("          " + ln + "\n" for ln in ED.public_pem.strip().splitlines())
    tp = parse_trust_policy((base + "        key: |\n" + pem).encode())
    assert tp.spec.images is not None and tp.spec.images.signers[0].repositories == ("*",)
    root = Path(__file__).resolve().parent.parent
    (example,) = signer_keys(load_fleet(read_tree(str(root / "examples" / "fleet-repo"))))
    assert example.allows("registry.example.com/edge/os")
    assert example.allows("docker.io/rancher/k3s-upgrade")
    assert not example.allows("registry.example.com/other/os")
