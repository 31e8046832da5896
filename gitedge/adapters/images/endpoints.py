"""The two kinds of mirror endpoint behind one face, and the verified, resuming blob stream.

A :class:`RegistryRepo` (one repository of a registry) and a :class:`LayoutRepo` (an OCI
layout directory) both read manifests and blobs and write them back; the copy engine
(``mirroring.py``) does not know which it talks to.

:class:`VerifiedBlob` is the only way bytes flow from a source to a destination: it hashes and
counts every byte, resumes a cut download from the last byte received (an HTTP Range request),
refuses a blob longer or shorter than its descriptor, and offers ``verify()``, which each
destination calls before it commits (final upload PUT, or rename into ``blobs/``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol, TypeVar

from gitedge.adapters.images.ocilayout import OciLayout
from gitedge.adapters.registry.client import NETWORK_ERRORS, RegistryClient, sized_body
from gitedge.adapters.registry.hosts import RetryPolicy
from gitedge.adapters.state import IMAGE_ENDPOINTS, State
from gitedge.core.images.manifests import Descriptor, Manifest, hasher_for
from gitedge.core.images.refs import ImageRef
from gitedge.errors import (
    Cancelled,
    DigestMismatch,
    ImageNotFound,
    InvalidImage,
    Malformed,
    RegistryAuthError,
    RegistryRefused,
    RegistryUnavailable,
    scrub,
)

log = logging.getLogger("gitedge.agent")
R = TypeVar("R")


# what makes an endpoint pass the image on to the next: anything the endpoint itself got wrong
SKIP_ON = (
    DigestMismatch,
    RegistryUnavailable,
    ImageNotFound,
    RegistryAuthError,
    RegistryRefused,
    InvalidImage,
    Malformed,
)


def endpoint_refs(ref: ImageRef, endpoints: Mapping[str, Sequence[str]]) -> list[ImageRef]:
    """Where ``ref`` is read from, in order: its registry's endpoints (``registry.endpoints``,
    as containerd's registries.yaml lists mirrors: a regional hub first), then the registry."""
    hosts = [h for h in endpoints.get(ref.registry, ()) if h != ref.registry]
    return [replace(ref, registry=h) for h in dict.fromkeys(hosts)] + [ref]


def first_served(
    refs: Sequence[ImageRef], attempt: Callable[[ImageRef], R]
) -> tuple[R, ImageRef, list[str]]:
    """``attempt`` at each endpoint in turn until one serves the image whole and verified:
    an endpoint that serves wrong bytes (DigestMismatch: nothing of them is stored), does not
    answer, does not hold the image (a hub not yet filled: containerd's resolver too moves to
    its next host on a 404 or any 4xx, remotes/docker/resolver.go ``Resolve``), refuses us,
    or serves what does not parse is skipped for the next.
    Returns the result, the endpoint that served it, and why each earlier one was skipped;
    the last endpoint's error is raised as is."""
    skipped: list[str] = []
    for i, ref in enumerate(refs):
        try:
            return attempt(ref), ref, skipped
        except SKIP_ON as e:
            if i == len(refs) - 1:
                raise
            why = f"endpoint {ref.registry} skipped: {scrub(str(e), limit=300)}"
            log.warning("%s", why)
            skipped.append(why)
    raise AssertionError("no endpoint")  # refs always ends with the registry itself


SERVED_DOC = "imageEndpoints"  # state doc: image -> the endpoint that served its cached copy


def record_served(state: State, *, key: str, served: object, digest: str, now: datetime) -> None:
    """Keep, for status, which endpoint served the copy of ``key`` now in the cache: a registry
    host (a hub of ``registry.endpoints`` or the registry itself) or ``bundle`` (an OCI layout,
    an imported bundle). Written only when it changes."""
    by = served.registry if isinstance(served, ImageRef) else "bundle"
    doc: dict[str, Any] = dict(state.doc(IMAGE_ENDPOINTS) or {})
    entry = {"endpoint": by, "digest": digest, "at": now.isoformat()}
    old = doc.get(key)
    if not isinstance(old, dict) or (old.get("endpoint"), old.get("digest")) != (by, digest):
        doc[key] = entry
        state.put(IMAGE_ENDPOINTS, doc)


class BlobSource(Protocol):
    name: str

    def manifest(self, reference: str | None, *, what: str) -> Manifest: ...
    def read_blob(self, digest: str, *, offset: int, what: str) -> tuple[int, Iterator[bytes]]: ...


class RegistryRepo:
    """A repository of a registry, seen as a mirror source or destination."""

    def __init__(self, *, client: RegistryClient, repo: str, name: str) -> None:
        self.client, self.repo, self.name = client, repo, name

    def manifest(self, reference: str | None, *, what: str) -> Manifest:
        return self.client.get_manifest(self.repo, reference or "latest", what=what)

    def read_blob(self, digest: str, *, offset: int, what: str) -> tuple[int, Iterator[bytes]]:
        return self.client.read_blob(self.repo, digest, offset=offset, what=what)

    def manifest_digest(self, reference: str, *, what: str) -> str | None:
        return self.client.manifest_digest(self.repo, reference, what=what)

    def has_blob(self, desc: Descriptor, *, what: str) -> bool:
        # Present only with its size: an answer without (or with a garbage) Content-Length
        # proves nothing, and the copy is then made again.
        return self.client.blob_size(self.repo, desc.digest, what=what) == desc.size

    def put_manifest(self, manifest: Manifest, *, tag: str | None, top: bool, what: str) -> None:
        ref = tag if (top and tag) else manifest.digest
        self.client.put_manifest(self.repo, ref, manifest, what=what)

    def write_blob(
        self,
        desc: Descriptor,
        open_stream: Callable[[], VerifiedBlob],
        *,
        mount_from: str | None,
        what: str,
    ) -> str:
        mount = (desc.digest, mount_from) if mount_from and mount_from != self.repo else None
        location = self.client.start_upload(self.repo, what=what, mount=mount)
        if location is None:
            return "mounted"
        try:
            stream = open_stream()
            if desc.size:
                body = sized_body(iter(stream), desc.size)
                location = self.client.patch_upload(location, body, repo=self.repo, what=what)
            else:
                for _ in stream:
                    pass
            stream.verify()
            self.client.finish_upload(location, desc.digest, repo=self.repo, what=what)
        except BaseException:
            self.client.cancel_upload(location, repo=self.repo)
            raise
        return "copied"


