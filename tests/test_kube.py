"""The kube adapter and the apply step over real HTTP: the official ``kubernetes`` client, loaded
from a kubeconfig with a bearer token, against tests/kubeapi.py (an API emulator on 127.0.0.1
that enforces deploy/'s RBAC for the agent's ServiceAccount) with SUC's behaviour stood in.

Covers: the first pass creates the K3s server Plan (the agent Plan follows once it is complete), labelled, with Events and the status
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
import yaml

import gitedge.adapters.kube.connection as kube_module
from gitedge.adapters.kube.cluster import Kube
from gitedge.adapters.kube.sucread import read_kubectl_image, read_pull_failures
from gitedge.agent.steps.applyplans import ApplyResult, apply_step, report, status_fields
from gitedge.core.rollout.sucplans import AGENT_PLAN, OS_AGENT_PLAN, OS_SERVER_PLAN, SERVER_PLAN
from gitedge.core.status.conditions import Condition
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
    assert set(plans) == {SERVER_PLAN}  # the agent Plan once the control plane is done
    for p in plans.values():
        assert p["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "gitedge"
        assert p["spec"]["version"] == fs.PATH[0]
        assert p["spec"]["upgrade"]["image"].startswith(
            "cache.site.internal:5000/rancher/k3s-upgrade@sha256:"
        )
    events = api.items("events", NS)
    assert sorted((e["reason"], e["involvedObject"]["name"]) for e in events) == [
        ("StepStarted", SERVER_PLAN)
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


def first_step_done(api: KubeEmulator, kube: Kube, sim: SucSim) -> None:
    """The first K3s step, both Plans, run to the end: server Plan, SUC, agent Plan, SUC."""
    run_pass(kube)
    finish_step(sim)
    run_pass(kube)
    finish_step(sim)
    assert plan_versions(api) == {SERVER_PLAN: fs.PATH[0], AGENT_PLAN: fs.PATH[0]}


def test_update_racing_another_writer_rereads_and_keeps_its_change(api, kube, sim):
    first_step_done(api, kube, sim)

    def other_writer(emulator: KubeEmulator) -> None:
        emulator.modify(
            "plans", SERVER_PLAN, NS, lambda o: o["metadata"]["labels"].update(team="ops")
        )

    api.before("PUT", "plans", other_writer)
    result, status = run_pass(kube)
    assert result.error is None
    puts = [(r.name, r.code) for r in api.writes("plans") if r.method == "PUT"]
    assert puts[0] == (SERVER_PLAN, 409)
    assert puts[1:] == [(SERVER_PLAN, 200)]  # the agent Plan after the servers
    server = api.get("plans", SERVER_PLAN, NS)
    assert server["spec"]["version"] == fs.PATH[1]
    assert server["metadata"]["labels"]["team"] == "ops"  # the other writer's label kept
    assert status["conditions"]["Applying"].reason == "StepStarted"


def test_a_conflict_that_persists_is_reported(api, kube, sim):
    first_step_done(api, kube, sim)
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
    hashes: dict[str, str] = {}

    def resolve() -> None:
        sim.now = fs.OUT_OF_WINDOW
        sim.reconcile()  # SUC resolves the Plans' status, starts no job (its window is closed)
        assert sim.starts() == []
        hashes.update(
            {p["metadata"]["name"]: p["status"]["latestHash"] for p in api.items("plans", NS)}
        )

    def upgraded(node: str, plan: str) -> None:
        def change(o):
            o["metadata"]["labels"][DONE + plan] = hashes[plan]
            o["status"]["nodeInfo"]["kubeletVersion"] = fs.PATH[0]

        api.modify("nodes", node, "", change)

    run_pass(kube)
    resolve()
    assert hashes[SERVER_PLAN] == digest_status(api.get("plans", SERVER_PLAN, NS))
    writes = len(api.writes("plans"))
    run_pass(kube)
    assert len(api.writes("plans")) == writes  # server-0 not done: no agent Plan yet
    upgraded("server-0", SERVER_PLAN)
    run_pass(kube)
    assert set(plan_versions(api)) == {SERVER_PLAN, AGENT_PLAN}
    resolve()
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
    assert plan_versions(api) == {SERVER_PLAN: fs.PATH[1], AGENT_PLAN: fs.PATH[0]}
    assert {e["reason"] for e in api.items("events", NS)} >= {"StepAdvanced"}
    # right after the advance SUC has not resolved the new spec: still not done, nothing moves
    writes = len(api.writes("plans"))
    run_pass(kube)
    assert len(api.writes("plans")) == writes


def test_three_minor_path_completed_one_step_at_a_time_then_the_os(api, kube, sim):
    seen: list[dict[str, str]] = []
    for _ in range(16):
        result, status = run_pass(kube)
        assert result.error is None
        seen.append(plan_versions(api))
        finish_step(sim)
        if status["conditions"]["Applying"].reason == "UpToDate":
            break
    # one Plan per pass: each minor's server Plan, then its agent Plan, in order; then the OS
    # Plans the same way, control plane first
    order = [x for v in fs.PATH for x in ((SERVER_PLAN, v), (AGENT_PLAN, v))]
    order += [(OS_SERVER_PLAN, "1.4.2"), (OS_AGENT_PLAN, "1.4.2")]
    moves = []
    for before, after in zip([{}, *seen], seen, strict=False):
        moves += [(n, v) for n, v in sorted(after.items()) if before.get(n) != v]
    assert moves == order
    assert {n["status"]["nodeInfo"]["kubeletVersion"] for n in api.items("nodes")} == {fs.PATH[-1]}
    for name, cp in fs.NODES:
        plan_name = OS_SERVER_PLAN if cp else OS_AGENT_PLAN
        os_hash = digest_status(api.get("plans", plan_name, NS))
        assert api.get("nodes", name)["metadata"]["labels"][DONE + plan_name] == os_hash
    conds = status["conditions"]
    assert (conds["Ready"].status, conds["Ready"].reason) == ("True", "UpToDate")
    assert status["k3s"]["running"] == fs.PATH[-1] and status["k3s"]["path"] == []


# --------------------------------------------------------------------------------- window


def test_no_plan_written_outside_the_window(api, kube):
    result, status = run_pass(kube, now=fs.OUT_OF_WINDOW)
    assert api.writes("plans") == [] and api.items("events", NS) == []
    held = status["conditions"]["WindowClosed"]
    assert (held.status, held.reason) == ("True", "OutsideWindow")
    assert "2026-11-24T01:00:00Z" in held.message
    assert result.retry_after == (fs.NEXT_OPEN - fs.OUT_OF_WINDOW).total_seconds()
    assert status["k3s"]["nextOpen"] == "2026-11-24T01:00:00Z"


def test_no_step_starts_when_its_job_could_not_end_before_the_window_closes(api, kube):
    """SUC keeps a Plan going past the window's end while status.applying is non-empty
    (handle_upgrade.go), so a step started at 04:55 (the window ends at 05:00) would run after
    it: gitedge writes nothing then and says why; at the next opening the server Plan is written
    with its first batch, SUC starts it inside the window, and the agent Plan follows."""
    late = fs.NEXT_OPEN + timedelta(hours=3, minutes=55)
    sim = SucSim(api, now=late, namespace=NS, job_minutes=8)
    _, status = run_pass(kube, now=late)
    assert api.items("plans", NS) == []
    assert status["conditions"]["WindowClosed"].status == "True"
    assert "closes before a Job started now would end" in status["conditions"]["Applying"].message
    sim.advance(minutes=60)
    assert sim.starts() == []
    opening = fs.NEXT_OPEN + timedelta(days=1)
    run_pass(kube, now=opening)
    sim.now = opening
    sim.reconcile()  # the server's job starts inside the window
    assert api.get("plans", SERVER_PLAN, NS)["status"]["applying"] == ["server-0"]
    sim.advance(minutes=15)
    assert api.get("nodes", "server-0")["status"]["nodeInfo"]["kubeletVersion"] == fs.PATH[0]
    run_pass(kube, now=sim.now)
    assert plan_versions(api) == {SERVER_PLAN: fs.PATH[0], AGENT_PLAN: fs.PATH[0]}


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
    assert set(plan_versions(api)) == {SERVER_PLAN}


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
    first_step_done(api, kube, sim)  # list nodes, plans, create plans, events, status create+get
    run_pass(kube)  # update plans, status update
    finish_step(sim)
    api.put(foreign_plan("gitedge-old-step", {"app.kubernetes.io/managed-by": "gitedge"}))
    api.fail("POST", "plans", 403)
    result, _ = run_pass(kube, fleet=fs.fleet(order="[os, k3s]"))  # delete, a failure: event
    assert result.error is not None and result.error.status == 403
    suc = [d for d in yaml.safe_load_all((DEPLOY.parent / "gitedge/data/suc/v0.20.1/system-upgrade-controller.yaml")
           .read_text()) if d and d["kind"] in ("Deployment", "ConfigMap")]  # fmt: skip
    for obj in suc:
        api.put(obj)
    assert read_kubectl_image(kube)[0].image == "rancher/kubectl:v1.30.3"  # get both by name
    assert read_pull_failures(kube, plans={SERVER_PLAN}) == []  # list pods, events
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


# ------------------------------------------------------------------------------ read-back


def test_a_pruned_window_holds_the_component_until_suc_can_keep_it(api, kube):
    """An API server whose Plan CRD predates SUC v0.15.0 prunes spec.window: the write's answer
    shows it, the pass stops there, and every later pass holds the component (no Plan written,
    not even once the control plane is done) with ``PlansAsWritten`` and ``Applying`` saying
    why; once SUC keeps the field and the Plan is deleted, the agent writes it again."""
    api.old_suc = True
    _, status = run_pass(kube)
    server = api.get("plans", SERVER_PLAN, NS)
    assert "window" not in server["spec"]  # pruned, as a real API server would
    conds = status["conditions"]
    assert (conds["Applying"].status, conds["Applying"].reason) == ("False", "WindowPruned")
    assert (conds["PlansAsWritten"].status, conds["PlansAsWritten"].reason) == (
        "False",
        "WindowPruned",
    )
    assert "v0.15.0" in conds["PlansAsWritten"].message and SERVER_PLAN in conds["Ready"].message
    assert any(e["reason"] == "PlanNotAsWritten" for e in api.items("events", "gitedge-system"))
    # SUC (old, ungated) upgrades the server anyway; the agent still writes nothing more
    sim = SucSim(api, now=fs.IN_WINDOW, namespace=NS)
    sim.settle()
    writes = len(api.writes("plans"))
    _, status = run_pass(kube)
    assert len(api.writes("plans")) == writes
    assert status["conditions"]["Applying"].reason == "WindowPruned"
    # SUC upgraded (the CRD has window now) and the operator deletes the held Plan
    api.old_suc = False
    with api.lock:  # (kubectl delete plan ...)
        del api.store[("plans", NS, SERVER_PLAN)]
    _, status = run_pass(kube)
    window = api.get("plans", SERVER_PLAN, NS)["spec"]["window"]  # this occurrence, from now
    assert (window["startTime"], window["days"]) == ("02:00:00", ["mon"])
    assert status["conditions"]["PlansAsWritten"].status == "True"


def test_a_deadline_clamped_by_suc_is_reported(api, kube):
    """SUC clamps each Job's deadline to SYSTEM_UPGRADE_JOB_ACTIVE_DEADLINE_SECONDS_MAX
    (job.go New); the agent reads the Jobs SUC created and reports the clamp."""
    sim = SucSim(
        api, now=fs.IN_WINDOW, namespace=NS,
        env={"SYSTEM_UPGRADE_JOB_ACTIVE_DEADLINE_SECONDS_MAX": "600"}, job_minutes=5,
    )  # fmt: skip
    _, status = run_pass(kube)
    assert status["conditions"]["PlansAsWritten"].status == "True"
    sim.reconcile()  # SUC creates the server's Job
    asked = api.get("plans", SERVER_PLAN, NS)["spec"]["jobActiveDeadlineSecs"]
    assert asked > 600
    (job,) = api.items("jobs", NS)
    assert job["spec"]["activeDeadlineSeconds"] == 600
    _, status = run_pass(kube)
    clamped = status["conditions"]["PlansAsWritten"]
    assert (clamped.status, clamped.reason) == ("False", "DeadlineClamped")
    assert f"{SERVER_PLAN} 600 s, not the {asked} s" in clamped.message
    assert status["conditions"]["Ready"].reason == "DeadlineClamped"


def with_rollout(fleet: Any, **update: Any) -> Any:
    """``fleet`` with its one target's rollout changed."""
    (name, target), *_ = fleet.targets.items()
    rollout = target.spec.rollout.model_copy(update=update)
    fleet.targets[name] = target.model_copy(
        update={"spec": target.spec.model_copy(update={"rollout": rollout})}
    )
    return fleet


