"""The offline bundle file: one uncompressed tar a technician carries to a site with no network.

Members, in this order (the writer's order; the reader requires only the first)::

    gitedge-bundle.json            the index (<= 1 MiB): format version, branch, tip, since,
                                   the git bundle's digest, every image ref -> digest
    fleet.bundle                   ``git bundle create`` of the commits, signatures intact
    images/oci-layout              one OCI image layout holding every image;
    images/index.json              each tagged with its full reference (``org.opencontainers.
    images/blobs/<alg>/<hex>       image.ref.name``), every blob stored once (deduplicated)

Reading is hostile-input safe. Only regular files with exactly those names are accepted: an
absolute path, ``..``, a symlink or hard link, a device, a duplicate, an unknown member, an
oversized index or an unknown format version refuses the whole bundle, naming the file and the
member. Members are streamed (never ``extractall``); each blob is hashed while it is written and
must hash to its name (one an image uses is refused naming the image, any other naming the
member); the git bundle must hash to the index's digest; every image the index
names must be complete (each manifest and blob present, sizes as described, pinned digests as
pinned). A bundle that fails any check is refused before anything is recorded anywhere.

Writing goes to a temporary file beside the target and is renamed into place after an fsync:
a failed or interrupted create leaves no half file. The index itself is
``core/delivery/bundleindex.py``; the git side of creating a bundle is ``adapters/git/bundle.py``.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from gitedge.adapters.images.mirroring import LayoutRef
from gitedge.core.delivery.bundleindex import (
    GIT_NAME,
    INDEX_NAME,
    LAYOUT_DIR,
    MAX_INDEX_BYTES,
    BundleImage,
    BundleIndex,
)
from gitedge.core.images.manifests import MAX_MANIFEST_BYTES, Manifest, parse_manifest
from gitedge.core.images.refs import ImageRef
from gitedge.errors import DigestMismatch, InvalidInput, Problem

_SMALL_LIMITS = {f"{LAYOUT_DIR}/oci-layout": 4096, f"{LAYOUT_DIR}/index.json": 16 << 20}
_DIRS = frozenset(
    {LAYOUT_DIR, f"{LAYOUT_DIR}/blobs", f"{LAYOUT_DIR}/blobs/sha256", f"{LAYOUT_DIR}/blobs/sha512"}
)
# \Z, not $: $ also matches before a final newline, and "<hex>\n" would be a second name
_BLOB = re.compile(rf"^{LAYOUT_DIR}/blobs/(sha256/[a-f0-9]{{64}}|sha512/[a-f0-9]{{128}})\Z")
_CHUNK = 1 << 20
_MAX_EXTENDED_BYTES = 64 << 10  # one pax or GNU long-name header (the format's names are short)
_MAX_EXTENDED_CHAIN = 8  # such headers before one member
_EXTENDED = (
    tarfile.XHDTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)

Progress = Callable[[int, int], None]  # (bytes done, bytes in all)

__all__ = [
    "BundleImage",
    "BundleIndex",
    "OpenedBundle",
    "file_digest",
    "open_bundle",
    "read_index",
    "write_bundle",
]


# ---------------------------------------------------------------------------- writing


def write_bundle(
    out: Path,
    *,
    index: BundleIndex,
    git_file: Path,
    layout: Path,
    progress: Progress | None = None,
) -> int:
    """Write the bundle tar to ``out`` (temp file, fsync, rename); its size in bytes."""
    blobs = sorted(
        p
        for p in (layout / "blobs").glob("*/*")
        if p.is_file() and _BLOB.match(f"{LAYOUT_DIR}/blobs/{p.parent.name}/{p.name}")
    )
    head = index.to_json()
    files = [
        (GIT_NAME, git_file),
        (f"{LAYOUT_DIR}/oci-layout", layout / "oci-layout"),
        (f"{LAYOUT_DIR}/index.json", layout / "index.json"),
        *((f"{LAYOUT_DIR}/blobs/{p.parent.name}/{p.name}", p) for p in blobs),
    ]
    total = len(head) + sum(p.stat().st_size for _, p in files)
    done = 0
    mtime = int(index.created_at.timestamp())

    def info(name: str, size: int) -> tarfile.TarInfo:
        t = tarfile.TarInfo(name)
        t.size, t.mtime, t.mode = size, mtime, 0o644
        t.uid = t.gid = 0
        t.uname = t.gname = ""
        return t

    def counted(f: Any) -> IO[bytes]:
        def on_read(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(done, total)

        return cast(IO[bytes], _Counting(f, on_read))

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as f:
            with tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
                tar.addfile(info(INDEX_NAME, len(head)), counted(io.BytesIO(head)))
                for name, path in files:
                    with path.open("rb") as src:
                        tar.addfile(info(name, path.stat().st_size), counted(src))
            f.flush()
            os.fsync(f.fileno())
            size = f.tell()
        Path(tmp).chmod(0o644)  # mkstemp makes it 0600; a bundle holds nothing secret
        Path(tmp).replace(out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return size


class _Counting:
    """A readable that reports how many bytes went through it (tarfile reads with ``read(n)``)."""

    def __init__(self, f: Any, on_read: Callable[[int], None]) -> None:
        self._f = f
        self._on_read = on_read

    def read(self, n: int = -1) -> bytes:
        data: bytes = self._f.read(n)
        self._on_read(len(data))
        return data


# ---------------------------------------------------------------------------- reading


def file_digest(path: Path) -> str:
    """``sha256:`` of a whole file, streamed (how a site remembers a bundle it has seen)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _refuse(file: Path, msg: str) -> InvalidInput:
    return InvalidInput([Problem(f"bundle {file}", 0, msg)], f"bundle {file} refused")


