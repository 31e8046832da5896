"""Site status reports pushed as OCI artifacts and ``gitedge fleet status``, against real
``docker-registry`` servers on 127.0.0.1 (one with htpasswd auth), a real ``git daemon`` and
commits signed in process (byte-compatible with ``ssh-keygen -Y sign``); skopeo is the reference
reader of what was pushed.

Covers: several simulated sites (real agent passes, different names, labels and times) push their
reports; the table marks the stale one, ``-o json``, ``--selector`` filtering; credentials from
``--config`` (and a clear error without them); secrets never in a report or the output; pushes
bounded to one per ``source.interval`` unless the report changed; a push that fails (registry
down, wrong password) never fails the pass nor changes ``Ready``, and is counted and said by
``Reported``; ``gitedge run --once`` pushes; unreadable artifacts (a flipped byte, a plain image,
another schema, a report under another cluster's tag, an oversized layer) reported per tag
without hiding the other sites; an empty repository; an unreachable registry; tag lists paged
with ``Link`` headers (Debian's distribution 2.8 does not page, so a small front pages its answer).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from gitedge.adapters.registry.client import RegistryClient, sized_body
from gitedge.adapters.registry.hosts import HostConfig, Hosts, RetryPolicy
from gitedge.adapters.reports.store import ReportRepository, push_report, read_reports
from gitedge.agent.reconcile import Agent, Pass, PrintCluster
from gitedge.cli import main
from gitedge.core.config import AgentConfig, load_site_file
from gitedge.core.status.conditions import Condition
from gitedge.core.status.sitereport import (
    ARTIFACT_TYPE,
    MEDIA_TYPE,
    SiteReport,
    Versions,
    from_document,
)
from tests.agentkit import DAY, START, FleetRepo, fleet_files, push_image, relay
from tests.gitserver import git_daemon
from tests.registryserver import (
    OCI_MANIFEST,
    RegistryServer,
    docker_registry,
    module_registry,
    sha256,
    skopeo_raw,
)
from tests.sigtools import allowed_signers_line, make_ssh_key

USER, PASSWORD = "reporter", "hunter2-report-secret"
K3S = "v1.27.16+k3s1"
NOW = datetime.fromtimestamp(START, UTC) + timedelta(days=10, hours=12)

registry = module_registry("plain-reports")


@pytest.fixture(autouse=True)
def report_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``gitedge fleet status`` keeps reports under $XDG_CACHE_HOME: a temp dir per test."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    return tmp_path / "xdg-cache"


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def fleet_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["fleet", "status", *args])
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------- simulated sites


@dataclass
class Env:
    """One fleet repo on a git daemon, an upstream registry with the OS image, and the
    operators' report registry (htpasswd auth)."""

    tmp: Path
    fleet: FleetRepo
    git_url: str
    upstream: RegistryServer
    reports: RegistryServer
    os_image: str

    def config(
        self, name: str, labels: dict[str, str], *, repo: str, os_running: str = "",
        report_host: str | None = None, password: str = PASSWORD,
    ) -> Path:  # fmt: skip
        d = self.tmp / "sites" / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "user").write_text(f"{USER}\n")
        (d / "password").write_text(f"{password}\n")
        host = report_host or self.reports.host
        status = f"k3sVersion: {K3S}, arches: [amd64]" + (
            f", osImage: {os_running}" if os_running else ""
        )
        cfg = d / "agent.yaml"
        cfg.write_text(
            "apiVersion: gitedge.io/v1alpha1\nkind: AgentConfig\n"
            f"cluster:\n  name: {name}\n  labels: {json.dumps(labels)}\n"
            f"  status: {{{status}}}\n"
            f"source: {{url: '{self.git_url}/fleet.git', branch: main, interval: 10m}}\n"
            f"trust: {{bootstrap: {self.tmp / 'allowed_signers'}}}\n"
            f"registry:\n  upstreamAuth:\n    {host}:\n"
            f"      usernameFile: {d / 'user'}\n      passwordFile: {d / 'password'}\n"
            f"apply: {{mode: print, kubectlImage: '{self.upstream.host}/rancher/kubectl:v1.30.3'}}\n"
            f"state: {{dir: {d / 'state'}}}\n"
            f"report: {{repository: '{host}/{repo}'}}\n"
        )
        return cfg


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("fleet-status")
    key = make_ssh_key(tmp / "keys", "ed25519", comment="release@fleet.example")
    (tmp / "allowed_signers").write_text(allowed_signers_line("release@fleet.example", key) + "\n")
    served_dir = tmp / "served"
    fleet = FleetRepo(served_dir / "fleet.git", key)
    with (
        docker_registry(tmp / "upstream") as upstream,
        docker_registry(tmp / "reports", htpasswd=(USER, PASSWORD)) as reports,
        git_daemon(served_dir) as url,
    ):
        os_image = f"{upstream.host}/edge/os:1.4"
        push_image(tmp, os_image)
        push_image(tmp, f"{upstream.host}/rancher/kubectl:v1.30.3")  # SUC's (issue 15)
        fleet.commit(
            fleet_files(registry=upstream.host, releases=[K3S], k3s=K3S, os_image=os_image),
            at=START,
        )
        yield Env(tmp, fleet, url, upstream, reports, os_image)


