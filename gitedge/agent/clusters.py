"""The cluster of ``apply.mode: print``: nodes from the config, Plans printed instead of applied.

``apply.mode: suc`` talks to the real API through :class:`gitedge.adapters.kube.cluster.Kube`; both
satisfy :class:`gitedge.agent.steps.applyplans.ClusterApi`, so the reconcile pass is the same code.

Print mode is a dry run against the cluster the config describes: every pass decides from that
description alone (no Plan is ever there, none ever finishes), so what it decides is what the
agent would apply now. A Plan is printed when it differs from what was last printed under its
name (kept in the agent's state once :meth:`PrintCluster.remember_in` is given it, so across
passes and restarts): a pending Plan is printed once, not once per pass. Nothing is sent anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import yaml

from gitedge.adapters.state import State
from gitedge.core.config import AgentConfig
from gitedge.core.rollout.clusterstate import HOSTNAME_LABEL, ClusterSnapshot, NodeFacts
from gitedge.core.rollout.planmanifests import Action
from gitedge.core.rollout.sucplans import CONTROL_PLANE
from gitedge.core.status.conditions import Condition

__all__ = ["PrintCluster"]

PRINTED_DOC = "printed-plans"


class PrintCluster:
    """The cluster as the config's ``cluster.status`` describes it (one server node per
    architecture); every action printed as the SUC Plan it would apply."""

    def __init__(self, *, config: AgentConfig, out: Callable[[str], None]) -> None:
        self.config = config
        self.out = out
        self.printed: list[Action] = []
        self._printed: dict[str, dict[str, Any] | None] = {}  # name -> as last printed
        self._state: State | None = None

    def remember_in(self, state: State) -> None:
        """Keep the printed Plans in the agent's state (the Agent calls this)."""
        self._state = state
        doc = state.get_doc(PRINTED_DOC)  # only remembers what was printed: else print again
        self._printed = dict(doc) if isinstance(doc, dict) else {}

    def snapshot(self) -> ClusterSnapshot:
        status = self.config.cluster.status
        if status.k3s_version is None:
            return ClusterSnapshot(nodes=())
        arches = status.arches or ("",)
        names = [f"{self.config.cluster.name}-{arch or 'node'}" for arch in arches]
        nodes = tuple(
            NodeFacts(
                name=name,
                # as on a real node (SUC selects only nodes with a hostname label)
                labels={CONTROL_PLANE: "true", "kubernetes.io/os": "linux", HOSTNAME_LABEL: name},
                architecture=arch,
                kubelet_version=status.k3s_version,
            )
            for name, arch in zip(names, arches, strict=True)
        )
        return ClusterSnapshot(nodes=nodes)

    def execute(self, action: Action, *, now: datetime | None = None) -> dict[str, Any] | None:
        # as JSON (what the state keeps), so a Plan printed before a restart compares equal
        manifest = json.loads(json.dumps(action.manifest)) if action.manifest is not None else None
        if action.name in self._printed and self._printed[action.name] == manifest:
            return manifest  # printed already, unchanged
        self.printed.append(action)
        head = f"# {action.verb} {action.namespace}/{action.name}: {action.reason}"
        body = yaml.safe_dump(manifest, sort_keys=False) if manifest else ""
        self.out(f"---\n{head}\n{body}".rstrip("\n"))
        self._printed[action.name] = manifest
        if self._state is not None:
            self._state.put_doc(PRINTED_DOC, self._printed)
        return manifest

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
