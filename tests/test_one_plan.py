"""One plan per pass (issue 17): the apply step applies the plan the mirror step mirrored, and
plans again only when the cluster changed since the plan step read it.

Real parts as in tests/test_agent.py (its ``site`` fixture: git daemon, docker-registry upstream
and cache, signed commits); the planner is counted where each step calls it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from gitedge.agent.reconcile import Agent, PrintCluster
from gitedge.agent.steps import applyplans as applying
from gitedge.agent.steps import plan as planstep
from gitedge.core.config import AgentConfig, load_site_file
from gitedge.core.rollout.clusterstate import ClusterSnapshot
from tests.agentkit import START, fleet_files
from tests.test_agent import OLD, Site, at, site, upstream_image  # noqa: F401


class NodeJoins(PrintCluster):
    """The print-mode cluster, where an arm64 node joins after the first read (the plan step's)
    and before the apply step reads the cluster again."""

    reads = 0

    def snapshot(self) -> ClusterSnapshot:
        snap = super().snapshot()
        self.reads += 1
        if self.reads == 1:
            return snap
        joined = replace(snap.nodes[0], name="store-0042-arm64", architecture="arm64")
        return replace(snap, nodes=(*snap.nodes, joined))


def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    calls = {"plan step": 0, "apply step": 0}

    def counting(where: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kw: Any) -> Any:
            calls[where] += 1
            return real(*args, **kw)

        return call

    monkeypatch.setattr(planstep, "make_plan", counting("plan step", planstep.make_plan))
    monkeypatch.setattr(applying, "plan", counting("apply step", applying.plan))
    return calls


def run(s: Site, cluster: type[PrintCluster]) -> Any:
    upstream_image(s, "edge/os:1.0")
    files = fleet_files(
        registry=s.registry, releases=OLD, k3s=OLD[0], os_image=f"{s.registry}/edge/os:1.0"
    )
    s.fleet.commit(files, at=START)
    config = load_site_file(s.config_path.read_bytes(), path=str(s.config_path))
    assert isinstance(config, AgentConfig)
    agent = Agent(config, cluster=cluster(config=config, out=s.printed.append))
    try:
        return agent.reconcile(now=at(0))  # 02:00: in the window, the OS step is printed
    finally:
        agent.close()


def test_an_unchanged_cluster_is_planned_once_and_the_mirrored_plan_applied(
    site: Site,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = counted(monkeypatch)
    p = run(site, PrintCluster)
    assert p.outcomes["mirror"] == "ok" and p.outcomes["apply"] == "ok"
    assert calls == {"plan step": 1, "apply step": 0}
    assert p.applied.plan.os is p.plan.os and p.applied.plan.k3s is p.plan.k3s
    assert site.printed  # the OS step's Plan, rendered from the mirrored plan


def test_a_node_that_joins_between_plan_and_apply_makes_the_apply_step_plan_again(
    site: Site,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = counted(monkeypatch)
    p = run(site, NodeJoins)
    assert p.outcomes["mirror"] == "ok" and p.outcomes["apply"] == "ok"
    assert calls == {"plan step": 1, "apply step": 1}
    assert p.applied.plan.os is not p.plan.os
    assert {n.architecture for n in p.applied.snapshot.nodes} == {"amd64", "arm64"}
