"""Site status reports, and the fleet view built from them. Pure: the time is a parameter.

An agent with ``report`` configured pushes a small JSON document (:class:`SiteReport`) as an OCI
artifact, one tag per cluster, to a registry repository the operators read. ``gitedge fleet
status`` pulls them all and shows one row per site: versions desired and applied, the last
verified commit, why it is not Ready, and how old the report is. A report older than
``stale_after`` is marked stale: the site has not been heard from (offline, or its agent is down).

The document never holds secrets: names, labels, versions, commit ids and condition words only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from gitedge.core.fleet.selectors import LabelSelector
from gitedge.core.status.conditions import READY, Condition, from_json, to_json
from gitedge.core.timefmt import iso_z
from gitedge.errors import ReportError

MEDIA_TYPE = "application/vnd.gitedge.site-status.v1+json"
ARTIFACT_TYPE = "application/vnd.gitedge.site-status.v1"
SCHEMA = "gitedge.io/site-status/v1"
DEFAULT_STALE_AFTER = timedelta(hours=24)
MAX_REPORT_BYTES = 64 << 10
_TAG = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class Versions:
    """What the fleet asks of one component (``desired``) and what the cluster runs; ``target``
    names the UpgradeTarget that asks it and ``path`` the K3s versions still to apply, in order
    (both added in issue 19 for the fleet page's rollouts; absent from older agents' reports)."""

    desired: str | None = None
    applied: str | None = None
    target: str | None = None
    path: tuple[str, ...] = ()

    @property
    def converged(self) -> bool:
        return self.desired is None or self.desired == self.applied


@dataclass(frozen=True)
class SiteReport:
    """What one site says of itself, at ``time`` (its own clock, UTC)."""

    cluster: str
    time: datetime
    labels: Mapping[str, str] = field(default_factory=dict)
    k3s: Versions = Versions()
    os: Versions = Versions()
    last_verified: str | None = None
    conditions: tuple[Condition, ...] = ()
    agent_version: str = ""

    def ready(self) -> Condition | None:
        return next((c for c in self.conditions if c.type == READY), None)


def tag_for(cluster: str) -> str:
    """The OCI tag a cluster's report lives under (tags allow ``[A-Za-z0-9_.-]``, <= 128)."""
    tag = _TAG.sub("_", cluster)[:128]
    return tag if tag and tag[0] not in ".-" else f"_{tag}"[:128]


def to_document(report: SiteReport) -> bytes:
    """The report as the JSON bytes that are pushed (stable key order, UTC times)."""
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "cluster": report.cluster,
        "labels": dict(sorted(report.labels.items())),
        "time": iso_z(report.time),
        "agentVersion": report.agent_version,
        "lastVerifiedCommit": report.last_verified,
        "k3s": _versions_doc(report.k3s),
        "os": _versions_doc(report.os),
        "conditions": to_json(report.conditions),
    }
    return json.dumps(doc, indent=2, sort_keys=False).encode() + b"\n"


def _versions_doc(v: Versions) -> dict[str, Any]:
    doc: dict[str, Any] = {"desired": v.desired, "applied": v.applied}
    if v.target is not None:
        doc["target"] = v.target
    if v.path:
        doc["path"] = list(v.path)
    return doc


def from_document(data: bytes, *, where: str) -> SiteReport:
    """Read a pushed report back; :class:`ReportError` naming ``where`` if it is not one."""
    if len(data) > MAX_REPORT_BYTES:
        raise ReportError(f"{where}: report is {len(data)} bytes; the limit is 64 KiB")
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ReportError(f"{where}: not JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ReportError(f"{where}: not a gitedge site status (schema {SCHEMA!r} expected)")
    cluster = doc.get("cluster")
    if not isinstance(cluster, str) or not cluster:
        raise ReportError(f"{where}: no cluster name")
    try:
        when = datetime.fromisoformat(str(doc.get("time", "")).replace("Z", "+00:00"))
    except ValueError:
        raise ReportError(f"{where}: bad time {doc.get('time')!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    labels = doc.get("labels") or {}
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise ReportError(f"{where}: labels must map strings to strings")
    commit = doc.get("lastVerifiedCommit")
    return SiteReport(
        cluster=cluster,
        time=when,
        labels=labels,
        k3s=_versions(doc.get("k3s"), where=where, what="k3s"),
        os=_versions(doc.get("os"), where=where, what="os"),
        last_verified=commit if isinstance(commit, str) else None,
        conditions=tuple(from_json(doc.get("conditions"))),
        agent_version=str(doc.get("agentVersion") or ""),
    )


def _versions(value: object, *, where: str, what: str) -> Versions:
    if value is None:
        return Versions()
    if not isinstance(value, dict):
        raise ReportError(f"{where}: {what} must be an object with desired/applied")
    desired, applied, target = value.get("desired"), value.get("applied"), value.get("target")
    for v in (desired, applied, target):
        if v is not None and not isinstance(v, str):
            raise ReportError(f"{where}: {what} versions and target must be strings")
    path = value.get("path") or []
    if not isinstance(path, list) or not all(isinstance(p, str) for p in path) or len(path) > 64:
        raise ReportError(f"{where}: {what} path must be a list of at most 64 versions")
    return Versions(desired, applied, target, tuple(path))


@dataclass(frozen=True)
class Row:
    """One site in the fleet view."""

    report: SiteReport
    age: timedelta
    stale: bool

    @property
    def state(self) -> str:
        """One word: ``stale`` (not heard from), ``ready``, or the reason Ready is not True."""
        if self.stale:
            return "stale"
        ready = self.report.ready()
        if ready is None:
            return "unknown"
        return "ready" if ready.status == "True" else ready.reason


def fleet_rows(
    reports: Iterable[SiteReport],
    *,
    now: datetime,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
    selector: LabelSelector | None = None,
) -> list[Row]:
    """The sites ``selector`` selects (all when None), sorted by cluster name, stale marked.

    A report dated in the future (the site's clock is ahead) has age zero, not a negative one.
    """
    rows = []
    for r in reports:
        if selector is not None and not selector.matches(r.labels):
            continue
        age = max(now - r.time, timedelta(0))
        rows.append(Row(r, age, age > stale_after))
    return sorted(rows, key=lambda row: row.report.cluster)


def _age(age: timedelta) -> str:
    s = int(age.total_seconds())
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def _pair(v: Versions) -> str:
    if v.desired is None and v.applied is None:
        return "-"
    if v.converged:
        return v.applied or "-"
    return f"{v.applied or '?'} -> {v.desired}"


def fleet_table(rows: Sequence[Row]) -> str:
    """A fixed-width table, one line per site, for a terminal."""
    head = ("CLUSTER", "STATE", "K3S", "OS", "COMMIT", "AGE")
    lines = [head] + [
        (
            r.report.cluster,
            r.state,
            _pair(r.report.k3s),
            _pair(r.report.os),
            (r.report.last_verified or "-")[:12],
            _age(r.age),
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]
    stale = sum(r.stale for r in rows)
    out.append(f"{len(rows)} site(s), {stale} stale")
    return "\n".join(out)


def fleet_json(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """The rows for ``-o json``: each report as pushed, plus ageSeconds, stale and state."""
    out = []
    for r in rows:
        doc = json.loads(to_document(r.report))
        doc.update(ageSeconds=int(r.age.total_seconds()), stale=r.stale, state=r.state)
        out.append(doc)
    return out
