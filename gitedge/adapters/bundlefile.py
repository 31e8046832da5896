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
must hash to its name; the git bundle must hash to the index's digest; every image the index
names must be complete (each manifest and blob present, sizes as described, pinned digests as
pinned). A bundle that fails any check is refused before anything is recorded anywhere.

Writing goes to a temporary file beside the target and is renamed into place after an fsync:
a failed or interrupted create leaves no half file.

The git side of *creating* a bundle is here too (:func:`stage_git`, :func:`write_git_bundle`):
it runs the ``git`` CLI with the operator's own configuration, so whatever reaches the fleet
repo from their machine (ssh agent, credential helper) works.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast

from gitedge.adapters.mirroring import LayoutRef
from gitedge.core.images import ImageRef
from gitedge.core.ocimanifest import MAX_MANIFEST_BYTES, Manifest, is_digest, parse_manifest
from gitedge.errors import (
    DigestMismatch,
    InvalidInput,
    Problem,
    SourceUnavailable,
    UsageError,
    scrub,
)

FORMAT = "gitedge.io/bundle"
VERSION = 1
INDEX_NAME = "gitedge-bundle.json"
GIT_NAME = "fleet.bundle"
LAYOUT_DIR = "images"
MAX_INDEX_BYTES = 1 << 20
_SMALL_LIMITS = {f"{LAYOUT_DIR}/oci-layout": 4096, f"{LAYOUT_DIR}/index.json": 16 << 20}
_DIRS = frozenset({LAYOUT_DIR, f"{LAYOUT_DIR}/blobs", f"{LAYOUT_DIR}/blobs/sha256",
                   f"{LAYOUT_DIR}/blobs/sha512"})  # fmt: skip
_BLOB = re.compile(rf"^{LAYOUT_DIR}/blobs/(sha256/[a-f0-9]{{64}}|sha512/[a-f0-9]{{128}})$")
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_CHUNK = 1 << 20

Progress = Callable[[int, int], None]  # (bytes done, bytes in all)

__all__ = [
    "BundleImage",
    "BundleIndex",
    "GitStage",
    "OpenedBundle",
    "file_digest",
    "open_bundle",
    "read_index",
    "stage_git",
    "write_bundle",
    "write_git_bundle",
]


# ---------------------------------------------------------------------------- the index


@dataclass(frozen=True)
class BundleImage:
    """One image in the bundle: its reference as the fleet names it, and what the layout holds."""

    ref: str
    digest: str
    media_type: str
    size: int  # bytes of its manifests and blobs (shared blobs counted for each image)


