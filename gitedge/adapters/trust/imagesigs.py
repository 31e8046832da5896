"""Cosign signature artifacts of an image: found, copied next to it, and judged.

Where cosign puts them (``core/images/cosign.py`` cites the source): the ``sha256-<hex>.sig`` tag
(simple signing), and Sigstore bundle referrers, listed by the registry's referrers API
(``GET /v2/<repo>/referrers/<digest>``, as go-containerregistry ``fetchReferrers`` asks) or, on
registries without it (Debian's docker-registry), by the index tagged ``sha256-<hex>``.

Everything read here is hostile input: manifests come through the registry client (capped at
4 MiB, digest-checked), referrers and layers are counted (``MAX_SIGNATURES``), and a signature
blob is read only up to ``MAX_SIGNATURE_BLOB`` bytes and must hash to its digest.

Copying (:func:`copy_signatures`) goes through the mirror engine (every byte verified), then
writes the ``sha256-<hex>`` index at the destination as go-containerregistry's
``commitSubjectReferrers`` does (descriptors sorted by digest), so a cache on a registry without
the referrers API, an OCI layout or a bundle all hold the same artifacts, found the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from gitedge.adapters.images.endpoints import RegistryRepo, Repo
from gitedge.adapters.images.mirroring import LayoutRef, Location, Mirror
from gitedge.core.fleet.model import Fleet
from gitedge.core.fleet.trustspec import ImageSigner
from gitedge.core.images.cosign import (
    BUNDLE_V03_NAMES,
    MAX_SIGNATURE_BLOB,
    MAX_SIGNATURES,
    Candidate,
    SignerKey,
    Verdict,
    bundle_referrer,
    judge,
    load_public_key,
    referrers_tag,
    sig_tag,
    simple_signing,
)
from gitedge.core.images.manifests import OCI_INDEX, Manifest, digest_of, parse_manifest
from gitedge.core.images.refs import ImageRef
from gitedge.errors import ImageNotFound, InvalidImage, RegistryRefused, Stalled

__all__ = [
    "Found",
    "SigSite",
    "copy_signatures",
    "find_signatures",
    "referrers_index",
    "signer_keys",
    "verify",
]


@dataclass(frozen=True)
class SigSite:
    """Where one image repository's signature artifacts live: a registry repository, or an OCI
    layout whose tags carry ``prefix`` (a bundle's one layout holds many repositories)."""

    ref: ImageRef | None = None
    layout: Path | None = None
    prefix: str = ""

    @classmethod
    def of(cls, loc: Location, *, prefix: str = "") -> SigSite:
        if isinstance(loc, LayoutRef):
            return cls(layout=loc.path, prefix=prefix)
        return cls(ref=ImageRef(loc.registry, loc.repository))

    def tagged(self, tag: str) -> Location:
        if self.layout is not None:
            return LayoutRef(self.layout, self.prefix + tag)
        assert self.ref is not None
        return ImageRef(self.ref.registry, self.ref.repository, tag=tag)

    def by_digest(self, digest: str) -> Location:
        if self.layout is not None:
            return LayoutRef(self.layout, digest)
        assert self.ref is not None
        return ImageRef(self.ref.registry, self.ref.repository, digest=digest)

    def untagged(self) -> Location:
        if self.layout is not None:
            return LayoutRef(self.layout, None)
        assert self.ref is not None
        return ImageRef(self.ref.registry, self.ref.repository)

    def __str__(self) -> str:
        return f"oci:{self.layout}" if self.layout is not None else str(self.ref)


@dataclass
class Found:
    """The signature artifacts of one digest at one place, read and parsed."""

    sig: Manifest | None = None  # the sha256-<hex>.sig manifest
    referrers: list[Manifest] = field(default_factory=list)  # bundle referrer manifests
    candidates: list[Candidate] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def forms(self) -> tuple[str, ...]:
        return tuple(sorted({c.form for c in self.candidates}))


def signer_keys(fleet: Fleet | None) -> tuple[SignerKey, ...]:
    """The image signers of the fleet's TrustPolicy (none: signatures are not required)."""
    tp = fleet.trust_policy if fleet is not None else None
    images = tp.spec.images if tp is not None else None
    return tuple(_key(s) for s in (images.signers if images is not None else ()))


def _key(s: ImageSigner) -> SignerKey:
    return SignerKey(s.name, load_public_key(s.key), s.repositories)


def _read_small(repo: Repo, digest: str, size: int, *, what: str) -> bytes:
    if size > MAX_SIGNATURE_BLOB:
        raise InvalidImage(
            f"{what}: blob {digest} of {size} bytes, more than the "
            f"{MAX_SIGNATURE_BLOB} a signature may take"
        )
    _, chunks = repo.read_blob(digest, offset=0, what=what)
    data = b""
    for chunk in chunks:
        data += chunk
        if len(data) > size:
            raise InvalidImage(f"{what}: blob {digest} is longer than its {size} bytes")
    if digest_of(data, algorithm=digest.split(":", 1)[0]) != digest:
        raise InvalidImage(f"{what}: blob {digest} does not hash to its digest")
    return data


def _small_config(m: Manifest, *, what: str) -> None:
    if m.config is not None and m.config.size > MAX_SIGNATURE_BLOB:
        raise InvalidImage(
            f"{what}: config blob of {m.config.size} bytes, more than the "
            f"{MAX_SIGNATURE_BLOB} a signature artifact may take"
        )


def _manifest(repo: Repo, reference: str, *, what: str) -> Manifest | None:
    try:
        return repo.manifest(reference, what=what)
    except ImageNotFound:
        return None


def _referrers_index(repo: Repo, prefix: str, digest: str, *, what: str) -> Manifest | None:
    """The referrers API's answer when the registry has it, else the ``sha256-<hex>`` index
    (go-containerregistry ``fetchReferrers``: 404/400/406 or another Content-Type -> tag)."""
    if isinstance(repo, RegistryRepo):
        c = repo.client
        r = c.call(
            "GET",
            f"/v2/{repo.repo}/referrers/{digest}",
            repo=repo.repo,
            what=what,
            headers={"Accept": OCI_INDEX},
            stream=True,
        )
        ctype = r.headers.get("Content-Type", "").split(";", 1)[0].strip()
        if r.status_code == 200 and ctype == OCI_INDEX:
            data = c.read(r, cap=4 * 1024 * 1024, what=what, thing="referrers list")
            return parse_manifest(
                data, digest=digest_of(data), content_type=OCI_INDEX, where=f"{what} referrers"
            )
        r.close()
    return _manifest(repo, prefix + referrers_tag(digest), what=what)


def find_signatures(mirror: Mirror, site: SigSite, digest: str, *, what: str) -> Found:
    """Every signature artifact of ``digest`` at ``site`` (both forms), parsed into candidates;
    an artifact that does not parse is listed in ``problems``, not raised."""
    repo = mirror.open(site.untagged())
    found = Found()
    tag = sig_tag(digest)
    sig = _manifest(repo, site.prefix + tag, what=f"{what} signature {tag}")
    if sig is not None:
        try:
            if len(sig.layers) > MAX_SIGNATURES:
                raise InvalidImage(f"{tag}: {len(sig.layers)} layers, more than {MAX_SIGNATURES}")
            _small_config(sig, what=tag)  # what is copied into the cache stays small too
            blobs = {
                b.digest: _read_small(repo, b.digest, b.size, what=f"{what} {tag}")
                for b in sig.layers
            }
            cands, problems = simple_signing(sig.data, blobs, where=tag)
            found.sig = sig
            found.candidates += cands
            found.problems += problems
        except (ValueError, Stalled) as e:  # a Transient (registry down) is raised
            found.problems.append(str(e))
    try:
        index = _referrers_index(repo, site.prefix, digest, what=f"{what} referrers")
    except (ValueError, Stalled) as e:  # a Transient (registry down) is raised
        found.problems.append(str(e))
        index = None
    if index is not None and not index.is_index:
        found.problems.append(f"{referrers_tag(digest)}: not an index")
    elif index is not None:
        types = _artifact_types(index.data)
        kids = [c for c in index.children if types.get(c.digest, BUNDLE_MEDIA) in BUNDLE_V03_NAMES]
        for child in kids[:MAX_SIGNATURES]:
            where = f"referrer {child.digest}"
            try:
                m = repo.manifest(child.digest, what=f"{what} {where}")
                if len(m.data) != child.size or len(m.layers) != 1:
                    raise InvalidImage(f"{where}: not a bundle referrer (size or layers)")
                _small_config(m, what=where)
                blobs = {
                    m.layers[0].digest: _read_small(
                        repo, m.layers[0].digest, m.layers[0].size, what=f"{what} {where}"
                    )
                }
                found.candidates.append(bundle_referrer(m.data, blobs, subject=digest, where=where))
                found.referrers.append(m)
            except (ValueError, Stalled) as e:  # a Transient (registry down) is raised
                found.problems.append(str(e))
        if len(kids) > MAX_SIGNATURES:
            found.problems.append(f"{len(kids)} bundle referrers, only {MAX_SIGNATURES} read")
    return found


BUNDLE_MEDIA = next(iter(sorted(BUNDLE_V03_NAMES)))


def _artifact_types(index: bytes) -> dict[str, str]:
    try:
        doc = json.loads(index)
        return {
            str(m["digest"]): str(m["artifactType"])
            for m in doc.get("manifests", [])
            if isinstance(m, dict) and "artifactType" in m
        }
    except (ValueError, TypeError, AttributeError, KeyError, RecursionError):
        return {}


def verify(found: Found, *, keys: tuple[SignerKey, ...], repository: str, digest: str) -> Verdict:
    return judge(
        repository=repository,
        digest=digest,
        candidates=found.candidates,
        signers=keys,
        problems=found.problems,
    )


def referrers_index(referrers: list[Manifest]) -> bytes:
    """The ``sha256-<hex>`` index listing ``referrers``, byte for byte as go-containerregistry's
    ``commitSubjectReferrers`` writes it (Go ``json.Marshal`` of ``v1.IndexManifest``: compact,
    fields in struct order, sorted by digest; tests/test_cosign_go.py compares with Go)."""
    entries = []
    for m in sorted(referrers, key=lambda m: m.digest):
        doc = json.loads(m.data)
        e: dict[str, object] = {"mediaType": m.media_type, "size": len(m.data), "digest": m.digest}
        if isinstance(doc.get("annotations"), dict) and doc["annotations"]:
            e["annotations"] = dict(sorted(doc["annotations"].items()))
        if doc.get("artifactType"):
            e["artifactType"] = doc["artifactType"]
        entries.append(e)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    return json.dumps(index, separators=(",", ":")).encode()


def copy_signatures(
    mirror: Mirror, src: SigSite, dst: SigSite, digest: str, found: Found, *, what: str
) -> None:
    """The artifacts ``found`` at ``src`` copied to ``dst`` (mirror engine, bytes verified), and
    the ``sha256-<hex>`` referrers index written there (module docstring)."""
    if found.sig is not None:  # by the digest read and judged, not the tag read again: a
        # second answer could name blobs past the caps find_signatures held the first to
        mirror.mirror(src.by_digest(found.sig.digest), dst.tagged(sig_tag(digest)))
    if not found.referrers:
        return
    for m in found.referrers:
        mirror.mirror(src.by_digest(m.digest), dst.untagged())
    data = referrers_index(found.referrers)
    index = parse_manifest(data, digest=digest_of(data), content_type=OCI_INDEX, where=what)
    tag = referrers_tag(digest)
    repo = mirror.open(dst.untagged())
    try:
        repo.put_manifest(index, tag=dst.prefix + tag, top=True, what=f"{what} {tag}")
    except RegistryRefused as e:
        raise RegistryRefused(f"{what}: the cache refused the referrers index {tag}: {e}") from None
