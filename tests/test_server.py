"""The agent's status server (agent/server.py) over real HTTP on 127.0.0.1: /healthz and /readyz
answer 200 or 503 with the reason, /metrics is Prometheus text with HELP/TYPE lines, escaped
label values, counters that add up, and labelled gauges replaced as a whole; the metrics of a
pass's process taken in by the agent's (gauge families replaced, counters added)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from gitedge.agent.server import Metrics, StatusServer

pytestmark = pytest.mark.timeout(30)


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_health_readiness_and_metrics() -> None:
    m = Metrics()
    state = {"ready": (False, "no verified commit yet")}
    srv = StatusServer(metrics=m, ready=lambda: state["ready"], alive=lambda: (True, "")).start()
    try:
        assert get(srv.port, "/healthz") == (200, "ok\n")
        assert get(srv.port, "/readyz") == (503, "no verified commit yet\n")
        state["ready"] = (True, "")
        assert get(srv.port, "/readyz")[0] == 200
        m.set("gitedge_last_sync_timestamp_seconds", 1790000001, help="Last successful sync.")
        m.inc("gitedge_mirror_bytes_total", 100, help="Bytes mirrored.")
        m.inc("gitedge_mirror_bytes_total", 23, help="Bytes mirrored.")
        m.replace(
            "gitedge_applied_version",
            {(("component", "k3s"), ("version", 'v1.30.6+k3s1"x')): 1},
            help="Applied versions.",
        )
        m.replace(
            "gitedge_applied_version",
            {(("component", "k3s"), ("version", "v1.31.2+k3s1")): 1},
            help="Applied versions.",
        )
        code, text = get(srv.port, "/metrics")
        assert code == 200
        assert "# TYPE gitedge_mirror_bytes_total counter\ngitedge_mirror_bytes_total 123\n" in text
        assert "gitedge_last_sync_timestamp_seconds 1790000001\n" in text
        assert 'gitedge_applied_version{component="k3s",version="v1.31.2+k3s1"} 1' in text
        assert "v1.30.6" not in text  # replaced as a whole
        assert get(srv.port, "/nope")[0] == 404
    finally:
        srv.stop()


def test_label_values_are_escaped() -> None:
    m = Metrics()
    m.set("g", 1, help="h", labels={"v": 'a"b\\c\nd'})
    assert 'g{v="a\\"b\\\\c\\nd"} 1' in m.render()


def test_a_pass_dump_is_absorbed_gauges_replaced_counters_added() -> None:
    agent, one_pass = Metrics(), Metrics()
    agent.inc("gitedge_mirror_bytes_total", 100, help="Bytes mirrored.")
    agent.set("gitedge_window_open", 1, help="w", labels={"component": "os"})
    agent.set("gitedge_last_sync_timestamp_seconds", 1790000001, help="Last sync.")
    one_pass.inc("gitedge_mirror_bytes_total", 23, help="Bytes mirrored.")
    one_pass.set("gitedge_window_open", 0, help="w", labels={"component": "k3s"})
    agent.absorb(json.loads(json.dumps(one_pass.dump())))  # as it crosses the pipe
    assert agent.get("gitedge_mirror_bytes_total") == 123
    assert agent.get("gitedge_window_open", {"component": "k3s"}) == 0
    assert agent.get("gitedge_window_open", {"component": "os"}) is None  # the pass knew better
    assert agent.get("gitedge_last_sync_timestamp_seconds") == 1790000001  # not in this pass
    assert "# TYPE gitedge_mirror_bytes_total counter" in agent.render()


def test_a_client_that_never_sends_is_dropped_and_other_methods_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A half-open connection (the prober's host died mid-request) must not hold a thread and
    an fd of the agent for ever; a method other than GET is answered 501."""
    import socket

    import gitedge.agent.server as server

    monkeypatch.setattr(server, "REQUEST_TIMEOUT_S", 0.5, raising=False)
    srv = StatusServer(metrics=Metrics(), ready=lambda: (True, ""), alive=lambda: (True, ""))
    srv.start()
    try:
        with socket.create_connection(("127.0.0.1", srv.port)) as silent:
            silent.settimeout(20)  # far beyond the server's limit: a bound, not a measure
            assert silent.recv(1) == b""  # closed by the server, nothing sent back
        with socket.create_connection(("127.0.0.1", srv.port)) as s:
            s.sendall(b"DELETE /metrics HTTP/1.0\r\n\r\n")
            s.settimeout(20)
            assert s.recv(64).startswith(b"HTTP/1.0 501 ")
        assert get(srv.port, "/healthz") == (200, "ok\n")
    finally:
        srv.stop()
