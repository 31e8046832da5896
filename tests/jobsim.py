"""What runs the Jobs the SUC simulation (tests/sucsim.py) creates: the Kubernetes Job
controller's part, the Job pod's containers in order (prepare, then drain or cordon, then
upgrade: SUC's pkg/upgrade/job/job.go New), ``kubectl drain``'s refusals, and k3s-upgrade's
``upgrade.sh`` (``prepare`` and ``upgrade``).

Sources, each rule citing its function:

- Kubernetes Jobs (https://kubernetes.io/docs/concepts/workloads/controllers/job/): a Job's
  ``activeDeadlineSeconds`` counts from ``status.startTime``, and once reached the running pod
  is terminated and the Job fails with reason ``DeadlineExceeded`` ("Job termination and
  cleanup"); with ``restartPolicy: Never`` a failed pod is replaced after an exponential back-off
  (10 s, 20 s, 40 s ... capped at six minutes) and the Job fails ``BackoffLimitExceeded`` once
  more than ``backoffLimit`` pods failed ("Pod backoff failure policy"); ``parallelism: 0`` runs
  no pod.
- kubectl drain: kubernetes/kubernetes :data:`KUBECTL_COMMIT`,
  staging/src/k8s.io/kubectl/pkg/drain/filters.go (makeFilters, daemonSetFilter,
  mirrorPodFilter, localStorageFilter, unreplicatedFilter, PodDeleteList.errors) and drain.go
  (GetPodsForDeletion: pods with ``spec.nodeName`` and the ``--pod-selector``; each pod through
  the filters until one says "do not delete"; any error refuses the whole drain).
- k3s-upgrade: k3s-io/k3s-upgrade :data:`K3S_UPGRADE_COMMIT`, scripts/upgrade.sh.

A drain here evicts nothing (workload pods stay where the test put them); it cordons the node,
takes ``drain_minutes(node)``, and fails if that exceeds ``--timeout``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tests.kubeapi import CONTROL_PLANE, KubeEmulator, parse_selector

KUBECTL_COMMIT = "94341df30b4aef29676b997d0e2320534d05bfab"
K3S_UPGRADE_COMMIT = "e45db208b49b6c0e680dc59667a6156322dc3774"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"  # corev1.MirrorPodAnnotationKey

# filters.go constants
DAEMONSET_FATAL = "DaemonSet-managed Pods (use --ignore-daemonsets to ignore)"
LOCAL_STORAGE_FATAL = "Pods with local storage (use --delete-emptydir-data to override)"
UNMANAGED_FATAL = "cannot delete Pods that declare no controller (use --force to override)"


@dataclass(frozen=True)
class SimEvent:
    """One thing that happened at ``at``: ``kind`` in job-created, pod-started, prepare-done,
    drain-refused, drain-timeout, cordoned, upgrade-started, upgrade-done, pod-failed,
    pod-killed, job-succeeded, job-failed, job-deleted, node-done, node-uncordoned,
    plan-complete."""

    at: datetime
    kind: str
    plan: str
    node: str
    detail: str = ""


_DURATION = re.compile(r"([0-9]+(?:\.[0-9]*)?)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def parse_go_duration(text: str) -> timedelta:
    """Go's time.ParseDuration for unsigned values (kubectl's --timeout, metav1.Duration)."""
    if text == "0":
        return timedelta(0)
    pos, total = 0, 0.0
    while pos < len(text):
        m = _DURATION.match(text, pos)
        if not m:
            raise ValueError(f"time: invalid duration {text!r}")
        total += float(m[1]) * _UNIT[m[2]]
        pos = m.end()
    if not text:
        raise ValueError("time: invalid duration ''")
    return timedelta(seconds=total)


# ----------------------------------------------------------------------------- kubectl drain


@dataclass(frozen=True)
class DrainFlags:
    pod_selector: str = ""
    ignore_daemonsets: bool = False
    delete_emptydir_data: bool = False
    force: bool = False
    timeout: timedelta | None = None  # kubectl: 0 means infinite


def parse_drain_args(args: list[str]) -> tuple[str, DrainFlags]:
    """The node and flags of ``kubectl drain`` as SUC's job.go builds the arguments."""
    assert args[0] == "drain", args
    node, flags, i = args[1], {}, 2
    while i < len(args):
        a = args[i]
        if a in ("--pod-selector", "--timeout", "--grace-period", "--skip-wait-for-delete-timeout"):
            flags[a], i = args[i + 1], i + 2
        else:
            flags[a.split("=")[0]], i = True, i + 1
    timeout = parse_go_duration(str(flags["--timeout"])) if "--timeout" in flags else None
    return node, DrainFlags(
        pod_selector=str(flags.get("--pod-selector", "")),
        ignore_daemonsets=bool(flags.get("--ignore-daemonsets")),
        delete_emptydir_data=bool(flags.get("--delete-emptydir-data")),
        force=bool(flags.get("--force")),
        timeout=timeout if timeout else None,
    )


