"""yamldoc: parsing many files in forked workers (adapters/yamlworkers.py over
adapters/forkpool.py) gives exactly what parsing them here gives."""

from __future__ import annotations

import os
from datetime import date

import pytest

from gitedge.adapters import yamlworkers
from gitedge.adapters.yamlworkers import ParsedFiles
from gitedge.core.fleet import yamldoc
from gitedge.core.fleet.yamldoc import parse_documents


class _Proc:
    """A worker process by id: alive while it exists, a zombie not reaped included."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def is_alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True


def _files(n: int) -> list[tuple[bytes, str]]:
    out = []
    for i in range(n):
        text = (
            f"kind: UpgradeTarget\nmetadata: {{name: t{i}}}\n"
            f"spec:\n  priority: {i}\n  enabled: yes\n  since: 2026-01-0{1 + i % 9}\n"
            "  base: &b {a: 1}\n  copy:\n    <<: *b\n    c: [x, y]\n"
            "---\nsecond: doc\n"
        )
        out.append((text.encode(), f"f{i}.yaml"))
    out.append((b"a: 1\na: 2\n", "dup.yaml"))  # a problem, reported by a worker
    out.append((b"\xff\xfe", "binary.yaml"))
    out.append((b"x: !!python/object:os.system ls\n", "tag.yaml"))
    return out


def _plain(results: list[tuple[list[yamldoc.Document], list[yamldoc.Problem]]]) -> list[object]:
    return [([(d.value, d.line, d.index) for d in docs], problems) for docs, problems in results]


@pytest.mark.parametrize("workers", [2, 3])
def test_workers_give_the_serial_results_in_order(workers: int) -> None:
    files = _files(25)
    serial = [parse_documents(data, path=path) for data, path in files]
    parallel = list(ParsedFiles(files, workers))
    assert _plain(parallel) == _plain(serial)
    first = parallel[0][0][0].value
    assert first["spec"]["enabled"] is True and first["spec"]["since"] == date(2026, 1, 1)
    assert first["spec"]["copy"] == {"a": 1, "c": ["x", "y"]}
    assert [str(p) for p in parallel[-3][1]] == ["dup.yaml:2: duplicate key 'a'"]
    assert "not valid UTF-8" in str(parallel[-2][1][0])
    assert "is not allowed" in str(parallel[-1][1][0])
    # line lookups re-compose the file in this process
    assert parallel[3][0][1].node.start_mark.line + 1 == parallel[3][0][1].line == 12


def test_a_worker_that_dies_costs_time_not_results(monkeypatch: pytest.MonkeyPatch) -> None:
    real = yamldoc.parse_values
    parent = os.getpid()
    files = _files(10)
    second_share = {path for _, path in files[1::2]}

    def dies_on_second_share(file: tuple[bytes, str]) -> yamldoc.Parsed:
        if os.getpid() != parent and file[1] in second_share:
            os._exit(3)
        return real(file)

    monkeypatch.setattr(yamlworkers, "parse_values", dies_on_second_share)
    serial = [parse_documents(data, path=path) for data, path in files]
    assert _plain(list(ParsedFiles(files, 2))) == _plain(serial)


def test_stopping_early_stops_the_workers() -> None:
    parsed = ParsedFiles(_files(40), 2)
    next(parsed)
    procs = [_Proc(pid) for pid in parsed.pids]
    assert len(procs) == 2
    parsed.close()
    assert all(not p.is_alive() for p in procs)
    with pytest.raises(StopIteration):
        next(parsed)
