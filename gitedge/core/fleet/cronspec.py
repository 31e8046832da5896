"""Cron expressions of a maintenance window's ``cron`` shape: :func:`parse_cron` reads a 5-field
expression (or a nickname such as ``@daily``) into a :class:`CronSchedule`.

Vixie semantics: when day-of-month and day-of-week are both restricted, a day matches if either
matches; a field counts as unrestricted when it starts with ``*`` (so ``*/2`` too, as in Vixie
cron and cronie; robfig/cron, which Argo CD uses, differs there). Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

__all__ = ["CronSchedule", "parse_cron"]

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
