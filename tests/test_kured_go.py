"""tests/kuredwindow.py (the window check SUC runs) against kured's own Go code: the
``pkg/timewindow`` of kured 1.13.1, the release SUC's go.mod builds with, copied unchanged under
tests/data/kured-timewindow-1.13.1, built with the machine's Go and run on generated windows
(every accepted time layout, wraps past midnight, equal start and end, bad days and times) at
generated instants (whole seconds: around each 2026 DST change of zones with 1-hour, 30-minute
and midnight changes, at and one second around window edges, and anywhere in the year)."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tests.kuredwindow import TimeWindow, TimeWindowError

SRC = Path(__file__).parent / "data" / "kured-timewindow-1.13.1"
ZONES = [
    "UTC",
    "",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",  # 30-minute DST
    "America/Santiago",  # changes at midnight
    "America/Havana",  # changes at midnight
    "Pacific/Chatham",
    "Asia/Kolkata",
    "America/St_Johns",
]
DAYS = ["su", "mo", "tu", "we", "th", "fr", "sa", "sun", "Mon", "TUESDAY", "0", "6"]
BAD_DAYS = ["7", "-1", "+3", "xx", ""]


def _kured(tmp_path: Path) -> Path:
    work = tmp_path / "kured"
    shutil.copytree(SRC, work)
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod", "GOPROXY": "off"}
    env["GOCACHE"] = str(tmp_path / "gocache")
    env["GOPATH"] = str(tmp_path / "gopath")
    subprocess.run(["go", "build", "-o", "kuredcheck", "."], cwd=work, env=env, check=True, timeout=300)  # fmt: skip
    return work / "kuredcheck"


def _time_text(rng: random.Random) -> str:
    h, m = rng.randrange(24), rng.choice([0, 30, 59, rng.randrange(60)])
    h12, ampm = (h % 12 or 12), ("pm" if h >= 12 else "am")
    return rng.choice(
        [
            f"{h:02d}:{m:02d}",
            f"{h}:{m:02d}",
            f"{h:02d}:{m:02d}:{rng.randrange(60):02d}",
            f"{h}",
            f"{h12:02d}:{m:02d}{ampm}",
            f"{h12}{ampm}",
            f"{h12}:{m:02d}{ampm}",  # no layout: an error
            f"{h:02d}{m:02d}",
        ]
    )


def _transitions() -> list[tuple[str, datetime]]:
    out = []
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for name in ZONES[2:]:
        zone, t = ZoneInfo(name), start
        before = t.astimezone(zone).utcoffset()
        while t < start + timedelta(days=366):
            t += timedelta(minutes=30)
            now = t.astimezone(zone).utcoffset()
            if now != before:
                out.append((name, t))
            before = now
    return out


def _cases(n: int) -> list[dict[str, Any]]:
    rng = random.Random(20261201)
    changes = _transitions()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    cases = []
    for _ in range(n):
        if rng.random() < 0.5:
            zone, t = rng.choice(changes)
            t += timedelta(seconds=rng.randrange(-36 * 3600, 36 * 3600))
        else:
            zone, t = rng.choice(ZONES), start + timedelta(seconds=rng.randrange(366 * 86400))
        days = rng.sample(DAYS, rng.randrange(1, 5))
        if rng.random() < 0.03:
            days.append(rng.choice(BAD_DAYS))
        s, e = _time_text(rng), _time_text(rng)
        if rng.random() < 0.1:
            e = s
        if rng.random() < 0.3:  # at a window edge, or one second either side
            try:
                tw = TimeWindow.new(days, s, e, zone)
            except TimeWindowError:
                pass
            else:
                h, m, sec = rng.choice([tw.start, tw.end])
                local = t.astimezone(tw.location).replace(hour=h, minute=m, second=sec)
                t = local.astimezone(UTC) + timedelta(seconds=rng.choice([-1, 0, 1]))
        cases.append({"days": days, "start": s, "end": e, "zone": zone, "unix": int(t.timestamp())})  # fmt: skip
    return cases


def _port(case: dict[str, Any]) -> str:
    try:
        tw = TimeWindow.new(case["days"], case["start"], case["end"], case["zone"])
    except TimeWindowError as e:
        return f"error: {e}"
    return "true" if tw.contains(datetime.fromtimestamp(case["unix"], UTC)) else "false"


def test_the_port_answers_as_kureds_go_code(tmp_path: Path) -> None:
    binary = _kured(tmp_path)
    cases = _cases(20000)
    text = "".join(json.dumps(c) + "\n" for c in cases)
    out = subprocess.run([binary], input=text, capture_output=True, text=True, check=True, timeout=120)  # fmt: skip
    go = out.stdout.splitlines()
    assert len(go) == len(cases)
    diffs = [(c, g, p) for c, g in zip(cases, go, strict=True) if (p := _port(c)) != g]
    assert diffs == []
    # the cases reach every outcome: inside, outside, refused
    assert {"true", "false"} <= set(go) and any(g.startswith("error: ") for g in go)
