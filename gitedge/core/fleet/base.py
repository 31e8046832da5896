"""Shared pieces of the fleet-repo models: the model base class and Go-style durations."""

from __future__ import annotations

import functools
import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, WithJsonSchema


def to_camel(name: str) -> str:
    """``k3s_version`` -> ``k3sVersion`` (pydantic's own would give ``k3SVersion``)."""
    first, *rest = name.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


class Model(BaseModel):
    """Base of every fleet-repo model: camelCase keys, unknown fields rejected, immutable."""

    model_config = ConfigDict(
        defer_build=True,
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        alias_generator=to_camel,
        str_strip_whitespace=False,
    )


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
DURATION_PATTERN = r"^(\d+(\.\d+)?(ms|h|m|s))+$"


def parse_duration(value: Any) -> timedelta:
    """Parse a Go-style duration (``90s``, ``15m``, ``1h30m``) as Kubernetes and SUC write them."""
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError(f"a duration must be a string like '15m' or '1h30m', not {value!r}")
    return _parse_duration_text(value)


@functools.lru_cache(maxsize=1024)
def _parse_duration_text(value: str) -> timedelta:
    """The parsing half of :func:`parse_duration`, cached: fleets repeat a few durations."""
    text = value.strip()
    pos, seconds = 0, 0.0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            break
        seconds += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if not text or pos != len(text):
        raise ValueError(
            f"invalid duration {value!r}: use Go syntax such as '90s', '15m' or '1h30m'"
        )
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Format a duration in Go syntax (``1h30m``; ``0s`` for zero)."""
    total = value.total_seconds()
    if total <= 0:
        return "0s"
    hours, rest = divmod(int(total), 3600)
    minutes, seconds = divmod(rest, 60)
    frac = total - int(total)
    out = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    if seconds or frac:
        out += f"{seconds + frac:g}s"
    return out


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "examples": ["15m", "1h30m"]}),
]
