"""DESIGN.md section 6, "Compatibility": a signed commit that uses a field newer than the agent
is refused with ``agent-too-old`` (naming the field and the agent's version) and the agent keeps
planning from the last commit it understood; a commit invalid for another reason is invalid.
The agent end to end as in tests/test_agent.py (its site: a real git daemon, real registries)."""

from __future__ import annotations

from gitedge import __version__
from gitedge.core.fleet.compat import newer_than_agent
from gitedge.errors import Problem
from tests.agentkit import DAY, START, fleet_files
from tests.test_agent import Site, at, conditions, first_sync, site  # noqa: F401 (fixture)


def test_a_commit_for_a_newer_agent_keeps_the_last_understood_commit(site: Site) -> None:  # noqa: F811
    p = first_sync(site)
    understood = p.tip
    assert p.plan is not None and p.plan.os is not None
    files = fleet_files(registry=site.registry, releases=["v1.27.16+k3s1"], k3s="v1.27.16+k3s1",
                        os_image=f"{site.registry}/edge/os:1.0")  # fmt: skip
    newer = dict(files)
    newer["targets.yaml"] = files["targets.yaml"].replace(
        "upgrader: kairos}", "upgrader: kairos, rollbackOnFailure: true}"
    )
    tip = site.fleet.commit(newer, at=START + DAY)
    p = site.run(at(1, hour=12))
    assert p.tip == tip and p.outcomes["plan"] == "ok"  # verified, and planned from...
    c = conditions(p)
    assert c["Planned"] == ("False", "AgentTooOld") and c["Ready"] == ("False", "AgentTooOld")
    text = next(x.message for x in p.conditions if x.type == "Planned")
    assert text.startswith(f"agent-too-old: commit {tip[:12]} uses kinds or fields gitedge")
    assert __version__ in text and "rollbackOnFailure: unknown field" in text
    assert understood is not None and f"planning from {understood[:12]}" in text
    assert p.plan is not None and p.plan.os is not None  # ...the commit it understood
    assert p.plan.os.image == f"{site.registry}/edge/os:1.0"
    # the next pass too: it still knows which commit it understood
    p = site.run(at(1, hour=13))
    assert conditions(p)["Planned"] == ("False", "AgentTooOld")
    # a commit wrong for another reason is an invalid repo, not a newer one
    broken = dict(newer)
    broken["targets.yaml"] = newer["targets.yaml"].replace("v1.27.16+k3s1", "1.27")
    site.fleet.commit(broken, at=START + 2 * DAY)
    p = site.run(at(2, hour=12))
    assert p.outcomes["plan"] == "stalled"
    assert conditions(p)["Planned"] == ("False", "InvalidFleetRepo")


def test_only_unknown_kinds_and_fields_make_a_commit_newer_than_the_agent() -> None:
    field = Problem("t.yaml", 3, "UpgradeTarget/a: spec.os.rollbackOnFailure: unknown field")
    kind = Problem("k.yaml", 1, "unknown kind 'OsCatalog'; expected one of TrustPolicy")
    other = Problem("t.yaml", 4, "UpgradeTarget/a: spec.k3s.version: not a K3s version")
    assert newer_than_agent([field]) and newer_than_agent([field, kind])
    assert not newer_than_agent([field, other]) and not newer_than_agent([])
