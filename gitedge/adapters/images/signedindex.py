"""The signed index of an image mirrored with ``--platform`` filtering, kept beside the cut one.

A signature names the source index's digest; the cache holds a cut index (new bytes, new
digest: ``mirroring.py``). A registry will not store an index whose children it lacks, so the
source index's exact bytes are stored as a **blob** under their digest (a registry and an OCI
layout both take any bytes as a blob, checked against the digest on commit). The check reads
that blob back, hashes it, and requires every child of the cut index to be listed in it with the
same digest and platform: what was signed stays what is verified, child by child.
"""

from __future__ import annotations

from gitedge.adapters.images.endpoints import LayoutRepo, RegistryRepo
from gitedge.adapters.images.mirroring import Location, Mirror
from gitedge.adapters.registry.client import sized_body
from gitedge.core.images.manifests import MAX_MANIFEST_BYTES, Descriptor, digest_of, parse_manifest
from gitedge.errors import ImageNotFound, Stalled

__all__ = ["check_cut_index", "keep_signed_index"]


def keep_signed_index(
    mirror: Mirror, *, src_image: Location, dst: Location, digest: str, what: str
) -> None:
    """Store the source index ``digest`` (read from ``src_image``'s endpoint) as a blob at
    ``dst``, unless it is there already."""
    data = mirror.open(src_image).manifest(digest, what=f"{what} (signed index)").data
    desc = Descriptor("application/octet-stream", digest, len(data))
    dest = mirror.open(dst)
    if dest.has_blob(desc, what=what):
        return
    if isinstance(dest, LayoutRepo):
        dest.layout.write_blob(desc, iter([data]), verify=lambda: None)
        return
    assert isinstance(dest, RegistryRepo)
    c = dest.client
    location = c.start_upload(dest.repo, what=what)
    assert location is not None
    try:
        location = c.patch_upload(
            location, sized_body(iter([data]), len(data)), repo=dest.repo, what=what
        )
        c.finish_upload(location, digest, repo=dest.repo, what=what)
    except BaseException:
        c.cancel_upload(location, repo=dest.repo)
        raise


def check_cut_index(
    mirror: Mirror, *, dst: Location, signed: str, cached: str, what: str
) -> str | None:
    """None when every child of the cut index ``cached`` at ``dst`` is listed in the signed
    index ``signed`` (held as a blob there); else what is wrong."""
    repo = mirror.open(dst)
    try:
        _, chunks = repo.read_blob(signed, offset=0, what=f"{what} (signed index)")
        data = b""
        for chunk in chunks:
            data += chunk
            if len(data) > MAX_MANIFEST_BYTES:
                return f"the signed index {signed} held in the cache is larger than 4 MiB"
        if digest_of(data) != signed:
            return f"the signed index held in the cache does not hash to {signed}"
        src = parse_manifest(data, digest=signed, content_type=None, where=f"{what} signed index")
        cut = repo.manifest(cached, what=what)
    except ImageNotFound:
        return f"the cache holds the cut index {cached} but not the signed index {signed}"
    except Stalled as e:  # malformed, a digest mismatch; a Transient (cache down) is raised
        return f"the signed index {signed}: {e}"
    if not src.is_index or not cut.is_index:
        return f"{cached} is not a cut of the signed index {signed}"
    # each child with the platform the signed index gives it: a bundle's cut index naming the
    # signed arm64 image as linux/amd64 would have amd64 nodes given the arm64 image
    listed = {(c.digest, c.platform) for c in src.children}
    for c in cut.children:
        if (c.digest, c.platform) in listed:
            continue
        if any(d == c.digest for d, _ in listed):
            return (
                f"the cached index {cached} names {c.digest} for {c.platform}, a platform the "
                f"signed index {signed} does not give it"
            )
        return f"the cached index {cached} names {c.digest}, which the signed index does not"
    return None
