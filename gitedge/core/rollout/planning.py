"""(fleet snapshot, cluster facts, now) -> Plan: what this cluster should run, and when.

Resolution, per component (os, k3s): among the non-suspended targets that select the cluster and
set that component, the highest priority wins. A tie at the top whose values differ (image,
version, upgrader, window or rollout) is :class:`~gitedge.errors.AmbiguousTarget`, never a silent
pick. Each component is applied in the window of the target it came from. The K3s component
carries the whole minor-by-minor path from the cluster's current version. An OS image that
carries K3s (``os.k3s``) makes the OS component the cluster's K3s step (core/rollout/osk3s.py): its
images step one minor at a time, and no k3s-upgrade Plan is rendered for the cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from gitedge.core.fleet.model import Fleet, K3sTarget, Rollout, UpgradeTarget
from gitedge.core.fleet.osimage import OsStep, OsTarget
from gitedge.core.fleet.versions import K3sVersion, upgrade_path
from gitedge.core.fleet.windows import window_state
from gitedge.core.fleet.windowspec import MaintenanceWindowSpec
from gitedge.core.rollout.osk3s import carried_steps, disagreement
from gitedge.core.rollout.sucplans import Site, k3s_plans
from gitedge.core.rollout.sucplans import os_plans as os_suc_plans
from gitedge.errors import AmbiguousTarget, UpgradePathError


@dataclass(frozen=True)
class ClusterFacts:
    """What the planner knows of a cluster: its name, labels (derived ones included), versions."""

    name: str
    labels: Mapping[str, str]
    k3s_version: str | None = None
    os_image: str | None = None


@dataclass(frozen=True)
class WindowView:
    name: str
    open: bool
    next_open: datetime | None
    closes_at: datetime | None
    spec: MaintenanceWindowSpec | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class OsPlan:
    image: str
    target: str
    window: WindowView | None
    spec: OsTarget
    rollout: Rollout
    current: str | None
    # an image carrying K3s (os.k3s, core/rollout/osk3s.py): the images to boot, in order (the first
    # is rendered); () when the image carries no K3s
    steps: tuple[OsStep, ...] = ()

    @property
    def next_image(self) -> str:
        """The image of the OS step to render now."""
        return self.steps[0].image if self.steps else self.image

    @property
    def images(self) -> tuple[str, ...]:
        """Every image the OS component will boot, in order."""
        return tuple(s.image for s in self.steps) or (self.image,)


@dataclass(frozen=True)
class K3sPlan:
    version: str
    target: str
    path: tuple[str, ...]
    window: WindowView | None
    spec: K3sTarget
    rollout: Rollout
    current: str | None
    #: the K3sReleases digest of each step's upgrade image (None: the catalog gives none)
    digests: tuple[str | None, ...] = ()

    def digest_of(self, step: str) -> str | None:
        """The catalog digest of ``step``'s upgrade image, if the catalog pins it."""
        pairs = dict(zip(self.path, self.digests, strict=False))
        return pairs.get(step)


@dataclass(frozen=True)
class Plan:
    cluster: str
    os: OsPlan | None
    k3s: K3sPlan | None
    manifests: tuple[dict[str, Any], ...] = ()


def selecting_targets(fleet: Fleet, labels: Mapping[str, str]) -> list[UpgradeTarget]:
    """The non-suspended targets whose selector (and group, when set) select ``labels``."""
    group_match: dict[str, bool] = {}
    out = []
    for target in fleet.targets.values():
        spec = target.spec
        if spec.suspend:
            continue
        if spec.cluster_group is not None:
            ok = group_match.get(spec.cluster_group)
            if ok is None:
                ok = fleet.groups[spec.cluster_group].spec.selector.matches(labels)
                group_match[spec.cluster_group] = ok
            if not ok:
                continue
        if spec.cluster_selector is not None and not spec.cluster_selector.matches(labels):
            continue
        out.append(target)
    return out


def _resolve(
    targets: list[UpgradeTarget], component: Literal["os", "k3s"], cluster: str, fleet: Fleet
) -> UpgradeTarget | None:
    setting = [t for t in targets if getattr(t.spec, component) is not None]
    if not setting:
        return None
    top = max(t.spec.priority for t in setting)
    tied = sorted((t for t in setting if t.spec.priority == top), key=lambda t: t.metadata.name)
    first = tied[0]
    for other in tied[1:]:
        detail = _difference(first, other, component)
        if detail:
            raise AmbiguousTarget(
                component=component,
                cluster=cluster,
                targets=(first.metadata.name, other.metadata.name),
                detail=detail,
                where=(
                    fleet.where("UpgradeTarget", first.metadata.name),
                    fleet.where("UpgradeTarget", other.metadata.name),
                ),
            )
    return first


def _difference(a: UpgradeTarget, b: UpgradeTarget, component: str) -> str | None:
    ca, cb = getattr(a.spec, component), getattr(b.spec, component)
    for name in type(ca).model_fields:
        va, vb = getattr(ca, name), getattr(cb, name)
        if va != vb:
            return f"{component}.{name}: {va!r} vs {vb!r}"
    if a.spec.window != b.spec.window:
        return f"window: {a.spec.window!r} vs {b.spec.window!r}"
    if a.spec.rollout != b.spec.rollout:
        return "rollout settings differ"
    return None


def _window(fleet: Fleet, name: str | None, now: datetime) -> WindowView | None:
    if name is None:
        return None
    state = window_state(fleet.windows[name].spec, now)
    return WindowView(
        name=name,
        open=state.open,
        next_open=state.next_open,
        closes_at=state.closes_at,
        spec=fleet.windows[name].spec,
    )


