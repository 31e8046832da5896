"""Shared fixtures for every test module.

- The ``gitedge`` logger is put back after each test. ``gitedge run`` run in process (as
  tests/test_fleet_status.py does) sets up logging for the command: a handler on the stderr of
  that moment and ``propagate = False``. Left so, later tests' records never reached ``caplog``
  and were written to a closed capture stream.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _restore_gitedge_logger() -> Iterator[None]:
    log = logging.getLogger("gitedge")
    handlers, level, propagate = log.handlers[:], log.level, log.propagate
    yield
    log.handlers[:] = handlers
    log.setLevel(level)
    log.propagate = propagate
