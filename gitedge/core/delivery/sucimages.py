"""The images SUC's Jobs pull besides the Plan's own, and what the agent reads back about pulls.

Pure: the objects read from the API (SUC's Deployment, its ConfigMaps, Pods, Events) in, facts
and warnings out.

- **kubectl.** Every Job of a Plan that cordons or drains runs SUC's kubectl image as an init
  container (rancher/system-upgrade-controller ``pkg/upgrade/job/job.go`` ``New``). No Plan
  field sets it: SUC reads ``SYSTEM_UPGRADE_JOB_KUBECTL_IMAGE`` from its environment once at
  start (job.go ``KubectlImage``: an empty value counts as unset), else the constant
  ``defaultKubectlImage`` of its release (:func:`default_kubectl_image`). SUC's shipped manifest
  sets the variable in ConfigMap ``default-controller-env``, wired with ``envFrom``. The image
  keeps its upstream name in the Job, so nodes pull it through their registries.yaml mirror
  (``gitedge node-config``). kubectl supports one minor of skew with the API server
  (https://kubernetes.io/releases/version-skew-policy/#kubectl): :func:`kubectl_skew`.
- **Pull failures.** A Job pod whose container waits in ``ErrImagePull``/``ImagePullBackOff``,
  or an Event ``Failed to pull image "..."`` / ``Back-off pulling image "..."`` (the kubelet's
  messages, pkg/kubelet/images/image_manager.go), names the image and the node.
- **Node config.** ``registry.nodeMirrors`` in the AgentConfig records the registries the nodes'
  registries.yaml sends to the cache (``gitedge node-config`` prints the line);
  :func:`missing_mirrors` names each registry the site's images need that it lacks.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gitedge.core.images.refs import ImageRef

SUC_DEPLOYMENT = "system-upgrade-controller"  # manifests/system-upgrade-controller.yaml
SUC_CONFIGMAP = "default-controller-env"
KUBECTL_ENV = "SYSTEM_UPGRADE_JOB_KUBECTL_IMAGE"
PLAN_LABEL = "upgrade.cattle.io/plan"  # on SUC's Jobs and their pods (job.go New)
SITE_SETUP_DOC = "docs/site-setup.md"
PULL_REASONS = ("ErrImagePull", "ImagePullBackOff")
# The SUC release gitedge vendors (gitedge/data/suc/<release>/: its CRD and controller manifest)
SUC_RELEASE = "v0.20.1"
SUC_IMAGE = f"rancher/system-upgrade-controller:{SUC_RELEASE}"
SUC_MANIFESTS = ("crd.yaml", "system-upgrade-controller.yaml")  # apply in this order

# job.go defaultKubectlImage by SUC release (read at each tag of rancher/system-upgrade-
# controller): newest first, (major, minor, patch) of the first release with that default.
_DEFAULTS = (
    ((0, 14, 0), "rancher/kubectl:v1.30.3"),  # v0.14.0 .. v0.20.1 (and main)
    ((0, 12, 0), "rancher/kubectl:v1.25.4"),  # v0.12.0 .. v0.13.4
    ((0, 11, 0), "rancher/kubectl:v1.21.14"),
    ((0, 10, 0), "rancher/kubectl:v1.21.9"),
)
_SEMVER = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)")
_PULL_EVENT = re.compile(r'(?:[Ff]ailed to pull image|Back-off pulling image) "([^"]{1,512})"')

__all__ = [
    "KubectlImage",
    "PullFailure",
    "default_kubectl_image",
    "kubectl_skew",
    "missing_mirrors",
    "pull_failures",
    "suc_kubectl_image",
]


@dataclass(frozen=True)
class KubectlImage:
    """The kubectl image SUC's Jobs run, and where that was read."""

    image: str
    source: str


@dataclass(frozen=True)
class PullFailure:
    """An image a Job of a gitedge Plan cannot pull, on a node."""

    image: str
    node: str
    plan: str
    reason: str

    def message(self) -> str:
        return (
            f"node {self.node or '?'} cannot pull {self.image} for Plan {self.plan} "
            f"({self.reason}): the node must pull it from the cache; see {SITE_SETUP_DOC}"
        )


def default_kubectl_image(controller_image: str | None) -> str:
    """job.go's ``defaultKubectlImage`` of the SUC release the controller image's tag names;
    the newest default when the tag is no release version (a digest, ``latest``)."""
    try:
        tag = ImageRef.parse(controller_image).tag if controller_image else None
    except ValueError:
        tag = None
    m = _SEMVER.match(tag or "")
    if m is None:
        return _DEFAULTS[0][1]
    version = (int(m[1]), int(m[2]), int(m[3]))
    for first, image in _DEFAULTS:
        if version >= first:
            return image
    return _DEFAULTS[-1][1]


