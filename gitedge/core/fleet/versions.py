"""K3s versions (``v1.30.6+k3s1``): parsing, ordering and the minor-by-minor upgrade path.

Kubernetes forbids skipping minor versions, and k3s-upgrade refuses downgrades. Sites cannot ask
the internet which releases exist, so every intermediate step comes from the fleet's
``K3sReleases`` catalog: from the current version to the target, the path goes through the newest
stable catalog release of every intermediate minor, then the target itself.

Build months. k3s-upgrade also refuses a binary built in an earlier month than the running one:
its upgrade script (k3s-io/k3s-upgrade ``scripts/upgrade.sh``, ``replace_binary``) reads each
binary's ``buildDate`` from ``k3s kubectl version --client -o yaml`` and ``compare_build_dates``
compares them as ``date -u +%Y%m``, year and month only, failing the Job when the new one is
earlier. K3s ships patches of every active minor each month, so the newest patch of an older
minor can be built later than an older patch of a newer minor. Where the catalog gives months
(``releases[].released``), every step's month is at least the month before it:

- the intermediate patch of each minor is the newest catalog release of that minor built no later
  than the step after it (chosen from the target backwards; a release of unknown month fits);
- the running version's month is its catalog month; a running version the catalog gives no month
  is taken as built no earlier than the newest catalog release of its minor below it (patches of
  a minor are built in order); with neither, the first step is not checked (gitedge cannot know:
  k3s-upgrade checks it on the node, and its Job fails there);
- a path that cannot keep the months in order is refused, naming the two versions, their months
  and the release to add (or the target to raise).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
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
    *,
    current: K3sVersion,
    target: K3sVersion,
    releases: Iterable[K3sVersion],
    months: Mapping[K3sVersion, str] | None = None,
) -> list[K3sVersion]:
    """The versions to apply, in order, to go from ``current`` to ``target`` (empty when equal).

    ``months`` maps catalog releases to their build month (``YYYY-MM``); see the module docstring.
    Raises UpgradePathError for a downgrade, a change of major version, an intermediate minor
    with no stable release in the catalog (the message names the minor to add), or a step
    k3s-upgrade would refuse for its build month (naming both versions, their months and the fix).
    """
    months = months or {}
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
    releases = list(releases)
    by_minor = stable_by_minor(releases, major=current.major)
    missing = [
        f"v{current.major}.{m}" for m in range(current.minor + 1, target.minor) if m not in by_minor
    ]
    if missing:
        raise UpgradePathError(
            f"no K3s release for minor {', '.join(missing)} in K3sReleases: Kubernetes cannot skip "
            f"minors on the way from {current} to {target}; add a release of each "
            f"(for example {missing[0]}.x+k3s1) to spec.versions"
        )
    chain = month_chain(by_minor, target=target, lowest=current.minor + 1, months=months)
    if chain.blocked is not None:
        raise UpgradePathError(chain.blocked)
    path = [*chain.steps, target]
    running = running_month(current, releases, months)
    first = next((v for v in path if v in months), None)
    if running is not None and first is not None and months[first] < running[0]:
        raise UpgradePathError(_too_early(current, running, first, months, path, target))
    return path


def stable_by_minor(releases: Iterable[K3sVersion], *, major: int) -> dict[int, list[K3sVersion]]:
    out: dict[int, list[K3sVersion]] = {}
    for r in releases:
        if r.major == major and not r.is_prerelease:
            out.setdefault(r.minor, []).append(r)
    return out


@dataclass(frozen=True)
class MonthChain:
    """The intermediate steps chosen below a target (oldest first), or why none fits."""

    steps: tuple[K3sVersion, ...]
    blocked: str | None = None  # the refusal, when a minor has no release old enough


def month_chain(
    by_minor: Mapping[int, list[K3sVersion]],
    *,
    target: K3sVersion,
    lowest: int,
    months: Mapping[K3sVersion, str],
) -> MonthChain:
    """From the target backwards, the newest release of each minor ``target.minor - 1`` down to
    ``lowest`` built no later than the step after it (``compare_build_dates`` in k3s-upgrade's
    scripts/upgrade.sh refuses a step to an earlier month). A minor with no release stops the
    chain there (the caller reports missing minors)."""
    steps: list[K3sVersion] = []
    after, bound = target, months.get(target)
    for minor in range(target.minor - 1, lowest - 1, -1):
        cands = by_minor.get(minor)
        if not cands:
            break
        fit = [r for r in cands if bound is None or r not in months or months[r] <= bound]
        if not fit:
            line = f"v{target.major}.{minor}"
            oldest = min(cands, key=lambda r: months[r])
            return MonthChain(
                tuple(reversed(steps)),
                f"every {line} release in K3sReleases was built after {after} ({bound}), the "
                f"step after it: k3s-upgrade (compare_build_dates) refuses a step from "
                f"{oldest} ({months[oldest]}) to {after} ({bound}); add a {line} release built "
                f"in {bound} or earlier, with its month, to K3sReleases",
            )
        pick = max(fit)
        steps.append(pick)
        after, bound = pick, months.get(pick, bound)
    return MonthChain(tuple(reversed(steps)))


def running_month(
    current: K3sVersion, releases: Iterable[K3sVersion], months: Mapping[K3sVersion, str]
) -> tuple[str, str] | None:
    """The running version's build month (or the earliest it can be) and how it is known; None
    when the catalog cannot say (module docstring)."""
    if current in months:
        return months[current], f"{current} ({months[current]})"
    older = [
        r
        for r in releases
        if r in months and (r.major, r.minor) == (current.major, current.minor) and r < current
    ]
    if not older:
        return None
    best = max(older, key=lambda r: (months[r], r))
    return months[best], (
        f"{current} (built {months[best]} or later: it follows {best}, built {months[best]})"
    )


def _too_early(
    current: K3sVersion,
    running: tuple[str, str],
    step: K3sVersion,
    months: Mapping[K3sVersion, str],
    path: list[K3sVersion],
    target: K3sVersion,
) -> str:
    month, running_text = running
    line = step.minor_line
    if step == target or months.get(target, month) < month:
        fix = (
            f"raise the target to a {target.minor_line} release built in {month} or later, and "
            "list it in K3sReleases with its month"
        )
    else:
        nxt = path[path.index(step) + 1]
        ok = nxt in months and months[nxt] >= month
        upto = f" and no later than {months[nxt]} (the month of {nxt})" if ok else ""
        fix = (
            f"add a {line} release built in {month} or later{upto}, with its month, to K3sReleases"
        )
    return (
        f"k3s-upgrade refuses the step to {step} (built {months[step]}) on nodes running "
        f"{running_text}: its upgrade script's compare_build_dates fails a binary built in an "
        f"earlier month than the running one; {fix}"
    )
