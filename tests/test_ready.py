"""``Ready`` from one table (core/status/conditions.TABLE, issue 17): which step owns which condition,
which conditions feed ``Ready``, and in which order. A plan-step failure reaches ``Ready`` with
its own reason and message; offline is noted but never hides a more specific cause; ``Reported``
and ``BundleImported`` do not feed ``Ready``; every condition type the agent emits has a row.
The end-to-end tests run the real agent against its site (tests/test_agent.py: a real git
daemon, real registries)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import gitedge
from gitedge.agent.reconcile import _OWN_CONDITION, STEP_ORDER
from gitedge.core.status import conditions as cond
from gitedge.core.status.conditions import STEPS, TABLE, Condition, summarize
from tests.agentkit import DAY, START, fleet_files
from tests.test_agent import NEW, OLD, Site, at, conditions, first_sync, site  # noqa: F401

AMBIGUOUS = (
    "AmbiguousTarget: targets 'all' and 'other' both select cluster 's1' with the same "
    "priority but set k3s differently (version); give one a higher priority"
)
UP = [
    Condition("SourceReachable", "True", "Fetched", "main at abc"),
    Condition("SourceVerified", "True", "Verified", "abc verified"),
    Condition("RollbackRefused", "False", "Descends", "the branch descends"),
    Condition("ClockUntrusted", "False", "ClockSane", ""),
    Condition("Planned", "True", "Planned", "k3s v1.28.15+k3s1"),
    Condition("ImagesPinned", "True", "Pinned", "every image planned is named by digest"),
    Condition("Mirrored", "True", "Mirrored", "2 image(s) in the cache"),
    Condition("Applying", "False", "UpToDate", "k3s: up to date"),
    Condition("WindowClosed", "False", "NothingHeldBack", "no work waits for a window"),
]
OFFLINE = Condition("SourceReachable", "False", "SourceUnavailable", "git://127.0.0.1:1: refused")
CLOSED = [
    Condition("Applying", "False", "WaitingForWindow", "os: waits for window nights"),
    Condition("WindowClosed", "True", "OutsideWindow", "os: waits for window nights"),
]


def with_(*updates: Condition, base: list[Condition] = UP) -> list[Condition]:
    by_type = {c.type: c for c in base}
    by_type.update({c.type: c for c in updates})
    return list(by_type.values())


def ready(cs: list[Condition]) -> tuple[str, str, str]:
    r = summarize(cs)
    return (r.status, r.reason, r.message)


def test_a_failed_plan_step_is_ready_s_reason_not_the_waiting_mirror() -> None:
    # what a pass sets when _plan raises AmbiguousTarget (reconcile._failed), then mirror and
    # apply wait for the plan that is not there; WindowClosed is left from an earlier pass
    cs = with_(
        Condition("Planned", "False", "AmbiguousTarget", AMBIGUOUS),
        Condition("Mirrored", "False", "Waiting", "no plan: nothing to mirror"),
        Condition("Applying", "False", "Waiting", "no plan to apply"),
        CLOSED[1],
    )
    assert ready(cs) == ("False", "AmbiguousTarget", AMBIGUOUS)


def test_offline_never_hides_a_closed_window_and_is_noted() -> None:
    status, reason, message = ready(with_(OFFLINE, *CLOSED))
    assert (status, reason) == ("False", "WaitingForWindow")
    assert message.startswith("os: waits for window nights")
    assert "SourceReachable=False (SourceUnavailable: git://127.0.0.1:1: refused)" in message


def test_offline_never_hides_a_stalled_verify() -> None:
    stalled = Condition("SourceVerified", "False", "VerificationFailed", "commit c0ffee unsigned")
    status, reason, message = ready(with_(OFFLINE, stalled, *CLOSED))
    assert (status, reason) == ("False", "VerificationFailed")
    assert message.startswith("commit c0ffee unsigned") and "SourceUnavailable" in message


def test_offline_alone_keeps_an_up_to_date_site_ready() -> None:
    # the cluster runs what the last verified commit asks: offline is said, not a failure
    status, reason, message = ready(with_(OFFLINE))
    assert (status, reason) == ("True", "UpToDate") and "SourceUnavailable" in message
    assert ready(UP) == ("True", "UpToDate", "k3s: up to date")


@pytest.mark.parametrize(
    "stalled",
    [
        Condition("SourceVerified", "False", "VerificationFailed", "commit c0ffee unsigned"),
        Condition("Planned", "False", "AmbiguousTarget", AMBIGUOUS),
        Condition("Planned", "False", "UpgradePathError", "no path from v1.27 to v1.30"),
        Condition("ImagesPinned", "False", "DigestRequired", "os image by tag only"),
        Condition("Mirrored", "False", "ImageSignatureRefused", "image x not applied: unsigned"),
    ],
)
def test_a_stalled_earlier_step_comes_before_a_closed_window(stalled: Condition) -> None:
    assert ready(with_(stalled, *CLOSED)) == ("False", stalled.reason, stalled.message)


def test_step_order_decides_between_two_blockers() -> None:
    verify = Condition("SourceVerified", "False", "VerificationFailed", "commit c0ffee unsigned")
    clock = Condition("ClockUntrusted", "True", "ClockUntrusted", "the clock reads 2020")
    plan = Condition("Planned", "False", "AgentTooOld", "agent-too-old: commit c0ffee")
    mirror = Condition("Mirrored", "False", "DigestMismatch", "bad blob")
    assert ready(with_(mirror, plan, clock, verify))[1] == "VerificationFailed"
    assert ready(with_(mirror, plan, clock))[1] == "ClockUntrusted"
    assert ready(with_(mirror, plan))[1] == "AgentTooOld"
    refused = Condition("Applying", "False", "ImageSignatureRefused", "image y: unsigned")
    assert ready(with_(refused)) == ("False", "ImageSignatureRefused", "image y: unsigned")


def test_a_clock_that_could_not_be_checked_is_not_ready() -> None:
    # reconcile._failed sets the clock step's row Unknown: not its healthy False
    unknown = Condition("ClockUntrusted", "Unknown", "StateError", "state.db: locked")
    assert ready(with_(unknown)) == ("False", "StateError", "state.db: locked")


@pytest.mark.parametrize(
    "aside",
    [
        Condition("Reported", "False", "RegistryUnavailable", "reports.example: refused"),
        Condition("BundleImported", "False", "InvalidInput", "site.bundle: not a bundle"),
        Condition("MirrorsCurrent", "False", "MirrorBehind", "mirror 3 commits behind"),
        Condition("RegistryEndpoints", "False", "EndpointSkipped", "endpoint a skipped"),
    ],
)
def test_reported_bundles_and_side_news_do_not_feed_ready(aside: Condition) -> None:
    assert ready(with_(aside)) == ("True", "UpToDate", "k3s: up to date")
    assert ready(with_(aside, *CLOSED))[1] == "WaitingForWindow"


def test_the_table_is_in_step_order_and_names_each_step_s_own_condition() -> None:
    steps = [STEPS.index(r.step) for r in TABLE]
    assert steps == sorted(steps), "TABLE rows must be in step order: Ready takes the first"
    assert len({r.type for r in TABLE}) == len(TABLE)
    assert STEP_ORDER == ("sync", "verify", "clock", "plan", "mirror", "apply")
    for step in STEPS:  # a failed step sets exactly one condition False: its own
        assert [r.type for r in TABLE if r.step == step and r.primary] == [_OWN_CONDITION[step]]
    assert {r.type for r in TABLE if r.feed != "blocks"} == {
        "SourceReachable", "MirrorsCurrent", "BundleImported", "RegistryEndpoints", "Reported",
        "Ready",
    }  # fmt: skip
    assert cond.TYPES[0] == "Ready" and set(cond.TYPES) == {r.type for r in TABLE}


def _emitted_types(root: Path) -> dict[str, set[str]]:
    """Every condition type built anywhere in gitedge/: the first argument of each
    ``Condition(...)`` call, a string or a module-level string constant (``FOO = "Foo"``, read
    as ``FOO`` or ``mod.FOO``). Anything else is reported as unresolved, so a type built some
    new way fails the test below instead of slipping past it."""
    trees = {p: ast.parse(p.read_text()) for p in sorted(root.rglob("*.py"))}
    consts: dict[str, set[str]] = {}
    for tree in trees.values():
        for node in tree.body:
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                for t in node.targets:
                    if isinstance(t, ast.Name):
                        consts.setdefault(t.id, set()).add(node.value.value)
    found: dict[str, set[str]] = {}
    for path, tree in trees.items():
        reading = {  # conditions.from_json reads back what was written: it emits nothing
            id(n)
            for f in ast.walk(tree)
            if isinstance(f, ast.FunctionDef) and f.name == "from_json"
            for n in ast.walk(f)
        }
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "Condition"
                and id(node) not in reading
            ):
                continue
            where = f"{path.relative_to(root)}:{node.lineno}"
            kw = [k.value for k in node.keywords if k.arg == "type"]
            arg = node.args[0] if node.args else kw[0] if kw else ast.Constant(None)
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                values = {arg.value}
            elif isinstance(arg, ast.Name | ast.Attribute):
                name = arg.id if isinstance(arg, ast.Name) else arg.attr
                values = consts.get(name, {f"<unresolved {name}>"})
            elif (  # reconcile._failed: the failed step's own condition, from the table
                isinstance(arg, ast.Subscript)
                and isinstance(arg.value, ast.Name)
                and arg.value.id == "_OWN_CONDITION"
            ):
                values = set(_OWN_CONDITION.values())
            else:
                values = {f"<unresolved {ast.unparse(arg)}>"}
            for v in values:
                found.setdefault(v, set()).add(where)
    return found


def _without_row(emitted: dict[str, set[str]]) -> dict[str, list[str]]:
    rows = {r.type for r in TABLE}
    return {t: sorted(w) for t, w in emitted.items() if t not in rows}


def test_every_condition_type_the_agent_emits_has_a_table_row() -> None:
    emitted = _emitted_types(Path(gitedge.__file__).parent)
    missing = _without_row(emitted)
    assert not missing, f"condition types without a row in core/status/conditions.TABLE: {missing}"
    # the scan sees them all (it would miss a type spelled in a way it does not read)
    rows = {r.type for r in TABLE}
    assert rows - {"Ready"} <= set(emitted), sorted(rows - set(emitted))


def test_the_table_check_catches_a_new_type(tmp_path: Path) -> None:
    """A step that starts emitting a type without a row fails the test above: the scan reads
    it whether spelled out, named by a constant, or built some way it cannot read."""
    (tmp_path / "step.py").write_text(
        'NEW_ONE = "BrandNew"\nMIRRORED = "Mirrored"\n'
        "def f(kind: str) -> list[Condition]:\n"
        '    return [Condition(NEW_ONE, "True", "r"), Condition("Other", "True", "r"),\n'
        '            Condition(cond.MIRRORED, "True", "r"), Condition(kind, "True", "r"),\n'
        '            Condition(type="KwType", status="True", reason="r")]\n'
    )
    missing = _without_row(_emitted_types(tmp_path))
    assert set(missing) == {"BrandNew", "Other", "<unresolved kind>", "KwType"}
    assert missing["BrandNew"] == ["step.py:4"]


def test_a_plan_step_failure_reaches_ready_end_to_end(site: Site) -> None:  # noqa: F811
    first_sync(site)  # 12:00: the OS step waits for its window (WindowClosed=True)
    files = fleet_files(registry=site.registry, releases=NEW[:2], k3s=OLD[0],
                        os_image=f"{site.registry}/edge/os:1.0")  # fmt: skip
    other = files["targets.yaml"].replace("name: all", "name: other")
    files["other.yaml"] = other.replace(f"version: {OLD[0]}", f"version: {NEW[1]}")
    tip = site.fleet.commit(files, at=START + DAY)
    p = site.run(at(1, hour=12))
    assert p.tip == tip and p.outcomes["plan"] == "stalled"
    c = conditions(p)
    assert c["Planned"] == ("False", "AmbiguousTarget")
    assert c["Mirrored"] == ("False", "Waiting")  # what Ready said before: "no plan: ..."
    assert c["WindowClosed"][0] == "True"
    r = next(x for x in p.conditions if x.type == "Ready")
    assert (r.status, r.reason) == ("False", "AmbiguousTarget")
    assert r.message == p.errors["plan"] and "'all' and 'other'" in r.message
    assert "set k3s differently" in r.message and "no plan" not in r.message


def test_offline_and_a_closed_window_end_to_end(site: Site) -> None:  # noqa: F811
    first_sync(site)
    site.git.online = False
    p = site.run(at(1, hour=12))
    assert p.outcomes["sync"] == "retry" and p.outcomes["apply"] == "ok"
    c = conditions(p)
    assert c["SourceReachable"][0] == "False" and c["WindowClosed"] == ("True", "OutsideWindow")
    r = next(x for x in p.conditions if x.type == "Ready")
    applying = next(x for x in p.conditions if x.type == "Applying")
    assert (r.status, r.reason) == ("False", applying.reason) and applying.status == "False"
    assert r.message.startswith(applying.message) and "SourceReachable=False" in r.message


def test_offline_and_a_refused_commit_end_to_end(site: Site) -> None:  # noqa: F811
    first_sync(site)
    bad = site.fleet.commit(at=START + DAY, signed=False)
    p = site.run(at(1, hour=12))
    assert p.outcomes["verify"] == "stalled" and bad in p.errors["verify"]
    site.git.online = False  # offline: the fetched commit is verified again, still refused
    p = site.run(at(1, hour=13))
    assert p.outcomes["sync"] == "retry" and p.outcomes["verify"] == "stalled"
    c = conditions(p)
    assert c["SourceReachable"][0] == "False" and c["WindowClosed"] == ("True", "OutsideWindow")
    r = next(x for x in p.conditions if x.type == "Ready")
    assert (r.status, r.reason) == ("False", "VerificationFailed")
    assert r.message.startswith(p.errors["verify"]) and "SourceReachable=False" in r.message
