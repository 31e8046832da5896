"""The ``spec`` of a MaintenanceWindow as the fleet writes it (:class:`MaintenanceWindowSpec`,
:class:`Blackout`) and the IANA time zone it names (:func:`load_zone`); what the shapes mean and
how a window is evaluated: :mod:`gitedge.core.fleet.windows`.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationInfo, field_validator, model_validator

from gitedge.core.fleet.base import Duration, Model
from gitedge.core.fleet.cronspec import parse_cron

__all__ = [
    "DAY_NAMES",
    "MAX_DURATION",
    "Blackout",
    "MaintenanceWindowSpec",
    "Weekday",
    "load_zone",
]

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
HORIZON_DAYS = 8 * 366
MAX_DURATION = timedelta(days=7)

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
