"""Benchmark: `gitedge verify` over 10,000 SSH-signed commits, beside `git log --format=%G?`.

Goal (DESIGN.md section 8): < 1.5 s, and >= 30x faster per commit than `git log --format=%G?`
on the same repo. Prints the figures; asserts nothing.

The repo is a bare fleet repo built with pygit2: a root commit adding `.gitedge/trust.yaml` and
50 UpgradeTarget files, then one commit per target change (a real tree per commit), each signed
by one ed25519 key made by ssh-keygen (signatures by `sshsig_sign_fast`, byte-compatible with
`ssh-keygen -Y sign`; a few are checked with `git verify-commit` before timing). git spawns
ssh-keygen twice per commit, so it is timed on the newest `--git-commits` commits and scaled.
gitedge's bytecode is compiled first, as a pip install does (here PYTHONDONTWRITEBYTECODE=1 would
otherwise have every run compile it again). Wall time depends on the machine's other load (the
verify uses every CPU): the CPU seconds beside it (user + sys, worker processes included) do not
much, and the load average before the runs is printed with them.

    python3 bench/verify.py [--commits 10000] [--git-commits 500] [--runs 3]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pygit2
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from pygit2.enums import FileMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's gitedge
from sigtools import (
    SshKey,
    allowed_signers_line,
    armor_sshsig,
    make_ssh_key,
    public_blob,
    sshsig_blob,
    sshsig_sign_fast,
    sshsig_signed_data,
    tool_env,
)

ROOT = Path(__file__).resolve().parent.parent  # `python -m gitedge` runs here: this checkout
HEAD = "apiVersion: gitedge.io/v1alpha1\n"
SIGNER = "release@fleet.example"
TARGETS = 50
START = 1_767_225_600  # 2026-01-01T00:00:00Z; one commit every 10 minutes after it


def target_yaml(i: int, n: int) -> bytes:
    return (
        HEAD + f"kind: UpgradeTarget\nmetadata:\n  name: site-{i:02d}\n"
        f"  annotations: {{fleet.example/change: '{n}'}}\nspec:\n"
        f"  clusterSelector:\n    matchLabels: {{site: s{i:02d}}}\n"
        f"  k3s: {{version: v1.{29 + n % 3}.{n % 20}+k3s1}}\n"
        f"  os: {{image: 'registry.example.com/edge/os:1.{n % 9}.{n % 7}', upgrader: kairos}}\n"
    ).encode()


def trust_yaml(key: SshKey) -> bytes:
    return (
        HEAD + "kind: TrustPolicy\nmetadata: {name: fleet}\nspec:\n  signers:\n"
        f"    - name: release\n      key: {json.dumps(key.public)}\n"
        "      roles: [release, admin]\n  verify: all\n"
    ).encode()


class MemoryOdb(pygit2.OdbBackend):
    """Objects kept in a dict (loose writes cost ~0.1 ms each here); packed at the end."""

    def __init__(self) -> None:
        super().__init__()
        self.objects: dict[pygit2.Oid, tuple[int, bytes]] = {}

    def read_cb(self, oid: pygit2.Oid) -> tuple[int, bytes]:
        return self.objects[oid]

    def read_header_cb(self, oid: pygit2.Oid) -> tuple[int, int]:
        kind, data = self.objects[oid]
        return kind, len(data)

    def write_cb(self, oid: pygit2.Oid, data: bytes, kind: int) -> None:
        self.objects[oid] = (kind, data)

    def exists_cb(self, oid: pygit2.Oid) -> bool:
        return oid in self.objects

    def refresh_cb(self) -> None:
        pass


def fast_signer(key: SshKey) -> Callable[[bytes], bytes]:
    """``sshsig_sign_fast`` with the private key loaded once (it reloads the key file per call).
    ed25519 is deterministic: the first signature is compared with sshsig_sign_fast's."""
    private = serialization.load_ssh_private_key(key.path.read_bytes(), password=None)
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    pub = public_blob(key)

    def sign(data: bytes) -> bytes:
        signed = sshsig_signed_data(namespace="git", hash_alg="sha512", data=data)
        blob = sshsig_blob(
            public_blob=pub,
            namespace="git",
            hash_alg="sha512",
            sig_alg="ssh-ed25519",
            sig=private.sign(signed),
        )
        return armor_sshsig(blob)

    if sign(b"probe") != sshsig_sign_fast(key, b"probe"):
        sys.exit("the cached signer differs from sshsig_sign_fast")
    return sign


