"""Rendering of system-upgrade-controller ``Plan`` manifests (upgrade.cattle.io/v1) for a step.

gitedge does not drain nodes or run upgrade jobs itself: it writes SUC Plans and lets SUC do
that. This module is pure: from a planned component (planning.OsPlan / K3sPlan), the window it
applies in and the site's cache, it renders the Plans of the component's *next step*:

- K3s: a server Plan (control-plane nodes, concurrency 1, cordon) and an agent Plan whose
  ``prepare`` waits for the server Plan (``prepare <server-plan>``, as K3s documents), both on
  ``rancher/k3s-upgrade`` from the cache, ``version`` the step's K3s version;
- OS: one Plan on every Linux node whose job runs the target's OS image with the upgrader's
  command: ``kairos``/``elemental`` ``/usr/sbin/suc-upgrade``; ``bootc`` ``bootc switch --apply``
  of the host (via ``chroot /host``) to the cached image; ``custom`` the target's command/args.

Images point at the registry cache (``registry.cache.url``: same repository path, cache host).
SUC appends ``:<version>`` (``+`` made ``-``) to an upgrade image *only when it has neither tag
nor digest* (``WithLatestTag`` in SUC's pkg/upgrade/container): so a mirrored image is rendered
pinned by digest (``cache/repo@sha256:...``) and SUC leaves it as is; without a known digest the
image is rendered name-only and SUC adds the tag from ``version``.

Plan names are stable per component (``gitedge-k3s-server``, ``gitedge-k3s-agent``,
``gitedge-os``): advancing a step updates the same Plans and SUC rolls the new one out; a node is
done when it carries ``plan.upgrade.cattle.io/<plan>=<status.latestHash>``. SUC's latestHash is a
SHA-224 of ``version``, ``serviceAccountName`` and only the spec fields named by the
``upgrade.cattle.io/digest`` annotation (pkg/upgrade/plan DigestStatus), not of the whole spec:
the OS Plan names ``spec.upgrade.image`` there, so a new OS digest under the same tag is a new
rollout; K3s steps differ by ``version`` already.
Every Plan is labelled ``app.kubernetes.io/managed-by: gitedge``; the agent never touches
Plans without that label.

A days/start/end MaintenanceWindow is also rendered as SUC's ``window`` (a second guard: SUC
starts no new job outside it). Cron windows and blackout dates have no SUC equivalent; the agent
enforces them by not creating or advancing Plans outside its own window.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gitedge.core.fleet import Drain, OsTarget, Rollout
from gitedge.core.images import ImageRef
from gitedge.core.windows import DAY_NAMES, MaintenanceWindowSpec

API_VERSION = "upgrade.cattle.io/v1"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "gitedge"
COMPONENT_LABEL = "gitedge.io/component"
TARGET_ANNOTATION = "gitedge.io/target"
STEP_ANNOTATION = "gitedge.io/step"
SUC_DIGEST_ANNOTATION = "upgrade.cattle.io/digest"  # spec fields SUC adds to status.latestHash
SERVER_PLAN = "gitedge-k3s-server"
AGENT_PLAN = "gitedge-k3s-agent"
OS_PLAN = "gitedge-os"
CONTROL_PLANE = "node-role.kubernetes.io/control-plane"
SUC_UPGRADE = "/usr/sbin/suc-upgrade"

__all__ = [
    "AGENT_PLAN",
    "OS_PLAN",
    "SERVER_PLAN",
    "Site",
    "k3s_image_tag",
    "k3s_plans",
    "os_plan",
    "suc_window",
]


@dataclass(frozen=True)
class Site:
    """What rendering needs of the site: the Plans' namespace and service account, the
    registry cache (``host[:port]``, None: images stay upstream, for print mode without a
    cache) and the digests of mirrored images (``registry/repository:tag`` -> digest)."""

    namespace: str = "system-upgrade"
    service_account: str = "system-upgrade"
    cache: str | None = None
    digests: Mapping[str, str] = field(default_factory=dict)


def k3s_image_tag(version: str) -> str:
    """The rancher/k3s-upgrade tag of a K3s version (``v1.30.6+k3s1`` -> ``v1.30.6-k3s1``)."""
    return version.replace("+", "-")


def _image(ref: ImageRef, *, tag: str | None, site: Site) -> str:
    """The upgrade image as SUC should see it: on the cache, pinned by digest when known."""
    digest = ref.digest or (site.digests.get(f"{ref.name}:{tag}") if tag else None)
    located = ref.with_registry(site.cache) if site.cache else ref
    if digest:
        return f"{located.name}@{digest}"
    return located.name  # name only: SUC appends :<version>


def _meta(name: str, *, component: str, target: str, step: str, site: Site) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": site.namespace,
        "labels": {MANAGED_BY_LABEL: MANAGED_BY, COMPONENT_LABEL: component},
        "annotations": {TARGET_ANNOTATION: target, STEP_ANNOTATION: step},
    }


def suc_window(spec: MaintenanceWindowSpec | None) -> dict[str, Any] | None:
    """A static SUC ``window`` inside a days/start/end window, for Plans written without the
    agent (``gitedge plan``); the agent overwrites it per batch (gitedge.core.sucwindow).

    kured's end is inclusive to its second's last nanosecond, so the end is written one second
    early (``05:00`` -> ``04:59:59``). A wrap past midnight on some days only cannot be said in
    kured's shape (it would open on the start day's early hours instead of the next day's): only
    the part before midnight is written. None for cron windows (no weekly shape) and no window.
    """
    if spec is None or spec.start is None or spec.end is None:
        return None
    days = list(spec.days or DAY_NAMES)
    start_min = int(spec.start[:2]) * 60 + int(spec.start[3:])
    end_min = int(spec.end[:2]) * 60 + int(spec.end[3:])
    if end_min <= start_min and len(set(days)) < 7:
        end_min = 24 * 60  # the part before midnight
    last = (end_min - 1) % (24 * 60)
    end = f"{last // 60:02d}:{last % 60:02d}:59"
    return {
        "days": days,
        "startTime": f"{spec.start}:00",
        "endTime": end,
        "timeZone": spec.time_zone,
    }


def _drain(drain: Drain) -> dict[str, Any]:
    out: dict[str, Any] = {
        "force": drain.force,
        "ignoreDaemonSets": drain.ignore_daemon_sets,
        "deleteEmptydirData": drain.delete_emptydir_data,
        "disableEviction": drain.disable_eviction,
    }
    if drain.timeout is not None:
        out["timeout"] = f"{int(drain.timeout.total_seconds())}s"
    if drain.grace_period is not None:
        out["gracePeriod"] = drain.grace_period
    if drain.skip_wait_for_delete_timeout is not None:
        out["skipWaitForDeleteTimeout"] = drain.skip_wait_for_delete_timeout
    return out


def _rollout(spec: dict[str, Any], rollout: Rollout, *, concurrency: int | None = None) -> None:
    spec["concurrency"] = concurrency if concurrency is not None else rollout.concurrency
    spec["cordon"] = rollout.cordon
    if rollout.drain is not None:
        spec["drain"] = _drain(rollout.drain)


def _plan(
    metadata: dict[str, Any], spec: dict[str, Any], window: dict[str, Any] | None
) -> dict[str, Any]:
    if window is not None:
        spec["window"] = window
    return {"apiVersion": API_VERSION, "kind": "Plan", "metadata": metadata, "spec": spec}


def k3s_plans(
    *,
    version: str,
    upgrade_image: str,
    rollout: Rollout,
    window: MaintenanceWindowSpec | None,
    target: str,
    site: Site,
) -> list[dict[str, Any]]:
    """The server and agent Plans that move the cluster to K3s ``version`` (one step)."""
    image = _image(ImageRef.parse(upgrade_image), tag=k3s_image_tag(version), site=site)
    suc = suc_window(window)
    server: dict[str, Any] = {
        "nodeSelector": {
            "matchExpressions": [{"key": CONTROL_PLANE, "operator": "In", "values": ["true"]}]
        },
        "serviceAccountName": site.service_account,
        "tolerations": [
            {"key": "CriticalAddonsOnly", "operator": "Exists"},
            {"key": CONTROL_PLANE, "operator": "Exists", "effect": "NoSchedule"},
            {"key": "node-role.kubernetes.io/etcd", "operator": "Exists", "effect": "NoExecute"},
        ],
        "upgrade": {"image": image},
        "version": version,
    }
    # servers one at a time, cordoned, never drained (draining the last control plane would
    # evict what the upgrade needs); the target's concurrency and drain apply to agents
    server["concurrency"], server["cordon"] = 1, True
    agent: dict[str, Any] = {
        "nodeSelector": {"matchExpressions": [{"key": CONTROL_PLANE, "operator": "DoesNotExist"}]},
        "serviceAccountName": site.service_account,
        "prepare": {"image": image, "args": ["prepare", SERVER_PLAN]},
        "upgrade": {"image": image},
        "version": version,
    }
    _rollout(agent, rollout)
    return [
        _plan(
            _meta(SERVER_PLAN, component="k3s", target=target, step=version, site=site), server, suc
        ),
        _plan(
            _meta(AGENT_PLAN, component="k3s", target=target, step=version, site=site), agent, suc
        ),
    ]


def os_plan(
    *,
    os: OsTarget,
    rollout: Rollout,
    window: MaintenanceWindowSpec | None,
    target: str,
    site: Site,
) -> dict[str, Any]:
    """The Plan that moves every Linux node to ``os.image`` with its upgrader."""
    ref = ImageRef.parse(os.image)
    image = _image(ref, tag=ref.tag, site=site)
    digest = image.partition("@")[2] or None
    version = ref.tag or (digest.split(":", 1)[1][:12] if digest else "latest")
    upgrade: dict[str, Any] = {"image": image}
    if os.upgrader in ("kairos", "elemental"):
        upgrade["command"] = [SUC_UPGRADE]
    elif os.upgrader == "bootc":
        # run the host's bootc (SUC mounts the host root at /host) and boot the cached image;
        # a name-only image gets its tag here, since bootc does not read SUC's version
        pinned = image if digest else f"{image}:{version}"
        upgrade["command"] = ["chroot", "/host", "bootc", "switch", "--apply", pinned]
    else:
        upgrade["command"] = list(os.command or ())
        if os.args:
            upgrade["args"] = list(os.args)
    spec: dict[str, Any] = {
        "nodeSelector": {
            "matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]
        },
        "serviceAccountName": site.service_account,
        "tolerations": [{"operator": "Exists"}],  # every node runs the fleet's OS
        "upgrade": upgrade,
        "version": version,
    }
    _rollout(spec, rollout)
    meta = _meta(OS_PLAN, component="os", target=target, step=str(ref), site=site)
    # SUC hashes only version + service account (+ the fields this annotation names) into
    # latestHash, the value a done node carries: a new OS digest under the same tag must count
    meta["annotations"][SUC_DIGEST_ANNOTATION] = "spec.upgrade.image"
    return _plan(meta, spec, suc_window(window))