def run_pass(cfg: Path, when: datetime) -> tuple[Pass, Agent]:
    config = load_site_file(cfg.read_bytes(), path=str(cfg))
    assert isinstance(config, AgentConfig)
    agent = Agent(config, cluster=PrintCluster(config=config, out=lambda _: None),
                  retry=RetryPolicy(attempts=2, base_delay_s=0.05))  # fmt: skip
    try:
        return agent.reconcile(now=when), agent
    finally:
        agent.close()


def conditions(p: Pass) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in p.conditions}


def creds_config(env: Env) -> str:
    """An AgentConfig holding the report registry's credentials (what an operator passes)."""
    return str(env.tmp / "sites" / "store-eu-1" / "agent.yaml")


def test_several_sites_push_and_fleet_status_marks_the_stale_one(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = "fleet/sites"
    sites = [
        ("store-eu-1", {"env": "prod", "region": "eu-west"}, timedelta(hours=1), env.os_image),
        ("store-eu-2", {"env": "prod", "region": "eu-central"}, timedelta(days=3), ""),
        ("lab-us-1", {"env": "dev", "region": "us-east"}, timedelta(hours=2), "old/os:1.3"),
    ]
    for name, labels, age, os_running in sites:
        cfg = env.config(name, labels, repo=repo, os_running=os_running)
        p, agent = run_pass(cfg, NOW - age)
        assert p.outcomes["verify"] == "ok" and p.outcomes["mirror"] == "ok", p.errors
        assert conditions(p)["Reported"] == ("True", "Pushed")
        assert agent.metrics.get("gitedge_report_pushes_total", {"result": "pushed"}) == 1
    reg = f"{env.reports.host}/{repo}"
    head = str(env.fleet.head)

    code, out, err = fleet_cli(capsys, "--registry", reg, "--config", creds_config(env),
                               "--now", iso(NOW))  # fmt: skip
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["CLUSTER", "STATE", "K3S", "OS", "COMMIT", "AGE"]
    rows = {line.split()[0]: line for line in lines[1:4]}
    assert list(rows) == ["lab-us-1", "store-eu-1", "store-eu-2"]
    assert rows["store-eu-2"].split()[1] == "stale" and "3d" in rows["store-eu-2"]
    assert rows["store-eu-1"].split()[1] != "stale" and rows["store-eu-1"].endswith("60m")
    assert f"old/os:1.3 -> {env.os_image}" in rows["lab-us-1"]
    assert head[:12] in rows["store-eu-1"] and K3S in rows["store-eu-1"]
    assert lines[4] == "3 site(s), 1 stale"
    assert PASSWORD not in out + err

    code, out, _ = fleet_cli(capsys, "--registry", reg, "--config", creds_config(env),
                             "--now", iso(NOW), "-o", "json")  # fmt: skip
    assert code == 0
    doc = json.loads(out)
    by = {s["cluster"]: s for s in doc["sites"]}
    assert [s["cluster"] for s in doc["sites"]] == ["lab-us-1", "store-eu-1", "store-eu-2"]
    assert {c: s["stale"] for c, s in by.items()} == {
        "lab-us-1": False, "store-eu-1": False, "store-eu-2": True,
    }  # fmt: skip
    assert by["store-eu-2"]["ageSeconds"] == 3 * DAY and by["store-eu-2"]["state"] == "stale"
    eu1 = by["store-eu-1"]
    assert eu1["lastVerifiedCommit"] == head
    assert eu1["k3s"] == {"desired": K3S, "applied": K3S, "target": "all"}
    assert eu1["os"] == {"desired": env.os_image, "applied": env.os_image, "target": "all"}
    assert eu1["labels"] == {"env": "prod", "region": "eu-west", "gitedge.io/arch": "amd64",
                             "gitedge.io/k3s-minor": "v1.27"}  # fmt: skip
    assert eu1["time"] == iso(NOW - timedelta(hours=1))
    types = {c["type"] for c in eu1["conditions"]}
    assert {"Ready", "SourceVerified", "Mirrored"} <= types and "Reported" not in types
    assert doc["unreadable"] == []

    code, out, _ = fleet_cli(capsys, "--registry", reg, "--config", creds_config(env),
                             "--now", iso(NOW), "--selector", "env=prod,region in (eu-west)",
                             "-o", "json")  # fmt: skip
    assert code == 0 and [s["cluster"] for s in json.loads(out)["sites"]] == ["store-eu-1"]
    code, out, _ = fleet_cli(capsys, "--registry", reg, "--config", creds_config(env),
                             "--now", iso(NOW), "-l", "env=prod")  # fmt: skip
    assert code == 0 and out.splitlines()[-1] == "2 site(s), 1 stale" and "lab-us-1" not in out
    code, out, _ = fleet_cli(capsys, "--registry", reg, "--config", creds_config(env),
                             "--now", iso(NOW), "-l", "region notin (eu-west,eu-central)")  # fmt: skip
    assert code == 0 and out.splitlines()[-1] == "1 site(s), 0 stale"
    # a wider threshold: nothing is stale
    code, out, _ = fleet_cli(capsys, "--registry", reg, "--config", creds_config(env),
                             "--now", iso(NOW), "--stale-after", "96h")  # fmt: skip
    assert code == 0 and out.splitlines()[-1] == "3 site(s), 0 stale"

    # without credentials: a clear error naming the registry, exit 1
    code, out, err = fleet_cli(capsys, "--registry", reg, "--now", iso(NOW))
    assert code == 1 and out == ""
    assert env.reports.host in err and "wants credentials" in err

    # no secret in any stored report: skopeo (the reference) reads each one back
    for name, *_ in sites:
        raw = skopeo_raw(f"{reg}:{name}", "--tls-verify=false", f"--creds={USER}:{PASSWORD}")
        manifest = json.loads(raw)
        assert manifest["artifactType"] == ARTIFACT_TYPE
        assert manifest["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
        (layer,) = manifest["layers"]
        assert layer["mediaType"] == MEDIA_TYPE
        blob = env.reports.blob_file(layer["digest"]).read_bytes()
        assert sha256(blob) == layer["digest"]
        assert from_document(blob, where=name).cluster == name
        assert PASSWORD not in blob.decode() and "password" not in blob.decode()


def test_pushes_are_bounded_to_one_per_interval_unless_the_report_changed(env: Env) -> None:
    repo = "fleet/bounded"
    cfg = env.config("store-b", {"env": "prod"}, repo=repo, os_running=env.os_image)
    auth = f"--creds={USER}:{PASSWORD}"
    p, agent = run_pass(cfg, NOW)
    first = json.loads(skopeo_raw(f"{env.reports.host}/{repo}:store-b", "--tls-verify=false", auth))
    assert conditions(p)["Reported"] == ("True", "Pushed")
    # 5 minutes later, nothing changed: not pushed again (the interval is 10m)
    p, agent = run_pass(cfg, NOW + timedelta(minutes=5))
    again = json.loads(skopeo_raw(f"{env.reports.host}/{repo}:store-b", "--tls-verify=false", auth))
    assert again == first and agent.metrics.get("gitedge_report_pushes_total",
                                                {"result": "pushed"}) is None  # fmt: skip
    # 11 minutes after the push: pushed again, with its new time
    p, _ = run_pass(cfg, NOW + timedelta(minutes=11))
    third = json.loads(skopeo_raw(f"{env.reports.host}/{repo}:store-b", "--tls-verify=false", auth))
    created = "org.opencontainers.image.created"
    assert third["annotations"][created] == iso(NOW + timedelta(minutes=11))
    assert first["annotations"][created] == iso(NOW)
    # one minute later a new signed commit arrives: the report changed, pushed at once
    new = env.fleet.commit(at=START + DAY)
    p, _ = run_pass(cfg, NOW + timedelta(minutes=12))
    assert p.tip == new
    reports = read_reports(ReportRepository.parse(f"{env.reports.host}/{repo}"),
                           hosts=Hosts({env.reports.host: host_creds(cfg)}))  # fmt: skip
    (r,) = reports.reports
    assert r.last_verified == new and r.time == NOW + timedelta(minutes=12)


def host_creds(cfg: Path) -> HostConfig:
    return HostConfig(username_file=cfg.parent / "user", password_file=cfg.parent / "password")


def test_a_failed_push_never_fails_the_pass_and_is_said_by_reported(env: Env) -> None:
    with relay(env.reports.port) as link:
        host = f"127.0.0.1:{link.port}"
        cfg = env.config("store-f", {"env": "prod"}, repo="fleet/failing", report_host=host,
                         os_running=env.os_image)  # fmt: skip
        link.online = False
        p, agent = run_pass(cfg, NOW)
        c = conditions(p)
        assert c["Reported"] == ("False", "RegistryUnavailable")
        assert set(p.outcomes.values()) == {"ok"} and p.errors == {}
        assert c["Ready"][0] == "True"  # the window is closed at 12:00, the site is up to date
        assert agent.metrics.get("gitedge_report_pushes_total", {"result": "failed"}) == 1
        assert agent.metrics.get("gitedge_condition", {"type": "Reported"}) == 0.0
        status = json.loads(json.dumps(p.status))
        assert any(x["type"] == "Reported" and x["status"] == "False"
                   for x in status["conditions"])  # fmt: skip
        # the link is back: the next pass pushes (the failed one did not count as pushed)
        link.online = True
        p, agent = run_pass(cfg, NOW + timedelta(minutes=1))
        assert conditions(p)["Reported"] == ("True", "Pushed")
        assert served_with_auth(env, "fleet/failing", "store-f") is not None
    # a wrong password: RegistryAuthError, the password appears nowhere
    cfg = env.config("store-w", {"env": "prod"}, repo="fleet/failing", password="wrong-secret-pw",
                     os_running=env.os_image)  # fmt: skip
    p, agent = run_pass(cfg, NOW)
    reported = next(x for x in p.conditions if x.type == "Reported")
    assert (reported.status, reported.reason) == ("False", "RegistryAuthError")
    assert "refused our credentials" in reported.message
    assert "wrong-secret-pw" not in json.dumps(p.status)
    assert set(p.outcomes.values()) == {"ok"}


def served_with_auth(env: Env, repo: str, tag: str) -> str | None:
    import base64

    conn = http.client.HTTPConnection(env.reports.host, timeout=10)
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    try:
        conn.request("HEAD", f"/v2/{repo}/manifests/{tag}",
                     headers={"Accept": OCI_MANIFEST, "Authorization": f"Basic {token}"})  # fmt: skip
        resp = conn.getresponse()
        resp.read()
    finally:
        conn.close()
    return resp.getheader("Docker-Content-Digest") if resp.status == 200 else None


def test_run_once_with_report_configured_pushes_its_report(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = env.config("store-cli", {"env": "prod", "ring": "canary"}, repo="fleet/cli",
                     os_running=env.os_image)  # fmt: skip
    assert served_with_auth(env, "fleet/cli", "store-cli") is None
    code = main(["run", "--config", str(cfg), "--once", "--now", iso(NOW)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert served_with_auth(env, "fleet/cli", "store-cli") is not None
    code, out, err = fleet_cli(capsys, "--registry", f"{env.reports.host}/fleet/cli",
                               "--config", str(cfg), "--now", iso(NOW), "-o", "json")  # fmt: skip
    assert code == 0, err
    (site,) = json.loads(out)["sites"]
    assert site["cluster"] == "store-cli" and site["labels"]["ring"] == "canary"
    assert site["lastVerifiedCommit"] == str(env.fleet.head) and site["ageSeconds"] == 0
    assert PASSWORD not in out
    code = main(["status", "--config", str(cfg), "-o", "json"])
    status = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [c["reason"] for c in status["conditions"] if c["type"] == "Reported"] == ["Pushed"]


# ---------------------------------------------------------------------------- unreadable artifacts


def report(name: str, *, age: timedelta = timedelta(minutes=5), **labels: str) -> SiteReport:
    return SiteReport(
        cluster=name,
        time=NOW - age,
        labels={"env": "prod", **labels},
        k3s=Versions(K3S, K3S),
        last_verified="ab" * 20,
        conditions=(Condition("Ready", "True", "UpToDate", "", NOW - timedelta(days=1)),),
        agent_version="0.1.0",
    )


def put_blob(client: RegistryClient, repo: str, data: bytes) -> str:
    digest = sha256(data)
    location = client.start_upload(repo, what="test")
    assert location is not None
    location = client.patch_upload(location, sized_body(iter((data,)), len(data)), repo=repo,
                                   what="test")  # fmt: skip
    client.finish_upload(location, digest, repo=repo, what="test")
    return digest


def put_artifact(
    reg: RegistryServer, repo: str, tag: str, layer: bytes, *,
    artifact_type: str = ARTIFACT_TYPE, declared_size: int | None = None,
) -> str:  # fmt: skip
    """An artifact pushed by hand (raw HTTP for the manifest), whatever its layer holds."""
    client = RegistryClient(host=reg.host)
    try:
        config = put_blob(client, repo, b"{}")
        digest = put_blob(client, repo, layer)
    finally:
        client.close()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2},
        "layers": [{"mediaType": MEDIA_TYPE, "digest": digest,
                    "size": len(layer) if declared_size is None else declared_size}],
    }).encode()  # fmt: skip
    conn = http.client.HTTPConnection(reg.host, timeout=10)
    try:
        conn.request("PUT", f"/v2/{repo}/manifests/{tag}", body=manifest,
                     headers={"Content-Type": OCI_MANIFEST})  # fmt: skip
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 201, resp.status
    finally:
        conn.close()
    return digest


def test_unreadable_artifacts_are_named_per_tag_without_hiding_the_others(
    registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = ReportRepository(registry.host, "corrupt/sites")
    client = RegistryClient(host=registry.host)
    try:
        for name in ("good-1", "good-2", "flipped"):
            push_report(client, repo, report(name))
    finally:
        client.close()
    # a flipped byte in the stored layer of "flipped" (same length)
    raw = json.loads(skopeo_raw(f"{repo}:flipped"))
    blob = registry.blob_file(raw["layers"][0]["digest"])
    data = bytearray(blob.read_bytes())
    data[data.index(b"flipped")] ^= 0x20
    blob.write_bytes(bytes(data))
    # a plain two-platform image under a tag
    push_image(tmp_path, f"{repo}:plain-image")
    # a valid artifact whose document is of another schema
    put_artifact(registry, repo.repository, "other-schema", b'{"schema": "someone/else"}')
    # a real report of cluster good-1 under the tag "impostor"
    from gitedge.core.status.sitereport import to_document

    put_artifact(registry, repo.repository, "impostor", to_document(report("good-1")))
    # a layer of 70 KiB: refused from its descriptor, before any byte is read
    put_artifact(registry, repo.repository, "oversized", b" " * (70 << 10))
    # the artifact type of something else
    put_artifact(registry, repo.repository, "other-type", to_document(report("other-type")),
                 artifact_type="application/vnd.example.sbom")  # fmt: skip

    code, out, err = fleet_cli(capsys, "--registry", str(repo), "--now", iso(NOW))
    assert code == 1, err
    lines = out.splitlines()
    assert [line.split()[0] for line in lines[1:3]] == ["good-1", "good-2"]
    assert lines[3] == "2 site(s), 0 stale"
    assert lines[4] == "6 report(s) unreadable:"
    problems = "\n".join(lines[5:])
    assert len(lines[5:]) == 6
    assert f"{repo}:flipped" in problems and "hash to" in problems
    assert f"{repo}:plain-image: not a gitedge site status" in problems
    assert f"{repo}:other-schema: not a gitedge site status (schema" in problems
    assert f"{repo}:impostor: holds the report of cluster 'good-1'" in problems
    assert f"{repo}:oversized: report layer of 71680 bytes" in problems
    assert f"{repo}:other-type: not a gitedge site status (artifactType" in problems

    code, out, _ = fleet_cli(capsys, "--registry", str(repo), "--now", iso(NOW), "-o", "json")
    doc = json.loads(out)
    assert code == 1 and [s["cluster"] for s in doc["sites"]] == ["good-1", "good-2"]
    assert sorted(u["tag"] for u in doc["unreadable"]) == [
        "flipped", "impostor", "other-schema", "other-type", "oversized", "plain-image",
    ]  # fmt: skip


def test_empty_repository(registry: RegistryServer, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = fleet_cli(capsys, "--registry", f"{registry.host}/nobody/here")
    assert code == 0 and out == "CLUSTER  STATE  K3S  OS  COMMIT  AGE\n0 site(s), 0 stale\n"
    assert "no site reports in" in err
    code, out, _ = fleet_cli(capsys, "--registry", f"{registry.host}/nobody/here", "-o", "json")
    doc = json.loads(out)
    assert code == 0 and doc["sites"] == [] and doc["unreadable"] == []


def test_unreachable_registry_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out, err = fleet_cli(capsys, "--registry", f"127.0.0.1:{port}/fleet/sites")
    assert code == 1 and out == ""
    assert f"registry 127.0.0.1:{port} still failing after 3 attempt(s)" in err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--registry", "127.0.0.1:1/fleet/sites:latest"], "without tag or digest"),
        (["--registry", "127.0.0.1:1/Fleet"], "must be lowercase"),
        (["--registry", "127.0.0.1:1/fleet", "--stale-after", "a day"], "invalid duration"),
        (["--registry", "127.0.0.1:1/fleet", "-l", "env in prod"], "selector"),
        (["--registry", "127.0.0.1:1/fleet", "--now", "yesterday"], "--now"),
        (["--registry", "127.0.0.1:1/fleet", "--out", "/nonexistent/f.html"], "no such directory"),
        (["--registry", "127.0.0.1:1/fleet", "--jobs", "0"], "--jobs 0: give 1 to 256"),
    ],
)
def test_usage_errors(args: list[str], words: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = fleet_cli(capsys, *args)
    assert code == 2 and words in err


# ---------------------------------------------------------------------------- paged tag lists


@contextlib.contextmanager
def paging_front(target: str, *, page_max: int) -> Iterator[tuple[str, list[str]]]:
    """An HTTP front for a plain registry that pages ``tags/list`` as the OCI distribution spec
    says (``n``, ``last``, ``Link: <...>; rel="next"``), at most ``page_max`` per page, from the
    registry's whole list; every other request is forwarded untouched."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _forward(self) -> tuple[int, dict[str, str], bytes]:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            conn = http.client.HTTPConnection(target, timeout=10)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                return resp.status, dict(resp.getheaders()), resp.read()
            finally:
                conn.close()

        def _handle(self) -> None:
            url = urlsplit(self.path)
            extra: dict[str, str] = {}
            if self.command == "GET" and url.path.endswith("/tags/list"):
                seen.append(self.path)
                q = parse_qs(url.query)
                self.path = url.path
                status, headers, body = self._forward()
                if status != 200:
                    return self._send(status, headers, body)
                tags = sorted(json.loads(body)["tags"])
                n = min(int(q.get("n", [page_max])[0]), page_max)
                last = q.get("last", [""])[0]
                rest = [t for t in tags if t > last]
                page = rest[:n]
                if len(rest) > n:
                    extra["Link"] = (
                        f'<{url.path}?{urlencode({"n": n, "last": page[-1]})}>; rel="next"'
                    )
                body = json.dumps({"name": "x", "tags": page}).encode()
            else:
                status, headers, body = self._forward()
            self._send(status, {**headers, **extra}, body)

        def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for k, v in headers.items():
                if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = _handle  # noqa: N815

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{srv.server_address[1]}", seen
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


def test_tag_lists_are_followed_through_link_pages(registry: RegistryServer) -> None:
    repo = ReportRepository(registry.host, "paged/sites")
    names = [f"site-{i:02d}" for i in range(7)]
    client = RegistryClient(host=registry.host)
    try:
        for i, name in enumerate(names):
            push_report(client, repo, report(name, age=timedelta(hours=i)))
    finally:
        client.close()
    with paging_front(registry.host, page_max=3) as (front, seen):
        got = read_reports(ReportRepository(front, "paged/sites"), page=100)
        assert [r.cluster for r in got.reports] == names and got.unreadable == ()
        assert len(seen) == 3  # 3 + 3 + 1
        client = RegistryClient(host=front)
        try:
            assert client.list_tags("paged/sites", what="t", page=2) == names
            assert client.list_tags("paged/none", what="t") == []
        finally:
            client.close()
