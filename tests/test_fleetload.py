"""adapters/fleetload.py: the fleet loader that pauses the garbage collector (moved out of
core/fleet/model.py, which stays pure) and parses through the forked YAML workers; the fleet is the
one core/fleet/model.py loads."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitedge.adapters import fleetload
from gitedge.adapters.git.worktree import read_tree
from gitedge.core.fleet import model as core_fleet
from gitedge.core.fleet.files import FleetFiles
from gitedge.core.fleet.snapshot import Snapshot

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fleet-repo"


@pytest.fixture
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    (gc.enable if was else gc.disable)()  # as it was: a collector left off leaks the suite


def _snapshot() -> Snapshot:
    return read_tree(str(EXAMPLE))


def test_the_collector_is_paused_while_loading_and_resumed_after(
    monkeypatch: pytest.MonkeyPatch, collector_on: None
) -> None:
    seen: list[bool] = []
    real = core_fleet.load_files

    def spy(files: FleetFiles) -> core_fleet.Fleet:
        seen.append(gc.isenabled())
        return real(files)

    monkeypatch.setattr(fleetload, "_validate_files", spy)
    loaded = fleetload.load_fleet(_snapshot())
    assert seen == [False] and gc.isenabled()
    assert sorted(loaded.targets) == sorted(core_fleet.load_fleet(_snapshot()).targets)
    gc.disable()  # a caller that turned it off keeps it off
    fleetload.load_fleet(_snapshot())
    assert not gc.isenabled()


def test_core_loading_leaves_the_collector_alone(
    collector_on: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse() -> None:
        raise AssertionError("core/fleet/model.py switched the collector")

    monkeypatch.setattr(gc, "disable", refuse)
    assert core_fleet.load_fleet(_snapshot()).targets
