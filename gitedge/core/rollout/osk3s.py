"""An OS image that carries K3s (``os.k3s``): its OS step *is* the cluster's K3s step.

Pure. Kairos standard images install their own K3s (core/fleet/osimage.py), so booting such an image
changes the cluster's K3s, outside the k3s-upgrade path. The planner therefore holds such an OS
step to the K3s rules (core/fleet/versions.py ``upgrade_path``; DESIGN.md section 3 "K3s path"):

- never a downgrade: an image carrying an older K3s than the cluster runs is refused;
- never a skipped minor: from the cluster's minor to the image's, every intermediate minor needs
  an OS image carrying it, listed in ``os.via``; the message names the minors to add;
- one step at a time: the steps are the ``via`` images of the intermediate minors, then the
  target's image; only the first is rendered (as for the K3s path, the next pass plans again
  from what the kubelets report);
- servers first: the OS Plans already run control-plane nodes one at a time before any worker
  (core/rollout/sucplans.py ``os_plans``, core/rollout/decision.py ``_control_plane_first``);
- no k3s-upgrade Plan: the OS target sets the cluster's K3s component too. A K3s target of
  lower priority loses to it (a fleet-wide K3s floor stays valid); one of the same or higher
  priority that agrees adds nothing, and one that disagrees is refused, naming both targets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gitedge.core.fleet.osimage import OsStep, OsTarget
from gitedge.core.fleet.versions import K3sVersion
from gitedge.errors import Problem, UpgradePathError

if TYPE_CHECKING:  # fleet/model.py imports osimage.py, not this module: no cycle at run time
    from gitedge.core.fleet.model import Fleet, UpgradeTarget

__all__ = ["carried_steps", "disagreement", "fleet_disagreements"]


def carried_steps(*, os: OsTarget, current: str | None, where: str) -> tuple[OsStep, ...]:
    """The OS images to boot, in order, to bring a cluster running K3s ``current`` to ``os``
    (whose ``k3s`` is set); ``where`` names the target in messages. Raises UpgradePathError
    for a downgrade, a change of major, or an intermediate minor with no ``via`` image."""
    assert os.k3s is not None
    final = OsStep(image=os.image, k3s=os.k3s)
    if current is None:  # nothing known of the cluster (print mode): the target as written
        return (final,)
    have, goal = K3sVersion.parse(current), K3sVersion.parse(os.k3s)
    if goal < have:
        raise UpgradePathError(
            f"{where}: OS image {os.image} carries K3s {goal}, older than the {have} the cluster "
            f"runs: K3s cannot be downgraded; use an OS image carrying K3s {have} or newer"
        )
    if goal.major != have.major:
        raise UpgradePathError(
            f"{where}: OS image {os.image} carries K3s {goal}, another major than the cluster's "
            f"{have}; gitedge only steps through minors of one major"
        )
    by_minor = {
        K3sVersion.parse(s.k3s).minor: s
        for s in os.via
        if K3sVersion.parse(s.k3s).major == have.major
    }
    missing = [m for m in range(have.minor + 1, goal.minor) if m not in by_minor]
    if missing:
        lines = ", ".join(f"v{have.major}.{m}" for m in missing)
        raise UpgradePathError(
            f"{where}: OS image {os.image} carries K3s {goal} but the cluster runs {have}: K3s "
            f"cannot skip a minor, and booting that image would skip {lines}; add to os.via an OS "
            f"image carrying K3s of each (for example `via: [{{image: <OS image with K3s "
            f"v{have.major}.{missing[0]}>, k3s: v{have.major}.{missing[0]}.x+k3s1}}]`), or "
            "target an image carrying the next minor first"
        )
    steps = [by_minor[m] for m in range(have.minor + 1, goal.minor)]
    return (*steps, final)


def disagreement(*, os: OsTarget, os_where: str, k3s: str, k3s_where: str) -> str | None:
    """Why an OS target carrying K3s and a K3s target cannot both hold for one cluster, or
    None when they agree (same version: the K3s target adds nothing, and no k3s-upgrade Plan is
    written)."""
    if os.k3s is None or K3sVersion.parse(os.k3s) == K3sVersion.parse(k3s):
        return None
    return (
        f"{os_where} sets os.k3s {os.k3s} (the K3s its OS image {os.image} carries) but "
        f"{k3s_where} sets k3s.version {k3s}: the OS step would set K3s to {os.k3s}; make them "
        "agree, give the OS target the higher priority, or stop one of them selecting these "
        "clusters"
    )


def fleet_disagreements(fleet: Fleet) -> list[Problem]:
    """``gitedge validate``'s check across targets: each pair of an OS target carrying K3s and
    a K3s target of another version that may select the same cluster (their selectors, groups
    included, are not provably disjoint). The planner refuses such a cluster anyway; this says
    so before any cluster is named."""
    carriers = [t for t in fleet.targets.values() if t.spec.os and t.spec.os.k3s]
    setters = [t for t in fleet.targets.values() if t.spec.k3s]
    out: list[Problem] = []
    for a in sorted(carriers, key=lambda t: t.metadata.name):
        for b in sorted(setters, key=lambda t: t.metadata.name):
            if a is b or a.spec.suspend or b.spec.suspend or b.spec.priority < a.spec.priority:
                continue  # same target: checked as it loads (fleet/model.py); lower: the OS wins
            assert a.spec.os is not None and b.spec.k3s is not None
            why = disagreement(
                os=a.spec.os,
                os_where=f"UpgradeTarget/{a.metadata.name}",
                k3s=b.spec.k3s.version,
                k3s_where=f"UpgradeTarget/{b.metadata.name} ({_where(fleet, b)})",
            )
            if why and _may_overlap(_needs(fleet, a), _needs(fleet, b)):
                o = fleet.origins[("UpgradeTarget", a.metadata.name)]
                out.append(Problem(o.path, o.line_of("os"), f"{why} (they may select one cluster)"))
    return out


_Need = tuple[str, str, frozenset[str]]  # key, In | NotIn | Exists | DoesNotExist, values


def _needs(fleet: Fleet, target: UpgradeTarget) -> list[_Need]:
    """What a target asks of a cluster's labels: its selector's and its group's."""
    selectors = [target.spec.cluster_selector]
    if target.spec.cluster_group is not None:
        selectors.append(fleet.groups[target.spec.cluster_group].spec.selector)
    out: list[_Need] = []
    for s in selectors:
        if s is None:
            continue
        out += [(k, "In", frozenset([v])) for k, v in s.match_labels.items()]
        out += [(r.key, str(r.operator), frozenset(r.values)) for r in s.match_expressions]
    return out


def _may_overlap(a: list[_Need], b: list[_Need]) -> bool:
    """False only when some label key cannot satisfy both targets' requirements."""
    for key in {n[0] for n in a} & {n[0] for n in b}:
        needs = [n for n in (*a, *b) if n[0] == key]
        present = any(op in ("In", "Exists") for _, op, _ in needs)
        if present and any(op == "DoesNotExist" for _, op, _ in needs):
            return False
        allowed: frozenset[str] | None = None
        for _, op, values in needs:
            if op == "In":
                allowed = values if allowed is None else allowed & values
        if allowed is not None:
            for _, op, values in needs:
                if op == "NotIn":
                    allowed = allowed - values
            if not allowed:
                return False
    return True


def _where(fleet: Fleet, target: UpgradeTarget) -> str:
    return fleet.where("UpgradeTarget", target.metadata.name)
