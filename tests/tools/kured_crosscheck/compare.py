"""Cross-check tests/kuredwindow.py against kured's Go timewindow on random cases (run.sh).

Arguments: the built Go checker, a seed, the number of cases, and optionally ``valid`` (only
inputs kured accepts, so most cases exercise Contains). Prints the mismatches."""

import json
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from tests.kuredwindow import NS, TimeWindow, TimeWindowError

rnd = random.Random(int(sys.argv[2]))
VALID = sys.argv[4:] == ["valid"]
ZONES = [
    "UTC",
    "",
    "Europe/Berlin",
    "America/Los_Angeles",
    "Australia/Lord_Howe",
    "America/Sao_Paulo",
    "Pacific/Chatham",
    "Asia/Kolkata",
    "America/St_Johns",
    "Europe/London",
    "Africa/Casablanca",
    "Mars/Base",
]
DAYNAMES = [
    "0",
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
    "su",
    "mo",
    "tu",
    "we",
    "th",
    "fr",
    "sa",
    "sun",
    "Mon",
    "TUESDAY",
    "wed",
    "thu",
    "fri",
    "sat",
    "7",
    "-1",
    "+3",
    "xx",
    "",
]


def rtime():
    k = rnd.random()
    h, m, s = (
        rnd.randrange(24),
        rnd.choice([0, 0, 30, 59, rnd.randrange(60)]),
        rnd.choice([0, 0, 59, rnd.randrange(60)]),
    )
    if k < 0.35:
        return f"{h:02d}:{m:02d}"
    if k < 0.5:
        return f"{h}:{m:02d}"
    if k < 0.6:
        return f"{h:02d}:{m:02d}:{s:02d}"
    h12 = rnd.randrange(1, 13) if VALID else rnd.randrange(0, 14)
    ap = rnd.choice(["am", "pm"] if VALID else ["am", "pm", "AM"])
    if k < 0.7:
        return f"{h12:02d}:{m:02d}{ap}"
    if k < 0.8:
        return f"{h12}{ap}"
    if k < 0.85:
        return f"{h12:02d}{ap}"
    if k < 0.9 or VALID:
        return f"{h}"
    return rnd.choice(
        ["24:00", "23:59:60", "5", "1:5", "noon", "", "12am", "12pm", "00:00", "23:59"]
    )


# instants: random in 2024-2027 plus around DST transitions
instants = []
for z in [
    "Europe/Berlin",
    "America/Los_Angeles",
    "Australia/Lord_Howe",
    "America/Sao_Paulo",
    "Pacific/Chatham",
    "Europe/London",
    "America/St_Johns",
]:
    tz = ZoneInfo(z)
    t = datetime(2024, 1, 1, tzinfo=UTC)
    prev = t.astimezone(tz).utcoffset()
    while t < datetime(2027, 1, 1, tzinfo=UTC):
        off = t.astimezone(tz).utcoffset()
        if off != prev:
            instants += [t + timedelta(minutes=d) for d in range(-26 * 60, 26 * 60, 7)]
            prev = off
        t += timedelta(hours=1)
cases = []
for _ in range(int(sys.argv[3])):
    days = rnd.sample(DAYNAMES[:21] if VALID else DAYNAMES, rnd.randrange(1 if VALID else 0, 5))
    t = (
        rnd.choice(instants)
        if rnd.random() < 0.6
        else datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=rnd.randrange(3 * 365 * 86400))
    )
    t += timedelta(microseconds=rnd.choice([0, 0, 0, 999999, 500000]))
    cases.append(
        {
            "days": days,
            "start": rtime(),
            "end": rtime(),
            "loc": rnd.choice(ZONES[:-1] if VALID else ZONES),
            "ns": (int(t.timestamp()) * NS + t.microsecond * 1000),
        }
    )
out = subprocess.run(
    [sys.argv[1]],
    input="\n".join(json.dumps(c) for c in cases) + "\n",
    capture_output=True,
    text=True,
    check=True,
).stdout.split()
bad = 0
for c, go in zip(cases, out, strict=True):
    try:
        tw = TimeWindow.new(c["days"], c["start"], c["end"], c["loc"])
        t = datetime.fromtimestamp(c["ns"] // NS, UTC) + timedelta(
            microseconds=(c["ns"] % NS) // 1000
        )
        py = str(tw.contains(t)).lower()
    except TimeWindowError:
        py = "error"
    if py != go:
        bad += 1
        if bad <= 10:
            print("MISMATCH", c, "go", go, "py", py)
print(
    f"{len(cases)} cases, {bad} mismatches, {sum(o == 'true' for o in out)} true, {sum(o == 'error' for o in out)} error"
)
sys.exit(1 if bad else 0)
