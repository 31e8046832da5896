"""Hostile input, second round (issue 13): shapes of git trees the per-object caps let through.

Every tree below is under the 4 MiB tree cap and the repos are a few hundred KB, made with
pygit2 in a real bare repo and read by ``GitRepo.tree_snapshot`` (what the agent's plan step,
``gitedge plan --rev`` and ``bundle create`` read):

- one tree naming another tree under many names: 400 x 400 empty files are 160,000 paths (a
  1,200 x 1,200 one took 58 s and 208 MiB, 20,000 x 20,000 would never end): refused past
  100,000 entries met, naming the directory;
- a tree nested 1,500 deep (a path of 3,000 bytes) raised RecursionError (a bug, not a problem
  of the fleet repo): now read; nested 5,000 deep its path is over 4,096 bytes and refused.

Bundle files read by ``open_bundle`` (what ``gitedge bundle import`` and the agent's bundleDir
inbox run), in a separate process whose peak RSS is taken:

- a pax extended header of 200 MB before the index (a sparse file: no disk): ``tarfile`` read it
  whole (a 300 MB one took 928 MiB); now refused at its header's size;
- 5,000 chained pax headers: ``tarfile`` follows them by recursion, RecursionError (not an
  error of the tree) came out of the import; now refused past 8;
- a global pax header and a GNU sparse header are refused (they add up across the file).

An agent pass (``gitedge run --once``, peak RSS taken) fed an unsigned commit whose trust file
is 1 MiB of ``0,`` (524,000 YAML nodes): 209 MiB before (PyYAML composed every node before the
node budget was spent), 59 MiB now (parser events counted first).

Git transfers: a ``git://`` server trickling its ref advertisement held a fetch for ever (no
callback runs before a pack arrives, and every read gets a byte); an honest fetch slower than
``timeout_s`` was cut by a wall-clock limit. Now a pace: each window of ``timeout_s`` must
bring 1 KiB/s, checked from a watchdog thread.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pygit2
import pytest
from pygit2.enums import FileMode

from gitedge.adapters.git.objects import MAX_WALK_ENTRIES
from gitedge.adapters.git.repo import GitRepo
from gitedge.adapters.git.source import GitMirror
from gitedge.adapters.images.bundlefile import open_bundle
from gitedge.core.delivery.bundleindex import BundleIndex
from gitedge.core.fleet.model import load_fleet
from gitedge.errors import InvalidFleetRepo, InvalidInput, SourceUnavailable
from tests.agentkit import fleet_files, served_fleet_repo
from tests.gitserver import git, git_daemon, git_env, tcp_proxy
from tests.test_git_limits import pod_memory_limit, random_blob_repo, run_measured

pytestmark = pytest.mark.timeout(120)


def commit_of(repo: pygit2.Repository, tree: pygit2.Oid) -> str:
    who = pygit2.Signature("Intruder", "x@example.invalid", 1_700_000_000, 0)
    return str(repo.create_commit("refs/heads/main", who, who, "hostile\n", tree, []))


def square_tree(repo: pygit2.Repository, n: int) -> pygit2.Oid:
    """A root with ``junk/`` holding ``n`` names of one tree of ``n`` empty files."""
    empty = repo.create_blob(b"")
    files = repo.TreeBuilder()
    for i in range(n):
        files.insert(f"f{i}", empty, FileMode.BLOB)
    inner = files.write()
    dirs = repo.TreeBuilder()
    for i in range(n):
        dirs.insert(f"d{i}", inner, FileMode.TREE)
    root = repo.TreeBuilder()
    root.insert("junk", dirs.write(), FileMode.TREE)
    return root.write()


def test_a_tree_repeated_under_many_names_is_refused_by_the_entries_met(tmp_path: Path) -> None:
    repo = pygit2.init_repository(str(tmp_path / "square.git"), bare=True)
    n = 400
    assert n * n > MAX_WALK_ENTRIES
    commit = commit_of(repo, square_tree(repo, n))
    with pytest.raises(InvalidFleetRepo) as e:
        GitRepo(path=tmp_path / "square.git").tree_snapshot(commit)
    (problem,) = e.value.problems
    assert problem.path == "."
    assert f"more than {MAX_WALK_ENTRIES:,} entries" in problem.message
    with pytest.raises(InvalidFleetRepo) as e:
        GitRepo(path=tmp_path / "square.git").tree_snapshot(commit, subdir="junk")
    assert e.value.problems[0].path == "junk"


def nested(repo: pygit2.Repository, depth: int) -> pygit2.Oid:
    """``d/d/.../d/x.yaml``, ``depth`` directories deep."""
    blob = repo.create_blob(b"a: 1\n")
    tb = repo.TreeBuilder()
    tb.insert("x.yaml", blob, FileMode.BLOB)
    tree = tb.write()
    for _ in range(depth):
        tb = repo.TreeBuilder()
        tb.insert("d", tree, FileMode.TREE)
        tree = tb.write()
    return tree


def test_a_deeply_nested_tree_is_read_without_recursion(tmp_path: Path) -> None:
    repo = pygit2.init_repository(str(tmp_path / "deep.git"), bare=True)
    commit = commit_of(repo, nested(repo, 1_500))
    snap = GitRepo(path=tmp_path / "deep.git").tree_snapshot(commit)
    assert snap == {"d/" * 1_500 + "x.yaml": b"a: 1\n"}


def test_a_path_over_4096_bytes_is_refused(tmp_path: Path) -> None:
    repo = pygit2.init_repository(str(tmp_path / "deeper.git"), bare=True)
    commit = commit_of(repo, nested(repo, 5_000))
    with pytest.raises(InvalidFleetRepo) as e:
        GitRepo(path=tmp_path / "deeper.git").tree_snapshot(commit)
    (problem,) = e.value.problems
    assert problem.path.startswith("d/d/d/") and "a path longer than 4096 bytes" in problem.message


def pax_header(size: int, *, kind: bytes = tarfile.XHDTYPE) -> bytes:
    """The 512-byte header of an extended header member of ``size`` bytes."""
    hdr = tarfile.TarInfo("././@PaxHeader")
    hdr.type, hdr.size = kind, size
    return hdr.tobuf(format=tarfile.USTAR_FORMAT)


def pax_member(body: bytes, *, kind: bytes = tarfile.XHDTYPE) -> bytes:
    record = b" comment=" + body + b"\n"
    n = len(record) + len(str(len(record))) + 1
    record = str(n).encode() + record
    return pax_header(len(record), kind=kind) + record + b"\0" * (-len(record) % 512)


def index_member() -> bytes:
    info = tarfile.TarInfo("gitedge-bundle.json")
    info.size = 2
    return info.tobuf(format=tarfile.USTAR_FORMAT) + b"{}" + b"\0" * 510 + b"\0" * 1024


_OPEN = """
import sys
from pathlib import Path
from gitedge.adapters.images.bundlefile import open_bundle
from gitedge.errors import GitEdgeError
try:
    open_bundle(Path(sys.argv[1]), scratch=Path(sys.argv[2]))
