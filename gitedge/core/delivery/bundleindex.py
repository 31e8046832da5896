"""The index of an offline bundle, ``gitedge-bundle.json``: the first member of the bundle tar.

Pure: JSON in, checked model out (and back). Names the format and its version, the branch and
tip the git bundle carries (and ``since``, the commit an incremental bundle builds on), the git
bundle's digest, and every image reference -> the digest the bundle's OCI layout holds for it.
``adapters/images/bundlefile.py`` reads and writes the tar around it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gitedge.core.images.manifests import is_digest
from gitedge.core.images.refs import ImageRef
from gitedge.errors import InvalidInput, Problem, scrub

FORMAT = "gitedge.io/bundle"
VERSION = 1
INDEX_NAME = "gitedge-bundle.json"
GIT_NAME = "fleet.bundle"
LAYOUT_DIR = "images"
MAX_INDEX_BYTES = 1 << 20
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?\Z")

__all__ = [
    "FORMAT",
    "GIT_NAME",
    "INDEX_NAME",
    "LAYOUT_DIR",
    "MAX_INDEX_BYTES",
    "VERSION",
    "BundleImage",
    "BundleIndex",
    "check_branch",
]


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
        except (ValueError, UnicodeDecodeError, RecursionError) as e:  # RecursionError: [[[[...
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
            src, git = _obj(doc, "source"), _obj(doc, "git")
            sel = _obj(doc, "selection", optional=True)
            since = src.get("since")
            images = tuple(
                BundleImage(
                    ref=str(ImageRef.parse(_str(i, "ref"))),
                    digest=_digest(_str(i, "digest")),
                    media_type=_str(i, "mediaType"),
                    size=_size(i, "size"),
                )
                for i in _list(doc, "images", of=dict, required=True)
            )
            index = cls(
                created_at=_instant(_str(doc, "createdAt")),
                repo=_str(src, "repo"),
                branch=check_branch(src.get("branch")),
                tip=_sha(src.get("tip")),
                since=None if since is None else _sha(since),
                path="" if src.get("path") is None else _str(src, "path"),
                git_digest=_digest(_str(git, "digest")),
                git_size=_size(git, "size"),
                images=images,
                platforms=tuple(_list(doc, "platforms", of=str)),
                clusters=tuple(_list(sel, "clusters", of=str)),
                all_images=sel.get("all", False) is True,
            )
        except (KeyError, TypeError, ValueError, OverflowError) as e:  # int(1e999): Overflow
            raise bad(f"malformed ({type(e).__name__}: {scrub(str(e), limit=200)})") from None
        if git.get("file") != GIT_NAME:
            raise bad(f"git.file must be {GIT_NAME!r}")
        if len({i.ref for i in images}) != len(images):
            raise bad("an image is listed twice")
        return index


def _obj(doc: dict[str, Any], key: str, *, optional: bool = False) -> dict[str, Any]:
    """``doc[key]``, which must be an object (or absent/null when ``optional``)."""
    value = doc.get(key)
    if value is None and optional:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"{key} must be an object, not {type(value).__name__}")
    return value


def _str(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str):
        raise TypeError(f"{key} must be a string, not {type(value).__name__}")
    return value


def _size(doc: dict[str, Any], key: str) -> int:
    value = doc.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError(f"{key} must be a whole number of bytes, not {value!r:.40}")
    return value


def _list(doc: dict[str, Any], key: str, *, of: type, required: bool = False) -> list[Any]:
    """``doc[key]``: a list of ``of`` (absent or null: empty, unless ``required``)."""
    value = doc.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(v, of) for v in value):
        raise TypeError(f"{key} must be a list of {of.__name__}")
    return value


def _instant(text: str) -> datetime:
    """An ISO 8601 instant; one without an offset is taken as UTC (as the writer writes it)."""
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _sha(value: Any) -> str:
    if not isinstance(value, str) or not _SHA.match(value):
        raise ValueError(f"{value!r} is not a commit id")
    return value


def _digest(value: Any) -> str:
    if not isinstance(value, str) or not is_digest(value):
        raise ValueError(f"{value!r} is not a digest")
    return value


def check_branch(value: Any) -> str:
    """``value`` if it is a plausible branch name; ValueError otherwise."""
    if not isinstance(value, str) or not re.match(r"^[A-Za-z0-9._/-]{1,200}$", value):
        raise ValueError(f"{value!r} is not a branch name")
    if ".." in value or value.startswith(("/", "-")) or value.endswith((".lock", "/")):
        raise ValueError(f"{value!r} is not a branch name")
    return value
