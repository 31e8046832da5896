"""``gitedge run`` runs each pass in a child process (agent/passes.py): a pass that dies (SIGKILL
mid-fetch) or cannot start (unusable bootstrap trust) counts as a failed pass, backed off, and
the agent goes on serving /healthz and /metrics and passes again once the cause is fixed; the
long-lived parent never loads the pass's libraries (pygit2, cryptography); SIGTERM during a pass
reaches the child, which ends the pass after its current step, or is killed after
``--stop-grace`` when it is stuck in a fetch; either way both processes are gone and the agent
exits 0. Real git daemon, docker-registries and a silent TCP server on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gitedge.agent.passes import ChildPasses
from gitedge.agent.scheduler import AgentLoop
from gitedge.agent.server import Metrics
from gitedge.core.config import AgentConfig, load_site_file
from gitedge.core.passrules import next_delay
from tests.agentkit import START, FleetRepo, fleet_files, push_image, served_fleet_repo
from tests.gitserver import git_daemon, silent_server
from tests.registryserver import docker_registry, http_front
from tests.sigtools import allowed_signers_line, make_ssh_key

pytestmark = pytest.mark.timeout(240)


def write_config(tmp: Path, *, git_url: str, cache: str | None = None) -> Path:
    cfg = tmp / "agent.yaml"
    cfg.write_text(
        "apiVersion: gitedge.io/v1alpha1\nkind: AgentConfig\n"
        "cluster:\n  name: site-1\n  status: {k3sVersion: v1.27.16+k3s1, arches: [amd64]}\n"
        f"source: {{url: '{git_url}/fleet.git', interval: 1h}}\n"
        f"trust: {{bootstrap: {tmp / 'allowed_signers'}}}\n"
        + (f"registry: {{cache: {{url: 'http://{cache}'}}}}\n" if cache else "")
        + f"apply: {{mode: print}}\nstate: {{dir: {tmp / 'state'}}}\n"
    )
    return cfg


@pytest.fixture
def repo(tmp_path: Path) -> FleetRepo:
    return served_fleet_repo(tmp_path)


class RunningAgent:
    """``gitedge run`` as a site runs it, its JSON log lines collected as they come."""

    def __init__(self, cfg: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gitedge", "run", "--config", str(cfg),
             "--listen", "127.0.0.1:0", "--log-format", "json", *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert self.proc.stderr is not None
        first = self.proc.stderr.readline()
        assert "status on http://127.0.0.1:" in first, first
        self.url = first.rsplit(" ", 1)[1].strip()
        self.logs: list[str] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            text = json.loads(line)["msg"] if line.startswith("{") else line.rstrip("\n")
            with self._cond:
                self.logs.append(text)
                self._cond.notify_all()

    def wait_log(self, pred: Callable[[str], bool], timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                hit = next((x for x in self.logs if pred(x)), None)
                if hit is not None:
                    return hit
                left = deadline - time.monotonic()
                assert left > 0, f"no such log line; got {self.logs}"
                self._cond.wait(left)

    def children(self) -> list[int]:
        """Children of every thread (the pass is started from the scheduler's worker)."""
        tasks = Path(f"/proc/{self.proc.pid}/task")
        return sorted(int(x) for t in tasks.iterdir() for x in (t / "children").read_text().split())

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def one_child(agent: RunningAgent) -> int:
    kids = agent.children()
    assert len(kids) == 1, kids
    return kids[0]


def test_pass_killed_in_its_child_is_retried_and_the_agent_keeps_serving(
    tmp_path: Path, repo: FleetRepo
) -> None:
    accepted = threading.Event()
    with silent_server(accepted) as port:
        agent = RunningAgent(write_config(tmp_path, git_url=f"git://127.0.0.1:{port}"))
        try:
            assert accepted.wait(60), "the pass never connected to the git server"
            child = one_child(agent)
            maps = Path(f"/proc/{agent.proc.pid}/maps").read_text()
            assert "_pygit2" in Path(f"/proc/{child}/maps").read_text()  # the pass has it...
            assert "_pygit2" not in maps and "cryptography" not in maps  # ...the agent never
            subprocess.run(["kill", "-KILL", str(child)], check=True)  # as the OOM killer would
            agent.wait_log(lambda x: "ended without a result (killed by signal 9)" in x)
            done = agent.wait_log(lambda x: x.startswith("pass 1 (sync)"))
            assert "failed" in done and "backing off: 1 failed" in done, done
            assert agent.get("/healthz")[0] == 200
            code, why = agent.get("/readyz")  # no result: the agent cannot do its job
            assert code == 503 and why.startswith("the last pass failed: the pass process "), why
            metrics = agent.get("/metrics")[1]
            assert "\ngitedge_pass_crashes_total 1\n" in metrics
            assert not Path(f"/proc/{child}").exists()  # reaped, not a zombie
            assert agent.terminate() == 0
            agent.wait_log(lambda x: x == "stopped after 1 pass(es)")
        finally:
            agent.close()


def test_sigterm_during_a_fetch_ends_the_pass_and_stops_both(
    tmp_path: Path, repo: FleetRepo
) -> None:
    accepted = threading.Event()
    with silent_server(accepted) as port:
        cfg = write_config(tmp_path, git_url=f"git://127.0.0.1:{port}")
        agent = RunningAgent(cfg)
        try:
            assert accepted.wait(60), "the pass never connected to the git server"
            child = one_child(agent)
            assert agent.terminate() == 0
            assert not Path(f"/proc/{child}").exists()
            # libgit2 gives up a read the signal interrupts: the pass ends at once, cleanly
            agent.wait_log(lambda x: x.startswith("signal 15: ending the pass"))
            agent.wait_log(lambda x: x.startswith("sync failed, will retry"))
            agent.wait_log(lambda x: x == "stopped after 1 pass(es)")
            assert not any("did not end within" in x for x in agent.logs), agent.logs
        finally:
            agent.close()


@contextmanager
def mirror_held_midway(
    tmp_path: Path, repo: FleetRepo
) -> Iterator[tuple[Path, threading.Event, threading.Event]]:
    """A fleet whose OS image's blobs the upstream holds until ``release`` is set; yields
    (agent config, ``held``: set once a blob GET is held, ``release``). Leaving releases."""
    with (
        docker_registry(tmp_path / "upstream") as upstream,
        docker_registry(tmp_path / "cache") as cache,
        git_daemon(tmp_path / "served") as git,
    ):
        push_image(tmp_path, f"{upstream.host}/edge/os:2.0", sizes=(400_000, 600_000))
        held, release = threading.Event(), threading.Event()

        def hold(method: str, path: str, n: int) -> tuple[int, dict[str, str]] | None:
            if method == "GET" and "/blobs/sha256:" in path and not release.is_set():
                held.set()
                release.wait(60)  # then forwarded: the blob completes
            return None

        with http_front(upstream.port, fail=hold) as front:
            repo.commit(
                fleet_files(
                    registry=front.host, releases=["v1.27.16+k3s1"], k3s="v1.27.16+k3s1",
                    os_image=f"{front.host}/edge/os:2.0", window=False,
                ),
                at=START,
            )  # fmt: skip
            try:
                yield write_config(tmp_path, git_url=git, cache=cache.host), held, release
            finally:
                release.set()


def test_sigterm_mid_mirror_ends_the_pass_after_its_step(tmp_path: Path, repo: FleetRepo) -> None:
    with mirror_held_midway(tmp_path, repo) as (cfg, held, release):
        agent = RunningAgent(cfg, "--stop-grace", "60")
        try:
            assert held.wait(60), "the pass never asked for a blob"
            child = one_child(agent)
            agent.proc.send_signal(signal.SIGTERM)
            agent.wait_log(lambda x: x.startswith("signal 15: ending the pass"))
            release.set()
            assert agent.proc.wait(60) == 0
            assert not Path(f"/proc/{child}").exists()
            agent.wait_log(lambda x: x.startswith("mirrored ") and "edge/os:2.0" in x)
            agent.wait_log(lambda x: x == "stopped after 1 pass(es)")
            assert not any("did not end within" in x for x in agent.logs), agent.logs
        finally:
            agent.close()


def test_pass_stuck_in_its_step_is_killed_after_the_grace(tmp_path: Path, repo: FleetRepo) -> None:
    with mirror_held_midway(tmp_path, repo) as (cfg, held, _):
        agent = RunningAgent(cfg, "--stop-grace", "1")
        try:
            assert held.wait(60), "the pass never asked for a blob"
            child = one_child(agent)
            assert agent.terminate() == 0  # while the blob is still held
            assert not Path(f"/proc/{child}").exists()
            agent.wait_log(lambda x: x.startswith("signal 15: ending the pass"))
            agent.wait_log(lambda x: "did not end within 1s of the stop signal: killed" in x)
            agent.wait_log(lambda x: "ended without a result (killed by signal 9)" in x)
            agent.wait_log(lambda x: x == "stopped after 1 pass(es)")
            assert not any(x.startswith("mirrored ") for x in agent.logs), agent.logs
        finally:
            agent.close()


def test_loop_backs_off_while_passes_fail_and_recovers(tmp_path: Path, repo: FleetRepo) -> None:
    repo.commit(
        fleet_files(registry="127.0.0.1:1", releases=["v1.27.16+k3s1"], k3s="v1.27.16+k3s1",
                    os_image=None),
        at=START,
    )  # fmt: skip
    good = (tmp_path / "allowed_signers").read_text()
    (tmp_path / "allowed_signers").write_text("not a key at all\n")  # the child cannot start
    now = datetime(2026, 1, 2, 2, tzinfo=UTC)
    with git_daemon(tmp_path / "served") as git:
        cfg = write_config(tmp_path, git_url=git)
        site = load_site_file(cfg.read_bytes(), path=str(cfg))
        assert isinstance(site, AgentConfig)
        passes = ChildPasses(config=site, config_path=str(cfg), metrics=Metrics())
        seen: list[object] = []
        loop = AgentLoop(passes, clock=lambda: now, rng=lambda: 0.5, on_pass=seen.append)

        def next_sync() -> datetime:
            return loop.next_run["sync"]

        loop._tick("sync")
        assert loop.failures == 1 and seen == []
        assert next_sync() == now + timedelta(
            seconds=next_delay(interval_s=3600, failures=1, u=0.5)
        )
        assert passes.metrics.get("gitedge_pass_crashes_total") == 1
        (tmp_path / "allowed_signers").write_text(good)
        loop._tick("sync")
        assert loop.failures == 0 and [getattr(p, "tip", None) for p in seen] == [str(repo.head)]
        assert next_sync() == now + timedelta(
            seconds=next_delay(interval_s=3600, failures=0, u=0.5)
        )
        assert passes.metrics.get("gitedge_condition", {"type": "SourceVerified"}) == 1.0
        assert passes.metrics.get("gitedge_pass_crashes_total") == 1  # added up, not reset


def test_a_pass_whose_agent_is_gone_exits_quietly(tmp_path: Path) -> None:
    """The agent died (SIGKILL) while its child ran a pass: writing the summary meets a closed
    pipe. The child ends with status 1 and no traceback (the state already holds the pass)."""
    key = make_ssh_key(tmp_path / "keys", "ed25519")
    (tmp_path / "allowed_signers").write_text(allowed_signers_line("release", key) + "\n")
    cfg = write_config(tmp_path, git_url=str(tmp_path / "gone"))
    r, w = os.pipe()
    os.close(r)  # the reading agent is gone
    try:
        cmd = [sys.executable, "-m", "gitedge", "run", "--config", str(cfg), "--pass-fd", str(w)]
        done = subprocess.run(cmd, pass_fds=(w,), capture_output=True, text=True, timeout=120)
    finally:
        os.close(w)
    assert done.returncode == 1
    assert "sync failed, will retry" in done.stderr  # the pass ran
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
