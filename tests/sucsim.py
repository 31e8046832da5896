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
every handler every minute is the model the issue sets ("SUC acts within a minute") and can only
make SUC act *more* often than the real one, never less.

Use::

    sim = SucSim(api, now=datetime(2026, 11, 23, 2, tzinfo=UTC), job_minutes=5)
    sim.reconcile()                  # SUC resolves status, creates Jobs (if the window allows)
    sim.advance(minutes=30)          # 30 simulated minutes, one reconcile per minute
    sim.settle()                     # until no Job pod runs and nothing changes (bounded)
    sim.starts()                     # every Job pod start (time, plan, node)
"""

from __future__ import annotations

import bisect
import copy
import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from tests.jobsim import JobRunner, SimEvent
from tests.kubeapi import HOSTNAME, KubeEmulator, selector_matches
from tests.kuredwindow import TimeWindow, TimeWindowError, suc_window_contains

SUC_COMMIT = "d357e2302999662071e0467b96e94f31b5c470ba"
CONTROLLER = "system-upgrade-controller"
GROUP = "upgrade.cattle.io"
# pkg/apis/upgrade.cattle.io/constants.go
LABEL_CONTROLLER = f"{GROUP}/controller"
LABEL_EXCLUSIVE = f"{GROUP}/exclusive"
LABEL_NODE = f"{GROUP}/node"
LABEL_PLAN = f"{GROUP}/plan"
LABEL_VERSION = f"{GROUP}/version"
ANNOTATION_TTL = f"{GROUP}/ttl-seconds-after-finished"
ANNOTATION_DIGEST = f"{GROUP}/digest"
# SUC's shipped manifests/system-upgrade-controller.yaml, ConfigMap default-controller-env
SHIPPED_ENV = {
    "SYSTEM_UPGRADE_JOB_ACTIVE_DEADLINE_SECONDS": "900",
    "SYSTEM_UPGRADE_JOB_BACKOFF_LIMIT": "99",
    "SYSTEM_UPGRADE_JOB_TTL_SECONDS_AFTER_FINISH": "900",
}
ERR_PLAN_NOT_READY = "plan is not valid and resolved"  # pkg/upgrade/controller.go
ERR_OUTSIDE_WINDOW = "current time is not within configured window"  # pkg/upgrade/controller.go


def label_plan_name(plan: str) -> str:
    """constants.go LabelPlanName: ``plan.upgrade.cattle.io/<plan>``."""
    return f"plan.{GROUP}/{plan}"


def munge_version(version: str) -> str:
    """pkg/upgrade/plan/plan.go MungeVersion: ``+`` becomes ``-``."""
    return version.replace("+", "-")


def _go_sprint(value: Any) -> str:
    """fmt.Sprint of a value decoded from JSON with UseNumber (numbers print as their JSON text)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{_go_sprint(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_go_sprint(v) for v in value) + "]"
    return "<nil>" if value is None else str(value)


def _wrangler_string(obj: Mapping[str, Any], path: list[str]) -> str:
    """wrangler pkg/data Object.String -> convert.ToString (pkg/data/convert/convert.go):
    GetValueN through maps, Singular (a list's first item), "" for nil, fmt.Sprint, TrimSpace."""
    value: Any = obj
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    if isinstance(value, list):
        value = value[0] if value else None
    return "" if value is None else _go_sprint(value).strip()


def digest_status(plan: Mapping[str, Any]) -> str:
    """pkg/upgrade/plan/plan.go DigestStatus: SHA-224 over status.latestVersion (the *munged*
    version), spec.serviceAccountName, then each comma-separated path of the
    ``upgrade.cattle.io/digest`` annotation (addToHashFromAnnotation: data.Convert(plan) then
    Object.String(strings.Split(entry, ".")...)), then the hash of each spec.secrets Secret not
    ignoring updates (the sim has no Secrets: a Plan naming one is refused below)."""
    spec = plan.get("spec") or {}
    if any(not s.get("ignoreUpdates") for s in spec.get("secrets") or ()):
        raise NotImplementedError("the SUC simulation does not hash Secrets")
    h = hashlib.sha224()
    h.update(str((plan.get("status") or {}).get("latestVersion") or "").encode())
    h.update(str(spec.get("serviceAccountName") or "").encode())
    annotation = ((plan.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_DIGEST)
    if annotation:
        for entry in annotation.split(","):
            h.update(_wrangler_string(plan, entry.split(".")).encode())
    return h.hexdigest()


def resolved_hash(plan: Mapping[str, Any]) -> str:
    """status.latestHash SUC writes once it has resolved this Plan's spec (spec.version)."""
    resolved = copy.deepcopy(dict(plan))
    resolved["status"] = {"latestVersion": munge_version(str(plan["spec"].get("version") or ""))}
    return digest_status(resolved)


def safe_concat_name(*parts: str) -> str:
    """wrangler pkg/name/name.go SafeConcatName."""
    full = "-".join(parts)
    if len(full) < 64:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()
    c = full[56]
    if "a" <= c <= "z" or "0" <= c <= "9":
        return full[:57] + "-" + digest[:5]
    return full[:56] + "-" + digest[:6]


# ------------------------------------------------------------------------------ conditions


def _conds(plan: dict[str, Any]) -> list[dict[str, Any]]:
    conds: list[dict[str, Any]] = plan.setdefault("status", {}).setdefault("conditions", [])
    return conds


def get_cond(plan: Mapping[str, Any], ctype: str) -> dict[str, Any] | None:
    for c in (plan.get("status") or {}).get("conditions") or ():
        if c.get("type") == ctype:
            return dict(c)
    return None


def _cond(plan: dict[str, Any], ctype: str, now: datetime) -> dict[str, Any]:
    """pkg/apis/condition/condition.go findOrCreateCond (a new one is Unknown)."""
    for c in _conds(plan):
        if c["type"] == ctype:
            return c
    c = {"type": ctype, "status": "Unknown", "lastUpdateTime": _ts(now)}
    _conds(plan).append(c)
    return c


def _set(plan: dict[str, Any], ctype: str, now: datetime, **fields: str) -> None:
    """condition.go setStatus/Reason/Message (a status change touches lastTransitionTime)."""
    c = _cond(plan, ctype, now)
    if "status" in fields and c.get("status") != fields["status"]:
        c["lastTransitionTime"] = _ts(now)
    if any(c.get(k) != v for k, v in fields.items()):
        c["lastUpdateTime"] = _ts(now)
    c.update(fields)


def _set_error(plan: dict[str, Any], ctype: str, now: datetime, reason: str, err: str) -> None:
    """condition.go Cond.SetError: err nil -> True, message ""; else False with the message."""
    status = "False" if err else "True"
    _set(plan, ctype, now, status=status, message=err, reason=reason)


def _is(plan: Mapping[str, Any], ctype: str, status: str) -> bool:
    c = get_cond(plan, ctype)
    return c is not None and c.get("status") == status


def _ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- validation


def validate(plan: Mapping[str, Any]) -> str:
    """pkg/upgrade/plan/plan.go Validate: the error text, "" when valid."""
    spec = plan.get("spec") or {}
    drain = spec.get("drain")
    both = ("deleteEmptydirData", "deleteLocalData")
    if drain is not None and all(drain.get(k) is not None for k in both):
        return "spec.drain cannot specify both deleteEmptydirData and deleteLocalData"
    window = spec.get("window")
    if window is not None:
        try:
            TimeWindow.new(
                [str(d) for d in window.get("days") or ()],
                str(window.get("startTime") or ""),
                str(window.get("endTime") or ""),
                str(window.get("timeZone") or ""),
            )
        except TimeWindowError as e:
            return f"spec.window is invalid: {e}"
    delay = spec.get("postCompleteDelay")
    if isinstance(delay, str) and delay.startswith("-"):
        return "spec.postCompleteDelay is negative"
    return ""


# ---------------------------------------------------------------------------- selection


def node_hostname(node: Mapping[str, Any]) -> str:
    """pkg/upgrade/node/node.go Hostname: the kubernetes.io/hostname label, else the name."""
    labels = node["metadata"].get("labels") or {}
    return str(labels.get(HOSTNAME, node["metadata"]["name"]))


def _sha256sum(*parts: str) -> str:
    return hashlib.sha256("".join(parts).encode()).hexdigest()


def select_concurrent_nodes(
    plan: Mapping[str, Any], nodes: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """pkg/upgrade/plan/plan.go SelectConcurrentNodes."""
    spec, status = plan.get("spec") or {}, plan.get("status") or {}
    applying = list(status.get("applying") or ())
    latest = str(status.get("latestHash") or "")
    plan_label = label_plan_name(plan["metadata"]["name"])

    def base(node: Mapping[str, Any]) -> bool:
        labels = node["metadata"].get("labels") or {}
        # NodeSelector: metav1.LabelSelectorAsSelector(spec.nodeSelector) -- a nil selector is
        # labels.Nothing() -- plus the requirement kubernetes.io/hostname Exists
        if spec.get("nodeSelector") is None or HOSTNAME not in labels:
            return False
        if not selector_matches(spec["nodeSelector"], labels):
            return False
        # plan.upgrade.cattle.io/<plan> NotIn [disabled, latestHash]
        return labels.get(plan_label) not in ("disabled", latest)

    selected: list[dict[str, Any]] = []
    if applying:  # the nodes still applying come first (hostname In applying)
        selected += [n for n in nodes if base(n) and n["metadata"]["labels"][HOSTNAME] in applying]
    concurrency = int(spec.get("concurrency") or 0)
    if len(selected) < concurrency:
        candidates = [
            n for n in nodes if base(n) and n["metadata"]["labels"][HOSTNAME] not in applying
        ]
        # a defined order per plan and latest hash: sha256(node UID, plan UID, latestHash)
        plan_uid = str(plan["metadata"].get("uid") or "")
        candidates.sort(key=lambda n: _sha256sum(str(n["metadata"]["uid"]), plan_uid, latest))
        for node in candidates:
            if len(selected) >= concurrency:
                break
            selected.append(node)
    selected.sort(key=lambda n: str(n["metadata"]["name"]))
    return selected


# ---------------------------------------------------------------------------------- jobs


def _env_int(env: Mapping[str, str], key: str, default: int) -> int:
    """job.go: strconv.ParseInt of the variable if set and valid, else the default."""
    try:
        return int(env[key]) if key in env else default
    except ValueError:
        return default


def new_job(
    plan: Mapping[str, Any],
    node: Mapping[str, Any],
    *,
    env: Mapping[str, str],
    controller: str = CONTROLLER,
) -> dict[str, Any]:
    """pkg/upgrade/job/job.go New: the Job SUC applies for ``plan`` on ``node``."""
    spec, status = plan["spec"], plan.get("status") or {}
    name = plan["metadata"]["name"]
    hostname = node_hostname(node)
    short = str(node["metadata"]["name"]).split(".", 1)[0]
    latest_version, latest_hash = str(status.get("latestVersion")), str(status.get("latestHash"))
    ttl = _env_int(env, "SYSTEM_UPGRADE_JOB_TTL_SECONDS_AFTER_FINISH", 900)
    labels = {
        LABEL_CONTROLLER: controller,
        LABEL_EXCLUSIVE: "true" if spec.get("exclusive") else "false",
        LABEL_NODE: node["metadata"]["name"],
        LABEL_PLAN: name,
        LABEL_VERSION: latest_version,
        label_plan_name(name): latest_hash,
    }
    plan_env = [
        {"name": "SYSTEM_UPGRADE_PLAN_NAME", "value": name},
        {"name": "SYSTEM_UPGRADE_PLAN_LATEST_HASH", "value": latest_hash},
        {"name": "SYSTEM_UPGRADE_PLAN_LATEST_VERSION", "value": latest_version},
    ]  # container.go WithPlanEnvironment

    def container(cname: str, cspec: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "name": cname,
            "image": with_latest_tag(str(cspec["image"]), latest_version),
            "command": list(cspec.get("command") or ()),
            "args": list(cspec.get("args") or ()),
            "env": plan_env,
        }

    init: list[dict[str, Any]] = []
    if spec.get("prepare") is not None:  # "first, we prepare"
        init.append(container("prepare", spec["prepare"]))
    kubectl = env.get("SYSTEM_UPGRADE_JOB_KUBECTL_IMAGE") or "rancher/kubectl:v1.30.3"
    drain = spec.get("drain")
    if drain is not None:  # "then we cordon/drain"
        init.append(
            {"name": "drain", "image": kubectl, "args": drain_args(spec, node), "env": plan_env}
        )
    elif spec.get("cordon"):
        init.append(
            {
                "name": "cordon",
                "image": kubectl,
                "args": ["cordon", node["metadata"]["name"]],
                "env": plan_env,
            }
        )
    job_spec: dict[str, Any] = {
        "backoffLimit": _env_int(env, "SYSTEM_UPGRADE_JOB_BACKOFF_LIMIT", 2),
        "ttlSecondsAfterFinished": ttl,
        "completions": 1,
        # created paused; parallelism 1 once the node is in status.applying (SUC issue #134)
        "parallelism": 1 if hostname in (status.get("applying") or ()) else 0,
        "template": {
            "metadata": {"labels": dict(labels)},
            "spec": {
                "initContainers": init,
                "containers": [container("upgrade", spec["upgrade"])],
                "restartPolicy": "Never",
            },
        },
    }
    deadline = active_deadline_seconds(spec.get("jobActiveDeadlineSecs"), env=env)
    if deadline is not None:
        job_spec["activeDeadlineSeconds"] = deadline
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": safe_concat_name("apply", name, "on", short, "with", latest_hash),
            "namespace": plan["metadata"]["namespace"],
            "labels": labels,
            "annotations": {ANNOTATION_TTL: str(ttl)},
        },
        "spec": job_spec,
    }


def active_deadline_seconds(plan_value: int | None, *, env: Mapping[str, str]) -> int | None:
    """job.go New: nil or < 0 -> SYSTEM_UPGRADE_JOB_ACTIVE_DEADLINE_SECONDS (default 600); 0 ->
    no deadline; > 0 -> as set. Then SYSTEM_UPGRADE_JOB_ACTIVE_DEADLINE_SECONDS_MAX (> 0) fills a
    missing deadline and clamps a larger one."""
    default = _env_int(env, "SYSTEM_UPGRADE_JOB_ACTIVE_DEADLINE_SECONDS", 600)
    maximum = _env_int(env, "SYSTEM_UPGRADE_JOB_ACTIVE_DEADLINE_SECONDS_MAX", 0)
    deadline: int | None
    if plan_value is None or plan_value < 0:
        deadline = default
    elif plan_value > 0:
        deadline = plan_value
    else:
        deadline = None
    if deadline is None:
        return maximum if maximum > 0 else None
    return maximum if 0 < maximum < deadline else deadline


def with_latest_tag(image: str, tag: str) -> str:
    """pkg/upgrade/container/container.go WithLatestTag: a name-only image gets ``:<tag>``
    (reference.IsNameOnly: neither tag nor digest)."""
    last = image.rsplit("/", 1)[-1]
    if "@" in image or ":" in last:
        return image
    return f"{image}:{tag}"


def drain_args(spec: Mapping[str, Any], node: Mapping[str, Any]) -> list[str]:
    """job.go New, the drain container's kubectl arguments."""
    drain = spec["drain"]
    # pod selector: upgrade.cattle.io/controller DoesNotExist (+ spec.drain.podSelector)
    selector = f"!{LABEL_CONTROLLER}"
    if drain.get("podSelector"):
        raise NotImplementedError("drain.podSelector is not simulated")
    args = ["drain", node["metadata"]["name"], "--pod-selector", selector]
    if drain.get("ignoreDaemonSets") is None or drain["ignoreDaemonSets"]:
        args.append("--ignore-daemonsets")
    if (drain.get("deleteLocalData") is None or drain["deleteLocalData"]) and (
        drain.get("deleteEmptydirData") is None or drain["deleteEmptydirData"]
    ):
        args.append("--delete-emptydir-data")
    if drain.get("force"):
        args.append("--force")
    timeout = drain.get("timeout")
    if isinstance(timeout, int) and not isinstance(timeout, bool):
        args += ["--timeout", f"{timeout}ns"]  # time.Duration(IntVal).String(): nanoseconds
    elif isinstance(timeout, str):
        args += ["--timeout", timeout]
    if drain.get("gracePeriod") is not None:
        args += ["--grace-period", str(drain["gracePeriod"])]
    if drain.get("disableEviction"):
        args.append("--disable-eviction=true")
    if int(drain.get("skipWaitForDeleteTimeout") or 0) > 0:
        args += ["--skip-wait-for-delete-timeout", str(drain["skipWaitForDeleteTimeout"])]
    return args


# ---------------------------------------------------------------------------- controller


class SucSim:
    """SUC's controller (Plan status handler, Plan generating handler, Job handler) over the
    emulator's store, with the Job runner of tests/jobsim.py, on the clock :attr:`now`.

    ``env``: SUC's environment (job.go reads SYSTEM_UPGRADE_JOB_*; :data:`SHIPPED_ENV` is SUC's
    shipped manifest; default: none set, the code defaults). ``job_minutes(plan, node)``: how long
    the upgrade container runs; ``fail(plan, node, attempt)``: whether it exits non-zero;
    ``drain_minutes(node)``: how long a drain takes; ``k3s_version(image, latest_version)``: the
    kubelet version a k3s-upgrade image installs (default: latestVersion with its last ``-k3sN``
    made ``+k3sN``, as the K3s binary reports itself)."""

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
        controller: str = CONTROLLER,
    ) -> None:
        if now.tzinfo is None:
            raise ValueError("the simulated clock needs a time zone")
        self.api, self.ns, self.now = api, namespace, now
        self.env = dict(env or {})
        self.controller = controller
        self.log: list[SimEvent] = []
        self.jobs = JobRunner(
            api,
            namespace=namespace,
            log=self.log,
            job_minutes=job_minutes,
            fail=fail,
            drain_minutes=drain_minutes,
            k3s_version=k3s_version,
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
        """Advance until no Job pod runs and a minute passes with nothing changing."""
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

    def plan(self, name: str) -> dict[str, Any]:
        got = self.api.get("plans", name, self.ns)
        assert got is not None, f"no Plan {name}"
        return got

    def _fingerprint(self) -> str:
        with self.api.lock:
            state = [
                (k, o.get("metadata", {}).get("labels"), o.get("status"), o.get("spec"))
                for k, o in sorted(self.api.store.items())
                if k[0] in ("plans", "jobs", "nodes")
            ]
            return json.dumps([state, self.jobs.fingerprint()], sort_keys=True, default=str)

    def _plans(self) -> list[dict[str, Any]]:
        return [
            o for (r, ns, _), o in sorted(self.api.store.items()) if r == "plans" and ns == self.ns
        ]

    def _nodes(self) -> list[dict[str, Any]]:
        return [o for (r, _, _), o in sorted(self.api.store.items()) if r == "nodes"]

    def _save(self, obj: dict[str, Any], before: str) -> None:
        if json.dumps(obj, sort_keys=True) != before:
            obj["metadata"]["resourceVersion"] = self.api._bump()

    # ---------------------------------------------------------------- handle_upgrade.go

    def _plan_status_handler(self) -> None:
        """handle_upgrade.go handlePlans, RegisterPlanStatusHandler."""
        for plan in self._plans():
            before = json.dumps(plan, sort_keys=True)
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
            before = json.dumps(plan, sort_keys=True)
            now, status = self.now, plan.setdefault("status", {})
            if not _is(plan, "Validated", "True") or not _is(plan, "LatestResolved", "True"):
                _set_error(plan, "Complete", now, "NotReady", ERR_PLAN_NOT_READY)
                self._save(plan, before)
                continue
            selected = select_concurrent_nodes(plan, nodes)
            names = [node_hostname(n) for n in selected]
            jobs = [new_job(plan, n, env=self.env, controller=self.controller) for n in selected]
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
            for job in jobs:
                self._apply_job(job)

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

    def _job_handler(self) -> None:
        """handle_batch.go handleJobs (jobs.OnChange), for every Job of this controller."""
        now = self.now
        for (r, ns, name), job in sorted(self.api.store.items()):
            if r != "jobs" or ns != self.ns:
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
                before = json.dumps(plan, sort_keys=True)
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
                    before = json.dumps(node, sort_keys=True)
                    if now - done_at >= delay:
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
        if self.now - _parse_ts(transition) >= timedelta(seconds=int(ttl or 0)):
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


def _job_cond(job: Mapping[str, Any], ctype: str) -> dict[str, Any] | None:
    """job.go ConditionComplete/ConditionFailed .IsTrue."""
    for c in (job.get("status") or {}).get("conditions") or ():
        if c.get("type") == ctype and c.get("status") == "True":
            return dict(c)
    return None


def _parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _go_duration(text: str) -> timedelta:
    """metav1.Duration (time.ParseDuration) for the simple forms: 1h2m3s, 90s, 0s."""
    from tests.jobsim import parse_go_duration

    return parse_go_duration(text)
