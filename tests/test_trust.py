"""Commit verification against the trust policy (core/trust/decision.py via agent/steps/verifyrange.py and the
``gitedge verify`` CLI).

Covers: commits signed by the reference signers (``git commit -S`` with ssh-keygen keys of all
three types, and with gpg), unsigned commits, tampered payloads, unknown keys, the wrong SSHSIG
namespace, keys outside their validity window at the committer time, merges (``all`` checks side
commits, ``first-parent`` exempts them), trust rotation by an admin, a trust change by a
non-admin, a removed or broken trust file, force-pushed history (RollbackRefused), the cache of
verified commits, a fetch cut mid-way that leaves the last verified state as it was, and checks
run ahead in worker processes (long ranges) reaching the same verdicts as one by one.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import pytest
from gitserver import git_daemon, tcp_proxy, wait_single_threaded
from sigtools import (
    GpgKey,
    SignedRepo,
    SshKey,
    allowed_signers_line,
    make_gpg_key,
    make_ssh_key,
    ssh_sign,
    stop_gpg,
)

from gitedge.adapters.git.repo import GitRepo
from gitedge.adapters.git.source import GitMirror
from gitedge.adapters.trust import commitwalk as verifywalk
from gitedge.adapters.trust import sshworkers
from gitedge.adapters.trust.sshworkers import AheadChecks
from gitedge.adapters.trust.verifiedcommits import VerifiedCommits
from gitedge.agent.steps import verifyrange as verifying
from gitedge.agent.steps.verifyrange import (
    checker_for,
    load_bootstrap,
    sync_and_verify,
    verify_range,
)
from gitedge.cli import main
from gitedge.errors import RollbackRefused, SourceUnavailable, TrustError, VerificationFailed

pytestmark = pytest.mark.timeout(120)

HEAD = "apiVersion: gitedge.io/v1alpha1\n"


def policy_yaml(signers: list[tuple[str, str, list[str]]], *, verify: str = "all") -> str:
    lines = [HEAD + "kind: TrustPolicy\nmetadata: {name: fleet}\nspec:\n  signers:"]
    for name, key, roles in signers:
        lines.append(f"    - name: {name}\n      key: {json.dumps(key)}\n      roles: {roles}")
    lines.append(f"  verify: {verify}\n")
    return "\n".join(lines).replace("'", "")


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SshKey]:
    d = tmp_path_factory.mktemp("keys")
    return {
        "alice": make_ssh_key(d, "ed25519", comment="alice@fleet"),
        "bob": make_ssh_key(d, "ecdsa256", comment="bob@fleet"),
        "carol": make_ssh_key(d, "rsa", comment="carol@fleet"),
        "mallory": make_ssh_key(d, "ed25519", comment="mallory@evil"),
    }


def verify(repo: Path, trust: Path, *extra: str) -> VerificationFailed | list[str]:
    """Verify via the library; the accepted commit ids, or the failure."""
    try:
        args = dict(zip(extra[::2], extra[1::2], strict=True))
        d = verify_range(
            GitRepo(path=repo),
            bootstrap=load_bootstrap(trust),
            rev=args.get("rev", "HEAD"),
            since=args.get("since"),
        )
    except VerificationFailed as e:
        return e
    return [a.commit for a in d.accepted]


def failure(result: VerificationFailed | list[str]) -> tuple[str, str]:
    assert isinstance(result, VerificationFailed), f"expected a failure, got {result}"
    return result.commit, result.reason


# ---------------------------------------------------------------------------- signers


@pytest.mark.parametrize("who", ["alice", "bob", "carol"])
def test_git_commit_dash_s_with_each_ssh_key_type_verifies(
    tmp_path: Path, keys: dict[str, SshKey], who: str, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = SignedRepo(tmp_path / "repo")
    ids = [repo.commit(signer=keys[who]) for _ in range(3)]
    trust = write(tmp_path / "allowed_signers", allowed_signers_line(who, keys[who]) + "\n")
    assert verify(repo.path, trust) == ids
    assert main(["verify", "--repo", str(repo.path), "--trust", str(trust)]) == 0
    out = capsys.readouterr().out
    assert f"verified 3 commit(s) up to {ids[-1]}" in out
    assert keys[who].fingerprint in out


def test_gpg_signed_commits_verify_with_an_openpgp_bootstrap(tmp_path: Path) -> None:
    gk: GpgKey = make_gpg_key(tmp_path, "Release Bot <release@fleet.example>")
    other = make_gpg_key(tmp_path, "Someone <else@example.org>")
    try:
        repo = SignedRepo(tmp_path / "repo")
        good = [repo.commit(signer=gk), repo.commit(signer=gk)]
        trust = write(tmp_path / "keys.asc", gk.public)
        assert verify(repo.path, trust) == good
        bad = repo.commit(signer=other)
        assert failure(verify(repo.path, trust)) == (bad, "unknown-key")
    finally:
        stop_gpg(gk)
        stop_gpg(other)


def test_a_trust_policy_yaml_may_mix_ssh_and_openpgp_signers(
    tmp_path: Path, keys: dict[str, SshKey]
) -> None:
    gk = make_gpg_key(tmp_path, "Alice <alice@fleet.example>")
    try:
        repo = SignedRepo(tmp_path / "repo")
        ids = [repo.commit(signer=gk), repo.commit(signer=keys["bob"])]
        trust = write(
            tmp_path / "trust.yaml",
            policy_yaml(
                [("alice", gk.public, ["release"]), ("bob", keys["bob"].public, ["release"])]
            ),
        )
        assert verify(repo.path, trust) == ids
    finally:
        stop_gpg(gk)


# ---------------------------------------------------------------------------- refusals


def _raw(repo: SignedRepo, oid: str) -> bytes:
    return subprocess.run(
        ["git", "cat-file", "commit", oid], cwd=repo.path, check=True, capture_output=True
    ).stdout


def _write_commit(repo: SignedRepo, raw: bytes) -> str:
    oid = (
        subprocess.run(
            ["git", "hash-object", "-t", "commit", "-w", "--stdin"],
            cwd=repo.path,
            input=raw,
            check=True,
            capture_output=True,
        )
        .stdout.decode()
        .strip()
    )
    repo.git("update-ref", "refs/heads/main", oid)
    return oid


def _with_gpgsig(raw: bytes, signature: bytes) -> bytes:
    header, _, message = raw.partition(b"\n\n")
    lines = signature.rstrip(b"\n").split(b"\n")
    sig = b"gpgsig " + b"\n ".join(lines)
    return header + b"\n" + sig + b"\n\n" + message


def test_unsigned_commit_is_named(tmp_path: Path, keys: dict[str, SshKey]) -> None:
    repo = SignedRepo(tmp_path / "repo")
    repo.commit(signer=keys["alice"])
    bad = repo.commit(signer=None)
    repo.commit(signer=keys["alice"])
    trust = write(tmp_path / "as", allowed_signers_line("alice", keys["alice"]) + "\n")
    assert failure(verify(repo.path, trust)) == (bad, "unsigned")


def test_cli_names_the_first_bad_commit_and_reason(
    tmp_path: Path, keys: dict[str, SshKey], capsys: pytest.CaptureFixture[str]
) -> None:
    repo = SignedRepo(tmp_path / "repo")
    repo.commit(signer=keys["alice"])
    bad = repo.commit(signer=keys["mallory"])
    repo.commit(signer=None)
    trust = write(tmp_path / "as", allowed_signers_line("alice", keys["alice"]) + "\n")
    assert main(["verify", "--repo", str(repo.path), "--trust", str(trust)]) == 1
    err = capsys.readouterr().err
    assert f"commit {bad}: unknown-key" in err and keys["mallory"].fingerprint in err
    code = main(["verify", "--repo", str(repo.path), "--trust", str(trust), "-o", "json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1 and doc["commit"] == bad and doc["reason"] == "unknown-key"


def test_tampered_payload_is_a_bad_signature(tmp_path: Path, keys: dict[str, SshKey]) -> None:
    repo = SignedRepo(tmp_path / "repo")
    repo.commit(signer=keys["alice"])
    signed = repo.commit("deploy v1.30", signer=keys["alice"])
    forged = _write_commit(repo, _raw(repo, signed).replace(b"deploy v1.30", b"deploy v1.31"))
    assert forged != signed
    trust = write(tmp_path / "as", allowed_signers_line("alice", keys["alice"]) + "\n")
    assert failure(verify(repo.path, trust)) == (forged, "bad-signature")


def test_signature_for_another_namespace_is_refused(
    tmp_path: Path, keys: dict[str, SshKey]
) -> None:
    repo = SignedRepo(tmp_path / "repo")
    unsigned = repo.commit(signer=None)
    raw = _raw(repo, unsigned)
    sig = ssh_sign(keys["alice"], raw, namespace="file")  # a valid signature, wrong purpose
    crafted = _write_commit(repo, _with_gpgsig(raw, sig))
    trust = write(tmp_path / "as", allowed_signers_line("alice", keys["alice"]) + "\n")
    assert failure(verify(repo.path, trust)) == (crafted, "wrong-namespace")
    # and with the right namespace the same construction verifies (the helper is sound)
    good = _write_commit(repo, _with_gpgsig(raw, ssh_sign(keys["alice"], raw, namespace="git")))
    assert verify(repo.path, trust) == [good]


def test_key_validity_is_checked_against_the_committer_time(
    tmp_path: Path, keys: dict[str, SshKey]
) -> None:
    repo = SignedRepo(tmp_path / "repo")
    ok = repo.commit(signer=keys["alice"], date="2027-06-01T12:00:00Z")
    late = repo.commit(signer=keys["alice"], date="2027-07-01T12:00:00Z")
    opts = 'valid-after="20270101",valid-before="20270630"'
    trust = write(tmp_path / "as", allowed_signers_line("alice", keys["alice"], opts) + "\n")
    assert failure(verify(repo.path, trust)) == (late, "key-not-valid-at-time")
    assert verify(repo.path, trust, "rev", ok) == [ok]
    # the same in a TrustPolicy: validBefore
    policy = policy_yaml([("alice", keys["alice"].public, ["release"])]).replace(
        "roles: [release]", "roles: [release]\n      validBefore: 2027-06-30T00:00:00Z"
    )
    assert failure(verify(repo.path, write(tmp_path / "p.yaml", policy))) == (
        late,
        "key-not-valid-at-time",
    )


# ---------------------------------------------------------------------------- merges


def _side_branch_with_unsigned_commit(repo: SignedRepo, keys: dict[str, SshKey]) -> tuple[str, str]:
    repo.git("checkout", "-q", "-b", "feature")
    side = repo.commit(signer=None, files={"side.txt": "x\n"})
    repo.git("checkout", "-q", "main")
    repo.commit(signer=keys["alice"])
    merge = repo.merge("feature", signer=keys["alice"])
    return side, merge


def test_verify_all_checks_commits_merged_from_the_side(
    tmp_path: Path, keys: dict[str, SshKey]
) -> None:
    repo = SignedRepo(tmp_path / "repo")
    policy = policy_yaml([("alice", keys["alice"].public, ["release", "admin"])])
    repo.commit(signer=keys["alice"], files={".gitedge/trust.yaml": policy})
    side, _ = _side_branch_with_unsigned_commit(repo, keys)
    trust = write(tmp_path / "p.yaml", policy)
    assert failure(verify(repo.path, trust)) == (side, "unsigned")


def test_verify_first_parent_exempts_side_commits_but_checks_the_merge(
    tmp_path: Path, keys: dict[str, SshKey]
) -> None:
    repo = SignedRepo(tmp_path / "repo")
    policy = policy_yaml(
        [("alice", keys["alice"].public, ["release", "admin"])], verify="first-parent"
    )
    first = repo.commit(signer=keys["alice"], files={".gitedge/trust.yaml": policy})
    side, merge = _side_branch_with_unsigned_commit(repo, keys)
    trust = write(tmp_path / "p.yaml", policy)
    accepted = verify(repo.path, trust)
    assert isinstance(accepted, list) and side not in accepted
    assert accepted[0] == first and accepted[-1] == merge
    # an unsigned merge is still refused
    repo.git("checkout", "-q", "-b", "feature2")
    repo.commit(signer=None, files={"side2.txt": "y\n"})
    repo.git("checkout", "-q", "main")
    unsigned_merge = repo.merge("feature2", signer=None)
    assert failure(verify(repo.path, trust)) == (unsigned_merge, "unsigned")


def test_the_verify_walk_orders_commits_as_commit_facts_does(
    tmp_path: Path, keys: dict[str, SshKey]
) -> None:
    """verify walks unsorted (its workers start at once) and then orders the commits: on a
    straight history and across merges, with and without a trusted base, the order (which
    decides the first bad commit named) is commit_facts' own."""
    alice = keys["alice"]
    repo = SignedRepo(tmp_path / "repo")
    straight = [repo.commit(signer=alice) for _ in range(4)]
    _side_branch_with_unsigned_commit(repo, keys)
    repo.git("checkout", "-q", "-b", "other", straight[1])
    repo.commit(signer=alice, files={"other.txt": "o\n"})
    repo.git("checkout", "-q", "main")
    repo.commit(signer=None)
    repo.merge("other", signer=alice)
    git = GitRepo(path=repo.path)
    for since, rev in [(None, straight[-1]), (straight[0], straight[-1]), (None, "HEAD"),
                       (straight[1], "HEAD"), (straight[-1], "HEAD")]:  # fmt: skip
        expected = git.commit_facts(since=since, rev=rev, first_parent=False)
        walked = list(
            git.iter_commit_facts(since=since, rev=rev, first_parent=False, unsorted=True)
        )
        tip = git.resolve(rev)
        base = git.resolve(since) if since else None
        assert verifywalk.parents_first(git, walked, tip=tip, since=base) == expected