@dataclass(frozen=True)
class BundleIndex:
    """``gitedge-bundle.json``."""

    created_at: datetime
    repo: str  # as the operator named it, credentials stripped
    branch: str
    tip: str
    since: str | None
    path: str  # the fleet's directory in the repo (an AgentConfig's source.path)
    git_digest: str
    git_size: int
    images: tuple[BundleImage, ...]
    platforms: tuple[str, ...] = ()  # () = every platform of each image
    clusters: tuple[str, ...] = ()
    all_images: bool = False

    def image(self, ref: str) -> BundleImage | None:
        for img in self.images:
            if img.ref == ref:
                return img
        return None

    def to_json(self) -> bytes:
        doc = {
            "format": FORMAT,
            "version": VERSION,
            "createdAt": self.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "source": {
                "repo": self.repo,
                "branch": self.branch,
                "tip": self.tip,
                "since": self.since,
                "path": self.path,
            },
            "git": {"file": GIT_NAME, "size": self.git_size, "digest": self.git_digest},
            "images": [
                {"ref": i.ref, "digest": i.digest, "mediaType": i.media_type, "size": i.size}
                for i in self.images
            ],
            "platforms": list(self.platforms),
            "selection": {"clusters": list(self.clusters), "all": self.all_images},
        }
        return json.dumps(doc, indent=2).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes, *, where: str) -> BundleIndex:
        """Parse and check an index; :class:`InvalidInput` naming ``where`` on anything wrong."""

        def bad(msg: str) -> InvalidInput:
            return InvalidInput([Problem(where, 0, f"{INDEX_NAME}: {msg}")], "invalid bundle")

        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise bad(f"not JSON ({e})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise bad(f"not a gitedge bundle index (format is not {FORMAT!r})")
        version = doc.get("version")
        if version != VERSION:
            raise bad(
                f"format version {version!r} is not supported (this gitedge reads version "
                f"{VERSION}); import it with a gitedge that does"
            )
        try:
            src, git, sel = doc["source"], doc["git"], doc.get("selection") or {}
            tip, since = _sha(src["tip"]), src.get("since")
            images = tuple(
                BundleImage(
                    ref=str(ImageRef.parse(i["ref"])),
                    digest=_digest(i["digest"]),
                    media_type=str(i["mediaType"]),
                    size=int(i["size"]),
                )
                for i in doc["images"]
            )
            index = cls(
                created_at=datetime.fromisoformat(str(doc["createdAt"]).replace("Z", "+00:00")),
                repo=str(src["repo"]),
                branch=_branch(src["branch"]),
                tip=tip,
                since=None if since is None else _sha(since),
                path=str(src.get("path") or ""),
                git_digest=_digest(git["digest"]),
                git_size=int(git["size"]),
                images=images,
                platforms=tuple(str(p) for p in doc.get("platforms") or ()),
                clusters=tuple(str(c) for c in sel.get("clusters") or ()),
                all_images=bool(sel.get("all", False)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise bad(f"malformed ({type(e).__name__}: {scrub(str(e), limit=200)})") from None
        if git.get("file") != GIT_NAME:
            raise bad(f"git.file must be {GIT_NAME!r}")
        if len({i.ref for i in images}) != len(images):
            raise bad("an image is listed twice")
        return index


def _sha(value: Any) -> str:
    if not isinstance(value, str) or not _SHA.match(value):
        raise ValueError(f"{value!r} is not a commit id")
    return value


def _digest(value: Any) -> str:
    if not isinstance(value, str) or not is_digest(value):
        raise ValueError(f"{value!r} is not a digest")
    return value


def _branch(value: Any) -> str:
    if not isinstance(value, str) or not re.match(r"^[A-Za-z0-9._/-]{1,200}$", value):
        raise ValueError(f"{value!r} is not a branch name")
    if ".." in value or value.startswith(("/", "-")) or value.endswith((".lock", "/")):
        raise ValueError(f"{value!r} is not a branch name")
    return value


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


def _open_tar(raw: IO[bytes], file: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(fileobj=raw, mode="r|")
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
    return BundleIndex.from_json(f.read(), where=f"bundle {file}")


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
                image=img.ref, digest=ref.digest,
                detail=f"bundle {file} holds {img.digest} under this pinned reference",
            )  # fmt: skip
        _check_image(img, blobs, ex)


def _check_image(img: BundleImage, blobs: Path, ex: _Extraction) -> None:
    def path_of(digest: str) -> Path:
        alg, hexpart = digest.split(":", 1)
        return blobs / alg / hexpart

    def refuse_bad(digest: str) -> None:
        if digest in ex.bad_blobs:
            raise DigestMismatch(
                image=img.ref, digest=digest,
                detail=f"bundle {ex.file}: the blob hashes to {ex.bad_blobs[digest]}",
            )  # fmt: skip

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
                image=img.ref, digest=digest,
                detail=f"bundle {ex.file}: manifest is {len(data)} bytes, described as {size}",
            )  # fmt: skip
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
                    image=img.ref, digest=b.digest,
                    detail=f"bundle {ex.file}: blob is {have} bytes, described as {b.size}",
                )  # fmt: skip


# ---------------------------------------------------------------------------- git (create side)


@dataclass(frozen=True)
class GitStage:
    """A scratch bare repository holding the commits to bundle."""

    path: Path
    branch: str
    tip: str
    since: str | None


def _git(args: list[str], *, cwd: Path, what: str, timeout_s: float) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    cmd = ["git", "-c", "gc.auto=0", "-c", "core.hooksPath=/dev/null", *args]
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, env=env, capture_output=True, timeout=timeout_s, check=False,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise SourceUnavailable(f"{what}: git {args[0]} timed out after {timeout_s:g}s") from None
    except OSError as e:
        raise SourceUnavailable(f"{what}: cannot run git: {e.strerror}") from None
    if proc.returncode != 0:
        lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        text = "; ".join(ln.removeprefix("error: ").removeprefix("fatal: ") for ln in lines)
        raise SourceUnavailable(f"{what}: {scrub(text or 'git failed')}")
    return proc.stdout.decode("utf-8", "replace").strip()


def stage_git(
    *, repo: str, rev: str, since: str | None, branch: str, into: Path, timeout_s: float = 600.0
) -> GitStage:
    """Fetch ``rev`` (and ``since`` when it is not already an ancestor we hold) of ``repo`` (a
    URL or a directory) into a new bare repository ``into``, as ``refs/heads/<branch>``."""
    try:
        _branch(branch)
    except ValueError as e:
        raise UsageError(f"--branch: {e}") from None
    local = Path(repo)
    source = str(local.absolute()) if local.exists() else repo
    shown = scrub(repo, limit=200)
    if local.exists():  # any revision expression works in a local repo (HEAD~1, a tag, an id)
        rev = _resolve(local, rev, f"--rev {rev!r} in {shown}")
        since = None if since is None else _resolve(local, since, f"--since {since!r} in {shown}")
    into.mkdir(parents=True, exist_ok=True)
    _git(["init", "-q", "--bare", str(into)], cwd=into, what="bundle create", timeout_s=60)
    fetch = ["fetch", "-q", "--no-tags", "--no-write-fetch-head", "--no-recurse-submodules"]
    what = f"fetch of {rev!r} from {shown}"
    _git([*fetch, source, f"+{rev}:refs/heads/{branch}"], cwd=into, what=what, timeout_s=timeout_s)
    tip = _git(["rev-parse", "--verify", f"refs/heads/{branch}^{{commit}}"], cwd=into, what=what,
               timeout_s=60)  # fmt: skip
    base = None
    if since is not None:
        what = f"--since {since!r}"
        try:
            base = _git(["rev-parse", "--verify", "-q", f"{since}^{{commit}}"], cwd=into,
                        what=what, timeout_s=60)  # fmt: skip
        except SourceUnavailable:
            _git([*fetch, source, f"+{since}:refs/gitedge/since"], cwd=into,
                 what=f"fetch of {what} from {shown}", timeout_s=timeout_s)  # fmt: skip
            base = _git(["rev-parse", "--verify", "refs/gitedge/since^{commit}"], cwd=into,
                        what=what, timeout_s=60)  # fmt: skip
        if base == tip:
            raise UsageError(f"--since {since}: it is the tip itself; there is nothing to bundle")
        try:
            _git(["merge-base", "--is-ancestor", base, tip], cwd=into, what=what, timeout_s=60)
        except SourceUnavailable:
            raise UsageError(f"--since {since} ({base}) is not an ancestor of {rev}") from None
    return GitStage(into, branch, tip, base)


def _resolve(repo: Path, rev: str, what: str) -> str:
    try:
        return _git(["rev-parse", "--verify", "-q", f"{rev}^{{commit}}"], cwd=repo, what=what,
                    timeout_s=60)  # fmt: skip
    except SourceUnavailable:
        raise UsageError(f"{what}: no such commit") from None


def write_git_bundle(stage: GitStage, out: Path, *, timeout_s: float = 600.0) -> None:
    """``git bundle create`` of the stage's branch, without what ``since`` already holds."""
    args = ["bundle", "create", "-q", str(out), f"refs/heads/{stage.branch}"]
    if stage.since:
        args.append(f"^{stage.since}")
    with contextlib.suppress(FileNotFoundError):
        out.unlink()
    _git(args, cwd=stage.path, what="git bundle create", timeout_s=timeout_s)
