"""Which commit the agent plans from when the newest one is for a newer agent (DESIGN.md
section 6, "Compatibility"; the rule itself is pure, in core/fleet/compat.py).

The last verified commit is loaded; when it fails *only* with kinds or fields this agent does
not know, the agent keeps planning from the last commit it planned from (the ``desired``
document of its state) and reports ``AgentTooOld`` naming the fields and its version. With no
such earlier commit it plans nothing and says the same. Any other problem is an invalid repo.

The trust in force stays the newest verified commit's: the kept commit is planned with the
TrustPolicy of the tip (the verifier parsed it to accept the tip), so image signers that the
tip revokes are revoked even while the agent is too old for the rest of it. A tip whose trust
file this agent cannot read leaves nothing planned.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Protocol

from gitedge import __version__
from gitedge.adapters.state import DESIRED, State
from gitedge.core.fleet.compat import newer_than_agent, too_old_text
from gitedge.core.fleet.files import trust_file
from gitedge.core.fleet.model import Fleet, TrustPolicy, load_fleet
from gitedge.core.fleet.snapshot import Snapshot
from gitedge.core.trust.policy import parse_trust_policy
from gitedge.errors import AgentTooOld, InvalidFleetRepo

log = logging.getLogger("gitedge.agent")

__all__ = ["understood_fleet"]


class _Trees(Protocol):
    def tree_snapshot(self, commit_id: str, *, subdir: str = "") -> Snapshot: ...


def understood_fleet(
    *, git: _Trees, state: State, tip: str, subdir: str
) -> tuple[str, Fleet, AgentTooOld | None]:
    """(the commit planned from, its fleet, the AgentTooOld to report or None). Raises
    AgentTooOld when no earlier commit was understood, InvalidFleetRepo for other problems."""
    try:
        return (
            tip,
            load_fleet(git.tree_snapshot(tip, subdir=subdir), subdir=subdir, origin=tip[:12]),
            None,
        )
    except InvalidFleetRepo as e:
        if not newer_than_agent(e.problems):
            raise
        problems = list(e.problems)
    last = (state.doc(DESIRED) or {}).get("commit")
    kept = last if isinstance(last, str) and last != tip else None
    text = too_old_text(problems, version=__version__, commit=tip, kept=kept)
    if kept is None:
        raise AgentTooOld(problems, summary=text)
    try:
        trust = _trust_policy(git, tip=tip, subdir=subdir)
    except ValueError as e:  # not expected of a verified tip: plan nothing rather than guess
        raise AgentTooOld(
            problems, summary=f"{text}; its trust file cannot be read ({e}): nothing is planned"
        ) from None
    fleet = load_fleet(git.tree_snapshot(kept, subdir=subdir), subdir=subdir, origin=kept[:12])
    fleet = dataclasses.replace(fleet, trust_policy=trust)
    log.error("%s", text)
    return kept, fleet, AgentTooOld(problems, summary=text)


def _trust_policy(git: _Trees, *, tip: str, subdir: str) -> TrustPolicy | None:
    """The TrustPolicy of commit ``tip`` (None: it has no trust file). Raises ValueError."""
    found = trust_file(git.tree_snapshot(tip, subdir=subdir), subdir=subdir)
    if found is None:
        return None
    path, data = found
    return parse_trust_policy(data, path=f"{tip[:12]}/{path}")
