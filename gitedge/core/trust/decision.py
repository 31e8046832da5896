"""Trust decisions: which commits of the fleet repo the agent accepts (DESIGN.md sections 3, 6).

The decision is pure. It is fed the facts of a commit range (parents before children, as
``GitRepo.commit_facts`` yields them), the contents of the trust files those commits carry, the
bootstrap policy pinned at install, and a *checker* per policy that verifies one signature (the
adapter ``signatures.Keyring`` in production). The rules (trust only moves forward; TUF's
rotation and rollback rules are the model; docs/architecture.md "Trust rules" says more):

- The policy in force at a commit is its ``.gitedge/trust.yaml`` if it has one, else the bootstrap
  (for a merge too: its own file, whichever parent it agrees with). Once a repo has a trust file,
  removing it is refused: absence must not bring old keys back.
- Every new commit is checked against the policy in force on EVERY parent (the bootstrap for a
  root); parent order never matters. With respect to a parent whose policy differs from the
  commit's own trust file, the commit is a *trust change* and needs an ``admin`` of that parent's
  policy; with respect to a parent whose policy it keeps, a ``release`` signer. So a merge brings
  an older policy back only if an admin of every newer policy signs it, and a removed key is
  valid again only once an admin re-adds it.
- A signer's ``validAfter``/``validBefore`` (inclusive) are compared with the committer time,
  which may not be earlier than the latest date in any parent's history by more than
  :data:`DATE_TOLERANCE` (exempt too).
- ``verify: first-parent``: a mainline merge exempts the commits it brings in from the side when
  the policy on every one of its parents says so; the merge itself is checked against every
  parent's policy, and an exempt commit that changes the trust file is checked all the same, so
  every trust file in an accepted history was approved and the policy in force on a side parent
  is simply its own. When the policy in force at ``since`` (the last verified commit) says
  ``first-parent``, the new tip's first-parent chain must pass through ``since``
  (:class:`RollbackRefused`). ``all`` checks every commit.
- Commits already verified (``cached``) are not checked again: each check depends only on the
  commit, its parents and the bootstrap, never on the range it came in.

Reason words (``VerificationFailed.reason``): ``unsigned``, ``unknown-key``, ``bad-signature``,
``key-not-valid-at-time``, ``not-admin-for-trust-change``, ``wrong-namespace``, plus
``not-release-signer`` (a known key without the release role), ``invalid-trust-policy`` (a
trust file or key that does not parse, or a removed file), ``date-before-parent`` (committer
date earlier than a parent's beyond the tolerance) and ``merge-not-allowed-by-parent-policy`` (a
merge that one parent's policy allows and another's refuses, the reasons in its detail).
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from gitedge.core.fleet.files import TRUST_PATH
from gitedge.core.timefmt import iso_z
from gitedge.core.trust.history import (
    Commit,
    check_dates,
    exempt_side_commits,
    require_first_parent_chain,
)
from gitedge.core.trust.policy import Policy, Role, policy_from_yaml
from gitedge.errors import TrustError, VerificationFailed

__all__ = [
    "Accepted",
    "Check",
    "Checker",
    "KeyWindow",
    "TrustDecision",
    "decide",
]


class KeyWindow(Protocol):
    @property
    def valid_after(self) -> datetime | None: ...
    @property
    def valid_before(self) -> datetime | None: ...


class Check(Protocol):
    """What a checker says about one signature (``signatures.SignatureCheck`` fits)."""

    @property
    def outcome(self) -> str: ...
    @property
    def signer(self) -> str | None: ...
    @property
    def key_id(self) -> str: ...
    @property
    def detail(self) -> str: ...
    @property
    def keys(self) -> Sequence[KeyWindow]: ...


class Checker(Protocol):
    def check(self, *, signature: bytes, payload: bytes, namespace: str = "git") -> Check: ...


@dataclass(frozen=True)
class Accepted:
    commit: str
    signer: str | None  # None: exempt (brought in by a first-parent merge)
    key_id: str
    trust_change: bool


@dataclass
class TrustDecision:
    """The outcome for a range: commits accepted in order; the policy in force at ``tip``."""

    tip: str
    policy: Policy
    accepted: list[Accepted] = field(default_factory=list)
    skipped_cached: int = 0
    exempt: int = 0


class _Policies:
    """Policies by trust blob id, parsed once; their checkers built once."""

    def __init__(
        self,
        *,
        bootstrap: Policy,
        blobs: Mapping[str, bytes],
        checker_for: Callable[[Policy], Checker],
    ) -> None:
        self.bootstrap = bootstrap
        self._blobs = blobs
        self._checker_for = checker_for
        self._policies: dict[str, Policy | ValueError] = {}
        self._checkers: dict[str, Checker] = {}

    def at(self, blob_id: str | None) -> Policy | ValueError:
        if blob_id is None:
            return self.bootstrap
        if blob_id not in self._policies:
            try:  # the blobs may refuse one with a ValueError (too large, not a blob)
                data = self._blobs.get(blob_id)
                if data is None:
                    raise ValueError(f"{TRUST_PATH}: blob {blob_id} is missing from the repo")
                src = f"{TRUST_PATH}@{blob_id[:12]}"
                self._policies[blob_id] = policy_from_yaml(data, source=src)
            except ValueError as e:
                self._policies[blob_id] = e
        return self._policies[blob_id]

    def checker(self, policy: Policy) -> Checker:
        if policy.digest not in self._checkers:
            self._checkers[policy.digest] = self._checker_for(policy)
        return self._checkers[policy.digest]

    def require_keys(self, commit: str, blob_id: str | None) -> None:
        """The keys of a trust file a commit brings must parse at that commit: accepted, a key
        with a typo made every later commit (the admin's fix too) fail, for good."""
        after = self.at(blob_id)
        assert isinstance(after, Policy)  # it parsed: _check_commit accepted the change
        try:
            self.checker(after)
        except TrustError as e:
            raise VerificationFailed(
                commit=commit, reason="invalid-trust-policy", detail=str(e)
            ) from None


def decide(
    *,
    commits: Sequence[Commit],
    tip: str,
    bootstrap: Policy,
    outside_trust: Mapping[str, str | None],
    blobs: Mapping[str, bytes],
    checker_for: Callable[[Policy], Checker],
    outside_times: Mapping[str, datetime],
    since: str | None = None,
    cached: Container[str] = frozenset(),
    on_accept: Callable[[str], object] | None = None,
) -> TrustDecision:
    """Decide over ``commits`` (every commit in (``since``, ``tip``], parents before children).
    ``outside_trust`` and ``outside_times`` give the trust blob id (None: no trust file) and the
    latest committer date in the history (its own included) of every parent outside the range,
    ``since`` included; ``blobs`` the content
    of every trust blob named. Raises :class:`RollbackRefused` (first-parent chain rule) before
    anything is checked, then :class:`VerificationFailed` for the first bad commit (in that
    order; with a merge in the range, trust changes are checked first); ``on_accept`` hears of
    each commit accepted before that, so a cache can keep them."""
    policies = _Policies(bootstrap=bootstrap, blobs=blobs, checker_for=checker_for)
    by_id = {c.id: c for c in commits}

    def trust_of(commit_id: str) -> str | None:
        if commit_id in by_id:
            return by_id[commit_id].trust_blob_id
        return outside_trust[commit_id]

    # the date rule's measure of a parent: the latest committer date in its history (its own
    # included), a function of the history alone, so any split of a range gives the same verdict
    latest = _latest_dates(commits, outside_times)
    time_of = latest.__getitem__

    def own_time(commit_id: str) -> datetime:  # the early pass: a parent in the range, its own
        return by_id[commit_id].committer_time if commit_id in by_id else latest[commit_id]

    if since is not None and tip in by_id:
        at_since = policies.at(trust_of(since))
        require_first_parent_chain(since=since, tip=tip, by_id=by_id, at_since=at_since)
    decision = TrustDecision(tip=tip, policy=bootstrap)

    def blobs_of(parents: tuple[str, ...]) -> tuple[str | None, ...]:
        if len(parents) == 1:  # the common case, kept fast: 10,000 commits in the benchmark
            return (trust_of(parents[0]),)
        return tuple(dict.fromkeys(trust_of(p) for p in parents)) or (None,)

    def check(
        c: Commit, parent_blobs: tuple[str | None, ...], when: Callable[[str], datetime]
    ) -> Accepted | None:
        if c.id in cached:
            decision.skipped_cached += 1
            return None
        accepted = _check_commit(c, parent_blobs, c.parents, when, policies)
        if accepted.trust_change:
            policies.require_keys(c.id, c.trust_blob_id)
        return accepted

    def keep(accepted: Accepted | None) -> None:
        if accepted is not None:
            decision.accepted.append(accepted)
            if on_accept is not None:
                on_accept(accepted.commit)

    exempt: set[str] = set()
    early: dict[str, Accepted | None] = {}
    if any(len(c.parents) > 1 for c in commits):  # only a merge exempts anything
        # trust changes first: the exemption walk then parses only approved trust files (a
        # pusher's merges could each bring another 1 MiB file to parse before any check)
        for c in commits:
            parent_blobs = blobs_of(c.parents)
            if parent_blobs != (c.trust_blob_id,):
                early[c.id] = check(c, parent_blobs, own_time)
        exempt = exempt_side_commits(
            commits=commits, tip=tip, by_id=by_id, policy_at=lambda c: policies.at(trust_of(c))
        )
    for c in commits:
        if c.id in early:  # its date again, now in commit order with the latest dates
            check_dates(c=c, parents=c.parents, time_of=time_of)
            keep(early[c.id])
            continue
        if c.id in exempt:  # brought in from the side, and no trust change (those are early)
            # unsigned, so its date vouches for nothing: the date rule holds it and its
            # children to the latest date in its history (else a chain of them, each a few minutes
            # back, took a checked child into a closed window)
            check_dates(c=c, parents=c.parents, time_of=time_of)
            decision.exempt += 1
            continue
        keep(check(c, blobs_of(c.parents), time_of))
    final = policies.at(trust_of(tip)) if tip in by_id or tip in outside_trust else bootstrap
    if isinstance(final, ValueError):  # pragma: no cover - a cached tip was accepted before
        raise VerificationFailed(commit=tip, reason="invalid-trust-policy", detail=str(final))
    decision.policy = final
    return decision


def _latest_dates(
    commits: Sequence[Commit], outside: Mapping[str, datetime]
) -> Mapping[str, datetime]:
    """The latest committer date in each commit's history, its own included (``commits``
    parents first; ``outside``: that date of every parent outside them). Read lazily for
    the parents outside: the caller may compute them only when asked."""
    latest: dict[str, datetime] = {}
    for c in commits:
        when = c.committer_time
        for p in c.parents:
            t = latest[p] if p in latest else latest.setdefault(p, outside[p])
            if t > when:
                when = t
        latest[c.id] = when
    return latest


def _check_commit(
    c: Commit,
    parent_blobs: tuple[str | None, ...],
    parents: Sequence[str],
    time_of: Callable[[str], datetime],
    policies: _Policies,
) -> Accepted:
    """Check ``c`` against the policy in force on each of its parents (``parent_blobs``: their
    distinct trust blob ids, in parent order; ``(None,)`` for a root: the bootstrap)."""
    if len(parent_blobs) == 1:
        trust_change = parent_blobs[0] != c.trust_blob_id
    else:
        trust_change = any(b != c.trust_blob_id for b in parent_blobs)
    if trust_change:
        if c.trust_blob_id is None:
            raise VerificationFailed(
                commit=c.id,
                reason="invalid-trust-policy",
                detail=f"{TRUST_PATH} was removed; a trust file once present can only be changed",
            )
        after = policies.at(c.trust_blob_id)
        if isinstance(after, ValueError):
            raise VerificationFailed(commit=c.id, reason="invalid-trust-policy", detail=str(after))
    if c.signature is None or c.payload is None:
        raise VerificationFailed(
            commit=c.id, reason="unsigned", detail="the commit has no signature"
        )
    check_dates(c=c, parents=parents, time_of=time_of)
    if len(parent_blobs) == 1:  # one parent policy (a straight history): no merging of verdicts
        before = policies.at(parent_blobs[0])
        if isinstance(before, ValueError):  # pragma: no cover - that parent was refused already
            raise VerificationFailed(commit=c.id, reason="invalid-trust-policy", detail=str(before))
        need: Role = "admin" if trust_change else "release"
        return _judge(c, before, policies.checker(before), need)
    outcomes: list[Accepted | VerificationFailed] = []
    for blob in parent_blobs:
        before = policies.at(blob)
        if isinstance(before, ValueError):  # pragma: no cover - that parent was refused already
            outcomes.append(
                VerificationFailed(commit=c.id, reason="invalid-trust-policy", detail=str(before))
            )
            continue
        role: Role = "admin" if blob != c.trust_blob_id else "release"
        try:
            outcomes.append(_judge(c, before, policies.checker(before), role))
        except VerificationFailed as e:
            outcomes.append(e)
    failed = [o for o in outcomes if isinstance(o, VerificationFailed)]
    if not failed:
        first = outcomes[0]
        assert isinstance(first, Accepted)
        return Accepted(c.id, first.signer, first.key_id, trust_change)
    reasons = {e.reason for e in failed}
    if len(failed) == len(outcomes) and len(reasons) == 1:
        raise failed[0]
    raise VerificationFailed(
        commit=c.id,
        reason="merge-not-allowed-by-parent-policy",
        detail="the policy in force on every parent must allow the signer; "
        + "; ".join(f"{e.reason}: {e.detail}" for e in failed),
    )


def _judge(c: Commit, before: Policy, checker: Checker, need: Role) -> Accepted:
    """One parent's policy: a good signature by a key valid at the committer time, with role
    ``need`` (``admin`` when ``c``'s trust file differs from that policy's)."""
    assert c.signature is not None and c.payload is not None
    result = checker.check(signature=c.signature, payload=c.payload)
    if result.outcome != "good":
        reason = {"unsupported": "unknown-key"}.get(result.outcome, result.outcome)
        raise VerificationFailed(commit=c.id, reason=reason, detail=_policy_note(result, before))
    when = c.committer_time
    for k in result.keys:
        if _valid_at(k, when):
            break
    else:
        raise VerificationFailed(
            commit=c.id,
            reason="key-not-valid-at-time",
            detail=f"key {result.key_id} of {result.signer!r} is not valid at the committer time "
            f"{iso_z(when)} ({_windows(result.keys)}; policy in force: {before.source})",
        )
    signer = before.signer(result.signer)
    roles = signer.roles if signer else frozenset()
    if need not in roles:
        change = need == "admin"
        reason = "not-admin-for-trust-change" if change else "not-release-signer"
        raise VerificationFailed(
            commit=c.id,
            reason=reason,
            detail=f"{result.signer!r} has roles [{', '.join(sorted(roles))}] in {before.source}; "
            f"{'changing ' + TRUST_PATH if change else 'this commit'} needs {need}",
        )
    return Accepted(c.id, result.signer, result.key_id, need == "admin")


def _policy_note(result: Check, policy: Policy) -> str:
    return f"{result.detail} (policy in force: {policy.source})"


def _valid_at(key: KeyWindow, when: datetime) -> bool:
    return (key.valid_after is None or key.valid_after <= when) and (
        key.valid_before is None or when <= key.valid_before
    )


def _windows(keys: Sequence[KeyWindow]) -> str:
    parts = [
        f"valid {iso_z(k.valid_after) if k.valid_after else '-inf'} .. "
        f"{iso_z(k.valid_before) if k.valid_before else '+inf'}"
        for k in keys
    ]
    return "; ".join(parts) or "no key entry"
