"""A port of kured's ``pkg/timewindow`` (the window check SUC runs: ``TimeWindowSpec.Contains`` in
SUC's pkg/apis/upgrade.cattle.io/v1/types.go calls ``timewindow.New(...).Contains(time.Now())``).

Source: github.com/kubereboot/kured, commit :data:`KURED_COMMIT`, files
``pkg/timewindow/timewindow.go`` and ``pkg/timewindow/days.go``, checked against the release SUC
builds with (SUC's go.mod: ``github.com/kubereboot/kured v1.13.1``, tag ``1.13.1``): the same code
but for the capitalised error texts (``Invalid weekday``, ``Invalid time format``), which SUC
shows in its Validated condition; this port gives v1.13.1's texts. Every rule below names the Go
function it follows. Instants are compared in integer nanoseconds, as Go's ``time.Time`` is:
the window's end is ``endTime`` plus 999,999,999 ns (so a window ending "05:00" still contains
05:00:00.999999999), and ``start.Add(-24 * time.Hour)`` is 24 hours of elapsed time, not a
calendar day (it differs on a DST day).
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

KURED_COMMIT = "51220cc778a4c8cc5bdd35617697a2844887f8c7"
KURED_SUC_TAG = "1.13.1"  # the version SUC (go.mod) builds with
NS = 1_000_000_000
DAY_NS = 24 * 3600 * NS

# days.go dayStrings: names (matched lower-cased) to Go's time.Weekday (Sunday = 0)
DAY_STRINGS = {
    **dict.fromkeys(("su", "sun", "sunday"), 0),
    **dict.fromkeys(("mo", "mon", "monday"), 1),
    **dict.fromkeys(("tu", "tue", "tuesday"), 2),
    **dict.fromkeys(("we", "wed", "wednesday"), 3),
    **dict.fromkeys(("th", "thu", "thursday"), 4),
    **dict.fromkeys(("fr", "fri", "friday"), 5),
    **dict.fromkeys(("sa", "sat", "saturday"), 6),
}
_WEEKDAY_NAMES = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")


class TimeWindowError(ValueError):
    """What ``timewindow.New`` returns as an error (SUC: the Plan fails validation)."""


def parse_weekday(day: str) -> int:
    """days.go parseWeekday: a number 0-6 (strconv.Atoi, so an optional sign) or a name."""
    if re.fullmatch(r"[+-]?[0-9]+", day):
        n = int(day)
        if 0 <= n < 7:
            return n
        raise TimeWindowError(f"Invalid weekday, number out of range: {day}")
    if day.lower() in DAY_STRINGS:
        return DAY_STRINGS[day.lower()]
    raise TimeWindowError(f"Invalid weekday: {day}")


def parse_weekdays(days: list[str]) -> int:
    """days.go parseWeekdays: a bit set of weekdays; empty strings are skipped."""
    result = 0
    for day in days:
        if len(day) == 0:
            continue
        result |= 1 << parse_weekday(day)
    return result


def weekdays_string(days: int) -> str:
    """days.go weekdays.String: ``Sun---Tue...``."""
    return "".join(_WEEKDAY_NAMES[i] if days & (1 << i) else "---" for i in range(7))


# timewindow.go parseTime tries, in order, the Go layouts
# "15:04", "15:04:05", "03:04pm", "15", "03pm", "3pm". Go's Parse: "15" is getnum(not fixed):
# one or two digits, hour < 24; "03" is two digits, "3" one or two, both hour <= 12; "04"/"05"
# exactly two digits (< 60); "pm" matches lower-case "am"/"pm" only (pm adds 12 below 12, 12am
# is 0); the whole input must be consumed.
_LAYOUTS = (
    (re.compile(r"([0-9]{1,2}):([0-9]{2})"), 24, False),
    (re.compile(r"([0-9]{1,2}):([0-9]{2}):([0-9]{2})"), 24, False),
    (re.compile(r"([0-9]{2}):([0-9]{2})(am|pm)"), 13, True),
    (re.compile(r"([0-9]{1,2})"), 24, False),
    (re.compile(r"([0-9]{2})(am|pm)"), 13, True),
    (re.compile(r"([0-9]{1,2})(am|pm)"), 13, True),
)


def parse_time(s: str) -> tuple[int, int, int]:
    """timewindow.go parseTime: (hour, minute, second) of the first layout that parses."""
    for pattern, hour_limit, twelve in _LAYOUTS:
        m = pattern.fullmatch(s)
        if not m:
            continue
        groups = list(m.groups())
        ampm = groups.pop() if twelve else None
        nums = [int(g) for g in groups] + [0] * (3 - len(groups))
        hour, minute, second = nums
        if hour >= hour_limit or minute >= 60 or second >= 60:
            continue
        if ampm == "pm" and hour < 12:
            hour += 12
        elif ampm == "am" and hour == 12:
            hour = 0
        return hour, minute, second
    raise TimeWindowError(f"Invalid time format: {s}")


def load_location(name: str) -> tzinfo:
    """Go's time.LoadLocation: "" and "UTC" are UTC; otherwise an IANA zone name.
    ("Local" is the controller container's zone; SUC's image sets none, so UTC: an assumption,
    gitedge never writes it.)"""
    if name in ("", "UTC", "Local"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ValueError, OSError, KeyError) as e:  # ZoneInfoNotFoundError is a KeyError
        raise TimeWindowError(f"unknown time zone {name}") from e


def _offset_at(unix: int, loc: tzinfo) -> int:
    off = datetime.fromtimestamp(unix, UTC).astimezone(loc).utcoffset()
    return int(off.total_seconds()) if off is not None else 0


def go_date(
    year: int, month: int, day: int, hour: int, minute: int, sec: int, nsec: int, loc: tzinfo
) -> int:
    """Go's time.Date (src/time/time.go) as nanoseconds since the epoch. For a wall time that
    does not exist (spring forward) or exists twice (fall back) Go looks up the zone offset at
    the wall time read as UTC, and if ``unix - offset`` falls outside that zone period, the
    offset at ``unix - offset``: the same as offset_at(unix - offset_at(unix)) below."""
    unix = calendar.timegm((year, month, day, hour, minute, sec, 0, 0, 0))
    offset = _offset_at(unix, loc)
    if offset != 0:
        offset = _offset_at(unix - offset, loc)
    return (unix - offset) * NS + nsec


def to_ns(t: datetime) -> int:
    if t.tzinfo is None:
        raise ValueError("an instant needs a time zone")
    u = t.astimezone(UTC)
    return calendar.timegm(u.timetuple()) * NS + u.microsecond * 1000


@dataclass(frozen=True)
class TimeWindow:
    """timewindow.go TimeWindow: days (bit set), location, start and end (h, m, s)."""

    days: int
    location: tzinfo
    start: tuple[int, int, int]
    end: tuple[int, int, int]

    @classmethod
    def new(cls, days: list[str], start: str, end: str, location: str) -> TimeWindow:
        """timewindow.go New: parse days, then the location, then start and end."""
        d = parse_weekdays(days)
        loc = load_location(location)
        return cls(d, loc, parse_time(start), parse_time(end))

    def contains(self, t: datetime) -> bool:
        """timewindow.go TimeWindow.Contains."""
        t_ns = to_ns(t)
        loctime = t.astimezone(self.location)  # loctime := t.In(tw.location)
        # if !tw.days.Contains(loctime.Weekday()) { return false }   (Go: Sunday = 0)
        if not self.days & (1 << ((loctime.weekday() + 1) % 7)):
            return False
        y, mo, d = loctime.year, loctime.month, loctime.day
        # start := time.Date(y, m, d, start h:m:s, 0, loc)
        start = go_date(y, mo, d, *self.start, 0, self.location)
        # end := time.Date(y, m, d, end h:m:s, 1e9-1, loc): inclusive to the last nanosecond
        end = go_date(y, mo, d, *self.end, NS - 1, self.location)
        # if tw.startTime.After(tw.endTime): wrap to the day before when now is before end,
        # else to the day after (24 hours of elapsed time: time.Duration arithmetic)
        if self.start > self.end:
            if t_ns < end:
                start -= DAY_NS
            else:
                end += DAY_NS
        # (loctime.After(start) || Equal) && (loctime.Before(end) || Equal)
        return start <= t_ns <= end

    def __str__(self) -> str:
        """timewindow.go TimeWindow.String."""
        name = getattr(self.location, "key", "UTC")
        return (
            f"{weekdays_string(self.days)} between {self.start[0]:02d}:{self.start[1]:02d} "
            f"and {self.end[0]:02d}:{self.end[1]:02d} {name}"
        )


def suc_window_contains(window: dict[str, object] | None, t: datetime) -> bool:
    """SUC's pkg/apis/upgrade.cattle.io/v1/types.go TimeWindowSpec.Contains: kured's window
    over the Plan's ``window`` fields; a window that does not parse contains nothing."""
    window = window or {}
    days = [str(d) for d in window.get("days") or ()]  # type: ignore[attr-defined]
    try:
        tw = TimeWindow.new(
            days,
            str(window.get("startTime") or ""),
            str(window.get("endTime") or ""),
            str(window.get("timeZone") or ""),
        )
    except TimeWindowError:
        return False
    return tw.contains(t)


def suc_open_spans(
    window: dict[str, object] | None, start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """The spans in [start, end) where SUC's window gate is open, sampled minute by minute at
    whole minutes (SUC re-checks a closed window every minute): [(first open minute, first
    closed minute after it), ...]. kured's end is inclusive to its last nanosecond, so a window
    ending 05:00 is open in the minute sampled at 05:00:00."""
    spans: list[tuple[datetime, datetime]] = []
    t = start.replace(second=0, microsecond=0)
    if t < start:
        t += timedelta(minutes=1)
    opened: datetime | None = None
    while t < end:
        if suc_window_contains(window, t):
            opened = opened or t
        elif opened is not None:
            spans.append((opened, t))
            opened = None
        t += timedelta(minutes=1)
    if opened is not None:
        spans.append((opened, t))
    return spans
