"""The attack of issue 13 with the real tools: a key removed by a signed rotation (a stolen
laptop) makes ``git commit-tree <tree before the rotation> -p <commit before the rotation>
-p <tip> -S`` (and the same with the parents swapped), restoring the old ``.gitedge/trust.yaml``.
``gitedge verify --since``, the agent's fetch (a pass against ``git daemon``) and a bundle import
all refuse it, keeping the last verified commit; the pinned bootstrap key, rotated out, cannot
do it either (it would remove the trust file). Keys by ssh-keygen, signatures by ``git -S``.

Also: the verified-commit cache written by the old rules (which accepted such a merge) is not
read by these rules; a retired key dating a commit back into its validity window
(``GIT_COMMITTER_DATE`` before its parent's) is ``date-before-parent``; under ``verify:
first-parent`` a tip whose first parents skip the last verified commit is ``RollbackRefused``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gitedge.adapters.state import State
from gitedge.adapters.trust.verifiedcommits import RULES, VerifiedCommits
from gitedge.agent.bundles.create import create_bundle
from gitedge.agent.bundles.importing import import_bundle
from gitedge.agent.reconcile import Pass
from gitedge.agent.steps.verifyrange import load_bootstrap
from gitedge.core.config import load_site_file
from gitedge.errors import VerificationFailed
from tests.agentkit import fleet_files
from tests.gitserver import git_daemon
from tests.registryserver import make_layout
from tests.sigtools import SignedRepo, SshKey, allowed_signers_line, make_ssh_key, sign_args
from tests.test_bundle import agent_of, write_site

pytestmark = pytest.mark.timeout(180)

HEAD = "apiVersion: gitedge.io/v1alpha1\n"
NOW = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)
REGISTRY = "127.0.0.1:9"  # the discard port: nothing listens, a connection is refused at once
K3S = "v1.29.10+k3s1"


def policy(*signers: tuple[str, SshKey, str]) -> str:
    lines = [HEAD + "kind: TrustPolicy\nmetadata: {name: fleet}\nspec:\n  signers:"]
    for name, key, roles in signers:
        lines.append(
            f"    - name: {name}\n      key: {json.dumps(key.public)}\n      roles: {roles}"
        )
    return "\n".join(lines) + "\n  verify: all\n"


@dataclass
class Story:
    repo: SignedRepo
    bare: Path
    root: str  # no trust file: the bootstrap (kate) in force
    before: str  # the last commit before the rotation; kate trusted
    rotation: str  # alice removes kate
    tip: str  # verified
    attacks: dict[str, str]  # name -> commit id
    pinned: Path  # kate's key, the install's bootstrap
    kate: SshKey
    layouts: Path


def commit_tree(repo: SignedRepo, signer: SshKey, tree_of: str, *parents: str) -> str:
    """``git commit-tree <tree of tree_of> -p ... -S`` signed by ``signer``."""
    ps = [arg for p in parents for arg in ("-p", p)]
    return repo.git(
        *sign_args(signer), "commit-tree", f"{tree_of}^{{tree}}", *ps, "-S", "-m", "restore"
    )


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Story:
    tmp = tmp_path_factory.mktemp("attack")
    kate = make_ssh_key(tmp / "keys", "ed25519", comment="release@fleet.example")
    alice = make_ssh_key(tmp / "keys", "ecdsa256", comment="alice@fleet")
    pinned = tmp / "allowed_signers"
    pinned.write_text(allowed_signers_line("release@fleet.example", kate) + "\n")
    repo = SignedRepo(tmp / "work")
    # a small fleet whose plan needs one image (so a bundle holds one: issue 13 has a bundle of
    # commits only end in a traceback, another change), on a registry that refuses at once
    os_image = f"{REGISTRY}/edge/os:1.0"
    files = fleet_files(registry=REGISTRY, releases=[K3S], k3s=K3S, os_image=os_image)
    root = repo.commit(signer=kate, files=dict(files))
    make_layout(tmp / "layouts" / REGISTRY / "edge" / "os", tag="1.0", layer_sizes=(2_000,))
    # SUC's default kubectl, which every bundle with a step carries (issue 15)
    kubectl = tmp / "layouts" / "docker.io" / "rancher" / "kubectl"
    make_layout(kubectl, tag="v1.30.3", layer_sizes=(2_000,))
    v1 = policy(("alice", alice, "[release, admin]"), ("kate", kate, "[release]"))
    repo.commit(signer=kate, files={".gitedge/trust.yaml": v1})  # the bootstrap's admin
    before = repo.commit(signer=kate)
    rotation = repo.commit(
        signer=alice, files={".gitedge/trust.yaml": policy(("alice", alice, "[release, admin]"))}
    )
    tip = repo.commit(signer=alice)
    attacks = {
        "old-first": commit_tree(repo, kate, before, before, tip),
        "tip-first": commit_tree(repo, kate, before, tip, before),
        "bootstrap-first": commit_tree(repo, kate, root, root, tip),
        "bootstrap-second": commit_tree(repo, kate, root, tip, root),
    }
    bare = tmp / "served" / "fleet.git"
    bare.parent.mkdir()
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    repo.git("push", "-q", str(bare), "main")
    return Story(repo, bare, root, before, rotation, tip, attacks, pinned, kate, tmp / "layouts")


def set_main(story: Story, commit: str) -> None:
    repo = story.repo
    repo.git("push", "-q", "-f", str(story.bare), f"{commit}:refs/heads/main")


def expected_reason(name: str) -> str:
    return "invalid-trust-policy" if name.startswith("bootstrap") else (
        "merge-not-allowed-by-parent-policy"
    )  # fmt: skip


def test_verify_since_refuses_the_retired_keys_merge_in_both_orders(story: Story) -> None:
    for name, attack in story.attacks.items():
        for since in (story.rotation, story.tip):
            r = subprocess.run(
                [sys.executable, "-m", "gitedge", "verify", "--repo", str(story.repo.path),
                 "--trust", str(story.pinned), "--since", since, "--rev", attack,
                 "--output", "json"],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert r.returncode == 1, (name, r.stdout, r.stderr)
            doc = json.loads(r.stdout)
            assert doc["verified"] is False and doc["commit"] == attack
            assert doc["reason"] == expected_reason(name), (name, doc)
    # the whole history, from the bootstrap, says the same
    bootstrap = load_bootstrap(story.pinned)
    from gitedge.adapters.git.repo import GitRepo
    from gitedge.agent.steps.verifyrange import verify_range

    git = GitRepo(path=story.repo.path)
    assert verify_range(git, bootstrap=bootstrap, rev=story.tip).tip == story.tip
    for name, attack in story.attacks.items():
        with pytest.raises(VerificationFailed) as e:
            verify_range(git, bootstrap=bootstrap, rev=attack)
        assert (e.value.commit, e.value.reason) == (attack, expected_reason(name))


def test_the_agents_fetch_refuses_it_and_keeps_the_last_verified_commit(
    story: Story, tmp_path: Path
) -> None:
    with git_daemon(story.bare.parent) as url:
        cfg = write_site(tmp_path / "site", git_url=f"{url}/fleet.git", key=story.kate,
                         k3s=K3S)  # fmt: skip
        set_main(story, story.tip)
        p = _pass(cfg)
        assert p.tip == story.tip, p.errors
        for name, attack in story.attacks.items():
            set_main(story, attack)
            p = _pass(cfg)
            assert p.outcomes["verify"] == "stalled", name
            assert attack in p.errors["verify"] and expected_reason(name) in p.errors["verify"]
            assert p.tip == story.tip
        set_main(story, story.tip)


def test_a_bundle_import_refuses_it(story: Story, tmp_path: Path) -> None:
    cluster = load_site_file(
        b"apiVersion: gitedge.io/v1alpha1\nkind: Cluster\n"
        b"metadata: {name: store-0042, labels: {env: prod}}\n"
        b"status: {k3sVersion: v1.29.10+k3s1, arches: [amd64]}\n",
        path="cluster.yaml",
    )
    with git_daemon(story.bare.parent) as url:
        set_main(story, story.tip)
        first = tmp_path / "first.tar"
        create_bundle(
            repo=f"{url}/fleet.git", out=first, now=NOW, sites=[cluster], layouts=story.layouts
        )
        bundles = {}
        for name, attack in story.attacks.items():
            set_main(story, attack)
            bundles[name] = tmp_path / f"{name}.tar"
            create_bundle(repo=f"{url}/fleet.git", out=bundles[name], now=NOW,
                          since=story.tip, sites=[cluster], layouts=story.layouts)  # fmt: skip
        set_main(story, story.tip)
    cfg = write_site(tmp_path / "site", git_url="git://127.0.0.1:9/absent.git", key=story.kate,
                     k3s=K3S)  # fmt: skip
    agent = agent_of(cfg)
    try:
        assert import_bundle(agent, first, now=NOW).tip == story.tip
        for name, attack in story.attacks.items():
            with pytest.raises(VerificationFailed) as e:
                import_bundle(agent, bundles[name], now=NOW)
            assert (e.value.commit, e.value.reason) == (attack, expected_reason(name))
            last = agent.state.last_verified
            assert last is not None and last.commit == story.tip
    finally:
        agent.close()


def test_a_cache_written_by_the_old_rules_is_not_read(story: Story, tmp_path: Path) -> None:
    """The old rules accepted the attack and cached its id (even in a range refused later):
    these rules keep their cache elsewhere (the state's table, by rules), so the id is checked
    again."""
    bootstrap = load_bootstrap(story.pinned)
    name = bootstrap.digest.removeprefix("sha256:")[:16]
    (tmp_path / f"verified-{name}.txt").write_text(story.attacks["old-first"] + "\n")
    cache = VerifiedCommits(tmp_path, bootstrap=bootstrap)
    assert story.attacks["old-first"] not in cache and len(cache) == 0
    cache.add([story.tip])
    cache.close()
    state = State(tmp_path)  # the ids are in the state's SQLite, under these rules
    assert state.verified_commits(rules=RULES, bootstrap=name) == {story.tip}
    state.close()


def _pass(cfg: Path) -> Pass:
    agent = agent_of(cfg)
    try:
        return agent.reconcile(now=NOW)
    finally:
        agent.close()


def _verify_json(repo: Path, trust: Path, *args: str) -> tuple[int, dict[str, object], str]:
    r = subprocess.run(
        [sys.executable, "-m", "gitedge", "verify", "--repo", str(repo), "--trust", str(trust),
         *args, "--output", "json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return r.returncode, (json.loads(r.stdout) if r.stdout.strip() else {}), r.stderr


def test_a_retired_key_cannot_date_its_commit_back_into_its_window(
    story: Story, tmp_path: Path
) -> None:
    """kate's key is valid until 2027-06-30; after a commit dated July, kate signs one dated
    June 1 (``GIT_COMMITTER_DATE``): refused, date-before-parent. Dated June 1 on a parent of
    May, it is accepted: what the rule still allows (between the parent and validBefore)."""
    alice = make_ssh_key(tmp_path / "keys", "ed25519", comment="alice@fleet")
    pinned = tmp_path / "as"
    pinned.write_text(
        allowed_signers_line("alice", alice) + "\n"
        + allowed_signers_line("kate", story.kate, 'valid-before="20270630"') + "\n"
    )  # fmt: skip
    repo = SignedRepo(tmp_path / "repo")
    may = repo.commit(signer=alice, date="2027-05-01T00:00:00Z")
    july = repo.commit(signer=alice, date="2027-07-01T00:00:00Z")
    back = repo.commit(signer=story.kate, date="2027-06-01T00:00:00Z")
    code, doc, err = _verify_json(repo.path, pinned, "--since", july)
    assert code == 1 and (doc["commit"], doc["reason"]) == (back, "date-before-parent"), err
    repo.git("checkout", "-q", "-b", "old", may)
    allowed = repo.commit(signer=story.kate, date="2027-06-01T00:00:00Z")
    code, doc, err = _verify_json(repo.path, pinned, "--since", may, "--rev", allowed)
    assert code == 0 and doc["verified"] is True, (doc, err)


def test_first_parent_mode_refuses_a_tip_whose_first_parents_skip_the_last_verified(
    story: Story, tmp_path: Path
) -> None:
    """verify: first-parent, alice a release signer: the same two parents, with the last
    verified commit second, is RollbackRefused; with it first, accepted."""
    alice = make_ssh_key(tmp_path / "keys", "ed25519", comment="alice@fleet")
    v = policy(("alice", alice, "[release, admin]")).replace("verify: all", "verify: first-parent")
    pinned = tmp_path / "p.yaml"
    pinned.write_text(v)
    repo = SignedRepo(tmp_path / "repo")
    base = repo.commit(signer=alice, files={".gitedge/trust.yaml": v})
    verified = repo.commit(signer=alice)
    repo.git("checkout", "-q", "-b", "side", base)
    side = repo.commit(signer=None, files={"side.txt": "unsigned, vouched for by a merge\n"})
    swapped = commit_tree(repo, alice, verified, side, verified)
    straight = commit_tree(repo, alice, verified, verified, side)
    code, _, err = _verify_json(repo.path, pinned, "--since", verified, "--rev", swapped)
    assert code == 1 and "RollbackRefused" in err and "first-parent" in err
    code, doc, err = _verify_json(repo.path, pinned, "--since", verified, "--rev", straight)
    assert code == 0 and doc["exempt"] == 1, (doc, err)
