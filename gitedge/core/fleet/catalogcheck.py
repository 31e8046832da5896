"""`gitedge validate`'s checks of the K3sReleases catalog against the targets (pure).

- **Build months.** k3s-upgrade refuses a binary built in an earlier month than the running one
  (k3s-io/k3s-upgrade ``scripts/upgrade.sh``: ``replace_binary`` compares the two binaries'
  ``buildDate`` with ``compare_build_dates``, year and month, ``date -u +%Y%m``). For every
  target, each catalog release with a month below it is taken as a running version: when the path
  from it (``versions.upgrade_path``) is refused for a month where the months alone would not
  refuse it, the target's ``k3s`` line says so, naming both versions and months. Within one
  minor, a newer patch dated earlier than an older one is a catalog error (patches of a minor are
  built in order, and the path relies on it).
- **Digest repository.** A catalog digest is the digest of ``<upgradeImage>:<tag>`` for the
  ``k3s.upgradeImage`` of whichever target uses that version (as its target, or as a step of its
  path). A digest names bytes, so it holds for any copy of the same image; but when targets using
  one version name different ``upgradeImage`` repositories, the catalog cannot say which image it
  pinned: that is reported, naming the targets and both repositories.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from gitedge.core.fleet.model import Fleet
from gitedge.core.fleet.versions import K3sVersion, month_chain, stable_by_minor, upgrade_path
from gitedge.core.images.refs import ImageRef
from gitedge.errors import Problem, UpgradePathError

__all__ = ["catalog_problems"]


def catalog_problems(fleet: Fleet) -> list[Problem]:
    """Every problem of the catalog with the fleet's targets (module docstring), in order."""
    return sorted({*_month_order(fleet), *_unreachable(fleet), *_repositories(fleet)})


def _months(fleet: Fleet) -> dict[K3sVersion, str]:
    return {v: e.released for v, e in fleet.k3s_release_details().items() if e.released}


def _catalog_line(fleet: Fleet, version: K3sVersion) -> tuple[str, int]:
    for name, doc in fleet.releases.items():
        if any(K3sVersion.parse(e.version) == version for e in doc.spec.releases):
            o = fleet.origins[("K3sReleases", name)]
            return o.path, o.line_of("releases")
    return "K3sReleases", 0


def _month_order(fleet: Fleet) -> Iterator[Problem]:
    """A newer patch of a minor dated before an older one."""
    months = _months(fleet)
    dated = sorted(v for v in months if not v.is_prerelease)
    for older, newer in itertools.pairwise(dated):
        same_minor = (older.major, older.minor) == (newer.major, newer.minor)
        if same_minor and months[newer] < months[older]:
            path, line = _catalog_line(fleet, newer)
            yield Problem(
                path,
                line,
                f"K3sReleases: {newer} is dated {months[newer]}, before {older} "
                f"({months[older]}): patches of a minor are built in order; fix the month",
            )


def _unreachable(fleet: Fleet) -> Iterator[Problem]:
    """Targets that a cluster running a dated catalog release could not reach for the months."""
    releases, months = fleet.k3s_releases(), _months(fleet)
    if not months:
        return
    refused: dict[K3sVersion, list[str]] = {}
    for name, target in sorted(fleet.targets.items()):
        if target.spec.k3s is None:
            continue
        goal = K3sVersion.parse(target.spec.k3s.version)
        if goal not in refused:
            refused[goal] = list(_refusals(goal, releases, months))
        o = fleet.origins[("UpgradeTarget", name)]
        for msg in refused[goal]:
            yield Problem(o.path, o.line_of("k3s"), f"UpgradeTarget/{name}: {msg}")


def _refusals(
    goal: K3sVersion, releases: list[K3sVersion], months: dict[K3sVersion, str]
) -> Iterator[str]:
    for start in sorted(months):
        if start >= goal or start.major != goal.major or start.is_prerelease:
            continue
        try:
            upgrade_path(current=start, target=goal, releases=releases)
        except UpgradePathError:
            continue  # refused without months (a missing minor): not a month problem
        try:
            upgrade_path(current=start, target=goal, releases=releases, months=months)
        except UpgradePathError as e:
            yield f"a cluster running {start} cannot reach {goal}: {e}"


def _repositories(fleet: Fleet) -> Iterator[Problem]:
    """One catalog digest, targets naming different upgrade image repositories for it."""
    details = fleet.k3s_release_details()
    pinned = {v for v, e in details.items() if e.digest}
    if not pinned:
        return
    releases, months = fleet.k3s_releases(), _months(fleet)
    users: dict[K3sVersion, dict[str, list[str]]] = {}
    steps: dict[K3sVersion, tuple[K3sVersion, ...]] = {}
    for name, target in sorted(fleet.targets.items()):
        k3s = target.spec.k3s
        if k3s is None:
            continue
        goal = K3sVersion.parse(k3s.version)
        if goal not in steps:
            by_minor = stable_by_minor(releases, major=goal.major)
            lowest = min(by_minor, default=goal.minor)
            chain = month_chain(by_minor, target=goal, lowest=lowest, months=months)
            steps[goal] = (*chain.steps, goal)
        repo = ImageRef.parse(k3s.upgrade_image).name
        for v in steps[goal]:
            if v in pinned:
                users.setdefault(v, {}).setdefault(repo, []).append(name)
    for version, repos in sorted(users.items()):
        if len(repos) < 2:
            continue
        path, line = _catalog_line(fleet, version)
        named = "; ".join(f"{r} ({', '.join(ts)})" for r, ts in sorted(repos.items()))
        yield Problem(
            path,
            line,
            f"K3sReleases: the digest of {version} pins one upgrade image, but the targets that "
            f"use {version} name {len(repos)} repositories: {named}; give them the same "
            "k3s.upgradeImage (a copy of one image has its digest), or drop the digest",
        )
