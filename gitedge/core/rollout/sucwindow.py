"""The ``window`` gitedge writes into a SUC Plan, per occurrence, and what SUC's gate makes of it.

SUC gates Job creation with kured's timewindow (SUC pkg/upgrade/handle_upgrade.go, the generating
handler: ``if len(obj.Status.Applying) == 0 && !window.Contains(time.Now())``; Contains is
kured pkg/timewindow/timewindow.go ``TimeWindow.Contains``, kured v1.13.1 in SUC's go.mod):

- the weekday of the *current* instant, in the window's zone, must be listed;
- start and end are ``time.Date`` of that local date (Go picks an offset for a wall time that
  does not exist or exists twice: :func:`go_date`); the end is inclusive to the last nanosecond
  of its second; start > end wraps to the day before or after (not used here).

So one SUC window is one weekly pattern, and cannot say "Friday 22:00 to Saturday 02:00" for
Fridays only, nor leave out a blackout date or a week a monthly cron skips. gitedge therefore
never writes the fleet window itself: :func:`admission_window` renders, at the instant the agent
admits a batch of nodes, a window of *one weekday*, from now (to the minute) to the latest
instant a Job may start and still end before the fleet window closes (``closes_at`` minus the
Job's budget: SUC's one-minute latency plus its ``activeDeadlineSeconds``), and never past the
local midnight (the part of a wrap after midnight is its own occurrence, rendered when the agent
admits there). It checks that window's weekly recurrences over the next 60 days against the
fleet window (DST and blackouts included): ``exact`` says whether every instant SUC could open
it in that time is one where a Job may start and finish inside the fleet window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from gitedge.core.fleet.windows import window_state
from gitedge.core.fleet.windowspec import MaintenanceWindowSpec, load_zone

SUC_LATENCY = timedelta(minutes=1)  # the model: SUC acts on a Plan within a minute
JOB_TTL = timedelta(seconds=900)  # SUC job.go defaultTTLSecondsAfterFinished
DEFAULT_JOB_DEADLINE = timedelta(seconds=900)  # SUC's shipped manifest (600 s in job.go's code)
SAFE_FOR = timedelta(days=60)  # how long what is written must be safe without the agent
_GO_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SECOND = timedelta(seconds=1)

__all__ = [
    "DEFAULT_JOB_DEADLINE",
    "JOB_TTL",
    "SAFE_FOR",
    "SUC_LATENCY",
    "AdmissionWindow",
    "admission_window",
    "go_date",
    "kured_interval",
]


def _offset(tz: ZoneInfo, unix: int) -> int:
    off = datetime.fromtimestamp(unix, UTC).astimezone(tz).utcoffset()
    return int(off.total_seconds()) if off is not None else 0


def go_date(tz: ZoneInfo, day: date, clock: time) -> datetime:
    """Go's ``time.Date(y, m, d, h, mi, s, 0, loc)`` (src/time/time.go): the offset in force at
    the wall time read as UTC, and if that instant lies in another zone period, the offset there.
    A wall time in a spring-forward gap lands an hour later; a repeated one on its second pass."""
    wall = datetime.combine(day, clock, tzinfo=UTC)
    unix = int(wall.timestamp())
    offset = _offset(tz, unix)
    if offset != 0:
        offset = _offset(tz, unix - offset)
    return datetime.fromtimestamp(unix - offset, UTC)


def _local_day_bounds(tz: ZoneInfo, day: date) -> tuple[datetime, datetime]:
    """The instants [first, next) whose local date is ``day`` (zones whose dates run forward)."""

    def first(d: date) -> datetime:
        guess = datetime.combine(d, time(0), tzinfo=tz).astimezone(UTC)
        while (guess - _SECOND).astimezone(tz).date() >= d:  # a midnight that is repeated
            guess -= timedelta(hours=1)
        while guess.astimezone(tz).date() < d:  # a midnight in a gap
            guess += timedelta(minutes=1)
        return guess

    return first(day), first(day + timedelta(days=1))


def kured_interval(window: dict[str, Any], day: date) -> tuple[datetime, datetime] | None:
    """The instants [a, b) of local date ``day`` at which kured's Contains holds for a
    non-wrapping one-day ``window`` that gitedge wrote (startTime <= endTime, "HH:MM:SS")."""
    tz = load_zone(str(window["timeZone"]))
    if _GO_DAYS[day.weekday()] not in window["days"]:
        return None
    start = go_date(tz, day, time.fromisoformat(str(window["startTime"])))
    end = go_date(tz, day, time.fromisoformat(str(window["endTime"]))) + _SECOND
    lo, hi = _local_day_bounds(tz, day)
    a, b = max(start, lo), min(end, hi)
    return (a, b) if a < b else None


@dataclass(frozen=True)
class AdmissionWindow:
    """A batch may start now: the SUC ``window`` to write with it, the latest instant a Job of
    it may start, and whether the window is safe for :data:`SAFE_FOR` without the agent."""

    window: dict[str, Any]
    latest_start: datetime
    exact: bool


def _fits(spec: MaintenanceWindowSpec, a: datetime, b: datetime, budget: timedelta) -> bool:
    """Every start in [a, b) is inside the fleet window with ``budget`` left before it closes."""
    state = window_state(spec, a)
    if not state.open:
        return False
    return state.closes_at is None or b <= state.closes_at - budget


def admission_window(
    spec: MaintenanceWindowSpec, *, now: datetime, budget: timedelta
) -> AdmissionWindow | None:
    """The SUC window under which a batch admitted at ``now`` starts (see the module docstring);
    None when no Job may start now: the fleet window is closed, or closes in less than
    ``budget`` (a Job would not finish), or no one-day kured window holds the next minute."""
    now = now.astimezone(UTC)
    state = window_state(spec, now)
    if not state.open:
        return None
    tz = load_zone(spec.time_zone)
    far = now + SAFE_FOR + timedelta(days=8)
    latest = (state.closes_at or far) - budget  # a Job starting before this ends in time
    if latest < now + SUC_LATENCY:
        return None
    local = now.astimezone(tz)
    day = local.date()
    _, day_end = _local_day_bounds(tz, day)
    last = min(latest, day_end) - _SECOND  # kured's end is inclusive to its second's end
    start = local.time().replace(second=0, microsecond=0)
    end = last.astimezone(tz).time().replace(microsecond=0)
    if last.astimezone(tz).date() != day or end <= start:
        return None
    window = {
        "days": [_GO_DAYS[day.weekday()]],
        "startTime": start.strftime("%H:%M:%S"),
        "endTime": end.strftime("%H:%M:%S"),
        "timeZone": spec.time_zone,
    }
    today = kured_interval(window, day)
    if today is None or not (today[0] <= now and now + SUC_LATENCY <= today[1]):
        return None  # Go reads this wall time elsewhere (a DST day): not today's occurrence
    if not _fits(spec, now, today[1], budget):
        return None
    exact = True
    week = 1
    while exact and day + timedelta(weeks=week) <= (now + SAFE_FOR).astimezone(tz).date():
        later = kured_interval(window, day + timedelta(weeks=week))
        exact = later is None or _fits(spec, later[0], later[1], budget)
        week += 1
    return AdmissionWindow(window=window, latest_start=latest, exact=exact)