def test_drain_on_stock_k3s_passes_kubectls_emptydir_refusal(api, kube):
    """Stock K3s runs metrics-server (an emptyDir) and svclb DaemonSet pods on the agents; with a
    drain the fleet set (a timeout, nothing else), SUC's kubectl drain gets
    --delete-emptydir-data and --ignore-daemonsets by SUC's defaults (job.go New) and the
    agents are upgraded; rendering deleteEmptydirData: false made kubectl refuse them."""
    from gitedge.core.fleet.model import Drain
    from tests.jobsim import k3s_stock_pods

    for name, _ in fs.NODES:
        for pod in k3s_stock_pods(name):
            api.put(pod)
    fleet = with_rollout(fs.fleet(os=None), drain=Drain(timeout=timedelta(minutes=5)))
    sim = SucSim(api, now=fs.IN_WINDOW, namespace=NS, drain_minutes=1)
    for _ in range(2):  # the server Plan, then the agent Plan
        run_pass(kube, fleet=fleet, now=sim.now)
        sim.settle()
    assert plan_versions(api) == {SERVER_PLAN: fs.PATH[0], AGENT_PLAN: fs.PATH[0]}
    assert api.get("plans", AGENT_PLAN, NS)["spec"]["drain"] == {"timeout": "300s"}
    assert [e for e in sim.log if e.kind == "drain-refused"] == []
    agent_hash = digest_status(api.get("plans", AGENT_PLAN, NS))
    for name in ("agent-0", "agent-1"):
        node = api.get("nodes", name)
        assert node["metadata"]["labels"][DONE + AGENT_PLAN] == agent_hash
        assert node["status"]["nodeInfo"]["kubeletVersion"] == fs.PATH[0]
        assert not node["spec"].get("unschedulable")  # uncordoned when the Job completed


