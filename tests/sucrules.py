"""SUC's rules as pure functions over Plan, Node and Job objects (JSON as the API returns them):
the parts of github.com/rancher/system-upgrade-controller at :data:`SUC_COMMIT` that the SUC
simulation (tests/sucsim.py) runs, each naming the Go file and function it follows."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from tests.jobsim import parse_go_duration
from tests.kubeapi import HOSTNAME, selector_matches
from tests.kuredwindow import TimeWindow, TimeWindowError

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


# pkg/apis/upgrade.cattle.io/v1/types.go: the Plan fields json.Marshal keeps when zero -- pointers
# (omitempty drops only nil) and fields without omitempty -- and the map-typed fields (their
# values are data: an "" value stays). Every other field is a non-pointer ``omitempty`` field.
_KEEP_ZERO = frozenset(
    {
        ("spec", "jobActiveDeadlineSecs"),  # *int64
        ("spec", "nodeSelector"),  # *metav1.LabelSelector: {} stays, printed "map[]"
        ("spec", "window"),  # *TimeWindowSpec
        ("spec", "prepare"),  # *ContainerSpec
        ("spec", "upgrade"),  # *ContainerSpec, no omitempty
        ("spec", "drain"),  # *DrainSpec
        ("spec", "postCompleteDelay"),  # *metav1.Duration
        ("spec", "upgrade", "image"),  # no omitempty
        ("spec", "prepare", "image"),
        ("spec", "drain", "timeout"),  # *intstr.IntOrString
        ("spec", "drain", "gracePeriod"),  # *int32
        ("spec", "drain", "deleteLocalData"),  # *bool: false stays, printed "false"
        ("spec", "drain", "deleteEmptydirData"),
        ("spec", "drain", "ignoreDaemonSets"),
        ("spec", "drain", "podSelector"),
    }
)
_MAP_FIELDS = frozenset(
    {
        ("metadata", "labels"),
        ("metadata", "annotations"),
        ("spec", "postCompleteLabels"),
        ("spec", "nodeSelector", "matchLabels"),
        ("spec", "drain", "podSelector", "matchLabels"),
    }
)


def _is_zero(value: Any) -> bool:
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value == 0
    return value is None or value == "" or value == [] or value == {}


def _typed(value: Any, path: tuple[str, ...]) -> Any:
    """The JSON of ``value`` at ``path`` as json.Marshal of the typed Plan writes it: a zero
    non-pointer ``omitempty`` field is absent (list items are left as they are)."""
    if not isinstance(value, Mapping) or path in _MAP_FIELDS:
        return value
    out = {}
    for k, v in value.items():
        sub = (*path, str(k))
        if _is_zero(v) and sub not in _KEEP_ZERO:
            continue
        out[k] = _typed(v, sub)
    return out


def _wrangler_string(obj: Mapping[str, Any], path: list[str]) -> str:
    """wrangler pkg/data Object.String -> convert.ToString (pkg/data/convert/convert.go):
    GetValueN through maps, Singular (a list's first item, nil for an empty list), "" for nil,
    fmt.Sprint, TrimSpace -- over data.Convert(plan): convert.EncodeToMap, json.Marshal of the
    typed Plan decoded with UseNumber (:func:`_typed`)."""
    value: Any = _typed(obj, ())
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
    """pkg/apis/condition/condition.go findOrCreateCond: a new one is Type and Status Unknown,
    no timestamp (CreateUnknownIfNotExists's setStatus to Unknown changes nothing)."""
    for c in _conds(plan):
        if c["type"] == ctype:
            return c
    c = {"type": ctype, "status": "Unknown"}
    _conds(plan).append(c)
    return c


def _set(plan: dict[str, Any], ctype: str, now: datetime, **fields: str) -> None:
    """condition.go setStatus / Message (setValue: a changed value touches lastUpdateTime, RFC
    3339) and Reason (set without touching). SUC's condition package never writes
    lastTransitionTime on a Plan condition."""
    c = _cond(plan, ctype, now)
    if any(k != "reason" and c.get(k, "") != v for k, v in fields.items()):
        c["lastUpdateTime"] = _ts(now)
    for k, v in fields.items():  # genericcondition: reason, message omitempty
        if v:
            c[k] = v
        else:
            c.pop(k, None)


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
            # merr.NewErrors(ErrInvalidWindow, err): wrangler pkg/merr Errors.Error joins ", "
            return f"spec.window is invalid, {e}"
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
    # "Ensure that the job's TTLSecondsAfterFinished is at least 1 minute longer than the
    # requested post-upgrade delay"
    if spec.get("postCompleteDelay") is not None:
        at_least = int(parse_go_duration(str(spec["postCompleteDelay"])).total_seconds()) + 60
        ttl = max(ttl, at_least)
    labels = {
        LABEL_CONTROLLER: controller,
        LABEL_EXCLUSIVE: "true" if spec.get("exclusive") else "false",
        LABEL_NODE: node["metadata"]["name"],
        LABEL_PLAN: name,
        LABEL_VERSION: latest_version,
        label_plan_name(name): latest_hash,
    }
    # the Plan's own labels and annotations, except cattle.io's (and kubectl.kubernetes.io's)
    meta = plan["metadata"]
    labels |= {k: v for k, v in (meta.get("labels") or {}).items() if "cattle.io/" not in k}
    annotations = {
        k: v
        for k, v in (meta.get("annotations") or {}).items()
        if "cattle.io/" not in k and "kubectl.kubernetes.io/" not in k
    }
    # container.go New: the downward-API variables, then the ContainerSpec's own ``envs`` (its
    # JSON name in types.go), then WithPlanEnvironment's three
    pod_env = [
        {"name": n, "valueFrom": {"fieldRef": {"fieldPath": f}}}
        for n, f in (
            ("SYSTEM_UPGRADE_NODE_NAME", "spec.nodeName"),
            ("SYSTEM_UPGRADE_POD_NAME", "metadata.name"),
            ("SYSTEM_UPGRADE_POD_UID", "metadata.uid"),
        )
    ]
    plan_env = [
        {"name": "SYSTEM_UPGRADE_PLAN_NAME", "value": name},
        {"name": "SYSTEM_UPGRADE_PLAN_LATEST_HASH", "value": latest_hash},
        {"name": "SYSTEM_UPGRADE_PLAN_LATEST_VERSION", "value": latest_version},
    ]

    secrets = list(spec.get("secrets") or ())
    # container.go New: host-root at /host, pod-info; then WithSecrets, on every container
    # (prepare, drain, cordon and upgrade all get them in job.go New)
    mounts = [
        {"name": "host-root", "mountPath": "/host"},
        {"name": "pod-info", "mountPath": "/run/system-upgrade/pod", "readOnly": True},
        *({"name": safe_concat_name("secret", str(x["name"])),
           "mountPath": secret_path(x), "readOnly": True} for x in secrets),
    ]  # fmt: skip

    def container(cname: str, cspec: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "name": cname,
            "image": with_latest_tag(str(cspec["image"]), latest_version),
            "command": list(cspec.get("command") or ()),
            "args": list(cspec.get("args") or ()),
            "env": [*pod_env, *(cspec.get("envs") or ()), *plan_env],
            "volumeMounts": copy.deepcopy(mounts),
        }

    init: list[dict[str, Any]] = []
    if spec.get("prepare") is not None:  # "first, we prepare"
        init.append(container("prepare", spec["prepare"]))
    kubectl = env.get("SYSTEM_UPGRADE_JOB_KUBECTL_IMAGE") or "rancher/kubectl:v1.30.3"
    drain = spec.get("drain")
    if drain is not None:  # "then we cordon/drain"
        init.append(
            {
                "name": "drain",
                "image": kubectl,
                "args": drain_args(spec, node),
                "env": [*pod_env, *plan_env],
                "volumeMounts": copy.deepcopy(mounts),
            }
        )
    elif spec.get("cordon"):
        init.append(
            {
                "name": "cordon",
                "image": kubectl,
                "args": ["cordon", node["metadata"]["name"]],
                "env": [*pod_env, *plan_env],
                "volumeMounts": copy.deepcopy(mounts),
            }
        )
    # job.go New, "and finally, we upgrade": upgrade.SecurityContext, else Privileged (default
    # true, job.go Privileged) with CAP_SYS_BOOT added
    upgrade = container("upgrade", spec["upgrade"])
    upgrade["securityContext"] = copy.deepcopy(spec["upgrade"].get("securityContext")) or {
        "privileged": True,
        "capabilities": {"add": ["CAP_SYS_BOOT"]},
    }
    job_spec: dict[str, Any] = {
        "backoffLimit": _env_int(env, "SYSTEM_UPGRADE_JOB_BACKOFF_LIMIT", 2),
        "ttlSecondsAfterFinished": ttl,
        "completions": 1,
        # created paused; parallelism 1 once the node is in status.applying (SUC issue #134)
        "parallelism": 1 if hostname in (status.get("applying") or ()) else 0,
        "template": {
            "metadata": {"labels": dict(labels), "annotations": dict(annotations)},
            "spec": {
                # job.go New: the Job's pod shares the host's IPC, PID and network namespaces
                "hostIPC": True,
                "hostPID": True,
                "hostNetwork": True,
                "initContainers": init,
                "containers": [upgrade],
                "restartPolicy": "Never",
                # job.go New: host-root (hostPath / as a Directory), pod-info (downward API
                # labels and annotations), then per spec.secrets entry a volume named
                # name.SafeConcatName("secret", secret.Name), Optional: secret.IgnoreUpdates
                "volumes": [
                    {"name": "host-root", "hostPath": {"path": "/", "type": "Directory"}},
                    {
                        "name": "pod-info",
                        "downwardAPI": {
                            "items": [
                                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                                {
                                    "path": "annotations",
                                    "fieldRef": {"fieldPath": "metadata.annotations"},
                                },
                            ]
                        },
                    },
                    *(
                        {
                            "name": safe_concat_name("secret", str(x["name"])),
                            "secret": {
                                "secretName": x["name"],
                                "optional": bool(x.get("ignoreUpdates")),
                            },
                        }
                        for x in secrets
                    ),
                ],
                # tolerate cordoned nodes, then the Plan's own tolerations
                "tolerations": [
                    {
                        "key": "node.kubernetes.io/unschedulable",
                        "operator": "Exists",
                        "effect": "NoSchedule",
                    },
                    *(spec.get("tolerations") or ()),
                ],
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
            "annotations": {ANNOTATION_TTL: str(ttl), **annotations},
        },
        "spec": job_spec,
    }


def secret_path(secret: Mapping[str, Any]) -> str:
    """container.go WithSecrets: ``path`` as set when absolute, else under
    /run/system-upgrade/secrets (the Secret's name when no path)."""
    path = str(secret.get("path") or "")
    if not path:
        return f"/run/system-upgrade/secrets/{secret['name']}"
    return path if path.startswith("/") else f"/run/system-upgrade/secrets/{path}"


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


def go_duration_string(ns: int) -> str:
    """Go's time.Duration.String (src/time/time.go): "0s"; under a second in ns, µs or ms with
    the fraction's trailing zeros cut; else [h][m]s with a seconds fraction (``1h2m3.5s``)."""
    if ns == 0:
        return "0s"
    sign, u = ("-" if ns < 0 else ""), abs(ns)

    def frac(v: int, digits: int) -> str:
        whole, rest = divmod(v, 10**digits)
        tail = f"{rest:0{digits}d}".rstrip("0")
        return f"{whole}.{tail}" if tail else str(whole)

    if u < 1_000_000_000:
        if u < 1_000:
            return f"{sign}{u}ns"
        if u < 1_000_000:
            return f"{sign}{frac(u, 3)}µs"
        return f"{sign}{frac(u, 6)}ms"
    secs_ns = u % 60_000_000_000
    minutes = u // 60_000_000_000
    out = f"{frac(secs_ns, 9)}s"
    if minutes:
        h, m = divmod(minutes, 60)
        out = f"{m}m{out}"
        if h:
            out = f"{h}h{out}"
    return sign + out


def with_latest_tag(image: str, tag: str) -> str:
    """pkg/upgrade/container/container.go WithLatestTag: a name-only image (reference.IsNameOnly:
    neither tag nor digest) gets ``:<tag>``, written reference.FamiliarString (docker.io/ and a
    lone library/ dropped); any other image stays as written."""
    last = image.rsplit("/", 1)[-1]
    if "@" in image or ":" in last:
        return image
    name = image.removeprefix("docker.io/")
    if name.startswith("library/") and name.count("/") == 1:
        name = name.removeprefix("library/")
    return f"{name}:{tag}"


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
        args += ["--timeout", go_duration_string(timeout)]  # time.Duration(IntVal).String()
    elif isinstance(timeout, str):
        args += ["--timeout", timeout]
    if drain.get("gracePeriod") is not None:
        args += ["--grace-period", str(drain["gracePeriod"])]
    if drain.get("disableEviction"):
        args.append("--disable-eviction=true")
    if int(drain.get("skipWaitForDeleteTimeout") or 0) > 0:
        args += ["--skip-wait-for-delete-timeout", str(drain["skipWaitForDeleteTimeout"])]
    return args
