"""OCI image-layout directories (``oci:DIR[:tag]``) as a mirror source and destination.

This is what a field technician's USB stick carries and what ``gitedge demo`` uses as upstream.
The layout (image-spec ``image-layout.md``): an ``oci-layout`` marker, ``index.json`` listing
the tagged manifests (tag = the ``org.opencontainers.image.ref.name`` annotation, as skopeo and
containers/image write it), and every blob, manifests included, under ``blobs/<alg>/<hex>``.

Crash safety. A blob is written to a temporary file beside its final place, checked against
its digest, fsync'd, and only then renamed to ``blobs/<alg>/<hex>``: a path named by a digest
always holds exactly those bytes. ``index.json`` is replaced atomically under an ``flock`` after
everything it references is in place, so a tag never points at something partial.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from gitedge.core.images.manifests import (
    MAX_MANIFEST_BYTES,
    Descriptor,
    Manifest,
    digest_of,
    is_digest,
    parse_manifest,
)
from gitedge.errors import DigestMismatch, ImageNotFound, InvalidImage

REF_NAME = "org.opencontainers.image.ref.name"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
_READ_CHUNK = 1024 * 1024
MAX_INDEX_BYTES = 16 << 20  # index.json (the bundle reader's limit for it too)


class OciLayout:
    """One layout directory; ``name`` is how messages refer to it (``oci:DIR``)."""

    def __init__(self, *, path: Path) -> None:
        self.path = path
        self.name = f"oci:{path}"

    # ------------------------------------------------------------------ reading

    def blob_path(self, digest: str) -> Path:
        if not is_digest(digest):  # also what keeps a digest from naming a path outside blobs/
            raise InvalidImage(f"{self.name}: {digest!r} is not a digest")
        algorithm, hexpart = digest.split(":", 1)
        return self.path / "blobs" / algorithm / hexpart

    def _index(self) -> dict[str, Any]:
        try:
            with _open_file(self.path / "index.json", name=f"{self.name}/index.json") as f:
                data = f.read(MAX_INDEX_BYTES + 1)
            if len(data) > MAX_INDEX_BYTES:
                raise InvalidImage(
                    f"{self.name}/index.json: over the {MAX_INDEX_BYTES >> 20} MiB limit"
                )
            doc = json.loads(data)
        except FileNotFoundError:
            if (self.path / "oci-layout").exists():
                return {"schemaVersion": 2, "manifests": []}
            raise ImageNotFound(f"{self.name}: not an OCI image layout (no index.json)") from None
        except (OSError, ValueError, RecursionError) as e:
            raise InvalidImage(f"{self.name}/index.json: unreadable: {e}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("manifests"), list):
            raise InvalidImage(f"{self.name}/index.json: no manifests list")
        return doc

    def resolve(self, tag: str | None) -> tuple[str, str | None]:
        """The digest and media type that ``tag`` names (the only entry when no tag is given)."""
        entries = [m for m in self._index()["manifests"] if isinstance(m, dict)]
        if tag is None:
            if len(entries) != 1:
                tags = sorted(str(m.get("annotations", {}).get(REF_NAME)) for m in entries)
                raise ImageNotFound(
                    f"{self.name}: holds {len(entries)} images, name one with :TAG "
                    f"({', '.join(tags) or 'none'})"
                )
            found = entries[0]
        else:
            named = [m for m in entries if (m.get("annotations") or {}).get(REF_NAME) == tag]
            if not named:
                raise ImageNotFound(
                    f"image {self.name}:{tag} not found (no such tag in index.json)"
                )
            found = named[-1]
        digest = found.get("digest")
        if not isinstance(digest, str) or not is_digest(digest):
            raise InvalidImage(f"{self.name}/index.json: entry with a bad digest {digest!r}")
        media = found.get("mediaType")
        return digest, media if isinstance(media, str) else None

    def manifest(self, reference: str | None, *, what: str) -> Manifest:
        """A manifest by tag, by digest, or the only one; its bytes must hash to its digest."""
        media: str | None = None
        if reference is not None and is_digest(reference):
            digest = reference
        else:
            digest, media = self.resolve(reference)
        path = self.blob_path(digest)
        try:
            with _open_file(path, name=f"image {what}: manifest {digest}") as f:
                data = f.read(MAX_MANIFEST_BYTES + 1)
        except FileNotFoundError:
            raise ImageNotFound(
                f"image {what}: manifest {digest} missing from {self.name}"
            ) from None
        except OSError as e:
            raise InvalidImage(f"image {what}: manifest {digest} unreadable: {e}") from None
        got = digest_of(data, algorithm=digest.split(":", 1)[0])
        if got != digest:
            raise DigestMismatch(image=what, digest=digest, detail=f"manifest bytes hash to {got}")
        return parse_manifest(data, digest=digest, content_type=media, where=f"image {what}")

    def read_blob(self, digest: str, *, offset: int, what: str) -> tuple[int, Iterator[bytes]]:
        """Stream a blob file from ``offset``; a short file simply ends (the caller sees it)."""
        try:
            f = _open_file(self.blob_path(digest), name=f"image {what}: blob {digest}")
        except FileNotFoundError:
            raise ImageNotFound(f"image {what}: blob {digest} missing from {self.name}") from None
        except OSError as e:
            raise InvalidImage(f"image {what}: blob {digest} unreadable: {e}") from None

        def chunks() -> Iterator[bytes]:
            with f:
                f.seek(offset)
                while chunk := f.read(_READ_CHUNK):
                    yield chunk

        return offset, chunks()

    # ------------------------------------------------------------------ writing

    def _ensure(self) -> None:
        marker = self.path / "oci-layout"
        if not marker.exists():
            self.path.mkdir(parents=True, exist_ok=True)
            _atomic_write(marker, (b'{"imageLayoutVersion":"1.0.0"}',))

    def manifest_digest(self, reference: str, *, what: str) -> str | None:
        """The digest a tag names here, or the digest itself if its manifest file is present."""
        if is_digest(reference):
            return reference if self.blob_path(reference).is_file() else None
        try:
            return self.resolve(reference)[0]
        except ImageNotFound:
            return None

    def has_blob(self, desc: Descriptor) -> bool:
        try:
            return self.blob_path(desc.digest).stat().st_size == desc.size
        except FileNotFoundError:
            return False

    def remove_blob(self, digest: str) -> None:
        """Remove a blob whose bytes do not match its name (the agent's cache repair)."""
        self.blob_path(digest).unlink(missing_ok=True)

    def write_blob(
        self, desc: Descriptor, chunks: Iterator[bytes], *, verify: Callable[[], None]
    ) -> None:
        """Write ``chunks`` to a temp file, ``verify()`` (raises on a digest mismatch), rename."""
        self._ensure()
        final = self.blob_path(desc.digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(final, chunks, verify=verify)

    def put_manifest(self, manifest: Manifest, *, tag: str | None, top: bool) -> None:
        """Store the manifest as a blob; a top-level one also gets an ``index.json`` entry."""
        self._ensure()
        path = self.blob_path(manifest.digest)
        if not (path.is_file() and _holds(path, manifest.data)):  # else (re)written
            path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(path, (manifest.data,))
        if top:
            self._tag(manifest, tag)

    def _tag(self, manifest: Manifest, tag: str | None) -> None:
        lock_path = self.path / "index.json.lock"
        with lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            doc = self._index()
            kept = []
            for m in doc["manifests"]:
                name = (m.get("annotations") or {}).get(REF_NAME) if isinstance(m, dict) else None
                if tag is not None and name == tag:
                    continue  # the tag moves to the new manifest
                if tag is None and name is None and m.get("digest") == manifest.digest:
                    continue  # already listed untagged: keep one entry
                kept.append(m)
            entry: dict[str, Any] = {
                "mediaType": manifest.media_type,
                "digest": manifest.digest,
                "size": len(manifest.data),
            }
            if tag is not None:
                entry["annotations"] = {REF_NAME: tag}
            doc["manifests"] = [*kept, entry]
            doc.setdefault("schemaVersion", 2)
            doc.setdefault("mediaType", INDEX_MEDIA_TYPE)
            _atomic_write(self.path / "index.json", (json.dumps(doc, indent=2).encode() + b"\n",))


def _open_file(path: Path, *, name: str) -> BinaryIO:
    """Open a regular file for reading; anything else (a FIFO, which would block the open, a
    device such as /dev/zero behind a symlink, a directory) is refused: a layout can come from
    a stick nobody checked. FileNotFoundError passes through."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidImage(f"{name}: not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _holds(path: Path, data: bytes) -> bool:
    """Whether the file holds exactly ``data`` (a manifest: small)."""
    try:
        with _open_file(path, name=str(path)) as f:
            return f.read(len(data) + 1) == data
    except (OSError, InvalidImage):
        return False


def _atomic_write(
    path: Path, chunks: Iterable[bytes], *, verify: Callable[[], None] | None = None
) -> None:
    """Write to a temp file beside ``path``, ``verify()`` if given, fsync, rename into place;
    on any failure the temp file is removed and ``path`` is as it was."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".partial-{path.name[:16]}-")
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            if verify is not None:
                verify()
            f.flush()
            os.fsync(f.fileno())
        Path(tmp).replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(tmp).unlink()
        raise
