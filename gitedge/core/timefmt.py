"""How instants are written in status documents, conditions, Events and reports: UTC, whole
seconds, ``Z`` (``2026-11-23T01:30:00Z``), as Kubernetes writes its own timestamps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload

__all__ = ["iso_z"]


@overload
def iso_z(value: datetime) -> str: ...


@overload
def iso_z(value: None) -> None: ...


@overload
def iso_z(value: datetime | None) -> str | None: ...


def iso_z(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
