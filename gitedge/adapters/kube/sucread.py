"""What the agent reads of SUC itself, through :class:`gitedge.adapters.kube.cluster.Kube`: SUC's
Deployment and the ConfigMaps its environment comes from (its kubectl image), and the Pods and
Events of SUC's namespace (images its Jobs cannot pull). Read only; deploy/20-rbac.yaml grants
exactly these calls: ``get`` on Deployment ``system-upgrade-controller`` and ConfigMap
``default-controller-env`` (by name), ``list`` on pods and events. The decisions are
:mod:`gitedge.core.delivery.sucimages`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from kubernetes import client as k8s

from gitedge.adapters.kube.cluster import Kube
from gitedge.core.delivery.sucimages import (
    PLAN_LABEL,
    SUC_DEPLOYMENT,
    KubectlImage,
    PullFailure,
    default_kubectl_image,
    env_configmaps,
    pull_failures,
    suc_kubectl_image,
)
from gitedge.errors import KubeApiError

__all__ = ["read_kubectl_image", "read_pull_failures"]

_PAGE = 500
_MAX_PAGES = 4  # Events of the namespace: the newest 2,000 are enough to name a failing pull


def read_kubectl_image(kube: Kube) -> tuple[KubectlImage, str | None]:
    """The kubectl image SUC's Jobs run, and a problem text when SUC could not be read (then
    job.go's newest default is assumed)."""
    ns = kube.namespace
    apps = k8s.AppsV1Api(kube.api)
    what = f"get Deployment {ns}/{SUC_DEPLOYMENT}"
    try:
        deployment = kube.call_json(what, apps.read_namespaced_deployment, SUC_DEPLOYMENT, ns)
    except KubeApiError as e:
        return KubectlImage(default_kubectl_image(None), "job.go's default (SUC not read)"), (
            f"{e}; assuming SUC's built-in kubectl image (set apply.kubectlImage if SUC runs "
            "another)"
        )
    configmaps: dict[str, Mapping[str, str] | None] = {}
    problem = None
    for name in env_configmaps(deployment):
        try:
            cm = kube.call_json(
                f"get ConfigMap {ns}/{name}", kube.core.read_namespaced_config_map, name, ns
            )
            configmaps[name] = cm.get("data") or {}
        except KubeApiError as e:
            configmaps[name] = None
            problem = f"{e}; SUC's environment from it is unknown (set apply.kubectlImage)"
    return suc_kubectl_image(deployment, configmaps), problem


def _list(kube: Kube, what: str, fn: Any, **kwargs: Any) -> list[Mapping[str, Any]]:
    out: list[Mapping[str, Any]] = []
    token = None
    for _ in range(_MAX_PAGES):
        page = kube.call_json(what, fn, kube.namespace, limit=_PAGE, _continue=token, **kwargs)
        out.extend(page.get("items") or ())
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            break
    return out


def read_pull_failures(kube: Kube, *, plans: Collection[str]) -> list[PullFailure]:
    """Images the Job pods of ``plans`` cannot pull (their statuses, and the kubelet's Events)."""
    if not plans:
        return []
    ns = kube.namespace
    pods = _list(
        kube, f"list Pods in {ns}", kube.core.list_namespaced_pod, label_selector=PLAN_LABEL
    )
    events = _list(kube, f"list Events in {ns}", kube.core.list_namespaced_event)
    return pull_failures(pods, events, plans=plans)