def _container(deployment: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = [c for c in spec.get("containers") or () if isinstance(c, Mapping)]
    for c in containers:
        if c.get("name") == SUC_DEPLOYMENT:
            return c
    return containers[0] if containers else {}


def env_configmaps(deployment: Mapping[str, Any]) -> tuple[str, ...]:
    """The ConfigMaps SUC's container takes its environment from (``envFrom`` and
    ``configMapKeyRef``), in order: the adapter reads exactly these."""
    c = _container(deployment)
    names = [
        str(src["configMapRef"].get("name"))
        for src in c.get("envFrom") or ()
        if isinstance(src, Mapping) and isinstance(src.get("configMapRef"), Mapping)
    ]
    for e in c.get("env") or ():
        ref = (
            ((e.get("valueFrom") or {}).get("configMapKeyRef") or {})
            if isinstance(e, Mapping)
            else {}
        )
        if ref.get("name"):
            names.append(str(ref["name"]))
    return tuple(dict.fromkeys(names))


def suc_kubectl_image(
    deployment: Mapping[str, Any], configmaps: Mapping[str, Mapping[str, str] | None]
) -> KubectlImage:
    """The kubectl image SUC's Jobs run, as the kubelet builds SUC's environment
    (kubelet_pods.go makeEnvironmentVariables: ``envFrom`` in order, a later source winning a
    key, ``prefix`` prepended; then ``env``, which wins over ``envFrom``) and job.go reads it."""
    c = _container(deployment)
    name = (deployment.get("metadata") or {}).get("name", SUC_DEPLOYMENT)
    value, source = "", ""
    for src in c.get("envFrom") or ():
        ref = src.get("configMapRef") if isinstance(src, Mapping) else None
        if not isinstance(ref, Mapping):
            continue
        prefix = str(src.get("prefix") or "")
        if not KUBECTL_ENV.startswith(prefix):
            continue
        key = KUBECTL_ENV[len(prefix) :]
        data = configmaps.get(str(ref.get("name"))) or {}
        if key in data:
            value, source = str(data[key]), f"ConfigMap {ref.get('name')}"
    for e in c.get("env") or ():
        if not isinstance(e, Mapping) or e.get("name") != KUBECTL_ENV:
            continue
        ref = (e.get("valueFrom") or {}).get("configMapKeyRef")
        if isinstance(ref, Mapping):
            data = configmaps.get(str(ref.get("name"))) or {}
            value = str(data.get(str(ref.get("key")), ""))
            source = f"ConfigMap {ref.get('name')} key {ref.get('key')}"
        else:
            value, source = str(e.get("value") or ""), f"Deployment {name} env"
    if value:  # job.go: os.Getenv(...) != ""
        return KubectlImage(value, f"{KUBECTL_ENV} from {source}")
    image = str(c.get("image") or "") or None
    return KubectlImage(
        default_kubectl_image(image), f"job.go's default of SUC {image or '(unknown release)'}"
    )


def _minor(version: str) -> tuple[int, int] | None:
    m = _SEMVER.match(version)
    return (int(m[1]), int(m[2])) if m else None


def kubectl_skew(kubectl: str, servers: Iterable[str]) -> str | None:
    """A warning when the kubectl image's version (its tag) is more than one minor away from a
    K3s version the servers run during the step (before it and after it); None when within one
    or when the tag names no version."""
    try:
        ours = _minor(ImageRef.parse(kubectl).tag or "")
    except ValueError:
        return None
    if ours is None:
        return None
    far = sorted(
        {v for v in servers if (m := _minor(v)) and (m[0] != ours[0] or abs(m[1] - ours[1]) > 1)}
    )
    if not far:
        return None
    return (
        f"SUC's kubectl image {kubectl} ({ours[0]}.{ours[1]}) is more than one minor from the "
        f"servers' K3s {', '.join(far)} during this step (kubectl supports one minor of skew): "
        f"set {KUBECTL_ENV} in SUC's ConfigMap {SUC_CONFIGMAP} to a kubectl of that minor, and "
        f"apply.kubectlImage if the agent cannot read it ({SITE_SETUP_DOC})"
    )


def pull_failures(
    pods: Sequence[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]],
    *,
    plans: Collection[str],
) -> list[PullFailure]:
    """Each image a Job pod of one of ``plans`` cannot pull, with its node: from the pods'
    container statuses, and from the kubelet's Events about such pods (which outlive them)."""
    out: dict[tuple[str, str], PullFailure] = {}
    pod_of: dict[str, tuple[str, str]] = {}
    for pod in pods:
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        plan = str((meta.get("labels") or {}).get(PLAN_LABEL) or "")
        if plan not in plans:
            continue
        node = str(spec.get("nodeName") or "")
        pod_of[str(meta.get("name"))] = (plan, node)
        status = pod.get("status") or {}
        for cs in [
            *(status.get("initContainerStatuses") or ()),
            *(status.get("containerStatuses") or ()),
        ]:
            reason = str(((cs.get("state") or {}).get("waiting") or {}).get("reason") or "")
            if reason in PULL_REASONS:
                image = str(cs.get("image") or "")
                out.setdefault((image, node), PullFailure(image, node, plan, reason))
    for ev in events:
        obj = ev.get("involvedObject") or {}
        m = _PULL_EVENT.search(str(ev.get("message") or ""))
        if obj.get("kind") != "Pod" or m is None:
            continue
        known = pod_of.get(str(obj.get("name")))
        name = str(obj.get("name") or "")
        if known is None and not any(name.startswith(f"apply-{p}-on-") for p in plans):
            continue
        plan, node = known or (name.split("-on-", 1)[0].removeprefix("apply-"), "")
        node = node or str((ev.get("source") or {}).get("host") or "")
        reason = "ImagePullBackOff" if ev.get("reason") == "BackOff" else "ErrImagePull"
        out.setdefault((m[1], node), PullFailure(m[1], node, plan, reason))
    return sorted(out.values(), key=lambda f: (f.node, f.image))


def missing_mirrors(images: Iterable[str], *, mirrors: Collection[str], cache: str) -> list[str]:
    """The registries of ``images`` (upstream names) the nodes' registries.yaml does not send to
    the cache (``mirrors``: as recorded in ``registry.nodeMirrors``); the cache itself needs no
    mirror."""
    need = {ImageRef.parse(i).registry for i in images} - {cache}
    return sorted(need - set(mirrors))
