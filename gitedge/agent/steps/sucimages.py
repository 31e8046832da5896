"""SUC's own images in the reconcile pass (rules: :mod:`gitedge.core.delivery.sucimages`).

- plan step: :func:`suc_needs` adds the kubectl image SUC's Jobs run to the images the pass
  mirrors (``apply.kubectlImage``, else read from SUC's Deployment and ConfigMap, else SUC's
  default). The mirror step copies it with the others, and the apply step writes no Plan until
  every one is in the cache: so it is there before any Plan exists.
- report step: :func:`observe` puts into the status what keeps a Job from pulling: images a Job
  pod cannot pull (with the node), a kubectl more than one minor from the servers during a step,
  and a node config (``registry.nodeMirrors``) that lacks a registry the site now needs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from gitedge.agent.passtypes import Context
from gitedge.core.delivery.sucimages import (
    SITE_SETUP_DOC,
    KubectlImage,
    default_kubectl_image,
    kubectl_skew,
    missing_mirrors,
)
from gitedge.core.images.refs import ImageRef, cache_host
from gitedge.core.passrules import NeededImage
from gitedge.core.rollout.clusterstate import ClusterSnapshot
from gitedge.core.rollout.planning import Plan
from gitedge.errors import GitEdgeError, scrub

log = logging.getLogger("gitedge.agent")

__all__ = ["observe", "suc_needs"]


def _kube(agent: Context) -> Any:
    # imported here: the kubernetes client (~0.15 s, 8 MiB) is not for print mode
    from gitedge.adapters.kube.cluster import Kube

    return agent.cluster if isinstance(agent.cluster, Kube) else None


def kubectl_image(agent: Context) -> tuple[KubectlImage, str | None]:
    """The kubectl image SUC's Jobs run, and why it may be a guess."""
    override = agent.config.apply.kubectl_image
    if override:
        return KubectlImage(override, "apply.kubectlImage"), None
    kube = _kube(agent)
    if kube is None:
        return KubectlImage(default_kubectl_image(None), "job.go's default (print mode)"), None
    from gitedge.adapters.kube.sucread import read_kubectl_image  # kubernetes client: see _kube

    return read_kubectl_image(kube)


def suc_needs(
    agent: Context, plan: Plan, *, others: int
) -> tuple[tuple[NeededImage, ...], dict[str, Any]]:
    """The kubectl image, when the plan needs ``others`` images: a step to take, whose Plans
    may cordon or drain; and the status's ``suc`` facts so far."""
    if not others:
        return (), {}
    kubectl, problem = kubectl_image(agent)
    suc: dict[str, Any] = {"kubectlImage": kubectl.image, "kubectlFrom": kubectl.source}
    if problem:
        suc["warnings"] = [scrub(problem, limit=500)]
        log.warning("SUC's kubectl image: %s", scrub(problem))
    try:
        ref = ImageRef.parse(kubectl.image)
    except ValueError as e:  # SUC's own Jobs fail on it too: say so, mirror the rest
        suc.setdefault("warnings", []).append(
            f"SUC's kubectl image ({kubectl.source}) is no image reference: {scrub(str(e))}"
        )
        return (), suc
    return (NeededImage("suc", "kubectl", ref),), suc


def observe(
    agent: Context,
    suc: dict[str, Any],
    *,
    snap: ClusterSnapshot | None,
    plan: Plan | None,
    needed: Sequence[NeededImage],
) -> dict[str, Any]:
    """The status's ``suc`` facts and warnings (module docstring), from the plan step's
    ``suc``; best effort: a failed read is itself a warning."""
    suc = dict(suc)
    warnings: list[str] = list(suc.get("warnings") or ())
    kubectl = suc.get("kubectlImage")
    if kubectl and snap is not None and plan is not None:
        servers = [n.kubelet_version for n in snap.nodes if n.control_plane]
        stepping = bool(plan.k3s and plan.k3s.path) or bool(
            plan.os and plan.os.current != plan.os.image
        )
        if plan.k3s and plan.k3s.path:
            servers.append(plan.k3s.path[0])
        skew = kubectl_skew(kubectl, servers) if stepping else None
        if skew:
            warnings.append(skew)
    kube = _kube(agent)
    if kube is not None and snap is not None and snap.plans:
        from gitedge.adapters.kube.sucread import read_pull_failures  # kubernetes client: see _kube

        try:
            failures = read_pull_failures(kube, plans={pl.name for pl in snap.plans})
        except GitEdgeError as e:
            warnings.append(f"cannot read SUC's Job pods: {scrub(str(e), limit=300)}")
            failures = []
        suc["pullFailures"] = [
            {"image": f.image, "node": f.node, "plan": f.plan, "reason": f.reason} for f in failures
        ]
        warnings += [f.message() for f in failures]
    mirrors, cache = agent.config.registry.node_mirrors, agent.config.registry.cache
    if cache is not None and needed:
        if mirrors is None:
            suc["nodeConfig"] = "not recorded (registry.nodeMirrors unset)"
        else:
            lack = missing_mirrors(
                [n.key for n in needed], mirrors=mirrors, cache=cache_host(cache.url)
            )
            suc["nodeConfig"] = "stale" if lack else "current"
            if lack:
                warnings.append(
                    f"the node config is stale: the nodes' registries.yaml sends no "
                    f"{', '.join(lack)} to the cache (registry.nodeMirrors); render it again "
                    f"with `gitedge node-config`, install it and restart K3s ({SITE_SETUP_DOC})"
                )
    if warnings:
        suc["warnings"] = warnings
    return suc
