"""The kube adapter and the apply step over real HTTP: the official ``kubernetes`` client, loaded
from a kubeconfig with a bearer token, against tests/kubeapi.py (an API emulator on 127.0.0.1
that enforces deploy/'s RBAC for the agent's ServiceAccount) with SUC's behaviour stood in.

Covers: the first pass creates the K3s server/agent Plans, labelled, with Events and the status
ConfigMap; an update racing another writer gets 409, re-reads, keeps the other writer's label and
goes through (and a conflict that persists is reported); the next minor starts only when the nodes
carry SUC's done label for the current hash and their kubelets report the step; a three-minor path
completed one step per pass, then the OS; nothing written to Plans outside the window (a running
step finishes, SUC starts nothing new); API errors (403 from RBAC and from the server, 500, the CRD
missing, the API unreachable, a name taken by someone else's Plan) surfaced as conditions and
Warning Events without the bearer token; nothing deleted that gitedge does not own, even when the
label is removed between read and delete; node list paging; the status ConfigMap keeping the other
steps' conditions; and that the story uses every RBAC grant in deploy/ (least privilege).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import gitedge.adapters.kube as kube_module
from gitedge.adapters.kube import Kube
from gitedge.agent.applying import ApplyResult, apply_step, report, status_fields
from gitedge.core.conditions import Condition
from gitedge.core.suc import AGENT_PLAN, OS_PLAN, SERVER_PLAN
from gitedge.errors import KubeApiError
from tests import fleetstory as fs
from tests.kubeapi import DONE, KubeEmulator, load_deploy_rbac
from tests.sucsim import SucSim, digest_status

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
GRANTS = load_deploy_rbac(DEPLOY)
NS = "system-upgrade"
TOKEN = "s3cr3t-bearer-token-do-not-log"


@pytest.fixture
def api() -> Iterator[KubeEmulator]:
    with KubeEmulator(token=TOKEN, grants=GRANTS) as emulator:
        for name, cp in fs.NODES:
            emulator.add_node(name, kubelet=fs.START, control_plane=cp)
        yield emulator


@pytest.fixture
def sim(api: KubeEmulator) -> SucSim:
    """SUC over the emulator (tests/sucsim.py), its clock at the window's 02:00."""
    return SucSim(api, now=fs.IN_WINDOW, namespace=NS)


@pytest.fixture
def kube(api: KubeEmulator, tmp_path: Path) -> Iterator[Kube]:
    with Kube.connect(
        kubeconfig=str(api.kubeconfig(tmp_path / "kubeconfig")), request_timeout=10
    ) as k:
        yield k


def run_pass(kube: Kube, *, now=fs.IN_WINDOW, fleet=None) -> tuple[ApplyResult, dict[str, Any]]:
    result = apply_step(
        api=kube, fleet=fleet or fs.fleet(), cluster="store-1", labels={}, site=fs.SITE, now=now
    )
    report(kube, result.conditions, now=now, fields=status_fields(result))
    return result, status_of(kube)


def status_of(kube: Kube) -> dict[str, Any]:
    status = kube.read_status()
    assert status is not None
    return {
        "conditions": {c.type: c for c in status.conditions},
        **status.fields,
    }


def plan_versions(api: KubeEmulator) -> dict[str, str]:
    return {p["metadata"]["name"]: p["spec"]["version"] for p in api.items("plans", NS)}


def status_json(api: KubeEmulator) -> str:
    return api.get("configmaps", "gitedge-status", "gitedge-system")["data"]["status.json"]


# ------------------------------------------------------------------------------- creating


