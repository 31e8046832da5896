"""Attacks on the trust rules (second round, after issue 13), each with the real tools where the
attack is a git history (``git commit -S`` with ssh-keygen keys, ``gitedge verify``) and with
``core/trust/decision.decide`` driven directly where it is a rule.

1. Back-dating through an exempt commit (``verify: first-parent``): a key whose ``validBefore``
   has passed cannot date a commit back past its parent (``date-before-parent``), but an unsigned
   side commit was exempt from every check, its date included; a child of it dated back as far
   and signed by the expired key, changing the trust file (so checked), was accepted. Exempt
   commits now keep the date rule too, and without adding up: a parent counts as dated at
   the latest date in its history, so twenty unsigned commits each 4 minutes back (each within
   the tolerance) do not take a checked child 80 minutes back. That latest date was once known
   within one range only: an exempt commit brought in by the last verified merge was an outside
   parent next time, with its own date, so a child of it could go 5 minutes further back than
   the whole range allowed. The agent now reads an outside parent's latest date from its
   history (``verifywalk.latest_dates``): the split gives the whole range's verdict.
2. A hostile server or a pusher (no key) sends thousands of commits, each with another 1 MiB
   trust file that is a small delta of the last (a push of a few hundred KiB): the verify step
   read every trust blob of the range before deciding, gigabytes, to refuse the first commit.
   Blobs are now read when ``decide`` asks for one.
   With a merge in the range, the walk that decides which side commits a ``first-parent``
   merge exempts read the policy of every mainline merge's parents before any commit was
   checked: a pusher's 40 merges, each bringing another trust file, cost 40 parses (seconds of
   CPU each for a 1 MiB file). Trust changes are now checked first, so that walk reads only
   approved policies.
3. An admin's typo in a key of the trust file (or one key given to two names): the trust change
   was accepted, as only the YAML was read; every later commit, the admin's fix included, then
   failed with TrustError against the policy in force, so every site stayed stuck until it was
   reinstalled. The keys of a trust file are now parsed at the commit that brings it, which is
   refused (``invalid-trust-policy``). The cache file's rules version moves to r3.
4. A server leaves a trust blob out of the pack: ``gitedge verify`` ended in a traceback
   (pygit2's NotFoundError); now SourceUnavailable naming the blob.
5. A pusher (no key) writes a commit dated after year 9999 (``git hash-object --literally``):
   the walk failed (``datetime`` cannot hold it) and the agent reported its source unavailable,
   naming no commit, for as long as the commit was there. Such a time is now read as the latest
   one Python holds, so the commit is judged: here ``unsigned``, named.
6. Dates that go back within the tolerance (4 minutes a commit, 30 commits: two hours) on the
   last verified commit's own history: libgit2's walk of (since, tip], like ``git rev-list tip
   ^since``, stops marking ancestors of ``since`` when only older ones are left to walk, and
   handed back ancestors of ``since`` as new (here down to the root). They were judged again
   (an exempt one of them could be refused now), or skipped as cached: the verdict depended on
   the split. The range is now cut exactly (``verifywalk.exact_range``).
7. A hostile server's hand-made tree whose ``.gitedge/trust.yaml`` entry has a file's mode but
   names a tree object: ``gitedge verify`` (and the plan's tree read) ended in an
   AssertionError traceback; a trust file over 1 MiB was InvalidFleetRepo naming no commit.
   Both are now ``invalid-trust-policy`` of the commit that brings them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gitedge.adapters.git.repo import GitRepo
from gitedge.adapters.trust import commitwalk as verifywalk
from gitedge.agent.steps.verifyrange import load_bootstrap, verify_range
from gitedge.core.trust.decision import decide
from gitedge.errors import VerificationFailed
from tests.sigtools import SignedRepo, SshKey, make_ssh_key, sign_args
from tests.test_trust_rules import FakeChecker, Pol, _boot, _reason, run

pytestmark = pytest.mark.timeout(180)

HEAD = "apiVersion: gitedge.io/v1alpha1\nkind: TrustPolicy\nmetadata: {name: fleet}\nspec:\n"


def policy(*signers: tuple[str, SshKey, str, str | None], mode: str = "all") -> str:
    lines = [HEAD + "  signers:"]
    for name, key, roles, before in signers:
        lines.append(
            f"    - name: {name}\n      key: {json.dumps(key.public)}\n      roles: {roles}"
        )
        if before:
            lines.append(f"      validBefore: {before}")
    return "\n".join(lines) + f"\n  verify: {mode}\n"


def verify_json(repo: Path, trust: Path, *args: str) -> tuple[int, dict[str, object], str]:
    r = subprocess.run(
        [sys.executable, "-m", "gitedge", "verify", "--repo", str(repo), "--trust", str(trust),
         *args, "--output", "json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return r.returncode, (json.loads(r.stdout) if r.stdout.strip() else {}), r.stderr


# ---------------------------------------------------------------------------- 1. back-dating


def test_an_exempt_side_commit_cannot_carry_a_back_dated_trust_change_model() -> None:
    h, boot = _boot("first-parent")
    v1 = Pol((("k0", ("admin", "release"), None), ("k1", ("admin", "release"), 3600)),
             "first-parent")  # fmt: skip
    rogue = Pol((("k0", ("admin", "release"), None), ("k1", ("admin", "release"), None)),
                "first-parent")  # fmt: skip
    h.pols |= {v1.blob: v1, rogue.blob: rogue}
    c1 = h.add((), 0, "k0", v1.blob, "root")
    c2 = h.add((c1,), 7200, "k0", v1.blob, "commit")  # verified, after k1's window closed
    unsigned = h.add((c2,), 3000, None, v1.blob, "commit")  # exempt, dated back
    change = h.add((unsigned,), 3100, "k1", rogue.blob, "rotate")  # k1 still "valid" then
    main = h.add((c2,), 7300, "k0", v1.blob, "commit")
    merge = h.add((main, change), 7400, "k0", v1.blob, "merge")
    for since in (None, c2, main):
        v = run(h, boot, since=since, rev=merge, cache=set())
        assert _reason(v) == "date-before-parent", v
        assert isinstance(v.error, VerificationFailed) and v.error.commit == unsigned
    # the same side commit dated forward is still exempt (the merge vouches for it)
    fine = h.add((c2,), 7250, None, v1.blob, "commit")
    ok = h.add((main, fine), 7400, "k0", v1.blob, "merge")
    v = run(h, boot, since=c2, rev=ok, cache=set())
    assert v.ok and fine not in v.checked


def test_a_chain_of_exempt_commits_cannot_add_up_the_tolerance() -> None:
    h, boot = _boot("first-parent")
    v1 = Pol((("k0", ("admin", "release"), None), ("k1", ("admin", "release"), 3600)),
             "first-parent")  # fmt: skip
    rogue = Pol((("k0", ("admin", "release"), None), ("k1", ("admin", "release"), None)),
                "first-parent")  # fmt: skip
    h.pols |= {v1.blob: v1, rogue.blob: rogue}
    c1 = h.add((), 0, "k0", v1.blob, "root")
    c2 = h.add((c1,), 7200, "k0", v1.blob, "commit")  # after k1's window closed
    main = h.add((c2,), 7300, "k0", v1.blob, "commit")
    e, t = c2, 7200
    for _ in range(20):  # unsigned, each 4 minutes before its parent
        t -= 240
        e = h.add((e,), t, None, v1.blob, "commit")
    change = h.add((e,), t, "k1", rogue.blob, "rotate")  # inside k1's window
    merge = h.add((main, change), 7400, "k0", v1.blob, "merge")
    v = run(h, boot, since=c2, rev=merge, cache=set())
    assert _reason(v) == "date-before-parent"
    # a trust change is checked before the exemption walk (so with its exempt parent's own
    # date); it is held to that parent's latest date all the same: 8 minutes back, refused
    late = Pol((("k0", ("admin", "release"), None), ("k1", ("admin", "release"), 6800)),
               "first-parent")  # fmt: skip
    h.pols[late.blob] = late
    d1 = h.add((), 0, "k0", late.blob, "root")
    d2 = h.add((d1,), 7200, "k0", late.blob, "commit")  # after k1's window (6800)
    e1 = h.add((d2,), 6960, None, late.blob, "commit")  # 4 minutes back: tolerated
    jump = h.add((e1,), 6720, "k1", rogue.blob, "rotate")  # 4 more: inside k1's window
    d3 = h.add((d2,), 7300, "k0", late.blob, "commit")
    m2 = h.add((d3, jump), 7400, "k0", late.blob, "merge")
    v = run(h, boot, since=d2, rev=m2, cache=set())
    assert _reason(v) == "date-before-parent" and v.error.commit == jump  # type: ignore[union-attr]
    # a contributor's clock a few minutes behind, then forward again, is still fine
    s1 = h.add((c2,), 7200 - 180, None, v1.blob, "commit")
    s2 = h.add((s1,), 7200 - 120, None, v1.blob, "commit")
    s3 = h.add((s2,), 7200 - 60, "k0", v1.blob, "commit")
    ok = h.add((main, s3), 7400, "k0", v1.blob, "merge")
    assert run(h, boot, since=c2, rev=ok, cache=set()).ok


def test_an_exempt_side_commit_cannot_carry_a_back_dated_trust_change_real_git(
    tmp_path: Path,
) -> None:
    """alice (admin) and kate (admin, valid until June 30 2027); first-parent. After a commit
    dated July, kate makes an unsigned side commit dated June 1 and on it a signed trust change
    (dropping her validBefore) dated June 2; alice merges the side branch. Refused, naming the
    back-dated side commit."""
    alice = make_ssh_key(tmp_path / "keys", "ed25519", comment="alice@fleet")
    kate = make_ssh_key(tmp_path / "keys", "ed25519", comment="kate@fleet")
    v1 = policy(
        ("alice", alice, "[release, admin]", None),
        ("kate", kate, "[release, admin]", "2027-06-30T00:00:00Z"),
        mode="first-parent",
    )
    forever = policy(
        ("alice", alice, "[release, admin]", None),
        ("kate", kate, "[release, admin]", None),
        mode="first-parent",
    )
    pinned = tmp_path / "trust.yaml"
    pinned.write_text(v1)
    repo = SignedRepo(tmp_path / "repo")
    repo.commit(signer=alice, files={".gitedge/trust.yaml": v1}, date="2027-05-01T00:00:00Z")
    july = repo.commit(signer=alice, date="2027-07-01T00:00:00Z")
    repo.git("checkout", "-q", "-b", "side")
    back = repo.commit(signer=None, files={"side.txt": "x\n"}, date="2027-06-01T00:00:00Z")
    change = repo.commit(
        signer=kate, files={".gitedge/trust.yaml": forever}, date="2027-06-02T00:00:00Z"
    )
    repo.git("checkout", "-q", "main")
    repo.commit(signer=alice, date="2027-07-02T00:00:00Z")
    merge = repo.merge("side", signer=alice, date="2027-07-03T00:00:00Z")
    assert repo.git("show", "-s", "--format=%P", merge).split()[1] == change
    for args in (["--since", july], []):
        code, doc, err = verify_json(repo.path, pinned, "--rev", merge, *args)
        assert code == 1, (doc, err)
        assert (doc["commit"], doc["reason"]) == (back, "date-before-parent"), doc


def test_a_split_at_the_merge_of_an_exempt_commit_gives_the_whole_range_verdict_model() -> None:
    """The exempt e (4 minutes before s) comes in by m1; k1 (window closed at 6800) signs a
    trust change x on e, 8 minutes before s. Whole: refused. Split at m1 (the agent's previous
    tip): e is outside the second range, and it used to count with its own date, so x was only
    4 minutes back and accepted. Now e counts with the latest date in its history (s's)."""
    h, boot = _boot("first-parent")
    v1 = Pol((("k0", ("admin", "release"), None), ("k1", ("admin", "release"), 6800)),
             "first-parent")  # fmt: skip
    rogue = Pol((("k0", ("admin", "release"), None), ("k1", ("admin", "release"), None)),
                "first-parent")  # fmt: skip
    h.pols |= {v1.blob: v1, rogue.blob: rogue}
    r = h.add((), 0, "k0", v1.blob, "root")
    s = h.add((r,), 7200, "k0", v1.blob, "commit")
    e = h.add((s,), 6960, None, v1.blob, "commit")  # exempt, 4 minutes back
    m1 = h.add((s, e), 7300, "k0", v1.blob, "merge")  # the split point
    x = h.add((e,), 6720, "k1", rogue.blob, "rotate")  # in k1's window, 8 minutes before s
    m2 = h.add((m1, x), 7400, "k0", v1.blob, "merge")
    whole = run(h, boot, since=None, rev=m2, cache=set())
    assert _reason(whole) == "date-before-parent" and whole.error.commit == x  # type: ignore[union-attr]
    assert run(h, boot, since=None, rev=m1, cache=set()).ok
    second = run(h, boot, since=m1, rev=m2, cache=set())
    assert _reason(second) == "date-before-parent" and second.error.commit == x  # type: ignore[union-attr]


def test_a_split_at_the_merge_of_an_exempt_commit_gives_the_whole_range_verdict_real_git(
    tmp_path: Path,
) -> None:
    """The model test above with real git, signatures and the CLI: the whole range and the
    split at m1 (``--since m1``, as the agent's next pass) both refuse kate's commit."""
    alice = make_ssh_key(tmp_path / "keys", "ed25519", comment="alice@fleet")
    kate = make_ssh_key(tmp_path / "keys", "ed25519", comment="kate@fleet")
    v1 = policy(
        ("alice", alice, "[release, admin]", None),
        ("kate", kate, "[release, admin]", "2027-07-01T01:53:00Z"),
        mode="first-parent",
    )
    forever = policy(
        ("alice", alice, "[release, admin]", None),
        ("kate", kate, "[release, admin]", None),
        mode="first-parent",
    )
    pinned = tmp_path / "trust.yaml"
    pinned.write_text(v1)
    repo = SignedRepo(tmp_path / "repo")
    repo.commit(signer=alice, files={".gitedge/trust.yaml": v1}, date="2027-05-01T00:00:00Z")
    repo.commit(signer=alice, date="2027-07-01T02:00:00Z")
    repo.git("checkout", "-q", "-b", "side")
    repo.commit(signer=None, files={"side.txt": "x\n"}, date="2027-07-01T01:56:00Z")  # exempt
    repo.git("checkout", "-q", "main")
    m1 = repo.merge("side", signer=alice, date="2027-07-01T02:05:00Z")
    repo.git("checkout", "-q", "side")
    x = repo.commit(
        signer=kate, files={".gitedge/trust.yaml": forever}, date="2027-07-01T01:52:00Z"
    )
    repo.git("checkout", "-q", "main")
    m2 = repo.merge("side", signer=alice, date="2027-07-01T02:10:00Z")
    code, doc, err = verify_json(repo.path, pinned, "--rev", m1)
    assert code == 0, (doc, err)
    for args in ([], ["--since", m1]):
        code, doc, err = verify_json(repo.path, pinned, "--rev", m2, *args)
        assert code == 1, (args, doc, err)
        assert (doc["commit"], doc["reason"]) == (x, "date-before-parent"), (args, doc)
    # in one process, as the agent's passes: m1's latest date is remembered from the first
    boot = load_bootstrap(pinned)
    assert verify_range(GitRepo(path=repo.path), bootstrap=boot, rev=m1).tip == m1
    with pytest.raises(VerificationFailed) as e:
        verify_range(GitRepo(path=repo.path), bootstrap=boot, rev=m2, since=m1)
    assert (e.value.commit, e.value.reason) == (x, "date-before-parent")
    assert verifywalk.LATEST[m1] == GitRepo(path=repo.path).committer_time(m1)


# ---------------------------------------------------------------------------- 2. blob flood


class CountingRepo(GitRepo):
    def __init__(self, *, path: Path) -> None:
        super().__init__(path=path)
        self.read: list[str] = []

    def blob_by_id(self, blob_id: str, *, path: str = ".gitedge/trust.yaml") -> bytes:
        self.read.append(blob_id)
        return super().blob_by_id(blob_id, path=path)


def test_a_flood_of_distinct_trust_files_is_not_read_before_the_first_refusal(
    tmp_path: Path,
) -> None:
    alice = make_ssh_key(tmp_path / "keys", "ed25519", comment="alice@fleet")
    v1 = policy(("alice", alice, "[release, admin]", None))
    pinned = tmp_path / "trust.yaml"
    pinned.write_text(v1)
    repo = SignedRepo(tmp_path / "repo")
    base = repo.commit(signer=alice, files={".gitedge/trust.yaml": v1})
    for i in range(40):  # a pusher with no key: each commit another (padded) trust file
        repo.commit(signer=None, files={".gitedge/trust.yaml": f"# {'x' * 4096} {i}\n"})
    git = CountingRepo(path=repo.path)
    with pytest.raises(VerificationFailed) as e:
        verify_range(git, bootstrap=load_bootstrap(pinned), rev="main", since=base)
    assert e.value.reason == "invalid-trust-policy"  # the first one, which does not parse
    assert len(git.read) <= 2, len(git.read)  # its own, and at most the base's


class CountingBlobs(dict[str, bytes]):
    def __init__(self, blobs: dict[str, bytes]) -> None:
        super().__init__(blobs)
        self.read: list[str] = []

    def get(self, key: str, default: object = None) -> bytes | None:  # type: ignore[override]
        self.read.append(key)
        return super().get(key)


def test_the_exemption_walk_reads_no_trust_file_before_the_trust_changes_are_checked() -> None:
    h, boot = _boot("first-parent")
    v1 = Pol(BOOT_SIGNERS_FP, "first-parent")
    h.pols[v1.blob] = v1
    base = h.add((), 0, "k0", v1.blob, "root")
    main = base
    for i in range(40):  # no key: each side commit another first-parent trust file
        junk = Pol((*BOOT_SIGNERS_FP, (f"x{i}", ("release",), None)), "first-parent")
        h.pols[junk.blob] = junk
        side = h.add((base,), 60 + i, None, junk.blob, "rotate")
        main = h.add((main, side), 120 + i, None, v1.blob, "merge")
    commits = [n for nid, n in h.nodes.items() if nid != base]
    blobs = CountingBlobs({b: p.yaml() for b, p in h.pols.items()})
    with pytest.raises(VerificationFailed) as e:
        decide(commits=commits, tip=main, bootstrap=boot, since=base,
               outside_trust={base: v1.blob}, outside_times={base: h.nodes[base].committer_time},
               blobs=blobs, checker_for=FakeChecker)  # fmt: skip
    assert e.value.reason == "unsigned"
    assert set(blobs.read) <= {v1.blob, commits[0].trust_blob_id}, len(set(blobs.read))


BOOT_SIGNERS_FP = (("k0", ("admin", "release"), None), ("k1", ("release",), None))


# ---------------------------------------------------------------------------- 4. missing blob


def test_a_trust_blob_missing_from_the_repo_is_source_unavailable_not_a_traceback(
    tmp_path: Path,
) -> None:
    alice = make_ssh_key(tmp_path / "keys", "ed25519", comment="alice@fleet")
    v1 = policy(("alice", alice, "[release, admin]", None))
    pinned = tmp_path / "trust.yaml"
    pinned.write_text(v1)
    repo = SignedRepo(tmp_path / "repo")
    repo.commit(signer=alice, files={".gitedge/trust.yaml": v1})
    blob = repo.git("rev-parse", "HEAD:.gitedge/trust.yaml")
    (repo.path / ".git" / "objects" / blob[:2] / blob[2:]).unlink()
    code, doc, err = verify_json(repo.path, pinned)
    assert code == 1 and doc == {}, (doc, err)
    # refused before anything is judged (the size walk meets it first), the blob named
    assert "Traceback" not in err and f"object {blob} is missing" in err, err


# ---------------------------------------------------------------------------- 3. unusable keys


@pytest.mark.parametrize("what", ["typo", "one key, two names"])
def test_a_trust_file_whose_keys_do_not_parse_is_refused_where_it_comes_in(
    tmp_path: Path, what: str
) -> None:
    alice = make_ssh_key(tmp_path / "keys", "ed25519", comment="alice@fleet")
    v1 = policy(("alice", alice, "[release, admin]", None))
    pinned = tmp_path / "trust.yaml"
    pinned.write_text(v1)
    repo = SignedRepo(tmp_path / "repo")
    base = repo.commit(signer=alice, files={".gitedge/trust.yaml": v1})
    if what == "typo":
        extra = '    - name: bob\n      key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIbroken"\n'
    else:
        extra = f"    - name: alice2\n      key: {json.dumps(alice.public)}\n"
    bad = v1.replace("  verify: all", extra + "      roles: [release]\n  verify: all")
    broken = repo.commit(signer=alice, files={".gitedge/trust.yaml": bad})
    repo.commit(signer=alice)
    fix = repo.commit(signer=alice, files={".gitedge/trust.yaml": v1})
    for rev in (broken, fix):
        code, doc, err = verify_json(repo.path, pinned, "--since", base, "--rev", rev)
        assert code == 1, (doc, err)
        assert (doc["commit"], doc["reason"]) == (broken, "invalid-trust-policy"), doc
        assert ("bob" if what == "typo" else "alice2") in str(doc["detail"])


# ---------------------------------------------------------------------------- 5. year 10000


@pytest.mark.parametrize("seconds", ["253402300800", "99999999999999999", "-99999999999999"])
def test_a_commit_dated_beyond_what_python_holds_is_judged_and_named(
    tmp_path: Path, seconds: str
) -> None:
    alice = make_ssh_key(tmp_path / "keys", "ed25519", comment="alice@fleet")
    v1 = policy(("alice", alice, "[release, admin]", None))
    pinned = tmp_path / "trust.yaml"
    pinned.write_text(v1)
    repo = SignedRepo(tmp_path / "repo")
    base = repo.commit(signer=alice, files={".gitedge/trust.yaml": v1})
    raw = (
        f"tree {repo.git('rev-parse', 'HEAD^{tree}')}\nparent {base}\n"
        f"author x <x@x> 1 +0000\ncommitter x <x@x> {seconds} +0000\n\nhand-made\n"
    )
    odd = subprocess.run(
        ["git", "-C", str(repo.path), "hash-object", "-t", "commit", "-w", "--literally",
         "--stdin"], input=raw, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    code, doc, err = verify_json(repo.path, pinned, "--since", base, "--rev", odd)
    assert code == 1 and (doc["commit"], doc["reason"]) == (odd, "unsigned"), (doc, err)


# ---------------------------------------------------------------------------- 6. walk leak


def test_ancestors_of_the_last_verified_commit_are_not_in_the_range_despite_clock_skew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = make_ssh_key(tmp_path / "keys", "ed25519", comment="alice@fleet")
    pinned = tmp_path / "allowed_signers"
    pinned.write_text(f"alice {alice.public}\n")
    repo = SignedRepo(tmp_path / "repo")
    t = 1_780_000_000

    def at(when: int, *parents: str) -> str:
        ps = [arg for p in parents for arg in ("-p", p)]
        env = {"GIT_COMMITTER_DATE": f"@{when} +0000", "GIT_AUTHOR_DATE": f"@{when} +0000"}
        return repo.git(*sign_args(alice), "commit-tree", tree, *ps, "-S", "-m", str(when),
                        env=env)  # fmt: skip

    repo.commit(signer=alice, date=f"@{t - 60} +0000")
    tree = repo.git("rev-parse", "HEAD^{tree}")
    root = repo.git("rev-parse", "HEAD")
    a = at(t, root)
    b = at(t + 3600, a)
    h = b
    for i in range(1, 31):  # each 4 minutes before its parent: within the tolerance
        h = at(t + 3600 - 240 * i, h)
    since = at(t + 3600 - 240 * 30 + 1, h)
    side = at(t + 3700, b)
    tip = at(t + 3800, since, side)
    code, doc, err = verify_json(repo.path, pinned, "--since", since, "--rev", tip)
    assert code == 0, (doc, err)
    got = {c["id"] for c in doc["commits"]}  # type: ignore[union-attr]
    assert got == {side, tip}, (len(got), {root, a, b} & got)
    # past ASK_EACH commits to ask about, one walk of since's history answers for the rest
    monkeypatch.setattr(verifywalk, "ASK_EACH", 0)
    d = verify_range(GitRepo(path=repo.path), bootstrap=load_bootstrap(pinned), rev=tip,
                     since=since)  # fmt: skip
    assert {x.commit for x in d.accepted} == {side, tip}


# ---------------------------------------------------------------------------- 7. odd blobs


def _write(repo: Path, kind: str, data: bytes) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "hash-object", "-t", kind, "-w", "--literally", "--stdin"],
        input=data, capture_output=True, check=True,
    ).stdout.decode().strip()  # fmt: skip