class _BoundedTarInfo(tarfile.TarInfo):
    """A member header whose extended headers are bounded before ``tarfile`` reads them.

    ``tarfile`` reads a pax or GNU long-name header whole into memory, and follows a chain of
    them by recursion: a 300 MB pax header before the index took ``read_index`` to 928 MiB (a
    sparse file costs the attacker no disk), 5,000 chained ones raised RecursionError out of
    ``bundle import``, and global pax headers add up for the whole file. So one extended header
    may hold 64 KiB, eight may precede a member, and global and GNU sparse headers (the writer
    makes neither) are refused; ``tarfile`` turns the error into ``ReadError``."""

    def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in (tarfile.XGLTYPE, tarfile.GNUTYPE_SPARSE):
            what = "global pax" if self.type == tarfile.XGLTYPE else "GNU sparse"
            raise tarfile.ReadError(f"a {what} header: refused")
        if self.type not in _EXTENDED:
            return super()._proc_member(tar)  # type: ignore[misc,no-any-return]
        if self.size > _MAX_EXTENDED_BYTES:
            raise tarfile.ReadError(
                f"an extended header of {self.size} bytes, over {_MAX_EXTENDED_BYTES >> 10} KiB"
            )
        depth: int = getattr(tar, "_gitedge_extended", 0)
        if depth >= _MAX_EXTENDED_CHAIN:
            raise tarfile.ReadError(
                f"more than {_MAX_EXTENDED_CHAIN} extended headers before one member"
            )
        setattr(tar, "_gitedge_extended", depth + 1)  # noqa: B010
        try:
            return super()._proc_member(tar)  # type: ignore[misc,no-any-return]
        finally:
            setattr(tar, "_gitedge_extended", depth)  # noqa: B010


