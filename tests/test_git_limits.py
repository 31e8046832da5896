"""Bounded git input (issue 13): caps per git object, a pack cap and a memory cap on fetches.

Real repos made with the git CLI (``git commit-tree``, ``git fast-import``, ``git repack``) and
pygit2, served by a real ``git daemon``; real ``gitedge`` processes whose peak RSS is taken with
``wait4`` and compared with the memory limit in deploy/ (the pod's limit counts every process).

- a 100 MB commit with no signature on top of a signed fleet repo: one ``gitedge run --once``
  refuses it ``too-large`` naming it, far under the pod's limit (it took ~340 MB before);
- ``gitedge verify``: a 2 MiB commit and a commit whose root tree is over 4 MiB are refused
  ``too-large``, naming the commit, before anything else reads them;
- a fetch whose pack grows past ``maxPackBytes`` is aborted and leaves the refs as they were;
- a pack of 640 KB holding a delta that resolves to 100 MB (libgit2's indexer builds deltified
  objects whole): the fetch fails cleanly within its memory allowance (it took ~230 MB before);
- 100 commits of ~1 MB each (under the commit cap), or 100 distinct ~1 MB trust files, are
  refused by the range's total (32 MiB);
- a directory over the tree cap in a snapshot is a problem naming it;
- a bundle carrying a 100 MB commit fails its import within the same memory allowance;
- a 5,000-commit catch-up of a fleet-like repo passes the default caps (refused ``unsigned``
  afterwards, as it is unsigned: the caps do not stand in the way).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pygit2
import pytest
import yaml

from gitedge.adapters.git.objects import MAX_COMMIT_BYTES, MAX_TREE_BYTES
from gitedge.adapters.git.repo import FETCHED_PREFIX, GitRepo
from gitedge.adapters.git.source import GitMirror
from gitedge.adapters.git.transport import MAX_PACK_BYTES
from gitedge.agent.steps.verifyrange import load_bootstrap, verify_range
from gitedge.errors import InvalidFleetRepo, SourceUnavailable, VerificationFailed
from tests.agentkit import START, fleet_files, served_fleet_repo
from tests.gitserver import git, git_daemon, git_env
from tests.sigtools import allowed_signers_line, make_ssh_key

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[1]


def pod_memory_limit() -> int:
    """The agent container's memory limit in deploy/, in bytes."""
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "40-deployment.yaml").read_text()))
    (dep,) = [d for d in docs if d and d.get("kind") == "Deployment"]
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    text = container["resources"]["limits"]["memory"]
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
    return int(text[:-2]) * units[text[-2:]]


_MEASURE = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss * 1024))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(args: list[str], *, cwd: Path, timeout: float = 240) -> tuple[int, str, int]:
    """Run ``args``; (exit code, output, peak RSS in bytes of it and the children it waited
    for). A small launcher starts it and takes ``wait4``'s figure: a child forked straight from
    this test process would count this process's pages until its exec."""
    n = len(list(cwd.glob("rss-*")))
    rss_file = cwd / f"rss-{n}"
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(rss_file), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=timeout,
    )
    return proc.returncode, proc.stdout.decode(errors="replace"), int(rss_file.read_text())


def gitedge(*args: str) -> list[str]:
    return [sys.executable, "-m", "gitedge", *args]


