"""Benchmark: `gitedge plan` end to end on a generated fleet repo of 10,000 UpgradeTargets.

Goal (DESIGN.md section 8): < 2 s. Prints the figure; asserts nothing. gitedge's bytecode is
compiled first, as a pip install does (PYTHONDONTWRITEBYTECODE=1 would otherwise have every run
compile it again).

    python3 bench/plan.py [--targets 10000]
"""

from __future__ import annotations

import argparse
import compileall
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAD = "apiVersion: gitedge.io/v1alpha1\n"
DIGEST = "sha256:" + "ab" * 32  # every image named by digest, as requireDigest wants
PER_FILE = 100  # stay well under the 1 MiB per-file cap, as a real repo split by region would


def generate(root: Path, n: int) -> None:
    (root / "targets").mkdir(parents=True)
    (root / "releases.yaml").write_text(
        HEAD
        + "kind: K3sReleases\nmetadata: {name: cat}\nspec:\n  releases:\n"
        + "".join(
            f"    - {{version: v1.{m}.{p}+k3s1, digest: {DIGEST}}}\n"
            for m in range(26, 32)
            for p in range(1, 6)
        )
    )
    (root / "windows.yaml").write_text(
        "---\n".join(
            HEAD
            + f"kind: MaintenanceWindow\nmetadata: {{name: w{i}}}\nspec:\n  timeZone: Europe/Berlin\n"
            f'  days: [mon, tue, wed, thu]\n  start: "0{i}:00"\n  end: "0{i + 3}:00"\n'
            f"  blackouts: [{{from: 2026-12-19, to: 2027-01-04}}]\n"
            for i in range(5)
        )
    )
    (root / "groups.yaml").write_text(
        HEAD
        + "kind: ClusterGroup\nmetadata: {name: stores}\nspec:\n  selector: {matchLabels: {type: store}}\n"
    )
    for f in range(0, n, PER_FILE):
        docs = []
        for i in range(f, min(f + PER_FILE, n)):
            docs.append(
                HEAD
                + f"kind: UpgradeTarget\nmetadata: {{name: site-{i:05d}}}\nspec:\n"
                + "  clusterGroup: stores\n"
                + f"  clusterSelector:\n    matchLabels: {{site: s{i:05d}}}\n"
                + "    matchExpressions: [{key: region, operator: In, values: [eu-west, eu-central]}]\n"
                + f"  priority: {i % 7}\n  window: w{i % 5}\n"
                + f"  os: {{image: 'registry.example.com/edge/os:1.{i % 9}.0@{DIGEST}', upgrader: kairos}}\n"
                + f"  k3s: {{version: v1.{29 + i % 3}.5+k3s1}}\n"
                + "  rollout: {concurrency: 1, drain: {timeout: 15m}}\n"
            )
        (root / "targets" / f"t{f // PER_FILE:04d}.yaml").write_text("---\n".join(docs))
    (root.parent / "cluster.yaml").write_text(
        HEAD + "kind: Cluster\nmetadata:\n  name: s04242\n"
        "  labels: {type: store, site: s04242, region: eu-west}\nstatus: {k3sVersion: v1.27.3+k3s1}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        generate(root, args.targets)
        size = sum(p.stat().st_size for p in root.rglob("*.yaml"))
        cmd = [
            sys.executable,
            "-m",
            "gitedge",
            "plan",
            "--repo",
            str(root),
            "--cluster",
            str(root.parent / "cluster.yaml"),
            "--now",
            "2026-11-24T01:30:00Z",
            "-o",
            "json",
        ]
        compileall.compile_dir(Path(__file__).resolve().parent.parent / "gitedge", quiet=1)
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            times.append(time.perf_counter() - t0)
            if out.returncode != 0:
                sys.exit(f"gitedge plan failed:\n{out.stdout}{out.stderr}")
        baseline = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import gitedge.cli"], check=True)
            baseline.append(time.perf_counter() - t0)
        best, med = min(times), statistics.median(times)
        print(
            f"repo: {args.targets} UpgradeTargets in {args.targets // PER_FILE} files, {size / 1e6:.1f} MB of YAML"
        )
        print(
            f"gitedge plan end to end: best {best:.3f} s, median {med:.3f} s over {args.runs} runs (goal < 2 s: {'met' if med < 2 else 'NOT met'})"
        )
        print(f"  of which interpreter start-up + import: {min(baseline):.3f} s")
        print(f"  ratio to goal: {med / 2:.2f}x of the 2 s budget")


if __name__ == "__main__":
    main()
