"""Attacks on issue 17's refactor: the verified-commit cache in the state's SQLite, the one
fork pool, the pass as steps. Each test is an attack that once worked (or a guard that held),
with real git, real ``git commit -S`` signatures and the real CLI."""

from __future__ import annotations

import hashlib
import os
import signal
import struct
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from gitedge.adapters.git.repo import GitRepo
from gitedge.adapters.kube.cluster import Kube
from gitedge.adapters.state import LastVerified, State
from gitedge.adapters.trust.verifiedcommits import VerifiedCommits
from gitedge.adapters.yamlworkers import ParsedFiles
from gitedge.agent.passtypes import Synced
from gitedge.agent.scheduler import AgentLoop
from gitedge.agent.steps import verify as verify_module
from gitedge.agent.steps.verifyrange import load_bootstrap, verify_range
from gitedge.core.fleet.yamldoc import parse_documents
from gitedge.errors import GitEdgeError, Transient, VerificationFailed
from tests.agentkit import trust_yaml
from tests.gitserver import git_daemon, wait_single_threaded
from tests.kubeapi import KubeEmulator, load_deploy_rbac
from tests.sigtools import SignedRepo, allowed_signers_line, make_ssh_key
from tests.test_bundle import agent_of, write_site


def gitedge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gitedge", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_shallow_clone_cannot_put_a_refused_commit_in_the_cache(tmp_path: Path) -> None:
    """``gitedge verify --cache`` over a shallow clone saw the cut commit as a root, judged it
    by the bootstrap (where the key it is signed with is still an admin) and cached it; the
    agent, sharing that state, then skipped it in the full history, where the key was retired
    by the trust file of its parent."""
    k = make_ssh_key(tmp_path, "ed25519")
    admin2 = make_ssh_key(tmp_path, "ed25519", comment="admin2")
    boot = tmp_path / "boot"
    boot.write_text(allowed_signers_line("k", k))
    r = SignedRepo(tmp_path / "repo")
    r.commit(signer=k, date="2026-01-01T00:00:00Z")
    retired = r.commit(
        signer=k, files={".gitedge/trust.yaml": trust_yaml(admin2)}, date="2026-01-02T00:00:00Z"
    )
    bad = r.commit(signer=k, date="2026-01-03T00:00:00Z")  # k is no longer trusted here
    bootstrap = load_bootstrap(boot)
    with pytest.raises(VerificationFailed) as full:
        verify_range(GitRepo(path=r.path), bootstrap=bootstrap, rev=bad)
    assert (full.value.commit, full.value.reason) == (bad, "unknown-key")

    shallow = tmp_path / "shallow"
    subprocess.run(
        ["git", "clone", "-q", "--depth", "1", f"file://{r.path}", str(shallow)],
        check=True,
        env=r.env,
    )
    state = tmp_path / "state"
    state.mkdir()
    out = gitedge("verify", "--repo", str(shallow), "--trust", str(boot), "--cache", str(state))
    assert out.returncode != 0, out.stdout
    assert "shallow" in out.stderr and "Traceback" not in out.stderr

    cache = VerifiedCommits(state, bootstrap=bootstrap)
    try:
        assert bad not in cache
        with pytest.raises(VerificationFailed) as agent:  # the agent's range from `retired`
            verify_range(
                GitRepo(path=r.path), bootstrap=bootstrap, rev=bad, since=retired, cache=cache
            )
        assert agent.value.commit == bad
    finally:
        cache.close()


def test_shallow_clone_cut_below_the_range_still_verifies(tmp_path: Path) -> None:
    """The refusal is about cut commits in the range only: ``--since`` at or above the cut
    verifies as in a full clone."""
    k = make_ssh_key(tmp_path, "ed25519")
    boot = tmp_path / "boot"
    boot.write_text(allowed_signers_line("k", k))
    r = SignedRepo(tmp_path / "repo")
    for day in range(1, 4):
        r.commit(signer=k, date=f"2026-01-0{day}T00:00:00Z")
    shallow = tmp_path / "shallow"
    subprocess.run(
        ["git", "clone", "-q", "--depth", "2", f"file://{r.path}", str(shallow)],
        check=True,
        env=r.env,
    )
    out = gitedge("verify", "--repo", str(shallow), "--trust", str(boot), "--since", "HEAD~1")
    assert out.returncode == 0, out.stderr
    assert "verified 1 commit(s)" in out.stdout


