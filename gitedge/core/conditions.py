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
- ``Ready``           the summary: True only when the cluster runs what the fleet asks and
                      nothing above is wrong
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from gitedge.core.timefmt import iso_z

Status = Literal["True", "False", "Unknown"]

READY = "Ready"
SOURCE_VERIFIED = "SourceVerified"
MIRRORED = "Mirrored"
APPLYING = "Applying"
ROLLBACK_REFUSED = "RollbackRefused"
CLOCK_UNTRUSTED = "ClockUntrusted"
WINDOW_CLOSED = "WindowClosed"
PLANS_AS_WRITTEN = "PlansAsWritten"
IMAGES_PINNED = "ImagesPinned"
TYPES = (
    READY,
    SOURCE_VERIFIED,
    MIRRORED,
    APPLYING,
    ROLLBACK_REFUSED,
    CLOCK_UNTRUSTED,
    WINDOW_CLOSED,
    PLANS_AS_WRITTEN,
    IMAGES_PINNED,
)
UP_TO_DATE = "UpToDate"

__all__ = ["TYPES", "Condition", "from_json", "merge", "summarize", "to_json"]


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
    """``Ready``, derived from the others: the first thing wrong, in the order a person would
    look at it (refused rollback, untrusted clock, source, mirror, apply), else ``UpToDate``."""
    by_type = {c.type: c for c in conditions if c.type != READY}

    def bad(ctype: str, status: Status) -> Condition | None:
        c = by_type.get(ctype)
        return c if c is not None and c.status == status else None

    checks: tuple[tuple[str, Status], ...] = (
        (ROLLBACK_REFUSED, "True"),
        (CLOCK_UNTRUSTED, "True"),
        (SOURCE_VERIFIED, "False"),
        (MIRRORED, "False"),
        (PLANS_AS_WRITTEN, "False"),
        (IMAGES_PINNED, "False"),
    )
    for ctype, status in checks:
        c = bad(ctype, status)
        if c is not None:
            return Condition(READY, "False", c.reason or ctype, c.message)
    planned = by_type.get("Planned")  # planning from an older commit: the agent needs upgrading
    if planned is not None and planned.reason == "AgentTooOld":
        return Condition(READY, "False", planned.reason, planned.message)
    applying = by_type.get(APPLYING)
    if applying is None:
        return Condition(READY, "Unknown", "NotApplied", "the apply step has not run yet")
    if applying.status == "False" and applying.reason == UP_TO_DATE:
        return Condition(READY, "True", UP_TO_DATE, applying.message)
    return Condition(READY, "False", applying.reason, applying.message)
