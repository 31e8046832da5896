"""The system-upgrade-controller, simulated over the Kubernetes API emulator (tests/kubeapi.py),
following SUC's source rule by rule, on a simulated clock.

Source: github.com/rancher/system-upgrade-controller at :data:`SUC_COMMIT` (main after v0.20.1);
each rule below names the file and function it follows. What runs the Jobs SUC creates (the
Kubernetes Job controller, the pod's prepare / drain / upgrade containers, kubectl drain's
refusals, k3s-upgrade's ``upgrade.sh``) is in tests/jobsim.py.

Time: :attr:`SucSim.now` is the only clock. :meth:`SucSim.reconcile` runs everything that happens
at ``now`` (Jobs progress, then SUC's handlers, until nothing changes); :meth:`SucSim.advance`
moves the clock minute by minute and reconciles at each minute. SUC is event-driven (Plan, Node,
Job and Secret changes, a one-minute re-enqueue while a window is closed, the resync); running
every handler every minute is the model the issue sets ("SUC acts within a minute"). Two rules
keep that from doing more than SUC can: Jobs are applied only for a Plan resourceVersion not
applied before (wrangler's UniqueApplyForResourceVersion: a Job deleted after failing comes back
only when the Plan object changes or SUC restarts, :meth:`SucSim.restart_controller`), and the
Job handler (handle_batch.go) looks at a Job only when that Job changed, an EnqueueAfter it asked
for is due, or at the 2-hour resync: a running Job whose node left ``status.applying`` runs on
until one of those.

Use::

    sim = SucSim(api, now=datetime(2026, 11, 23, 2, tzinfo=UTC), job_minutes=5,
                 env=SHIPPED_ENV,                       # or {} (code defaults: 600 s, backoff 2)
                 fail=lambda plan, node, attempt: ...,  # the upgrade container exits 1
                 drain_minutes=lambda node: 3)          # how long kubectl drain takes
    sim.reconcile()                  # SUC resolves status, creates Jobs (if the window allows)
    sim.advance(minutes=30)          # 30 simulated minutes, one reconcile per minute
    sim.advance_to(when)             # minute by minute up to ``when``
    sim.run_until(lambda s: ..., limit_minutes=...)
    sim.settle()                     # until no Job pod runs and nothing changes (bounded)
    sim.restart_controller()         # SUC's pod restarts: every Plan's Jobs applied again
    sim.log                          # every SimEvent(at, kind, plan, node, detail)
    sim.starts()                     # Job pod starts; sim.disruptions(): cordons, upgrades
    sim.upgrades(); sim.max_concurrent_upgrades(["server-0", ...])

Elsewhere: SUC's rules as functions in tests/sucrules.py (re-exported here: munge_version,
digest_status, resolved_hash, select_concurrent_nodes, new_job, active_deadline_seconds,
drain_args, validate, get_cond); kured's window in tests/kuredwindow.py (suc_window_contains);
the CRD check in tests/plancrd.py (plan_errors, assert_valid_plan); ``KubeEmulator(old_suc=True)``
prunes ``spec.window`` as SUC < v0.15.0's API server does; workload pods for drains:
tests/jobsim.py ``k3s_stock_pods(node)``, ``pod_object(...)``, put with ``api.put``.
"""

from __future__ import annotations

import bisect
import copy
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from tests.jobsim import JobRunner, SimEvent, parse_go_duration
from tests.kubeapi import KubeEmulator
from tests.kuredwindow import suc_window_contains
from tests.sucrules import (
    ANNOTATION_DIGEST,
    ANNOTATION_TTL,
    CONTROLLER,
    ERR_OUTSIDE_WINDOW,
    ERR_PLAN_NOT_READY,
    LABEL_CONTROLLER,
    LABEL_NODE,
    LABEL_PLAN,
    LABEL_VERSION,
    SHIPPED_ENV,
    SUC_COMMIT,
    _cond,
    _is,
    _set,
    _set_error,
    active_deadline_seconds,
    digest_status,
    drain_args,
    get_cond,
    label_plan_name,
    munge_version,
    new_job,
    node_hostname,
    resolved_hash,
    select_concurrent_nodes,
    validate,
)

