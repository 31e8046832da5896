"""The report step of a real agent pass (issue 13): a target without ``window`` (optional by
design: apply once mirrored) used to crash every pass in ``reconcile._metrics`` (``.get("open")``
on None), so the status was never written to the cluster. Real ``git daemon``, real
``docker-registry`` upstream and cache, commits signed in process (``tests/test_agent.py``'s site).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from gitedge.agent.reconcile import Agent, PrintCluster
from gitedge.core.conditions import Condition
from gitedge.core.config import AgentConfig, load_site_file
from tests.agentkit import START, fleet_files
from tests.test_agent import OLD, Site, at, site, upstream_image

__all__ = ["site"]  # the fixture, imported for pytest


class StatusRecorder(PrintCluster):
    """Print mode, but keeps what the report step writes to the cluster (the status ConfigMap in
    ``suc`` mode: ``Kube.write_status`` gets the same arguments)."""

    def __init__(self, *, config: AgentConfig, out: Any) -> None:
        super().__init__(config=config, out=out)
        self.written: list[tuple[list[Condition], Mapping[str, Any] | None]] = []

    def write_status(
        self,
        updates: Iterable[Condition],
        *,
        now: datetime,
        fields: Mapping[str, Any] | None = None,
    ) -> list[Condition]:
        conditions = list(updates)
        self.written.append((conditions, fields))
        return conditions


def test_a_target_without_window_is_reported_open_and_the_status_written(site: Site) -> None:
    upstream_image(site, "edge/os:1.0")
    files = fleet_files(registry=site.registry, releases=OLD, k3s=OLD[0],
                        os_image=f"{site.registry}/edge/os:1.0", window=False)  # fmt: skip
    site.fleet.commit(files, at=START)
    config = load_site_file(site.config_path.read_bytes(), path=str(site.config_path))
    assert isinstance(config, AgentConfig)
    cluster = StatusRecorder(config=config, out=site.printed.append)
    agent = Agent(config, cluster=cluster)
    try:
        p = agent.reconcile(now=at(0, hour=12))  # 12:00: no window to wait for
        assert p.outcomes["verify"] == "ok" and p.outcomes["mirror"] == "ok", p.errors
        assert p.status["windows"] == {"k3s": None, "os": None}
        assert len(cluster.written) == 1
        conditions, fields = cluster.written[0]
        assert fields is not None and fields["windows"] == {"k3s": None, "os": None}
        assert {c.type for c in conditions} >= {"SourceVerified", "Mirrored", "Ready"}
        for component in ("k3s", "os"):
            assert agent.metrics.get("gitedge_window_open", {"component": component}) == 1.0
        assert agent.state.get_doc("status") == p.status
    finally:
        agent.close()
