"""The mirror step: every image the plan needs into the cache, read where ``images`` (the
source's :class:`~gitedge.agent.passtypes.ImageLocator`) says: upstream, or a bundle's OCI
layout. Images already there (state and cache agree) cost no upstream request; every one is
tried before the first failure is reported. The step records an image only after every blob of
it in the cache hashed to its digest (``agent/steps/mirrorimage.py``) and, for an image the fleet
names signers for, with a good signature next to it (``agent/steps/imagetrust.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from gitedge.adapters.images.endpoints import endpoint_refs, first_served, record_served
from gitedge.adapters.images.mirroring import LayoutRef, Location, Mirror, MirrorResult
from gitedge.adapters.state import Mirrored as MirroredImage
from gitedge.adapters.trust.imagesigs import SigSite, signer_keys
from gitedge.agent.passtypes import Context, ImageLocator, Mirrored, Planned, StepResult
from gitedge.agent.steps.imagetrust import (
    bundle_signed_digest,
    bundle_site,
    check_mirrored,
    fleet_named,
    mirror_signatures,
)
from gitedge.agent.steps.mirrorimage import check_tag, mirror_verified
from gitedge.core.fleet.model import Fleet
from gitedge.core.images.manifests import Platform
from gitedge.core.images.refs import ImageRef, cache_host
from gitedge.core.passrules import NeededImage, platforms_for
from gitedge.core.status import conditions as cond
from gitedge.core.status.conditions import Condition
from gitedge.errors import (
    DigestMismatch,
    GitEdgeError,
    ImageSignatureRefused,
    Stalled,
    Transient,
    Waiting,
    scrub,
)

log = logging.getLogger("gitedge.agent")

__all__ = ["cache_location", "mirror_step"]


def cache_location(ctx: Context, ref: ImageRef) -> Location:
    """Where ``ref`` goes in the cache: the cache registry, or (none configured: print mode,
    the demo) an OCI layout under the state dir."""
    cache = ctx.config.registry.cache
    if cache is None:
        return LayoutRef(ctx.dir / "cache" / ref.registry / ref.repository, ref.tag)
    return ImageRef(cache_host(cache.url), ref.repository, tag=ref.tag)


@dataclass
class _Copied:
    """What the step did so far (its output, also when it fails part way)."""

    copied: list[tuple[str, str, int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def output(self, *, complete: bool) -> Mirrored:
        return Mirrored(complete, tuple(self.copied), tuple(self.notes))


def mirror_step(
    ctx: Context,
    planned: Planned | None,
    *,
    images: ImageLocator,
    now: datetime,
    needed: Sequence[NeededImage] | None = None,
) -> StepResult[Mirrored]:
    """Mirror ``needed`` (default: everything ``planned`` needs) from ``images``."""
    if planned is None or planned.plan is None:
        raise Waiting("no plan: nothing to mirror")
    needed = planned.needed if needed is None else needed
    done = ctx.state.mirrored()
    arches = tuple(n.architecture for n in planned.snapshot.nodes)
    if not arches:
        arches = ctx.config.cluster.status.arches
    plats = [Platform.parse(x) for x in platforms_for(ctx.config.registry.platforms, arches)]
    errors: list[GitEdgeError] = []
    did = _Copied()
    with Mirror(hosts=ctx.hosts, retry=ctx.retry) as mirror:
        for need in needed:
            if ctx.stop.is_set():
                return StepResult(
                    output=did.output(complete=False),
                    error=Transient("stopping: mirror step interrupted"),
                )
            try:
                _mirror_one(
                    ctx,
                    mirror,
                    need,
                    fleet=planned.fleet,
                    images=images,
                    done=done,
                    plats=plats,
                    now=now,
                    did=did,
                )
            except GitEdgeError as e:
                log.warning("mirror of %s failed: %s", need.key, scrub(str(e)))
                errors.append(e)
    if errors:
        stalled = [e for e in errors if isinstance(e, Stalled)]
        return StepResult(output=did.output(complete=False), error=(stalled or errors)[0])
    moved = sum(b for _, _, b in did.copied)
    msg = f"{len(needed)} image(s) in the cache ({len(did.copied)} copied, {moved} B)"
    out = [Condition(cond.MIRRORED, "True", "Mirrored", msg)]
    if did.notes:  # which endpoint served what, and which were skipped and why
        bad = any(n.startswith("endpoint ") for n in did.notes)
        reason = "EndpointSkipped" if bad else "Served"
        text = "; ".join(did.notes)
        out.append(Condition(cond.REGISTRY_ENDPOINTS, "False" if bad else "True", reason, text))
    return StepResult(tuple(out), did.output(complete=True))


def _mirror_one(
    ctx: Context,
    mirror: Mirror,
    need: NeededImage,
    *,
    fleet: Fleet,
    images: ImageLocator,
    done: dict[str, MirroredImage],
    plats: list[Platform],
    now: datetime,
    did: _Copied,
) -> None:
    ref = need.ref
    dst = cache_location(ctx, ref)
    have = done.get(need.key)
    keys = signer_keys(fleet) if fleet_named(need) else ()
    refused: ImageSignatureRefused | None = None
    if have is not None and mirror.first_gap(dst, have.digest) is None:
        try:  # the signatures the cache holds, judged again (agent/steps/imagetrust.py)
            if keys:
                check_mirrored(
                    mirror,
                    key=need.key,
                    ref=ref,
                    dst=dst,
                    cached=have.digest,
                    keys=keys,
                    state=ctx.state,
                    now=now,
                )
            return  # verified when recorded, and still whole (agent/steps/mirrorimage.py)
        except ImageSignatureRefused as e:  # signers added since: look at the source
            refused = e

    def attempt(src: Location) -> MirrorResult:
        if need.tag_checked and isinstance(src, ImageRef):  # upstream, not a bundle's layout
            check_tag(mirror, src)
        # a pinned digest must stay the digest SUC is given: never cut a pinned index
        plat = () if ref.digest else plats
        r = mirror_verified(mirror, src, dst, what=need.key, platforms=plat)
        if ref.digest and r.source_digest != ref.digest:
            raise DigestMismatch(
                image=str(ref), digest=ref.digest, detail=f"{src} holds {r.source_digest}"
            )
        return r

    src = images.location(ref)
    served: Location = src
    endpoints = ctx.config.registry.endpoints
    try:
        if isinstance(src, ImageRef) and endpoints.get(src.registry):
            r, served, skipped = first_served(endpoint_refs(src, endpoints), attempt)
            did.notes += [*skipped, f"{need.key} served by {served.registry}"]
        else:
            r = attempt(src)
    except GitEdgeError:
        if refused is not None:  # the source is out of reach: the refusal is the news
            raise refused from None
        raise
    if keys:  # recorded as mirrored only with a good signature next to it in the cache
        site, signed = SigSite.of(served), r.source_digest
        if isinstance(src, LayoutRef) and images.from_bundle:
            site = bundle_site(src, ref)
            found = bundle_signed_digest(mirror, layout=src.path, ref=ref, cached=r.digest)
            signed = found or signed
        mirror_signatures(
            mirror,
            key=need.key,
            ref=ref,
            src=site,
            src_image=src,
            dst=dst,
            signed=signed,
            cached=r.digest,
            keys=keys,
            state=ctx.state,
            now=now,
        )
    ctx.state.record_mirrored(
        MirroredImage(need.key, r.digest, f"{dst}@{r.digest}", r.stats.bytes_total, now)
    )
    record_served(ctx.state, key=need.key, served=served, digest=r.digest, now=now)
    did.copied.append((need.key, r.digest, r.stats.bytes_copied))
    copied = r.stats.bytes_copied
    ctx.metrics.inc(
        "gitedge_mirror_bytes_total", copied, help="bytes copied into the registry cache"
    )
    log.info("mirrored %s -> %s (%s)", need.key, dst, r.digest)