except GitEdgeError as e:
    print("refused:", e.problems[0].message if getattr(e, "problems", None) else e)
    sys.exit(3)
print("opened")
"""


def open_measured(tmp: Path, bundle: Path) -> tuple[int, str, int]:
    return run_measured([sys.executable, "-c", _OPEN, str(bundle), str(tmp / "scratch")], cwd=tmp)


def test_a_200_mb_pax_header_is_refused_unread(tmp_path: Path) -> None:
    bundle = tmp_path / "pax.tar"
    size = 200 << 20
    with bundle.open("wb") as f:
        f.write(pax_header(size))
        f.seek(size, 1)  # a hole: the file costs no disk
        f.write(index_member())
    code, out, peak = open_measured(tmp_path, bundle)
    print(f"bundle with a 200 MB pax header: peak RSS {peak >> 20} MiB")
    assert peak < pod_memory_limit() // 2, f"peak RSS {peak >> 20} MiB"
    assert code == 3, out
    assert f"an extended header of {size} bytes, over 64 KiB" in out


@pytest.mark.parametrize(
    ("members", "why"),
    [
        ([pax_member(b"x")] * 5_000, "more than 8 extended headers before one member"),
        ([pax_member(b"x", kind=tarfile.XGLTYPE)], "a global pax header: refused"),
        ([pax_header(512, kind=tarfile.GNUTYPE_SPARSE) + b"\0" * 512], "a GNU sparse header"),
    ],
    ids=["chain", "global", "sparse"],
)
def test_extended_header_shapes_are_refused(tmp_path: Path, members: list[bytes], why: str) -> None:
    bundle = tmp_path / "hostile.tar"
    bundle.write_bytes(b"".join(members) + index_member())
    code, out, _ = open_measured(tmp_path, bundle)
    assert code == 3, out
    assert why in out and "Traceback" not in out


def agent_config(tmp: Path, url: str) -> Path:
    cfg = tmp / "agent.yaml"
    cfg.write_text(
        "apiVersion: gitedge.io/v1alpha1\nkind: AgentConfig\n"
        "cluster:\n  name: site-1\n  status: {k3sVersion: v1.27.16+k3s1, arches: [amd64]}\n"
        f"source: {{url: '{url}/fleet.git', interval: 1h}}\n"
        f"trust: {{bootstrap: {tmp / 'allowed_signers'}}}\n"
        f"apply: {{mode: print}}\nstate: {{dir: {tmp / 'state'}}}\n"
    )
    return cfg


def test_an_unsigned_1_mib_trust_file_of_small_nodes_stays_within_the_pod(
    tmp_path: Path,
) -> None:
    """A pusher with no key adds a commit whose ``.gitedge/trust.yaml`` is 1 MiB of ``0,``
    (524,000 YAML nodes, under the file cap): PyYAML composed every node before the node count
    was checked, ~170 MiB for the file, on top of the pass."""
    repo = served_fleet_repo(tmp_path)
    files = fleet_files(
        registry="127.0.0.1:1", releases=["v1.27.16+k3s1"], k3s="v1.27.16+k3s1", os_image=None
    )
    repo.commit(files)  # signed
    bomb = "a: [" + "0," * 524_000 + "0]\n"
    assert len(bomb) < 1 << 20
    bad = repo.commit({".gitedge/trust.yaml": bomb}, signed=False)
    with git_daemon(tmp_path / "served") as url:
        cfg = agent_config(tmp_path, url)
        code, out, peak = run_measured(
            [sys.executable, "-m", "gitedge", "run", "--config", str(cfg), "--once",
             "--log-format", "text"], cwd=tmp_path,
        )  # fmt: skip
    print(f"gitedge run --once fed a 1 MiB trust file of 524,000 nodes: peak RSS {peak >> 20} MiB")
    assert peak < pod_memory_limit() // 2, f"peak RSS {peak >> 20} MiB"
    assert code == 1, out
    assert f"commit {bad}: invalid-trust-policy: .gitedge/trust.yaml:1: more than 200000" in out


# ---------------------------------------------------------------------------- git transfer pace


@contextmanager
def trickling_git_server(*, per_byte_s: float) -> Iterator[int]:
    """A ``git://`` server on 127.0.0.1 that answers every request with a ref advertisement
    of 1,000 refs, one byte every ``per_byte_s`` (0: an endless one, at full speed): every
    read gets data, so libgit2's own timeout never fires. Yields its port; closed (and its
    threads ended) on exit."""
    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)

    def pkt(line: bytes) -> bytes:
        return b"%04x" % (len(line) + 4) + line

    def serve(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.recv(4096)
            head = pkt(b"1" * 40 + b" HEAD\0multi_ack side-band-64k ofs-delta\n")
            refs = b"".join(pkt(b"1" * 40 + b" refs/heads/b%08d\n" % i) for i in range(1000))
            if not per_byte_s:  # endless, at full speed
                conn.sendall(head)
                while not stop.is_set():
                    conn.sendall(refs)
                return
            for i in range(len(head + refs)):
                if stop.wait(per_byte_s):
                    return
                conn.sendall((head + refs)[i : i + 1])

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threads.append(threading.Thread(target=serve, args=(conn,), daemon=True))
            threads[-1].start()

    threads = [threading.Thread(target=accept, daemon=True)]
    threads[0].start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        for t in threads:
            t.join()
        listener.close()


def test_a_trickled_ref_advertisement_stops_the_fetch_after_one_window(tmp_path: Path) -> None:
    """Anyone on a ``git://`` path trickles the ref advertisement at 4 bytes a second: libgit2
    calls no callback before a pack arrives, and no read ever times out, so the fetch (and the
    agent's pass, and every pass after: a hung pass holds back the next) never ended. Now a
    watchdog thread finds no progress after one window (``timeout_s``) and interrupts it."""
    mirror = GitMirror(mirror_dir=tmp_path / "mirror.git")
    with trickling_git_server(per_byte_s=0.25) as port:
        started = time.monotonic()
        with pytest.raises(SourceUnavailable, match=r"0 bytes in \ds, below the minimum rate"):
            mirror.fetch(url=f"git://127.0.0.1:{port}/fleet.git", branch="main", timeout_s=2)
        assert time.monotonic() - started < 10  # one window and a tick; it never ended before
    assert list(mirror.repo.references) == []


def test_a_slow_honest_fetch_is_not_cut_by_a_wall_clock_limit(tmp_path: Path) -> None:
    """A 400 KB pack at 50 KB/s (a slow link) takes ~8 s, four times ``timeout_s``: it was
    aborted 'did not finish in time' (a 3 MB catch-up over a satellite link never completed);
    it is above the minimum rate, so it completes."""
    served = random_blob_repo(tmp_path, size=400_000)
    env = git_env(tmp_path / "home")
    tip = git("rev-parse", "main", cwd=served, env=env).strip()
    mirror = GitMirror(mirror_dir=tmp_path / "mirror.git")
    started = time.monotonic()
    with (
        git_daemon(tmp_path / "served") as base,
        tcp_proxy(int(base.rsplit(":", 1)[1]), rate=50_000) as proxy,
    ):
        started = time.monotonic()
        url = f"git://127.0.0.1:{proxy.port}/fleet.git"
        assert mirror.fetch(url=url, branch="main", timeout_s=2) == tip
    assert time.monotonic() - started > 2  # it did outlast timeout_s


# ---------------------------------------------------------------------------- bundle disk room


def test_a_bundle_member_that_would_fill_the_disk_is_refused_at_its_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sparse bundle file (no disk) whose ``fleet.bundle`` announces 100 MB, on a scratch
    filesystem reported as 1 GiB with 150 MB free (a stand-in for a node's nearly full disk;
    a real one would be filled by the test run before the fix): it was written whole, to be
    refused only after (its digest), the disk full meanwhile; now refused at its header,
    before a byte is written, as it would leave less than 10% free (the kubelet's eviction
    threshold)."""
    index = BundleIndex(
        created_at=datetime(2026, 1, 1, tzinfo=UTC), repo="hostile", branch="main",
        tip="1" * 40, since=None, path="", git_digest="sha256:" + "0" * 64, git_size=10,
        images=(),
    ).to_json()  # fmt: skip
    size = 100 << 20
    bundle = tmp_path / "sparse.tar"
    with bundle.open("wb") as f:
        info = tarfile.TarInfo("gitedge-bundle.json")
        info.size = len(index)
        f.write(info.tobuf(format=tarfile.USTAR_FORMAT) + index + b"\0" * (-len(index) % 512))
        info = tarfile.TarInfo("fleet.bundle")
        info.size = size
        f.write(info.tobuf(format=tarfile.USTAR_FORMAT))
        f.seek(size, 1)  # a hole
        f.write(b"\0" * 1024)
    real = shutil.disk_usage
    monkeypatch.setattr(
        shutil, "disk_usage", lambda p: real(p)._replace(total=1 << 30, free=150 << 20)
    )
    with pytest.raises(InvalidInput) as e:
        open_bundle(bundle, scratch=tmp_path / "scratch")
    assert f"member 'fleet.bundle' is {size} bytes: extracting it would leave less than 10%" in (
        str(e.value)
    )
    assert list((tmp_path / "scratch").iterdir()) == []


# ---------------------------------------------------------------------------- problem counts


def test_validation_problems_are_told_20_per_document(tmp_path: Path) -> None:
    """A list of 60,000 wrong items is one problem per item: 40 such files (5 MB) were 2.4
    million problems, 1.4 GiB and 29 s for the pass that loads a signed tip (an honest mistake
    in a generated file was an OOM-kill loop); now 20 a document and a count of the rest."""
    doc = (
        "apiVersion: gitedge.io/v1alpha1\nkind: MaintenanceWindow\nmetadata: {name: w%d}\n"
        'spec:\n  timeZone: UTC\n  days: [mon]\n  start: "01:00"\n  end: "05:00"\n'
        "  blackouts: [" + ",".join(["1"] * 60_000) + "]\n"
    )
    snap = {f"w{i}.yaml": (doc % i).encode() for i in range(4)}
    with pytest.raises(InvalidFleetRepo) as e:
        load_fleet(snap)
    assert len(e.value.problems) == 4 * 21
    assert "w3.yaml:9: MaintenanceWindow/w3: and 59980 more problem(s) in this document" in str(
        e.value
    )


def test_a_ref_advertisement_past_the_fetch_memory_is_named_as_such(tmp_path: Path) -> None:
    """An endless ref advertisement at full speed: the fetch's memory cap stops it (as
    it did), but the refusal blamed 'an object in the pack'; it now names the advertisement."""
    mirror = GitMirror(mirror_dir=tmp_path / "mirror.git")
    with trickling_git_server(per_byte_s=0) as port, pytest.raises(SourceUnavailable) as e:
        mirror.fetch(url=f"git://127.0.0.1:{port}/fleet.git", branch="main", timeout_s=10)
    assert "the server's ref advertisement took more than 64 MiB of memory" in str(e.value)
