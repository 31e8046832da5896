"""The agent's pure rules: which images a plan needs, clock sanity, and when to try again.

Pure: no I/O, no clock reads (``now`` is a parameter), no randomness of its own (the jitter's
random number is a parameter), so the reconcile pass and the scheduler stay thin and these rules
are tested directly.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from gitedge.core.images.refs import ImageRef
from gitedge.core.rollout.planning import Plan
from gitedge.core.rollout.sucplans import k3s_image_tag
from gitedge.errors import Waiting

#: How far behind the newest verified commit the site clock may read before windows are closed.
CLOCK_TOLERANCE = timedelta(hours=1)
#: The first retry after a failure, and the longest wait between tries while offline.
BACKOFF_BASE_S = 30.0
BACKOFF_CAP_S = 3600.0

__all__ = [
    "FULL_PASS_EVERY_S",
    "LastPass",
    "NeededImage",
    "clock_trusted",
    "needed_images",
    "next_delay",
    "pass_due",
    "platforms_for",
    "poll_needs_pass",
    "same_images",
]


@dataclass(frozen=True)
class NeededImage:
    """One image the plan needs in the cache: why (component and step) and the reference."""

    component: str  # os | k3s
    step: str  # the K3s version, or the OS image as written
    ref: ImageRef
    #: the digest comes from the K3sReleases catalog: the source's answer for the tag must be
    #: that digest (a tag moved since the catalog was written is refused,
    # agent/steps/mirrorimage.py)
    tag_checked: bool = False

    @property
    def key(self) -> str:
        """How the state and the rendering know it: ``registry/repository:tag[@digest]``."""
        return str(self.ref)


def needed_images(plan: Plan) -> tuple[NeededImage, ...]:
    """Every image the whole plan needs, in the order it needs them: the K3s upgrade image of
    every step of the path (all of them, so a site that reconnects for one day holds the whole
    path; ``tag@digest`` when the K3sReleases catalog gives the version's digest), then the OS
    image (each one on the way when ``os.via`` steps an OS carrying K3s). Nothing is applied until
    all of them are in the cache."""
    out: list[NeededImage] = []
    if plan.k3s is not None:
        base = ImageRef.parse(plan.k3s.spec.upgrade_image)
        for version in plan.k3s.path:
            digest = plan.k3s.digest_of(version)
            tag = k3s_image_tag(version)
            ref = ImageRef(base.registry, base.repository, tag=tag, digest=digest)
            out.append(NeededImage("k3s", version, ref, tag_checked=digest is not None))
    if plan.os is not None and plan.os.current != plan.os.image:
        for image in plan.os.images:  # every OS image on the way (os.via), then the target's
            out.append(NeededImage("os", image, ImageRef.parse(image)))
    return tuple(out)


def same_images(
    needed: tuple[NeededImage, ...], planned: Plan, *, held: Collection[str] = ()
) -> None:
    """The apply step plans again from a fresh read of the cluster; a node that joined since
    the plan step (running an older K3s) can make that plan need an image this pass neither
    mirrored nor judged (agent/steps/imagetrust.py). Then nothing is applied: the next pass plans,
    mirrors and judges it. Components in ``held`` (named by tag only under requireDigest,
    core/delivery/requiredigest.py) are never mirrored nor applied, so their images do not count."""
    checked = {n.key for n in needed}
    new = [
        n.key for n in needed_images(planned) if n.key not in checked and n.component not in held
    ]
    if new:
        raise Waiting(
            f"the cluster changed since the plan step: image {new[0]} is needed now and was not "
            "checked (mirrored, signature judged) by this pass; the next pass plans again"
        )


def platforms_for(configured: str | tuple[str, ...], arches: tuple[str, ...]) -> tuple[str, ...]:
    """The ``os/arch`` platforms to mirror: as configured, or (``auto``) those of the cluster's
    nodes; () means every platform (the architectures are not known)."""
    if configured != "auto":
        return tuple(configured)
    return tuple(f"linux/{a}" for a in sorted(set(arches)) if a)


def clock_trusted(
    *, now: datetime, newest_commit: datetime | None, tolerance: timedelta = CLOCK_TOLERANCE
) -> bool:
    """A clock that reads earlier than the newest verified commit (minus ``tolerance``) is
    wrong (a dead RTC battery reads 1970): windows are then treated as closed."""
    return newest_commit is None or now >= newest_commit - tolerance


def next_delay(
    *,
    interval_s: float,
    failures: int,
    u: float,
    base_s: float = BACKOFF_BASE_S,
    cap_s: float = BACKOFF_CAP_S,
) -> float:
    """Seconds until the next sync. ``u`` is a uniform random number in [0, 1).

    Online (``failures == 0``): the interval, with +-10% jitter so a fleet does not fetch in
    step. Offline: exponential backoff from ``base_s``, doubling per failure, capped at the
    larger of ``cap_s`` and the interval, with "full jitter" (uniform over [0, the backoff],
    at least 1 s): a fleet coming back after an outage arrives spread over the whole backoff,
    not in its second half (bench/fleet.py measures the storm's peak against its mean).
    """
    if failures <= 0:
        return max(1.0, interval_s * (0.9 + 0.2 * u))
    cap = max(cap_s, interval_s)
    delay = min(cap, base_s * 2.0 ** min(failures - 1, 30))
    return max(1.0, delay * u)


#: A full pass runs at least this often even when every poll finds the branch unchanged (the
#: report, the cluster's own changes, a key's expiry are seen within it).
FULL_PASS_EVERY_S = 3600.0


@dataclass(frozen=True)
class LastPass:
    """What the poll needs of the last pass: the commit it fetched and whether it left
    nothing to do (:attr:`~gitedge.agent.passes.PassSummary.settled`)."""

    fetched: str | None
    settled: bool
    age_s: float  # seconds since it ran


def pass_due(
    *, last: LastPass | None, bundles_pending: bool, full_every_s: float = FULL_PASS_EVERY_S
) -> str | None:
    """Why the next poll must run a pass whatever the branch says (None: only a moved
    branch needs one). A pass is still needed when:

    - no pass ran yet in this process (nothing is known of the site);
    - the last pass is not settled: a step did not end ``ok`` (a failed fetch, a verify,
      mirror or apply to retry, a closed window, a ``Retry-After``), it sent actions, a
      component is not up to date (an upgrade in progress), the clock is untrusted, or it
      did not fetch from the source (a bundle stood in);
    - a bundle waits in ``source.bundleDir``;
    - the last pass is ``full_every_s`` old or more (a heartbeat: the report, nodes that
      joined, keys that expired are seen within it).
    """
    if last is None:
        return "no pass has run yet"
    if not last.settled or last.fetched is None:
        return "the last pass left work to do"
    if bundles_pending:
        return "a bundle is waiting"
    if last.age_s >= full_every_s:
        return f"no full pass for {last.age_s:.0f}s"
    return None


def poll_needs_pass(
    *, last: LastPass | None, remote_tip: str | None, due: str | None
) -> str | None:
    """The decision of one poll: why it runs a pass (None: the branch is unchanged and
    nothing is due, so the poll ends without one). ``remote_tip`` is the branch's commit as
    the origin advertised it (None: the ref check failed or was not made)."""
    if due is not None:
        return due
    if remote_tip is None:
        return "the ref check failed"
    if last is None or remote_tip != last.fetched:
        return f"the branch moved to {remote_tip}"
    return None
