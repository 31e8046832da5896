"""The one fork pool (adapters/forkpool.py): results in order, a worker's error or death raised
as errors.py's WorkerFailed, and no process left behind (killed and reaped)."""

from __future__ import annotations

import os

import pytest

from gitedge.adapters import forkpool
from gitedge.adapters.forkpool import Ordered
from gitedge.errors import GitEdgeError, WorkerFailed


def _exists(pid: int) -> bool:
    """Whether the process exists at all: a zombie (exited, not reaped) counts."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_results_come_in_order_from_every_worker() -> None:
    pool = Ordered(lambda k: (k, os.getpid()), count=9, workers=3)
    try:
        got = [pool.get(k) for k in range(9)]
    finally:
        pool.close()
    assert [k for k, _ in got] == list(range(9))
    assert len({pid for _, pid in got}) == 3
    assert os.getpid() not in {pid for _, pid in got}


def test_an_error_in_a_worker_is_raised_as_worker_failed_and_leaves_no_process() -> None:
    def work(k: int) -> int:
        if k == 3:
            raise ValueError(f"cannot do item {k}")
        return k

    pool = Ordered(work, count=6, workers=2)
    pids = pool.pids
    assert [pool.get(k) for k in range(3)] == [0, 1, 2]
    with pytest.raises(WorkerFailed, match=r"result 3: ValueError: cannot do item 3") as e:
        pool.get(3)
    assert isinstance(e.value, GitEdgeError)
    assert pool.get(4) == 4  # the other worker goes on
    with pytest.raises(WorkerFailed, match="ended before giving result 5"):
        pool.get(5)  # the failed worker stopped at its error
    pool.close()
    assert not any(_exists(pid) for pid in pids)


def test_a_worker_that_dies_is_worker_failed() -> None:
    parent = os.getpid()

    def work(k: int) -> int:
        if os.getpid() != parent and k == 1:
            os._exit(9)
        return k

    pool = Ordered(work, count=4, workers=2)
    pids = pool.pids
    assert pool.get(0) == 0
    with pytest.raises(WorkerFailed, match="ended before giving result 1 of 4"):
        pool.get(1)
    pool.close()
    assert not any(_exists(pid) for pid in pids)


def test_closing_early_kills_and_reaps_busy_workers() -> None:
    pool = Ordered(lambda k: b"x" * (1 << 20), count=50, workers=2)  # blocked on full pipes
    pids = pool.pids
    pool.get(0)
    pool.close()
    assert not any(_exists(pid) for pid in pids)
    pool.close()  # twice is fine


def test_cpus_follows_the_affinity_mask_and_the_cap() -> None:
    assert forkpool.cpus() == min(len(os.sched_getaffinity(0)), forkpool.MAX_WORKERS)
    assert forkpool.cpus(1) == 1
