"""What the agent records about itself in the cluster: its status ConfigMap ``gitedge-status``
(key ``status.json``: the conditions of :mod:`gitedge.core.status.conditions`, ``Ready`` summarised
once, and a few facts) and core/v1 Events about the objects it changes and about failures.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubernetes import client as k8s

from gitedge.adapters.kube.connection import KubeClient
from gitedge.core.rollout.sucplans import MANAGED_BY, MANAGED_BY_LABEL
from gitedge.core.status.conditions import Condition, from_json, merge, summarize, to_json
from gitedge.core.timefmt import iso_z
from gitedge.errors import KubeApiError, scrub

__all__ = ["COMPONENT", "STATUS_CONFIGMAP", "STATUS_KEY", "AgentStatus", "KubeStatus", "ObjectRef"]

STATUS_CONFIGMAP = "gitedge-status"
STATUS_KEY = "status.json"
COMPONENT = "gitedge"
_WRITE_ATTEMPTS = 3

log = logging.getLogger("gitedge.kube")


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


class KubeStatus(KubeClient):
    """The agent's status ConfigMap and its Events, on top of :class:`KubeClient`."""

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
            self.call(
                f"create Event {reason} in {about.namespace}",
                self.core.create_namespaced_event,
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

    def status_ref(self) -> ObjectRef:
        return ObjectRef("v1", "ConfigMap", STATUS_CONFIGMAP, self.status_namespace)

    def read_status(self) -> AgentStatus | None:
        """The status ConfigMap, or None when there is none yet. A ``status.json`` that does
        not parse reads as empty (it is rewritten whole on the next write)."""
        what = f"read ConfigMap {self.status_namespace}/{STATUS_CONFIGMAP}"
        try:
            obj = self.call_json(
                what,
                self.core.read_namespaced_config_map,
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
                    self.call(
                        what,
                        self.core.create_namespaced_config_map,
                        self.status_namespace,
                        body,
                    )
                else:
                    self.call(
                        what,
                        self.core.replace_namespaced_config_map,
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
