"""What commands read of a site: its AgentConfig (``--config``) and its agent's last verified
commit (from the agent's state dir)."""

from __future__ import annotations

from pathlib import Path

from gitedge.adapters.state import LastVerified, State
from gitedge.cli.common import read_file
from gitedge.core.config import AgentConfig, load_site_file
from gitedge.errors import UsageError


def agent_config(path: str) -> AgentConfig:
    site = load_site_file(read_file(path, "--config"), path=path)
    if not isinstance(site, AgentConfig):
        raise UsageError(f"--config {path}: expected an AgentConfig, not a Cluster identity")
    return site


def last_verified(state_dir: str | Path) -> LastVerified | None:
    """The last commit the agent in ``state_dir`` verified (None: none yet), the state closed
    again; a state that cannot be used raises its error here."""
    state = State(state_dir)
    try:
        return state.last_verified
    finally:
        state.close()