@pytest.mark.parametrize("what", ["a tree under a file's mode", "over 1 MiB"])
def test_a_trust_file_that_cannot_be_read_is_invalid_trust_policy_of_its_commit(
    tmp_path: Path, what: str
) -> None:
    alice = make_ssh_key(tmp_path / "keys", "ed25519", comment="alice@fleet")
    v1 = policy(("alice", alice, "[release, admin]", None))
    pinned = tmp_path / "trust.yaml"
    pinned.write_text(v1)
    repo = SignedRepo(tmp_path / "repo")
    base = repo.commit(signer=alice, files={".gitedge/trust.yaml": v1})
    if what == "over 1 MiB":
        bad = _write(repo.path, "blob", v1.encode() + b"#" * (1 << 20) + b"\n")
    else:
        bad = _write(
            repo.path, "tree", b"100644 f\x00" + bytes.fromhex(_write(repo.path, "blob", b"x"))
        )
    gitedge = _write(repo.path, "tree", b"100644 trust.yaml\x00" + bytes.fromhex(bad))
    root = _write(repo.path, "tree", b"40000 .gitedge\x00" + bytes.fromhex(gitedge))
    odd = _write(repo.path, "commit", (
        f"tree {root}\nparent {base}\nauthor x <x@x> 1890000000 +0000\n"
        f"committer x <x@x> 1890000000 +0000\n\nhand-made\n"
    ).encode())  # fmt: skip
    code, doc, err = verify_json(repo.path, pinned, "--since", base, "--rev", odd)
    assert code == 1 and "Traceback" not in err, (doc, err)
    assert doc.get("commit") == odd and doc.get("reason") == "invalid-trust-policy", (doc, err)
    if what != "over 1 MiB":
        from gitedge.adapters.git.repo import read_commit_tree
        from gitedge.errors import InvalidFleetRepo

        with pytest.raises(InvalidFleetRepo, match="not a file"):
            read_commit_tree(repo=repo.path, rev=odd)