def test_a_fleet_that_sets_delete_emptydir_data_false_gets_kubectls_refusal(api, kube):
    """What every drain did before (gitedge rendered false by default): the same site, the
    field set false by the fleet, is refused by kubectl drain and the agent stays cordoned."""
    from gitedge.core.fleet.model import Drain
    from tests.jobsim import k3s_stock_pods

    for pod in k3s_stock_pods("agent-0"):
        api.put(pod)
    drain = Drain(timeout=timedelta(minutes=5), delete_emptydir_data=False)
    fleet = with_rollout(fs.fleet(os=None), drain=drain)
    sim = SucSim(api, now=fs.IN_WINDOW, namespace=NS, drain_minutes=1)
    run_pass(kube, fleet=fleet, now=sim.now)
    sim.settle()
    run_pass(kube, fleet=fleet, now=sim.now)
    assert api.get("plans", AGENT_PLAN, NS)["spec"]["drain"]["deleteEmptydirData"] is False
    sim.advance(minutes=30)
    refused = [e for e in sim.log if e.kind == "drain-refused"]
    assert refused and refused[0].node == "agent-0" and "local storage" in refused[0].detail
    assert DONE + AGENT_PLAN not in api.get("nodes", "agent-0")["metadata"]["labels"]


def test_three_servers_are_upgraded_one_at_a_time_k3s_and_os_alike(tmp_path):
    """3 servers, 3 agents, ``concurrency: 3``: the K3s path and then the OS, passes every 10
    simulated minutes alternating with SUC: never two control-plane nodes upgrading at once
    (an OS upgrade reboots: two servers down cost etcd its quorum), agents three at a time."""
    servers = ["server-0", "server-1", "server-2"]
    agents = ["agent-0", "agent-1", "agent-2"]
    with KubeEmulator(token=TOKEN, grants=GRANTS) as api:
        for name in servers + agents:
            api.add_node(name, kubelet=fs.START, control_plane=name in servers)
        config = str(api.kubeconfig(tmp_path / "kubeconfig"))
        with Kube.connect(kubeconfig=config, request_timeout=10) as kube:
            fleet = with_rollout(fs.fleet(), concurrency=3)
            sim = SucSim(api, now=fs.IN_WINDOW, namespace=NS, job_minutes=3)
            for _ in range(200):
                _, status = run_pass(kube, fleet=fleet, now=sim.now)
                if status["conditions"]["Applying"].reason == "UpToDate":
                    break
                sim.advance(minutes=10)
            assert status["conditions"]["Ready"].status == "True", status["conditions"]
    upgraded = {node for _, node, _, _ in sim.upgrades()}
    assert upgraded == set(servers + agents)
    assert {plan for plan, _, _, _ in sim.upgrades()} == {
        SERVER_PLAN, AGENT_PLAN, OS_SERVER_PLAN, OS_AGENT_PLAN
    }  # fmt: skip
    assert sim.max_concurrent_upgrades(servers) == 1
    assert sim.max_concurrent_upgrades(agents) == 3


