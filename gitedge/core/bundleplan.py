"""Which images an offline bundle carries (pure: the fleet and the clusters' facts in, refs out).

- For each cluster named: the images its plan needs (``agentrules.needed_images``: the K3s
  upgrade image of every step of the path, then the OS image). A cluster whose running K3s
  version is unknown gets every step any older cluster could take: the newest release of each
  minor in ``K3sReleases`` below the target's, then the target.
- ``all``: the same for every target of the fleet, suspended ones included (a technician's
  stick should not go stale because a target was resumed).

- SUC's kubectl image, whenever any other image is carried (every Job that cordons or drains
  runs it): each AgentConfig's ``apply.kubectlImage``, else the default of the SUC release gitedge
  vendors (``core/sucimages``); with ``suc``, also that release's controller image, to bring a
  new site's SUC up with no uplink (its manifests ship in gitedge: ``gitedge/data/suc``).

References are returned in a stable order, without duplicates.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from gitedge.core.agentrules import needed_images
from gitedge.core.fleet import Fleet, K3sTarget
from gitedge.core.images import ImageRef
from gitedge.core.planning import ClusterFacts, plan
from gitedge.core.suc import k3s_image_tag
from gitedge.core.sucimages import SUC_IMAGE, default_kubectl_image
from gitedge.core.versions import K3sVersion

__all__ = ["bundle_images", "every_step", "suc_images"]


def every_step(releases: Iterable[K3sVersion], target: K3sVersion) -> list[K3sVersion]:
    """The newest stable release of each minor below ``target``'s (same major), then
    ``target``: every version a path to ``target`` from any older cluster can step through."""
    newest: dict[int, K3sVersion] = {}
    for r in releases:
        if r.major != target.major or r.minor >= target.minor or r.is_prerelease:
            continue
        if r.minor not in newest or newest[r.minor] < r:
            newest[r.minor] = r
    return [newest[m] for m in sorted(newest)] + [target]


def _k3s_images(spec: K3sTarget, versions: Sequence[K3sVersion]) -> list[ImageRef]:
    base = ImageRef.parse(spec.upgrade_image)
    return [ImageRef(base.registry, base.repository, tag=k3s_image_tag(v.text)) for v in versions]


def suc_images(*, kubectl: Sequence[str], controller: bool) -> list[ImageRef]:
    """SUC's images a bundle carries (module docstring)."""
    out = [ImageRef.parse(k) for k in kubectl or (default_kubectl_image(SUC_IMAGE),)]
    if controller:
        out += [ImageRef.parse(SUC_IMAGE), ImageRef.parse(default_kubectl_image(SUC_IMAGE))]
    return out


def bundle_images(
    fleet: Fleet,
    clusters: Sequence[ClusterFacts],
    *,
    all_targets: bool,
    now: datetime,
    kubectl: Sequence[str] = (),
    suc: bool = False,
) -> tuple[ImageRef, ...]:
    """Every image the bundle must hold (module docstring). Raises what planning raises
    (``AmbiguousTarget``, ``UpgradePathError``) naming the cluster."""
    out: list[ImageRef] = []
    releases = fleet.k3s_releases()
    for facts in clusters:
        p = plan(fleet, facts, now=now)
        if p.k3s is not None and facts.k3s_version is None:
            steps = every_step(releases, K3sVersion.parse(p.k3s.version))
            out += _k3s_images(p.k3s.spec, steps)
            out += [n.ref for n in needed_images(p) if n.component == "os"]
        else:
            out += [n.ref for n in needed_images(p)]
    if all_targets:
        for target in fleet.targets.values():
            spec = target.spec
            if spec.k3s is not None:
                steps = every_step(releases, K3sVersion.parse(spec.k3s.version))
                out += _k3s_images(spec.k3s, steps)
            if spec.os is not None:
                out.append(ImageRef.parse(spec.os.image))
    if out or suc:
        out += suc_images(kubectl=kubectl, controller=suc)
    return tuple(dict.fromkeys(out))
