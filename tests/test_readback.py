"""Read-back (core/rollout/readback.py), pure: what the API server stored and what SUC gave its Jobs,
against what gitedge wrote.

Covers: a write answered without the ``spec.window`` written (a Plan CRD older than SUC
v0.15.0) or with another deadline is named; the window written is kept in an annotation, so a
later read sees the loss (and a Plan written without a window is not mistaken for a pruned one);
a Job whose ``activeDeadlineSeconds`` SUC clamped below the Plan's ``jobActiveDeadlineSecs``
(SYSTEM_UPGRADE_JOB_ACTIVE_DEADLINE_SECONDS_MAX, job.go New) is reported, Jobs of an earlier
version or another Plan are not; ``PlansAsWritten`` says which.
"""

from __future__ import annotations

import copy
from typing import Any

from gitedge.core.rollout.clusterstate import JobFacts, PlanState
from gitedge.core.rollout.readback import plans_as_written, stamp_window, stored_problem

WINDOW = {"days": ["mon"], "startTime": "01:00", "endTime": "05:00", "timeZone": "UTC"}


def manifest(*, window: bool = True, deadline: int = 2580) -> dict[str, Any]:
    spec: dict[str, Any] = {"version": "v1.30.6+k3s1", "jobActiveDeadlineSecs": deadline}
    if window:
        spec["window"] = dict(WINDOW)
    return {"metadata": {"name": "gitedge-k3s-server", "annotations": {}}, "spec": spec}


def pruned(m: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(m)
    out["spec"].pop("window", None)
    return out


def test_a_write_answered_without_its_window_or_deadline_is_named():
    m = stamp_window(manifest())
    assert stored_problem(m, copy.deepcopy(m)) is None
    problem = stored_problem(m, pruned(m))
    assert problem is not None and problem[0] == "WindowPruned"
    assert "v0.15.0" in problem[1] and "gitedge-k3s-server" in problem[1]
    older = pruned(m)
    del older["spec"]["jobActiveDeadlineSecs"]  # SUC before v0.12.0 prunes both
    assert stored_problem(m, older) == problem
    other = copy.deepcopy(m)
    other["spec"]["jobActiveDeadlineSecs"] = 600
    reason, message = stored_problem(m, other) or ("", "")
    assert reason == "DeadlinePruned" and "jobActiveDeadlineSecs 600, not 2580" in message
    assert stored_problem(stamp_window(manifest(window=False)), manifest(window=False)) is None


def test_a_pruned_window_is_seen_on_every_later_read():
    stored = PlanState.from_object({**pruned(stamp_window(manifest())), "status": {}})
    assert stored.window_pruned
    condition = plans_as_written([stored], [])
    assert (condition.status, condition.reason) == ("False", "WindowPruned")
    # written without a window (the annotation says so): nothing pruned
    plain = PlanState.from_object(stamp_window(manifest(window=False)))
    assert not plain.window_pruned
    assert plans_as_written([plain], []).status == "True"


def test_a_clamped_job_deadline_is_reported_for_the_current_version_only():
    plan = PlanState.from_object(
        {**manifest(), "status": {"latestVersion": "v1.30.6-k3s1", "latestHash": "h"}}
    )
    same = JobFacts("apply-1", "gitedge-k3s-server", "v1.30.6-k3s1", 2580)
    assert plans_as_written([plan], [same]).status == "True"
    old = JobFacts("apply-0", "gitedge-k3s-server", "v1.29.10-k3s1", 600)
    other = JobFacts("apply-x", "someone-elses", "v1.30.6-k3s1", 600)
    assert plans_as_written([plan], [old, other]).status == "True"
    clamped = JobFacts("apply-2", "gitedge-k3s-server", "v1.30.6-k3s1", 1800)
    condition = plans_as_written([plan], [same, clamped])
    assert (condition.status, condition.reason) == ("False", "DeadlineClamped")
    assert "1800 s, not the 2580 s" in condition.message
    assert "SYSTEM_UPGRADE_JOB_ACTIVE_DEADLINE_SECONDS_MAX" in condition.message


def test_the_hash_gitedge_recomputes_is_the_simulations_for_any_digest_field():
    """core's DigestStatus and the simulation's (tests/sucrules.py, written from SUC's and
    wrangler's source) agree, also on fields whose zero value data.Convert drops."""
    from gitedge.core.rollout.clusterstate import digest_status
    from tests.sucrules import digest_status as suc_digest

    m = manifest()
    m["spec"].update(serviceAccountName="system-upgrade", concurrency=0, cordon=True,
                     upgrade={"image": "cache/k3s-upgrade"}, tolerations=[{"key": "a"}])  # fmt: skip
    for fields in ("spec.upgrade.image", "spec.concurrency", "spec.cordon", "spec.version",
                   "spec.missing", "spec.tolerations", "spec.upgrade.image,spec.cordon"):  # fmt: skip
        m["metadata"]["annotations"] = {"upgrade.cattle.io/digest": fields}
        latest = "v1.30.6-k3s1"
        theirs = suc_digest({**m, "status": {"latestVersion": latest}})
        ours = digest_status(latest_version=latest, spec=m["spec"],
                             annotations=m["metadata"]["annotations"])  # fmt: skip
        assert ours == theirs, fields
