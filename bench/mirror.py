"""Benchmark: `gitedge mirror` of a generated two-arch image registry -> registry, beside skopeo.

Goals (DESIGN.md section 8), all in one run on the same machine:
- time <= `skopeo copy --all` of the same image between the same kind of registries;
- peak RSS of the `gitedge mirror` process <= 150 MiB (ru_maxrss from wait4 on that child);
- a no-op re-mirror (the cache already has the image) <= 0.2 s (DESIGN.md section 8);
- a resume after the connection is cut mid-blob re-sends <= 5% of the image's bytes.
Prints the figures and ratios; asserts nothing.

The no-op figure is the median of ``--noop-runs`` runs of the process, split by CPU time into
interpreter start, imports and the mirror itself. gitedge's bytecode is compiled first, as a pip
install does (here PYTHONDONTWRITEBYTECODE=1 would otherwise have every run compile it again).
``--noop-only`` measures just that, on a small image, in a few seconds.

The image: an OCI index of linux/amd64 and linux/arm64, each with four random, uncompressed
tar layers (half the size each), written to an OCI layout and pushed to a source registry
with skopeo. Every copy goes into a fresh Debian `docker-registry` on 127.0.0.1, so nobody's
copy finds blobs already there. Copies alternate (skopeo, gitedge, skopeo, gitedge) so page
cache and machine load hit both alike; the best of each is compared.

    python3 bench/mirror.py [--size-mib 512] [--runs 2] [--jobs 4] [--noop-runs 9]
    python3 bench/mirror.py --noop-only [--size-mib 8]
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.gitserver import tcp_proxy  # noqa: E402
from tests.registryserver import SKOPEO_BIN, docker_registry, make_layout, sha256  # noqa: E402

GITEDGE = [sys.executable, "-m", "gitedge"]


CPU: dict[str, float] = {}  # command name -> CPU seconds (user + system) of its last run


def run_measured(cmd: list[str]) -> tuple[float, float, bytes]:
    """Wall seconds, peak RSS (MiB) of exactly this child, and its stdout (CPU time in CPU)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {err.decode()[-800:]}")
    CPU[Path(cmd[0]).name if "gitedge" not in cmd else "gitedge"] = usage.ru_utime + usage.ru_stime
    return wall, usage.ru_maxrss / 1024, out


def skopeo_copy(src: str, dst: str) -> list[str]:
    return [
        SKOPEO_BIN, "copy", "--all", "--preserve-digests", "--quiet",
        "--src-tls-verify=false", "--dest-tls-verify=false", src, dst,
    ]  # fmt: skip


