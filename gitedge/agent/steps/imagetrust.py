"""The image-signature rule of the mirror and apply steps (TrustPolicy ``spec.images.signers``).

With signers listed, an image counts as mirrored only when the cache holds, next to it, a cosign
signature by a signer allowed for its repository over the digest the fleet approved (the source
digest: what was signed upstream). The artifacts are copied from where the image came from (the
upstream registry, or a bundle's layout) into the cache, then judged **from the cache**, so what
a site verifies is what it holds, offline; the apply step judges them from the cache again before
any Plan is written. Each verdict is kept in the state doc ``imageSignatures`` (``gitedge
status``: who signed what). A refusal is ImageSignatureRefused naming the image and the reason.
An image already in the cache whose cached signatures no longer pass (signers added or rotated
since) is looked up at its source again; with the source out of reach, the refusal is raised.

Platform filtering: a cut index is new bytes (``mirroring.py``), so the signed source index is
kept in the cache as a blob under its own digest (:func:`keep_signed_index`), and the check
reads it back, hashes it, and requires every child of the cut index to be listed in it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from gitedge.adapters.images.mirroring import LayoutRef, Location, Mirror
from gitedge.adapters.images.ocilayout import REF_NAME
from gitedge.adapters.images.signedindex import check_cut_index, keep_signed_index
from gitedge.adapters.state import IMAGE_SIGNATURES, State
from gitedge.adapters.trust.imagesigs import SigSite, copy_signatures, find_signatures, verify
from gitedge.core.images.cosign import SignerKey, Verdict
from gitedge.core.images.refs import ImageRef
from gitedge.core.passrules import NeededImage
from gitedge.errors import ImageSignatureRefused, Waiting

__all__ = [
    "bundle_signed_digest",
    "bundle_site",
    "carry_signatures",
    "check_cached",
    "check_mirrored",
    "check_needed",
    "mirror_signatures",
]

DOC = "imageSignatures"


def bundle_site(layout: Location, ref: ImageRef) -> SigSite:
    """Where a bundle's layout holds ``ref``'s signature artifacts: its tags are prefixed with
    the repository name (one layout holds every image of the bundle)."""
    return SigSite.of(layout, prefix=f"{ref.name}@")


def mirror_signatures(
    mirror: Mirror,
    *,
    key: str,
    ref: ImageRef,
    src: SigSite,
    src_image: Location,
    dst: Location,
    signed: str,
    cached: str,
    keys: tuple[SignerKey, ...],
    state: State,
    now: datetime,
) -> Verdict:
    """Copy the signatures of ``signed`` from ``src`` next to the image at ``dst``, keep the
    signed index when the cache holds a cut one, then :func:`check_cached`."""
    found = find_signatures(mirror, src, signed, what=key)
    copy_signatures(mirror, src, SigSite.of(dst), signed, found, what=key)
    if cached != signed:
        keep_signed_index(mirror, src_image=src_image, dst=dst, digest=signed, what=key)
    return check_cached(
        mirror,
        key=key,
        ref=ref,
        dst=dst,
        signed=signed,
        cached=cached,
        keys=keys,
        state=state,
        now=now,
    )


def carry_signatures(
    mirror: Mirror,
    *,
    ref: ImageRef,
    src_image: Location,
    layout: Path,
    signed: str,
    cached: str,
    what: str,
) -> int:
    """``bundle create``: the signature artifacts of ``signed`` copied from where the image came
    from into the bundle's layout (tags prefixed ``<repository>@``), with the signed index when
    the bundle holds a cut one; the number of signatures found. Not judged here: the site judges
    them, against its own TrustPolicy, when it imports the bundle."""
    src = SigSite.of(src_image)
    found = find_signatures(mirror, src, signed, what=what)
    copy_signatures(mirror, src, bundle_site(LayoutRef(layout), ref), signed, found, what=what)
    if (found.sig is not None or found.referrers) and cached != signed:
        keep_signed_index(
            mirror, src_image=src_image, dst=LayoutRef(layout), digest=signed, what=what
        )
    return len(found.candidates)


def bundle_signed_digest(mirror: Mirror, *, layout: Path, ref: ImageRef, cached: str) -> str | None:
    """The digest signed for the image a bundle holds as ``cached``, read from the tags of its
    signature artifacts for ``ref``'s repository (``<repository>@sha256-<hex>[.sig]``): the
    cached digest itself when one names it, else the one whose signed index (a blob in the
    layout) lists every child of the cut index ``cached``; None when none does."""
    prefix = f"{ref.name}@sha256-"
    try:
        doc = json.loads((layout / "index.json").read_bytes())
        names = [str((m.get("annotations") or {}).get(REF_NAME, "")) for m in doc["manifests"]]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    hexes = {n[len(prefix) :].removesuffix(".sig") for n in names if n.startswith(prefix)}
    ok = sorted(h for h in hexes if len(h) == 64 and all(c in "0123456789abcdef" for c in h))
    if cached.split(":", 1)[1] in ok:
        return cached
    for h in ok:
        if (
            check_cut_index(
                mirror, dst=LayoutRef(layout), signed=f"sha256:{h}", cached=cached, what=str(ref)
            )
            is None
        ):
            return f"sha256:{h}"
    return None


def check_cached(
    mirror: Mirror,
    *,
    key: str,
    ref: ImageRef,
    dst: Location,
    signed: str,
    cached: str,
    keys: tuple[SignerKey, ...],
    state: State,
    now: datetime,
) -> Verdict:
    """Judge the signatures the cache holds for ``signed`` (and the cut index against it);
    record the verdict; raise ImageSignatureRefused unless it is good."""
    found = find_signatures(mirror, SigSite.of(dst), signed, what=key)
    v = verify(found, keys=keys, repository=ref.name, digest=signed)
    if v.ok and cached != signed:
        problem = check_cut_index(mirror, dst=dst, signed=signed, cached=cached, what=key)
        if problem:
            v = Verdict(False, v.repository, signed, problem)
    _record(state, key, v, signed=signed, cached=cached, now=now)
    if not v.ok:
        raise ImageSignatureRefused(f"image {key} ({signed}) not applied: {v.reason}")
    return v


def fleet_named(need: NeededImage) -> bool:
    """Whether the fleet's image signers judge ``need``: the images the fleet names (OS, K3s
    upgrade). SUC's kubectl image (component ``suc``) is chosen by the site's SUC, not the
    fleet: it is mirrored by tag with its digest recorded (issue 16), and needs no signature."""
    return need.component != "suc"


def check_needed(
    mirror: Mirror,
    *,
    needed: Sequence[NeededImage],
    keys: tuple[SignerKey, ...],
    state: State,
    now: datetime,
    cache_location: Callable[[ImageRef], Location],
) -> None:
    """The apply step's check: every needed image's signature judged again from the cache,
    offline; the first refusal (ImageSignatureRefused) stops the step."""
    done = state.mirrored()
    for need in needed:
        have = done.get(need.key)
        if have is None:
            raise Waiting(f"image {need.key} is not in the cache")
        check_mirrored(
            mirror,
            key=need.key,
            ref=need.ref,
            dst=cache_location(need.ref),
            cached=have.digest,
            keys=keys,
            state=state,
            now=now,
        )


def check_mirrored(
    mirror: Mirror,
    *,
    key: str,
    ref: ImageRef,
    dst: Location,
    cached: str,
    keys: tuple[SignerKey, ...],
    state: State,
    now: datetime,
) -> Verdict:
    """:func:`check_cached` for an image recorded as mirrored: the signed digest is the one the
    last verdict for this cached digest judged (the source of a cut index), else the pin, else
    the cached digest itself."""
    doc = (state.doc(IMAGE_SIGNATURES) or {}).get(key)
    known = doc.get("digest") if isinstance(doc, dict) and doc.get("cached") == cached else None
    signed = str(known or ref.digest or cached)
    return check_cached(
        mirror,
        key=key,
        ref=ref,
        dst=dst,
        signed=signed,
        cached=cached,
        keys=keys,
        state=state,
        now=now,
    )


def _record(state: State, key: str, v: Verdict, *, signed: str, cached: str, now: datetime) -> None:
    doc: dict[str, Any] = dict(state.doc(IMAGE_SIGNATURES) or {})
    entry = {**v.to_json(), "cached": cached, "checkedAt": now.isoformat()}
    if doc.get(key) != entry:
        doc[key] = json.loads(json.dumps(entry))
        state.put(IMAGE_SIGNATURES, doc)