def test_a_long_drain_fits_the_deadline_gitedge_sets(api, kube):
    """A 12-minute drain (its timeout 15m) and a 5-minute upgrade: past SUC's shipped default
    deadline (900 s, ConfigMap default-controller-env), so without jobActiveDeadlineSecs the
    Job failed with DeadlineExceeded and SUC retried it, at any hour, after the Job TTL. The
    Plan's own deadline (3 + 5 + 15 + 20 minutes on the agent Plan) fits it."""
    from gitedge.core.fleet.model import Drain
    from tests.sucsim import SHIPPED_ENV

    fleet = with_rollout(fs.fleet(os=None), drain=Drain(timeout=timedelta(minutes=15)))
    sim = SucSim(
        api, now=fs.IN_WINDOW, namespace=NS, env=SHIPPED_ENV, job_minutes=5, drain_minutes=12
    )
    for _ in range(2):  # the server Plan, then the agent Plan
        run_pass(kube, fleet=fleet, now=sim.now)
        sim.settle()
    assert [e for e in sim.log if e.kind in ("job-failed", "pod-killed")] == []
    agent = api.get("plans", AGENT_PLAN, NS)
    assert agent["spec"]["jobActiveDeadlineSecs"] == (3 + 5 + 15 + 20) * 60
    runs = [(p, n) for p, n, _, end in sim.upgrades() if end is not None]
    assert sorted(runs) == [
        (AGENT_PLAN, "agent-0"),
        (AGENT_PLAN, "agent-1"),
        (SERVER_PLAN, "server-0"),
    ]
    jobs = [
        j
        for j in api.items("jobs", NS)
        if j["metadata"]["labels"]["upgrade.cattle.io/plan"] == AGENT_PLAN
    ]
    assert jobs and all(j["spec"]["activeDeadlineSeconds"] == 43 * 60 for j in jobs)
