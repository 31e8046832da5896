"""Which commit the agent plans from when the newest one is for a newer agent (DESIGN.md
section 6, "Compatibility"; the rule itself is pure, in core/compat.py).

The last verified commit is loaded; when it fails *only* with kinds or fields this agent does
not know, the agent keeps planning from the last commit it planned from (the ``desired``
document of its state) and reports ``AgentTooOld`` naming the fields and its version. With no
such earlier commit it plans nothing and says the same. Any other problem is an invalid repo.
"""

from __future__ import annotations

import logging
from typing import Protocol

from gitedge import __version__
from gitedge.adapters.state import State
from gitedge.core.compat import newer_than_agent, too_old_text
from gitedge.core.fleet import Fleet, load_fleet
from gitedge.core.snapshot import Snapshot
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
        return tip, load_fleet(git.tree_snapshot(tip, subdir=subdir), subdir=subdir,
                               origin=tip[:12]), None  # fmt: skip
    except InvalidFleetRepo as e:
        if not newer_than_agent(e.problems):
            raise
        problems = list(e.problems)
    last = (state.get_doc("desired") or {}).get("commit")
    kept = last if isinstance(last, str) and last != tip else None
    text = too_old_text(problems, version=__version__, commit=tip, kept=kept)
    if kept is None:
        raise AgentTooOld(problems, summary=text)
    fleet = load_fleet(git.tree_snapshot(kept, subdir=subdir), subdir=subdir, origin=kept[:12])
    log.error("%s", text)
    return kept, fleet, AgentTooOld(problems, summary=text)
