"""DESIGN.md section 6, "Compatibility": a commit that uses kinds or fields newer than this agent.

Pure. The fleet models refuse what they do not know (``extra="forbid"``, core/fleet/base.py; unknown
kinds, core/fleet/model.py ``_add``), so a commit written for a newer agent fails to load with only
``unknown field`` / ``unknown kind`` problems. Such a commit is not *wrong*: the agent is too old
for it. The agent then says ``agent-too-old``, naming the fields and its own version, and keeps
planning from the last commit it understood (gitedge/agent/reconcile.py); it never guesses
what a new field means. A commit with any other problem is invalid as before.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from gitedge.errors import Problem

__all__ = ["newer_than_agent", "too_old_text"]

_SHOWN = 5
#: What a newer gitedge could define: a kind is a CamelCase name (``unknown kind 'OsCatalog'``,
#: quoted by model.py's ``{kind!r}``), a field a camelCase key (the models' aliases). A missing,
#: empty or non-string kind, or a key no model could spell (``Image``, ``image ``, ``1``), is a
#: malformed commit, not a newer one.
_NEW_KIND = re.compile(r"unknown kind '[A-Z][A-Za-z0-9]*';")
#: yamldoc adds a hint after ``unknown field`` (``; did you mean 'image'?``, ``; this level takes
#: ...``): the hint is for people, the field is still one this agent does not know
_NEW_FIELD = re.compile(r"(?:^|[.: ])[a-z][A-Za-z0-9]*: unknown field(?:; [^\n]*)?\Z")


def _is_newer(p: Problem) -> bool:
    return bool(_NEW_FIELD.search(p.message) or _NEW_KIND.match(p.message))


def newer_than_agent(problems: Sequence[Problem]) -> bool:
    """Whether every problem is a kind or field this agent does not know (and there is one)."""
    return bool(problems) and all(_is_newer(p) for p in problems)


def too_old_text(
    problems: Sequence[Problem], *, version: str, commit: str, kept: str | None
) -> str:
    """The ``AgentTooOld`` message: the fields, the agent's version, the commit kept."""
    shown = "; ".join(f"{p.path}:{p.line}: {p.message}" for p in problems[:_SHOWN])
    more = f" and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
    keeps = (
        f"planning from {kept[:12]}, the last commit it understood"
        if kept
        else "no earlier commit understood: nothing is planned"
    )
    return (
        f"agent-too-old: commit {commit[:12]} uses kinds or fields gitedge {version} does not "
        f"know ({shown}{more}); upgrade the agent. Until then it keeps {keeps}"
    )
