"""The verify step: from a git repository and a pinned trust file to a :class:`TrustDecision`.

Effects live here and only here: reading the bootstrap trust file, walking the repository,
reading trust blobs, building keyrings, and the cache of verified commit ids (kept in the state's
SQLite by :mod:`gitedge.adapters.trust.verifiedcommits`; the git walking is
:mod:`gitedge.adapters.trust.commitwalk`). The decision
itself is :func:`gitedge.core.trust.decision.decide`. ``gitedge verify`` and the agent's
reconcile pass both call :func:`verify_range`.

Speed. ``decide`` asks for one signature check at a time, in commit order. On a long range
(a first sync, 10,000 commits) and a machine with more than one CPU, the ed25519 checks of the
SSH-signed commits are handed to worker processes (:mod:`gitedge.adapters.trust.sshworkers`) while
the repository is walked, so that they verify during the rest of the walk and ``decide``, and most
verdicts are ready when asked for. A worker checks a signature against the key it embeds; the
keyring takes that verdict only for a trusted key with that very blob, where it is its own
verdict. What ``decide`` accepts or refuses, and in which order, does not change; workers still
busy when ``decide`` stops at a bad commit are stopped. Workers are forked only by a process
running no other thread (``gitedge verify`` is one); elsewhere every check is in-process.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path

from gitedge.adapters.forkpool import cpus
from gitedge.adapters.git.objects import MAX_RANGE_BYTES
from gitedge.adapters.git.repo import CommitFacts, GitRepo
from gitedge.adapters.git.source import GitMirror
from gitedge.adapters.git.transport import SourceAuth
from gitedge.adapters.localfiles import read_bounded
from gitedge.adapters.trust.allowedsigners import TrustedKey
from gitedge.adapters.trust.commitsigs import Keyring, load_allowed_signers, load_openpgp_keys
from gitedge.adapters.trust.commitwalk import (
    LATEST,
    TrustBlobs,
    exact_range,
    latest_dates,
    parents_first,
    remember,
)
from gitedge.adapters.trust.sshsig import BEGIN as SSH_ARMOR
from gitedge.adapters.trust.sshworkers import CHUNK, AheadChecks
from gitedge.adapters.trust.verifiedcommits import VerifiedCommits
from gitedge.core.trust.decision import Checker, TrustDecision, decide
from gitedge.core.trust.history import require_descendant
from gitedge.core.trust.policy import Policy, PolicySigner, policy_from_yaml
from gitedge.errors import TrustError

MAX_TRUST_FILE = 1 << 20
PREFETCH_MIN_COMMITS = 256  # below this, forking workers costs more than it saves

__all__ = ["checker_for", "load_bootstrap", "sync_and_verify", "verify_range"]


def load_bootstrap(path: str | Path) -> Policy:
    """The pinned trust file: a TrustPolicy YAML, an OpenSSH allowed_signers file, or armored
    OpenPGP public keys. Keys of the last two have both roles (they are the install's root of
    trust). Raises :class:`TrustError` naming the file."""
    p = Path(path)
    try:
        data = read_bounded(p, limit=MAX_TRUST_FILE)
    except OSError as e:
        raise TrustError(f"{p}: cannot read trust file: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise TrustError(f"{p}: trust file is not UTF-8 text") from None
    source = f"bootstrap:{p}"
    if _looks_like_yaml_policy(text):
        try:
            policy = policy_from_yaml(data, source=source, path=str(p))
        except ValueError as e:
            raise TrustError(str(e)) from None
    elif "-----BEGIN PGP PUBLIC KEY BLOCK-----" in text:
        keys = load_openpgp_keys(text, source=str(p))
        policy = _policy_of_keys(keys, source=source, data=data)
    else:
        policy = _policy_of_keys(
            load_allowed_signers(text, source=str(p)), source=source, data=data
        )
    if not policy.signers:
        raise TrustError(f"{p}: no keys in the trust file")
    checker_for(policy)  # every key must parse now, not at the first commit
    return policy


def _looks_like_yaml_policy(text: str) -> bool:
    return any(line.strip().startswith("kind:") for line in text.splitlines())


def _policy_of_keys(keys: Iterable[TrustedKey], *, source: str, data: bytes) -> Policy:
    signers = tuple(
        PolicySigner(
            name=k.name,
            key_text=k.key_text,
            roles=frozenset({"release", "admin"}),
            valid_after=k.valid_after,
            valid_before=k.valid_before,
            namespaces=k.namespaces,
        )
        for k in keys
    )
    return Policy(signers, "all", source, "sha256:" + hashlib.sha256(data).hexdigest())


def checker_for(policy: Policy) -> Keyring:
    """The keyring of a policy's signers. Raises :class:`TrustError` naming the bad key."""
    try:
        return Keyring.from_keys(
            TrustedKey(
                name=s.name,
                key_text=s.key_text,
                valid_after=s.valid_after,
                valid_before=s.valid_before,
                namespaces=s.namespaces,
            )
            for s in policy.signers
        )
    except TrustError as e:
        raise TrustError(f"{policy.source}: {e}") from None


