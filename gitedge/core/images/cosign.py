"""Cosign image signatures: the two forms cosign writes, parsed and judged (pure: bytes in).

Every format rule below was read in cosign's source (sigstore/cosign at d6d86c22) and the
libraries it writes through; the file and function are named at each rule.

**Simple signing** (the legacy form, ``cosign sign --new-bundle-format=false``): an OCI image
manifest tagged ``sha256-<hex>.sig`` in the image's repository (``pkg/oci/remote/remote.go``
``normalize`` with ``SignatureTagSuffix = "sig"``, ``pkg/oci/remote/options.go``), one layer per
signature of media type ``application/vnd.dev.cosign.simplesigning.v1+json``
(``pkg/types/media.go`` ``SimpleSigningMediaType``), whose blob is the payload and whose
annotation ``dev.cosignproject.cosign/signature`` (``pkg/oci/static/signature.go``
``SignatureAnnotationKey``) holds the base64 signature over the payload bytes. The payload is
``{"critical":{"identity":{"docker-reference":...},"image":{"docker-manifest-digest":...},
"type":"cosign container image signature"},"optional":...}`` (sigstore/sigstore
``pkg/signature/payload/payload.go`` ``Cosign.SimpleContainerImage``, ``CosignSignatureType``).

**Sigstore bundle** (cosign 3's default): an OCI 1.1 referrer manifest (``pkg/oci/remote/
write.go`` ``WriteAttestationNewBundleFormat`` -> ``WriteReferrer``): ``artifactType`` and the
one layer's media type ``application/vnd.dev.sigstore.bundle.v0.3+json``
(``pkg/cosign/bundle/constants.go`` ``BundleV03MediaType``), config
``application/vnd.oci.empty.v1+json`` = ``{}``, ``subject`` = the image's descriptor, and the
annotation ``dev.sigstore.bundle.predicateType`` (``BundlePredicateType``). The bundle holds a
DSSE envelope (``cmd/cosign/cli/signcommon/common.go`` ``NewAttestationBundle``: payloadType
``application/vnd.in-toto+json``) over an in-toto Statement whose subject digest is the image
digest and whose predicateType is ``https://sigstore.dev/cosign/sign/v1``
(``cmd/cosign/cli/sign/sign.go`` ``signDigestBundle``, ``pkg/types/predicate.go``). The
signature is over the DSSE pre-authentication encoding (sigstore-go ``pkg/sign/content.go``
``DSSEData.PreAuthEncoding``). Registries without the referrers API get the referrer listed in
an index tagged ``sha256-<hex>`` (go-containerregistry ``pkg/v1/remote/write.go``
``commitSubjectReferrers``, read back by ``referrers.go`` ``fetchReferrers``/``fallbackTag``).

Keys: ECDSA P-256 (signature ASN.1 DER over SHA-256) and ed25519 (over the message itself), as
cosign's ``--key`` signers. The transparency-log entries a bundle may carry are not consulted:
the trust is the key pinned in the signed TrustPolicy, and a site verifies offline.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

SIMPLE_SIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
SIGNATURE_TYPE = "cosign container image signature"
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
# cmd/cosign/cli/bundle/inspect.go lists the v0.3 names a bundle may carry in its mediaType
BUNDLE_V03_NAMES = frozenset(
    {BUNDLE_MEDIA_TYPE, "application/vnd.dev.sigstore.bundle+json;version=0.3"}
)
BUNDLE_PREDICATE_ANNOTATION = "dev.sigstore.bundle.predicateType"
EMPTY_CONFIG_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
INTOTO_STATEMENT_V1 = "https://in-toto.io/Statement/v1"
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"

#: Caps on hostile input: a signature artifact is a few KiB; these leave room and no more.
MAX_SIGNATURE_BLOB = 256 * 1024
MAX_SIGNATURES = 32  # layers of one .sig manifest, or referrers of one image
MAX_JSON_DEPTH = 32

FORM_BUNDLE = "bundle"
FORM_SIMPLE = "simple-signing"


def sig_tag(digest: str) -> str:
    """``sha256:<hex>`` -> ``sha256-<hex>.sig`` (cosign ``pkg/oci/remote/remote.go`` normalize)."""
    return digest.replace(":", "-", 1) + ".sig"


def referrers_tag(digest: str) -> str:
    """``sha256:<hex>`` -> ``sha256-<hex>`` (go-containerregistry ``referrers.go`` fallbackTag)."""
    return digest.replace(":", "-", 1)


PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


def load_public_key(pem: str) -> PublicKey:
    """A cosign public key (``cosign.pub``: PEM ``PUBLIC KEY``), ECDSA P-256 or ed25519.

    Raises ValueError naming what is wrong."""
    try:
        key = serialization.load_pem_public_key(pem.strip().encode())
    except (ValueError, TypeError) as e:
        raise ValueError(f"not a PEM public key ({str(e)[:80]})") from None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError(f"ECDSA key on {key.curve.name}: only P-256 is accepted")
        return key
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    raise ValueError(f"{type(key).__name__}: only ECDSA P-256 and ed25519 keys are accepted")


def verify_raw(key: PublicKey, *, signature: bytes, message: bytes) -> bool:
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        else:
            key.verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding (sigstore-go ``DSSEData.PreAuthEncoding``)."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


@dataclass(frozen=True)
class Candidate:
    """One signature found: what it claims to sign and the bytes the signature covers."""

    form: str  # FORM_BUNDLE | FORM_SIMPLE
    claimed: str  # the image digest the payload names
    message: bytes
    signature: bytes
    where: str  # the artifact (tag or digest) it came from


@dataclass(frozen=True)
class SignerKey:
    name: str
    key: PublicKey
    repositories: tuple[str, ...]

    def allows(self, repository: str) -> bool:
        return any(_glob_allows(g, repository) for g in self.repositories)


def _glob_allows(glob: str, name: str) -> bool:
    """``registry/repository`` against a glob: the registry part (before the first ``/``) is
    matched against the registry alone, so a ``*`` there never reaches into the path (else
    ``*.example.com/edge/*`` allowed ``evil.example.net/x.example.com/edge/app``); in the path
    ``*`` matches ``/``. A glob without ``/`` (``*``) is matched against the whole name."""
    if "/" not in glob:
        return fnmatch.fnmatchcase(name, glob)
    host_glob, _, path_glob = glob.partition("/")
    host, _, path = name.partition("/")
    return fnmatch.fnmatchcase(host, host_glob) and fnmatch.fnmatchcase(path, path_glob)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    repository: str
    digest: str
    reason: str  # why not, or what was accepted
    signer: str | None = None
    form: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "digest": self.digest,
            "verified": self.ok,
            "signer": self.signer,
            "form": self.form,
            "reason": self.reason,
        }


def _json(data: bytes, *, what: str) -> Any:
    if len(data) > MAX_SIGNATURE_BLOB:
        raise ValueError(f"{what}: {len(data)} bytes, more than {MAX_SIGNATURE_BLOB}")
    try:
        doc = json.loads(data, object_pairs_hook=_unique_keys)
    except _DuplicateKey as e:
        raise ValueError(f"{what}: {e}") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"{what}: not JSON ({str(e)[:80]})") from None
    if _depth(doc) > MAX_JSON_DEPTH:
        raise ValueError(f"{what}: JSON nested more than {MAX_JSON_DEPTH} deep")
    if not isinstance(doc, dict):
        raise ValueError(f"{what}: not a JSON object")
    return doc


class _DuplicateKey(ValueError):
    """Kept here, outside errors.py's tree: a private signal from _unique_keys to _json, which
    turns it into the ValueError its callers handle; it never leaves this module."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Objects with unique keys only: Python keeps the last of two, but sigstore-go reads the
    in-toto statement with protojson, which refuses a duplicate; cosign never writes one."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(f"duplicate key {k[:40]!r}")
        out[k] = v
    return out


def _depth(doc: Any, level: int = 0) -> int:
    if level > MAX_JSON_DEPTH:
        return level
    if isinstance(doc, dict):
        return max((_depth(v, level + 1) for v in doc.values()), default=level + 1)
    if isinstance(doc, list):
        return max((_depth(v, level + 1) for v in doc), default=level + 1)
    return level


def _b64(text: Any, *, what: str) -> bytes:
    if not isinstance(text, str) or len(text) > 4 * MAX_SIGNATURE_BLOB:
        raise ValueError(f"{what}: not a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what}: not valid base64") from None


def _digest_text(value: Any, *, what: str) -> str:
    if not isinstance(value, str) or not value.startswith("sha256:") or len(value) != 71:
        raise ValueError(f"{what}: {str(value)[:80]!r} is not a sha256 digest")
    if any(c not in "0123456789abcdef" for c in value[7:]):
        raise ValueError(f"{what}: {value[:80]!r} is not a sha256 digest")
    return value


def simple_signing(
    manifest: bytes, blobs: Mapping[str, bytes], *, where: str
) -> tuple[list[Candidate], list[str]]:
    """The signatures of a ``sha256-<hex>.sig`` manifest; problems with any layer are listed,
    not raised (one bad layer does not hide a good one)."""
    doc = _json(manifest, what=f"{where} manifest")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise ValueError(f"{where}: manifest has no layers list")
    if len(layers) > MAX_SIGNATURES:
        raise ValueError(f"{where}: {len(layers)} layers, more than {MAX_SIGNATURES}")
    out: list[Candidate] = []
    problems: list[str] = []
    for i, layer in enumerate(layers):
        what = f"{where} layer {i}"
        try:
            if not isinstance(layer, dict) or layer.get("mediaType") != SIMPLE_SIGNING_MEDIA_TYPE:
                media = layer.get("mediaType") if isinstance(layer, dict) else None
                raise ValueError(f"{what}: media type {str(media)[:80]!r}, not simple signing")
            ann = layer.get("annotations")
            if not isinstance(ann, dict) or SIGNATURE_ANNOTATION not in ann:
                raise ValueError(f"{what}: no {SIGNATURE_ANNOTATION} annotation")
            sig = _b64(ann[SIGNATURE_ANNOTATION], what=f"{what} signature")
            payload = blobs.get(str(layer.get("digest")))
            if payload is None:
                raise ValueError(f"{what}: payload blob not held")
            p = _json(payload, what=f"{what} payload")
            crit = p.get("critical")
            if not isinstance(crit, dict) or crit.get("type") != SIGNATURE_TYPE:
                raise ValueError(f"{what}: payload is not a '{SIGNATURE_TYPE}'")
            image = crit.get("image")
            claimed = _digest_text(
                image.get("docker-manifest-digest") if isinstance(image, dict) else None,
                what=f"{what} payload critical.image.docker-manifest-digest",
            )
            out.append(Candidate(FORM_SIMPLE, claimed, payload, sig, where))
        except ValueError as e:
            problems.append(str(e))
    return out, problems


def bundle_referrer(
    manifest: bytes, blobs: Mapping[str, bytes], *, subject: str, where: str
) -> Candidate:
    """The signature of one referrer manifest holding a Sigstore bundle (v0.3, DSSE over an
    in-toto statement with cosign's sign predicate). Raises ValueError naming the problem."""
    doc = _json(manifest, what=f"{where} manifest")
    if doc.get("artifactType") not in BUNDLE_V03_NAMES:
        raise ValueError(
            f"{where}: artifactType {str(doc.get('artifactType'))[:80]!r}, not a "
            "Sigstore bundle v0.3"
        )
    sub = doc.get("subject")
    if not isinstance(sub, dict) or sub.get("digest") != subject:
        got = sub.get("digest") if isinstance(sub, dict) else None
        raise ValueError(f"{where}: subject {str(got)[:80]!r}, not {subject}")
    layers = doc.get("layers")
    if not isinstance(layers, list) or len(layers) != 1 or not isinstance(layers[0], dict):
        raise ValueError(f"{where}: a bundle referrer holds exactly one layer")
    if layers[0].get("mediaType") not in BUNDLE_V03_NAMES:
        raise ValueError(f"{where}: layer media type {str(layers[0].get('mediaType'))[:80]!r}")
    data = blobs.get(str(layers[0].get("digest")))
    if data is None:
        raise ValueError(f"{where}: bundle blob not held")
    b = _json(data, what=f"{where} bundle")
    if b.get("mediaType") not in BUNDLE_V03_NAMES:
        raise ValueError(f"{where}: bundle mediaType {str(b.get('mediaType'))[:80]!r}")
    env = b.get("dsseEnvelope")
    if not isinstance(env, dict):
        raise ValueError(
            f"{where}: bundle without a dsseEnvelope (a messageSignature does not name an image)"
        )
    if env.get("payloadType") != INTOTO_PAYLOAD_TYPE:
        raise ValueError(f"{where}: DSSE payloadType {str(env.get('payloadType'))[:80]!r}")
    payload = _b64(env.get("payload"), what=f"{where} DSSE payload")
    sigs = env.get("signatures")
    if not isinstance(sigs, list) or len(sigs) != 1 or not isinstance(sigs[0], dict):
        raise ValueError(f"{where}: DSSE envelope must hold exactly one signature")
    sig = _b64(sigs[0].get("sig"), what=f"{where} DSSE signature")
    st = _json(payload, what=f"{where} in-toto statement")
    if st.get("_type") != INTOTO_STATEMENT_V1 or st.get("predicateType") != COSIGN_SIGN_PREDICATE:
        raise ValueError(f"{where}: statement is not a cosign signature ({COSIGN_SIGN_PREDICATE})")
    subjects = st.get("subject")
    if not isinstance(subjects, list) or len(subjects) != 1 or not isinstance(subjects[0], dict):
        raise ValueError(f"{where}: statement must name exactly one subject")
    dig = subjects[0].get("digest")
    hexpart = dig.get("sha256") if isinstance(dig, dict) else None
    claimed = _digest_text(f"sha256:{hexpart}", what=f"{where} statement subject")
    return Candidate(FORM_BUNDLE, claimed, pae(INTOTO_PAYLOAD_TYPE, payload), sig, where)


def judge(
    *,
    repository: str,
    digest: str,
    candidates: Sequence[Candidate],
    signers: Iterable[SignerKey],
    problems: Sequence[str] = (),
) -> Verdict:
    """Accepted only if a signer allowed for ``repository`` signed ``digest``; otherwise the
    most telling reason: over another digest, by a key not allowed here, or none verifies."""
    signers = tuple(signers)
    other: tuple[Candidate, SignerKey] | None = None
    foreign: tuple[Candidate, SignerKey] | None = None
    for c in candidates:
        for s in signers:
            if not verify_raw(s.key, signature=c.signature, message=c.message):
                continue
            if s.allows(repository) and c.claimed == digest:
                return Verdict(
                    True, repository, digest, f"signed by {s.name} ({c.form})", s.name, c.form
                )
            if c.claimed != digest:
                other = other or (c, s)
            else:
                foreign = foreign or (c, s)
    if other is not None:
        c, s = other
        why = (
            f"the only valid signature ({c.form}, by {s.name}) is over another digest, {c.claimed}"
        )
    elif foreign is not None:
        c, s = foreign
        why = (
            f"signed ({c.form}) by {s.name}, a key not allowed to sign {repository} "
            f"(it may sign {', '.join(s.repositories)})"
        )
    elif candidates:
        why = f"{len(candidates)} signature(s) found, none verifies with a listed image signer"
    else:
        why = "no signature found (neither a Sigstore bundle referrer nor a .sig tag)"
    if problems:
        why += f"; also: {problems[0]}"
    return Verdict(False, repository, digest, why)
