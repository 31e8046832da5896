"""Is an image whole in the cache? A cheap check for every pass, a full one once per image.

**Whole** (:func:`first_gap`, the fast path of ``gitedge mirror`` and of every agent pass): every
manifest under the image's digest is read back from the cache by digest (each one's bytes hashed
against its digest by the reader, each child's size as its index says), and every blob is there
with the size its manifest gives: a ``stat`` in an OCI layout, a ``HEAD`` at a registry. Cheap:
a few small requests, no blob bytes. It catches what is missing, cut short or grown, not a blob
overwritten with other bytes of the same size.

**Verified** (:func:`verify_blobs`, before an image may be applied, and so on every bundle
import, which mirrors through the same step): every blob's bytes are read back from the cache and
hashed, except those the same mirror call has just hashed on their way in (a blob it copied; a
blob it found present or mounted is read back). Run once per image and cache digest: the agent
records the image in the state (``mirrored`` row) only after it passed, and later passes trust
that row plus the cheap check, so a large image is not re-read every few minutes. What this
leaves open, and why it is accepted: bytes replaced under a blob's name after it was verified,
with the same size, are found only by the node that pulls them (containerd checks every blob's
digest on pull and refuses the image; the SUC Job then fails and is reported).

A layout cache repairs itself (the agent removes a blob that fails and mirrors the image again);
a registry cannot be written under a digest it already holds, so a bad blob there is refused
with a message that says to delete it from the cache registry.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from gitedge.adapters.images.endpoints import LayoutRepo, Repo, VerifiedBlob
from gitedge.adapters.registry.hosts import RetryPolicy
from gitedge.core.images.manifests import Descriptor, Manifest
from gitedge.errors import DigestMismatch, ImageNotFound, InvalidImage

__all__ = ["first_gap", "image_tree", "verify_blobs"]

_MAX_DEPTH = 3


def image_tree(
    repo: Repo, digest: str, *, what: str, top: Manifest | None = None
) -> tuple[list[Manifest], list[Descriptor]]:
    """Every manifest under ``digest`` (read from ``repo``, each verified; ``top``: the one of
    ``digest`` as just read from ``repo``) and every blob they name (once each). Raises
    ImageNotFound, DigestMismatch or InvalidImage."""
    manifests: list[Manifest] = []
    blobs: dict[str, Descriptor] = {}
    todo: list[tuple[str, int | None, int]] = [(digest, None, 0)]
    seen: set[str] = set()
    while todo:
        d, size, depth = todo.pop()
        if d in seen:  # a child listed twice is read once
            continue
        seen.add(d)
        if depth > _MAX_DEPTH:
            raise InvalidImage(f"image {what}: indexes nested more than {_MAX_DEPTH} deep")
        m = top if top is not None and d == top.digest else repo.manifest(d, what=what)
        if size is not None and len(m.data) != size:
            detail = f"manifest is {len(m.data)} bytes, its index says {size}"
            raise DigestMismatch(image=what, digest=d, detail=detail)
        manifests.append(m)
        todo.extend((c.digest, c.size, depth + 1) for c in m.children)
        for b in m.blobs:
            if blobs.setdefault(b.digest, b).size != b.size:
                raise InvalidImage(f"image {what}: blob {b.digest} listed with two sizes")
    return manifests, list(blobs.values())


def _blob_size(repo: Repo, desc: Descriptor, *, what: str) -> int | None:
    if isinstance(repo, LayoutRepo):
        try:
            return repo.layout.blob_path(desc.digest).stat().st_size
        except FileNotFoundError:
            return None
    return repo.client.blob_size(repo.repo, desc.digest, what=what)


def first_gap(repo: Repo, digest: str, *, what: str, top: Manifest | None = None) -> str | None:
    """None when the image ``digest`` is whole in ``repo`` (module docstring), else what is
    missing or wrong first (for a log line); ``top``: its manifest, just read from ``repo``.
    Errors reaching the cache are raised."""
    try:
        _, blobs = image_tree(repo, digest, what=what, top=top)
    except (ImageNotFound, DigestMismatch) as e:
        return str(e)
    for b in blobs:  # one by one: HEADs in parallel measured slower on a busy 2-core node
        have = _blob_size(repo, b, what=what)
        if have is None:
            return f"blob {b.digest} missing"
        if have != b.size:
            return f"blob {b.digest} is {have} bytes, its manifest says {b.size}"
    return None


def verify_blobs(
    repo: Repo,
    digest: str,
    *,
    what: str,
    known: Collection[str] = (),
    retry: RetryPolicy,
    sleep: Callable[[float], None],
) -> tuple[set[str], list[Descriptor]]:
    """Read back every blob of the image ``digest`` from ``repo`` and hash it, except those in
    ``known`` (counted as passed): the digests that passed, and the blobs whose bytes did not
    match (empty: the image is verified). A blob that cannot be read raises (ImageNotFound,
    RegistryUnavailable...)."""
    _, blobs = image_tree(repo, digest, what=what)
    passed: set[str] = set()
    bad = []
    for b in blobs:
        if b.digest in known:
            passed.add(b.digest)
            continue
        stream = VerifiedBlob(
            source=repo, desc=b, what=what, retry=retry, sleep=sleep, on_bytes=lambda _r, _u: None
        )
        try:
            for _ in stream:
                pass
            stream.verify()
        except DigestMismatch:
            bad.append(b)
        else:
            passed.add(b.digest)
    return passed, bad
