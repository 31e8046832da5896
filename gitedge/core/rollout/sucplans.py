"""Rendering of system-upgrade-controller ``Plan`` manifests (upgrade.cattle.io/v1) for a step.

gitedge does not drain nodes or run upgrade jobs itself: it writes SUC Plans and lets SUC do
that. This module is pure: from a planned component (planning.OsPlan / K3sPlan), the window it
applies in and the site's cache, it renders the Plans of the component's *next step*:

- K3s: a server Plan (control-plane nodes, concurrency 1, cordon) and an agent Plan whose
  ``prepare`` waits for the server Plan (``prepare <server-plan>``, as K3s documents), both on
  ``rancher/k3s-upgrade`` from the cache, ``version`` the step's K3s version;
- OS: a control-plane Plan (concurrency 1: an OS upgrade reboots the node, and two servers down
  at once can cost etcd its quorum) and a worker Plan with the target's concurrency, whose job
  runs the target's OS image with the upgrader's command, as each upgrader's project runs it
  (core/rollout/upgraders.py): ``kairos``/``elemental`` ``/usr/sbin/suc-upgrade`` (Elemental with
  its ``/run/data`` Secret when set); ``bootc`` the host's ``bootc switch --apply`` (entered with
  ``nsenter``) to the cached image; ``custom`` the target's command/args.

Control-plane nodes go one at a time for every component. SUC has no ordering between Plans
(handle_upgrade.go acts on each Plan alone; k3s-upgrade's ``prepare`` is K3s-specific), so the
*agent* orders them: each component's worker Plan (``gitedge-k3s-agent``, ``gitedge-os-agent``)
is written only once its control-plane Plan is complete (core/rollout/decision.py). Worker Jobs then
never sit in ``prepare`` while the servers take their time, which keeps their deadline honest.

Every Plan sets ``jobActiveDeadlineSecs`` (:func:`job_deadline`): SUC's default is 600 s
(``defaultActiveDeadlineSeconds`` in pkg/upgrade/job/job.go; 900 s in its shipped manifest) and a
Job past it fails. The deadline is the sum of a start-up allowance (SUC creates the Job paused and
unpauses it once the node is in ``status.applying``, job.go ``New``; images are pulled), the
prepare allowance when the Plan has a prepare container, the drain timeout when it drains (a
drain without a timeout is rendered with 15m: kubectl's own default waits forever, which no
deadline can fit), and ``rollout.upgradeTimeout`` (default 20m) for the upgrade itself.

``drain`` carries only the fields the fleet set (job.go ``New`` passes ``--ignore-daemonsets``
and ``--delete-emptydir-data`` unless a field says false: rendering false by default made
kubectl refuse every node running K3s's metrics-server, whose pod mounts an emptyDir).

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

The ``window`` rendered here (:func:`suc_window`) is a static subset of a days/start/end window,
for Plans printed without the agent. The agent replaces it, and the nodes a Plan selects, with
each batch it admits (core/rollout/admission.py, core/rollout/sucwindow.py): SUC skips its window
gate while ``status.applying`` is non-empty, so the window alone cannot keep a rollout inside.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from gitedge.core.fleet.model import Drain, Rollout
from gitedge.core.fleet.osimage import OsTarget
from gitedge.core.fleet.windowspec import DAY_NAMES, MaintenanceWindowSpec
from gitedge.core.images.refs import ImageRef
from gitedge.core.rollout.upgraders import upgrade_spec

API_VERSION = "upgrade.cattle.io/v1"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "gitedge"
COMPONENT_LABEL = "gitedge.io/component"
TARGET_ANNOTATION = "gitedge.io/target"
STEP_ANNOTATION = "gitedge.io/step"
SUC_DIGEST_ANNOTATION = "upgrade.cattle.io/digest"  # spec fields SUC adds to status.latestHash
SERVER_PLAN = "gitedge-k3s-server"
AGENT_PLAN = "gitedge-k3s-agent"
OS_SERVER_PLAN = "gitedge-os-server"
OS_AGENT_PLAN = "gitedge-os-agent"
LEADER_PLANS = {AGENT_PLAN: SERVER_PLAN, OS_AGENT_PLAN: OS_SERVER_PLAN}  # worker -> control plane
CONTROL_PLANE = "node-role.kubernetes.io/control-plane"

__all__ = [
    "AGENT_PLAN",
    "LEADER_PLANS",
    "OS_AGENT_PLAN",
    "OS_SERVER_PLAN",
    "SERVER_PLAN",
    "Site",
    "job_deadline",
    "k3s_image_tag",
    "k3s_plans",
    "os_plans",
    "suc_window",
]

START_ALLOWANCE = timedelta(minutes=3)  # paused Job unpaused, pod scheduled, images pulled
PREPARE_ALLOWANCE = timedelta(minutes=5)  # k3s-upgrade's prepare, its servers already done
DEFAULT_DRAIN_TIMEOUT = timedelta(minutes=15)
DEFAULT_UPGRADE_TIMEOUT = timedelta(minutes=20)


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
    agent (``gitedge plan``); the agent overwrites it per batch (gitedge.core.rollout.sucwindow).

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


def _drain_timeout(drain: Drain) -> timedelta:
    """The drain's timeout: the fleet's, or 15m when it sets none (or 0, which kubectl reads as
    "wait forever")."""
    if drain.timeout is None or drain.timeout <= timedelta(0):
        return DEFAULT_DRAIN_TIMEOUT
    return drain.timeout


def _drain(drain: Drain) -> dict[str, Any]:
    """SUC's spec.drain with what the fleet set, and a timeout (see the module docstring)."""
    out: dict[str, Any] = {"timeout": f"{int(_drain_timeout(drain).total_seconds())}s"}
    for key, value in (
        ("force", drain.force),
        ("ignoreDaemonSets", drain.ignore_daemon_sets),
        ("deleteEmptydirData", drain.delete_emptydir_data),
        ("disableEviction", drain.disable_eviction),
        ("gracePeriod", drain.grace_period),
        ("skipWaitForDeleteTimeout", drain.skip_wait_for_delete_timeout),
    ):
        if value is not None:
            out[key] = value
    return out


