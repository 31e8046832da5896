"""The agent's figures: idle RSS of ``gitedge run`` (goal <= 64 MiB) and the time of one
catch-up pass over 1,000 new signed commits (fetch over a real ``git daemon`` + verify + plan).

    python3 bench/agent.py [--commits 1000]

Everything runs on 127.0.0.1; the fleet needs no image (the site already runs its target), so
the pass time is the source side: fetch, verify every commit, plan, report.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from gitedge.agent.reconcile import Agent, PrintCluster  # noqa: E402
from gitedge.core.config import AgentConfig, load_site_file  # noqa: E402
from tests.agentkit import START, FleetRepo, fleet_files  # noqa: E402
from tests.gitserver import git_daemon  # noqa: E402
from tests.sigtools import allowed_signers_line, make_ssh_key  # noqa: E402


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=1000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gitedge-bench-agent-"))
    try:
        key = make_ssh_key(tmp / "keys", "ed25519")
        (tmp / "allowed_signers").write_text(allowed_signers_line("release", key) + "\n")
        repo = FleetRepo(tmp / "served" / "fleet.git", key)
        v = "v1.30.6+k3s1"
        repo.commit(
            fleet_files(registry="127.0.0.1:1", releases=[v], k3s=v, os_image=None), at=START
        )
        with git_daemon(tmp / "served") as url:
            cfg = tmp / "agent.yaml"
            cfg.write_text(
                "apiVersion: gitedge.io/v1alpha1\nkind: AgentConfig\n"
                f"cluster:\n  name: bench\n  status: {{k3sVersion: '{v}', arches: [amd64]}}\n"
                f"source: {{url: '{url}/fleet.git', interval: 1h}}\n"
                f"trust: {{bootstrap: {tmp / 'allowed_signers'}}}\n"
                f"apply: {{mode: print}}\nstate: {{dir: {tmp / 'state'}}}\n"
            )
            site = load_site_file(cfg.read_bytes(), path=str(cfg))
            assert isinstance(site, AgentConfig)
            now = datetime.now(UTC)
            agent = Agent(site, cluster=PrintCluster(config=site, out=lambda _: None))
            first = agent.reconcile(now=now)
            assert first.outcomes["verify"] == "ok", first.errors
            t0 = time.perf_counter()
            for i in range(args.commits):
                repo.commit(at=START + 60 * (i + 1))
            built = time.perf_counter() - t0
            t0 = time.perf_counter()
            p = agent.reconcile(now=now)
            catch_up = time.perf_counter() - t0
            agent.close()
            assert p.new_commits == args.commits and not p.stalled, p.errors
            print(f"catch-up pass over {args.commits} new signed commits (fetch over git daemon, "
                  f"verify, plan, report): {catch_up:.2f} s  (repo built in {built:.2f} s)")  # fmt: skip

            proc = subprocess.Popen(
                [sys.executable, "-m", "gitedge", "run", "--config", str(cfg),
                 "--listen", "127.0.0.1:0", "--log-format", "json"],
                stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            try:
                assert proc.stderr is not None
                base = proc.stderr.readline().rsplit(" ", 1)[1].strip()
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    try:
                        with urllib.request.urlopen(base + "/readyz", timeout=5):
                            break
                    except OSError:
                        time.sleep(0.1)
                time.sleep(2)  # idle: the first pass is done, the next is an hour away
                kib = rss_kib(proc.pid)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
            goal = 64 * 1024
            print(f"idle RSS of gitedge run: {kib / 1024:.1f} MiB  (goal <= 64 MiB: "
                  f"{'met' if kib <= goal else 'NOT met'}, {kib / goal:.2f}x the goal)")  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
