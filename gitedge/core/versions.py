"""K3s versions (``v1.30.6+k3s1``): parsing, ordering and the minor-by-minor upgrade path.

Kubernetes forbids skipping minor versions, and k3s-upgrade refuses downgrades. Sites cannot ask
the internet which releases exist, so every intermediate step comes from the fleet's
``K3sReleases`` catalog: from the current version to the target, the path goes through the newest
stable catalog release of every intermediate minor, then the target itself.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import total_ordering

from gitedge.errors import UpgradePathError, VersionError

_VERSION = re.compile(
    r"^v(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<pre>rc(?:0|[1-9]\d*)))?\+k3s(?P<build>[1-9]\d*)$"
)


@total_ordering
@dataclass(frozen=True)
class K3sVersion:
    """A K3s release version; orders by (major, minor, patch, rc-before-final, k3sN)."""

    major: int
    minor: int
    patch: int
    rc: int | None
    build: int
    text: str

    @classmethod
    def parse(cls, text: str) -> K3sVersion:
        """Parse ``v1.30.6+k3s1`` or ``v1.30.6-rc1+k3s1``; VersionError on anything else."""
        m = _VERSION.match(text) if isinstance(text, str) else None
        if not m:
            raise VersionError(
                f"invalid K3s version {text!r}: "
                "expected the form v1.30.6+k3s1 (or v1.30.6-rc1+k3s1)"
            )
        pre = m.group("pre")
        return cls(
            major=int(m.group("major")),
            minor=int(m.group("minor")),
            patch=int(m.group("patch")),
            rc=int(pre[2:]) if pre else None,
            build=int(m.group("build")),
            text=text,
        )

    @property
    def key(self) -> tuple[int, int, int, int, int]:
        rc = self.rc if self.rc is not None else 1 << 30
        return (self.major, self.minor, self.patch, rc, self.build)

    @property
    def minor_line(self) -> str:
        """``v1.30``: the minor this version belongs to."""
        return f"v{self.major}.{self.minor}"

    @property
    def is_prerelease(self) -> bool:
        return self.rc is not None

    @property
    def image_tag(self) -> str:
        """The rancher/k3s-upgrade image tag: the version with ``+`` replaced by ``-``."""
        return self.text.replace("+", "-")

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, K3sVersion):
            return NotImplemented
        return self.key < other.key

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, K3sVersion):
            return NotImplemented
        return self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __str__(self) -> str:
        return self.text


@functools.lru_cache(maxsize=4096)
def check_version(text: str) -> str:
    """Validate a version string for the models; raises ValueError with the same message.

    Cached (valid versions only): a fleet names the same few versions in thousands of targets.
    """
    try:
        K3sVersion.parse(text)
    except VersionError as e:
        raise ValueError(str(e)) from None
    return text


def upgrade_path(
    *, current: K3sVersion, target: K3sVersion, releases: Iterable[K3sVersion]
) -> list[K3sVersion]:
    """The versions to apply, in order, to go from ``current`` to ``target`` (empty when equal).

    Raises UpgradePathError for a downgrade, a change of major version, or an intermediate minor
    with no stable release in the catalog (the message names the minor to add).
    """
    if target == current:
        return []
    if target < current:
        raise UpgradePathError(
            f"target {target} is older than the running {current}: K3s cannot be downgraded; "
            f"raise the target to {current} or newer"
        )
    if target.major != current.major:
        raise UpgradePathError(
            f"cannot upgrade across major versions ({current} -> {target}); gitedge only steps "
            "through minors of one major"
        )
    newest: dict[int, K3sVersion] = {}
    for r in releases:
        if r.major != current.major or r.is_prerelease:
            continue
        best = newest.get(r.minor)
        if best is None or best < r:
            newest[r.minor] = r
    path: list[K3sVersion] = []
    missing: list[str] = []
    for minor in range(current.minor + 1, target.minor):
        step = newest.get(minor)
        if step is None:
            missing.append(f"v{current.major}.{minor}")
        else:
            path.append(step)
    if missing:
        raise UpgradePathError(
            f"no K3s release for minor {', '.join(missing)} in K3sReleases: Kubernetes cannot skip "
            f"minors on the way from {current} to {target}; add a release of each "
            f"(for example {missing[0]}.x+k3s1) to spec.versions"
        )
    path.append(target)
    return path