def _open_tar(raw: IO[bytes], file: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(fileobj=raw, mode="r|", tarinfo=_BoundedTarInfo)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise _refuse(file, f"not a tar file ({e})") from None


def _first_index(tar: tarfile.TarFile, file: Path) -> BundleIndex:
    try:
        first = tar.next()
    except (tarfile.TarError, EOFError) as e:
        raise _refuse(file, f"not a tar file ({e})") from None
    if first is None or first.name != INDEX_NAME:
        raise _refuse(file, f"does not start with {INDEX_NAME}: not a gitedge bundle")
    if not first.isreg():
        raise _refuse(file, f"{INDEX_NAME} is not a regular file")
    if first.size > MAX_INDEX_BYTES:
        raise _refuse(file, f"{INDEX_NAME} is {first.size} bytes, over the 1 MiB limit")
    f = tar.extractfile(first)
    assert f is not None
    try:
        data = f.read()
    except (tarfile.TarError, EOFError) as e:  # the file ends inside the index
        raise _refuse(file, f"truncated or corrupt tar ({e})") from None
    return BundleIndex.from_json(data, where=f"bundle {file}")


def read_index(file: Path) -> BundleIndex:
    """Only the index (the first member): cheap, for checks before extracting anything."""
    try:
        with file.open("rb") as raw, _open_tar(raw, file) as tar:
            return _first_index(tar, file)
    except OSError as e:
        raise _refuse(file, f"cannot read: {e.strerror}") from None


@dataclass
class OpenedBundle:
    """An extracted, fully checked bundle in a scratch directory (removed by :meth:`close`)."""

    file: Path
    index: BundleIndex
    root: Path

    @property
    def git_file(self) -> Path:
        return self.root / GIT_NAME

    @property
    def layout(self) -> Path:
        return self.root / LAYOUT_DIR

    def location(self, ref: ImageRef | str) -> LayoutRef | None:
        """Where the mirror reads ``ref`` from (the layout, by the digest the index names), or
        None when the bundle does not hold it."""
        img = self.index.image(str(ref))
        return LayoutRef(self.layout, img.digest) if img is not None else None

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> OpenedBundle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class _Extraction:
    file: Path
    root: Path
    seen: set[str] = field(default_factory=set)
    bad_blobs: dict[str, str] = field(default_factory=dict)  # digest -> what it hashed to
    git_digest: str | None = None


def _room(m: tarfile.TarInfo, ex: _Extraction) -> None:
    """Writing member ``m`` must leave the scratch filesystem 10% free (the kubelet's default
    hard eviction threshold, nodefs.available<10%: below it the node evicts pods).

    A member's size is known from its header before a byte is written. Before this, a sparse
    bundle file (it costs no disk) whose ``fleet.bundle`` or a blob announced 100 GB filled
    the node's disk as it was extracted (a blob not matching its name was removed only once
    whole)."""
    try:
        usage = shutil.disk_usage(ex.root)
    except OSError:
        return
    if usage.free - m.size < usage.total // 10:
        raise _refuse(
            ex.file,
            f"member {m.name[:200]!r} is {m.size} bytes: extracting it would leave less than "
            f"10% of {ex.root.parent} free ({usage.free} bytes free now)",
        )


def open_bundle(file: Path, *, scratch: Path, progress: Progress | None = None) -> OpenedBundle:
    """Extract ``file`` into a new directory under ``scratch`` and check all of it (module
    docstring). Raises :class:`InvalidInput` (unsafe or malformed bundle, naming the file and
    member) or :class:`DigestMismatch` (naming the image and digest); nothing is left behind."""
    scratch.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(dir=scratch, prefix=".bundle-"))
    ok = False
    try:
        try:
            total = file.stat().st_size
            with file.open("rb") as raw, _open_tar(raw, file) as tar:
                index = _first_index(tar, file)
                ex = _Extraction(file, root)
                for member in _members(tar, file):
                    _extract(tar, member, ex)
                    if progress is not None:
                        progress(raw.tell(), total)
        except (tarfile.TarError, EOFError) as e:
            raise _refuse(file, f"truncated or corrupt tar ({e})") from None
        except OSError as e:
            raise _refuse(file, f"cannot read: {e.strerror or e}") from None
        _check(index, ex)
        ok = True
        return OpenedBundle(file, index, root)
    finally:
        if not ok:
            shutil.rmtree(root, ignore_errors=True)


def _members(tar: tarfile.TarFile, file: Path) -> Iterator[tarfile.TarInfo]:
    while True:
        try:
            member = tar.next()
        except (tarfile.TarError, EOFError) as e:
            raise _refuse(file, f"truncated or corrupt tar ({e})") from None
        if member is None:
            return
        yield member


