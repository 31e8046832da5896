"""Admission: which nodes a gitedge Plan lets SUC start Jobs on, a batch at a time.

SUC keeps creating Jobs while ``status.applying`` is non-empty, skipping its window gate (SUC
pkg/upgrade/handle_upgrade.go, generating handler), and ``applying`` empties only when no
selected node is left (pkg/upgrade/plan/plan.go ``SelectConcurrentNodes``). So a Plan selecting
every node would run past the window's end, and retry a failed Job at any hour (handle_batch.go
``enqueueOrDelete``: the failed Job is deleted after its TTL and created again). gitedge's Plans
therefore select, besides the fleet's selector, only the nodes the agent *admitted*: one
``matchExpressions`` entry ``kubernetes.io/hostname In [batch]`` (``DoesNotExist`` when none; SUC
adds ``kubernetes.io/hostname Exists``, so that selects no node). The rules:

- a batch (at most ``concurrency`` pending nodes, at most one of them a control-plane node; SUC
  starts them together) is admitted only when
  :func:`~gitedge.core.rollout.sucwindow.admission_window` says a Job started now ends before the
  window closes, with that window written into the Plan (see :mod:`gitedge.core.rollout.sucwindow`);
- the next batch is admitted only once no admitted node is still in flight;
- a Plan whose ``prepare`` waits for another Plan (the K3s agent Plan) admits nothing until that
  Plan is done, so its Jobs never wait in ``prepare`` past their deadline;
- an admitted node not done once its Job's budget is over (the deadline has passed: the Job
  failed, or never started) or named by SUC's ``JobFailed`` condition (handle_batch.go) is
  withdrawn, so SUC does not retry it outside the window, and not admitted again before SUC's Job
  TTL has passed (until then the failed Job still exists and a new admission would restart it
  late). Withdrawing changes only nodes with no Job running: SUC deletes a running Job whose node
  leaves ``applying`` (handle_batch.go), and a Job past its deadline is no longer running.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from gitedge.core.fleet.selectors import LabelSelector
from gitedge.core.fleet.windowspec import MaintenanceWindowSpec
from gitedge.core.rollout.sucwindow import (
    DEFAULT_JOB_DEADLINE,
    JOB_TTL,
    SUC_LATENCY,
    admission_window,
)
from gitedge.core.timefmt import iso_z

HOSTNAME = "kubernetes.io/hostname"
ADMITTED_AT = "gitedge.io/admitted-at"
WITHDRAWN = "gitedge.io/withdrawn"

__all__ = [
    "ADMITTED_AT",
    "WITHDRAWN",
    "Move",
    "admitted",
    "admitted_at",
    "base_selector",
    "batch",
    "budget",
    "failed_nodes",
    "gate",
    "next_batch",
    "prerequisite",
    "selected",
    "with_admission",
    "withdrawn",
]


def _is_admission(expr: object) -> bool:
    return isinstance(expr, Mapping) and expr.get("key") == HOSTNAME


def base_selector(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The Plan's nodeSelector without the admission entry (what the fleet selects)."""
    sel = copy.deepcopy(dict(spec.get("nodeSelector") or {}))
    exprs = [e for e in sel.get("matchExpressions") or () if not _is_admission(e)]
    if exprs:
        sel["matchExpressions"] = exprs
    else:
        sel.pop("matchExpressions", None)
    return sel


def admitted(spec: Mapping[str, Any]) -> tuple[str, ...]:
    """The nodes (hostname label values) the Plan admits; () when none or no admission entry."""
    nodes: list[str] = []
    for e in (spec.get("nodeSelector") or {}).get("matchExpressions") or ():
        if _is_admission(e) and e.get("operator") == "In":
            nodes += [str(v) for v in e.get("values") or ()]
    return tuple(nodes)