def _controller_of(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """metav1.GetControllerOf: the ownerReference with controller: true."""
    for ref in pod["metadata"].get("ownerReferences") or ():
        if ref.get("controller"):
            return ref
    return None


def _finished(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def drain_filter(pod: Mapping[str, Any], flags: DrainFlags) -> tuple[bool, str]:
    """filters.go makeFilters in order; the first that says "do not delete" decides (drain.go
    filterPods). Returns (delete, error message or "")."""
    ref = _controller_of(pod)
    # daemonSetFilter (the DaemonSet is taken to exist: the orphan case is not simulated)
    if ref is not None and ref.get("kind") == "DaemonSet" and not _finished(pod):
        if not flags.ignore_daemonsets:
            return False, DAEMONSET_FATAL
        return False, ""  # ignoring DaemonSet-managed Pods: skipped, not deleted
    # mirrorPodFilter
    if MIRROR_ANNOTATION in (pod["metadata"].get("annotations") or {}):
        return False, ""
    # localStorageFilter: any emptyDir volume
    has_local = any("emptyDir" in v for v in (pod.get("spec") or {}).get("volumes") or ())
    if has_local and not _finished(pod) and not flags.delete_emptydir_data:
        return False, LOCAL_STORAGE_FATAL
    # unreplicatedFilter
    if not _finished(pod) and ref is None and not flags.force:
        return False, UNMANAGED_FATAL
    return True, ""


def drain_refusal(api: KubeEmulator, node: str, flags: DrainFlags) -> str:
    """drain.go GetPodsForDeletion + PodDeleteList.errors: "" if the drain may proceed, else
    kubectl's error ("cannot delete <reason>: ns/pod, ...; ...")."""
    match = parse_selector(flags.pod_selector)
    failed: dict[str, list[str]] = {}
    for pod in api.items("pods"):
        if (pod.get("spec") or {}).get("nodeName") != node:
            continue
        if not match(pod["metadata"].get("labels") or {}):
            continue
        _, err = drain_filter(pod, flags)
        if err:
            failed.setdefault(err, []).append(
                f"{pod['metadata'].get('namespace')}/{pod['metadata']['name']}"
            )
    return "; ".join(f"cannot delete {msg}: {', '.join(pods)}" for msg, pods in failed.items())


def pod_object(
    name: str,
    *,
    node: str,
    namespace: str = "kube-system",
    owner: str | None = "ReplicaSet",
    empty_dir: bool = False,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(labels or {})}
    if owner:
        meta["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": owner, "name": name, "controller": True}
        ]
    volumes = [{"name": "tmp-dir", "emptyDir": {}}] if empty_dir else []
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"nodeName": node, "volumes": volumes},
        "status": {"phase": "Running"},
    }


def k3s_stock_pods(node: str) -> list[dict[str, Any]]:
    """What a stock K3s runs on a node that drains care about: metrics-server (a Deployment
    with an ``emptyDir`` ``tmp-dir``: k3s-io/k3s manifests/metrics-server/
    metrics-server-deployment.yaml) and a ServiceLB ``svclb-traefik`` DaemonSet pod."""
    return [
        pod_object(f"metrics-server-{node}", node=node, empty_dir=True),
        pod_object(f"svclb-traefik-{node}", node=node, owner="DaemonSet"),
    ]


# --------------------------------------------------------------------------------- k3s-upgrade


def is_k3s_upgrade(image: str) -> bool:
    """Whether the image is rancher/k3s-upgrade (any registry, tag or digest)."""
    name = image.split("@")[0]
    last = name.rsplit("/", 1)[-1].split(":")[0]
    return last == "k3s-upgrade"


