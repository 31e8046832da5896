"""Read-back: is what gitedge wrote what the API server stored and what SUC acts on? Pure.

Two things can differ without any error from the API:

- ``spec.window`` is pruned by an API server whose Plan CRD predates SUC v0.15.0 (the field was
  added then; a structural CRD silently drops unknown fields). Such a SUC gates nothing: its
  Jobs start at any hour. The written window is recorded in the ``gitedge.io/window``
  annotation (:func:`stamp_window`; annotations are never pruned), so the loss is seen on the
  write's answer (:func:`stored_problem`) and on every later read
  (:attr:`~gitedge.core.rollout.clusterstate.PlanState.window_pruned`). A component with such a Plan
  is held: no Plan of it is created or changed (core/rollout/decision.py), and ``PlansAsWritten``
  and ``Applying`` say why and what to do.
- the Job deadline: SUC copies ``jobActiveDeadlineSecs`` into each Job's
  ``activeDeadlineSeconds``, clamped to ``SYSTEM_UPGRADE_JOB_ACTIVE_DEADLINE_SECONDS_MAX``
  when that is set (pkg/upgrade/job/job.go ``New``). The clamp happens in SUC's memory, not in
  the Plan, so the only honest witness is the Job SUC actually created: the agent lists the Jobs
  of its Plans (label ``upgrade.cattle.io/plan``) and reports a deadline shorter than the Plan
  asks (``DeadlineClamped``). SUC's ConfigMap ``default-controller-env`` is not read: SUC reads
  its environment once at start, a Helm install names it differently, and the value may come
  from the Deployment itself; the Job is what SUC did.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gitedge.core.rollout.clusterstate import WINDOW_ANNOTATION, JobFacts, PlanState
from gitedge.core.status.conditions import PLANS_AS_WRITTEN, Condition

WINDOW_PRUNED = "WindowPruned"
DEADLINE_PRUNED = "DeadlinePruned"  # jobActiveDeadlineSecs exists since SUC v0.12.0
DEADLINE_CLAMPED = "DeadlineClamped"

__all__ = [
    "DEADLINE_CLAMPED",
    "DEADLINE_PRUNED",
    "WINDOW_PRUNED",
    "deadline_clamps",
    "plans_as_written",
    "pruned_text",
    "stamp_window",
    "stored_problem",
]


def stamp_window(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """``manifest`` with the ``gitedge.io/window`` annotation set to the ``spec.window`` it
    carries (JSON), or to "" when it carries none (so a window written earlier and since
    dropped by the fleet is not mistaken for a pruned one)."""
    out = copy.deepcopy(dict(manifest))
    window = (out.get("spec") or {}).get("window")
    meta = out.setdefault("metadata", {})
    meta["annotations"] = {
        **(meta.get("annotations") or {}),
        WINDOW_ANNOTATION: json.dumps(window, sort_keys=True) if window is not None else "",
    }
    return out


def pruned_text(plans: Iterable[str]) -> str:
    names = ", ".join(sorted(plans))
    return (
        f"the API server dropped spec.window from Plan {names}: the Plan CRD is older than "
        "system-upgrade-controller v0.15.0, so SUC would start its Jobs at any hour; held. "
        "Upgrade SUC and its CRD to v0.15.0 or later, then delete the Plan (the agent writes "
        "it again)"
    )


def stored_problem(
    written: Mapping[str, Any], stored: Mapping[str, Any] | None
) -> tuple[str, str] | None:
    """What the API server stored differently from ``written`` (a create's or update's answer),
    in the fields SUC's gating and deadline depend on, as (reason, message); None when they
    match."""
    if stored is None:
        return None
    want, got = written.get("spec") or {}, stored.get("spec") or {}
    name = (written.get("metadata") or {}).get("name", "?")
    if want.get("window") is not None and got.get("window") != want["window"]:
        if got.get("window") is None:
            return WINDOW_PRUNED, pruned_text([name])
        return WINDOW_PRUNED, (
            f"Plan {name}: the API server stored spec.window {got['window']!r}, not the one written"
        )
    deadline = want.get("jobActiveDeadlineSecs")
    if deadline is not None and got.get("jobActiveDeadlineSecs") != deadline:
        return DEADLINE_PRUNED, (
            f"Plan {name}: the API server stored jobActiveDeadlineSecs "
            f"{got.get('jobActiveDeadlineSecs')!r}, not {deadline}: the Plan CRD is older than "
            "system-upgrade-controller v0.12.0, whose Jobs get SUC's default deadline; upgrade SUC"
        )
    return None


def deadline_clamps(plans: Iterable[PlanState], jobs: Sequence[JobFacts]) -> list[str]:
    """One sentence per Plan whose current Jobs SUC gave a shorter deadline than it asks."""
    out = []
    for p in plans:
        want = p.spec.get("jobActiveDeadlineSecs")
        if not isinstance(want, int) or want <= 0:
            continue  # 0: no deadline asked (SUC's max, if any, fills it: not a clamp we set)
        got = sorted(
            {
                j.active_deadline
                for j in jobs
                if j.plan == p.name
                and j.active_deadline is not None
                and j.active_deadline < want
                and (p.latest_version is None or j.version == p.latest_version)
            }
        )
        if got:
            out.append(
                f"SUC gives the Jobs of Plan {p.name} {got[0]} s, not the {want} s it asks "
                "(drain timeout + upgrade): SYSTEM_UPGRADE_JOB_ACTIVE_DEADLINE_SECONDS_MAX "
                "clamps it, and a Job cut short fails and is retried; raise that setting of "
                "SUC (ConfigMap default-controller-env, then restart SUC) or shorten "
                "rollout.upgradeTimeout / drain.timeout"
            )
    return out


def plans_as_written(
    plans: Sequence[PlanState],
    jobs: Sequence[JobFacts],
    *,
    stored: tuple[str, str] | None = None,
) -> Condition:
    """``PlansAsWritten``: False with ``stored`` (a write just answered with a pruned field:
    :func:`stored_problem`), ``WindowPruned`` (a held Plan) or ``DeadlineClamped``; else True."""
    pruned = [p.name for p in plans if p.window_pruned]
    if stored is not None:
        return Condition(PLANS_AS_WRITTEN, "False", *stored)
    if pruned:
        return Condition(PLANS_AS_WRITTEN, "False", WINDOW_PRUNED, pruned_text(pruned))
    clamps = deadline_clamps(plans, jobs)
    if clamps:
        return Condition(PLANS_AS_WRITTEN, "False", DEADLINE_CLAMPED, "; ".join(clamps))
    return Condition(
        PLANS_AS_WRITTEN, "True", "AsWritten", "the Plans and SUC's Jobs are as gitedge wrote them"
    )