__all__ = [
    "ANNOTATION_DIGEST",
    "SHIPPED_ENV",
    "SUC_COMMIT",
    "SimEvent",
    "SucSim",
    "active_deadline_seconds",
    "digest_status",
    "drain_args",
    "get_cond",
    "label_plan_name",
    "munge_version",
    "new_job",
    "resolved_hash",
    "select_concurrent_nodes",
    "validate",
]


# main.go: upgrade.NewController(cfg, namespace, name, nodeName, leaderElect, 2*time.Hour),
# the informers' resync period (controller.go SharedControllerFactoryOptions Resync)
RESYNC = timedelta(hours=2)

# ---------------------------------------------------------------------------- controller


class SucSim:
    """SUC's controller (Plan status handler, Plan generating handler, Job handler) over the
    emulator's store, with the Job runner of tests/jobsim.py, on the clock :attr:`now`.

    ``env``: SUC's environment (job.go reads SYSTEM_UPGRADE_JOB_*; :data:`SHIPPED_ENV` is SUC's
    shipped manifest; default: none set, the code defaults). ``job_minutes(plan, node)``: how long
    the upgrade container runs; ``fail(plan, node, attempt)``: whether it exits non-zero;
    ``drain_minutes(node)``: how long a drain takes; ``k3s_version(image, latest_version)``: the
    kubelet version a k3s-upgrade image installs (default: latestVersion with its last ``-k3sN``
    made ``+k3sN``, as the K3s binary reports itself); ``os_k3s(image)``: the K3s an OS image
    installs (a Kairos standard image), None for none. ``sim.jobs.secrets``: the Secrets that
    exist (a Job mounting another, not optional, never starts)."""

    def __init__(
        self,
        api: KubeEmulator,
        *,
        now: datetime,
        namespace: str = "system-upgrade",
        env: Mapping[str, str] | None = None,
        job_minutes: float | Callable[[str, str], float] = 2,
        fail: Callable[[str, str, int], bool] | None = None,
        drain_minutes: float | Callable[[str], float] = 0,
        k3s_version: Callable[[str, str], str] | None = None,
        os_k3s: Callable[[str], str | None] | None = None,
        controller: str = CONTROLLER,
    ) -> None:
        if now.tzinfo is None:
            raise ValueError("the simulated clock needs a time zone")
        self.api, self.ns, self.now = api, namespace, now
        self.env = dict(env or {})
        self.controller = controller
        self.log: list[SimEvent] = []
        # handle_batch.go's triggers (see _job_due): the Job resourceVersion last handled, the
        # EnqueueAfter due times, the next informer resync
        self._job_rv: dict[str, str] = {}
        self._job_wake: dict[str, datetime] = {}
        self._resync_at = now + RESYNC
        # wrangler's generated planGeneratingHandler.seen (GeneratingHandlerOptions
        # UniqueApplyForResourceVersion, set in handle_upgrade.go): the Plan resourceVersion
        # for which the generated Jobs were last applied. Lost when SUC restarts.
        self._applied_rv: dict[str, str] = {}
        self.jobs = JobRunner(
            api,
            namespace=namespace,
            log=self.log,
            job_minutes=job_minutes,
            fail=fail,
            drain_minutes=drain_minutes,
            k3s_version=k3s_version,
            os_k3s=os_k3s,
        )

    # ------------------------------------------------------------------------- driving

    def reconcile(self, *, rounds: int = 50) -> list[SimEvent]:
        """Everything that happens at :attr:`now`, until nothing changes."""
        start = len(self.log)
        for _ in range(rounds):
            before = self._fingerprint()
            with self.api.lock:
                self.jobs.progress(self.now)
                self._plan_status_handler()
                self._job_handler()
                self._plan_generating_handler()
            if self._fingerprint() == before:
                return self.log[start:]
        raise AssertionError(f"SUC did not settle at {self.now} in {rounds} rounds")

    def advance(self, *, minutes: int = 1) -> list[SimEvent]:
        """``minutes`` simulated minutes, a reconcile at each."""
        start = len(self.log)
        for _ in range(minutes):
            self.now += timedelta(minutes=1)
            self.reconcile()
        return self.log[start:]

    def advance_to(self, when: datetime) -> list[SimEvent]:
        """Minute by minute up to ``when`` (the agent's next pass, say)."""
        start = len(self.log)
        while self.now + timedelta(minutes=1) <= when:
            self.advance()
        return self.log[start:]

    def run_until(
        self, done: Callable[[SucSim], bool], *, limit_minutes: int = 24 * 60
    ) -> list[SimEvent]:
        start = len(self.log)
        self.reconcile()
        for _ in range(limit_minutes):
            if done(self):
                return self.log[start:]
            self.advance()
        raise AssertionError(f"not done within {limit_minutes} simulated minutes, at {self.now}")

    def settle(self, *, limit_minutes: int = 24 * 60) -> list[SimEvent]:
        """Advance until no Job pod runs and a minute passes with nothing changing. A Failed
        Job waiting for its TTL counts as idle: :meth:`advance` or :meth:`run_until` show the
        re-creation that follows."""
        start = len(self.log)
        self.reconcile()
        for _ in range(limit_minutes):
            before = self._fingerprint()
            self.advance()
            if not self.jobs.running() and self._fingerprint() == before:
                return self.log[start:]
        return self.log[start:]

    def starts(self) -> list[SimEvent]:
        """Every Job pod start: when SUC's Jobs (re)start work on a node."""
        return [e for e in self.log if e.kind == "pod-started"]

    def disruptions(self) -> list[SimEvent]:
        """When work on a node begins that a window must contain: a node cordoned (by a cordon
        or drain container) or an upgrade container started."""
        return [e for e in self.log if e.kind in ("cordoned", "upgrade-started")]

    def upgrades(self) -> list[tuple[str, str, datetime, datetime | None]]:
        """(plan, node, start, end) of every upgrade container run; end None while it runs.
        It ends with upgrade-done, upgrade-failed or its pod killed."""
        runs: list[tuple[str, str, datetime, datetime | None]] = []
        open_: dict[tuple[str, str], int] = {}
        for e in self.log:
            key = (e.plan, e.node)
            if e.kind == "upgrade-started":
                open_[key] = len(runs)
                runs.append((e.plan, e.node, e.at, None))
            elif e.kind in ("upgrade-done", "upgrade-failed", "pod-killed") and key in open_:
                i = open_.pop(key)
                runs[i] = (*runs[i][:3], e.at)
        return runs

    def max_concurrent_upgrades(self, nodes: Iterable[str]) -> int:
        """The most upgrade containers running at once on ``nodes`` (any Plan)."""
        wanted, edges = set(nodes), []
        for _, node, start, end in self.upgrades():
            if node in wanted:
                edges += [(start, 1), (end or self.now + timedelta(days=1), -1)]
        most = current = 0
        for _, step in sorted(edges, key=lambda x: (x[0], x[1])):  # an end before a start
            current += step
            most = max(most, current)
        return most

    def restart_controller(self) -> None:
        """SUC's pod restarts (a new leader, the node it ran on drained or rebooted): wrangler's
        in-memory ``seen`` map is empty, so the first pass over each Plan applies its Jobs again
        (pkg/generated/controllers/upgrade.cattle.io/v1/plan.go isNewResourceVersion)."""
        self._applied_rv.clear()
        self._job_rv.clear()  # the informers list everything again: every Job is handled
        self._job_wake.clear()

    def plan(self, name: str) -> dict[str, Any]:
        got = self.api.get("plans", name, self.ns)
        assert got is not None, f"no Plan {name}"
        return got

    def _fingerprint(self) -> tuple[int, tuple[Any, ...]]:
        """Every change to the store bumps the emulator's revision (put, modify, _bump); the
        pods' progress is the runner's."""
        with self.api.lock:
            return self.api.revision, tuple(self.jobs.fingerprint())

    def _plans(self) -> list[dict[str, Any]]:
        return [
            o for (r, ns, _), o in sorted(self.api.store.items()) if r == "plans" and ns == self.ns
        ]

    def _nodes(self) -> list[dict[str, Any]]:
        return [o for (r, _, _), o in sorted(self.api.store.items()) if r == "nodes"]

    def _save(self, obj: dict[str, Any], before: str) -> None:
        if _snap(obj) != before:
            obj["metadata"]["resourceVersion"] = self.api._bump()

    # ---------------------------------------------------------------- handle_upgrade.go

    def _plan_status_handler(self) -> None:
        """handle_upgrade.go handlePlans, RegisterPlanStatusHandler."""
        for plan in self._plans():
            before = _snap(plan)
            now = self.now
            _cond(plan, "Complete", now)  # complete.CreateUnknownIfNotExists
            _cond(plan, "Validated", now)
            err = validate(plan)
            if err:  # validated.SetError(obj, "Error", err); return DigestStatus
                _set_error(plan, "Validated", now, "Error", err)
                self._digest(plan)
                self._save(plan, before)
                continue
            _set_error(plan, "Validated", now, "PlanIsValid", "")
            _cond(plan, "LatestResolved", now)
            version = str(plan["spec"].get("version") or "")
            if not version and not plan["spec"].get("channel"):
                _set_error(plan, "LatestResolved", now, "Error", "plan is unresolvable")
                self._digest(plan)
                self._save(plan, before)
                continue
            if not version:
                raise NotImplementedError("the SUC simulation does not resolve channels")
            latest = munge_version(version)
            status = plan["status"]
            if not _is(plan, "LatestResolved", "True") or status.get("latestVersion") != latest:
                # "Version has changed, set complete to false"
                _set(plan, "Complete", now, status="False", message="", reason="Resolved")
            status["latestVersion"] = latest
            _set_error(plan, "LatestResolved", now, "Version", "")
            self._digest(plan)
            self._save(plan, before)

    def _digest(self, plan: dict[str, Any]) -> None:
        """plan.go DigestStatus: only when LatestResolved's reason is not "Error"."""
        c = get_cond(plan, "LatestResolved")
        if c is None or c.get("reason") != "Error":
            plan["status"]["latestHash"] = digest_status(plan)

    def _plan_generating_handler(self) -> None:
        """handle_upgrade.go handlePlans, RegisterPlanGeneratingHandler (apply WithNoDelete:
        Jobs generated earlier and not generated now are left alone)."""
        nodes = self._nodes()
        for plan in self._plans():
            before = _snap(plan)
            now, status = self.now, plan.setdefault("status", {})
            # plan.go (generated) Handle: apply only for a resourceVersion not applied before
            # (UniqueApplyForResourceVersion), whatever objects the handler returned; the status
            # it returns is written after the apply, so a status change makes a new
            # resourceVersion that is applied on the next pass. Nothing else re-applies: a Job
            # deleted (TTL after failing) is created again only when the Plan changes
            # (spec or status) or SUC restarts; no wrangler apply watch re-creates it.
            key = str(plan["metadata"]["name"])
            rv = str(plan["metadata"].get("resourceVersion"))
            fresh = self._applied_rv.get(key) != rv
            self._applied_rv[key] = rv
            if not _is(plan, "Validated", "True") or not _is(plan, "LatestResolved", "True"):
                _set_error(plan, "Complete", now, "NotReady", ERR_PLAN_NOT_READY)
                self._save(plan, before)
                continue
            selected = select_concurrent_nodes(plan, nodes)
            plan_before = copy.deepcopy(plan) if selected else plan
            names = [node_hostname(n) for n in selected]
            if names:
                window = plan["spec"].get("window")
                # "Don't start creating Jobs for the Plan if we're outside the window ... The
                # Plan is allowed to continue processing as long as there are nodes in progress."
                gated = window is not None and not status.get("applying")
                if gated and not suc_window_contains(window, now):
                    _set_error(plan, "Complete", now, "Waiting", ERR_OUTSIDE_WINDOW)
                    self._save(plan, before)
                    continue  # return nil, status, nil: no Jobs applied
                if status.get("applying") != names:
                    status["applying"] = names
                    _set(plan, "Complete", now, status="False", message="", reason="SyncJob")
            else:
                status.pop("applying", None)  # obj.Status.Applying = nil
                if not _is(plan, "Complete", "True"):
                    self.log.append(SimEvent(now, "plan-complete", plan["metadata"]["name"], ""))
                _set_error(plan, "Complete", now, "Complete", "")
            self._save(plan, before)
            if not fresh:
                continue
            for node in selected:  # upgradejob.New for each, computed before status.applying
                self._apply_job(
                    new_job(plan_before, node, env=self.env, controller=self.controller)
                )

    def _apply_job(self, job: dict[str, Any]) -> None:
        """wrangler apply of a generated Job: create it, or patch the mutable parallelism."""
        name, ns = job["metadata"]["name"], job["metadata"]["namespace"]
        old = self.api.store.get(("jobs", ns, name))
        if old is None:
            self.api.put(job)
            self.log.append(
                SimEvent(self.now, "job-created", job["metadata"]["labels"][LABEL_PLAN],
                         job["metadata"]["labels"][LABEL_NODE], name)
            )  # fmt: skip
        elif old["spec"].get("parallelism") != job["spec"]["parallelism"]:
            old["spec"]["parallelism"] = job["spec"]["parallelism"]
            old["metadata"]["resourceVersion"] = self.api._bump()

    # ------------------------------------------------------------------ handle_batch.go

    def _job_due(self, job: Mapping[str, Any]) -> bool:
        """Whether handle_batch.go's handler runs for ``job`` now: jobs.OnChange fires on a
        change of the Job (its resourceVersion), on an EnqueueAfter it asked for (TTL,
        postCompleteDelay), at the informers' resync (main.go NewController(...,
        2*time.Hour): every 2 hours) and when SUC starts. A Plan or Node change does not run it
        (handle_core.go and handle_upgrade.go enqueue Plans, never Jobs)."""
        uid, rv = str(job["metadata"]["uid"]), str(job["metadata"].get("resourceVersion"))
        wake = self._job_wake.get(uid)
        due = self._job_rv.get(uid) != rv or (wake is not None and self.now >= wake)
        due = due or self.now >= self._resync_at
        if due:
            self._job_rv[uid] = rv
            self._job_wake.pop(uid, None)
        return due

    def _wake(self, job: Mapping[str, Any], after: timedelta) -> None:
        """jobs.EnqueueAfter(ns, name, after) (the workqueue keeps each delayed add: the
        earliest fires first, and the handler asks again for what is still to come)."""
        uid, at = str(job["metadata"]["uid"]), self.now + after
        self._job_wake[uid] = min(at, self._job_wake.get(uid, at))

    def _job_handler(self) -> None:
        """handle_batch.go handleJobs (jobs.OnChange), for every Job of this controller that is
        due (:meth:`_job_due`)."""
        now = self.now
        resync = now >= self._resync_at
        for (r, ns, name), job in sorted(self.api.store.items()):
            if r != "jobs" or ns != self.ns:
                continue
            if not self._job_due(job):
                continue
            labels = job["metadata"].get("labels") or {}
            if labels.get(LABEL_CONTROLLER) != self.controller:
                continue  # avoid commandeering jobs from other controllers
            plan_name, version = labels.get(LABEL_PLAN), labels.get(LABEL_VERSION)
            plan = self.api.store.get(("plans", ns, plan_name or ""))
            if plan_name is None or version is None or plan is None:
                self._delete_job(job, "malformed or its Plan is gone")
                continue
            status = plan.get("status") or {}
            # "if this job was applying a different version then just delete it"
            if version != status.get("latestVersion"):
                self._delete_job(job, "its Plan's version changed")
                continue
            node_name = labels.get(LABEL_NODE)
            node = self.api.store.get(("nodes", "", node_name or ""))
            if node is None:
                self._delete_job(job, "its node is gone")
                continue
            failed = _job_cond(job, "Failed")
            if failed is not None:
                # "if the job has failed enqueue-or-delete it depending on the TTL window", after
                # PlanComplete.SetError(plan, "JobFailed", ...) at every pass over the failed Job.
                # When that write changes the status (two failed Jobs: the message names the other
                # node) the Plan gets a new resourceVersion just before this Job is deleted; in SUC
                # the Plan's handler races the deletion; here it runs after it (the generating
                # handler comes later in the round) and applies the Job again: the worse outcome
                # (a retry at any hour, applying being set), kept on purpose.
                before = _snap(plan)
                message = (
                    f"Job {ns}/{name} failed on Node {node_name}: {failed.get('reason')}: "
                    f"{failed.get('message', '')}"
                )
                _set_error(plan, "Complete", now, "JobFailed", message)
                self._save(plan, before)
                self._enqueue_or_delete(job, failed["lastTransitionTime"])
                continue
            complete = _job_cond(job, "Complete")
            if complete is not None:
                plan_label = label_plan_name(plan_name)
                if plan_label in labels:
                    done_at = _parse_ts(complete["lastTransitionTime"])
                    delay = _go_duration(plan["spec"].get("postCompleteDelay") or "0s")
                    before = _snap(node)
                    if now - done_at < delay:  # "re-enqueue it ... once the delay has elapsed"
                        self._wake(job, delay - (now - done_at))
                    else:
                        expand = {
                            "$(LATEST_VERSION)": str(status.get("latestVersion")),
                            "$(LATEST_HASH)": str(status.get("latestHash")),
                        }
                        for k, v in (plan["spec"].get("postCompleteLabels") or {}).items():
                            for var, val in expand.items():
                                v = v.replace(var, val)
                            node["metadata"]["labels"][k] = v
                        if node["metadata"]["labels"].get(plan_label) != labels[plan_label]:
                            self.log.append(SimEvent(now, "node-done", plan_name, node_name))
                        node["metadata"]["labels"][plan_label] = labels[plan_label]
                    spec = node.setdefault("spec", {})
                    if spec.get("unschedulable") and (
                        plan["spec"].get("cordon") or plan["spec"].get("drain") is not None
                    ):
                        spec["unschedulable"] = False
                        self.log.append(SimEvent(now, "node-uncordoned", plan_name, node_name))
                    self._save(node, before)
                self._enqueue_or_delete(job, complete["lastTransitionTime"])
                continue
            # "if the job hasn't failed or completed but the job Node is not on the applying
            # list, consider it running out-of-turn and delete it" (sort.SearchStrings)
            applying = list(status.get("applying") or ())
            i = bisect.bisect_left(applying, node_name)
            if i == len(applying) or applying[i] != node_name:
                self._delete_job(job, "its node is not in the Plan's status.applying")
        if resync:
            self._resync_at = now + RESYNC

    def _enqueue_or_delete(self, job: dict[str, Any], transition: str) -> None:
        """handle_batch.go enqueueOrDelete: delete once the TTL after the transition passed
        (spec.ttlSecondsAfterFinished, else the upgrade.cattle.io/ttl-seconds-after-finished
        annotation, else 0)."""
        ttl = job["spec"].get("ttlSecondsAfterFinished")
        if ttl is None:
            raw = (job["metadata"].get("annotations") or {}).get(ANNOTATION_TTL)
            if raw is not None:
                try:
                    ttl = int(raw)
                except ValueError:
                    self._delete_job(job, "malformed TTL annotation")
                    return
        interval, keep = self.now - _parse_ts(transition), timedelta(seconds=int(ttl or 0))
        if interval < keep:
            self._wake(job, keep - interval)  # jobController.EnqueueAfter(ttl - interval)
            return
        self._delete_job(job, "finished and past its TTL")

    def _delete_job(self, job: dict[str, Any], why: str) -> None:
        """deleteJob (propagation Background: the Job's pod is killed)."""
        meta = job["metadata"]
        labels = meta.get("labels") or {}
        self.jobs.kill(meta["name"], self.now, why=why)
        self.api.store.pop(("jobs", meta["namespace"], meta["name"]), None)
        self.api._bump()
        self.log.append(
            SimEvent(self.now, "job-deleted", str(labels.get(LABEL_PLAN)),
                     str(labels.get(LABEL_NODE)), why)
        )  # fmt: skip


def _snap(obj: Mapping[str, Any]) -> str:
    """What SUC's handlers change on a Plan (status) or a Node (labels, unschedulable)."""
    spec = obj.get("spec") or {}
    meta = obj.get("metadata") or {}
    return json.dumps([obj.get("status"), meta.get("labels"), spec.get("unschedulable")])


def _job_cond(job: Mapping[str, Any], ctype: str) -> dict[str, Any] | None:
    """job.go ConditionComplete/ConditionFailed .IsTrue."""
    for c in (job.get("status") or {}).get("conditions") or ():
        if c.get("type") == ctype and c.get("status") == "True":
            return dict(c)
    return None


def _parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _go_duration(text: str) -> timedelta:
    """metav1.Duration (time.ParseDuration)."""
    return parse_go_duration(text)
