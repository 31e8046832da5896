"""Admission of a step's next batch: the Plan manifest as written when a step starts or is
corrected (:func:`admitted_manifest`), and the next admission of a step whose Plans are written
and not done (:func:`admit_next`), both by the rules of :mod:`gitedge.core.rollout.admission`.

Pure: no I/O, the time is a parameter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from gitedge.core.rollout import admission as adm
from gitedge.core.rollout.clusterstate import NodeFacts, PlanState
from gitedge.core.rollout.planmanifests import Action, merge_for_update, rollout_key
from gitedge.core.rollout.readback import stamp_window
from gitedge.core.rollout.stepstatus import (
    OPEN_BUT_SHORT_RETRY,
    ComponentStatus,
    ComponentView,
    window_text,
)
from gitedge.core.rollout.sucplans import API_VERSION, Site

__all__ = ["admit_next", "admitted_manifest", "window_gate"]


def window_gate(
    c: ComponentView, manifest: Mapping[str, Any], now: datetime
) -> dict[str, Any] | None:
    view = c.window
    return adm.gate(view.spec if view is not None else None, manifest["spec"], now=now, open=c.open)


def admitted_manifest(
    c: ComponentView,
    m: Mapping[str, Any],
    have: PlanState | None,
    *,
    nodes: Sequence[NodeFacts],
    now: datetime,
    fresh: set[str],
    fallback: dict[str, Any] | None,
) -> dict[str, Any]:
    """``m`` as written: a Plan corrected in place with the same version and image keeps its
    admission; a new step or version admits its first batch, or none while its ``prepare`` Plan
    is not done."""
    if have is not None and rollout_key(have.spec) == rollout_key(m["spec"]):
        return adm.with_admission(
            m,
            nodes=adm.admitted(have.spec),
            window=have.spec.get("window"),
            at=adm.admitted_at(have.annotations),
            withdrawn=adm.withdrawn(have.annotations, now=now),
        )
    window = window_gate(c, m, now)
    waits = adm.prerequisite(m["spec"])
    other = next((p for p in c.progress if p.plan == waits), None)
    ready = waits is None or (waits not in fresh and other is not None and other.complete)
    todo = adm.selected(m["spec"], [n.labels for n in nodes])
    servers = {n.labels.get(adm.HOSTNAME, n.name) for n in nodes if n.control_plane}
    batch = (
        adm.batch(m["spec"], todo, control_plane=servers) if ready and window is not None else []
    )
    gate = window if window is not None else fallback
    return adm.with_admission(
        m, nodes=batch, window=gate or None, at=now if batch else None, withdrawn={}
    )


def admit_next(
    c: ComponentView,
    *,
    nodes: Sequence[NodeFacts],
    now: datetime,
    site: Site,
    actions: list[Action],
    step: str | None,
    clock_trusted: bool,
) -> ComponentStatus:
    """A step whose Plans are written and not done: each Plan's next admission
    (:func:`gitedge.core.rollout.admission.next_batch`), written when it changes."""
    done = {p.plan: p.complete for p in c.progress}
    pending = {p.plan: p.pending for p in c.progress}
    hosts = {n.name: n.labels.get(adm.HOSTNAME, n.name) for n in nodes}
    notes: list[str] = []
    held = False
    for name in sorted(c.have, key=lambda n: (adm.prerequisite(c.have[n].spec) is not None, n)):
        have = c.have[name]
        waits = adm.prerequisite(have.spec)
        move = adm.next_batch(
            plan=name,
            spec=have.spec,
            annotations=have.annotations,
            conditions=have.conditions,
            todo=[hosts.get(n, n) for n in pending.get(name, ())],
            ready=clock_trusted and (waits is None or done.get(waits, False)),
            gate=lambda spec: window_gate(c, {"spec": spec}, now),
            now=now,
            control_plane={hosts[n.name] for n in nodes if n.control_plane},
        )
        notes += move.notes
        c.retry += move.retry
        held = held or move.held
        if move.manifest_fields is None:
            continue
        desired = {
            "apiVersion": API_VERSION,
            "kind": "Plan",
            "metadata": {
                "name": name,
                "namespace": site.namespace,
                "labels": dict(have.labels),
                "annotations": dict(have.annotations),
            },
            "spec": dict(have.spec),
        }
        manifest = stamp_window(
            merge_for_update(
                adm.with_admission(desired, **move.manifest_fields),
                {"metadata": {"resourceVersion": have.resource_version}},
            )
        )
        actions.append(
            Action(
                "update",
                name,
                site.namespace,
                c.name,
                "; ".join(move.notes),
                manifest=manifest,
                resource_version=have.resource_version,
            )
        )
    where = f"{c.name} {step}" if step else c.name
    text = f"{where}: {c.describe()}" + (f"; {'; '.join(notes)}" if notes else "")
    if held and not any(p.applying for p in c.have.values()):
        view = c.window
        if view is not None and not view.open:
            text += f"; {window_text(view, now)}"
        elif view is not None:
            text += f"; window {view.name!r} closes before a Job started now would end"
            c.retry.append(OPEN_BUT_SHORT_RETRY)
        return ComponentStatus(c.name, "waiting", "WaitingForWindow", text, step)
    return ComponentStatus(c.name, "running", "StepRunning", text, step)
