"""TrustPolicy ``spec.images.requireDigest``: which images the fleet names by tag only.

A signed commit approves what it names. A tag names whatever the registry serves when a site
mirrors, so with ``requireDigest`` (the default, also for a repo without a TrustPolicy) every
image a site pulls must carry its digest in the fleet repo:

- the OS image of a target (``spec.os.image``: ``repo:tag@sha256:...``) and each image on its
  way (``spec.os.via``);
- the K3s upgrade image of every catalog version a path may use: a ``K3sReleases``
  ``spec.releases`` entry with ``digest`` (a version listed only under ``spec.versions`` has no
  place for one; a target version missing from the catalog neither).

Images the fleet does not name (SUC's own and its kubectl) are not the fleet's to pin.
``validate`` checks every target (:func:`fleet_unpinned`); ``plan`` and the agent check what one
cluster's plan pulls (:func:`plan_unpinned`), and the agent holds only the component concerned.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from gitedge.core.delivery.bundlecontents import every_step
from gitedge.core.fleet.model import Fleet, K3sTarget
from gitedge.core.fleet.versions import K3sVersion
from gitedge.core.images.refs import ImageRef
from gitedge.core.rollout.planning import Plan
from gitedge.core.status.conditions import IMAGES_PINNED, Condition
from gitedge.errors import Problem

Component = Literal["os", "k3s"]
HINT = "run `gitedge pin` to name it by digest"

__all__ = [
    "Unpinned",
    "fleet_unpinned",
    "held_components",
    "k3s_candidates",
    "pins_condition",
    "plan_unpinned",
]


@dataclass(frozen=True)
class Unpinned:
    """An image a site would pull by tag alone, and where the fleet repo names it."""

    component: Component
    image: str
    path: str
    line: int
    detail: str

    @property
    def problem(self) -> Problem:
        return Problem(self.path, self.line, f"image {self.image} {self.detail}")

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: image {self.image} {self.detail}"


def _os_all(fleet: Fleet, name: str) -> list[Unpinned]:
    """The target's tag-only OS images: its image, then each ``os.via`` image on the way."""
    spec = fleet.targets[name].spec.os
    if spec is None:
        return []
    o = fleet.origins[("UpgradeTarget", name)]
    detail = f"is named by tag only and TrustPolicy images.requireDigest is on: {HINT}"
    out = []
    if not ImageRef.parse(spec.image).digest:
        out.append(Unpinned("os", spec.image, o.path, o.line_of("os", "image"), detail))
    for i, step in enumerate(spec.via):
        if not ImageRef.parse(step.image).digest:
            line = o.line_of("os", "via", i, "image")
            out.append(Unpinned("os", step.image, o.path, line, detail))
    return out


@dataclass(frozen=True)
class _Entry:
    kind: str  # K3sReleases document name
    field: Literal["versions", "releases"]
    index: int
    digest: str | None


def _catalog(fleet: Fleet) -> dict[K3sVersion, _Entry]:
    """Where each catalog version is listed (lines are looked up only for a problem)."""
    out: dict[K3sVersion, _Entry] = {}
    for name, doc in fleet.releases.items():
        for i, text in enumerate(doc.spec.versions):
            out[K3sVersion.parse(text)] = _Entry(name, "versions", i, None)
        for i, entry in enumerate(doc.spec.releases):
            out[K3sVersion.parse(entry.version)] = _Entry(name, "releases", i, entry.digest)
    return out


def _k3s(
    fleet: Fleet,
    *,
    target: str,
    spec: K3sTarget,
    versions: Iterable[str],
    catalog: dict[K3sVersion, _Entry],
) -> list[Unpinned]:
    """The versions whose upgrade image has no digest in the catalog."""
    out = []
    for text in versions:
        version = K3sVersion.parse(text)
        found = catalog.get(version)
        if found is not None and found.digest is not None:
            continue
        image = f"{spec.upgrade_image}:{version.image_tag}"
        if found is None:
            o = fleet.origins[("UpgradeTarget", target)]
            detail = (
                f"has no digest: K3s {version} is not in a K3sReleases catalog; add "
                f"`- {{version: {version}}}` under spec.releases, then {HINT}"
            )
            out.append(Unpinned("k3s", image, o.path, o.line_of("k3s", "version"), detail))
            continue
        o = fleet.origins[("K3sReleases", found.kind)]
        detail = (
            f"has no digest in its spec.releases entry: {HINT}"
            if found.field == "releases"
            else f"has no digest: K3s {version} is listed under spec.versions, which holds no "
            f"digest; move it to spec.releases (`- {{version: {version}}}`), then {HINT}"
        )
        out.append(Unpinned("k3s", image, o.path, o.line_of(found.field, found.index), detail))
    return out