def with_admission(
    manifest: Mapping[str, Any],
    *,
    nodes: Sequence[str],
    window: Mapping[str, Any] | None,
    at: datetime | None,
    withdrawn: Mapping[str, datetime],
) -> dict[str, Any]:
    """``manifest`` selecting only ``nodes`` among its fleet selector, gated by ``window`` (None:
    no SUC window), with when they were admitted and the withdrawn nodes in annotations."""
    out = copy.deepcopy(dict(manifest))
    spec = out["spec"]
    sel = base_selector(spec)
    entry: dict[str, Any] = (
        {"key": HOSTNAME, "operator": "In", "values": sorted(nodes)}
        if nodes
        else {"key": HOSTNAME, "operator": "DoesNotExist"}
    )
    sel["matchExpressions"] = [*sel.get("matchExpressions", []), entry]
    spec["nodeSelector"] = sel
    spec.pop("window", None)
    if window is not None:
        spec["window"] = dict(window)
    notes = out["metadata"].setdefault("annotations", {})
    notes[ADMITTED_AT] = iso_z(at) if at is not None else ""
    notes[WITHDRAWN] = ",".join(f"{n}={iso_z(t)}" for n, t in sorted(withdrawn.items()))
    return out


def admitted_at(annotations: Mapping[str, str]) -> datetime | None:
    text = annotations.get(ADMITTED_AT) or ""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None
    except ValueError:
        return None


def withdrawn(annotations: Mapping[str, str], *, now: datetime) -> dict[str, datetime]:
    """Nodes withdrawn after a failure whose Job SUC may still hold (less than the TTL ago)."""
    out: dict[str, datetime] = {}
    for item in filter(None, (annotations.get(WITHDRAWN) or "").split(",")):
        node, _, when = item.partition("=")
        try:
            at = datetime.fromisoformat(when.replace("Z", "+00:00"))
        except ValueError:
            continue
        if now < at + JOB_TTL:
            out[node] = at
    return out


def budget(spec: Mapping[str, Any]) -> timedelta:
    """How long after admission a Job may still run: SUC's latency plus the Job's deadline
    (``jobActiveDeadlineSecs``; when unset, SUC's shipped default)."""
    secs = spec.get("jobActiveDeadlineSecs")
    deadline = (
        timedelta(seconds=int(secs))
        if isinstance(secs, int) and not isinstance(secs, bool) and secs > 0
        else DEFAULT_JOB_DEADLINE
    )
    return SUC_LATENCY + deadline


def prerequisite(spec: Mapping[str, Any]) -> str | None:
    """The Plan whose completion this Plan's ``prepare`` waits for (k3s-upgrade ``prepare X``)."""
    args = (spec.get("prepare") or {}).get("args") or []
    return str(args[1]) if len(args) == 2 and args[0] == "prepare" else None


def failed_nodes(conditions: Sequence[Mapping[str, Any]]) -> set[str]:
    """Nodes SUC's ``Complete`` condition says a Job failed on (handle_batch.go: reason
    ``JobFailed``, message ``Job <ns>/<name> failed on Node <node>: ...``)."""
    out: set[str] = set()
    for c in conditions:
        if c.get("type") == "Complete" and c.get("reason") == "JobFailed":
            message = str(c.get("message") or "")
            _, found, rest = message.partition(" failed on Node ")
            if found:
                out.add(rest.split(":", 1)[0].strip())
    return out


def gate(
    window: MaintenanceWindowSpec | None,
    spec: Mapping[str, Any],
    *,
    now: datetime,
    open: bool,
) -> dict[str, Any] | None:
    """The SUC window for a batch of the Plan ``spec`` admitted now; None when none may start
    now; an empty mapping when the component has no window (no SUC window, always open)."""
    if window is None:
        return {} if open else None
    found = admission_window(window, now=now, budget=budget(spec)) if open else None
    return found.window if found is not None else None


def selected(spec: Mapping[str, Any], nodes: Sequence[Mapping[str, str]]) -> list[str]:
    """Hostnames of the nodes (their labels) the Plan's fleet selector selects, sorted."""
    sel = LabelSelector.model_validate(base_selector(spec))
    return sorted(n[HOSTNAME] for n in nodes if HOSTNAME in n and sel.matches(n))


