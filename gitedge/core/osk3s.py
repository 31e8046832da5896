"""An OS image that carries K3s (``os.k3s``): its OS step *is* the cluster's K3s step.

Pure. Kairos standard images install their own K3s (core/osimage.py), so booting such an image
changes the cluster's K3s, outside the k3s-upgrade path. The planner therefore holds such an OS
step to the K3s rules (core/versions.py ``upgrade_path``; DESIGN.md section 3 "K3s path"):

- never a downgrade: an image carrying an older K3s than the cluster runs is refused;
- never a skipped minor: from the cluster's minor to the image's, every intermediate minor needs
  an OS image carrying it, listed in ``os.via``; the message names the minors to add;
- one step at a time: the steps are the ``via`` images of the intermediate minors, then the
  target's image; only the first is rendered (as for the K3s path, the next pass plans again
  from what the kubelets report);
- servers first: the OS Plans already run control-plane nodes one at a time before any worker
  (core/suc.py ``os_plans``, core/applying.py ``_control_plane_first``);
- no k3s-upgrade Plan: a K3s target that selects the same cluster and agrees is not rendered
  (the OS brings that K3s); one that disagrees is refused, naming both targets.
"""

from __future__ import annotations

from gitedge.core.osimage import OsStep, OsTarget
from gitedge.core.versions import K3sVersion
from gitedge.errors import UpgradePathError

__all__ = ["carried_steps", "disagreement"]


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
        "agree, or stop one of them selecting these clusters"
    )