def job_deadline(*, rollout: Rollout, drain: bool, prepare: bool) -> int:
    """``jobActiveDeadlineSecs`` of a Plan (seconds): start-up allowance, + the prepare
    allowance when the Plan has a prepare container, + the drain timeout when it drains, + the
    upgrade timeout. SUC clamps it by ``SYSTEM_UPGRADE_JOB_ACTIVE_DEADLINE_SECONDS_MAX`` when
    that is set (job.go ``New``); the agent reports a clamp it sees on SUC's Jobs."""
    total = START_ALLOWANCE
    if prepare:
        total += PREPARE_ALLOWANCE
    if drain and rollout.drain is not None:
        total += _drain_timeout(rollout.drain)
    total += (
        rollout.upgrade_timeout if rollout.upgrade_timeout is not None else DEFAULT_UPGRADE_TIMEOUT
    )
    return int(total.total_seconds())


def _rollout(spec: dict[str, Any], rollout: Rollout, *, concurrency: int | None = None) -> None:
    """Concurrency, cordon, drain and the Job deadline that fits them."""
    spec["concurrency"] = concurrency if concurrency is not None else rollout.concurrency
    spec["cordon"] = rollout.cordon
    if rollout.drain is not None:
        spec["drain"] = _drain(rollout.drain)
    spec["jobActiveDeadlineSecs"] = job_deadline(
        rollout=rollout, drain=rollout.drain is not None, prepare="prepare" in spec
    )


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
    digest: str | None = None,
) -> list[dict[str, Any]]:
    """The server and agent Plans that move the cluster to K3s ``version`` (one step).

    ``digest``: the K3sReleases digest of the step's upgrade image; the Plans then name the
    (cache) image by it, whatever the site recorded for the tag (the mirror step refuses a tag
    that serves anything else)."""
    base = ImageRef.parse(upgrade_image)
    if digest is not None:
        base = ImageRef(base.registry, base.repository, digest=digest)
    image = _image(base, tag=k3s_image_tag(version), site=site)
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
    server["jobActiveDeadlineSecs"] = job_deadline(rollout=rollout, drain=False, prepare=False)
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


def os_plans(
    *,
    os: OsTarget,
    rollout: Rollout,
    window: MaintenanceWindowSpec | None,
    target: str,
    site: Site,
) -> list[dict[str, Any]]:
    """The Plans that move every Linux node to ``os.image`` with its upgrader: control-plane
    nodes one at a time, then the others with the target's concurrency (the agent writes the
    second once the first is complete)."""
    ref = ImageRef.parse(os.image)
    image = _image(ref, tag=ref.tag, site=site)
    digest = image.partition("@")[2] or None
    version = ref.tag or (digest.split(":", 1)[1][:12] if digest else "latest")
    # each upgrader as its project runs it (core/rollout/upgraders.py); a name-only image gets its
    # tag for bootc here, since bootc does not read SUC's version
    upgrade, secrets = upgrade_spec(
        os=os, image=image, pinned=image if digest else f"{image}:{version}"
    )
    linux = {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}
    out = []
    # Exists / DoesNotExist: together the two Plans select every Linux node exactly once
    for name, role, concurrency in (
        (OS_SERVER_PLAN, "Exists", 1),
        (OS_AGENT_PLAN, "DoesNotExist", None),
    ):
        spec: dict[str, Any] = {
            "nodeSelector": {"matchExpressions": [linux, {"key": CONTROL_PLANE, "operator": role}]},
            "serviceAccountName": site.service_account,
            "tolerations": [{"operator": "Exists"}],  # every node runs the fleet's OS
            "upgrade": copy.deepcopy(upgrade),
            "version": version,
        }
        if secrets:
            spec["secrets"] = copy.deepcopy(secrets)
        _rollout(spec, rollout, concurrency=concurrency)
        meta = _meta(name, component="os", target=target, step=str(ref), site=site)
        # SUC hashes only version + service account (+ the fields this annotation names) into
        # latestHash, the value a done node carries: a new OS digest under the same tag must count
        meta["annotations"][SUC_DIGEST_ANNOTATION] = "spec.upgrade.image"
        out.append(_plan(meta, spec, suc_window(window)))
    return out