def test_info_grafts_cannot_make_a_retired_keys_commit_a_root(tmp_path: Path) -> None:
    """libgit2 honours ``info/grafts``: a repository handed over with one listing a commit as
    a root had that commit judged by the bootstrap, not by its parent's trust file (where its
    key was retired): it removed the trust file and was accepted, and cached."""
    k = make_ssh_key(tmp_path, "ed25519")
    admin2 = make_ssh_key(tmp_path, "ed25519", comment="admin2")
    boot = tmp_path / "boot"
    boot.write_text(allowed_signers_line("k", k))
    r = SignedRepo(tmp_path / "repo")
    r.commit(signer=k, date="2026-01-01T00:00:00Z")
    r.commit(
        signer=k, files={".gitedge/trust.yaml": trust_yaml(admin2)}, date="2026-01-02T00:00:00Z"
    )
    bad = r.commit(signer=k, files={".gitedge/trust.yaml": None}, date="2026-01-03T00:00:00Z")
    handed = tmp_path / "handed.git"
    subprocess.run(
        ["git", "clone", "-q", "--mirror", f"file://{r.path}", str(handed)], check=True, env=r.env
    )
    (handed / "info").mkdir(exist_ok=True)
    (handed / "info" / "grafts").write_text(f"{bad}\n")
    state = tmp_path / "state"
    state.mkdir()
    out = gitedge("verify", "--repo", str(handed), "--trust", str(boot), "--cache", str(state))
    assert out.returncode != 0, out.stdout
    assert "grafts" in out.stderr and "Traceback" not in out.stderr
    cache = VerifiedCommits(state, bootstrap=load_bootstrap(boot))
    try:
        assert bad not in cache
    finally:
        cache.close()


