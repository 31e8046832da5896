"""The Kubernetes API, through the official ``kubernetes`` client: nodes, gitedge's SUC Plans,
Events, and the agent's status ConfigMap.

What the agent does to a cluster, and nothing more (deploy/rbac.yaml grants exactly this):

- reads Nodes (architecture, kubelet version, labels: control-plane role and SUC's
  ``plan.upgrade.cattle.io/<plan>`` done labels);
- lists the SUC ``Plans`` (upgrade.cattle.io/v1) of its namespace labelled
  ``app.kubernetes.io/managed-by=gitedge`` and creates, updates and deletes only those. An update
  carries the ``resourceVersion`` the decision was made on and a delete carries it as a
  precondition, so a Plan that changed since it was read (someone took it over, relabelled it,
  or SUC's status moved) is never overwritten or removed: the API answers 409 and the pass is
  decided again from a fresh read;
- lists the Jobs of that namespace and keeps those SUC created for its Plans (label
  ``upgrade.cattle.io/plan``): their ``activeDeadlineSeconds`` is the deadline SUC really gave,
  after ``SYSTEM_UPGRADE_JOB_ACTIVE_DEADLINE_SECONDS_MAX`` (:mod:`gitedge.core.readback`);
- writes core/v1 Events about the Plans it changes and about failures;
- keeps its status in the ConfigMap ``gitedge-status`` (key ``status.json``: the conditions of
  :mod:`gitedge.core.conditions`, ``Ready`` summarised once, and a few facts).

Every API failure becomes :class:`~gitedge.errors.KubeApiError` with the HTTP status and a reason
word (``Forbidden``, ``Conflict``, ``AlreadyExists``, ``NotFound``, ``Unreachable``, ...), its
message cut short and scrubbed of credentials. Reads ask for raw JSON (``_preload_content=False``)
and parse it with the pure functions of :mod:`gitedge.core.clusterstate`.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from gitedge.core.clusterstate import ClusterSnapshot, JobFacts, NodeFacts, PlanState
from gitedge.core.conditions import Condition, from_json, merge, summarize, to_json
from gitedge.core.planmanifests import Action
from gitedge.core.suc import API_VERSION as PLAN_API_VERSION
from gitedge.core.suc import MANAGED_BY, MANAGED_BY_LABEL
from gitedge.core.timefmt import iso_z
from gitedge.errors import KubeApiError, scrub

__all__ = [
    "OWNED_SELECTOR",
    "STATUS_CONFIGMAP",
    "STATUS_KEY",
    "AgentStatus",
    "Kube",
    "ObjectRef",
    "event_reason",
]

PLAN_GROUP, PLAN_VERSION, PLAN_PLURAL = "upgrade.cattle.io", "v1", "plans"
OWNED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
STATUS_CONFIGMAP = "gitedge-status"
STATUS_KEY = "status.json"
COMPONENT = "gitedge"
_PAGE = 500
_WRITE_ATTEMPTS = 3
_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}

log = logging.getLogger("gitedge.kube")
T = TypeVar("T")


@dataclass(frozen=True)
class ObjectRef:
    """What an Event is about."""

    api_version: str
    kind: str
    name: str
    namespace: str
    uid: str | None = None


@dataclass(frozen=True)
class AgentStatus:
    """The status ConfigMap as read: conditions and the other facts of ``status.json``."""

    conditions: tuple[Condition, ...]
    fields: Mapping[str, Any]
    resource_version: str | None


def event_reason(action: Action) -> str:
    """The Event reason of a Plan change: StepStarted, StepAdvanced, PlanUpdated/Deleted."""
    if action.reason.startswith("advance to"):
        return "StepAdvanced"
    if action.reason.startswith("start"):
        return "StepStarted"
    return {"create": "PlanCreated", "update": "PlanUpdated"}.get(action.verb, "PlanDeleted")


def _api_error(what: str, e: ApiException) -> KubeApiError:
    status = int(e.status) if e.status else None
    reason = _REASONS.get(status or 0, "ApiError")
    message = str(e.reason or "")
    try:
        body = json.loads(e.body) if e.body else None
    except (ValueError, TypeError):
        body = None
    if isinstance(body, Mapping):
        word = body.get("reason")
        if isinstance(word, str) and word.isalpha() and word[:1].isupper():
            reason = word
        if isinstance(body.get("message"), str):
            message = body["message"]
    return KubeApiError(
        f"{what}: HTTP {status} {reason}: {scrub(message)}", status=status, reason=reason
    )


class Kube:
    """One cluster's API, for the agent. ``namespace`` holds the SUC Plans (``apply.namespace``);
    ``status_namespace`` holds the agent's status ConfigMap (the agent's own namespace)."""

    def __init__(
        self,
        api: k8s.ApiClient,
        *,
        namespace: str = "system-upgrade",
        status_namespace: str = "gitedge-system",
        request_timeout: float = 30.0,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.status_namespace = status_namespace
        self._timeout = request_timeout
        self._core = k8s.CoreV1Api(api)
        self._custom = k8s.CustomObjectsApi(api)
        self._batch = k8s.BatchV1Api(api)

    @classmethod
    def connect(
        cls,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        namespace: str = "system-upgrade",
        status_namespace: str | None = None,
        request_timeout: float = 30.0,
    ) -> Kube:
        """Credentials from ``kubeconfig`` when given, else the in-cluster service account when
        running in a pod, else ``$KUBECONFIG`` / ``~/.kube/config``. The status namespace
        defaults to ``$POD_NAMESPACE`` (the Deployment sets it), else ``gitedge-system``."""
        cfg = k8s.Configuration()
        try:
            if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
                k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
            else:
                k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=kubeconfig,
                    context=context,
                    client_configuration=cfg,
                    persist_config=False,
                )
        except (ConfigException, OSError, ValueError, TypeError) as e:
            raise KubeApiError(
                f"cannot load Kubernetes credentials: {scrub(str(e))}", reason="NoCredentials"
            ) from None
        cfg.retries = urllib3.Retry(total=1, connect=1, read=0, redirect=0, status=0)
        return cls(
            k8s.ApiClient(cfg),
            namespace=namespace,
            status_namespace=status_namespace or os.environ.get("POD_NAMESPACE", "gitedge-system"),
            request_timeout=request_timeout,
        )

    def close(self) -> None:
        self.api.close()  # type: ignore[no-untyped-call]

    def __enter__(self) -> Kube:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------ plumbing

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        kwargs.setdefault("_request_timeout", self._timeout)
        try:
            return fn(*args, **kwargs)
        except ApiException as e:
            raise _api_error(what, e) from None
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise KubeApiError(
                f"{what}: the Kubernetes API cannot be reached: {scrub(type(e).__name__)}",
                reason="Unreachable",
            ) from None

    def _json(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        response = self._call(what, fn, *args, _preload_content=False, **kwargs)
        try:
            return json.loads(response.data)
        except ValueError:
            raise KubeApiError(f"{what}: the API answered with something other than JSON") from None

    # ---------------------------------------------------------------------------------- reads

    def _items(self, what: str, fn: Callable[..., Any], *args: Any) -> list[Mapping[str, Any]]:
        """Every item of a list call, page by page."""
        out: list[Mapping[str, Any]] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": _PAGE}
            if token:
                kwargs["_continue"] = token
            page = self._json(what, fn, *args, **kwargs)
            out.extend(page.get("items") or ())
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return out

    def nodes(self) -> tuple[NodeFacts, ...]:
        """Every node, with its labels, architecture and kubelet version."""
        out = [
            NodeFacts.from_object(item) for item in self._items("list nodes", self._core.list_node)
        ]
        return tuple(sorted(out, key=lambda n: n.name))

    def owned_plans(self) -> tuple[PlanState, ...]:
        """The Plans of the namespace that carry gitedge's ``managed-by`` label (checked again
        here: nothing else ever reaches a decision, so nothing else is ever touched)."""
        what = f"list SUC Plans in {self.namespace}"
        try:
            page = self._json(
                what,
                self._custom.list_namespaced_custom_object,
                PLAN_GROUP,
                PLAN_VERSION,
                self.namespace,
                PLAN_PLURAL,
                label_selector=OWNED_SELECTOR,
            )
        except KubeApiError as e:
            if e.status == 404:
                raise KubeApiError(
                    f"{what}: the system-upgrade-controller's Plan CRD ({PLAN_PLURAL}."
                    f"{PLAN_GROUP}/{PLAN_VERSION}) is not installed, or the namespace is missing",
                    status=404,
                    reason="NotFound",
                ) from None
            raise
        plans = [PlanState.from_object(item) for item in page.get("items") or ()]
        return tuple(
            sorted(
                (p for p in plans if p.labels.get(MANAGED_BY_LABEL) == MANAGED_BY),
                key=lambda p: p.name,
            )
        )

    def plan_jobs(self, plans: Iterable[str]) -> tuple[JobFacts, ...]:
        """The Jobs SUC created for the Plans named ``plans`` (by their ``upgrade.cattle.io/plan``
        label; SUC's Jobs of other Plans are read, never used)."""
        names = set(plans)
        if not names:
            return ()
        what = f"list Jobs in {self.namespace}"
        items = self._items(what, self._batch.list_namespaced_job, self.namespace)
        jobs = (JobFacts.from_object(item) for item in items)
        return tuple(sorted((j for j in jobs if j.plan in names), key=lambda j: j.name))

    def snapshot(self) -> ClusterSnapshot:
        plans = self.owned_plans()
        return ClusterSnapshot(
            nodes=self.nodes(), plans=plans, jobs=self.plan_jobs(p.name for p in plans)
        )

    # --------------------------------------------------------------------------------- writes

    def execute(self, action: Action, *, now: datetime | None = None) -> dict[str, Any] | None:
        """Make one decided change and record an Event about it (``now``: the Event's time,
        default the wall clock); returns the Plan as the API stored it (None for a delete).

        A delete of a Plan already gone is done; a write on a changed Plan is a ``Conflict``.
        """
        stored = self._execute(action)
        self.event(
            self.plan_ref(action.name, stored),
            reason=event_reason(action),
            message=f"{action.reason} ({action.verb} Plan {action.name})",
            now=now or datetime.now(UTC),
        )
        return stored

    def _execute(self, action: Action) -> dict[str, Any] | None:
        if action.namespace != self.namespace:
            raise ValueError(f"action for namespace {action.namespace!r}, not {self.namespace!r}")
        what = f"{action.verb} SUC Plan {action.namespace}/{action.name}"
        if action.verb == "delete":
            if not action.resource_version:
                raise ValueError(f"{what}: a delete needs the resourceVersion it was decided on")
            options = k8s.V1DeleteOptions(
                preconditions=k8s.V1Preconditions(resource_version=action.resource_version),
                propagation_policy="Background",
            )
            try:
                self._call(
                    what,
                    self._custom.delete_namespaced_custom_object,
                    PLAN_GROUP,
                    PLAN_VERSION,
                    action.namespace,
                    PLAN_PLURAL,
                    action.name,
                    body=options,
                )
            except KubeApiError as e:
                if e.status != 404:
                    raise
            return None
        body = dict(action.manifest or {})
        labels = (body.get("metadata") or {}).get("labels") or {}
        if labels.get(MANAGED_BY_LABEL) != MANAGED_BY or body.get("apiVersion") != PLAN_API_VERSION:
            raise ValueError(f"{what}: refusing to write a Plan without gitedge's label")
        if action.verb == "create":
            stored = self._call(
                what,
                self._custom.create_namespaced_custom_object,
                PLAN_GROUP,
                PLAN_VERSION,
                action.namespace,
                PLAN_PLURAL,
                body,
            )
        else:
            if not (body.get("metadata") or {}).get("resourceVersion"):
                raise ValueError(f"{what}: an update needs the resourceVersion it was decided on")
            stored = self._call(
                what,
                self._custom.replace_namespaced_custom_object,
                PLAN_GROUP,
                PLAN_VERSION,
                action.namespace,
                PLAN_PLURAL,
                action.name,
                body,
            )
        return dict(stored) if isinstance(stored, Mapping) else None

    def event(
        self,
        about: ObjectRef,
        *,
        reason: str,
        message: str,
        now: datetime,
        warning: bool = False,
    ) -> bool:
        """Record a core/v1 Event about ``about``. Best effort: an Event that cannot be
        written is logged (scrubbed) and the pass goes on; returns whether it was written."""
        stamp = iso_z(now)
        body = k8s.CoreV1Event.from_dict(
            {
                "metadata": {
                    "name": f"{about.name}.{secrets.token_hex(8)}",
                    "namespace": about.namespace,
                    "labels": {MANAGED_BY_LABEL: MANAGED_BY},
                },
                "involvedObject": {
                    k: v
                    for k, v in {
                        "apiVersion": about.api_version,
                        "kind": about.kind,
                        "name": about.name,
                        "namespace": about.namespace,
                        "uid": about.uid,
                    }.items()
                    if v
                },
                "reason": reason,
                "message": scrub(message, limit=1024),
                "type": "Warning" if warning else "Normal",
                "source": {"component": COMPONENT},
                "reportingComponent": COMPONENT,
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
            }
        )
        try:
            self._call(
                f"create Event {reason} in {about.namespace}",
                self._core.create_namespaced_event,
                about.namespace,
                body,
            )
        except KubeApiError as e:
            log.warning("%s", e)
            return False
        return True

    def warn(self, reason: str, message: str, *, now: datetime) -> None:
        """A Warning Event about the agent (on its status ConfigMap), best effort."""
        self.event(self.status_ref(), reason=reason, message=message, now=now, warning=True)

    def plan_ref(self, name: str, stored: Mapping[str, Any] | None = None) -> ObjectRef:
        uid = ((stored or {}).get("metadata") or {}).get("uid")
        return ObjectRef(PLAN_API_VERSION, "Plan", name, self.namespace, str(uid) if uid else None)

    def status_ref(self) -> ObjectRef:
        return ObjectRef("v1", "ConfigMap", STATUS_CONFIGMAP, self.status_namespace)

    # --------------------------------------------------------------------------------- status

    def read_status(self) -> AgentStatus | None:
        """The status ConfigMap, or None when there is none yet. A ``status.json`` that does
        not parse reads as empty (it is rewritten whole on the next write)."""
        what = f"read ConfigMap {self.status_namespace}/{STATUS_CONFIGMAP}"
        try:
            obj = self._json(
                what,
                self._core.read_namespaced_config_map,
                STATUS_CONFIGMAP,
                self.status_namespace,
            )
        except KubeApiError as e:
            if e.status == 404:
                return None
            raise
        raw = (obj.get("data") or {}).get(STATUS_KEY)
        try:
            doc = json.loads(raw) if isinstance(raw, str) else {}
        except ValueError:
            doc = {}
        if not isinstance(doc, dict):
            doc = {}
        conditions = from_json(doc.pop("conditions", None))
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        return AgentStatus(tuple(conditions), doc, str(rv) if rv else None)

    def write_status(
        self,
        updates: Iterable[Condition],
        *,
        now: datetime,
        fields: Mapping[str, Any] | None = None,
    ) -> list[Condition]:
        """Fold ``updates`` into the stored conditions (:func:`conditions.merge`), derive
        ``Ready`` once, replace ``fields`` at the top level, and write it back on the version
        read (a concurrent writer makes it re-read and retry). Returns the conditions written."""
        updates = [c for c in updates]
        what = f"write ConfigMap {self.status_namespace}/{STATUS_CONFIGMAP}"
        for attempt in range(_WRITE_ATTEMPTS):
            current = self.read_status()
            previous = list(current.conditions) if current else []
            merged = merge(previous, updates, now=now)
            merged = merge(merged, [summarize(merged)], now=now)
            doc: dict[str, Any] = dict(current.fields) if current else {}
            doc.update(fields or {})
            doc["updated"] = iso_z(now)
            doc["conditions"] = to_json(merged)
            body = k8s.V1ConfigMap.from_dict(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {
                        "name": STATUS_CONFIGMAP,
                        "namespace": self.status_namespace,
                        "labels": {MANAGED_BY_LABEL: MANAGED_BY},
                        **(
                            {"resourceVersion": current.resource_version}
                            if current and current.resource_version
                            else {}
                        ),
                    },
                    "data": {STATUS_KEY: json.dumps(doc, indent=1, sort_keys=True)},
                }
            )
            try:
                if current is None:
                    self._call(
                        what,
                        self._core.create_namespaced_config_map,
                        self.status_namespace,
                        body,
                    )
                else:
                    self._call(
                        what,
                        self._core.replace_namespaced_config_map,
                        STATUS_CONFIGMAP,
                        self.status_namespace,
                        body,
                    )
            except KubeApiError as e:
                racing = e.reason in ("Conflict", "AlreadyExists")
                if racing and attempt + 1 < _WRITE_ATTEMPTS:
                    continue
                raise
            return merged
        raise AssertionError("unreachable")  # pragma: no cover