def _semver(v: str) -> tuple[int, ...]:
    m = re.search(r"([0-9]+)\.([0-9]+)\.([0-9]+)", v)
    return tuple(int(x) for x in m.groups()) if m else (0, 0, 0)


def default_k3s_version(image: str, latest_version: str) -> str:
    """The version the K3s binary of a k3s-upgrade image reports (``v1.28.15+k3s1``): the image
    is tagged with the munged version, the kubelet reports it with ``+``."""
    return re.sub(r"-(k3s[0-9]+)$", r"+\1", latest_version)


def _env(container: Mapping[str, Any], name: str) -> str:
    """A container's variable: the kubelet (makeEnvironmentVariables) keeps the last of
    several entries with one name."""
    value = ""
    for e in container.get("env") or ():
        if e["name"] == name:
            value = str(e.get("value") or "")
    return value


# ----------------------------------------------------------------------------------- the pods


@dataclass
class PodRun:
    job: str
    plan: str
    node: str
    attempt: int
    started: datetime
    index: int = 0  # the container running
    since: datetime | None = None  # when that container started
    stage: int = 0  # upgrade.sh prepare: 0 waiting for applying, 1 for versions
    notes: list[str] = field(default_factory=list)


class JobRunner:
    def __init__(
        self,
        api: KubeEmulator,
        *,
        namespace: str,
        log: list[SimEvent],
        job_minutes: float | Callable[[str, str], float],
        fail: Callable[[str, str, int], bool] | None,
        drain_minutes: float | Callable[[str], float],
        k3s_version: Callable[[str, str], str] | None,
        os_k3s: Callable[[str], str | None] | None = None,
    ) -> None:
        self.api, self.ns, self.log = api, namespace, log
        # the K3s an OS image installs (a Kairos standard image's /etc/kairos-release), by image
        self.os_k3s = os_k3s or (lambda image: None)
        self.secrets: set[str] = set()  # the Secrets that exist in the namespace
        self.job_minutes = job_minutes if callable(job_minutes) else (lambda p, n: job_minutes)
        self.drain_minutes = drain_minutes if callable(drain_minutes) else (lambda n: drain_minutes)
        self.fail = fail or (lambda p, n, a: False)
        self.k3s_version = k3s_version or default_k3s_version
        self.pods: dict[str, PodRun] = {}
        self.retry_at: dict[str, datetime] = {}

    def running(self) -> list[PodRun]:
        return list(self.pods.values())

    def fingerprint(self) -> list[Any]:
        return sorted((p.job, p.index, p.stage) for p in self.pods.values())

    def _event(self, now: datetime, kind: str, run: PodRun, detail: str = "") -> None:
        self.log.append(SimEvent(now, kind, run.plan, run.node, detail))

    def kill(self, job: str, now: datetime, *, why: str) -> None:
        run = self.pods.pop(job, None)
        self.retry_at.pop(job, None)
        if run is not None:
            self._event(now, "pod-killed", run, f"container {run.index}: {why}")

    def progress(self, now: datetime) -> None:
        for (r, ns, name), job in sorted(self.api.store.items()):
            if r == "jobs" and ns == self.ns:
                self._job(name, job, now)

    def _job(self, name: str, job: dict[str, Any], now: datetime) -> None:
        status = job.setdefault("status", {})
        if any(c.get("status") == "True" for c in status.get("conditions") or ()):
            return  # finished
        if "startTime" not in status:  # the Job controller's first sync
            status["startTime"] = _ts(now)
            job["metadata"]["resourceVersion"] = self.api._bump()
        deadline = job["spec"].get("activeDeadlineSeconds")
        started = datetime.fromisoformat(status["startTime"].replace("Z", "+00:00"))
        if deadline is not None and now - started >= timedelta(seconds=int(deadline)):
            if name in self.pods:
                self.kill(name, now, why="DeadlineExceeded")
            self._finish(job, now, "Failed", "DeadlineExceeded",
                         "Job was active longer than specified deadline")  # fmt: skip
            return
        if name not in self.pods:
            if int(job["spec"].get("parallelism") or 0) < 1:
                return
            if now < self.retry_at.get(name, now):
                return
            labels = job["metadata"]["labels"]
            if self._anti_affine(labels):
                return  # Pending: the scheduler will not place it next to that pod
            if self._untolerated(job, labels["upgrade.cattle.io/node"]):
                return  # Pending: a NoSchedule/NoExecute taint it does not tolerate
            if self._secret_missing(job):
                return  # ContainerCreating: a required Secret volume cannot be set up
            run = PodRun(
                name,
                labels["upgrade.cattle.io/plan"],
                labels["upgrade.cattle.io/node"],
                int(status.get("failed") or 0) + 1,
                now,
            )
            self.pods[name] = run
            status["active"] = 1
            job["metadata"]["resourceVersion"] = self.api._bump()
            self._event(now, "pod-started", run, f"attempt {run.attempt}")
        run = self.pods[name]
        spec = job["spec"]["template"]["spec"]
        containers = list(spec.get("initContainers") or ()) + list(spec["containers"])
        while run.index < len(containers):
            c = containers[run.index]
            if run.since is None:
                run.since = now
                err = self._start(c, run, now)
                if err:
                    return self._pod_failed(job, run, now, err)
            outcome = self._step(c, run, now)
            if outcome is None:
                return  # still running
            if outcome:
                return self._pod_failed(job, run, now, outcome)
            run.index, run.since = run.index + 1, None
        del self.pods[name]
        status.pop("active", None)
        status["succeeded"] = 1
        self._finish(job, now, "Complete", "", "")
        self._event(now, "job-succeeded", run)

    def _anti_affine(self, labels: Mapping[str, str]) -> bool:
        """job.go New, PodAntiAffinity RequiredDuringScheduling, topology kubernetes.io/hostname:
        no pod of the same Plan (upgrade.cattle.io/plan In [plan]) on that node, or for an
        exclusive Plan, no pod with upgrade.cattle.io/exclusive In ["true"]. A Job SUC has not
        deleted yet (say, of the Plan's previous version) keeps the new Job's pod Pending."""
        node = labels["upgrade.cattle.io/node"]
        exclusive = labels.get("upgrade.cattle.io/exclusive") == "true"
        for other in self.pods.values():
            if other.node != node:
                continue
            theirs = self.api.store.get(("jobs", self.ns, other.job))
            their_labels = (theirs or {}).get("metadata", {}).get("labels") or {}
            if exclusive and their_labels.get("upgrade.cattle.io/exclusive") == "true":
                return True
            if not exclusive and other.plan == labels["upgrade.cattle.io/plan"]:
                return True
        return False

    def _untolerated(self, job: Mapping[str, Any], node_name: str) -> bool:
        """The scheduler's TaintToleration filter (k8s.io/api core/v1 toleration.go
        ToleratesTaint): a NoSchedule or NoExecute taint of the node that no toleration of the
        pod matches keeps it Pending. A NotReady node carries node.kubernetes.io/not-ready
        NoSchedule (node lifecycle controller); SUC's Jobs tolerate only
        node.kubernetes.io/unschedulable and the Plan's tolerations (job.go New), and SUC's
        SelectConcurrentNodes does not look at readiness: such a node takes a concurrency slot
        and its Job waits until its deadline."""
        node = self.api.store.get(("nodes", "", node_name)) or {}
        tolerations = job["spec"]["template"]["spec"].get("tolerations") or ()

        def tolerated(taint: Mapping[str, Any]) -> bool:
            for t in tolerations:
                if t.get("effect") and t["effect"] != taint.get("effect"):
                    continue
                if t.get("operator") == "Exists":
                    if not t.get("key") or t["key"] == taint.get("key"):
                        return True
                elif t.get("key") == taint.get("key") and t.get("value", "") == taint.get("value", ""):  # fmt: skip
                    return True
            return False

        return any(
            taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerated(taint)
            for taint in (node.get("spec") or {}).get("taints") or ()
        )

    def _secret_missing(self, job: Mapping[str, Any]) -> bool:
        """kubernetes pkg/volume/secret/secret.go ``SetUpAt``: a Secret that does not exist
        fails the volume's set-up unless the volume is ``optional`` (the pod stays
        ContainerCreating); an optional one mounts as an empty directory."""
        for v in job["spec"]["template"]["spec"].get("volumes") or ():
            sec = v.get("secret")
            if sec and not sec.get("optional") and sec["secretName"] not in self.secrets:
                return True
        return False

    def _start(self, c: Mapping[str, Any], run: PodRun, now: datetime) -> str:
        """A container starts: drain checks and cordons, cordon cordons, upgrade is logged."""
        args = list(c.get("args") or ())
        if c["name"] == "drain":
            node, flags = parse_drain_args(args)
            refusal = drain_refusal(self.api, node, flags)
            self._cordon(node, run, now)
            if refusal:
                self._event(now, "drain-refused", run, refusal)
                return f"kubectl drain: {refusal}"
        elif c["name"] == "cordon":
            self._cordon(args[1], run, now)
        elif c["name"] == "upgrade":
            # init containers done, the upgrade container running: the pod turns Ready and the
            # Job controller writes status.ready (a change of the Job: SUC's Job handler runs)
            job = self.api.store.get(("jobs", self.ns, run.job))
            if job is not None:
                job.setdefault("status", {})["ready"] = 1
                job["metadata"]["resourceVersion"] = self.api._bump()
            self._event(now, "upgrade-started", run, str(c["image"]))
        return ""

    def _cordon(self, node: str, run: PodRun, now: datetime) -> None:
        obj = self.api.store[("nodes", "", node)]
        if not obj.setdefault("spec", {}).get("unschedulable"):
            obj["spec"]["unschedulable"] = True
            obj["metadata"]["resourceVersion"] = self.api._bump()
            self._event(now, "cordoned", run)

    def _step(self, c: Mapping[str, Any], run: PodRun, now: datetime) -> str | None:
        """None: still running; "": exited 0; else the failure."""
        assert run.since is not None
        elapsed = now - run.since
        args = list(c.get("args") or ())
        if c["name"] == "prepare":
            if is_k3s_upgrade(str(c["image"])) and args[:1] == ["prepare"]:
                return self._k3s_prepare(c, args, run, now)
            return ""
        if c["name"] == "drain":
            _, flags = parse_drain_args(args)
            need = timedelta(minutes=self.drain_minutes(run.node))
            if flags.timeout is not None and need > flags.timeout:
                if elapsed >= flags.timeout:
                    self._event(now, "drain-timeout", run, str(flags.timeout))
                    return "kubectl drain: global timeout reached"
                return None
            return "" if elapsed >= need else None
        if c["name"] == "cordon":
            return ""
        # the upgrade container
        if elapsed < timedelta(minutes=self.job_minutes(run.plan, run.node)):
            return None
        if self.fail(run.plan, run.node, run.attempt):
            self._event(now, "upgrade-failed", run)
            return "upgrade container exited 1"
        if is_k3s_upgrade(str(c["image"])) and args[:1] in ([], ["upgrade"]):
            return self._k3s_upgrade(c, run, now)
        return self._os_upgrade(c, run, now)

    def _os_upgrade(self, c: Mapping[str, Any], run: PodRun, now: datetime) -> str:
        """An OS upgrader: what it needs of SUC's pod, then the node boots the image.

        - ``nsenter -t 1`` enters PID 1's namespaces: the host's only with ``hostPID`` (job.go
          New sets it); else it is the container's own, where bootc refuses ("Detected
          container", containers/bootc lib/src/cli.rs ``prepare_for_write``).
        - Elemental's suc-upgrade (rancher/elemental framework/files/usr/sbin/suc-upgrade
          ``config``) copies ``/run/data/cloud-config`` to ``/oem/90_operator.yaml``, or removes
          that file when there is none: the event says whether the container has it.
        - An image carrying K3s (:attr:`os_k3s`) leaves the node's kubelet on that K3s.
        """
        job = self.api.store[("jobs", self.ns, run.job)]
        pod = job["spec"]["template"]["spec"]
        command = [*(c.get("command") or ()), *(c.get("args") or ())]
        pid1 = command[:1] == ["nsenter"] and "-t" in command and "1" in command[:6]
        if pid1 and not pod.get("hostPID"):
            return "Detected container; this command requires a booted host system."
        detail = str(c["image"])
        if command[:1] == ["/usr/sbin/suc-upgrade"]:
            data = {m["mountPath"] for m in c.get("volumeMounts") or ()}
            mounted = "/run/data" in data and any(
                v.get("secret", {}).get("secretName") in self.secrets
                for v in pod.get("volumes") or ()
            )
            # what the script finds; Elemental's copies it to /oem/90_operator.yaml when there,
            # removes that file otherwise (Kairos's script does not read it)
            detail += " /run/data/cloud-config:" + ("present" if mounted else "absent")
        carried = self.os_k3s(str(c["image"]))
        if carried is not None:
            node = self.api.store[("nodes", "", run.node)]
            node["status"]["nodeInfo"]["kubeletVersion"] = carried
            node["metadata"]["resourceVersion"] = self.api._bump()
            detail += f" k3s:{carried}"
        self._event(now, "upgrade-done", run, detail)
        return ""

    def _k3s_prepare(
        self, c: Mapping[str, Any], args: list[str], run: PodRun, now: datetime
    ) -> str | None:
        """upgrade.sh prepare <control-plane plan>: wait until that Plan exists and its
        ``.status.applying | length`` is 0, then (verify_controlplane_versions) until the
        control-plane nodes' kubelet versions, ``sort -u | tr '+' '-'``, are exactly
        $SYSTEM_UPGRADE_PLAN_LATEST_VERSION."""
        if len(args) < 2 or not args[1]:
            return "Control-plane Plan name was not passed to the prepare step"
        if run.stage == 0:
            plan = self.api.store.get(("plans", self.ns, args[1]))
            if plan is None or len((plan.get("status") or {}).get("applying") or ()) != 0:
                return None
            run.stage = 1
        versions = sorted(
            {
                str(n["status"]["nodeInfo"]["kubeletVersion"])
                for (r, _, _), n in self.api.store.items()
                if r == "nodes" and CONTROL_PLANE in (n["metadata"].get("labels") or {})
            }
        )
        seen = "\n".join(versions).replace("+", "-")
        if seen and seen == _env(c, "SYSTEM_UPGRADE_PLAN_LATEST_VERSION"):
            self._event(now, "prepare-done", run)
            return ""
        return None

    def _k3s_upgrade(self, c: Mapping[str, Any], run: PodRun, now: datetime) -> str:
        """upgrade.sh upgrade: replace_binary (same binary: "already been replaced", exit 0; a
        lower version than the running one: exit 1), then kill_k3s_process (the supervisor
        restarts K3s: the kubelet reports the new version)."""
        node = self.api.store[("nodes", "", run.node)]
        current = str(node["status"]["nodeInfo"]["kubeletVersion"])
        new = self.k3s_version(str(c["image"]), _env(c, "SYSTEM_UPGRADE_PLAN_LATEST_VERSION"))
        if new == current:
            self._event(now, "upgrade-done", run, "Binary already been replaced")
            return ""
        if _semver(current) > _semver(new):
            return f"Error: Current {current} is higher than {new}"
        node["status"]["nodeInfo"]["kubeletVersion"] = new
        node["metadata"]["resourceVersion"] = self.api._bump()
        self._event(now, "upgrade-done", run, new)
        return ""

    def _pod_failed(self, job: dict[str, Any], run: PodRun, now: datetime, err: str) -> None:
        """restartPolicy Never: the pod counts as failed; the Job fails past backoffLimit,
        otherwise a new pod after 10 s * 2^(failures-1), at most 6 minutes."""
        self.pods.pop(run.job, None)
        status = job["status"]
        status["failed"] = int(status.get("failed") or 0) + 1
        status.pop("active", None)
        job["metadata"]["resourceVersion"] = self.api._bump()
        self._event(now, "pod-failed", run, err)
        if status["failed"] > int(job["spec"].get("backoffLimit") or 0):
            self._finish(job, now, "Failed", "BackoffLimitExceeded",
                         "Job has reached the specified backoff limit")  # fmt: skip
            return
        backoff = min(10 * 2 ** (status["failed"] - 1), 360)
        self.retry_at[run.job] = now + timedelta(seconds=backoff)

    def _finish(
        self, job: dict[str, Any], now: datetime, ctype: str, reason: str, msg: str
    ) -> None:
        status = job["status"]
        status.setdefault("conditions", []).append(
            {"type": ctype, "status": "True", "reason": reason, "message": msg,
             "lastTransitionTime": _ts(now), "lastProbeTime": _ts(now)}
        )  # fmt: skip
        if ctype == "Complete":
            status["completionTime"] = _ts(now)
        else:
            labels = job["metadata"]["labels"]
            self.log.append(
                SimEvent(now, "job-failed", labels["upgrade.cattle.io/plan"],
                         labels["upgrade.cattle.io/node"], reason)
            )  # fmt: skip
        job["metadata"]["resourceVersion"] = self.api._bump()


def _ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")