def noop_figures(src: str, dst: str, *, runs: int) -> str:
    """A no-op re-mirror (``dst`` has ``src``) as a process, median of ``runs``, its CPU split
    into interpreter start, imports and the rest; and in-process with warm connections."""
    walls, cpus = [], []
    for _ in range(runs):
        walls.append(run_measured([*GITEDGE, "mirror", src, dst, "-q"])[0])
        cpus.append(CPU["gitedge"])
    py = Path(sys.executable).name

    def cpu_of(code: str) -> float:
        values = []
        for _ in range(runs):
            run_measured([sys.executable, "-c", code])
            values.append(CPU[py])
        return statistics.median(values)

    # both end with os._exit, as `gitedge mirror` does (cli.EXIT_AT_ONCE): no finalization
    start = cpu_of("import os; os._exit(0)")
    imports = (
        cpu_of("import os, gitedge.cli, gitedge.adapters.images.mirroring; os._exit(0)") - start
    )
    from gitedge.adapters.images.mirroring import Mirror

    with Mirror() as m:
        m.mirror(src, dst)  # clients and connections warm
        t = time.perf_counter()
        r = m.mirror(src, dst)
        lib = time.perf_counter() - t
    assert r.up_to_date
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    goal = "met" if wall <= 0.2 else "met in-process only" if lib <= 0.2 else "NOT met"
    return (
        f"no-op re-mirror: {wall:.3f}s as a CLI process, median of {runs} "
        f"({min(walls):.3f}..{max(walls):.3f}s); CPU {cpu:.3f}s = interpreter start "
        f"{start:.3f}s + imports {imports:.3f}s ({100 * imports / cpu:.0f}%) + the mirror "
        f"{cpu - start - imports:.3f}s; {lib * 1000:.1f} ms in-process (the agent's case)"
        f"  [goal <= 0.2 s: {goal}]"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, help="image size, both arches (512; 8 no-op only)")
    ap.add_argument("--runs", type=int, default=2, help="copies of each tool (best is kept)")
    ap.add_argument("--jobs", type=int, default=4, help="gitedge parallel blob transfers")
    ap.add_argument("--noop-runs", type=int, default=9, help="no-op processes (median is kept)")
    ap.add_argument("--noop-only", action="store_true", help="only the no-op re-mirror figure")
    args = ap.parse_args()
    args.size_mib = args.size_mib or (8 if args.noop_only else 512)
    compileall.compile_dir(ROOT / "gitedge", quiet=1)  # as `pip install` does; see docstring

    work = Path(tempfile.mkdtemp(prefix="gitedge-bench-mirror-"))
    try:
        with contextlib.ExitStack() as stack:
            layer = args.size_mib * 1024 * 1024 // 8
            t = time.perf_counter()
            img = make_layout(work / "layout", tag="1.0", layer_sizes=(layer,) * 4)
            print(
                f"image: {img.total_bytes / 2**20:.0f} MiB, 2 platforms x 4 layers of "
                f"{layer / 2**20:.0f} MiB, index {img.digest[:19]} "
                f"(generated in {time.perf_counter() - t:.1f}s)"
            )
            src = stack.enter_context(docker_registry(work / "src"))
            ref = f"{src.host}/bench/os:1.0"
            subprocess.run(
                [*skopeo_copy(f"oci:{img.path}:1.0", f"docker://{ref}")], check=True, timeout=600
            )
            if args.noop_only:
                dest = stack.enter_context(docker_registry(work / "d0"))
                run_measured([*GITEDGE, "mirror", ref, f"{dest.host}/bench/os:1.0", "-q"])
                print(noop_figures(ref, f"{dest.host}/bench/os:1.0", runs=args.noop_runs))
                print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
                return
            dests = [
                stack.enter_context(docker_registry(work / f"d{i}"))
                for i in range(2 * args.runs + 1)
            ]
            ours: list[tuple[float, float]] = []
            theirs: list[tuple[float, float]] = []
            for i in range(args.runs):
                d_s, d_g = dests[2 * i], dests[2 * i + 1]
                wall, rss, _ = run_measured(
                    skopeo_copy(f"docker://{ref}", f"docker://{d_s.host}/bench/os:1.0")
                )
                theirs.append((wall, rss))
                print(
                    f"  skopeo  copy --all  run {i + 1}: {wall:6.2f}s  peak RSS {rss:6.1f} MiB  "
                    f"CPU {CPU['skopeo']:.2f}s"
                )
                wall, rss, out = run_measured(
                    [*GITEDGE, "mirror", ref, f"{d_g.host}/bench/os:1.0", "-q",
                     "--jobs", str(args.jobs)]
                )  # fmt: skip
                if out.decode().strip() != img.digest:
                    raise SystemExit(f"gitedge printed {out!r}, expected {img.digest}")
                ours.append((wall, rss))
                print(
                    f"  gitedge mirror      run {i + 1}: {wall:6.2f}s  peak RSS {rss:6.1f} MiB  "
                    f"CPU {CPU['gitedge']:.2f}s"
                )
            last = dests[2 * args.runs - 1]

            # no-op: the destination has everything
            noop = noop_figures(ref, f"{last.host}/bench/os:1.0", runs=args.noop_runs)

            # resume: the source behind a proxy that cuts every connection after 60% of a layer
            cut_dest = dests[-1]
            proxy = stack.enter_context(tcp_proxy(src.port, cut_after=int(layer * 0.6)))
            wall, rss, out = run_measured(
                [*GITEDGE, "mirror", f"127.0.0.1:{proxy.port}/bench/os:1.0",
                 f"{cut_dest.host}/bench/os:1.0", "-q", "-o", "json"]
            )  # fmt: skip
            doc = json.loads(out)
            raw = subprocess.run(
                [SKOPEO_BIN, "inspect", "--raw", "--tls-verify=false",
                 f"docker://{cut_dest.host}/bench/os:1.0"],
                check=True, capture_output=True, timeout=60,
            ).stdout  # fmt: skip
            resent = doc["bytes"]["resent"]

        best_ours, best_theirs = min(w for w, _ in ours), min(w for w, _ in theirs)
        peak = max(r for _, r in ours)
        mib = img.total_bytes / 2**20
        print()
        print(f"copy {mib:.0f} MiB registry -> registry (best of {args.runs}):")
        print(
            f"  gitedge {best_ours:.2f}s ({mib / best_ours:.0f} MiB/s)  skopeo {best_theirs:.2f}s "
            f"({mib / best_theirs:.0f} MiB/s)  ratio gitedge/skopeo {best_ours / best_theirs:.2f}"
            f"  [goal <= 1.00: {'met' if best_ours <= best_theirs else 'NOT met'}]"
        )
        print(
            f"  peak RSS gitedge {peak:.1f} MiB, skopeo {max(r for _, r in theirs):.1f} MiB"
            f"  [goal <= 150 MiB: {'met' if peak <= 150 else 'NOT met'}]"
        )
        print(noop)
        over = proxy.bytes_down - img.total_bytes  # headers and manifests ride along too
        print(
            f"resume: {proxy.cut} connection(s) cut, {doc['resumes']} resume(s), "
            f"{resent} bytes re-sent = {100 * resent / img.total_bytes:.3f}% of the image "
            f"(the proxy delivered {proxy.bytes_down} bytes: image + {over} of headers and "
            f"manifests) in {wall:.2f}s; digest "
            f"{'equal' if sha256(raw) == img.digest else 'DIFFERENT'}"
            f"  [goal <= 5%: {'met' if max(resent, over) <= 0.05 * img.total_bytes else 'NOT met'}]"
        )
        print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