def batch(
    spec: Mapping[str, Any], todo: Sequence[str], *, control_plane: Collection[str] = ()
) -> list[str]:
    """The next batch: the first ``concurrency`` nodes (SUC starts them all at once), with at
    most one control-plane node (etcd keeps its quorum while one server upgrades or reboots)."""
    size = spec.get("concurrency")
    limit = size if isinstance(size, int) and size > 0 else 1
    out: list[str] = []
    servers = 0
    for node in todo:
        if len(out) == limit:
            break
        if node in control_plane:
            if servers:
                continue
            servers += 1
        out.append(node)
    return out


@dataclass(frozen=True)
class Move:
    """What one pass does to one Plan's admission: ``manifest_fields`` the arguments of
    :func:`with_admission` when the Plan must be written (None: leave it), the notes for the
    reason, seconds until a pass should look again, and whether work waits for the window."""

    manifest_fields: dict[str, Any] | None
    notes: tuple[str, ...] = ()
    retry: list[float] = field(default_factory=list)
    held: bool = False


def _since(conditions: Sequence[Mapping[str, Any]], at: datetime | None) -> list[Mapping[str, Any]]:
    """The conditions SUC updated after ``at`` (an older JobFailed is about an earlier batch)."""
    if at is None:
        return list(conditions)
    stamp = iso_z(at)
    return [c for c in conditions if str(c.get("lastUpdateTime") or stamp) >= stamp]


def next_batch(
    *,
    plan: str,
    spec: Mapping[str, Any],
    annotations: Mapping[str, str],
    conditions: Sequence[Mapping[str, Any]],
    todo: Sequence[str],
    ready: bool,
    gate: Callable[[Mapping[str, Any]], dict[str, Any] | None],
    now: datetime,
    control_plane: Collection[str] = (),
) -> Move:
    """The admission rules of the module docstring for one written Plan whose nodes ``todo``
    (hostnames) are not done; ``ready``: the clock is trusted and the ``prepare`` Plan is done;
    ``gate(spec)``: :func:`gate` for this Plan now."""
    live = admitted(spec)
    at = admitted_at(annotations)
    kept = withdrawn(annotations, now=now)
    flying = [n for n in live if n in todo]
    failed = failed_nodes(_since(conditions, at))
    over = at is None or now >= at + budget(spec)
    drop = sorted(n for n in flying if over or n in failed)
    kept.update(dict.fromkeys(drop, now))
    flying = [n for n in flying if n not in drop]
    notes: list[str] = []
    retry: list[float] = []
    if drop:
        notes.append(f"{plan} withdraws {', '.join(drop)} (Job failed or past its deadline)")
    if flying and at is not None:  # look again before a failed Job's TTL runs out
        left = (at + budget(spec) - now).total_seconds()
        retry.append(max(1.0, min(300.0, left)))
        fields = {"nodes": [n for n in live if n not in drop], "window": spec.get("window")}
        if not drop:
            return Move(None, tuple(notes), retry)
        return Move({**fields, "at": at, "withdrawn": kept}, tuple(notes), retry)
    held = False
    if todo and ready:
        window = gate(spec)
        nodes = batch(spec, [n for n in todo if n not in kept], control_plane=control_plane)
        if window is not None and nodes:
            notes.append(f"{plan} admits {', '.join(nodes)}")
            retry.append(60.0)
            fields = {"nodes": nodes, "window": window or None, "at": now, "withdrawn": kept}
            return Move(fields, tuple(notes), retry)
        held = window is None
    if drop:
        fields = {"nodes": [n for n in live if n not in drop], "window": spec.get("window")}
        return Move({**fields, "at": at, "withdrawn": kept}, tuple(notes), retry, held)
    return Move(None, tuple(notes), retry, held)
