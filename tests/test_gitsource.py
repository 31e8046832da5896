"""The git source adapter against real git: repos made with the git CLI, served by real servers.

Covers: first fetch (clone) and incremental fetch over file://, git:// (git daemon), http with
basic auth (right and wrong password, no credentials), https with a CA made in the test, and ssh
(sshd with host key checking against known_hosts: right key, wrong key, unknown host, wrong client
key); exactly one ref written (no tags followed, no FETCH_HEAD left); plain http off loopback and
unknown schemes refused; a missing branch; connection refused and a silent server, both within a
small timeout; a transfer below the minimum rate; a connection dropped mid-pack and a
corrupt pack (TCP proxy) leaving the mirror's refs and files as before with the old commit still
readable; the test HTTP server taking gzip'd request bodies (git CLI); bundle import (full, incremental,
missing prerequisite, missing branch, corrupt); tree_snapshot with symlinks, subdir, .gitedge/,
submodules and the size cap; commit_facts over merges (all parents vs first parent), since/rev
ranges, trust blob ids, SSH signatures (checked with ssh-keygen -Y) and 10,000 commits;
is_descendant across a force push; resolve and read_blob; secrets never in error text.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gitedge.adapters.git.repo import FETCHED_PREFIX, GitRepo, read_commit_tree
from gitedge.adapters.git.source import GitMirror
from gitedge.adapters.git.transport import SourceAuth
from gitedge.core.fleet.snapshot import Symlink
from gitedge.errors import InvalidFleetRepo, InvalidInput, SourceUnavailable
from tests.gitserver import (
    free_port,
    git,
    git_daemon,
    git_env,
    http_git_server,
    make_tls_files,
    silent_server,
    ssh_keygen,
    sshd_available,
    sshd_server,
    tcp_proxy,
)

pytestmark = pytest.mark.timeout(60)


class Upstream:
    """A bare repo ``srv/fleet.git`` and a working clone that commits and pushes to it."""

    def __init__(self, tmp: Path) -> None:
        self.env = git_env(tmp / "home")
        self.srv = tmp / "srv"
        self.srv.mkdir()
        self.bare = self.srv / "fleet.git"
        git("init", "-q", "--bare", str(self.bare), cwd=tmp, env=self.env)
        self.work = tmp / "work"
        git("init", "-q", str(self.work), cwd=tmp, env=self.env)
        git("remote", "add", "origin", str(self.bare), cwd=self.work, env=self.env)

    def git(self, *args: str) -> str:
        return git(*args, cwd=self.work, env=self.env).strip()

    def commit(self, files: dict[str, bytes | None], msg: str = "change", push: bool = True) -> str:
        for name, data in files.items():
            path = self.work / name
            if data is None:
                self.git("rm", "-q", name)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            self.git("add", name)
        self.git("commit", "-q", "--allow-empty", "-m", msg)
        if push:
            self.git("push", "-q", "-f", "origin", "HEAD:refs/heads/main")
        return self.git("rev-parse", "HEAD")

    @property
    def url(self) -> str:
        return f"file://{self.bare}"


@pytest.fixture
def up(tmp_path: Path) -> Upstream:
    return Upstream(tmp_path)


@pytest.fixture
def mirror(tmp_path: Path) -> GitMirror:
    return GitMirror(mirror_dir=tmp_path / "mirror.git")


def state(m: GitMirror) -> tuple[dict[str, str], list[str]]:
    """Every ref of the mirror and every file under it except objects (which may only grow)."""
    refs = {name: str(m.repo.references[name].target) for name in m.repo.references}
    files = sorted(
        str(p.relative_to(m.path))
        for p in m.path.rglob("*")
        if p.is_file() and "objects" not in p.parts
    )
    return refs, files


def pack_files(m: GitMirror) -> list[str]:
    return sorted(p.name for p in (m.path / "objects" / "pack").iterdir())


# ---------------------------------------------------------------------------- transports


def test_file_clone_then_incremental_fetch_writes_only_the_fetched_ref(
    up: Upstream, mirror: GitMirror
) -> None:
    a = up.commit({"a.yaml": b"a: 1\n"})
    up.git("tag", "-a", "-m", "t", "v1")
    up.git("push", "-q", "origin", "v1")
    assert mirror.fetch(url=up.url, branch="main", timeout_s=10) == a
    b = up.commit({"b.yaml": b"b: 2\n"})
    assert mirror.fetch(url=up.url, branch="main", timeout_s=10) == b
    refs, files = state(mirror)
    assert refs == {FETCHED_PREFIX + "main": b}  # no tags followed, no scratch ref left
    assert "FETCH_HEAD" not in files
    assert mirror.resolve("main") == b
    assert mirror.is_descendant(commit=b, ancestor=a)


def test_git_daemon_fetch_and_incremental_fetch(up: Upstream, mirror: GitMirror) -> None:
    a = up.commit({"a.yaml": b"a: 1\n"})
    with git_daemon(up.srv) as base:
        assert mirror.fetch(url=f"{base}/fleet.git", branch="main", timeout_s=10) == a
        b = up.commit({"a.yaml": b"a: 2\n"})
        assert mirror.fetch(url=f"{base}/fleet.git", branch="main", timeout_s=10) == b
        with pytest.raises(SourceUnavailable, match="nope.git"):
            mirror.fetch(url=f"{base}/nope.git", branch="main", timeout_s=10)
    assert mirror.read_blob(b, "a.yaml") == b"a: 2\n"


def test_http_basic_auth_right_and_wrong_password(
    up: Upstream, mirror: GitMirror, tmp_path: Path
) -> None:
    a = up.commit({"a.yaml": b"a: 1\n"})
    (tmp_path / "user").write_text("fleet\n")
    (tmp_path / "good").write_text("s3cret-pass\n")
    (tmp_path / "bad").write_text("wrong-pass-xyz\n")
    good = SourceAuth(username_file=tmp_path / "user", password_file=tmp_path / "good")
    bad = SourceAuth(username_file=tmp_path / "user", password_file=tmp_path / "bad")
    with http_git_server(up.srv, credentials=("fleet", "s3cret-pass")) as srv:
        url = f"{srv.url}/fleet.git"
        assert mirror.fetch(url=url, branch="main", auth=good, timeout_s=10) == a
        up.commit({"a.yaml": b"a: 2\n"})
        before = state(mirror)
        with pytest.raises(SourceUnavailable) as err:
            mirror.fetch(url=url, branch="main", auth=bad, timeout_s=10)
        assert "authentication failed" in str(err.value) and url in str(err.value)
        assert "wrong-pass-xyz" not in str(err.value)
        with pytest.raises(SourceUnavailable, match="credentials"):
            mirror.fetch(url=url, branch="main", timeout_s=10)
        # a password in the URL itself never reaches the message either
        leaky = url.replace("://", "://fleet:hunter2-pw@")
        with pytest.raises(SourceUnavailable) as err:
            mirror.fetch(url=leaky, branch="nope", timeout_s=10)
        assert "hunter2-pw" not in str(err.value)
        assert state(mirror) == before
        assert mirror.resolve("main") == a


def test_https_needs_the_ca(up: Upstream, mirror: GitMirror, tmp_path: Path) -> None:
    a = up.commit({"a.yaml": b"a: 1\n"})
    tls = make_tls_files(tmp_path / "tls")
    with http_git_server(up.srv, tls=tls) as srv:
        url = f"{srv.url}/fleet.git"
        with pytest.raises(SourceUnavailable, match="TLS certificate of 127.0.0.1 is not trusted"):
            mirror.fetch(url=url, branch="main", timeout_s=10)
        assert mirror.fetch(url=url, branch="main", auth=SourceAuth(ca_file=tls.ca_file)) == a


def test_http_server_handles_gzip_request_bodies(up: Upstream, tmp_path: Path) -> None:
    up.commit({"a.yaml": b"a: 1\n"})
    for i in range(60):  # enough wants that the git CLI gzips its upload-pack request
        up.git("branch", f"a-branch-with-a-rather-long-name-{i:03d}")
    up.git("push", "-q", "origin", "--all")
    with http_git_server(up.srv) as srv:
        git(
            "clone",
            "-q",
            "--bare",
            f"{srv.url}/fleet.git",
            str(tmp_path / "c.git"),
            cwd=tmp_path,
            env=up.env,
        )
        assert any(h.get("Content-Encoding") == "gzip" for _, _, h in srv.requests_seen)
    refs = git("for-each-ref", "--format=%(refname)", cwd=tmp_path / "c.git", env=up.env)
    assert len(refs.split()) == 61


def test_plain_http_off_loopback_and_unknown_schemes_are_refused(mirror: GitMirror) -> None:
    with pytest.raises(InvalidInput, match="https"):
        mirror.fetch(url="http://git.example.com/fleet.git", branch="main")
    with pytest.raises(InvalidInput, match="unsupported URL"):
        mirror.fetch(url="ftp://git.example.com/fleet.git", branch="main")
    with pytest.raises(InvalidInput, match="not a valid branch name"):
        mirror.fetch(url="https://git.example.com/fleet.git", branch="bad..name")


needs_sshd = pytest.mark.skipif(not sshd_available(), reason="needs openssh-server")


@needs_sshd
def test_ssh_checks_the_host_key_against_known_hosts(
    up: Upstream, mirror: GitMirror, tmp_path: Path
) -> None:
    a = up.commit({"a.yaml": b"a: 1\n"})
    with sshd_server(tmp_path / "sshd") as ssh:
        url = ssh.url(up.bare)
        auth = SourceAuth(ssh_key_file=ssh.key_file, known_hosts_file=ssh.known_hosts_file)
        assert mirror.fetch(url=url, branch="main", auth=auth, timeout_s=15) == a
        b = up.commit({"a.yaml": b"a: 2\n"})
        (tmp_path / "user").write_text(ssh.user + "\n")  # no user in the URL: from the file
        by_file = SourceAuth(
            ssh_key_file=ssh.key_file,
            known_hosts_file=ssh.known_hosts_file,
            username_file=tmp_path / "user",
        )
        no_user = url.replace(f"{ssh.user}@", "")
        assert mirror.fetch(url=no_user, branch="main", auth=by_file, timeout_s=15) == b
        up.commit({"a.yaml": b"a: 3\n"})
        before = state(mirror)
        # the same host and port with another key: refused
        other = ssh_keygen(tmp_path / "other_host_key")
        wrong = tmp_path / "wrong_known_hosts"
        other_pub = " ".join(Path(f"{other}.pub").read_text().split()[:2])
        wrong.write_text(f"[127.0.0.1]:{ssh.port} {other_pub}\n")
        for known in (wrong, tmp_path / "empty_known_hosts"):
            known.touch()
            bad = SourceAuth(ssh_key_file=ssh.key_file, known_hosts_file=known)
            with pytest.raises(SourceUnavailable, match="ssh host key of 127.0.0.1 is not trusted"):
                mirror.fetch(url=url, branch="main", auth=bad, timeout_s=15)
        # a client key the server does not know
        stranger = SourceAuth(ssh_key_file=other, known_hosts_file=ssh.known_hosts_file)
        with pytest.raises(SourceUnavailable, match="authentication failed"):
            mirror.fetch(url=url, branch="main", auth=stranger, timeout_s=15)
        assert state(mirror) == before


# ---------------------------------------------------------------------------- failures


def test_missing_branch_leaves_everything_as_it_was(up: Upstream, mirror: GitMirror) -> None:
    a = up.commit({"a.yaml": b"a: 1\n"})
    mirror.fetch(url=up.url, branch="main")
    before = state(mirror)
    with pytest.raises(SourceUnavailable, match="'release'.*no such branch"):
        mirror.fetch(url=up.url, branch="release")
    assert state(mirror) == before
    assert mirror.resolve("main") == a


def test_connection_refused_fails_fast(mirror: GitMirror) -> None:
    port = free_port()
    started = time.monotonic()
    for url in (f"git://127.0.0.1:{port}/fleet.git", f"http://127.0.0.1:{port}/fleet.git"):
        with pytest.raises(SourceUnavailable, match=f"127.0.0.1:{port}"):
            mirror.fetch(url=url, branch="main", timeout_s=2)
    assert time.monotonic() - started < 4


def test_server_that_never_answers_times_out(mirror: GitMirror) -> None:
    with silent_server() as port:
        for scheme in ("git", "http", "ssh"):
            started = time.monotonic()
            with pytest.raises(SourceUnavailable, match="timed out|Timed out|in time"):
                mirror.fetch(url=f"{scheme}://127.0.0.1:{port}/x.git", branch="main", timeout_s=1)
            assert time.monotonic() - started < 5


@pytest.fixture
def big_update(up: Upstream, mirror: GitMirror) -> Iterator[tuple[str, str]]:
    """A fetched commit, then an upstream commit whose pack is ~1.5 MB of random bytes."""
    a = up.commit({"a.yaml": b"a: 1\n"})
    assert mirror.fetch(url=up.url, branch="main") == a
    b = up.commit({"blob.bin": os.urandom(1_500_000)})
    yield a, b


@pytest.mark.parametrize("transport", ["git", "http"])
@pytest.mark.parametrize("damage", ["cut", "corrupt"])
def test_damaged_transfer_leaves_the_mirror_as_it_was(
    up: Upstream, mirror: GitMirror, big_update: tuple[str, str], transport: str, damage: str
) -> None:
    a, b = big_update
    before, packs = state(mirror), pack_files(mirror)
    server = git_daemon(up.srv) if transport == "git" else http_git_server(up.srv)
    with server as srv:
        port = int((srv if isinstance(srv, str) else srv.url).rsplit(":", 1)[1])
        kw: dict[str, int] = {"cut_after": 300_000} if damage == "cut" else {"corrupt_at": 400_000}
        with tcp_proxy(port, **kw) as proxy:
            url = f"{transport}://127.0.0.1:{proxy.port}/fleet.git"
            with pytest.raises(SourceUnavailable, match=f"from {url}"):
                mirror.fetch(url=url, branch="main", timeout_s=10)
            assert proxy.cut + proxy.corrupted == 1
    assert state(mirror) == before
    assert pack_files(mirror) == packs  # no half-written pack left behind
    assert mirror.resolve("main") == a
    assert mirror.tree_snapshot(a) == {"a.yaml": b"a: 1\n"}
    assert mirror.fetch(url=up.url, branch="main") == b  # and the next fetch heals it


def test_a_transfer_below_the_minimum_rate_stops_after_one_window(
    up: Upstream, mirror: GitMirror, big_update: tuple[str, str]
) -> None:
    """No wall-clock deadline (a slow link may take hours, tests/test_hostile_input2.py), but a
    minimum rate over each window of ``timeout_s``: 50 KB/s against a minimum of 100 KB/s."""
    a, _ = big_update
    before = state(mirror)
    with git_daemon(up.srv) as base, tcp_proxy(int(base.rsplit(":", 1)[1]), rate=50_000) as proxy:
        started = time.monotonic()
        with pytest.raises(SourceUnavailable, match="below the minimum rate of 100000 B/s"):
            mirror.fetch(url=f"git://127.0.0.1:{proxy.port}/fleet.git", branch="main",
                         timeout_s=2, min_rate=100_000)  # fmt: skip
        assert time.monotonic() - started < 5  # every read returned data: only the pace stops it
    assert state(mirror) == before and mirror.resolve("main") == a


# ---------------------------------------------------------------------------- bundles


def test_bundle_import_full_incremental_and_broken(
    up: Upstream, mirror: GitMirror, tmp_path: Path
) -> None:
    a = up.commit({"a.yaml": b"a: 1\n"})
    full = tmp_path / "full.bundle"
    up.git("bundle", "create", "-q", str(full), "main")
    b = up.commit({"a.yaml": b"a: 2\n"})
    inc = tmp_path / "inc.bundle"
    up.git("bundle", "create", "-q", str(inc), "main", f"^{a}")

    with pytest.raises(SourceUnavailable, match=f"bundle {inc}.*(prerequisite|lacks)"):
        mirror.import_bundle(bundle_file=inc, branch="main")  # needs a first
    assert mirror.import_bundle(bundle_file=full, branch="main") == a
    before = state(mirror)
    with pytest.raises(SourceUnavailable, match=f"bundle {full}: has no branch 'release'"):
        mirror.import_bundle(bundle_file=full, branch="release")
    corrupt = tmp_path / "corrupt.bundle"
    data = bytearray(inc.read_bytes())
    for i in range(len(data) - 40, len(data) - 20):
        data[i] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    with pytest.raises(SourceUnavailable, match=f"bundle {corrupt}"):
        mirror.import_bundle(bundle_file=corrupt, branch="main")
    with pytest.raises(SourceUnavailable, match="no such file"):
        mirror.import_bundle(bundle_file=tmp_path / "absent.bundle", branch="main")
    assert state(mirror) == before
    assert mirror.import_bundle(bundle_file=inc, branch="main") == b
    assert state(mirror)[0] == {FETCHED_PREFIX + "main": b}


# ---------------------------------------------------------------------------- reading


def test_tree_snapshot_subdir_symlinks_gitedge_and_caps(up: Upstream, mirror: GitMirror) -> None:
    up.commit(
        {
            ".gitedge/trust.yaml": b"kind: TrustPolicy\n",
            "fleet/targets.yaml": b"kind: UpgradeTarget\n",
            "fleet/nested/windows.yml": b"kind: MaintenanceWindow\n",
            "other/x.yaml": b"x: 1\n",
            "README.md": b"# fleet\n",
            "fleet/big.png": os.urandom((1 << 20) + 10),
        },
        push=False,
    )
    (up.work / "fleet" / "link.yaml").symlink_to("targets.yaml")
    (up.work / "fleet" / "escape.yaml").symlink_to("../../etc/passwd")
    up.git("add", "fleet")
    sub = up.git("rev-parse", "HEAD")  # any commit id serves as a gitlink
    up.git("update-index", "--add", "--cacheinfo", f"160000,{sub},fleet/submodule")
    c = up.commit({})
    mirror.fetch(url=up.url, branch="main")

    snap = mirror.tree_snapshot(c, subdir="fleet")
    assert snap == {
        ".gitedge/trust.yaml": b"kind: TrustPolicy\n",
        "fleet/targets.yaml": b"kind: UpgradeTarget\n",
        "fleet/nested/windows.yml": b"kind: MaintenanceWindow\n",
        "fleet/link.yaml": Symlink("targets.yaml"),
        "fleet/escape.yaml": Symlink("../../etc/passwd"),
    }  # big.png (over 1 MiB, not YAML) left out unread; the submodule skipped
    whole = mirror.tree_snapshot(c)
    assert {"README.md", "other/x.yaml", ".gitedge/trust.yaml"} <= set(whole)
    assert mirror.tree_snapshot(c, subdir="absent") == {
        ".gitedge/trust.yaml": b"kind: TrustPolicy\n"
    }
    assert read_commit_tree(repo=up.work, rev="HEAD", subdir="fleet") == snap

    d = up.commit({"fleet/huge.yaml": b"#" * ((1 << 20) + 1)})
    mirror.fetch(url=up.url, branch="main")
    with pytest.raises(InvalidFleetRepo, match="fleet/huge.yaml: file is larger than 1 MiB"):
        mirror.tree_snapshot(d, subdir="fleet")
    with pytest.raises(InvalidFleetRepo, match="leaves the repo"):
        mirror.tree_snapshot(d, subdir="../x")


def test_resolve_and_read_blob(up: Upstream, mirror: GitMirror) -> None:
    a = up.commit({"dir/f.yaml": b"f: 1\n"})
    mirror.fetch(url=up.url, branch="main")
    for rev in ("main", FETCHED_PREFIX + "main", a, a[:10]):
        assert mirror.resolve(rev) == a
    with pytest.raises(SourceUnavailable, match="revision 'nope' not found"):
        mirror.resolve("nope")
    assert mirror.read_blob(a, "dir/f.yaml") == b"f: 1\n"
    assert mirror.read_blob(a, "dir") is None
    assert mirror.read_blob(a, "absent.yaml") is None
    with pytest.raises(SourceUnavailable, match="not a readable git repository"):
        GitRepo(path=up.srv).resolve("main")


def test_mirror_dir_that_is_not_a_repo(tmp_path: Path) -> None:
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file").write_text("x")
    with pytest.raises(SourceUnavailable, match="not a git repository"):
        GitMirror(mirror_dir=tmp_path / "junk").resolve("main")


def _merge_history(up: Upstream) -> dict[str, str]:
    """A - B - M - C on main, with S1 on a side branch merged at M (first parent B)."""
    ids = {"A": up.commit({".gitedge/trust.yaml": b"v1\n"}, "A", push=False)}
    ids["B"] = up.commit({"x.yaml": b"x\n"}, "B", push=False)
    up.git("checkout", "-q", "-b", "side", ids["A"])
    ids["S1"] = up.commit({"s.yaml": b"s\n"}, "S1", push=False)
    up.git("checkout", "-q", "main")
    up.git("merge", "-q", "--no-ff", "-m", "M", "side")
    ids["M"] = up.git("rev-parse", "HEAD")
    ids["C"] = up.commit({".gitedge/trust.yaml": b"v2\n"}, "C")
    return ids


def test_commit_facts_merges_ranges_and_trust_blob(up: Upstream, mirror: GitMirror) -> None:
    ids = _merge_history(up)
    mirror.fetch(url=up.url, branch="main")
    name = {v: k for k, v in ids.items()}

    def walk(since: str | None, first_parent: bool) -> list[str]:
        facts = mirror.commit_facts(since=since, rev="main", first_parent=first_parent)
        position = {f.id: i for i, f in enumerate(facts)}
        for f in facts:  # parents before children
            assert all(position[p] < position[f.id] for p in f.parents if p in position)
        return [name[f.id] for f in facts]

    all_ = walk(None, False)
    assert sorted(all_) == ["A", "B", "C", "M", "S1"] and all_[0] == "A" and all_[-2:] == ["M", "C"]
    assert walk(None, True) == ["A", "B", "M", "C"]
    assert sorted(walk(ids["B"], False)) == ["C", "M", "S1"]
    assert walk(ids["B"], True) == ["M", "C"]
    assert walk(ids["C"], False) == []

    facts = {name[f.id]: f for f in mirror.commit_facts(since=None, rev="main", first_parent=False)}
    assert facts["M"].parents == (ids["B"], ids["S1"])
    assert facts["A"].parents == ()
    assert facts["A"].trust_blob_id is not None
    assert facts["A"].trust_blob_id == facts["B"].trust_blob_id == facts["M"].trust_blob_id
    assert facts["C"].trust_blob_id not in (None, facts["A"].trust_blob_id)
    assert facts["A"].author == "Test Operator" and facts["A"].committer == "Test Operator"
    assert facts["A"].signature is None and facts["A"].payload is None
    assert facts["A"].committer_time.tzinfo is not None


def test_commit_facts_time_is_utc_whatever_the_offset(up: Upstream, mirror: GitMirror) -> None:
    up.env["GIT_COMMITTER_DATE"] = "2026-03-01T10:00:00+02:00"
    c = up.commit({"a.yaml": b"a\n"})
    mirror.fetch(url=up.url, branch="main")
    (f,) = mirror.commit_facts(since=None, rev=c, first_parent=True)
    assert f.committer_time == datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    assert f.committer_time.utcoffset() == timedelta(0)


def test_commit_facts_ssh_signature_and_payload(
    up: Upstream, mirror: GitMirror, tmp_path: Path
) -> None:
    key = ssh_keygen(tmp_path / "signer", comment="release@fleet.example")
    a = up.commit({"a.yaml": b"a\n"}, "unsigned")
    up.git("-c", "gpg.format=ssh", "-c", f"user.signingkey={key}", "commit", "-q", "-S",
           "--allow-empty", "-m", "signed")  # fmt: skip
    up.git("push", "-q", "origin", "HEAD:refs/heads/main")
    b = up.git("rev-parse", "HEAD")
    mirror.fetch(url=up.url, branch="main")
    facts = mirror.commit_facts(since=a, rev="main", first_parent=False)
    assert [f.id for f in facts] == [b]
    sig, payload = facts[0].signature, facts[0].payload
    assert sig is not None and sig.startswith(b"-----BEGIN SSH SIGNATURE-----")
    assert payload is not None and payload.startswith(b"tree ") and b"gpgsig" not in payload
    # the payload is exactly what was signed: the reference verifier agrees
    (tmp_path / "sig").write_bytes(sig)
    check = subprocess.run(
        ["ssh-keygen", "-Y", "check-novalidate", "-n", "git", "-s", str(tmp_path / "sig")],
        input=payload,
        capture_output=True,
        timeout=30,
    )
    assert check.returncode == 0, check.stderr


def test_is_descendant_across_a_force_push(up: Upstream, mirror: GitMirror) -> None:
    a = up.commit({"a.yaml": b"1\n"})
    b = up.commit({"a.yaml": b"2\n"})
    c = up.commit({"a.yaml": b"3\n"})
    assert mirror.fetch(url=up.url, branch="main") == c
    up.git("reset", "-q", "--hard", b)
    b2 = up.commit({"a.yaml": b"rewritten\n"})
    assert mirror.fetch(url=up.url, branch="main") == b2  # the agent, not the mirror, refuses
    assert not mirror.is_descendant(commit=b2, ancestor=c)
    assert mirror.is_descendant(commit=b2, ancestor=a)
    assert mirror.is_descendant(commit=c, ancestor=c)
    assert not mirror.is_descendant(commit=a, ancestor=b)
    assert mirror.read_blob(c, "a.yaml") == b"3\n"  # the replaced commit is still readable


def test_commit_facts_over_ten_thousand_commits(tmp_path: Path) -> None:
    n = 10_000
    stream = []
    for i in range(1, n + 1):
        trust = (
            f"\nM 100644 inline .gitedge/trust.yaml\ndata 3\nv{i // 2500}\n"
            if i % 2500 == 1
            else ""
        )
        stream.append(
            f"commit refs/heads/main\nmark :{i}\ncommitter C <c@x> {1_700_000_000 + i} +0000\n"
            f"data 2\nc\n{f'from :{i - 1}' if i > 1 else ''}\n"
            f"M 100644 inline n.txt\ndata {len(str(i))}\n{i}{trust}\n\n"
        )
    repo = tmp_path / "big.git"
    env = git_env(tmp_path / "home")
    git("init", "-q", "--bare", str(repo), cwd=tmp_path, env=env)
    git("fast-import", "--quiet", cwd=repo, env=env, input="".join(stream).encode())
    source = GitRepo(path=repo)
    started = time.perf_counter()
    facts = source.commit_facts(since=None, rev="main", first_parent=True)
    elapsed = time.perf_counter() - started  # printed, not asserted (figures live in bench/)
    print(f"commit_facts: {n} commits in {elapsed:.3f}s")
    assert len(facts) == n
    assert [f.committer_time for f in facts] == sorted(f.committer_time for f in facts)
    assert len({f.trust_blob_id for f in facts}) == 4
    assert facts[0].parents == () and facts[1].parents == (facts[0].id,)


def test_a_long_history_on_a_local_path_fetches_within_the_memory_cap(
    tmp_path: Path, mirror: GitMirror
) -> None:
    """20,000 small commits on a local path (file://): libgit2's local transport built the
    whole pack in the agent's process and ran out of the 64 MiB cap (``fetchMemoryBytes``,
    "Out of memory"); git's own fetch streams it, as over git://."""
    src = tmp_path / "long.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(src)], check=True)
    stream = []
    for i in range(20_000):
        data = f"n{i}\n"
        stream.append(f"commit refs/heads/main\nmark :{i + 1}\ncommitter A <a@x> "
                      f"{1_700_000_000 + i} +0000\ndata 3\nc{i % 10}\n")  # fmt: skip
        if i:
            stream.append(f"from :{i}\n")
        stream.append(f"M 100644 inline f.yaml\ndata {len(data)}\n{data}\n")
    subprocess.run(["git", "--git-dir", str(src), "fast-import", "--quiet"],
                   input="".join(stream).encode(), check=True)  # fmt: skip
    tip = subprocess.run(["git", "--git-dir", str(src), "rev-parse", "main"],
                         capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    assert mirror.fetch(url=f"file://{src}", branch="main") == tip
    assert mirror.resolve("main") == tip
    with pytest.raises(SourceUnavailable, match="'release'.*no such branch"):
        mirror.fetch(url=str(src), branch="release")
    assert mirror.resolve("main") == tip
