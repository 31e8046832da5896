"""The cluster of ``apply.mode: print``: nodes from the config, Plans printed instead of applied.

``apply.mode: suc`` talks to the real API through :class:`gitedge.adapters.kube.Kube`; both
satisfy :class:`gitedge.agent.applying.ClusterApi`, so the reconcile pass is the same code.

A printed Plan is remembered as if the cluster held it with no status yet (in the agent's state
once :meth:`PrintCluster.remember_in` is given it, so across passes and restarts): the next pass
sees the step as started and prints nothing again until the fleet repo changes what the Plan
should be. Nothing is sent anywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import yaml

from gitedge.adapters.state import State
from gitedge.core.applying import Action, ClusterSnapshot, NodeFacts, PlanState
from gitedge.core.clusterstate import HOSTNAME_LABEL
from gitedge.core.conditions import Condition
from gitedge.core.config import AgentConfig
from gitedge.core.suc import CONTROL_PLANE

__all__ = ["PrintCluster"]

PRINTED_DOC = "printed-plans"


class PrintCluster:
    """The cluster as the config's ``cluster.status`` describes it (one server node per
    architecture); every action printed as the SUC Plan it would apply."""

    def __init__(self, *, config: AgentConfig, out: Callable[[str], None]) -> None:
        self.config = config
        self.out = out
        self.printed: list[Action] = []
        self._plans: dict[str, dict[str, Any]] = {}  # name -> the Plan as printed
        self._version = 0
        self._state: State | None = None

    def remember_in(self, state: State) -> None:
        """Keep the printed Plans in the agent's state (the Agent calls this)."""
        self._state = state
        doc = state.get_doc(PRINTED_DOC) or {}
        self._plans = dict(doc.get("plans") or {})
        self._version = int(doc.get("version") or 0)

    def snapshot(self) -> ClusterSnapshot:
        plans = tuple(PlanState.from_object(m) for _, m in sorted(self._plans.items()))
        status = self.config.cluster.status
        if status.k3s_version is None:
            return ClusterSnapshot(nodes=(), plans=plans)
        arches = status.arches or ("",)
        names = [f"{self.config.cluster.name}-{arch or 'node'}" for arch in arches]
        nodes = tuple(
            NodeFacts(
                name=name,
                # hostname: SUC selects only nodes that have it, so a printed Plan is pending
                labels={CONTROL_PLANE: "true", "kubernetes.io/os": "linux", HOSTNAME_LABEL: name},
                architecture=arch,
                kubelet_version=status.k3s_version,
            )
            for name, arch in zip(names, arches, strict=True)
        )
        return ClusterSnapshot(nodes=nodes, plans=plans)

    def execute(self, action: Action, *, now: datetime | None = None) -> dict[str, Any] | None:
        self.printed.append(action)
        head = f"# {action.verb} {action.namespace}/{action.name}: {action.reason}"
        body = yaml.safe_dump(dict(action.manifest), sort_keys=False) if action.manifest else ""
        self.out(f"---\n{head}\n{body}".rstrip("\n"))
        stored: dict[str, Any] | None = None
        if action.verb == "delete" or action.manifest is None:
            self._plans.pop(action.name, None)
        else:
            self._version += 1
            stored = dict(action.manifest)
            meta = {**stored.get("metadata", {}), "resourceVersion": str(self._version)}
            stored["metadata"] = meta
            self._plans[action.name] = stored
        if self._state is not None:
            self._state.put_doc(PRINTED_DOC, {"plans": self._plans, "version": self._version})
        return stored

    def warn(self, reason: str, message: str, *, now: datetime) -> None:
        self.out(f"# warning {reason}: {message}")

    def write_status(
        self,
        updates: Iterable[Condition],
        *,
        now: datetime,
        fields: Mapping[str, Any] | None = None,
    ) -> list[Condition]:
        """Nowhere to write: the status lives in the state dir (``gitedge status``)."""
        return list(updates)
