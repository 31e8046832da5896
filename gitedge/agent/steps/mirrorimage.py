"""The mirror step's rule for one image: copy it into the cache, then prove it before recording.

An image is recorded as mirrored (the state's ``mirrored`` row, which the plan and the apply step
trust) only after every blob of it in the cache was hashed against its digest: those this mirror
copied were hashed on their way in, the others (found present or mounted) are read back from
the cache (``adapters/images/cachecheck.py``). So an image is applied only from a cache whose bytes
were verified, whether it came from upstream, from a bundle (``bundle import`` mirrors through this
same step), or was already there. Later passes check that the recorded image is still whole
(``first_gap``: manifests verified, every blob present with its size) and do not read blobs again.

A blob that fails: in an OCI-layout cache it is removed and the image mirrored again (once); a
registry keeps what it holds under a digest, so there the image is refused with a message that
names the blob and says to delete it from the cache registry (the next pass copies it again).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from gitedge.adapters.images.mirroring import LayoutRef, Location, Mirror, MirrorResult
from gitedge.adapters.images.ocilayout import OciLayout
from gitedge.core.images.manifests import Descriptor, Platform
from gitedge.core.images.refs import ImageRef
from gitedge.errors import DigestMismatch

log = logging.getLogger("gitedge.agent")

__all__ = ["check_tag", "mirror_verified"]


def check_tag(mirror: Mirror, ref: ImageRef, *, why: str = "K3sReleases") -> None:
    """Refuse ``ref`` (``repo:tag@digest``) when its registry serves another digest for the
    tag: the tag moved after ``why`` recorded the digest. Nothing is copied then, so no Plan
    can name it (the apply step waits for every image of the path)."""
    assert ref.tag is not None and ref.digest is not None
    served = mirror.tag_digest(ref)
    if served != ref.digest:
        raise DigestMismatch(
            image=f"{ref.name}:{ref.tag}",
            digest=ref.digest,
            detail=(
                f"{why} expects {ref.digest} for tag {ref.tag}, the registry {ref.registry} "
                f"serves {served}: the tag moved after the digest was written; check the new "
                f"image and update the digest in {why}, or keep the site where it is"
            ),
        )


def mirror_verified(
    mirror: Mirror, src: Location, dst: Location, *, what: str, platforms: Sequence[Platform]
) -> MirrorResult:
    """``mirror.mirror(src, dst)``, then every blob of the result at ``dst`` verified (module
    docstring). Raises DigestMismatch naming ``what`` and the first bad blob."""
    r = mirror.mirror(src, dst, platforms=platforms)
    passed, bad = mirror.verify_cached(dst, r.digest, known=r.stats.verified)
    if bad and isinstance(dst, LayoutRef):
        layout = OciLayout(path=dst.path)
        for b in bad:
            layout.remove_blob(b.digest)
        log.warning(
            "cache %s: %d blob(s) of %s did not hash to their digest (%s); removed, copying again",
            dst,
            len(bad),
            what,
            ", ".join(b.digest for b in bad),
        )
        r = mirror.mirror(src, dst, platforms=platforms)
        _, bad = mirror.verify_cached(dst, r.digest, known=passed | r.stats.verified)
    if bad:
        raise _refused(what, dst, bad)
    return r


def _refused(what: str, dst: Location, bad: list[Descriptor]) -> DigestMismatch:
    how = (
        f"delete {'it' if len(bad) == 1 else 'them'} from the cache registry (its storage), and "
        "the next pass copies the image again"
        if not isinstance(dst, LayoutRef)
        else "it was copied again and still does not match: the source holds other bytes"
    )
    others = f" (and {len(bad) - 1} other blob(s))" if len(bad) > 1 else ""
    return DigestMismatch(
        image=what,
        digest=bad[0].digest,
        detail=f"the cache {dst} holds other bytes under this digest{others}; {how}",
    )
