"""The agent's status conditions, in the Kubernetes shape, and the one summary (``Ready``).

Each reconcile step sets only its own condition(s); :func:`merge` folds them into what was there
before, moving ``lastTransitionTime`` only when a condition's status changes, and
:func:`summarize` derives ``Ready`` once from all of them. Pure: the time is a parameter.

Condition types (``status.json`` in the agent's ``gitedge-status`` ConfigMap):

- ``SourceVerified``  the tracked commit is verified (False: a commit failed verification)
- ``Mirrored``        every image the targets need is in the cache, digest-verified
- ``Applying``        True while a step runs or was just started; False with ``UpToDate`` when
                      the cluster runs what the fleet asks, or with why it waits or failed
- ``WindowClosed``    True when work is held back by a closed maintenance window
- ``RollbackRefused`` True when the branch no longer descends from the last verified commit
- ``ClockUntrusted``  True when the clock reads earlier than the newest verified commit
- ``PlansAsWritten``  False when the API server stored a Plan other than written (``WindowPruned``:
                      SUC older than v0.15.0; ``DeadlinePruned``: older than v0.12.0) or SUC
                      gives its Jobs a shorter deadline than the Plan asks (``DeadlineClamped``)
- ``ImagesPinned``    False (``DigestRequired``) when a planned component's images are named by
                      tag only under TrustPolicy ``images.requireDigest``: that component is
                      held (nothing mirrored or applied for it), the others go on
- ``SourceReachable`` False when the origin did not answer (a mirror or a bundle may stand in)
- ``MirrorsCurrent``  whether the source mirrors lag the origin (agent/steps/gitmirrors.py)
- ``BundleImported``  the last bundle dropped into ``source.bundleDir``, imported or refused
- ``Planned``         False when the plan step failed (``AmbiguousTarget``, ``AgentTooOld``...)
- ``RegistryEndpoints`` which ``registry.endpoints`` served the images, which were skipped
- ``Reported``        whether this site's report reached ``report.repository``
- ``Ready``           the summary: True only when the cluster runs what the fleet asks and
                      nothing above is wrong

:data:`TABLE` says which step owns each type and how it feeds ``Ready``
(docs/architecture.md, "Conditions and Ready").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from gitedge.core.timefmt import iso_z

__all__ = [
    "STEP_CONDITION",
    "TABLE",
    "TYPES",
    "Condition",
    "Owned",
    "from_json",
    "merge",
    "summarize",
    "to_json",
]

Status = Literal["True", "False", "Unknown"]

READY = "Ready"
SOURCE_REACHABLE = "SourceReachable"
MIRRORS_CURRENT = "MirrorsCurrent"
BUNDLE_IMPORTED = "BundleImported"
SOURCE_VERIFIED = "SourceVerified"
MIRRORED = "Mirrored"
APPLYING = "Applying"
ROLLBACK_REFUSED = "RollbackRefused"
CLOCK_UNTRUSTED = "ClockUntrusted"
WINDOW_CLOSED = "WindowClosed"
PLANS_AS_WRITTEN = "PlansAsWritten"
IMAGES_PINNED = "ImagesPinned"
PLANNED = "Planned"
REGISTRY_ENDPOINTS = "RegistryEndpoints"
REPORTED = "Reported"
UP_TO_DATE = "UpToDate"

Feed = Literal["blocks", "notes", "no"]
STEPS = ("sync", "verify", "clock", "plan", "mirror", "apply", "report")


@dataclass(frozen=True)
class Owned:
    """One row of :data:`TABLE`: the step that sets ``type`` and how it feeds ``Ready``.

    ``blocks``: any status but ``healthy`` (and, when given, ``healthy_reason``) holds ``Ready``
    False with this condition's reason and message; ``notes``: never decides ``Ready``, but
    when not ``healthy`` its message is added to ``Ready``'s; ``no``: not looked at. The step's
    ``primary`` condition is the one a failure of the step sets False."""

    type: str
    step: str
    feed: Feed
    healthy: Status
    healthy_reason: str | None = None
    primary: bool = False


# In step order: ``Ready`` is the first blocking row (so a stalled verify or plan comes before
# a closed window). Offline (SourceReachable=False) only notes; reports and bundles don't feed.
TABLE: tuple[Owned, ...] = (
    Owned(SOURCE_REACHABLE, "sync", "notes", "True", primary=True),
    Owned(MIRRORS_CURRENT, "sync", "no", "True"),
    Owned(BUNDLE_IMPORTED, "sync", "no", "True"),
    Owned(ROLLBACK_REFUSED, "verify", "blocks", "False"),
    Owned(SOURCE_VERIFIED, "verify", "blocks", "True", primary=True),
    Owned(CLOCK_UNTRUSTED, "clock", "blocks", "False", primary=True),
    Owned(PLANNED, "plan", "blocks", "True", primary=True),
    Owned(IMAGES_PINNED, "plan", "blocks", "True"),
    Owned(MIRRORED, "mirror", "blocks", "True", primary=True),
    Owned(REGISTRY_ENDPOINTS, "mirror", "no", "True"),
    Owned(PLANS_AS_WRITTEN, "apply", "blocks", "True"),
    Owned(APPLYING, "apply", "blocks", "False", UP_TO_DATE, primary=True),
    Owned(WINDOW_CLOSED, "apply", "blocks", "False"),
    Owned(REPORTED, "report", "no", "True", primary=True),
    Owned(READY, "report", "no", "True"),
)
TYPES = (READY, *(r.type for r in TABLE if r.type != READY))
STEP_CONDITION = {r.step: r.type for r in TABLE if r.primary}  # what a failed step sets False


@dataclass(frozen=True)
class Condition:
    """One condition; ``reason`` is a CamelCase word, ``message`` is for people."""

    type: str
    status: Status
    reason: str
    message: str = ""
    last_transition_time: datetime | None = None


def to_json(conditions: Iterable[Condition]) -> list[dict[str, Any]]:
    """The conditions as Kubernetes writes them (``lastTransitionTime`` RFC 3339, UTC)."""
    out = []
    for c in conditions:
        item: dict[str, Any] = {
            "type": c.type,
            "status": c.status,
            "reason": c.reason,
            "message": c.message,
            "lastTransitionTime": (
                iso_z(c.last_transition_time) if c.last_transition_time is not None else None
            ),
        }
        out.append(item)
    return out


def from_json(items: object) -> list[Condition]:
    """Conditions read back from ``status.json``; malformed entries are dropped, not fatal."""
    out: list[Condition] = []
    if not isinstance(items, list):
        return out
    for item in items:
        if not isinstance(item, Mapping):
            continue
        ctype, status = item.get("type"), item.get("status")
        if not isinstance(ctype, str) or status not in ("True", "False", "Unknown"):
            continue
        when: datetime | None = None
        raw = item.get("lastTransitionTime")
        if isinstance(raw, str):
            try:
                when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            except ValueError:
                when = None
        out.append(
            Condition(
                type=ctype,
                status=status,
                reason=str(item.get("reason") or ""),
                message=str(item.get("message") or ""),
                last_transition_time=when,
            )
        )
    return out


def merge(
    previous: Sequence[Condition], updates: Iterable[Condition], *, now: datetime
) -> list[Condition]:
    """``previous`` with ``updates`` applied by type. A condition keeps its
    ``lastTransitionTime`` while its status stays the same (reason and message may change);
    a new or changed one gets ``now``. Conditions not updated are kept as they were."""
    by_type = {c.type: c for c in previous}
    for new in updates:
        old = by_type.get(new.type)
        if old is not None and old.status == new.status and old.last_transition_time:
            by_type[new.type] = replace(new, last_transition_time=old.last_transition_time)
        else:
            by_type[new.type] = replace(new, last_transition_time=now)
    order = {t: i for i, t in enumerate(TYPES)}
    return sorted(by_type.values(), key=lambda c: (order.get(c.type, len(order)), c.type))


def summarize(conditions: Iterable[Condition]) -> Condition:
    """``Ready``, derived from the others by :data:`TABLE`: False with the reason and message
    of the first blocking condition in step order; else True (``UpToDate``) when ``Applying``
    says the cluster runs what the fleet asks, Unknown before the apply step ever ran.
    A ``notes`` row that is not healthy (offline) is added to the message, never the reason."""
    by_type = {c.type: c for c in conditions if c.type != READY}
    notes = []
    for row in TABLE:
        c = by_type.get(row.type)
        if c is None or row.feed == "no" or _healthy(row, c):
            continue
        if row.feed == "notes":
            notes.append(f"{row.type}={c.status} ({c.reason}: {c.message})")
            continue
        return _ready("False", c.reason or row.type, c.message, notes)
    applying = by_type.get(APPLYING)
    if applying is None:
        return _ready("Unknown", "NotApplied", "the apply step has not run yet", notes)
    return _ready("True", UP_TO_DATE, applying.message, notes)


def _healthy(row: Owned, c: Condition) -> bool:
    return c.status == row.healthy and row.healthy_reason in (None, c.reason)


def _ready(status: Status, reason: str, message: str, notes: list[str]) -> Condition:
    text = "; ".join([message, *notes]) if message and notes else message or "; ".join(notes)
    return Condition(READY, status, reason, text)
