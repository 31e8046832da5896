"""Crash safety and the process: ``gitedge run --once`` killed (SIGKILL) in the middle of a
mirror and run again converges without copying again what was already in the cache (the kill
between two Plan writes is in tests/test_run_suc.py); ``gitedge status
-o json`` shows what was verified and mirrored; ``gitedge run`` serves /readyz and stops cleanly on
SIGTERM; the scheduler's backoff. Real git daemon and docker-registries on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitedge.core.passrules import next_delay
from tests.agentkit import (
    START,
    FleetRepo,
    fleet_files,
    push_image,
    served_fleet_repo,
    sigkill_when,
)
from tests.gitserver import git_daemon
from tests.registryserver import docker_registry, http_front

IN_WINDOW = "2026-01-02T02:00:00Z"


def gitedge(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gitedge", *args], capture_output=True, text=True, timeout=timeout
    )


def config(tmp: Path, *, git: str, cache: str, kubectl: str) -> Path:
    cfg = tmp / "agent.yaml"
    cfg.write_text(
        "apiVersion: gitedge.io/v1alpha1\nkind: AgentConfig\n"
        "cluster:\n  name: site-1\n  status: {k3sVersion: v1.27.16+k3s1, arches: [amd64]}\n"
        f"source: {{url: '{git}/fleet.git', interval: 1h}}\n"
        f"trust: {{bootstrap: {tmp / 'allowed_signers'}}}\n"
        f"registry: {{cache: {{url: 'http://{cache}'}}}}\n"
        f"apply: {{mode: print, kubectlImage: '{kubectl}'}}\nstate: {{dir: {tmp / 'state'}}}\n"
    )
    return cfg


@pytest.fixture
def repo(tmp_path: Path) -> FleetRepo:
    return served_fleet_repo(tmp_path)


def test_killed_mid_mirror_then_restarted_converges(tmp_path: Path, repo: FleetRepo) -> None:
    with (
        docker_registry(tmp_path / "upstream") as upstream,
        docker_registry(tmp_path / "cache") as cache,
        git_daemon(tmp_path / "served") as git,
    ):
        img = push_image(tmp_path, f"{upstream.host}/edge/os:2.0", sizes=(400_000, 600_000))
        push_image(tmp_path, f"{upstream.host}/rancher/kubectl:v1.30.3")  # SUC's (issue 15)
        reached, release = threading.Event(), threading.Event()
        passed: list[str] = []

        def hold(method: str, path: str, n: int) -> tuple[int, dict[str, str]] | None:
            if method == "GET" and "/blobs/sha256:" in path:
                if release.is_set():  # the restarted agent: everything goes through
                    return None
                if passed:  # the first blob goes through; every later one hangs
                    reached.set()
                    release.wait(60)
                    return 503, {}
                passed.append(path.rsplit("/", 1)[1].split("?")[0])
            return None

        with http_front(upstream.port, fail=hold) as front:
            repo.commit(
                fleet_files(
                    registry=front.host, releases=["v1.27.16+k3s1"], k3s="v1.27.16+k3s1",
                    os_image=f"{front.host}/edge/os:2.0",
                ),
                at=START,
            )  # fmt: skip
            kubectl = f"{front.host}/rancher/kubectl:v1.30.3"
            cfg = config(tmp_path, git=git, cache=cache.host, kubectl=kubectl)
            proc = subprocess.Popen(
                [sys.executable, "-m", "gitedge", "run", "--config", str(cfg), "--once",
                 "--now", IN_WINDOW],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip

            def first_blob_cached() -> None:
                deadline = time.monotonic() + 60
                while not cache.has_blob_file(passed[0]) and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert cache.has_blob_file(passed[0])

            sigkill_when(proc, reached, release, what="the agent never asked for a second blob",
                         before=first_blob_cached)  # fmt: skip
            done = gitedge("run", "--config", str(cfg), "--once", "--now", IN_WINDOW)
            assert done.returncode == 0, done.stderr
        status = json.loads(gitedge("status", "--config", str(cfg), "-o", "json").stdout)
        image = next(i for i in status["mirror"]["images"] if i["image"].endswith("edge/os:2.0"))
        assert image["digest"] and status["mirror"]["complete"]
        amd64 = json.loads(
            (img.path / "blobs/sha256" / img.manifests["linux/amd64"][7:]).read_bytes()
        )
        wanted = sum(d["size"] for d in [amd64["config"], *amd64["layers"]])
        copied = status["mirror"]["copiedThisPass"][0]["bytes"]
        assert passed[0] in {d["digest"] for d in amd64["layers"]} | {amd64["config"]["digest"]}
        assert copied == wanted - img.blobs[passed[0]]  # the cached blob was not sent again
        assert status["lastVerified"]["commit"] == str(repo.head)


@pytest.fixture
def served(tmp_path: Path, repo: FleetRepo) -> Iterator[tuple[str, str]]:
    with docker_registry(tmp_path / "cache") as cache, git_daemon(tmp_path / "served") as git:
        yield git, cache.host


def test_run_serves_readyz_and_stops_on_sigterm(
    tmp_path: Path, repo: FleetRepo, served: tuple[str, str]
) -> None:
    repo.commit(
        fleet_files(registry="127.0.0.1:1", releases=["v1.27.16+k3s1"], k3s="v1.27.16+k3s1",
                    os_image=None),
        at=START,
    )  # fmt: skip
    cfg = config(tmp_path, git=served[0], cache=served[1], kubectl="127.0.0.1:1/k/kubectl:v1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gitedge", "run", "--config", str(cfg), "--listen", "127.0.0.1:0",
         "--log-format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "status on http://127.0.0.1:" in line, line
        url = line.rsplit(" ", 1)[1].strip()
        deadline = time.monotonic() + 60
        ready = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=5) as r:
                    ready = r.read().decode()
                    break
            except OSError:
                time.sleep(0.1)
        assert ready.startswith("last pass finished (sync ok, verify ok"), ready
        assert ready.rstrip().endswith(f"; at {repo.head}"), ready
        with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
            metrics = r.read().decode()
        assert 'gitedge_condition{type="SourceVerified"} 1' in metrics
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        logs = proc.stderr.read().splitlines()
        assert any(
            json.loads(x)["msg"].startswith("stopped after") for x in logs if x.startswith("{")
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def test_backoff_grows_while_offline_and_stays_bounded() -> None:
    online = [next_delay(interval_s=600, failures=0, u=u) for u in (0.0, 0.5, 0.999)]
    assert all(540 <= d <= 660 for d in online)
    worst = [next_delay(interval_s=600, failures=n, u=0.999) for n in range(1, 12)]
    best = [next_delay(interval_s=600, failures=n, u=0.0) for n in range(1, 12)]
    assert best[0] >= 1 and worst == sorted(worst) and max(worst) <= 3600
    assert best[-1] == 1.0  # full jitter, floored: never a tight loop (tests/test_poll.py)
    assert os.environ.get("GITEDGE_NEVER_SET") is None