def test_a_concurrent_import_is_not_rolled_back_by_a_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No lock keeps ``gitedge bundle import`` and the agent's pass apart (both record the last
    verified commit in one SQLite). A pass read L, verified (L, R] while the import moved the
    record to B (after L, not before R), then wrote R over it: the site went back from B to a
    commit B does not lead to, and the rollback rule was skipped. The pass must not record
    then (the next one verifies again, from B)."""

    k = make_ssh_key(tmp_path, "ed25519")
    served = tmp_path / "served"
    r = SignedRepo(served / "fleet")
    base = r.commit(signer=k, date="2026-01-01T00:00:00Z")
    bundled = r.commit(signer=k, date="2026-01-02T00:00:00Z")  # the bundle's tip, B
    r.git("checkout", "-q", "-b", "side", base)
    offered = r.commit(signer=k, date="2026-01-03T00:00:00Z")  # R: after L, not after B
    r.git("checkout", "-q", "main")
    r.git("reset", "-q", "--hard", base)
    with git_daemon(served) as url:
        cfg = write_site(tmp_path / "site", git_url=f"{url}/fleet", key=k, k3s="v1.27.16+k3s1")
        agent = agent_of(cfg)
        try:
            now = datetime.fromtimestamp(1_767_400_000, UTC)
            fetched = agent.git.fetch(url=f"{url}/fleet", branch="main")
            assert verify_module.verify_step(agent, Synced(fetched), now=now).output is not None
            assert agent.state.last_verified is not None
            assert agent.state.last_verified.commit == base
            r.git("reset", "-q", "--hard", offered)
            fetched = agent.git.fetch(url=f"{url}/fleet", branch="main")
            assert fetched == offered
            real = verify_module.verify_range

            def meanwhile(*args: object, **kw: object) -> object:
                d = real(*args, **kw)  # type: ignore[arg-type]
                other = State(agent.dir)  # the import, in its own process and connection
                try:
                    other.record_verified(
                        LastVerified(bundled, now, now, "bootstrap", "sha256:x"), replacing=base
                    )
                finally:
                    other.close()
                return d

            monkeypatch.setattr(verify_module, "verify_range", meanwhile)
            with pytest.raises(GitEdgeError) as raised:
                result = verify_module.verify_step(agent, Synced(fetched), now=now)
                if result.error is not None:
                    raise result.error
            assert isinstance(raised.value, Transient)  # the pass retries: nothing to fix
            last = agent.state.last_verified
            assert last is not None and last.commit == bundled
        finally:
            agent.close()


def test_the_loop_gives_back_the_signal_handlers_it_took() -> None:
    """``AgentLoop.run_forever`` set SIGTERM and SIGINT to its shutdown and kept them after it
    returned: a process that ran a loop (the test process, test_agent_memory.py) then took
    SIGTERM and Ctrl-C as "shut down a loop that is gone", and ignored them."""

    def reconcile(*, now: datetime) -> SimpleNamespace:
        return SimpleNamespace(outcomes={}, tip=None, transient=False, retry_after=None)

    source = SimpleNamespace(interval=timedelta(hours=1), bundle_dir=None)
    passes = SimpleNamespace(
        stop=threading.Event(), config=SimpleNamespace(source=source), reconcile=reconcile
    )
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    done = threading.Event()
    loop = AgentLoop(passes, on_pass=lambda _: done.set())  # type: ignore[arg-type]
    stopper = threading.Thread(target=lambda: (done.wait(), loop.shutdown()))
    stopper.start()
    loop.run_forever()
    stopper.join()
    assert loop.passes == 1
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def _hostile_yaml() -> list[tuple[bytes, str]]:
    laughs = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9)
    )
    return [
        (laughs.encode(), "laughs.yaml"),  # 10^9 nodes by aliases
        (("[" * 5000 + "]" * 5000).encode(), "deep.yaml"),
        (b"&r [*r, 1]\n", "recursive.yaml"),
        (b"{a: 1, a: 2}\n", "dupflow.yaml"),
        (b"k: &k {a: 1}\nm: {<<: *k, a: 2, a: 3}\n", "dupmerge.yaml"),
        (b"kind: UpgradeTarget\n" + b"x: " + b"y" * (1 << 20) + b"\n", "huge.yaml"),
        (b"ok: 1\n", "ok.yaml"),
    ]


@pytest.mark.parametrize("kill", [False, True])
def test_hostile_yaml_parses_in_workers_as_here_and_leaves_no_process(kill: bool) -> None:
    """Alias bombs, deep and recursive nesting, duplicate keys (flow, merged) and a large file:
    the forked workers (issue 17's one fork pool) give exactly the in-process results, a worker
    killed mid-stream costs time only, and none is left running."""

    files = _hostile_yaml() * 2
    serial = [parse_documents(data, path=path) for data, path in files]
    plain = [([(d.value, d.line) for d in docs], [str(p) for p in pr]) for docs, pr in serial]
    assert all(pr for _, pr in plain[:5]) and not plain[6][1]  # each hostile one is refused
    wait_single_threaded()
    parsed = ParsedFiles(files, 2)
    pids = parsed.pids
    assert len(pids) == 2
    if kill:
        os.kill(pids[1], signal.SIGKILL)
    got = [([(d.value, d.line) for d in docs], [str(p) for p in pr]) for docs, pr in parsed]
    assert got == plain
    for pid in pids:  # reaped by the pool: not a zombie of ours any more
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def _forge_parent_in_commit_graph(gitdir: Path, *, commit: str, parent: str) -> None:
    """Rewrite ``objects/info/commit-graph`` (format: git's
    Documentation/gitformat-commit-graph.txt) so that ``commit``'s first parent is ``parent``,
    checksum fixed: git itself then shows that history."""
    f = gitdir / "objects" / "info" / "commit-graph"
    data = bytearray(f.read_bytes())
    assert data[:4] == b"CGPH"
    offsets = {}
    for i in range(data[6] + 1):
        at = 8 + 12 * i
        offsets[bytes(data[at : at + 4])] = struct.unpack(">Q", data[at + 4 : at + 12])[0]
    oidl, cdat = offsets[b"OIDL"], offsets[b"CDAT"]
    oids = [
        bytes(data[oidl + 20 * i : oidl + 20 * i + 20]).hex() for i in range((cdat - oidl) // 20)
    ]
    entry = cdat + 36 * oids.index(commit)  # tree id, parent 1, parent 2, generation+date
    data[entry + 20 : entry + 24] = struct.pack(">I", oids.index(parent))
    data[-20:] = hashlib.sha1(bytes(data[:-20])).digest()
    f.chmod(0o644)
    f.write_bytes(bytes(data))


def test_a_forged_commit_graph_does_not_hide_an_unsigned_commit(tmp_path: Path) -> None:
    """A repository handed over with a commit-graph that skips an unsigned commit adding a key
    (git log believes it): the walk must still reach that commit and refuse it (held: libgit2
    reads parents from the commit objects)."""
    k = make_ssh_key(tmp_path, "ed25519")
    evil = make_ssh_key(tmp_path, "ed25519", comment="evil")
    boot = tmp_path / "boot"
    boot.write_text(allowed_signers_line("k", k))
    r = SignedRepo(tmp_path / "repo")
    root = r.commit(signer=k, date="2026-01-01T00:00:00Z")
    sneaked = r.commit(files={".gitedge/trust.yaml": trust_yaml(evil)}, date="2026-01-02T00:00:00Z")
    tip = r.commit(signer=evil, date="2026-01-03T00:00:00Z")
    handed = tmp_path / "handed.git"
    subprocess.run(
        ["git", "clone", "-q", "--bare", f"file://{r.path}", str(handed)], check=True, env=r.env
    )
    subprocess.run(
        ["git", "-C", str(handed), "commit-graph", "write", "--reachable"], check=True, env=r.env
    )
    _forge_parent_in_commit_graph(handed, commit=tip, parent=root)
    shown = subprocess.run(
        ["git", "-C", str(handed), "log", "--format=%H", tip],
        capture_output=True,
        text=True,
        check=True,
        env=r.env,
    ).stdout.split()
    assert shown == [tip, root]  # the forgery fools git
    with pytest.raises(VerificationFailed) as e:
        verify_range(GitRepo(path=handed), bootstrap=load_bootstrap(boot), rev=tip)
    assert (e.value.commit, e.value.reason) == (sneaked, "unsigned")


def test_grafts_of_the_main_repository_count_for_its_linked_worktree(tmp_path: Path) -> None:
    """libgit2 reads ``info/grafts`` from the main repository (``commondir``) when opened on a
    linked worktree: the check of grafted commits must look there too, or the graft attack
    above works through ``git worktree add``."""
    k = make_ssh_key(tmp_path, "ed25519")
    admin2 = make_ssh_key(tmp_path, "ed25519", comment="admin2")
    boot = tmp_path / "boot"
    boot.write_text(allowed_signers_line("k", k))
    r = SignedRepo(tmp_path / "repo")
    r.commit(signer=k, date="2026-01-01T00:00:00Z")
    r.commit(
        signer=k, files={".gitedge/trust.yaml": trust_yaml(admin2)}, date="2026-01-02T00:00:00Z"
    )
    bad = r.commit(signer=k, files={".gitedge/trust.yaml": None}, date="2026-01-03T00:00:00Z")
    linked = tmp_path / "linked"
    r.git("worktree", "add", "-q", "--detach", str(linked))
    (r.path / ".git" / "info").mkdir(exist_ok=True)
    (r.path / ".git" / "info" / "grafts").write_text(f"{bad}\n")
    out = gitedge("verify", "--repo", str(linked), "--trust", str(boot), "--rev", bad)
    assert out.returncode != 0, out.stdout
    assert "grafts" in out.stderr and "Traceback" not in out.stderr


def test_ids_cached_before_the_graft_check_are_verified_again(tmp_path: Path) -> None:
    """Ids cached by the rules that accepted a shallow clone's or a graft's cut commit (r3: a
    ``gitedge verify --cache`` before the fix, in the table or an r3 text file) are not
    trusted by the rules that refuse it: that commit is verified again, and refused."""
    k = make_ssh_key(tmp_path, "ed25519")
    admin2 = make_ssh_key(tmp_path, "ed25519", comment="admin2")
    boot = tmp_path / "boot"
    boot.write_text(allowed_signers_line("k", k))
    r = SignedRepo(tmp_path / "repo")
    r.commit(signer=k, date="2026-01-01T00:00:00Z")
    retired = r.commit(
        signer=k, files={".gitedge/trust.yaml": trust_yaml(admin2)}, date="2026-01-02T00:00:00Z"
    )
    bad = r.commit(signer=k, date="2026-01-03T00:00:00Z")
    bootstrap = load_bootstrap(boot)
    name = bootstrap.digest.removeprefix("sha256:")[:16]
    for how in ("table", "file"):
        state_dir = tmp_path / f"state-{how}"
        state_dir.mkdir()
        if how == "table":
            s = State(state_dir)
            s.record_verified_commits([bad], rules="r3", bootstrap=name)
            s.close()
        else:
            (state_dir / f"verified-r3-{name}.txt").write_text(f"{bad}\n")
        cache = VerifiedCommits(state_dir, bootstrap=bootstrap)
        try:
            assert bad not in cache, how
            with pytest.raises(VerificationFailed) as e:
                verify_range(
                    GitRepo(path=r.path), bootstrap=bootstrap, rev=bad, since=retired, cache=cache
                )
            assert e.value.commit == bad
        finally:
            cache.close()


def test_the_kube_emulator_ends_the_connections_a_client_kept(tmp_path: Path) -> None:
    """The cause of the threads a full-suite run kept (and of test_sshworkers.py waiting for a
    single-threaded process): tests/kubeapi.py serves HTTP/1.1 keep-alive, and each connection
    a still-living client kept open held a handler thread blocked on its next request after
    the emulator stopped, until that client was collected. Stopping it ends them."""
    wait_single_threaded()
    assert threading.active_count() == 1
    grants = load_deploy_rbac(Path(__file__).resolve().parent.parent / "deploy")
    with KubeEmulator(token="t0ken", grants=grants) as api:
        client = Kube.connect(kubeconfig=str(api.kubeconfig(tmp_path / "kc")), request_timeout=10)
        client.snapshot()  # a request on a connection the client keeps
    wait_single_threaded(limit_s=10)
    try:
        assert threading.active_count() == 1, [t.name for t in threading.enumerate()]
    finally:
        client.close()