_NONE = _Entry("", "versions", 0, None)


def k3s_candidates(spec: K3sTarget, releases: Iterable[K3sVersion]) -> list[str]:
    """Every version a path to ``spec.version`` may use, whatever a cluster runs: the target
    and the newest stable release of each earlier minor of its major (core/fleet/versions.py picks
    exactly those; offline bundles carry the same, core/delivery/bundlecontents.py)."""
    return [v.text for v in every_step(releases, K3sVersion.parse(spec.version))]


def fleet_unpinned(fleet: Fleet) -> list[Unpinned]:
    """Every tag-only image any target of the fleet may make a site pull (none when the
    TrustPolicy opts out), each once, in target order."""
    if not fleet.images.require_digest:
        return []
    out: list[Unpinned] = []
    catalog = _catalog(fleet)
    releases = list(catalog)
    # a fleet repeats a few images and versions in thousands of targets: each is judged once
    tag_only: dict[str, bool] = {}
    paths: dict[str, tuple[list[str], bool]] = {}  # version -> (path candidates, all pinned)
    for name, target in fleet.targets.items():
        os = target.spec.os
        if os is not None:
            images = (os.image, *(step.image for step in os.via))
            for image in images:
                if image not in tag_only:
                    tag_only[image] = ImageRef.parse(image).digest is None
            if any(tag_only[image] for image in images):
                out += _os_all(fleet, name)
        k3s = target.spec.k3s
        if k3s is not None:
            if k3s.version not in paths:
                versions = k3s_candidates(k3s, releases)
                pinned = all(
                    catalog.get(K3sVersion.parse(v), _NONE).digest is not None for v in versions
                )
                paths[k3s.version] = (versions, pinned)
            versions, pinned = paths[k3s.version]
            if not pinned:
                out += _k3s(fleet, target=name, spec=k3s, versions=versions, catalog=catalog)
    unique: dict[tuple[str, int, str], Unpinned] = {}
    for u in out:
        unique.setdefault((u.path, u.line, u.image), u)
    return list(unique.values())


def plan_unpinned(fleet: Fleet, plan: Plan) -> dict[Component, list[Unpinned]]:
    """Per component of ``plan``, the tag-only images it would pull (only components with
    some; none when the TrustPolicy opts out). The OS image counts only while it is to be
    installed; the K3s path counts whole (every step is mirrored before the first is applied)."""
    out: dict[Component, list[Unpinned]] = {}
    if not fleet.images.require_digest:
        return out
    if plan.os is not None and plan.os.current != plan.os.image:
        found = _os_all(fleet, plan.os.target)
        if found:
            out["os"] = found
    if plan.k3s is not None and plan.k3s.path:
        k3s = _k3s(
            fleet,
            target=plan.k3s.target,
            spec=plan.k3s.spec,
            versions=plan.k3s.path,
            catalog=_catalog(fleet),
        )
        if k3s:
            out["k3s"] = k3s
    return out


def _held_text(component: str, found: list[Unpinned]) -> str:
    return f"{component} held: " + "; ".join(str(u) for u in found)


def held_components(fleet: Fleet, plan: Plan) -> dict[Component, str]:
    """The components of ``plan`` the agent refuses this pass, each with why."""
    return {c: _held_text(c, found) for c, found in plan_unpinned(fleet, plan).items()}


def pins_condition(refused: dict[Component, list[Unpinned]]) -> Condition:
    """``ImagesPinned``: False (``DigestRequired``) naming each held component's images."""
    if not refused:
        return Condition(IMAGES_PINNED, "True", "Pinned", "every image planned is named by digest")
    text = "; ".join(_held_text(c, found) for c, found in sorted(refused.items()))
    return Condition(IMAGES_PINNED, "False", "DigestRequired", text)
