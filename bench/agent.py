"""The agent's figures: idle RSS of ``gitedge run`` (goal <= 64 MiB) and the time of one
catch-up pass over 1,000 new signed commits (fetch over a real ``git daemon`` + verify + plan).

    python3 bench/agent.py [--commits 1000] [--runs 5]

Everything runs on 127.0.0.1; the fleet needs no image (the site already runs its target), so
the pass time is the source side: fetch, verify every commit, plan, report. The catch-up is timed
twice: ``Agent.reconcile`` in this process, and as the first pass of a real ``gitedge run``
(its child process's start and imports included; wall and CPU from the agent's own metrics).
Idle RSS counts every process of the agent alive once its first pass is done (the parent, and
children if any), over ``--runs`` fresh starts; the median is the figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
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


def tree(pid: int) -> list[int]:
    """``pid`` and every descendant alive now."""
    out, todo = [], [pid]
    while todo:
        q = todo.pop()
        out.append(q)
        with contextlib.suppress(OSError):  # children of every thread of q
            for task in Path(f"/proc/{q}/task").iterdir():
                todo += [int(k) for k in (task / "children").read_text().split()]
    return out


def tree_rss_kib(pid: int) -> tuple[int, int]:
    """(RSS of the process tree in KiB, number of processes)."""
    total, pids = 0, tree(pid)
    for q in pids:
        with contextlib.suppress(OSError, RuntimeError):  # gone meanwhile
            total += rss_kib(q)
    return total, len(pids)


def metric(base: str, name: str) -> float:
    with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
        m = re.search(rf"^{name} (\S+)$", r.read().decode(), re.M)
    return float(m.group(1)) if m else float("nan")


def run_agent(cfg: Path) -> tuple[int, int, float, float, float]:
    """Start ``gitedge run``, wait for its first pass to end, sample the idle process tree.
    Returns (RSS KiB, processes, pass wall s, pass CPU s, pass peak RSS KiB)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "gitedge", "run", "--config", str(cfg),
         "--listen", "127.0.0.1:0", "--log-format", "json"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        base = proc.stderr.readline().rsplit(" ", 1)[1].strip()
        first_pass = threading.Event()

        def read_logs() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                if line.startswith("{") and json.loads(line)["msg"].startswith("pass 1 "):
                    first_pass.set()

        threading.Thread(target=read_logs, daemon=True).start()
        assert first_pass.wait(300), "no first pass within 300 s"
        samples = []
        for _ in range(5):  # idle: the next pass is an hour away
            time.sleep(0.4)
            samples.append(tree_rss_kib(proc.pid))
        kib, n = max(samples)
        wall = metric(base, "gitedge_last_pass_duration_seconds")
        cpu = metric(base, "gitedge_pass_cpu_seconds_total")
        peak = metric(base, "gitedge_pass_max_rss_bytes") / 1024
        return kib, n, wall, cpu, peak
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5, help="fresh gitedge run starts")
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
            agent.close()
            assert first.outcomes["verify"] == "ok", first.errors
            t0 = time.perf_counter()
            for i in range(args.commits):
                repo.commit(at=START + 60 * (i + 1))
            built = time.perf_counter() - t0
            behind = tmp / "state-behind"  # a site one commit in, 1,000 behind: for gitedge run
            shutil.copytree(tmp / "state", behind)
            agent = Agent(site, cluster=PrintCluster(config=site, out=lambda _: None))
            t0 = time.perf_counter()
            p = agent.reconcile(now=now)
            catch_up = time.perf_counter() - t0
            agent.close()
            assert p.new_commits == args.commits and not p.stalled, p.errors
            print(f"catch-up pass over {args.commits} new signed commits (fetch over git daemon, "
                  f"verify, plan, report), in process: {catch_up:.2f} s  (repo built in "
                  f"{built:.2f} s)")  # fmt: skip

            shutil.rmtree(tmp / "state")
            behind.rename(tmp / "state")
            runs = [run_agent(cfg) for _ in range(max(1, args.runs))]
            _, _, wall, cpu, peak = runs[0]
            print(f"the same catch-up as the first pass of gitedge run (a child process: start "
                  f"and imports included): {wall:.2f} s wall, {cpu:.2f} s CPU, peak RSS of the "
                  f"pass process {peak / 1024:.1f} MiB")  # fmt: skip
            quiet = runs[1:] or runs
            print(f"a pass with nothing new (same, {len(quiet)} run(s)): median "
                  f"{statistics.median(r[2] for r in quiet):.2f} s wall, "
                  f"{statistics.median(r[3] for r in quiet):.2f} s CPU")  # fmt: skip
            kib = statistics.median(r[0] for r in runs)
            each = ", ".join(f"{r[0] / 1024:.1f}" for r in runs)
            procs = max(r[1] for r in runs)
            goal = 64 * 1024
            print(f"idle RSS of gitedge run (every process of the agent alive while idle: "
                  f"{procs}): median {kib / 1024:.1f} MiB of {len(runs)} runs [{each}]  "
                  f"(goal <= 64 MiB: {'met' if kib <= goal else 'NOT met'}, "
                  f"{kib / goal:.2f}x the goal)")  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
