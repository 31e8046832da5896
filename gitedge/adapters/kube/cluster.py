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
  after ``SYSTEM_UPGRADE_JOB_ACTIVE_DEADLINE_SECONDS_MAX`` (:mod:`gitedge.core.rollout.readback`);
- writes core/v1 Events about the Plans it changes and about failures, and keeps its status in
  the ConfigMap ``gitedge-status`` (:mod:`gitedge.adapters.kube.status`).

Credentials, timeouts, paging and the one error type: :mod:`gitedge.adapters.kube.connection`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from kubernetes import client as k8s

from gitedge.adapters.kube.status import KubeStatus, ObjectRef
from gitedge.core.rollout.clusterstate import ClusterSnapshot, JobFacts, NodeFacts, PlanState
from gitedge.core.rollout.planmanifests import Action
from gitedge.core.rollout.sucplans import API_VERSION as PLAN_API_VERSION
from gitedge.core.rollout.sucplans import MANAGED_BY, MANAGED_BY_LABEL
from gitedge.errors import KubeApiError

__all__ = ["OWNED_SELECTOR", "PLAN_GROUP", "PLAN_PLURAL", "PLAN_VERSION", "Kube", "event_reason"]

PLAN_GROUP, PLAN_VERSION, PLAN_PLURAL = "upgrade.cattle.io", "v1", "plans"
OWNED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"


def event_reason(action: Action) -> str:
    """The Event reason of a Plan change: StepStarted, StepAdvanced, PlanUpdated/Deleted."""
    if action.reason.startswith("advance to"):
        return "StepAdvanced"
    if action.reason.startswith("start"):
        return "StepStarted"
    return {"create": "PlanCreated", "update": "PlanUpdated"}.get(action.verb, "PlanDeleted")


class Kube(KubeStatus):
    """One cluster's API, for the agent: its nodes, gitedge's SUC Plans and their Jobs, the
    Plan changes it decided (:class:`KubeStatus`: its status and Events; :class:`KubeClient`:
    the connection)."""

    def nodes(self) -> tuple[NodeFacts, ...]:
        """Every node, with its labels, architecture and kubelet version."""
        items = self.list_items("list nodes", self.core.list_node)
        out = [NodeFacts.from_object(item) for item in items]
        return tuple(sorted(out, key=lambda n: n.name))

    def owned_plans(self) -> tuple[PlanState, ...]:
        """The Plans of the namespace that carry gitedge's ``managed-by`` label (checked again
        here: nothing else ever reaches a decision, so nothing else is ever touched)."""
        what = f"list SUC Plans in {self.namespace}"
        try:
            page = self.call_json(
                what,
                self.custom.list_namespaced_custom_object,
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
        items = self.list_items(what, self.batch.list_namespaced_job, self.namespace)
        jobs = (JobFacts.from_object(item) for item in items)
        return tuple(sorted((j for j in jobs if j.plan in names), key=lambda j: j.name))

    def snapshot(self) -> ClusterSnapshot:
        plans = self.owned_plans()
        return ClusterSnapshot(
            nodes=self.nodes(), plans=plans, jobs=self.plan_jobs(p.name for p in plans)
        )

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
                self.call(
                    what,
                    self.custom.delete_namespaced_custom_object,
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
            stored = self.call(
                what,
                self.custom.create_namespaced_custom_object,
                PLAN_GROUP,
                PLAN_VERSION,
                action.namespace,
                PLAN_PLURAL,
                body,
            )
        else:
            if not (body.get("metadata") or {}).get("resourceVersion"):
                raise ValueError(f"{what}: an update needs the resourceVersion it was decided on")
            stored = self.call(
                what,
                self.custom.replace_namespaced_custom_object,
                PLAN_GROUP,
                PLAN_VERSION,
                action.namespace,
                PLAN_PLURAL,
                action.name,
                body,
            )
        return dict(stored) if isinstance(stored, Mapping) else None

    def plan_ref(self, name: str, stored: Mapping[str, Any] | None = None) -> ObjectRef:
        uid = ((stored or {}).get("metadata") or {}).get("uid")
        return ObjectRef(PLAN_API_VERSION, "Plan", name, self.namespace, str(uid) if uid else None)
