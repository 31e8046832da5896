"""OCI and Docker v2 manifests, read as the registry stores them: exact bytes, named by digest.

Four media types are copied: OCI image manifest and index, Docker v2 schema 2 manifest and
manifest list. Docker schema 1 is refused: its signed bytes are rewritten by registries, so its
digest cannot be kept, which is the whole point of a mirror.

Nothing here re-serialises a manifest unless asked to filter an index by platform
(:func:`filter_index`); everything else works on the bytes as received so digests survive.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gitedge.errors import InvalidImage

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
IMAGE_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
MANIFEST_TYPES = INDEX_TYPES | IMAGE_TYPES
#: What we ask registries for, best first (the Accept header of every manifest GET).
ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))
#: containerd's cap: a manifest is metadata, anything bigger is hostile or broken.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024

_DIGEST = re.compile(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})\Z")  # \Z: no final newline
_PLATFORM = re.compile(r"^[a-z0-9_.-]+/[a-z0-9_.-]+(?:/[a-z0-9_.-]+)?$")


def is_digest(text: str) -> bool:
    """Whether ``text`` is a digest we can verify (sha256 or sha512, lowercase hex)."""
    return bool(_DIGEST.match(text))


def hasher_for(digest: str) -> Any:
    """A fresh hashlib object for the algorithm of ``digest``."""
    return hashlib.new(digest.split(":", 1)[0])


def digest_of(data: bytes, *, algorithm: str = "sha256") -> str:
    """``algorithm:hex`` of ``data``."""
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


@dataclass(frozen=True)
class Platform:
    """``os/architecture[/variant]``; a request without variant matches every variant."""

    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``linux/arm64`` or ``linux/arm/v7``; ValueError with the expected shape."""
        if not _PLATFORM.match(text):
            raise ValueError(f"platform {text!r}: expected os/arch or os/arch/variant")
        parts = text.split("/")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    def matches(self, other: Platform) -> bool:
        """Whether ``other`` (from a manifest) satisfies this requested platform."""
        return (
            self.os == other.os
            and self.architecture == other.architecture
            and (self.variant is None or self.variant == other.variant)
        )

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class Descriptor:
    """A content descriptor: what a manifest says about a blob or child manifest."""

    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """Raw manifest bytes with their media type and digest, plus what they reference."""

    data: bytes
    media_type: str
    digest: str
    children: tuple[Descriptor, ...] = ()  # an index's manifests
    config: Descriptor | None = None  # an image's config blob
    layers: tuple[Descriptor, ...] = ()

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    @property
    def blobs(self) -> tuple[Descriptor, ...]:
        """The config and the layers of an image manifest (none for an index)."""
        return ((self.config,) if self.config else ()) + self.layers

    def descriptor(self, *, annotations: Mapping[str, str] | None = None) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.data), None, annotations or {})


def _descriptor(obj: Any, *, where: str) -> Descriptor:
    if not isinstance(obj, dict):
        raise InvalidImage(f"{where}: a descriptor is not an object")
    digest, size, media_type = obj.get("digest"), obj.get("size"), obj.get("mediaType")
    if not isinstance(digest, str) or not is_digest(digest):
        raise InvalidImage(f"{where}: descriptor digest {digest!r} is not sha256/sha512 hex")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidImage(f"{where}: descriptor {digest} has no valid size")
    if not isinstance(media_type, str) or not media_type:
        raise InvalidImage(f"{where}: descriptor {digest} has no mediaType")
    platform = None
    p = obj.get("platform")
    if (
        isinstance(p, dict)
        and isinstance(p.get("os"), str)
        and isinstance(p.get("architecture"), str)
    ):
        variant = p.get("variant")
        platform = Platform(
            p["os"], p["architecture"], variant if isinstance(variant, str) else None
        )
    ann = obj.get("annotations")
    annotations = {str(k): str(v) for k, v in ann.items()} if isinstance(ann, dict) else {}
    return Descriptor(media_type, digest, size, platform, annotations)


