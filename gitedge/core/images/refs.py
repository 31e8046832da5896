"""OCI image references (``host[:port]/repo[:tag][@sha256:...]``), parsed as Docker does.

A first path component is a registry host when it contains ``.`` or ``:`` or is ``localhost``;
otherwise the image lives on Docker Hub (``docker.io``), and single-component names get the
``library/`` prefix. The reference keeps both tag and digest: a digest pins, a tag documents.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, replace

DOCKER_HUB = "docker.io"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_HOST = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$"
)
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})\Z")  # \Z: no final newline


@dataclass(frozen=True)
class ImageRef:
    """A parsed image reference; ``str()`` gives the fully qualified form."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        """Parse a reference; ValueError with the reason on anything malformed."""
        if not isinstance(text, str) or not text or text != text.strip():
            raise ValueError(f"invalid image reference {text!r}")
        rest, digest = text, None
        if "@" in rest:
            rest, digest = rest.split("@", 1)
            if not _DIGEST.match(digest):
                raise ValueError(
                    f"invalid image reference {text!r}: digest must be sha256:<64 hex> "
                    "(or sha512:<128 hex>)"
                )
        first, slash, remainder = rest.partition("/")
        if slash and ("." in first or ":" in first or first == "localhost" or first[:1] == "["):
            registry, path = first, remainder
            if not _HOST.match(registry):
                hint = ""
                if "://" in text:
                    hint = "; write it without a scheme: host[:port]/repository[:tag]"
                raise ValueError(
                    f"invalid image reference {text!r}: bad registry host {registry!r}{hint}"
                )
        else:
            registry, path = DOCKER_HUB, rest
        tag = None
        last = path.rsplit("/", 1)[-1]
        if ":" in last:
            path, tag = path.rsplit(":", 1)
            if not _TAG.match(tag):
                raise ValueError(f"invalid image reference {text!r}: bad tag {tag!r}")
        if not _REPO.match(path):
            raise ValueError(
                f"invalid image reference {text!r}: repository {path!r} must be lowercase "
                "path components of letters, digits and separators"
            )
        if registry == DOCKER_HUB and "/" not in path:
            path = f"library/{path}"
        return cls(registry=registry, repository=path, tag=tag, digest=digest)

    @property
    def name(self) -> str:
        """``registry/repository`` without tag or digest."""
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    def with_registry(self, registry: str) -> ImageRef:
        """The same repository, tag and digest on another registry (the site's cache)."""
        return replace(self, registry=registry)


@functools.lru_cache(maxsize=4096)
def check_image(text: str) -> str:
    """Validate a reference for the models (raises ValueError); keeps the text as written.

    Cached (valid references only): a fleet names the same few images in thousands of targets.
    """
    ImageRef.parse(text)
    return text


def cache_host(url: str) -> str:
    """``host[:port]`` of a cache URL given as ``host[:port]`` or ``http(s)://host[:port][/]``."""
    host = re.sub(r"^[a-z]+://", "", url.strip()).rstrip("/")
    if not host or "/" in host or not _HOST.match(host):
        raise ValueError(
            f"invalid registry cache url {url!r}: expected host[:port], optionally with http(s)://"
        )
    return host