def verify_range(
    repo: GitRepo,
    *,
    bootstrap: Policy,
    rev: str,
    since: str | None = None,
    cache: VerifiedCommits | None = None,
    make_checker: Callable[[Policy], Keyring] = checker_for,
    max_range_bytes: int = MAX_RANGE_BYTES,
) -> TrustDecision:
    """Verify every commit in (``since``, ``rev``]: all ancestors of ``rev`` when ``since`` is
    None. ``since`` is a commit already trusted (the agent's last verified commit): ``rev`` must
    descend from it (:class:`RollbackRefused` otherwise; under ``verify: first-parent`` in the
    policy at ``since``, along first parents). Raises :class:`VerificationFailed` for
    the first bad commit; commits accepted before it are still added to ``cache``."""
    tip = repo.resolve(rev)
    base = repo.resolve(since) if since is not None else None
    seen = cache if cache is not None else VerifiedCommits(None, bootstrap=bootstrap)
    # before anything reads the range: caps per commit and tree, and on the range in all
    repo.check_sizes(rev=tip, since=base, known=seen, max_range_bytes=max_range_bytes)
    if base is not None:
        require_descendant(
            last_verified=base,
            offered=tip,
            descends=repo.is_descendant(commit=tip, ancestor=base),
        )
    accepted: list[str] = []
    feed = _Feed(seen)
    try:
        walked = repo.iter_commit_facts(since=base, rev=tip, first_parent=False, unsorted=True)
        commits = parents_first(repo, feed.walk(walked), tip=tip, since=base)
        if base is not None:
            commits = exact_range(repo, commits, since=base)
        in_range = {c.id for c in commits}
        cut = in_range & repo.grafted()
        if cut:  # seen with other parents (none: a root judged by the bootstrap), and cached
            raise TrustError(
                f"{repo.path}: commit {min(cut)} is in the range and this repository rewrites "
                "its parents (a shallow clone, or info/grafts), so its history cannot be "
                "verified here; fetch the full history (git fetch --unshallow, no grafts)"
            )
        outside = {p for c in commits for p in c.parents if p not in in_range}
        if base is not None:
            outside.add(base)
        outside_trust = {p: repo.trust_blob_id(p) for p in outside}
        outside_times = {p: LATEST[p] for p in outside if p in LATEST}
        outside_times |= latest_dates(repo, outside - outside_times.keys())
        blobs = TrustBlobs(repo)
        ahead = feed.ahead

        def checker(policy: Policy) -> Checker:
            ring = make_checker(policy)
            if ahead is not None and isinstance(ring, Keyring):
                return ring.with_verdicts(ahead)
            return ring

        decision = decide(
            commits=commits,
            tip=tip,
            bootstrap=bootstrap,
            outside_trust=outside_trust,
            outside_times=outside_times,
            since=base,
            blobs=blobs,
            checker_for=checker,
            cached=seen,
            on_accept=accepted.append,
        )
        # the tip's history is the range and the histories of the parents outside it: so the
        # next pass, from this tip, walks nothing for it (a straight history: nothing at all)
        if commits:
            remember(tip, max([*(c.committer_time for c in commits), *outside_times.values()]))
    finally:
        feed.close()
        if cache is not None:
            cache.add(accepted)
    return decision


_cpus = cpus  # how many workers check signatures ahead (tests set it)


class _Feed:
    """Collects the walk's commits and hands the SSH signatures not verified before to worker
    processes as the walk goes, so that they verify while the walk, the imports it still needs
    and ``decide`` run here. Workers start once a range proves long enough, on more than one
    CPU. A signature that ``decide`` never asks about (an exempt commit) costs a check, never a
    verdict."""

    def __init__(self, seen: VerifiedCommits) -> None:
        self._seen = seen
        self._pending: list[tuple[bytes, bytes]] = []
        self._cpus = _cpus()
        self.ahead: AheadChecks | None = None

    def walk(self, facts: Iterable[CommitFacts]) -> list[CommitFacts]:
        commits: list[CommitFacts] = []
        pending, seen = self._pending, self._seen
        for c in facts:
            commits.append(c)
            sig = c.signature
            if sig is None or c.payload is None or c.id in seen or not sig.startswith(SSH_ARMOR):
                continue
            pending.append((sig, c.payload))
            if len(pending) >= CHUNK:
                self._hand_over()
        self._hand_over(last=True)
        return commits

    def _hand_over(self, *, last: bool = False) -> None:
        if self.ahead is None and self._cpus > 1 and len(self._pending) >= PREFETCH_MIN_COMMITS:
            self.ahead = AheadChecks.start(self._cpus)
            if self.ahead is None:  # not here (threads running): all checks in-process
                self._cpus = 1
        if self.ahead is not None and (last or len(self._pending) >= CHUNK):
            self.ahead.submit(self._pending)
            self._pending.clear()
        elif self._cpus == 1:
            self._pending.clear()

    def close(self) -> None:
        if self.ahead is not None:
            self.ahead.close()


def sync_and_verify(
    mirror: GitMirror,
    *,
    url: str,
    branch: str,
    bootstrap: Policy,
    last_verified: str | None,
    auth: SourceAuth | None = None,
    cache: VerifiedCommits | None = None,
    timeout_s: float = 60.0,
) -> TrustDecision:
    """Fetch ``branch`` into the mirror, then verify everything new since ``last_verified``.

    The caller records ``decision.tip`` as the new last verified commit only when this returns:
    a failed fetch raises :class:`SourceUnavailable` and leaves the mirror as it was; a bad
    commit raises :class:`VerificationFailed`; a rewritten branch :class:`RollbackRefused`."""
    fetched = mirror.fetch(url=url, branch=branch, auth=auth, timeout_s=timeout_s)
    return verify_range(mirror, bootstrap=bootstrap, rev=fetched, since=last_verified, cache=cache)
