"""``gitedge accept-history``: the deliberate, local recovery of a site whose fleet repo history
was rewritten on purpose (RollbackRefused would otherwise hold it at its last verified commit for
ever).

The operator names the rewritten tip the agent fetched and refused. Its whole history is
verified from the root with the trust **in force at the last verified commit** as the starting
policy (the trust file there, or ``trust.bootstrap`` when the repo had none): never the
install-time bootstrap alone, which may list keys retired since. A key retired before the last
verified commit signs nothing in; an unsigned commit is refused like in any pass. Only a history
that verifies whole moves the last verified commit; anything else leaves the state untouched.

"Retired" includes a key still listed with a ``validBefore`` earlier than the latest date in the
last verified commit's history: a normal pass can never use it again (rule 4 of the trust rules
in docs/architecture.md, the date floor of the parents), but a rewritten history has a new root
with no parent to date against, so a root backdated into the closed window would open it again.
So every signature in the new history must come from a key the trust at the last verified commit
still trusts at that date, whatever policy the new history itself carries.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from gitedge.adapters.git.repo import FETCHED_PREFIX
from gitedge.adapters.git.source import GitMirror
from gitedge.adapters.state import LastVerified, State
from gitedge.adapters.trust.commitwalk import latest_dates
from gitedge.agent.steps.verifyrange import checker_for, load_bootstrap, verify_range
from gitedge.core.fleet.files import TRUST_PATH
from gitedge.core.trust.policy import Policy, policy_from_yaml
from gitedge.errors import GitEdgeError, StateError, TrustError, UsageError

__all__ = ["Accepted", "accept_history"]


@dataclass(frozen=True)
class Accepted:
    previous: str
    tip: str
    commits: int
    trust: str  # the trust in force at the previous last verified commit (its source)
    already: bool = False  # the tip descends from it: nothing to recover


def _trust_at(git: GitMirror, commit: str, *, bootstrap: Policy, digest: str) -> Policy:
    """The policy in force at ``commit``: its trust file, else the bootstrap; it must be the
    one recorded when the commit was verified (``digest``)."""
    blob = git.trust_blob_id(commit)
    if blob is None:
        policy = bootstrap
    else:
        data = git.blob_by_id(blob)
        try:
            policy = policy_from_yaml(data, source=f"{TRUST_PATH}@{commit[:12]}")
        except ValueError as e:
            raise TrustError(f"{TRUST_PATH} at {commit}: {e}") from None
    if digest and policy.digest != digest:
        raise StateError(
            f"the trust at the last verified commit {commit} ({policy.source}) is not the one "
            "recorded when it was verified: refusing to recover from it"
        )
    return policy


def _key_id(key_text: str) -> str:
    """A key's material, without an OpenSSH comment (two files may comment it differently)."""
    if "BEGIN PGP" in key_text:  # its primary fingerprint: armor may wrap or head it otherwise
        from gitedge.adapters.trust import openpgp  # pysequoia loads only for an OpenPGP key

        try:
            return openpgp.parse_cert(key_text).fingerprint
        except (ValueError, GitEdgeError):
            return key_text.strip()  # checker_for names the key that does not parse
    return " ".join(key_text.split()[:2])  # type and blob, as the keyring identifies it


def _trusted_keys(policy: Policy, *, at: datetime) -> frozenset[str]:
    """The keys of ``policy`` whose window is not closed by ``at``."""
    return frozenset(
        _key_id(s.key_text)
        for s in policy.signers
        if s.valid_before is None or s.valid_before >= at
    )


def _only(policy: Policy, keys: frozenset[str]) -> Policy:
    """``policy`` whose signatures count only from ``keys`` (its digest kept: same policy)."""
    return replace(policy, signers=tuple(s for s in policy.signers if _key_id(s.key_text) in keys))


def accept_history(*, config: Any, commit: str, now: datetime) -> Accepted:
    """Verify the fetched, rewritten tip ``commit`` (its full id: a deliberate choice) from its
    root under the trust in force at the last verified commit; record it as last verified."""
    state_dir = Path(config.state.dir)
    if not (state_dir / "state.sqlite3").exists():
        raise UsageError(f"no agent state in {state_dir}: nothing to recover")
    git = GitMirror(mirror_dir=state_dir / "fleet.git")
    state = State(state_dir)
    try:
        last = state.last_verified
        if last is None:
            raise UsageError(
                "the agent has no last verified commit: nothing to recover (its next pass "
                "verifies the repo from the root under trust.bootstrap)"
            )
        ref = FETCHED_PREFIX + config.source.branch
        if ref not in git.repo.references:
            raise UsageError(f"nothing fetched of branch {config.source.branch!r} in {git.path}")
        fetched = str(git.repo.references[ref].target)
        if commit != fetched:
            raise UsageError(
                f"--commit {commit} is not the tip fetched of branch {config.source.branch!r} "
                f"({fetched}): give its full id, as RollbackRefused names it"
            )
        bootstrap = load_bootstrap(config.trust.bootstrap)
        trust = _trust_at(git, last.commit, bootstrap=bootstrap, digest=last.policy_digest)
        if git.is_descendant(commit=fetched, ancestor=last.commit):
            return Accepted(last.commit, fetched, 0, trust.source, already=True)
        floor = latest_dates(git, [last.commit])[last.commit]
        allowed = _trusted_keys(trust, at=floor)
        decision = verify_range(
            git,
            bootstrap=trust,
            rev=fetched,
            since=None,
            cache=None,
            make_checker=lambda policy: checker_for(_only(policy, allowed)),
        )
        if git.trust_blob_id(last.commit) is not None and git.trust_blob_id(decision.tip) is None:
            # the agent's next passes would take trust.bootstrap as the policy at the new tip:
            # the install-time keys, retired since, back in force
            raise TrustError(
                f"{fetched} has no {TRUST_PATH}, which the last verified commit {last.commit} "
                f"has: without it the install-time trust.bootstrap would be in force again"
            )
        state.record_verified(
            LastVerified(
                commit=decision.tip,
                committed_at=git.committer_time(decision.tip),
                verified_at=now,
                policy_source=decision.policy.source,
                policy_digest=decision.policy.digest,
            ),
            replacing=last.commit,  # unless an agent pass moved it meanwhile
        )
        return Accepted(last.commit, decision.tip, len(decision.accepted), trust.source)
    finally:
        state.close()