class LayoutRepo:
    """An OCI layout, with the same face as :class:`RegistryRepo`."""

    def __init__(self, *, layout: OciLayout) -> None:
        self.layout, self.name = layout, layout.name

    def manifest(self, reference: str | None, *, what: str) -> Manifest:
        return self.layout.manifest(reference, what=what)

    def read_blob(self, digest: str, *, offset: int, what: str) -> tuple[int, Iterator[bytes]]:
        return self.layout.read_blob(digest, offset=offset, what=what)

    def manifest_digest(self, reference: str, *, what: str) -> str | None:
        return self.layout.manifest_digest(reference, what=what)

    def has_blob(self, desc: Descriptor, *, what: str) -> bool:
        return self.layout.has_blob(desc)

    def put_manifest(self, manifest: Manifest, *, tag: str | None, top: bool, what: str) -> None:
        self.layout.put_manifest(manifest, tag=tag, top=top)

    def write_blob(
        self,
        desc: Descriptor,
        open_stream: Callable[[], VerifiedBlob],
        *,
        mount_from: str | None,
        what: str,
    ) -> str:
        stream = open_stream()
        self.layout.write_blob(desc, iter(stream), verify=stream.verify)
        return "copied"


Repo = RegistryRepo | LayoutRepo


class VerifiedBlob:
    """A blob's bytes from the source, hashed and counted; a cut stream resumes with Range.

    Consumed once by a destination, which must call :meth:`verify` before committing.
    ``failed`` tells the engine the source gave up (retrying the blob would not help).
    """

    def __init__(
        self,
        *,
        source: BlobSource,
        desc: Descriptor,
        what: str,
        retry: RetryPolicy,
        sleep: Callable[[float], None],
        on_bytes: Callable[[int, int], None],
        cancel: threading.Event | None = None,
    ) -> None:
        self.source, self.desc, self.what, self.retry = source, desc, what, retry
        self._sleep, self._on_bytes, self._cancel = sleep, on_bytes, cancel
        self.offset = 0
        self.failed = False
        self._digest: str | None = None

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._chunks()
        except Cancelled:
            raise
        except Exception:
            self.failed = True
            raise

    def _chunks(self) -> Iterator[bytes]:
        size, digest = self.desc.size, self.desc.digest
        hasher = hasher_for(digest)
        # A connection that broke after bringing at least one window's worth at the minimum rate
        # made progress; one that brought less (a trickle cut for being too slow) is a stall.
        limits = self.retry.limits()
        useful = max(1, int(limits.min_rate * limits.window_s))
        stalls = 0
        while True:
            began = self.offset
            start, chunks = self.source.read_blob(digest, offset=self.offset, what=self.what)
            skip = self.offset - start  # the source ignored our Range: drop what we have
            try:
                for chunk in chunks:
                    if self._cancel is not None and self._cancel.is_set():
                        raise Cancelled(digest)
                    received = len(chunk)
                    if skip:
                        dropped = min(skip, len(chunk))
                        chunk, skip = chunk[dropped:], skip - dropped
                    self._on_bytes(received, len(chunk))
                    if not chunk:
                        continue
                    if self.offset + len(chunk) > size:
                        raise DigestMismatch(
                            image=self.what,
                            digest=digest,
                            detail=f"blob is longer than the {size} bytes its manifest says",
                        )
                    hasher.update(chunk)
                    self.offset += len(chunk)
                    yield chunk
                break
            except NETWORK_ERRORS as e:
                stalls = 0 if self.offset - began >= useful else stalls + 1
                if stalls >= self.retry.attempts:
                    raise RegistryUnavailable(
                        f"image {self.what}: blob {digest} keeps breaking at byte {self.offset} "
                        f"of {size}: {scrub(str(e), limit=120)}"
                    ) from None
                self._on_bytes(-1, 0)  # a resume
                self._sleep(self.retry.delay(stalls) if stalls else 0.0)
        if self.offset < size:
            raise DigestMismatch(
                image=self.what,
                digest=digest,
                detail=f"blob is truncated: {self.offset} of {size} bytes",
            )
        self._digest = f"{digest.split(':', 1)[0]}:{hasher.hexdigest()}"

    def verify(self) -> None:
        """Raise DigestMismatch unless every byte arrived and they hash to the digest."""
        if self._digest is None:
            raise DigestMismatch(image=self.what, digest=self.desc.digest, detail="incomplete")
        if self._digest != self.desc.digest:
            raise DigestMismatch(
                image=self.what,
                digest=self.desc.digest,
                detail=f"blob bytes hash to {self._digest}",
            )
