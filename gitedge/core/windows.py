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
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationInfo, field_validator, model_validator

from gitedge.core.base import Duration, Model
from gitedge.errors import WindowError

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
HORIZON_DAYS = 8 * 366
MAX_DURATION = timedelta(days=7)
_DAY = timedelta(days=1)
_MIDNIGHT = time(0, 0)

# --------------------------------------------------------------------------------------- cron

_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DOW_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# (name, low, high, names, value of names[0])
_FIELDS: tuple[tuple[str, int, int, tuple[str, ...], int], ...] = (
    ("minute", 0, 59, (), 0),
    ("hour", 0, 23, (), 0),
    ("day-of-month", 1, 31, (), 0),
    ("month", 1, 12, _MONTH_NAMES, 1),
    ("day-of-week", 0, 7, _DOW_NAMES, 0),
)
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February in a leap year
_NUMBER = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class CronSchedule:
    """A parsed 5-field cron expression. ``days_of_week`` uses 0 = Sunday .. 6 = Saturday."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]
    dom_star: bool
    dow_star: bool

    def matches(self, day: date) -> bool:
        """Does the schedule fire on ``day`` (Vixie: OR of the day fields unless one is ``*``)?"""
        if day.month not in self.months:
            return False
        dom = day.day in self.days_of_month
        dow = (day.weekday() + 1) % 7 in self.days_of_week
        return (dom and dow) if self.dom_star or self.dow_star else (dom or dow)

    def times(self) -> tuple[timedelta, ...]:
        """The start times of a matching day, as offsets from midnight, in order."""
        return tuple(
            timedelta(hours=h, minutes=m) for h in sorted(self.hours) for m in sorted(self.minutes)
        )


def parse_cron(expr: str) -> CronSchedule:
    """Parse ``minute hour day-of-month month day-of-week``; raise ValueError saying what is wrong.

    Fields take ``*``, numbers, ``a-b`` ranges, ``,`` lists and ``/step`` after ``*`` or a range;
    month and day-of-week also take names (jan..dec, sun..sat, any case); 0 and 7 are Sunday.
    ``@hourly``, ``@daily``/``@midnight``, ``@weekly``, ``@monthly``, ``@yearly``/``@annually``
    stand for their usual expressions.
    """
    text = expr.strip()
    if text.startswith("@"):
        nick = text.lower()
        if nick not in _NICKNAMES:
            raise ValueError(
                f"cron {expr!r}: {text.split()[0]} has no time of day to open a window at; use "
                "5 fields (minute hour day-of-month month day-of-week) or one of "
                + ", ".join(_NICKNAMES)
            )
        text = _NICKNAMES[nick]
    parts = text.split()
    if len(parts) != 5:
        extra = " (seconds or years fields, as in Quartz, are not supported)" * (len(parts) > 5)
        raise ValueError(
            f"cron {expr!r} has {len(parts)} fields; it needs exactly 5: "
            f"minute hour day-of-month month day-of-week{extra}"
        )
    sets = [_parse_field(part, *spec, expr=expr) for part, spec in zip(parts, _FIELDS, strict=True)]
    fs = [frozenset(values) for values in sets]
    schedule = CronSchedule(
        fs[0],
        fs[1],
        fs[2],
        fs[3],
        frozenset(v % 7 for v in fs[4]),
        dom_star=parts[2].startswith("*"),
        dow_star=parts[4].startswith("*"),
    )
    if (schedule.dom_star or schedule.dow_star) and not any(
        d <= _MONTH_DAYS[m - 1] for m in schedule.months for d in schedule.days_of_month
    ):
        raise ValueError(f"cron {expr!r} never matches a date (no such day in those months)")
    return schedule


def _parse_field(
    text: str, name: str, low: int, high: int, names: tuple[str, ...], base: int, *, expr: str
) -> set[int]:
    where = f"cron {expr!r}: {name} field {text!r}"

    def number(token: str) -> int:
        if token.lower() in names:
            return names.index(token.lower()) + base
        if not _NUMBER.fullmatch(token):
            hint = f" or a name ({names[0]}..{names[-1]})" if names else ""
            raise ValueError(f"{where}: {token!r} is not a number{hint}")
        value = int(token)
        if not low <= value <= high:
            raise ValueError(f"{where}: {value} is outside {low}-{high}")
        return value

    values: set[int] = set()
    for item in text.split(","):
        body, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not _NUMBER.fullmatch(step_text) or int(step_text) == 0:
                raise ValueError(f"{where}: step {step_text!r} must be a number of at least 1")
            step = int(step_text)
        if body == "*":
            first, last = low, high
        elif "-" in body:
            a, _, b = body.partition("-")
            first, last = number(a), number(b)
            if first > last:
                raise ValueError(
                    f"{where}: range {body!r} runs backwards; write it low-high or as a list"
                )
        else:
            first = last = number(body)
            if slash:
                raise ValueError(
                    f"{where}: a step needs '*' or a range before it, e.g. {body}-{high}/{step}"
                )
        values.update(range(first, last + 1, step))
    return values


# -------------------------------------------------------------------------------------- model

_HHMM = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*")
_NOT_IANA = {"localtime", "posixrules", "factory"}


def load_zone(name: str) -> ZoneInfo:
    """The ZoneInfo of an IANA time zone name; ValueError for anything else (incl. localtime)."""
    bad = ValueError(
        f"timeZone {name!r} is not an IANA time zone name such as 'Europe/Berlin' or 'UTC'"
    )
    if (
        not _ZONE_NAME.fullmatch(name)
        or name.lower() in _NOT_IANA
        or name.split("/")[0] in ("posix", "right")
    ):
        raise bad
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise bad from None


class Blackout(Model):
    """Whole local dates, ``from`` to ``to`` inclusive, in which the window never opens."""

    from_: date = Field(alias="from", description="first blackout date (YYYY-MM-DD), inclusive")
    to: date = Field(description="last blackout date (YYYY-MM-DD), inclusive")

    @field_validator("from_", "to", mode="before")
    @classmethod
    def _plain_date(cls, value: Any, info: ValidationInfo) -> Any:
        field = "from" if info.field_name == "from_" else info.field_name
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        if isinstance(value, str) and _ISO_DATE.fullmatch(value):
            try:
                return date.fromisoformat(value)
            except ValueError:
                raise ValueError(f"{field} {value!r} is not a calendar date") from None
        raise ValueError(f"{field} must be a date written YYYY-MM-DD, e.g. 2026-12-20")

    @model_validator(mode="after")
    def _ordered(self) -> Blackout:
        if self.to < self.from_:
            raise ValueError(f"blackout 'to' ({self.to}) is before 'from' ({self.from_})")
        return self


class MaintenanceWindowSpec(Model):
    """``spec`` of a MaintenanceWindow: ``days``/``start``/``end`` or ``cron``/``duration``."""

    time_zone: str = Field(default="UTC", description="IANA time zone of the times and dates")
    days: tuple[Weekday, ...] | None = Field(
        default=None, description="days an opening starts on (mon..sun); with start and end"
    )
    start: str | None = Field(
        default=None, pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", description='"HH:MM", quoted'
    )
    end: str | None = Field(
        default=None,
        pattern=r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$",
        description='"HH:MM" or "24:00", quoted; at or before start means the next day',
    )
    cron: str | None = Field(
        default=None, description="5-field cron expression of opening starts; with duration"
    )
    duration: Duration | None = Field(default=None, description="length of each cron opening")
    blackouts: tuple[Blackout, ...] = Field(
        default=(), description="date ranges (inclusive) in which the window never opens"
    )

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        load_zone(value)
        return value

    @field_validator("days", mode="before")
    @classmethod
    def _days(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, list | tuple) or not value:
            raise ValueError("days must be a non-empty list such as [mon, tue, wed]")
        out = []
        for item in value:
            if not isinstance(item, str) or item.lower() not in DAY_NAMES:
                raise ValueError(
                    f"unknown day {item!r}: write days as mon, tue, wed, thu, fri, sat, sun"
                )
            out.append(item.lower())
        return tuple(out)

    @field_validator("start", "end", mode="before")
    @classmethod
    def _hhmm(cls, value: Any, info: ValidationInfo) -> Any:
        name = info.field_name
        if value is None:
            return None
        if not isinstance(value, str):
            hint = ""
            if type(value) is int and 0 <= value <= 1440:
                hint = f" (unquoted {value // 60}:{value % 60:02d} is read by YAML as the number "
                hint += f"{value})"
            raise ValueError(f'{name} must be a quoted string such as "19:00"{hint}')
        if not (_HHMM.fullmatch(value) or (name == "end" and value == "24:00")):
            last = "24:00" if name == "end" else "23:59"
            raise ValueError(f"{name} {value!r} must be HH:MM between 00:00 and {last}")
        return value

    @field_validator("cron", mode="before")
    @classmethod
    def _cron(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError('cron must be a quoted string such as "0 1 * * 1-4"')
        parse_cron(value)
        return value

    @field_validator("duration")
    @classmethod
    def _duration(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and not timedelta(0) < value < MAX_DURATION:
            raise ValueError("duration must be more than 0s and less than 7 days (168h)")
        return value

    @model_validator(mode="after")
    def _one_shape(self) -> MaintenanceWindowSpec:
        shapes: tuple[dict[str, object], ...] = (
            {"days": self.days, "start": self.start, "end": self.end},
            {"cron": self.cron, "duration": self.duration},
        )
        given = [[k for k, v in shape.items() if v is not None] for shape in shapes]
        if all(given):
            raise ValueError("use either days + start + end, or cron + duration, not both")
        if not any(given):
            raise ValueError("a window needs either days + start + end, or cron + duration")
        for shape, names in zip(shapes, given, strict=True):
            if names and len(names) < len(shape):
                missing = ", ".join(k for k in shape if k not in names)
                raise ValueError(f"{' + '.join(shape)} go together: {missing} missing")
        if self.start is not None and self.start == self.end:
            raise ValueError(
                f'start and end are both "{self.start}": a window needs a length '
                '(for a whole day write start "00:00", end "24:00")'
            )
        return self


# --------------------------------------------------------------------------------- evaluation


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