def big_message(size: int) -> bytes:
    """``size`` bytes of commit message: text lines (zlib shrinks them ~1:100 on the wire)."""
    rng = random.Random(size)
    line = bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz ") for _ in range(999)) + b"\n"
    return b"huge\n\n" + line * (size // len(line))


def test_a_100_mb_commit_is_refused_too_large_within_the_pod_memory(tmp_path: Path) -> None:
    repo = served_fleet_repo(tmp_path)
    files = fleet_files(
        registry="127.0.0.1:1", releases=["v1.27.16+k3s1"], k3s="v1.27.16+k3s1", os_image=None
    )
    repo.commit(files)  # signed
    who = pygit2.Signature("Intruder", "x@example.invalid", START + 3600, 0)
    message = big_message(100 << 20)
    huge = repo.repo.create_commit(None, who, who, message, repo._tree(), [repo.head])
    del message
    repo.set_main(huge)
    with git_daemon(tmp_path / "served") as url:
        cfg = tmp_path / "agent.yaml"
        cfg.write_text(
            "apiVersion: gitedge.io/v1alpha1\nkind: AgentConfig\n"
            "cluster:\n  name: site-1\n  status: {k3sVersion: v1.27.16+k3s1, arches: [amd64]}\n"
            f"source: {{url: '{url}/fleet.git', interval: 1h}}\n"
            f"trust: {{bootstrap: {tmp_path / 'allowed_signers'}}}\n"
            f"apply: {{mode: print}}\nstate: {{dir: {tmp_path / 'state'}}}\n"
        )
        code, out, peak = run_measured(
            gitedge("run", "--config", str(cfg), "--once", "--log-format", "text"), cwd=tmp_path
        )
    print(f"gitedge run --once fed a 100 MB commit: peak RSS {peak >> 20} MiB")
    assert code == 1, out
    assert f"commit {huge}: too-large: the commit is {len(repo.repo[huge].read_raw())}" in out
    assert "unsigned" not in out
    assert peak < pod_memory_limit() // 2, f"peak RSS {peak >> 20} MiB"


def trust_file(tmp: Path) -> Path:
    """An allowed_signers file trusting a new key (that signs nothing here)."""
    path = tmp / "allowed_signers"
    path.write_text(allowed_signers_line("release", make_ssh_key(tmp / "keys", "ed25519")) + "\n")
    return path


def make_repo(tmp: Path) -> tuple[Path, dict[str, str]]:
    env = git_env(tmp / "home")
    path = tmp / "repo"
    git("init", "-q", str(path), cwd=tmp, env=env)
    git("commit", "-q", "--allow-empty", "-m", "root", cwd=path, env=env)
    return path, env


def test_verify_refuses_a_commit_over_its_cap_naming_it(tmp_path: Path) -> None:
    path, env = make_repo(tmp_path)
    msg = tmp_path / "msg"
    msg.write_bytes(big_message(MAX_COMMIT_BYTES + (1 << 20)))
    tree = git("rev-parse", "HEAD^{tree}", cwd=path, env=env).strip()
    big = git("commit-tree", tree, "-p", "HEAD", "-F", str(msg), cwd=path, env=env).strip()
    git("update-ref", "refs/heads/main", big, cwd=path, env=env)
    signers = trust_file(tmp_path)
    code, out, _ = run_measured(
        gitedge(
            "verify",
            "--repo",
            str(path),
            "--trust",
            str(signers),
            "--since",
            "HEAD~1",
            "--rev",
            big,
            "-o",
            "json",
        ),
        cwd=tmp_path,
    )
    assert code == 1, out
    doc = json.loads(out)
    assert (doc["commit"], doc["reason"]) == (big, "too-large")
    assert "the limit is 1 MiB" in doc["detail"]


def test_verify_names_a_100_mb_commit_by_short_id_or_tag_without_reading_it(
    tmp_path: Path,
) -> None:
    """``--rev`` as a short id or an annotated tag: resolved from the id index and the tag's
    header, never by reading the commit (libgit2's revparse would read all 100 MB)."""
    path, env = make_repo(tmp_path)
    msg = tmp_path / "msg"
    msg.write_bytes(big_message(100 << 20))
    tree = git("rev-parse", "HEAD^{tree}", cwd=path, env=env).strip()
    big = git("commit-tree", tree, "-p", "HEAD", "-F", str(msg), cwd=path, env=env).strip()
    msg.unlink()
    git("tag", "-a", "-m", "release", "v1", big, cwd=path, env=env)
    trust = str(trust_file(tmp_path))
    for rev in (big[:10], "v1"):
        code, out, peak = run_measured(
            gitedge("verify", "--repo", str(path), "--trust", trust, "--rev", rev, "-o", "json"),
            cwd=tmp_path,
        )
        print(f"gitedge verify --rev {rev} (a 100 MB commit): peak RSS {peak >> 20} MiB")
        assert code == 1, out
        assert (json.loads(out)["commit"], json.loads(out)["reason"]) == (big, "too-large")
        assert peak < 96 << 20, f"peak RSS {peak >> 20} MiB"  # the commit is 100 MiB


def test_a_parent_or_tree_line_naming_a_100_mb_blob_is_refused_unread(tmp_path: Path) -> None:
    """A hand-made commit whose parent (or tree) is a 100 MB blob: each object's type is taken
    from its header before it is read, so the blob is never inflated."""
    path, env = make_repo(tmp_path)
    blob = git("hash-object", "-w", "--stdin", cwd=path, env=env, input=big_message(100 << 20))
    tree = git("rev-parse", "HEAD^{tree}", cwd=path, env=env).strip()
    who = f"Intruder <x@example.invalid> {START} +0000"
    trust = str(trust_file(tmp_path))
    for header in (f"tree {tree}\nparent {blob.strip()}", f"tree {blob.strip()}"):
        raw = f"{header}\nauthor {who}\ncommitter {who}\n\nhostile\n".encode()
        args = ("hash-object", "-t", "commit", "--literally", "-w", "--stdin")
        bad = git(*args, cwd=path, env=env, input=raw).strip()
        code, out, peak = run_measured(
            gitedge("verify", "--repo", str(path), "--trust", trust, "--rev", bad), cwd=tmp_path
        )
        line = "parent" if "parent" in header else "tree"
        print(f"gitedge verify, a {line} line naming a 100 MB blob: peak RSS {peak >> 20} MiB")
        assert code == 1, out
        assert f"object {blob.strip()} is a blob, not a" in out and "Traceback" not in out
        assert peak < 96 << 20, f"peak RSS {peak >> 20} MiB"  # the blob is 100 MiB


def test_a_range_of_many_commits_each_under_the_cap_is_refused_by_its_total(
    tmp_path: Path,
) -> None:
    """100 commits with a ~1 MB bogus signature each (a 1 MB pack): verification keeps every
    signature until it decides, so the range is capped in all (32 MiB), naming the tip."""
    repo = pygit2.init_repository(str(tmp_path / "many.git"), bare=True, initial_head="main")
    who = pygit2.Signature("Intruder", "x@example.invalid", START, 0)
    tree = repo.TreeBuilder().write()
    line = big_message(2_000).splitlines()[-1].decode()[:70]
    armor = "-----BEGIN SSH SIGNATURE-----\n" + "\n".join([line] * 14_000)
    signature = armor + "\n-----END SSH SIGNATURE-----\n"
    assert len(signature) < MAX_COMMIT_BYTES
    parents: list[pygit2.Oid] = []
    for i in range(100):
        payload = repo.create_commit_string(who, who, f"change {i}\n", tree, parents)
        parents = [repo.create_commit_with_signature(payload, signature)]
    repo.references.create("refs/heads/main", parents[0])
    code, out, peak = run_measured(
        gitedge("verify", "--repo", str(tmp_path / "many.git"), "--trust",
                str(trust_file(tmp_path)), "-o", "json"),
        cwd=tmp_path,
    )  # fmt: skip
    print(f"gitedge verify of 100 commits of 1 MB each: peak RSS {peak >> 20} MiB")
    assert code == 1, out
    doc = json.loads(out)
    assert (doc["commit"], doc["reason"]) == (str(parents[0]), "too-large")
    assert "hold more than 32 MiB in all" in doc["detail"]
    assert peak < pod_memory_limit() // 2, f"peak RSS {peak >> 20} MiB"


def test_a_range_of_many_distinct_trust_files_is_refused_by_its_total(tmp_path: Path) -> None:
    """Unsigned commits each bringing a different ~1 MB trust file (a 5 MB repo): verification
    reads every trust file of the range before deciding, so they count in the range's total."""
    repo = pygit2.init_repository(str(tmp_path / "trust.git"), bare=True, initial_head="main")
    who = pygit2.Signature("Intruder", "x@example.invalid", START, 0)
    filler = big_message(1 << 20)
    parents: list[pygit2.Oid] = []
    for i in range(100):
        blob = repo.create_blob(f"# {i}\n".encode() + filler)
        gitedge_dir = repo.TreeBuilder()
        gitedge_dir.insert("trust.yaml", blob, pygit2.enums.FileMode.BLOB)
        root = repo.TreeBuilder()
        root.insert(".gitedge", gitedge_dir.write(), pygit2.enums.FileMode.TREE)
        parents = [repo.create_commit(None, who, who, f"c{i}\n", root.write(), parents)]
    repo.references.create("refs/heads/main", parents[0])
    code, out, peak = run_measured(
        gitedge("verify", "--repo", str(tmp_path / "trust.git"), "--trust",
                str(trust_file(tmp_path)), "-o", "json"),
        cwd=tmp_path,
    )  # fmt: skip
    print(f"gitedge verify of 100 distinct 1 MB trust files: peak RSS {peak >> 20} MiB")
    assert code == 1, out
    doc = json.loads(out)
    assert (doc["commit"], doc["reason"]) == (str(parents[0]), "too-large")
    assert "trust files hold more than 32 MiB in all" in doc["detail"]
    assert peak < pod_memory_limit() // 2, f"peak RSS {peak >> 20} MiB"


def wide_tree(path: Path, env: dict[str, str]) -> str:
    """A tree over the 4 MiB cap: ~125,000 entries ("100644 fNNNNNN\\0" + id: 35 bytes each)."""
    n = MAX_TREE_BYTES // 35 + 5_000
    blob = git("hash-object", "-w", "--stdin", cwd=path, env=env, input=b"x\n").strip()
    listing = "".join(f"100644 blob {blob}\tf{i:06d}\n" for i in range(n))
    return git("mktree", cwd=path, env=env, input=listing.encode()).strip()


def test_verify_refuses_a_commit_whose_root_tree_is_over_its_cap(tmp_path: Path) -> None:
    path, env = make_repo(tmp_path)
    tree = wide_tree(path, env)
    wide = git("commit-tree", tree, "-p", "HEAD", "-m", "wide", cwd=path, env=env).strip()
    git("update-ref", "refs/heads/main", wide, cwd=path, env=env)
    bootstrap = trust_file(tmp_path)
    with pytest.raises(VerificationFailed) as e:
        verify_range(
            GitRepo(path=path), bootstrap=load_bootstrap(bootstrap), rev="main", since="main~1"
        )
    assert (e.value.commit, e.value.reason) == (wide, "too-large")
    assert f"the tree {tree} is" in e.value.detail and "the limit is 4 MiB" in e.value.detail


def test_a_snapshot_refuses_a_directory_over_the_tree_cap_naming_it(tmp_path: Path) -> None:
    path, env = make_repo(tmp_path)
    wide = wide_tree(path, env)
    root = git("mktree", cwd=path, env=env, input=f"040000 tree {wide}\tfleet\n".encode())
    commit = git("commit-tree", root.strip(), "-m", "wide dir", cwd=path, env=env).strip()
    with pytest.raises(InvalidFleetRepo) as e:
        GitRepo(path=path).tree_snapshot(commit)
    (problem,) = e.value.problems
    assert problem.path == "fleet" and f"the tree {wide} is" in problem.message
    with pytest.raises(InvalidFleetRepo):
        GitRepo(path=path).tree_snapshot(commit, subdir="fleet")


def random_blob_repo(tmp: Path, *, size: int) -> Path:
    """A bare repo ``served/fleet.git`` whose main has one incompressible blob of ``size``."""
    path, env = make_repo(tmp)
    (path / "noise.bin").write_bytes(random.Random(7).randbytes(size))
    git("add", "noise.bin", cwd=path, env=env)
    git("commit", "-q", "-m", "noise", cwd=path, env=env)
    served = tmp / "served" / "fleet.git"
    git("clone", "-q", "--bare", str(path), str(served), cwd=tmp, env=env)
    return served


def test_a_pack_past_the_cap_is_aborted_and_the_refs_stay(tmp_path: Path) -> None:
    random_blob_repo(tmp_path, size=3 << 20)
    mirror = GitMirror(mirror_dir=tmp_path / "mirror.git")
    with git_daemon(tmp_path / "served") as url:
        with pytest.raises(SourceUnavailable, match=r"pack is larger than 1 MiB .*maxPackBytes"):
            mirror.fetch(url=f"{url}/fleet.git", branch="main", max_pack_bytes=1 << 20)
        assert list(mirror.repo.references) == []
        assert mirror.fetch(url=f"{url}/fleet.git", branch="main")  # the default lets it in


def test_a_delta_that_resolves_to_100_mb_fails_the_fetch_within_its_memory(
    tmp_path: Path,
) -> None:
    path, env = make_repo(tmp_path)
    big = path / "big.txt"
    big.write_bytes(big_message(100 << 20))
    git("add", "big.txt", cwd=path, env=env)
    git("commit", "-q", "-m", "base", cwd=path, env=env)
    with big.open("ab") as f:
        f.write(b"one more line\n")
    git("commit", "-q", "-am", "delta", cwd=path, env=env)
    served = tmp_path / "served" / "fleet.git"
    git("clone", "-q", "--bare", str(path), str(served), cwd=tmp_path, env=env)
    git("repack", "-adq", cwd=served, env=env)
    packs = list((served / "objects" / "pack").glob("*.pack"))
    assert sum(p.stat().st_size for p in packs) < 2 << 20  # the wire carries ~1 MB, not 200
    script = (
        "import sys\nfrom gitedge.adapters.git.source import GitMirror\n"
        "from gitedge.errors import SourceUnavailable\n"
        "try:\n    GitMirror(mirror_dir=sys.argv[1]).fetch(url=sys.argv[2], branch='main')\n"
        "except SourceUnavailable as e:\n    print('refused:', e)\n    sys.exit(3)\n"
        "print('fetched')\n"
    )
    with git_daemon(tmp_path / "served") as url:
        code, out, peak = run_measured(
            [sys.executable, "-c", script, str(tmp_path / "mirror.git"), f"{url}/fleet.git"],
            cwd=tmp_path,
        )
    print(f"fetch of a 100 MB delta: peak RSS {peak >> 20} MiB")
    assert code == 3, out
    assert "needs more than 64 MiB of memory to index" in out
    assert peak < pod_memory_limit() // 2, f"peak RSS {peak >> 20} MiB"


def fleet_history(tmp: Path, *, n: int) -> tuple[Path, dict[str, str]]:
    """A bare repo ``served/fleet.git``: ``main`` at one commit, ``later`` ``n`` commits past it.
    Fleet-like: each commit rewrites a target's image digest (incompressible) and carries a
    signature-sized random block in its message, as a signed commit would."""
    env = git_env(tmp / "home")
    served = tmp / "served" / "fleet.git"
    git("init", "-q", "--bare", str(served), cwd=tmp, env=env)
    rng = random.Random(n)
    files = fleet_files(
        registry="registry.example:5000",
        releases=["v1.27.16+k3s1"],
        k3s="v1.27.16+k3s1",
        os_image=None,
    )
    stream = []
    for i in range(1, n + 2):
        digest = rng.randbytes(32).hex()
        sig = rng.randbytes(300).hex()  # ~ an SSHSIG block's worth of entropy
        message = f"change {i}\n\n{sig}\n"
        target = files["targets.yaml"] + f"  # os digest sha256:{digest}\n"
        changes = "".join(
            f"M 100644 inline {name}\ndata {len(text)}\n{text}\n"
            for name, text in {**files, "targets.yaml": target}.items()
        )
        stream.append(
            f"commit refs/heads/{'main' if i == 1 else 'later'}\nmark :{i}\n"
            f"committer Release Bot <release@fleet.example> {START + i * 60} +0000\n"
            f"data {len(message)}\n{message}" + ("from :1\n" if i == 2 else "") + changes + "\n"
        )
    git("fast-import", "--quiet", cwd=served, env=env, input="".join(stream).encode())
    return served, env


def test_a_5000_commit_catch_up_passes_the_default_caps(tmp_path: Path) -> None:
    served, env = fleet_history(tmp_path, n=5_000)
    bootstrap = trust_file(tmp_path)
    mirror = GitMirror(mirror_dir=tmp_path / "mirror.git")
    pack_dir = mirror.path / "objects" / "pack"
    with git_daemon(tmp_path / "served") as url:
        first = mirror.fetch(url=f"{url}/fleet.git", branch="main")
        before = sum(p.stat().st_size for p in pack_dir.glob("*.pack"))
        git("update-ref", "refs/heads/main", "refs/heads/later", cwd=served, env=env)
        tip = mirror.fetch(url=f"{url}/fleet.git", branch="main")  # the defaults
    received = sum(p.stat().st_size for p in pack_dir.glob("*.pack")) - before
    print(
        f"5,000-commit catch-up: a pack of {received / 1e6:.1f} MB (cap {MAX_PACK_BYTES >> 20} MiB)"
    )
    assert tip == str(mirror.repo.references[FETCHED_PREFIX + "main"].target) != first
    with pytest.raises(VerificationFailed) as e:
        verify_range(mirror, bootstrap=load_bootstrap(bootstrap), rev=tip, since=first)
    assert e.value.reason == "unsigned"  # judged, not stopped by a cap

    # the same catch-up as a git bundle passes the git CLI's memory cap
    bundle = tmp_path / "catch-up.bundle"
    git("bundle", "create", "-q", str(bundle), "main", "^main~5000", cwd=served, env=env)
    other = GitMirror(mirror_dir=tmp_path / "other.git")
    with git_daemon(tmp_path / "served") as url:
        git("update-ref", "refs/heads/main", first, cwd=served, env=env)
        assert other.fetch(url=f"{url}/fleet.git", branch="main") == first
    assert other.import_bundle(bundle_file=bundle, branch="main") == tip


_IMPORT = """
import sys
from gitedge.adapters.git.source import GitMirror
from gitedge.errors import SourceUnavailable
try:
    GitMirror(mirror_dir=sys.argv[1]).import_bundle(bundle_file=sys.argv[2], branch="main")
except SourceUnavailable as e:
    print("refused:", e)
    sys.exit(3)
print("imported")
"""


def test_a_bundle_with_a_100_mb_commit_is_refused_within_its_memory(tmp_path: Path) -> None:
    path, env = make_repo(tmp_path)
    msg = tmp_path / "msg"
    msg.write_bytes(big_message(100 << 20))
    tree = git("rev-parse", "HEAD^{tree}", cwd=path, env=env).strip()
    big = git("commit-tree", tree, "-p", "HEAD", "-F", str(msg), cwd=path, env=env).strip()
    git("update-ref", "refs/heads/main", big, cwd=path, env=env)
    msg.unlink()
    bundle = tmp_path / "hostile.bundle"
    git("bundle", "create", "-q", str(bundle), "main", cwd=path, env=env)
    code, out, peak = run_measured(
        [sys.executable, "-c", _IMPORT, str(tmp_path / "mirror.git"), str(bundle)], cwd=tmp_path
    )
    print(f"import of a bundle with a 100 MB commit: peak RSS {peak >> 20} MiB")
    assert code == 3, out
    assert "out of memory" in out.lower()
    assert peak < pod_memory_limit() // 2, f"peak RSS {peak >> 20} MiB"
