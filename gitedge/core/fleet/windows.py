"""Maintenance windows: when may a cluster be upgraded? ``is_open``, ``next_open``, ``closes_at``.

A window is one of two shapes, in the local wall-clock time of ``timeZone`` (IANA, default UTC):

- ``days`` + ``start`` + ``end`` (system-upgrade-controller's shape): an opening starts at ``start``
  on each listed day and ends at ``end``; ``end`` at or before ``start`` means the next day (a
  22:00-02:00 window on ``fri`` is open Saturday 01:00). ``end`` may be ``"24:00"``, the midnight
  that ends the start day, so ``00:00``-``24:00`` is the whole day; ``start`` may not. Both are
  quoted ``"HH:MM"`` strings: YAML 1.1 reads an unquoted 19:00 as the integer 1140.
- ``cron`` + ``duration`` (Argo CD's shape): an opening starts at every minute the 5-field cron
  expression matches and lasts ``duration`` of real elapsed time (0 < duration < 7 days).
  Vixie semantics: when day-of-month and day-of-week are both restricted, a day matches if either
  matches; a field counts as unrestricted when it starts with ``*`` (so ``*/2`` too, as in Vixie
  cron and cronie; robfig/cron, which Argo CD uses, differs there).

Rules (all evaluated in the window's time zone; instants returned are aware datetimes in UTC):

- Openings are half-open ``[start, end)``. Openings that overlap or touch merge into one: the
  window is open from the first start to the last end, and ``closes_at`` is that last end.
- DST, spring-forward: a wall-clock time that does not exist that day (02:30 in Europe/Berlin on
  the last Sunday of March) is taken as the first instant after the gap (03:00 local), as cron
  daemons run jobs from the skipped hour when the gap ends. An opening whose start and end both
  fall in the same gap does not happen.
- DST, fall-back: an ambiguous wall-clock time is its first occurrence (``fold=0``), for starts,
  ends and blackout midnights alike, so a 01:00-05:00 window on the Berlin fall-back night lasts
  5 real hours; a cron start in the repeated hour fires once.
- Blackouts are whole local dates, both ends inclusive. The window is closed at every instant
  whose local date lies in a blackout; an opening that starts before a blackout is cut at the
  blackout's first instant (local midnight); an opening that starts inside one never happens,
  not even the part of it after the blackout ends.
- ``next_open`` is the next instant after ``now`` at which the window goes from closed to open
  (when open now: the start of the opening after the current one); ``closes_at`` is the end of
  the current opening when open, else None. Both are None when the answer lies beyond a search
  horizon of about eight years (long enough for a cron that only matches 29 February).

Nothing here reads the clock: ``now`` is always a parameter and must be timezone-aware.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from gitedge.core.fleet.cronspec import CronSchedule, parse_cron
from gitedge.core.fleet.windowspec import DAY_NAMES, MaintenanceWindowSpec, load_zone
from gitedge.errors import WindowError

__all__ = ["HORIZON_DAYS", "WindowState", "closes_at", "is_open", "next_open", "window_state"]

HORIZON_DAYS = 8 * 366
_DAY = timedelta(days=1)
_MIDNIGHT = time(0, 0)


@dataclass(frozen=True)
class WindowState:
    """A window seen at one instant; datetimes are aware, in UTC (see the module docstring)."""

    open: bool
    next_open: datetime | None
    closes_at: datetime | None


@dataclass(frozen=True)
class _Compiled:
    tz: ZoneInfo
    weekdays: frozenset[int]  # days shape: date.weekday() values
    start: timedelta  # days shape: offsets from the start day's midnight (wall clock)
    end: timedelta
    cron: CronSchedule | None
    duration: timedelta
    starts: tuple[timedelta, ...]  # cron: start times of a matching day
    runs: tuple[tuple[timedelta, timedelta], ...]  # cron: merged openings of a DST-free day
    blackout_days: tuple[tuple[date, date], ...]  # merged, sorted
    blackout_from: tuple[datetime, ...]  # UTC instants of the blackouts' first local instant
    blackout_until: tuple[datetime, ...]  # and of the first instant after their last day


@lru_cache(maxsize=256)
def _compile(spec: MaintenanceWindowSpec) -> _Compiled:
    tz = load_zone(spec.time_zone)
    merged: list[tuple[date, date]] = []
    for b in sorted(spec.blackouts, key=lambda b: b.from_):
        if merged and b.from_ <= merged[-1][1] + _DAY:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b.to))
        else:
            merged.append((b.from_, b.to))
    starts: tuple[timedelta, ...] = ()
    runs: list[tuple[timedelta, timedelta]] = []
    cron = parse_cron(spec.cron) if spec.cron is not None else None
    duration = spec.duration or timedelta(0)
    start = end = timedelta(0)
    if cron is not None:
        starts = cron.times()
        for s in starts:
            if runs and s <= runs[-1][1]:
                runs[-1] = (runs[-1][0], s + duration)
            else:
                runs.append((s, s + duration))
    else:
        assert spec.start is not None and spec.end is not None
        start = timedelta(hours=int(spec.start[:2]), minutes=int(spec.start[3:]))
        end = timedelta(hours=int(spec.end[:2]), minutes=int(spec.end[3:]))  # 24:00 is 24h
        if end <= start:
            end += _DAY
    return _Compiled(
        tz=tz,
        weekdays=frozenset(DAY_NAMES.index(d) for d in spec.days or ()),
        start=start,
        end=end,
        cron=cron,
        duration=duration,
        starts=starts,
        runs=tuple(runs),
        blackout_days=tuple(merged),
        blackout_from=tuple(_to_utc(tz, datetime.combine(a, _MIDNIGHT)) for a, _ in merged),
        blackout_until=tuple(_to_utc(tz, datetime.combine(b + _DAY, _MIDNIGHT)) for _, b in merged),
    )


@lru_cache(maxsize=65536)
def _to_utc(tz: ZoneInfo, wall: datetime) -> datetime:
    """The instant of a naive local wall-clock time: gap -> first instant after it; fold=0."""
    first = wall.replace(tzinfo=tz).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first  # exists (fold=0 is the first occurrence of an ambiguous time)
    # In a gap, fold=1 applies the offset after the transition (an instant before it) and fold=0
    # the offset before it (an instant after it): bisect for the transition, to the second.
    lo, hi = wall.replace(tzinfo=tz, fold=1).astimezone(UTC), first
    before = lo.astimezone(tz).utcoffset()
    while hi - lo > timedelta(seconds=1):
        mid = lo + timedelta(seconds=int((hi - lo).total_seconds()) // 2)
        if mid.astimezone(tz).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return hi


@lru_cache(maxsize=8192)
def _midnight(tz: ZoneInfo, day: date) -> tuple[datetime, bool]:
    """The first instant of a local date, and whether that day's wall clock runs without jumps."""
    first = _to_utc(tz, datetime.combine(day, _MIDNIGHT))
    after = _to_utc(tz, datetime.combine(day + _DAY, _MIDNIGHT))
    smooth = after - first == _DAY and first.astimezone(tz).time() == _MIDNIGHT
    return first, smooth