def parse_manifest(data: bytes, *, digest: str, content_type: str | None, where: str) -> Manifest:
    """Parse raw manifest bytes (already digest-checked) into a :class:`Manifest`.

    The media type is the JSON's ``mediaType`` when present, else the Content-Type the registry
    sent, else guessed from the shape (an OCI manifest may omit ``mediaType``). A disagreement
    between the two is refused: a registry must serve a manifest under its own type.
    """
    if len(data) > MAX_MANIFEST_BYTES:
        raise InvalidImage(f"{where}: manifest of {len(data)} bytes exceeds the 4 MiB cap")
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:  # [[[[... too deep
        raise InvalidImage(f"{where}: manifest is not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise InvalidImage(f"{where}: manifest is not a JSON object")
    ctype = (content_type or "").split(";", 1)[0].strip().lower() or None
    declared = doc.get("mediaType")
    if ctype in DOCKER_SCHEMA1 or declared in DOCKER_SCHEMA1 or doc.get("schemaVersion") == 1:
        raise InvalidImage(
            f"{where}: Docker schema 1 manifests are not supported (their digests are not stable)"
        )
    if isinstance(declared, str) and declared:
        media_type = declared
        if ctype in MANIFEST_TYPES and ctype != declared:
            raise InvalidImage(f"{where}: served as {ctype} but declares mediaType {declared}")
    elif ctype in MANIFEST_TYPES:
        media_type = ctype
    elif "manifests" in doc:
        media_type = OCI_INDEX
    else:
        media_type = OCI_MANIFEST
    if media_type not in MANIFEST_TYPES:
        raise InvalidImage(f"{where}: unsupported manifest media type {media_type}")
    if media_type in INDEX_TYPES:
        items = doc.get("manifests")
        if not isinstance(items, list):
            raise InvalidImage(f"{where}: index without a manifests list")
        children = tuple(_descriptor(i, where=where) for i in items)
        return Manifest(data, media_type, digest, children=children)
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise InvalidImage(f"{where}: image manifest without a layers list")
    return Manifest(
        data,
        media_type,
        digest,
        config=_descriptor(doc.get("config"), where=where),
        layers=tuple(_descriptor(i, where=where) for i in layers),
    )


def select_platforms(
    index: Manifest, platforms: Sequence[Platform], *, where: str
) -> tuple[Descriptor, ...]:
    """The children of ``index`` matching any of ``platforms`` (all children when none asked).

    Every requested platform must match at least one child; otherwise the error lists what the
    index offers, so the operator can correct the request.
    """
    if not platforms:
        return index.children
    chosen = tuple(
        c for c in index.children if c.platform and any(p.matches(c.platform) for p in platforms)
    )
    for p in platforms:
        if not any(c.platform and p.matches(c.platform) for c in chosen):
            offered = sorted({str(c.platform) for c in index.children if c.platform})
            has = ", ".join(offered) or "none"
            raise InvalidImage(f"{where}: no manifest for platform {p} (the index has {has})")
    return chosen


def filter_index(index: Manifest, keep: Iterable[Descriptor]) -> Manifest:
    """An index listing only ``keep`` (in the original order), or ``index`` itself if all kept.

    The kept entries are copied verbatim from the original JSON (annotations, platform fields
    we do not model), as are the index's own fields; only ``manifests`` shrinks. The result is
    new bytes, hence a new digest: the source index's digest cannot exist at the destination
    without all of its children.
    """
    wanted = {d.digest for d in keep}
    if wanted == {c.digest for c in index.children}:
        return index
    doc = json.loads(index.data)
    doc["manifests"] = [m for m in doc["manifests"] if m.get("digest") in wanted]
    data = json.dumps(doc, indent=2, ensure_ascii=False).encode() + b"\n"
    children = tuple(c for c in index.children if c.digest in wanted)
    return Manifest(data, index.media_type, digest_of(data), children=children)