# ---------------------------------------------------------------------------- trust rotation


def test_admin_rotates_trust_from_inside_the_repo(tmp_path: Path, keys: dict[str, SshKey]) -> None:
    alice, bob, carol = keys["alice"], keys["bob"], keys["carol"]
    repo = SignedRepo(tmp_path / "repo")
    v1 = policy_yaml(
        [("alice", alice.public, ["release", "admin"]), ("bob", bob.public, ["release"])]
    )
    c1 = repo.commit(signer=alice, files={".gitedge/trust.yaml": v1})
    c2 = repo.commit(signer=bob)
    # alice hands over to carol and drops bob
    v2 = policy_yaml([("carol", carol.public, ["release", "admin"])])
    c3 = repo.commit(signer=alice, files={".gitedge/trust.yaml": v2})
    c4 = repo.commit(signer=carol)
    bootstrap = write(tmp_path / "pinned.yaml", v1)
    assert verify(repo.path, bootstrap) == [c1, c2, c3, c4]
    d = verify_range(GitRepo(path=repo.path), bootstrap=load_bootstrap(bootstrap), rev="HEAD")
    assert [a.trust_change for a in d.accepted] == [True, False, True, False]  # c1 adds the file
    assert [s.name for s in d.policy.signers] == ["carol"]
    # after the rotation bob's key is no longer trusted
    c5 = repo.commit(signer=bob)
    assert failure(verify(repo.path, bootstrap)) == (c5, "unknown-key")


