"""The copy engine: an image or an index from a registry or OCI layout to another, digests kept.

Order. The top manifest is resolved first (a tag is pinned to the digest of the bytes we got;
a pinned digest is verified), then every child manifest, then all blobs (``blobcopy.py``: in
parallel, at most ``jobs`` at a time), then the child manifests, then the top one: a registry
accepts a manifest only when what it references is there, and a tag never points at something
partial.

Verification. Every byte is hashed on its way through; a blob is committed (the upload's final
PUT, or the rename in a layout) only after its digest and size check out, so nothing wrong is
ever stored under a digest. A truncated or oversized blob is refused the same way.

Resilience. A blob download cut mid-way resumes with an HTTP Range request from the last byte
received (bytes the source sends twice are counted in ``MirrorStats.bytes_resent``); requests
are retried with backoff on 5xx, 429 and dropped connections (``adapters/registry/client.py``); a
blob whose upload failed is started again. Memory stays bounded: blobs stream in 1 MiB chunks.

Shortcuts. A blob the destination has (HEAD) is skipped; one that another repository of the
same destination registry holds (seen in this ``Mirror``'s life, or the source repo when source
and destination share a host) is mounted, not copied. When the destination already has the
image whole (``cachecheck.first_gap``: every manifest read back and verified, every blob there
with its size; a manifest file alone proves nothing in a layout whose blobs were overwritten),
the mirror is a no-op (a tag update at most); otherwise it copies what is missing. The blobs a
call hashed on their way in are in ``MirrorStats.verified``, so a full check after it
(:meth:`Mirror.verify_cached`) reads back only the others.

Platforms. With ``platforms``, an index is cut to the matching entries; those child manifests
keep their digests, but the cut index is new bytes with a new digest (the source index cannot
exist at the destination without all its children). ``MirrorResult.digest`` is what was
written, ``source_digest`` what was read; with no platforms (or all of them) they are equal.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gitedge.adapters.images.blobcopy import BlobCopier, MirrorStats, ProgressFn
from gitedge.adapters.images.cachecheck import first_gap, verify_blobs
from gitedge.adapters.images.endpoints import LayoutRepo, RegistryRepo, Repo
from gitedge.adapters.images.ocilayout import OciLayout
from gitedge.adapters.registry.client import RegistryClient
from gitedge.adapters.registry.hosts import Hosts, RetryPolicy
from gitedge.core.images.manifests import (
    Descriptor,
    Manifest,
    Platform,
    filter_index,
    select_platforms,
)
from gitedge.core.images.refs import DOCKER_HUB, ImageRef
from gitedge.errors import (
    DigestMismatch,
    ImageNotFound,
    InvalidImage,
    UsageError,
)

#: What one image's index may name in all (nested indexes included), each child manifest read
#: once and held until written: real indexes name tens of manifests of a few KiB each.
MAX_CHILD_MANIFESTS = 1024
MAX_CHILD_MANIFEST_BYTES = 8 * 1024 * 1024

_TAG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


@dataclass(frozen=True)
class LayoutRef:
    """``oci:DIR[:tag]``."""

    path: Path
    tag: str | None = None

    def __str__(self) -> str:
        return f"oci:{self.path}" + (f":{self.tag}" if self.tag else "")


Location = ImageRef | LayoutRef


def parse_location(text: str) -> Location:
    """``host[:port]/repo[:tag][@digest]`` (``docker://`` before it, as skopeo writes it, is
    accepted) or ``oci:DIR[:tag]``; ValueError on anything else.

    In ``oci:DIR:tag`` the tag is what follows the last ``:`` when that holds only tag
    characters, so directories with colons still work (``oci:/mnt/a:b/layout``).
    """
    if text.startswith("docker://"):  # skopeo's transport for a registry: the same thing
        return ImageRef.parse(text[len("docker://") :])
    if text.startswith("oci:"):
        rest = text[4:]
        head, sep, tail = rest.rpartition(":")
        if sep and head and tail and set(tail) <= _TAG_CHARS and len(tail) <= 128:
            return LayoutRef(Path(head), tail)
        if not rest:
            raise ValueError(f"{text!r}: oci: needs a directory")
        return LayoutRef(Path(rest))
    return ImageRef.parse(text)


@dataclass(frozen=True)
class MirrorResult:
    source: str
    destination: str
    digest: str  # of the top manifest written (equals source_digest unless an index was cut)
    source_digest: str
    media_type: str
    manifests: tuple[tuple[str, str | None], ...]  # (digest, platform) of each image manifest
    up_to_date: bool
    stats: MirrorStats
    seconds: float


class Mirror:
    """Copies images; keep one per reconcile pass so clients, tokens and mount hints are shared."""

    def __init__(
        self,
        *,
        hosts: Hosts | None = None,
        retry: RetryPolicy | None = None,
        jobs: int = 4,
        progress: ProgressFn | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.hosts = hosts or Hosts()
        self.retry = retry or RetryPolicy()
        self.jobs = max(1, jobs)
        self._sleep = sleep
        self._clients: dict[str, RegistryClient] = {}
        self._blobs = BlobCopier(retry=self.retry, jobs=self.jobs, progress=progress, sleep=sleep)

    def close(self) -> None:
        for c in self._clients.values():
            c.close()
        self._clients.clear()

    def __enter__(self) -> Mirror:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _client(self, host: str) -> RegistryClient:
        api_host = "registry-1.docker.io" if host == DOCKER_HUB else host
        if api_host not in self._clients:
            self._clients[api_host] = RegistryClient(
                host=api_host,
                config=self.hosts.get(host),
                retry=self.retry,
                pool_size=self.jobs * 2 + 4,
                sleep=self._sleep,
            )
        return self._clients[api_host]

    def open(self, loc: Location) -> Repo:
        """The endpoint ``loc`` names (its tag or digest ignored), sharing this mirror's clients."""
        return self._open(loc)

    def _open(self, loc: Location) -> Repo:
        if isinstance(loc, LayoutRef):
            return LayoutRepo(layout=OciLayout(path=loc.path))
        return RegistryRepo(client=self._client(loc.registry), repo=loc.repository, name=loc.name)

    def mirror(
        self, src: Location | str, dst: Location | str, *, platforms: Sequence[Platform] = ()
    ) -> MirrorResult:
        """Copy ``src`` to ``dst`` (see the module docstring for the guarantees)."""
        began = time.monotonic()
        src = parse_location(src) if isinstance(src, str) else src
        dst = parse_location(dst) if isinstance(dst, str) else dst
        if isinstance(dst, ImageRef) and dst.digest:
            raise UsageError(f"destination {dst}: give a tag, not a digest (the digest is kept)")
        source, dest = self._open(src), self._open(dst)
        what = str(src)
        top = self._top(source, src, what)
        chosen = select_platforms(top, platforms, where=f"image {what}") if top.is_index else ()
        out = filter_index(top, chosen) if top.is_index else top
        tag = dst.tag or src.tag
        if isinstance(src, ImageRef) and not (tag or src.digest):
            tag = "latest"  # what the source was read by, as Docker does
        stats = MirrorStats()
        if not top.is_index and platforms:
            self._check_platform(source, top, platforms, what)
        listed = tuple((c.digest, str(c.platform) if c.platform else None) for c in out.children)
        manifests = (*listed, (out.digest, None))

        def result(up_to_date: bool) -> MirrorResult:
            return MirrorResult(
                source=str(src),
                destination=str(dst),
                digest=out.digest,
                source_digest=top.digest,
                media_type=out.media_type,
                manifests=manifests,
                up_to_date=up_to_date,
                stats=stats,
                seconds=time.monotonic() - began,
            )

        # Checked before any child is read from the source: the destination's own manifests
        # read back and every blob there with its size (not only the top manifest present).
        # The tag is read first: when it names the image, that is the top manifest verified.
        at_tag = self._at(dest, tag, what=str(dst))
        tagged = at_tag is not None and at_tag.digest == out.digest
        if first_gap(dest, out.digest, what=str(dst), top=at_tag if tagged else None) is None:
            if tag is None or tagged:
                self._blobs.report(stats, "done", detail="up to date")
                return result(True)
            dest.put_manifest(out, tag=tag, top=True, what=str(dst))
            stats.manifests_written += 1
            self._blobs.report(stats, "done", detail="tag moved")
            return result(False)
        images = self._images(source, out, what, {})
        manifests = tuple((m.digest, str(p) if p else None) for m, p in images)
        blobs: dict[str, Descriptor] = {}
        for m, _ in images:
            for b in m.blobs:
                if blobs.setdefault(b.digest, b).size != b.size:
                    raise InvalidImage(f"image {what}: blob {b.digest} listed with two sizes")
        stats.blobs_total = len(blobs)
        stats.bytes_total = sum(b.size for b in blobs.values())
        self._blobs.report(stats, "plan")
        host = dst.registry if isinstance(dst, ImageRef) else None
        mount = src.repository if isinstance(src, ImageRef) and src.registry == host else None
        self._blobs.copy(
            source=source,
            dest=dest,
            blobs=list(blobs.values()),
            stats=stats,
            what=what,
            host=host,
            mount_source=mount,
        )
        written = {out.digest}
        for m, _ in images:
            if m.digest not in written:  # once, however often the index names it
                written.add(m.digest)
                dest.put_manifest(m, tag=None, top=False, what=str(dst))
                stats.manifests_written += 1
                self._blobs.report(stats, "manifest", digest=m.digest)
        dest.put_manifest(out, tag=tag, top=True, what=str(dst))
        stats.manifests_written += 1
        self._blobs.report(stats, "done", digest=out.digest)
        return result(False)

    # ------------------------------------------------------------------ the cache checks

    @staticmethod
    def _at(dest: Repo, tag: str | None, *, what: str) -> Manifest | None:
        """The manifest ``tag`` names at ``dest``, or None (no tag, or nothing there)."""
        if tag is None:
            return None
        try:
            return dest.manifest(tag, what=what)
        except (ImageNotFound, DigestMismatch):  # a bad one is a gap: the copy rewrites it
            return None

    def first_gap(self, dst: Location, digest: str) -> str | None:
        """None when the image ``digest`` is whole at ``dst``, else what is missing first."""
        return first_gap(self._open(dst), digest, what=str(dst))

    def verify_cached(
        self, dst: Location, digest: str, *, known: set[str] | frozenset[str] = frozenset()
    ) -> tuple[set[str], list[Descriptor]]:
        """Hash every blob of the image ``digest`` at ``dst`` but those in ``known``: the
        digests that passed and the blobs that did not (``cachecheck.verify_blobs``)."""
        return verify_blobs(
            self._open(dst), digest, what=str(dst), known=known, retry=self.retry, sleep=self._sleep
        )

    # ------------------------------------------------------------------ resolution

    def tag_digest(self, ref: ImageRef) -> str:
        """The digest of the manifest ``ref.tag`` names at its registry now (the bytes served,
        hashed); ImageNotFound when there is no such tag."""
        assert ref.tag is not None
        what = f"{ref.name}:{ref.tag}"
        return (
            self._open(ImageRef(ref.registry, ref.repository, tag=ref.tag))
            .manifest(ref.tag, what=what)
            .digest
        )

    def _top(self, source: Repo, src: Location, what: str) -> Manifest:
        if isinstance(src, LayoutRef):
            return source.manifest(src.tag, what=what)
        return source.manifest(src.digest or src.tag, what=what)

    def _images(
        self,
        source: Repo,
        top: Manifest,
        what: str,
        fetched: dict[str, Manifest],
        depth: int = 0,
    ) -> list[tuple[Manifest, Platform | None]]:
        """Every manifest under ``top`` (children first, ``top`` last), each verified.

        ``fetched`` holds the children read so far: a digest listed twice is read once, and
        all of them together stay within MAX_CHILD_MANIFESTS and MAX_CHILD_MANIFEST_BYTES (they
        are all held until written: an index naming one 4 MiB child 40 times held 160 MiB)."""
        if not top.is_index:
            return [(top, None)]
        if depth > 2:
            raise InvalidImage(f"image {what}: indexes nested more than 3 deep")
        out: list[tuple[Manifest, Platform | None]] = []
        for child in top.children:
            m = fetched.get(child.digest) or self._child(source, child, what, fetched)
            if m.is_index:
                out.extend(self._images(source, m, what, fetched, depth + 1))
            else:
                out.append((m, child.platform))
        return [*out, (top, None)]

    @staticmethod
    def _child(
        source: Repo, child: Descriptor, what: str, fetched: dict[str, Manifest]
    ) -> Manifest:
        held = sum(len(m.data) for m in fetched.values())
        if len(fetched) >= MAX_CHILD_MANIFESTS or held + child.size > MAX_CHILD_MANIFEST_BYTES:
            raise InvalidImage(
                f"image {what}: its index names more than {MAX_CHILD_MANIFESTS} manifests or "
                f"{MAX_CHILD_MANIFEST_BYTES} bytes of them (too large)"
            )
        m = source.manifest(child.digest, what=f"{what}@{child.digest}")
        if len(m.data) != child.size:
            raise DigestMismatch(
                image=what,
                digest=child.digest,
                detail=f"manifest is {len(m.data)} bytes, its index says {child.size}",
            )
        fetched[child.digest] = m
        return m

    def _check_platform(
        self, source: Repo, image: Manifest, platforms: Sequence[Platform], what: str
    ) -> None:
        """A single-platform image must be one of the asked platforms (its config says which)."""
        config = image.config
        if config is None or config.size > 4 * 1024 * 1024:
            return
        stream = self._blobs.stream(source, config, what, MirrorStats(), report=False)
        data = b"".join(stream)
        stream.verify()
        try:
            doc = json.loads(data)
            mine = Platform(doc["os"], doc["architecture"], doc.get("variant"))
        except (ValueError, KeyError, TypeError):
            return  # not an image config (an artifact): nothing to match against
        if not any(p.matches(mine) for p in platforms):
            raise InvalidImage(
                f"image {what} is {mine} only; asked for {', '.join(map(str, platforms))}"
            )