def _extract(tar: tarfile.TarFile, m: tarfile.TarInfo, ex: _Extraction) -> None:
    name, file = m.name, ex.file
    shown = repr(name[:200])
    if m.issym() or m.islnk():
        raise _refuse(file, f"member {shown} is a link (to {m.linkname[:200]!r}): refused")
    if m.ischr() or m.isblk() or m.isfifo():
        raise _refuse(file, f"member {shown} is a device or pipe: refused")
    if m.issparse() or not (m.isreg() or m.isdir()):
        raise _refuse(file, f"member {shown} is not a regular file: refused")
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in parts):
        raise _refuse(file, f"member {shown} has an unsafe path (absolute, '..' or empty part)")
    if name in ex.seen or name == INDEX_NAME:
        raise _refuse(file, f"member {shown} appears twice")
    ex.seen.add(name)
    if m.isdir():
        if name not in _DIRS:
            raise _refuse(file, f"unexpected directory {shown}")
        return
    blob = _BLOB.match(name)
    if not (blob or name == GIT_NAME or name in _SMALL_LIMITS):
        raise _refuse(file, f"unexpected member {shown} (not part of the bundle format)")
    limit = _SMALL_LIMITS.get(name)
    if limit is not None and m.size > limit:
        raise _refuse(file, f"member {shown} is {m.size} bytes, over its {limit} byte limit")
    _room(m, ex)
    src = tar.extractfile(m)
    assert src is not None
    dest = ex.root / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    algorithm = blob.group(1).split("/")[0] if blob else "sha256"
    h = hashlib.new(algorithm)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".partial-")
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := src.read(_CHUNK):
                h.update(chunk)
                out.write(chunk)
        got = f"{algorithm}:{h.hexdigest()}"
        if blob:
            want = blob.group(1).replace("/", ":")
            if got != want:
                ex.bad_blobs[want] = got
                Path(tmp).unlink()
                return
        if name == GIT_NAME:
            ex.git_digest = got
        Path(tmp).replace(dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check(index: BundleIndex, ex: _Extraction) -> None:
    """Everything the index promises is there and intact; the first problem is raised."""
    file = ex.file
    if GIT_NAME not in ex.seen:
        raise _refuse(file, f"{GIT_NAME} is missing")
    if ex.git_digest != index.git_digest:
        raise _refuse(
            file, f"{GIT_NAME} hashes to {ex.git_digest}, the index says {index.git_digest}"
        )
    blobs = ex.root / LAYOUT_DIR / "blobs"
    for img in index.images:
        ref = ImageRef.parse(img.ref)
        if ref.digest and ref.digest != img.digest:
            raise DigestMismatch(
                image=img.ref,
                digest=ref.digest,
                detail=f"bundle {file} holds {img.digest} under this pinned reference",
            )
        _check_image(img, blobs, ex)
    if ex.bad_blobs:  # a blob no image uses: refused all the same, every blob must match
        want, got = min(ex.bad_blobs.items())
        raise _refuse(
            file,
            f"member {LAYOUT_DIR}/blobs/{want.replace(':', '/')} hashes to {got}, not to "
            "its name (every blob must match its name, whether an image uses it or not)",
        )


def _check_image(img: BundleImage, blobs: Path, ex: _Extraction) -> None:
    def path_of(digest: str) -> Path:
        alg, hexpart = digest.split(":", 1)
        return blobs / alg / hexpart

    def refuse_bad(digest: str) -> None:
        if digest in ex.bad_blobs:
            raise DigestMismatch(
                image=img.ref,
                digest=digest,
                detail=f"bundle {ex.file}: the blob hashes to {ex.bad_blobs[digest]}",
            )

    def missing(digest: str, what: str) -> InvalidInput:
        return _refuse(ex.file, f"image {img.ref}: {what} {digest} is missing from the bundle")

    todo: list[tuple[str, str | None, int | None]] = [(img.digest, img.media_type, None)]
    seen: set[str] = set()
    while todo:
        digest, media, size = todo.pop()
        if digest in seen:
            continue
        seen.add(digest)
        refuse_bad(digest)
        try:
            with path_of(digest).open("rb") as f:
                data = f.read(MAX_MANIFEST_BYTES + 1)
        except FileNotFoundError:
            raise missing(digest, "manifest") from None
        if size is not None and len(data) != size:
            raise DigestMismatch(
                image=img.ref,
                digest=digest,
                detail=f"bundle {ex.file}: manifest is {len(data)} bytes, described as {size}",
            )
        m: Manifest = parse_manifest(
            data, digest=digest, content_type=media, where=f"image {img.ref} in bundle {ex.file}"
        )
        todo.extend((c.digest, c.media_type, c.size) for c in m.children)
        for b in m.blobs:
            refuse_bad(b.digest)
            try:
                have = path_of(b.digest).stat().st_size
            except FileNotFoundError:
                raise missing(b.digest, "blob") from None
            if have != b.size:
                raise DigestMismatch(
                    image=img.ref,
                    digest=b.digest,
                    detail=f"bundle {ex.file}: blob is {have} bytes, described as {b.size}",
                )