def build(path: Path, key: SshKey, n: int) -> list[str]:
    """A bare repo at ``path`` with ``n`` signed commits on main, in one pack; the ids, oldest
    first."""
    repo = pygit2.init_repository(str(path), bare=True, initial_head="main")
    memory = MemoryOdb()
    repo.odb.add_backend(memory, 1000)  # above the loose backend: every write lands here
    sign = fast_signer(key)
    gitedge = repo.TreeBuilder()
    gitedge.insert("trust.yaml", repo.create_blob(trust_yaml(key)), FileMode.BLOB)
    targets = repo.TreeBuilder()
    for i in range(TARGETS):
        targets.insert(f"t{i:02d}.yaml", repo.create_blob(target_yaml(i, 0)), FileMode.BLOB)
    root = repo.TreeBuilder()
    root.insert(".gitedge", gitedge.write(), FileMode.TREE)
    root.insert("README.md", repo.create_blob(b"# fleet\n"), FileMode.BLOB)
    ids: list[str] = []
    parents: list[pygit2.Oid] = []
    for c in range(n):
        if c:
            i = c % TARGETS
            targets.insert(f"t{i:02d}.yaml", repo.create_blob(target_yaml(i, c)), FileMode.BLOB)
        root.insert("targets", targets.write(), FileMode.TREE)
        who = pygit2.Signature("Release Bot", SIGNER, START + 600 * c, 0)
        msg = "add trust policy and targets\n" if not c else f"site-{c % TARGETS:02d}: change {c}\n"
        payload = repo.create_commit_string(who, who, msg, root.write(), parents)
        oid = repo.create_commit_with_signature(payload, sign(payload.encode()).decode())
        parents = [oid]
        ids.append(str(oid))
    pack = pygit2.PackBuilder(repo)
    pack.set_threads(0)  # one per CPU
    for oid in memory.objects:
        pack.add(oid)
    pack.write(str(path / "objects" / "pack"))
    repo.references.create("refs/heads/main", parents[0], force=True)
    return ids