def test_first_pass_creates_the_owned_k3s_pair_with_events_and_status(api, kube):
    result, status = run_pass(kube)
    assert result.error is None
    plans = {p["metadata"]["name"]: p for p in api.items("plans", NS)}
    assert set(plans) == {SERVER_PLAN, AGENT_PLAN}
    for p in plans.values():
        assert p["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "gitedge"
        assert p["spec"]["version"] == fs.PATH[0]
        assert p["spec"]["upgrade"]["image"].startswith(
            "cache.site.internal:5000/rancher/k3s-upgrade@sha256:"
        )
    events = api.items("events", NS)
    assert sorted((e["reason"], e["involvedObject"]["name"]) for e in events) == [
        ("StepStarted", AGENT_PLAN),
        ("StepStarted", SERVER_PLAN),
    ]
    assert all(
        e["involvedObject"]["uid"] == plans[e["involvedObject"]["name"]]["metadata"]["uid"]
        for e in events
    )
    conds = status["conditions"]
    assert (conds["Applying"].status, conds["Applying"].reason) == ("True", "StepStarted")
    assert (conds["Ready"].status, conds["Ready"].reason) == ("False", "StepStarted")
    assert status["k3s"]["path"] == list(fs.PATH) and status["k3s"]["step"] == fs.PATH[0]
    # a second pass changes nothing: Plans are read back, not remembered
    writes = len(api.writes("plans"))
    run_pass(kube)
    assert len(api.writes("plans")) == writes


# ---------------------------------------------------------------------- conflicts, advance


def finish_step(sim: SucSim) -> None:
    sim.settle()


def test_update_racing_another_writer_rereads_and_keeps_its_change(api, kube, sim):
    run_pass(kube)
    finish_step(sim)

    def other_writer(emulator: KubeEmulator) -> None:
        emulator.modify(
            "plans", SERVER_PLAN, NS, lambda o: o["metadata"]["labels"].update(team="ops")
        )

    api.before("PUT", "plans", other_writer)
    result, status = run_pass(kube)
    assert result.error is None
    puts = [(r.name, r.code) for r in api.writes("plans") if r.method == "PUT"]
    assert puts[0] == (SERVER_PLAN, 409)
    assert puts[1:] == [(SERVER_PLAN, 200), (AGENT_PLAN, 200)]
    server = api.get("plans", SERVER_PLAN, NS)
    assert server["spec"]["version"] == fs.PATH[1]
    assert server["metadata"]["labels"]["team"] == "ops"  # the other writer's label kept
    assert status["conditions"]["Applying"].reason == "StepStarted"


def test_a_conflict_that_persists_is_reported(api, kube, sim):
    run_pass(kube)
    finish_step(sim)
    for _ in range(3):
        api.before(
            "PUT",
            "plans",
            lambda e: e.modify(
                "plans", SERVER_PLAN, NS, lambda o: o["metadata"]["labels"].update(x="y")
            ),
        )
    result, status = run_pass(kube)
    assert isinstance(result.error, KubeApiError) and result.error.status == 409
    assert (status["conditions"]["Applying"].status, status["conditions"]["Applying"].reason) == (
        "False",
        "Conflict",
    )
    assert plan_versions(api)[SERVER_PLAN] == fs.PATH[0]


def test_next_minor_only_when_every_node_carries_the_done_label(api, kube, sim):
    run_pass(kube)
    sim.now = fs.OUT_OF_WINDOW
    sim.reconcile()  # SUC resolves the Plans' status, starts no job (its window is closed)
    assert sim.starts() == []
    hashes = {p["metadata"]["name"]: p["status"]["latestHash"] for p in api.items("plans", NS)}
    assert hashes[SERVER_PLAN] == digest_status(api.get("plans", SERVER_PLAN, NS))

    def upgraded(node: str, plan: str) -> None:
        def change(o):
            o["metadata"]["labels"][DONE + plan] = hashes[plan]
            o["status"]["nodeInfo"]["kubeletVersion"] = fs.PATH[0]

        api.modify("nodes", node, "", change)

    upgraded("server-0", SERVER_PLAN)
    upgraded("agent-0", AGENT_PLAN)
    writes = len(api.writes("plans"))
    _, status = run_pass(kube)
    assert len(api.writes("plans")) == writes  # agent-1 is not done: nothing moves
    assert "gitedge-k3s-agent 1/2 nodes done" in status["conditions"]["Applying"].message
    # a label with another hash (an older step's) does not count either
    api.modify(
        "nodes", "agent-1", "", lambda o: o["metadata"]["labels"].update({DONE + AGENT_PLAN: "0ld"})
    )
    run_pass(kube)
    assert plan_versions(api) == {SERVER_PLAN: fs.PATH[0], AGENT_PLAN: fs.PATH[0]}
    upgraded("agent-1", AGENT_PLAN)
    _, status = run_pass(kube)
    assert plan_versions(api) == {SERVER_PLAN: fs.PATH[1], AGENT_PLAN: fs.PATH[1]}
    assert {e["reason"] for e in api.items("events", NS)} >= {"StepAdvanced"}
    # right after the advance SUC has not resolved the new spec: still not done, nothing moves
    writes = len(api.writes("plans"))
    run_pass(kube)
    assert len(api.writes("plans")) == writes


def test_three_minor_path_completed_one_step_at_a_time_then_the_os(api, kube, sim):
    seen: list[dict[str, str]] = []
    for _ in range(8):
        result, status = run_pass(kube)
        assert result.error is None
        seen.append(plan_versions(api))
        finish_step(sim)
        if status["conditions"]["Applying"].reason == "UpToDate":
            break
    k3s_steps = [v[SERVER_PLAN] for v in seen]
    assert k3s_steps[:3] == list(fs.PATH)  # one minor per pass, in order
    assert all(v.get(AGENT_PLAN) == v[SERVER_PLAN] for v in seen)
    assert OS_PLAN not in seen[2] and seen[3][OS_PLAN] == "1.4.2"  # the OS after K3s
    assert {n["status"]["nodeInfo"]["kubeletVersion"] for n in api.items("nodes")} == {fs.PATH[-1]}
    os_hash = digest_status(api.get("plans", OS_PLAN, NS))
    assert all(n["metadata"]["labels"][DONE + OS_PLAN] == os_hash for n in api.items("nodes"))
    conds = status["conditions"]
    assert (conds["Ready"].status, conds["Ready"].reason) == ("True", "UpToDate")
    assert status["k3s"]["running"] == fs.PATH[-1] and status["k3s"]["path"] == []


# --------------------------------------------------------------------------------- window


def test_no_plan_written_outside_the_window(api, kube):
    result, status = run_pass(kube, now=fs.OUT_OF_WINDOW)
    assert api.writes("plans") == [] and api.items("events", NS) == []
    held = status["conditions"]["WindowClosed"]
    assert (held.status, held.reason) == ("True", "OutsideWindow")
    assert "2026-11-24T01:00:00+00:00" in held.message
    assert result.retry_after == (fs.NEXT_OPEN - fs.OUT_OF_WINDOW).total_seconds()
    assert status["k3s"]["nextOpen"] == "2026-11-24T01:00:00Z"


def test_a_running_step_finishes_after_the_window_closes_and_the_next_waits(api, kube):
    """SUC keeps a Plan going past the window's end while status.applying is non-empty
    (handle_upgrade.go); gitedge writes nothing new until the next window."""
    late = fs.NEXT_OPEN + timedelta(hours=3, minutes=55)  # 04:55, the window ends at 05:00
    sim = SucSim(api, now=late, namespace=NS, job_minutes=4)  # agents: 04:59-05:03
    run_pass(kube, now=late)
    sim.reconcile()  # the server's job starts inside the window
    assert api.get("plans", SERVER_PLAN, NS)["status"]["applying"] == ["server-0"]
    sim.advance(minutes=6)  # 05:01: the window has closed, the agents' jobs run on
    running = sorted(node for _, node, _, end in sim.upgrades() if end is None)
    assert running == ["agent-0", "agent-1"]  # started 04:59, they end at 05:03
    assert api.get("nodes", "server-0")["status"]["nodeInfo"]["kubeletVersion"] == fs.PATH[0]
    _, status = run_pass(kube, now=sim.now)
    assert status["conditions"]["Applying"].reason == "StepRunning"
    writes = len(api.writes("plans"))
    sim.settle()  # the agents' jobs end after 05:00: SUC's applying exception
    assert [n["status"]["nodeInfo"]["kubeletVersion"] for n in api.items("nodes")] == [
        fs.PATH[0]
    ] * 3
    _, status = run_pass(kube, now=sim.now)
    assert len(api.writes("plans")) == writes  # the next minor waits for the next window
    assert status["conditions"]["WindowClosed"].status == "True"
    run_pass(kube, now=fs.NEXT_OPEN + timedelta(days=1))
    assert plan_versions(api)[SERVER_PLAN] == fs.PATH[1]


# ----------------------------------------------------------------------------- API errors


def assert_no_token(api: KubeEmulator) -> None:
    assert TOKEN not in status_json(api)
    for e in api.items("events"):
        assert TOKEN not in json.dumps(e)


def test_forbidden_create_is_a_condition_and_a_warning_event(api, kube):
    api.fail("POST", "plans", 403, message="admission webhook says no")
    _, status = run_pass(kube)
    applying = status["conditions"]["Applying"]
    assert (applying.status, applying.reason) == ("False", "Forbidden")
    assert "admission webhook says no" in applying.message and "HTTP 403" in applying.message
    assert status["conditions"]["Ready"].reason == "Forbidden"
    warnings = [e for e in api.items("events", "gitedge-system") if e["type"] == "Warning"]
    assert [(e["reason"], e["involvedObject"]["kind"]) for e in warnings] == [
        ("ApplyFailed", "ConfigMap")
    ]
    assert_no_token(api)  # the fault echoed the Authorization header into its message


def test_rbac_refusal_names_what_is_missing(api, kube):
    api.grants = tuple(g for g in GRANTS if not (g.resource == "plans" and g.verb == "create"))
    _, status = run_pass(kube)
    applying = status["conditions"]["Applying"]
    assert applying.reason == "Forbidden" and 'cannot create resource "plans"' in applying.message
    assert api.items("plans", NS) == []


def test_server_errors_and_a_missing_crd_are_conditions(api, kube):
    api.fail("GET", "nodes", 500, message="etcd is sad")
    _, status = run_pass(kube)
    assert status["conditions"]["Applying"].reason == "InternalError"
    assert "etcd is sad" in status["conditions"]["Applying"].message
    api.fail("GET", "plans", 404)
    _, status = run_pass(kube)
    applying = status["conditions"]["Applying"]
    assert applying.reason == "NotFound" and "Plan CRD" in applying.message
    assert_no_token(api)
    run_pass(kube)  # and once the API heals, the next pass goes on
    assert set(plan_versions(api)) == {SERVER_PLAN, AGENT_PLAN}


def test_unreachable_api(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n"
        f"users: [{{name: u, user: {{token: {TOKEN}}}}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    with Kube.connect(kubeconfig=str(config), request_timeout=5) as kube:
        result = apply_step(
            api=kube, fleet=fs.fleet(), cluster="s", labels={}, site=fs.SITE, now=fs.IN_WINDOW
        )
        assert result.conditions[0].reason == "Unreachable"
        assert TOKEN not in result.conditions[0].message
        with pytest.raises(KubeApiError) as e:
            report(kube, result.conditions, now=fs.IN_WINDOW)
        assert e.value.reason == "Unreachable" and e.value.status is None


def test_missing_credentials(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(KubeApiError) as e:
        Kube.connect(kubeconfig=str(tmp_path / "nope"))
    assert e.value.reason == "NoCredentials"


# ------------------------------------------------------------------------------ ownership


def foreign_plan(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "upgrade.cattle.io/v1",
        "kind": "Plan",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {
            "concurrency": 1,
            "version": "v1.27.16+k3s1",
            "upgrade": {"image": "rancher/k3s-upgrade"},
        },
    }


def test_nothing_deleted_that_gitedge_does_not_own(api, kube):
    mine_stray = api.put(
        foreign_plan("gitedge-old-step", {"app.kubernetes.io/managed-by": "gitedge"})
    )
    theirs = [
        api.put(foreign_plan("k3s-server", {})),
        api.put(foreign_plan("helm-upgrade", {"app.kubernetes.io/managed-by": "Helm"})),
    ]
    run_pass(kube, fleet=fs.fleet(suspend=True))
    deletes = [(r.name, r.code) for r in api.writes("plans") if r.method == "DELETE"]
    assert deletes == [(mine_stray["metadata"]["name"], 200)]
    for p in theirs:
        assert (
            api.get("plans", p["metadata"]["name"], NS)["metadata"]["resourceVersion"]
            == p["metadata"]["resourceVersion"]
        )
    assert {e["reason"] for e in api.items("events", NS)} == {"PlanDeleted"}


def test_a_plan_relabelled_between_read_and_delete_is_left_alone(api, kube):
    api.put(foreign_plan("gitedge-old-step", {"app.kubernetes.io/managed-by": "gitedge"}))
    api.before(
        "DELETE",
        "plans",
        lambda e: e.modify(
            "plans", "gitedge-old-step", NS, lambda o: o["metadata"].update(labels={"app": "ops"})
        ),
    )
    result, _ = run_pass(kube, fleet=fs.fleet(suspend=True))
    assert result.error is None
    assert [(r.method, r.code) for r in api.writes("plans")] == [("DELETE", 409)]
    assert api.get("plans", "gitedge-old-step", NS)["metadata"]["labels"] == {"app": "ops"}


def test_a_name_taken_by_someone_elses_plan_is_reported_not_taken_over(api, kube):
    taken = api.put(foreign_plan(SERVER_PLAN, {"app": "ops"}))
    _, status = run_pass(kube)
    applying = status["conditions"]["Applying"]
    assert applying.reason == "AlreadyExists" and SERVER_PLAN in applying.message
    assert (
        api.get("plans", SERVER_PLAN, NS)["metadata"]["resourceVersion"]
        == taken["metadata"]["resourceVersion"]
    )
    assert [r.method for r in api.writes("plans")] == ["POST"]


# ------------------------------------------------------------------------- reads, status


def test_nodes_are_read_page_by_page(api, kube, monkeypatch):
    monkeypatch.setattr(kube_module, "_PAGE", 2)
    for i in range(3):
        api.add_node(f"extra-{i}", kubelet="v1.28.15+k3s1", arch="arm64")
    nodes = kube.nodes()
    assert len(nodes) == 6 and {n.architecture for n in nodes} == {"amd64", "arm64"}
    lists = [r for r in api.requests if r.resource == "nodes"]
    assert len(lists) == 3
    assert [n.control_plane for n in nodes if n.name == "server-0"] == [True]


def test_status_keeps_the_other_steps_conditions(api, kube):
    report(kube, [Condition("SourceVerified", "True", "Verified", "abc123")], now=fs.IN_WINDOW)
    report(
        kube, [Condition("Mirrored", "False", "DigestMismatch", "blob cut short")], now=fs.IN_WINDOW
    )
    later = fs.IN_WINDOW.replace(minute=30)
    _, status = run_pass(kube, now=later)
    conds = status["conditions"]
    assert conds["SourceVerified"].status == "True"
    assert conds["SourceVerified"].last_transition_time == fs.IN_WINDOW
    assert conds["Applying"].last_transition_time == later
    assert (conds["Ready"].status, conds["Ready"].reason) == ("False", "DigestMismatch")
    api.put(
        {
            **api.get("configmaps", "gitedge-status", "gitedge-system"),
            "data": {"status.json": "{oops"},
        }
    )
    assert kube.read_status().conditions == ()  # a damaged status is rewritten, not fatal
    report(kube, [Condition("SourceVerified", "True", "Verified")], now=later)
    assert kube.read_status().conditions[0].type == "Ready"


def test_the_story_uses_every_rbac_grant_in_deploy(api, kube, sim):
    """Least privilege: every rule deploy/ grants is needed by what the agent does."""
    run_pass(kube)  # list nodes and plans, create plans, events, status create + get
    finish_step(sim)
    run_pass(kube)  # update plans, status update
    finish_step(sim)
    api.put(foreign_plan("gitedge-old-step", {"app.kubernetes.io/managed-by": "gitedge"}))
    api.fail("POST", "plans", 403)
    result, _ = run_pass(kube, fleet=fs.fleet(order="[os, k3s]"))  # delete, a failure: event
    assert result.error is not None and result.error.status == 403
    assert set(GRANTS) - api.grants_used == set()
    assert all(r.code != 403 or r.method == "POST" for r in api.requests)


def test_in_cluster_config_uses_the_pods_service_account(tmp_path, monkeypatch):
    """In a pod (``KUBERNETES_SERVICE_HOST`` set, no kubeconfig), Kube.connect takes the service
    account's token and CA from the files the kubelet mounts (their paths moved under tmp_path),
    talks HTTPS to the API, and the status goes to ``$POD_NAMESPACE``."""
    import kubernetes.config.incluster_config as incluster

    from tests.gitserver import make_tls_files

    tls = make_tls_files(tmp_path / "tls")
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text(TOKEN)
    (sa / "ca.crt").write_bytes(tls.ca_file.read_bytes())
    monkeypatch.setattr(incluster, "SERVICE_TOKEN_FILENAME", str(sa / "token"))
    monkeypatch.setattr(incluster, "SERVICE_CERT_FILENAME", str(sa / "ca.crt"))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    monkeypatch.setenv("POD_NAMESPACE", "gitedge-system")
    with KubeEmulator(token=TOKEN, grants=GRANTS, tls=tls) as api:
        api.add_node("server-1", kubelet=fs.START, control_plane=True)
        port = api.url.rsplit(":", 1)[1]
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
        with Kube.connect(request_timeout=10) as kube:
            assert [n.name for n in kube.snapshot().nodes] == ["server-1"]
            kube.write_status([Condition("Mirrored", "True", "Mirrored", "")], now=fs.IN_WINDOW)
        assert api.get("configmaps", "gitedge-status", "gitedge-system") is not None
        assert {r.headers.get("Authorization", "").lower() for r in api.requests} == {
            f"bearer {TOKEN}".lower()
        }
        # the wrong CA: refused, and said so without the token
        (sa / "ca.crt").write_bytes(make_tls_files(tmp_path / "other").ca_file.read_bytes())
        with Kube.connect(request_timeout=10) as kube, pytest.raises(KubeApiError) as e:
            kube.snapshot()
        assert e.value.reason == "Unreachable" and TOKEN not in str(e.value)