def plan(
    fleet: Fleet,
    cluster: ClusterFacts,
    *,
    now: datetime,
    site: Site | None = None,
) -> Plan:
    """Decide the OS and K3s targets of ``cluster`` at instant ``now`` (aware datetime), and
    render the SUC Plans of each component's next step for ``site`` (defaults: namespace
    ``system-upgrade``, images upstream).

    Raises AmbiguousTarget, or UpgradePathError when the K3s target cannot be reached from the
    cluster's current version through the fleet's K3sReleases.
    """
    targets = selecting_targets(fleet, cluster.labels)
    os_plan = k3s_plan = None
    os_target = _resolve(targets, "os", cluster.name, fleet)
    if os_target is not None and os_target.spec.os is not None:
        os_spec = os_target.spec.os
        where = f"UpgradeTarget/{os_target.metadata.name} ({_where(fleet, os_target)})"
        os_plan = OsPlan(
            image=os_spec.image,
            target=os_target.metadata.name,
            window=_window(fleet, os_target.spec.window, now),
            spec=os_spec,
            rollout=os_target.spec.rollout,
            current=cluster.os_image,
            steps=()
            if os_spec.k3s is None
            else carried_steps(os=os_spec, current=cluster.k3s_version, where=where),
        )
    k3s_target = _resolve(targets, "k3s", cluster.name, fleet)
    if os_plan is not None and os_plan.steps and k3s_target is not None:
        # the OS brings the cluster's K3s, so its target sets the K3s component too: a K3s
        # target of lower priority loses to it; one of the same or higher priority adds
        # nothing when it agrees and is refused when it does not
        assert k3s_target.spec.k3s is not None and os_target is not None
        outranked = k3s_target.spec.priority < os_target.spec.priority
        why = (
            None
            if outranked
            else disagreement(
                os=os_plan.spec,
                os_where=f"UpgradeTarget/{os_plan.target} ({_where(fleet, os_target)})",
                k3s=k3s_target.spec.k3s.version,
                k3s_where=f"UpgradeTarget/{k3s_target.metadata.name} ({_where(fleet, k3s_target)})",
            )
        )
        if why:
            raise UpgradePathError(f"cluster {cluster.name}: {why}")
        k3s_target = None
    if k3s_target is not None and k3s_target.spec.k3s is not None:
        spec = k3s_target.spec.k3s
        goal = K3sVersion.parse(spec.version)
        details = fleet.k3s_release_details()
        if cluster.k3s_version is None:
            path: list[K3sVersion] = [goal]
        else:
            path = upgrade_path(
                current=K3sVersion.parse(cluster.k3s_version),
                target=goal,
                releases=fleet.k3s_releases(),
                months={v: e.released for v, e in details.items() if e.released},
            )
        k3s_plan = K3sPlan(
            version=spec.version,
            target=k3s_target.metadata.name,
            path=tuple(v.text for v in path),
            window=_window(fleet, k3s_target.spec.window, now),
            spec=spec,
            rollout=k3s_target.spec.rollout,
            current=cluster.k3s_version,
            digests=tuple(details[v].digest if v in details else None for v in path),
        )
    manifests = render_next_steps(fleet, os_plan, k3s_plan, site=site or Site())
    return Plan(cluster=cluster.name, os=os_plan, k3s=k3s_plan, manifests=manifests)


def render_next_steps(
    fleet: Fleet, os_plan: OsPlan | None, k3s_plan: K3sPlan | None, *, site: Site
) -> tuple[dict[str, Any], ...]:
    """The SUC Plans of the first step of the K3s path and of the OS, where there is work."""
    out: list[dict[str, Any]] = []
    if k3s_plan is not None and k3s_plan.path:
        out += k3s_plans(
            version=k3s_plan.path[0],
            upgrade_image=k3s_plan.spec.upgrade_image,
            digest=k3s_plan.digest_of(k3s_plan.path[0]),
            rollout=k3s_plan.rollout,
            window=_window_spec(fleet, k3s_plan.window),
            target=k3s_plan.target,
            site=site,
        )
    if os_plan is not None and os_plan.current != os_plan.image:
        spec = os_plan.spec
        if os_plan.next_image != spec.image:  # an intermediate image (os.via)
            spec = spec.model_copy(update={"image": os_plan.next_image})
        out += os_suc_plans(
            os=spec,
            rollout=os_plan.rollout,
            window=_window_spec(fleet, os_plan.window),
            target=os_plan.target,
            site=site,
        )
    return tuple(out)


def _where(fleet: Fleet, target: UpgradeTarget) -> str:
    return fleet.where("UpgradeTarget", target.metadata.name)


def _window_spec(fleet: Fleet, view: WindowView | None) -> MaintenanceWindowSpec | None:
    return fleet.windows[view.name].spec if view is not None else None


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def window_json(w: WindowView | None) -> dict[str, Any] | None:
    """A window as ``gitedge plan -o json`` and ``gitedge status`` show it."""
    if w is None:
        return None
    return {
        "name": w.name,
        "open": w.open,
        "nextOpen": _iso(w.next_open),
        "closesAt": _iso(w.closes_at),
    }


def plan_json(p: Plan) -> dict[str, Any]:
    """The ``gitedge plan -o json`` document (DESIGN.md section 5)."""
    return {
        "cluster": p.cluster,
        "os": None
        if p.os is None
        else {
            "image": p.os.image,
            "target": p.os.target,
            "window": window_json(p.os.window),
            **({"k3s": p.os.spec.k3s, "path": [s.image for s in p.os.steps]} if p.os.steps else {}),
        },
        "k3s": None
        if p.k3s is None
        else {
            "version": p.k3s.version,
            "target": p.k3s.target,
            "path": list(p.k3s.path),
            "window": window_json(p.k3s.window),
        },
        "manifests": list(p.manifests),
    }