def test_checks_run_ahead_in_worker_processes_reach_the_same_verdicts(
    tmp_path: Path, keys: dict[str, SshKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Long ranges have their ed25519 checks done by worker processes (forced here for a short
    one, two signatures a chunk): the same commits are accepted and the same first bad commit is
    named, across a trust rotation and for all three key types (the workers answer for
    ed25519; the others are checked in-process)."""
    alice, bob, carol = keys["alice"], keys["bob"], keys["carol"]
    repo = SignedRepo(tmp_path / "repo")
    v1 = policy_yaml(
        [("alice", alice.public, ["release", "admin"]), ("bob", bob.public, ["release"])]
    )
    ids = [repo.commit(signer=alice, files={".gitedge/trust.yaml": v1})]
    ids += [repo.commit(signer=bob) for _ in range(3)]
    v2 = policy_yaml([("carol", carol.public, ["release", "admin"])])
    ids.append(repo.commit(signer=alice, files={".gitedge/trust.yaml": v2}))
    ids += [repo.commit(signer=carol) for _ in range(2)]
    bad = repo.commit(signer=bob)  # bob was dropped by v2
    repo.commit(signer=carol)
    trust = write(tmp_path / "as", allowed_signers_line("alice", alice) + "\n")

    def outcomes() -> tuple[list[str] | VerificationFailed, tuple[str, str, str]]:
        good = verify(repo.path, trust, "rev", ids[-1])
        failed = verify(repo.path, trust)
        assert isinstance(failed, VerificationFailed)
        return good, (failed.commit, failed.reason, failed.detail)

    one_by_one = outcomes()
    assert one_by_one[0] == ids and one_by_one[1][:2] == (bad, "unknown-key")
    answers: list[bool | None] = []
    get = AheadChecks.get

    def spy(self: AheadChecks, signature: bytes, payload: bytes) -> bool | None:
        answers.append(get(self, signature, payload))
        return answers[-1]

    monkeypatch.setattr(AheadChecks, "get", spy)
    monkeypatch.setattr(verifying, "PREFETCH_MIN_COMMITS", 1)
    monkeypatch.setattr(verifying, "CHUNK", 2)
    monkeypatch.setattr(sshworkers, "CHUNK", 2)
    monkeypatch.setattr(verifying, "_cpus", lambda: 2)
    wait_single_threaded()
    assert threading.active_count() == 1  # workers are forked only from a single thread
    assert outcomes() == one_by_one
    # alice's two (ed25519) commits were answered by the workers, in each of the two runs;
    # bob's (ecdsa) and carol's (rsa) were checked in-process, without asking
    assert answers == [True] * 4


def test_trust_change_by_a_release_only_signer_is_refused(
    tmp_path: Path, keys: dict[str, SshKey]
) -> None:
    alice, bob, mallory = keys["alice"], keys["bob"], keys["mallory"]
    repo = SignedRepo(tmp_path / "repo")
    v1 = policy_yaml(
        [("alice", alice.public, ["release", "admin"]), ("bob", bob.public, ["release"])]
    )
    repo.commit(signer=alice, files={".gitedge/trust.yaml": v1})
    v2 = v1 + ""  # bob adds mallory as an admin
    v2 = policy_yaml(
        [
            ("alice", alice.public, ["release", "admin"]),
            ("bob", bob.public, ["release"]),
            ("mallory", mallory.public, ["release", "admin"]),
        ]
    )
    bad = repo.commit(signer=bob, files={".gitedge/trust.yaml": v2})
    repo.commit(signer=mallory)
    commit, reason = failure(verify(repo.path, write(tmp_path / "p.yaml", v1)))
    assert (commit, reason) == (bad, "not-admin-for-trust-change")


def test_first_trust_file_needs_an_admin_of_the_bootstrap(
    tmp_path: Path, keys: dict[str, SshKey]
) -> None:
    alice, bob = keys["alice"], keys["bob"]
    repo = SignedRepo(tmp_path / "repo")
    repo.commit(signer=bob)
    bad = repo.commit(
        signer=bob,
        files={".gitedge/trust.yaml": policy_yaml([("bob", bob.public, ["admin", "release"])])},
    )
    pinned = policy_yaml(
        [("alice", alice.public, ["release", "admin"]), ("bob", bob.public, ["release"])]
    )
    assert failure(verify(repo.path, write(tmp_path / "p.yaml", pinned))) == (
        bad,
        "not-admin-for-trust-change",
    )


def test_removed_or_broken_trust_file_is_refused(tmp_path: Path, keys: dict[str, SshKey]) -> None:
    alice = keys["alice"]
    policy = policy_yaml([("alice", alice.public, ["release", "admin"])])
    repo = SignedRepo(tmp_path / "repo")
    repo.commit(signer=alice, files={".gitedge/trust.yaml": policy})
    removed = repo.commit(signer=alice, files={".gitedge/trust.yaml": None})
    pinned = write(tmp_path / "p.yaml", policy)
    result = verify(repo.path, pinned)
    assert failure(result) == (removed, "invalid-trust-policy")
    assert "removed" in str(result)
    repo2 = SignedRepo(tmp_path / "repo2")
    broken = repo2.commit(
        signer=alice, files={".gitedge/trust.yaml": policy.replace("roles:", "rolez:")}
    )
    result = verify(repo2.path, pinned)
    assert failure(result) == (broken, "invalid-trust-policy")
    assert ".gitedge/trust.yaml:" in str(result) and "rolez" in str(result)


def test_an_admin_only_signer_may_change_trust_but_not_sign_releases(
    tmp_path: Path, keys: dict[str, SshKey]
) -> None:
    alice, bob = keys["alice"], keys["bob"]
    policy = policy_yaml([("alice", alice.public, ["admin"]), ("bob", bob.public, ["release"])])
    repo = SignedRepo(tmp_path / "repo")
    repo.commit(signer=alice, files={".gitedge/trust.yaml": policy})
    repo.commit(signer=bob)
    bad = repo.commit(signer=alice)
    assert failure(verify(repo.path, write(tmp_path / "p.yaml", policy))) == (
        bad,
        "not-release-signer",
    )


# ---------------------------------------------------------------------------- ranges, rollback, cache


def test_since_verifies_only_the_new_range_and_refuses_rewritten_history(
    tmp_path: Path, keys: dict[str, SshKey], capsys: pytest.CaptureFixture[str]
) -> None:
    alice = keys["alice"]
    repo = SignedRepo(tmp_path / "repo")
    base = repo.commit(signer=None)  # old, unsigned history before the agent was installed
    verified = repo.commit(signer=alice)
    new = [repo.commit(signer=alice), repo.commit(signer=alice)]
    trust = write(tmp_path / "as", allowed_signers_line("alice", alice) + "\n")
    assert failure(verify(repo.path, trust)) == (base, "unsigned")
    assert verify(repo.path, trust, "since", verified) == new
    # force-push an older history: main no longer descends from the verified commit
    repo.git("reset", "-q", "--hard", base)
    repo.commit(signer=alice)
    with pytest.raises(RollbackRefused) as exc:
        verify_range(
            GitRepo(path=repo.path), bootstrap=load_bootstrap(trust), rev="HEAD", since=new[-1]
        )
    assert exc.value.last_verified == new[-1]
    args = ["verify", "--repo", str(repo.path), "--trust", str(trust), "--since", new[-1]]
    assert main(args) == 1
    assert "RollbackRefused" in capsys.readouterr().err


def test_a_verified_commit_is_not_verified_again(tmp_path: Path, keys: dict[str, SshKey]) -> None:
    alice = keys["alice"]
    repo = SignedRepo(tmp_path / "repo")
    good = [repo.commit(signer=alice) for _ in range(4)]
    bad = repo.commit(signer=None)
    trust = write(tmp_path / "as", allowed_signers_line("alice", alice) + "\n")
    bootstrap = load_bootstrap(trust)
    checked: list[bytes] = []

    def counting(policy):  # wraps the real keyring to count signature checks
        ring = checker_for(policy)

        class Counting:
            def check(self, *, signature: bytes, payload: bytes, namespace: str = "git"):
                checked.append(payload)
                return ring.check(signature=signature, payload=payload, namespace=namespace)

        return Counting()

    cache = VerifiedCommits(tmp_path / "state", bootstrap=bootstrap)
    with pytest.raises(VerificationFailed):
        verify_range(
            GitRepo(path=repo.path),
            bootstrap=bootstrap,
            rev="HEAD",
            cache=cache,
            make_checker=counting,
        )
    assert len(checked) == 4 and all(g in cache for g in good)
    # the bad commit is replaced (a new commit on top of the good ones); a restart reads the cache
    repo.git("reset", "-q", "--hard", good[-1])
    fixed = repo.commit(signer=alice)
    checked.clear()
    again = VerifiedCommits(tmp_path / "state", bootstrap=bootstrap)
    d = verify_range(
        GitRepo(path=repo.path), bootstrap=bootstrap, rev="HEAD", cache=again, make_checker=counting
    )
    assert len(checked) == 1 and [a.commit for a in d.accepted] == [fixed]
    assert d.skipped_cached == 4 and bad not in again
    # another bootstrap does not reuse the cache
    other = load_bootstrap(
        write(
            tmp_path / "as2",
            allowed_signers_line("alice", alice)
            + "\n"
            + allowed_signers_line("bob", keys["bob"])
            + "\n",
        )
    )
    assert fixed not in VerifiedCommits(tmp_path / "state", bootstrap=other)


def test_bad_bootstrap_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(TrustError, match="nope.txt"):
        load_bootstrap(tmp_path / "nope.txt")
    bad = write(tmp_path / "bad_signers", "alice ssh-ed25519 AAAAnotbase64\n")
    with pytest.raises(TrustError, match="bad_signers"):
        load_bootstrap(bad)
    empty = write(tmp_path / "empty", "# nothing\n")
    with pytest.raises(TrustError, match="empty: no signers"):
        load_bootstrap(empty)


# ---------------------------------------------------------------------------- over a real server


def test_a_fetch_cut_mid_way_keeps_the_last_verified_state(
    tmp_path: Path, keys: dict[str, SshKey]
) -> None:
    alice = keys["alice"]
    srv = tmp_path / "srv"
    srv.mkdir()
    bare = srv / "fleet.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    repo = SignedRepo(tmp_path / "work")
    repo.git("remote", "add", "origin", str(bare))
    first = repo.commit(signer=alice)
    repo.git("push", "-q", "origin", "main")
    trust = load_bootstrap(write(tmp_path / "as", allowed_signers_line("alice", alice) + "\n"))
    mirror = GitMirror(mirror_dir=tmp_path / "state" / "mirror")
    with git_daemon(srv) as url:
        d = sync_and_verify(
            mirror, url=f"{url}/fleet.git", branch="main", bootstrap=trust, last_verified=None
        )
        assert d.tip == first
        last_verified = d.tip
        repo.commit(signer=alice, files={"blob.bin": os.urandom(1_500_000).hex()})
        repo.git("push", "-q", "origin", "main")
        port = int(url.rsplit(":", 1)[1])
        with tcp_proxy(port, cut_after=300_000) as proxy:
            with pytest.raises(SourceUnavailable):
                sync_and_verify(
                    mirror,
                    url=f"git://127.0.0.1:{proxy.port}/fleet.git",
                    branch="main",
                    bootstrap=trust,
                    last_verified=last_verified,
                    timeout_s=10,
                )
            assert proxy.cut == 1
        assert mirror.resolve("main") == last_verified  # nothing half-fetched is visible
        d = sync_and_verify(
            mirror,
            url=f"{url}/fleet.git",
            branch="main",
            bootstrap=trust,
            last_verified=last_verified,
        )
        assert d.tip != first and [a.commit for a in d.accepted] == [d.tip]