def _scheduled(c: _Compiled, day: date) -> list[tuple[datetime, datetime]]:
    """Openings that start on local date ``day``, in start order, blackouts not yet applied."""
    wall_midnight = datetime.combine(day, _MIDNIGHT)
    if c.cron is None:
        if day.weekday() not in c.weekdays:
            return []
        start = _to_utc(c.tz, wall_midnight + c.start)
        end = _to_utc(c.tz, wall_midnight + c.end)
        return [(start, end)] if start < end else []
    if not c.cron.matches(day):
        return []
    first, smooth = _midnight(c.tz, day)
    if smooth:
        return [(first + a, first + b) for a, b in c.runs]
    starts = (_to_utc(c.tz, wall_midnight + s) for s in c.starts)
    return [(s, s + c.duration) for s in starts]


def _openings(
    c: _Compiled, first_day: date, last_day: date
) -> Iterator[tuple[datetime, datetime | None]]:
    """Merged openings scheduled on ``first_day``..``last_day``, blackouts applied, in order.

    The last one has end None when it is still open where the scan stops (the horizon).
    """
    current: tuple[datetime, datetime] | None = None
    day = first_day
    while day <= last_day:
        i = bisect.bisect_right(c.blackout_days, (day, date.max)) - 1
        if i >= 0 and c.blackout_days[i][0] <= day < c.blackout_days[i][1]:
            day = c.blackout_days[i][1]  # the last blackout day itself is checked exactly
            continue
        for start, end in _scheduled(c, day):
            k = bisect.bisect_right(c.blackout_from, start) - 1
            if k >= 0 and start < c.blackout_until[k]:
                continue  # starts inside a blackout: never opens
            if k + 1 < len(c.blackout_from):
                end = min(end, c.blackout_from[k + 1])
            if current is not None and start <= current[1]:
                current = (current[0], max(current[1], end))
                continue
            if current is not None:
                yield current
            current = (start, end)
        day += _DAY
    if current is not None:
        horizon, _ = _midnight(c.tz, last_day + _DAY)
        yield (current[0], None if current[1] >= horizon else current[1])


def _utc_now(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise WindowError(f"now must be a timezone-aware datetime, not naive {now.isoformat()}")
    utc = now.astimezone(UTC)
    if not 2 <= utc.year <= 9980:
        raise WindowError(f"now {utc.isoformat()} is outside the years windows are evaluated in")
    return utc


@lru_cache(maxsize=4096)
def _state(spec: MaintenanceWindowSpec, now: datetime) -> WindowState:
    c = _compile(spec)
    today = now.astimezone(c.tz).date()
    lookback = timedelta(days=c.duration.days + 2)  # covers the longest opening that may hold now
    found = _openings(c, today - lookback, today + timedelta(HORIZON_DAYS))
    for start, end in found:
        if end is not None and end <= now:
            continue
        if start <= now:
            following = next(found, None)
            return WindowState(
                open=True, next_open=following[0] if following else None, closes_at=end
            )
        return WindowState(open=False, next_open=start, closes_at=None)
    return WindowState(open=False, next_open=None, closes_at=None)


def window_state(spec: MaintenanceWindowSpec, now: datetime) -> WindowState:
    """Open or not at ``now``, the next opening start after ``now``, and the current end.

    ``next_open`` is the next closed->open instant strictly after ``now`` (when open: the start
    of the opening after the current one); ``closes_at`` is the end of the current (merged)
    opening when open, else None. Either is None when beyond the search horizon. Raises
    WindowError when ``now`` is naive.
    """
    return _state(spec, _utc_now(now))


def is_open(spec: MaintenanceWindowSpec, now: datetime) -> bool:
    """Is the window open at instant ``now`` (aware)? Openings are ``[start, end)``."""
    return window_state(spec, now).open


def next_open(spec: MaintenanceWindowSpec, now: datetime) -> datetime | None:
    """The next opening start after ``now`` (UTC; when open, the one after the current one)."""
    return window_state(spec, now).next_open


def closes_at(spec: MaintenanceWindowSpec, now: datetime) -> datetime | None:
    """When the opening that contains ``now`` ends (UTC); None when closed (or past horizon)."""
    return window_state(spec, now).closes_at
