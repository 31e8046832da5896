"""Which images an offline bundle carries (pure: the fleet and the clusters' facts in, refs out).

- For each cluster named: the images its plan needs (``agentrules.needed_images``: the K3s
  upgrade image of every step of the path, then the OS image). A cluster whose running K3s
  version is unknown gets every step any older cluster could take: the release of each minor in
  ``K3sReleases`` below the target's that the path picks (the newest, or with build months the
  newest built no later than the next step: ``versions.month_chain``), then the target (and, for
  an OS image carrying K3s, every ``os.via`` image before it).
- A K3s upgrade image whose version has a digest in ``K3sReleases`` is ``repo:tag@digest``:
  the bundle holds those bytes, and creating it refuses a tag that serves another digest.
- ``all``: the same for every target of the fleet, suspended ones included (a technician's
  stick should not go stale because a target was resumed).

- SUC's kubectl image, whenever any other image is carried (every Job that cordons or drains
  runs it): each AgentConfig's ``apply.kubectlImage``, else the default of the SUC release gitedge
  vendors (``core/delivery/sucimages``); with ``suc``, also that release's controller image, to
  bring a new site's SUC up with no uplink (its manifests ship in gitedge: ``gitedge/data/suc``).

References are returned in a stable order, without duplicates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from gitedge.core.delivery.sucimages import SUC_IMAGE, default_kubectl_image
from gitedge.core.fleet.model import Fleet, K3sTarget
from gitedge.core.fleet.versions import K3sVersion, month_chain, stable_by_minor
from gitedge.core.images.refs import ImageRef
from gitedge.core.passrules import needed_images
from gitedge.core.rollout.planning import ClusterFacts, plan
from gitedge.core.rollout.sucplans import k3s_image_tag

__all__ = ["bundle_images", "every_step", "suc_images"]


def every_step(
    releases: Iterable[K3sVersion],
    target: K3sVersion,
    months: Mapping[K3sVersion, str] | None = None,
) -> list[K3sVersion]:
    """The release of each minor below ``target``'s (same major) that a path to ``target``
    steps through (``versions.month_chain``: the newest built no later than the step after it),
    then ``target``: every version a path to ``target`` from any older cluster can take. The
    choice does not depend on where a cluster starts, so one chain serves every cluster."""
    by_minor = {
        m: rs for m, rs in stable_by_minor(releases, major=target.major).items() if m < target.minor
    }
    lowest = min(by_minor, default=target.minor)
    chain = month_chain(by_minor, target=target, lowest=lowest, months=months or {})
    return [*chain.steps, target]


def _k3s_images(fleet: Fleet, spec: K3sTarget, versions: Sequence[K3sVersion]) -> list[ImageRef]:
    base = ImageRef.parse(spec.upgrade_image)
    details = fleet.k3s_release_details()
    return [
        ImageRef(
            base.registry,
            base.repository,
            tag=k3s_image_tag(v.text),
            digest=details[v].digest if v in details else None,
        )
        for v in versions
    ]


def _months(fleet: Fleet) -> dict[K3sVersion, str]:
    return {v: e.released for v, e in fleet.k3s_release_details().items() if e.released}


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
    releases, months = fleet.k3s_releases(), _months(fleet)
    for facts in clusters:
        p = plan(fleet, facts, now=now)
        if p.k3s is not None and facts.k3s_version is None:
            steps = every_step(releases, K3sVersion.parse(p.k3s.version), months)
            out += _k3s_images(fleet, p.k3s.spec, steps)
            out += [n.ref for n in needed_images(p) if n.component == "os"]
        else:
            out += [n.ref for n in needed_images(p)]
        if p.os is not None and p.os.steps and facts.k3s_version is None:
            out[-1:-1] = [ImageRef.parse(s.image) for s in p.os.spec.via]  # any older cluster's
    if all_targets:
        for target in fleet.targets.values():
            spec = target.spec
            if spec.k3s is not None:
                steps = every_step(releases, K3sVersion.parse(spec.k3s.version), months)
                out += _k3s_images(fleet, spec.k3s, steps)
            if spec.os is not None:
                out += [ImageRef.parse(s.image) for s in spec.os.via]  # an OS carrying K3s
                out.append(ImageRef.parse(spec.os.image))
    if out or suc:
        out += suc_images(kubectl=kubectl, controller=suc)
    return tuple(dict.fromkeys(out))
