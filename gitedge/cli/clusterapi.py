"""The cluster a pass applies to, as ``apply.mode`` says: ``print`` prints the SUC Plans on
stdout; ``suc`` talks to the cluster's API (the pod's service account in the cluster, else
``$KUBECONFIG`` / ``~/.kube/config``). Used by ``run`` (one pass) and ``bundle import``."""

from __future__ import annotations

from typing import Any

from gitedge.agent.clusters import PrintCluster
from gitedge.core.config import AgentConfig


def cluster_api(config: AgentConfig) -> Any:
    if config.apply.mode == "print":
        return PrintCluster(config=config, out=print)
    from gitedge.adapters.kube.cluster import Kube  # kubernetes (~0.15 s, 8 MiB) for mode suc only

    return Kube.connect(namespace=config.apply.namespace)