def git(
    repo: Path, allowed: Path, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    cmd = ["git", f"--git-dir={repo}", "-c", f"gpg.ssh.allowedSignersFile={allowed}", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)


def timed(cmd: list[str], runs: int) -> tuple[list[float], list[float], str]:
    """Wall seconds and CPU seconds (user + sys, its worker processes included) of each run of
    ``cmd``, and the last run's stdout."""
    times, cpus, out = [], [], ""
    for _ in range(runs):
        with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, cwd=ROOT)
            _, status, usage = os.wait4(proc.pid, 0)
            times.append(time.perf_counter() - t0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            cpus.append(usage.ru_utime + usage.ru_stime)
            stdout.seek(0)
            stderr.seek(0)
            out = stdout.read().decode()
            if proc.returncode != 0:
                sys.exit(f"{' '.join(cmd[:4])} failed:\n{out[-2000:]}{stderr.read()[-2000:]!r}")
    return times, cpus, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=10_000)
    parser.add_argument(
        "--git-commits", type=int, default=500, help="newest commits git log is timed on"
    )
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    n = args.commits
    compileall.compile_dir(ROOT / "gitedge", quiet=1)  # as `pip install` does; see docstring
    tmp = Path(tempfile.mkdtemp(prefix="gitedge-bench-verify-"))
    try:
        key = make_ssh_key(tmp / "keys", "ed25519", comment=SIGNER)
        allowed = tmp / "allowed_signers"
        allowed.write_text(allowed_signers_line(SIGNER, key) + "\n")
        repo = tmp / "fleet.git"
        t0 = time.perf_counter()
        ids = build(repo, key, n)
        built = time.perf_counter() - t0
        env = tool_env(tmp / "home")
        for oid in {ids[0], ids[len(ids) // 2], ids[-1]}:
            check = git(repo, allowed, env, "verify-commit", oid)
            if check.returncode != 0:
                sys.exit(f"git verify-commit {oid} failed:\n{check.stderr}")
        print(
            f"repo: {n} commits signed by one ed25519 key (ssh-keygen), built in {built:.2f} s; "
            "git verify-commit accepts the first, middle and last"
        )

        # gitedge verify, end to end (a fresh interpreter each run)
        load = os.getloadavg()[0]
        cmd = [
            sys.executable,
            "-m",
            "gitedge",
            "verify",
            "--repo",
            str(repo),
            "--trust",
            str(allowed),
        ]
        times, cpus, out = timed(cmd, args.runs)
        if f"verified {n} commit(s) up to {ids[-1]}" not in out:
            sys.exit(f"gitedge verify did not verify all {n} commits:\n{out[-500:]}")
        start, _, _ = timed(
            [sys.executable, "-c", "import gitedge.cli, gitedge.agent.steps.verifyrange"], args.runs
        )

        # in-process: the library call alone, and its parts
        from gitedge.adapters.git.repo import GitRepo
        from gitedge.agent.steps.verifyrange import load_bootstrap, verify_range

        lib, walk = [], []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            d = verify_range(GitRepo(path=repo), bootstrap=load_bootstrap(allowed), rev="HEAD")
            lib.append(time.perf_counter() - t0)
            assert len(d.accepted) == n
            t0 = time.perf_counter()
            GitRepo(path=repo).commit_facts(since=None, rev="HEAD", first_parent=False)
            walk.append(time.perf_counter() - t0)

        # git log --format=%G? on the newest commits
        g = min(args.git_commits, n)
        t0 = time.perf_counter()
        log = git(repo, allowed, env, "log", f"-{g}", "--format=%G?")
        git_s = time.perf_counter() - t0
        lines = log.stdout.split()
        good = len(lines) == g and all(x == "G" for x in lines)

        med, best = statistics.median(times), min(times)
        git_per = git_s / g
        ours_per = med / n
        print(
            f"gitedge verify end to end: median {med:.3f} s, best {best:.3f} s over {args.runs} "
            f"runs = {n / med:,.0f} commits/s, {ours_per * 1e6:.1f} us/commit "
            f"(goal < 1.5 s: {'met' if med < 1.5 else 'NOT met'})"
        )
        print(
            f"  CPU (user + sys, worker processes included): median {statistics.median(cpus):.3f} s "
            f"on {os.cpu_count()} CPU(s); load average before: {load:.2f}"
        )
        print(f"  of which interpreter start-up + imports: {min(start):.3f} s")
        print(
            f"  in-process verify_range: median {statistics.median(lib):.3f} s "
            f"({n / statistics.median(lib):,.0f} commits/s), of which the walk "
            f"(commit_facts) {statistics.median(walk):.3f} s"
        )
        scope = (
            "all"
            if g == n
            else f"the newest {g} (scaled per commit; git spawns ssh-keygen per commit)"
        )
        print(
            f"git log --format=%G? on {scope}: {git_s:.2f} s, {git_per * 1e3:.2f} ms/commit "
            f"(= {git_per * n:.1f} s for {n}); every line G: {'yes' if good else 'NO: ' + repr(sorted(set(lines)))}"
        )
        print(
            f"ratio, per commit: {git_per / ours_per:.0f}x faster end to end, "
            f"{git_per / (statistics.median(lib) / n):.0f}x in-process (goal >= 30x: "
            f"{'met' if git_per / ours_per >= 30 else 'NOT met'})"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
