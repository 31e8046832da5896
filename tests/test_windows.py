"""Maintenance windows (gitedge.core.fleet.windows): both shapes (days/start/end and cron/duration),
wrap past midnight and the "24:00" end, merged touching openings, DST spring-forward and fall-back
in Europe/Berlin, America/New_York and Australia/Sydney (gap -> first instant after it, ambiguous
-> first occurrence, cron durations in real time), blackouts (inclusive at both ends, across a year
end, cutting an opening at local midnight, dropping an opening that starts inside one), year end,
leap day, the exact instants of is_open/next_open/closes_at/window_state, the cron parser (lists,
ranges, steps, names, 0/7 Sunday, Vixie day-of-month OR day-of-week), validation errors with their
messages (unquoted YAML times, both shapes, neither, bad zone, bad cron, bad day, to < from),
naive datetimes rejected, and invariants between the three answers over random instants."""

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gitedge.core.fleet.cronspec import parse_cron
from gitedge.core.fleet.windows import WindowState, closes_at, is_open, next_open, window_state
from gitedge.core.fleet.windowspec import MaintenanceWindowSpec
from gitedge.errors import WindowError

ALL = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "fleet-repo" / "windows.yaml"


def mw(**fields: Any) -> MaintenanceWindowSpec:
    """A spec from YAML-style keys (timeZone, from, ...)."""
    return MaintenanceWindowSpec.model_validate(fields)


def days(d, start, end, tz="UTC", blackouts=()):
    return mw(timeZone=tz, days=d, start=start, end=end, blackouts=list(blackouts))


def cron(expr, duration, tz="UTC", blackouts=()):
    return mw(timeZone=tz, cron=expr, duration=duration, blackouts=list(blackouts))


def bo(a, b):
    return {"from": a, "to": b}


def iso(value):
    return None if value is None else value.isoformat()


def utc_iso(text):
    """'2026-11-23T01:00' -> the ISO text the functions' UTC datetimes produce."""
    return None if text is None else f"{text}:00+00:00"


# fmt: off
CASES = [
    # ---- days shape, UTC --------------------------------------------------------------------
    ("weeknights-inside", days(ALL[:5], "01:00", "05:00"), "2026-11-23T02:00:00+00:00",
     True, "2026-11-24T01:00", "2026-11-23T05:00"),
    ("weeknights-at-start", days(ALL[:5], "01:00", "05:00"), "2026-11-23T01:00:00+00:00",
     True, "2026-11-24T01:00", "2026-11-23T05:00"),
    ("weeknights-just-before-start", days(ALL[:5], "01:00", "05:00"), "2026-11-23T00:59:59.999999+00:00",
     False, "2026-11-23T01:00", None),
    ("weeknights-at-end-is-closed", days(ALL[:5], "01:00", "05:00"), "2026-11-23T05:00:00+00:00",
     False, "2026-11-24T01:00", None),
    ("weeknights-friday-to-monday", days(ALL[:5], "01:00", "05:00"), "2026-11-27T06:00:00+00:00",
     False, "2026-11-30T01:00", None),
    ("now-in-other-zone-same-instant", days(ALL[:5], "01:00", "05:00"), "2026-11-23T03:00:00+01:00",
     True, "2026-11-24T01:00", "2026-11-23T05:00"),
    # ---- midnight wrap: days lists the day an opening STARTS ---------------------------------
    ("wrap-friday-open-saturday-0100", days(["fri"], "22:00", "02:00"), "2026-11-28T01:00:00+00:00",
     True, "2026-12-04T22:00", "2026-11-28T02:00"),
    ("wrap-before-start", days(["fri"], "22:00", "02:00"), "2026-11-27T21:59:00+00:00",
     False, "2026-11-27T22:00", None),
    ("wrap-saturday-after-end", days(["fri"], "22:00", "02:00"), "2026-11-28T02:00:00+00:00",
     False, "2026-12-04T22:00", None),
    ("wrap-end-00:00", days(["fri"], "20:00", "00:00"), "2026-11-27T23:30:00+00:00",
     True, "2026-12-04T20:00", "2026-11-28T00:00"),
    ("end-24:00-whole-day", days(["sun"], "00:00", "24:00"), "2026-11-29T23:59:59+00:00",
     True, "2026-12-06T00:00", "2026-11-30T00:00"),
    ("touching-days-merge", days(["sat", "sun"], "00:00", "24:00"), "2026-11-28T10:00:00+00:00",
     True, "2026-12-05T00:00", "2026-11-30T00:00"),
    ("always-open-no-answer", days(ALL, "00:00", "24:00"), "2026-11-28T10:00:00+00:00",
     True, None, None),
    # ---- year end and leap day ---------------------------------------------------------------
    ("year-end-wrap-thu-dec31", days(["thu"], "22:00", "02:00"), "2027-01-01T01:00:00+00:00",
     True, "2027-01-07T22:00", "2027-01-01T02:00"),
    ("year-end-next-across", days(["fri"], "01:00", "05:00"), "2026-12-26T06:00:00+00:00",
     False, "2027-01-01T01:00", None),
    ("leap-day-wrap-tuesday", days(["tue"], "23:00", "01:00"), "2028-03-01T00:30:00+00:00",
     True, "2028-03-07T23:00", "2028-03-01T01:00"),
    ("cron-leap-day-next", cron("0 3 29 2 *", "2h"), "2026-03-01T00:00:00+00:00",
     False, "2028-02-29T03:00", None),
    ("cron-leap-day-open", cron("0 3 29 2 *", "2h"), "2028-02-29T04:00:00+00:00",
     True, "2032-02-29T03:00", "2028-02-29T05:00"),
    ("cron-leap-day-eight-years", cron("0 3 29 2 *", "2h"), "2097-01-01T00:00:00+00:00",
     False, "2104-02-29T03:00", None),
    # ---- cron shape --------------------------------------------------------------------------
    ("cron-mon-thu", cron("0 1 * * 1-4", "4h"), "2026-11-26T04:59:00+00:00",
     True, "2026-11-30T01:00", "2026-11-26T05:00"),
    ("cron-mon-thu-friday", cron("0 1 * * 1-4", "4h"), "2026-11-27T00:00:00+00:00",
     False, "2026-11-30T01:00", None),
    ("cron-names", cron("30 1 * dec MON-wed", "1h"), "2026-11-23T00:00:00+00:00",
     False, "2026-12-01T01:30", None),
    ("cron-vixie-or-dom", cron("0 0 1 * mon", "1h"), "2026-09-29T12:00:00+00:00",
     False, "2026-10-01T00:00", None),
    ("cron-vixie-or-dow", cron("0 0 1 * mon", "1h"), "2026-10-01T01:00:00+00:00",
     False, "2026-10-05T00:00", None),
    ("cron-star-step-dom-is-and", cron("0 0 */2 * mon", "1h"), "2026-11-01T12:00:00+00:00",
     False, "2026-11-09T00:00", None),
    ("cron-impossible-dom-or-dow", cron("0 0 31 2 mon", "1h"), "2026-11-23T12:00:00+00:00",
     False, "2027-02-01T00:00", None),
    ("cron-sunday-7", cron("0 0 * * 7", "1h"), "2026-11-23T00:00:00+00:00",
     False, "2026-11-29T00:00", None),
    ("cron-sunday-0", cron("0 0 * * sun", "1h"), "2026-11-23T00:00:00+00:00",
     False, "2026-11-29T00:00", None),
    ("cron-range-step", cron("0 1-5/2 * * *", "30m"), "2026-11-23T02:00:00+00:00",
     False, "2026-11-23T03:00", None),
    ("cron-list", cron("15,45 9 * * *", "10m"), "2026-11-23T09:25:00+00:00",
     False, "2026-11-23T09:45", None),
    ("cron-overlaps-merge", cron("0 */2 * * *", "3h", blackouts=[bo("2026-11-25", "2026-11-25")]),
     "2026-11-23T10:00:00+00:00", True, "2026-11-26T00:00", "2026-11-25T00:00"),
    ("cron-wraps-midnight", cron("0 22 * * fri", "6h"), "2026-11-28T03:59:00+00:00",
     True, "2026-12-04T22:00", "2026-11-28T04:00"),
    ("cron-nickname-daily", cron("@daily", "1h"), "2026-11-23T01:00:00+00:00",
     False, "2026-11-24T00:00", None),
    ("cron-long-duration", cron("0 0 * * mon", "167h"), "2026-11-29T22:00:00+00:00",
     True, "2026-11-30T00:00", "2026-11-29T23:00"),
    # ---- DST Europe/Berlin: +01 -> +02 on 2026-03-29 at 01:00Z; back on 2026-10-25 at 01:00Z --
    ("berlin-spring-start-in-gap-next", days(["sun"], "02:30", "04:00", "Europe/Berlin"),
     "2026-03-28T12:00:00+00:00", False, "2026-03-29T01:00", None),
    ("berlin-spring-start-in-gap-open", days(["sun"], "02:30", "04:00", "Europe/Berlin"),
     "2026-03-29T01:30:00+00:00", True, "2026-04-05T00:30", "2026-03-29T02:00"),
    ("berlin-fall-back-5-real-hours", days(["sun"], "01:00", "05:00", "Europe/Berlin"),
     "2026-10-25T00:30:00+00:00", True, "2026-11-01T00:00", "2026-10-25T04:00"),
    ("berlin-fall-back-start-first-occurrence", days(["sun"], "02:30", "04:00", "Europe/Berlin"),
     "2026-10-24T12:00:00+00:00", False, "2026-10-25T00:30", None),
    ("berlin-fall-back-open-through-repeat", days(["sun"], "02:30", "04:00", "Europe/Berlin"),
     "2026-10-25T02:45:00+00:00", True, "2026-11-01T01:30", "2026-10-25T03:00"),
    ("berlin-cron-start-in-gap", cron("30 2 * * *", "1h", "Europe/Berlin"),
     "2026-03-28T23:00:00+00:00", False, "2026-03-29T01:00", None),
    ("berlin-cron-repeated-hour-fires-once", cron("30 2 * * *", "1h", "Europe/Berlin"),
     "2026-10-25T01:00:00+00:00", True, "2026-10-26T01:30", "2026-10-25T01:30"),
    ("berlin-cron-second-0230-closed", cron("30 2 * * *", "1h", "Europe/Berlin"),
     "2026-10-25T01:30:00+00:00", False, "2026-10-26T01:30", None),
    ("berlin-cron-duration-real-spring", cron("0 1 * * *", "4h", "Europe/Berlin"),
     "2026-03-29T03:00:00+00:00", True, "2026-03-29T23:00", "2026-03-29T04:00"),
    ("berlin-cron-duration-real-fall", cron("0 1 * * *", "4h", "Europe/Berlin"),
     "2026-10-25T02:00:00+00:00", True, "2026-10-26T00:00", "2026-10-25T03:00"),
    ("berlin-cron-dense-spring", cron("*/30 1-3 * * *", "30m", "Europe/Berlin"),
     "2026-03-29T00:10:00+00:00", True, "2026-03-29T23:00", "2026-03-29T02:00"),
    ("berlin-cron-dense-fall-repeat-closed", cron("*/30 1-3 * * *", "30m", "Europe/Berlin"),
     "2026-10-25T01:15:00+00:00", False, "2026-10-25T02:00", None),
    ("berlin-cron-dense-fall-open", cron("*/30 1-3 * * *", "30m", "Europe/Berlin"),
     "2026-10-24T23:10:00+00:00", True, "2026-10-25T02:00", "2026-10-25T01:00"),
    # ---- DST America/New_York: -05 -> -04 on 2026-03-08 07:00Z; back 2026-11-01 06:00Z -------
    ("ny-window-inside-gap-never-opens", days(["sun"], "02:00", "03:00", "America/New_York"),
     "2026-03-07T12:00:00+00:00", False, "2026-03-15T06:00", None),
    ("ny-wrap-over-fall-back-end-first", days(["sat"], "23:00", "01:30", "America/New_York"),
     "2026-11-01T05:00:00+00:00", True, "2026-11-08T04:00", "2026-11-01T05:30"),
    ("ny-wrap-over-fall-back-repeat-closed", days(["sat"], "23:00", "01:30", "America/New_York"),
     "2026-11-01T05:45:00+00:00", False, "2026-11-08T04:00", None),
    ("ny-cron-fall-back", cron("0 1 * * *", "1h", "America/New_York"),
     "2026-11-01T06:30:00+00:00", False, "2026-11-02T06:00", None),
    ("ny-spring-24h-day", days(["sun"], "00:00", "24:00", "America/New_York"),
     "2026-03-08T12:00:00+00:00", True, "2026-03-15T04:00", "2026-03-09T04:00"),
    # ---- DST Australia/Sydney: +10 -> +11 on 2026-10-03 16:00Z; +11 -> +10 2026-04-04 16:00Z --
    ("sydney-spring-gap", days(["sun"], "02:15", "04:00", "Australia/Sydney"),
     "2026-10-03T15:00:00+00:00", False, "2026-10-03T16:00", None),
    ("sydney-autumn-ambiguous-start", days(["sun"], "02:15", "04:00", "Australia/Sydney"),
     "2026-04-04T17:30:00+00:00", True, "2026-04-11T16:15", "2026-04-04T18:00"),
    ("sydney-blackout-year-end", days(ALL, "01:00", "05:00", "Australia/Sydney",
                                      [bo("2026-12-31", "2027-01-01")]),
     "2026-12-30T12:00:00+00:00", False, "2027-01-01T14:00", None),
    # ---- blackouts ---------------------------------------------------------------------------
    ("blackout-day-before-open", days(ALL, "01:00", "05:00", blackouts=[bo("2026-12-20", "2027-01-04")]),
     "2026-12-19T02:00:00+00:00", True, "2027-01-05T01:00", "2026-12-19T05:00"),
    ("blackout-from-inclusive", days(ALL, "01:00", "05:00", blackouts=[bo("2026-12-20", "2027-01-04")]),
     "2026-12-20T02:00:00+00:00", False, "2027-01-05T01:00", None),
    ("blackout-to-inclusive", days(ALL, "01:00", "05:00", blackouts=[bo("2026-12-20", "2027-01-04")]),
     "2027-01-04T02:00:00+00:00", False, "2027-01-05T01:00", None),
    ("blackout-after", days(ALL, "01:00", "05:00", blackouts=[bo("2026-12-20", "2027-01-04")]),
     "2027-01-05T01:00:00+00:00", True, "2027-01-06T01:00", "2027-01-05T05:00"),
    ("blackout-cuts-at-midnight", days(["sat"], "22:00", "04:00", blackouts=[bo("2026-12-20", "2026-12-20")]),
     "2026-12-19T23:00:00+00:00", True, "2026-12-26T22:00", "2026-12-20T00:00"),
    ("blackout-start-inside-never-opens", days(["sat"], "22:00", "04:00", blackouts=[bo("2026-12-19", "2026-12-19")]),
     "2026-12-20T01:00:00+00:00", False, "2026-12-26T22:00", None),
    ("blackout-local-midnight-berlin", days(ALL, "22:00", "02:00", "Europe/Berlin", [bo("2026-12-24", "2026-12-24")]),
     "2026-12-23T22:00:00+00:00", True, "2026-12-25T21:00", "2026-12-23T23:00"),
    ("blackouts-overlap-and-touch", days(ALL, "01:00", "05:00", blackouts=[
        bo("2026-12-24", "2026-12-31"), bo("2026-12-20", "2026-12-25"), bo("2027-01-01", "2027-01-02")]),
     "2026-12-19T06:00:00+00:00", False, "2027-01-03T01:00", None),
    ("blackout-merged-always-open", days(ALL, "00:00", "24:00", blackouts=[bo("2026-12-24", "2026-12-26")]),
     "2026-12-01T00:00:00+00:00", True, "2026-12-27T00:00", "2026-12-24T00:00"),
    ("blackout-years-long-skipped", days(ALL, "01:00", "05:00", blackouts=[bo("2026-01-01", "2030-12-31")]),
     "2026-06-01T00:00:00+00:00", False, "2031-01-01T01:00", None),
    ("blackout-beyond-horizon", days(ALL, "01:00", "05:00", blackouts=[bo("2026-01-01", "2040-01-01")]),
     "2026-06-01T00:00:00+00:00", False, None, None),
    ("blackout-only-leap-day", cron("0 3 29 2 *", "1h", blackouts=[bo("2028-02-29", "2028-02-29")]),
     "2026-01-01T00:00:00+00:00", False, "2032-02-29T03:00", None),
]
# fmt: on


@pytest.mark.parametrize(
    ("spec", "now", "want_open", "want_next", "want_closes"),
    [pytest.param(*c[1:], id=c[0]) for c in CASES],
)
def test_window_instants(spec, now, want_open, want_next, want_closes):
    at = datetime.fromisoformat(now)
    state = window_state(spec, at)
    assert (state.open, iso(state.next_open), iso(state.closes_at)) == (
        want_open,
        utc_iso(want_next),
        utc_iso(want_closes),
    )
    assert is_open(spec, at) is want_open
    assert iso(next_open(spec, at)) == utc_iso(want_next)
    assert iso(closes_at(spec, at)) == utc_iso(want_closes)
    for value in (state.next_open, state.closes_at):
        assert value is None or value.tzinfo is UTC


def test_examples_file_windows():
    specs = {
        d["metadata"]["name"]: mw(**d["spec"]) for d in yaml.safe_load_all(EXAMPLES.read_text())
    }
    nights, evenings = specs["store-nights"], specs["calm-evenings"]
    # Thursday 2026-12-17 01:00 Berlin opens; Mon 2026-12-21 is blacked out (Dec 19 .. Jan 4).
    assert window_state(nights, datetime(2026, 12, 17, 1, tzinfo=UTC)) == WindowState(
        open=True,
        next_open=datetime(2027, 1, 5, 0, tzinfo=UTC),
        closes_at=datetime(2026, 12, 17, 4, tzinfo=UTC),
    )
    # 22:00 Chicago (CST, -06) for six hours.
    assert window_state(evenings, datetime(2026, 12, 17, 5, tzinfo=UTC)) == WindowState(
        open=True,
        next_open=datetime(2026, 12, 18, 4, tzinfo=UTC),
        closes_at=datetime(2026, 12, 17, 10, tzinfo=UTC),
    )


@pytest.mark.parametrize("fn", [window_state, is_open, next_open, closes_at])
def test_naive_now_is_rejected(fn):
    with pytest.raises(WindowError, match="timezone-aware"):
        fn(days(ALL, "01:00", "05:00"), datetime(2026, 11, 23, 2))


def test_now_out_of_range_is_a_window_error():
    with pytest.raises(WindowError, match="outside"):
        window_state(days(ALL, "01:00", "05:00"), datetime(9999, 1, 1, tzinfo=UTC))


# ---- cron parser ---------------------------------------------------------------------------


# fmt: off
CRON_FIELDS = [
    ("0 1 * * 1-4", {0}, {1}, set(range(1, 32)), set(range(1, 13)), {1, 2, 3, 4}),
    ("*/15 */6 1,15 */3 *", {0, 15, 30, 45}, {0, 6, 12, 18}, {1, 15}, {1, 4, 7, 10}, set(range(7))),
    ("5-20/5 1-5/2 10-12 jan-MAR,Dec Sat,sun", {5, 10, 15, 20}, {1, 3, 5}, {10, 11, 12}, {1, 2, 3, 12}, {6, 0}),
    ("0 0 * * 5-7", {0}, {0}, set(range(1, 32)), set(range(1, 13)), {5, 6, 0}),
    ("0 0 * * 7", {0}, {0}, set(range(1, 32)), set(range(1, 13)), {0}),
    ("0 0 * * */2", {0}, {0}, set(range(1, 32)), set(range(1, 13)), {0, 2, 4, 6}),
    ("59 23 31 12 SUN", {59}, {23}, {31}, {12}, {0}),
    ("@hourly", {0}, set(range(24)), set(range(1, 32)), set(range(1, 13)), set(range(7))),
    ("@weekly", {0}, {0}, set(range(1, 32)), set(range(1, 13)), {0}),
    ("  0   1 *\t* *  ", {0}, {1}, set(range(1, 32)), set(range(1, 13)), set(range(7))),
]
# fmt: on


@pytest.mark.parametrize(("expr", "minutes", "hours", "doms", "months", "dows"), CRON_FIELDS)
def test_parse_cron_fields(expr, minutes, hours, doms, months, dows):
    c = parse_cron(expr)
    got = (set(c.minutes), set(c.hours), set(c.days_of_month), set(c.months), set(c.days_of_week))
    assert got == (minutes, hours, doms, months, dows)


# fmt: off
CRON_ERRORS = [
    ("@reboot", "@reboot has no time of day"),
    ("@every 1h", "@every has no time of day"),
    ("0 0 0 1 * *", "has 6 fields; it needs exactly 5.*seconds or years"),
    ("0 0 1 * * * 2026", "has 7 fields"),
    ("0 1 * *", "has 4 fields"),
    ("", "has 0 fields"),
    ("60 * * * *", "minute field '60': 60 is outside 0-59"),
    ("* 24 * * *", "hour field '24': 24 is outside 0-23"),
    ("0 0 0 * *", "day-of-month field '0': 0 is outside 1-31"),
    ("0 0 * 13 *", "month field '13': 13 is outside 1-12"),
    ("0 0 * * 8", "day-of-week field '8': 8 is outside 0-7"),
    ("0 0 * * sat-sun", "range 'sat-sun' runs backwards"),
    ("5/15 * * * *", r"a step needs '\*' or a range before it, e.g. 5-59/15"),
    ("*/0 * * * *", "step '0' must be a number of at least 1"),
    ("0 0 L * *", "'L' is not a number"),
    ("0 0 ? * *", r"'\?' is not a number"),
    ("0 0 * * monday", r"'monday' is not a number or a name \(sun..sat\)"),
    ("0 0 1,,2 * *", "'' is not a number"),
    ("0 0 31 2,4 *", "never matches a date"),
    ("0 0 30 2 *", "never matches a date"),
]
# fmt: on


@pytest.mark.parametrize(("expr", "message"), CRON_ERRORS)
def test_parse_cron_errors(expr, message):
    with pytest.raises(ValueError, match=message):
        parse_cron(expr)


def test_parse_cron_feb_29_is_valid():
    assert parse_cron("0 0 29 2 *").days_of_month == frozenset({29})


# ---- validation ----------------------------------------------------------------------------


def from_yaml(text: str) -> MaintenanceWindowSpec:
    return MaintenanceWindowSpec.model_validate(yaml.safe_load(text))


# fmt: off
INVALID = [
    ("days: [mon]\nstart: 19:00\nend: '23:00'", "start",
     r'start must be a quoted string such as "19:00" \(unquoted 19:00 is read by YAML as the number 1140\)'),
    ("days: [mon]\nstart: '01:00'\nend: 5:00", "end",
     r"unquoted 5:00 is read by YAML as the number 300"),
    ("days: [mon]\nstart: 1.5\nend: '05:00'", "start", 'start must be a quoted string such as "19:00"$'),
    ("days: [mon]\nstart: '24:00'\nend: '05:00'", "start", "must be HH:MM between 00:00 and 23:59"),
    ("days: [mon]\nstart: '1:00'\nend: '05:00'", "start", "must be HH:MM"),
    ("days: [mon]\nstart: '01:00'\nend: '25:00'", "end", "must be HH:MM between 00:00 and 24:00"),
    ("days: [mon]\nstart: '01:00'\nend: '01:00'", "", 'start and end are both "01:00": a window needs a length'),
    ("days: [monday]\nstart: '01:00'\nend: '05:00'", "days", "unknown day 'monday': write days as mon, tue"),
    ("days: [1]\nstart: '01:00'\nend: '05:00'", "days", "unknown day 1"),
    ("days: mon\nstart: '01:00'\nend: '05:00'", "days", "days must be a non-empty list"),
    ("days: []\nstart: '01:00'\nend: '05:00'", "days", "days must be a non-empty list"),
    ("days: [mon]\nstart: '01:00'\nend: '05:00'\ncron: 0 1 * * *\nduration: 1h", "",
     "use either days \\+ start \\+ end, or cron \\+ duration, not both"),
    ("days: [mon]\nstart: '01:00'\nend: '05:00'\nduration: 1h", "", "not both"),
    ("timeZone: UTC", "", "a window needs either days \\+ start \\+ end, or cron \\+ duration"),
    ("days: [mon]\nstart: '01:00'", "", "days \\+ start \\+ end go together: end missing"),
    ("cron: 0 1 * * *", "", "cron \\+ duration go together: duration missing"),
    ("duration: 1h", "", "cron \\+ duration go together: cron missing"),
    ("timeZone: Mars/Olympus\ncron: 0 1 * * *\nduration: 1h", "timeZone", "'Mars/Olympus' is not an IANA time zone"),
    ("timeZone: localtime\ncron: 0 1 * * *\nduration: 1h", "timeZone", "not an IANA time zone"),
    ("timeZone: posix/Europe/Berlin\ncron: 0 1 * * *\nduration: 1h", "timeZone", "not an IANA time zone"),
    ("timeZone: ../../etc/passwd\ncron: 0 1 * * *\nduration: 1h", "timeZone", "not an IANA time zone"),
    ("timeZone: Europe\ncron: 0 1 * * *\nduration: 1h", "timeZone", "not an IANA time zone"),
    ("cron: 0 1 * * 1-9\nduration: 1h", "cron", "day-of-week field '1-9': 9 is outside 0-7"),
    ("cron: 5\nduration: 1h", "cron", 'cron must be a quoted string such as "0 1 \\* \\* 1-4"'),
    ("cron: '@reboot'\nduration: 1h", "cron", "@reboot has no time of day"),
    ("cron: 0 0 0 1 * *\nduration: 1h", "cron", "has 6 fields"),
    ("cron: 0 1 * * *\nduration: 0s", "duration", "more than 0s and less than 7 days"),
    ("cron: 0 1 * * *\nduration: 168h", "duration", "less than 7 days"),
    ("cron: 0 1 * * *\nduration: 4", "duration", "a duration must be a string"),
    ("cron: 0 1 * * *\nduration: 1h\nblackouts: [{from: 2026-12-20, to: 2026-12-19}]", "blackouts.0",
     r"blackout 'to' \(2026-12-19\) is before 'from' \(2026-12-20\)"),
    ("cron: 0 1 * * *\nduration: 1h\nblackouts: [{from: 2026-12-20T10:00:00Z, to: 2026-12-21}]",
     "blackouts.0.from", "from must be a date written YYYY-MM-DD"),
    ("cron: 0 1 * * *\nduration: 1h\nblackouts: [{from: '2026/12/20', to: 2026-12-21}]",
     "blackouts.0.from", "from must be a date written YYYY-MM-DD"),
    ("cron: 0 1 * * *\nduration: 1h\nblackouts: [{from: '2026-02-30', to: 2026-12-21}]",
     "blackouts.0.from", "'2026-02-30' is not a calendar date"),
    ("cron: 0 1 * * *\nduration: 1h\nblackouts: [{from: 2026-12-20}]", "blackouts.0.to", "Field required"),
    ("cron: 0 1 * * *\nduration: 1h\nblackouts: [{from: 2026-12-20, to: 2026-12-21, until: 2027-01-01}]",
     "blackouts.0.until", "Extra inputs are not permitted"),
    ("cron: 0 1 * * *\nduration: 1h\ntimezone: UTC", "timezone", "Extra inputs are not permitted"),
]
# fmt: on


@pytest.mark.parametrize(("text", "loc", "message"), INVALID)
def test_validation_errors(text, loc, message):
    with pytest.raises(ValidationError) as info:
        from_yaml(text)
    errors = info.value.errors(include_url=False)
    assert len(errors) == 1, errors
    assert ".".join(str(p) for p in errors[0]["loc"]) == loc
    assert re.search(message, errors[0]["msg"]), errors[0]["msg"]


@pytest.mark.parametrize(
    "text",
    [
        "days: [Mon, TUE, sun, sun]\nstart: '00:00'\nend: '24:00'",
        "days: [fri]\nstart: '22:00'\nend: '00:00'",
        "days: [fri]\nstart: 01:00\nend: 09:30",  # YAML 1.1 reads a leading-zero time as a string
        "timeZone: America/Argentina/Buenos_Aires\ncron: 0 1 * * *\nduration: 1h30m",
        "timeZone: Etc/GMT+5\ncron: '@monthly'\nduration: 167h59m",
        "cron: 0 1 * * *\nduration: 1h\nblackouts: [{from: '2026-12-20', to: 2026-12-20}]",
    ],
)
def test_valid_specs(text):
    spec = from_yaml(text)
    assert window_state(spec, datetime(2026, 11, 23, tzinfo=UTC)).next_open is not None


def test_days_are_normalised_and_spec_roundtrips():
    spec = from_yaml(
        "days: [Mon, sun]\nstart: '22:00'\nend: '02:00'\nblackouts: [{from: 2026-12-20, to: 2027-01-04}]"
    )
    assert spec.days == ("mon", "sun")
    dumped = spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert dumped == {
        "timeZone": "UTC",
        "days": ["mon", "sun"],
        "start": "22:00",
        "end": "02:00",
        "blackouts": [{"from": "2026-12-20", "to": "2027-01-04"}],
    }
    assert MaintenanceWindowSpec.model_validate(dumped) == spec


def test_spec_is_frozen_and_hashable():
    spec = days(ALL, "01:00", "05:00")
    assert hash(spec) == hash(days(ALL, "01:00", "05:00"))
    with pytest.raises(ValidationError):
        spec.start = "02:00"  # type: ignore[misc]


# ---- invariants over random instants ------------------------------------------------------

SPECS = [
    days(["fri", "sat"], "22:00", "02:30", "Europe/Berlin", [bo("2026-12-24", "2027-01-01")]),
    days(["sun"], "01:00", "05:00", "America/New_York"),
    days(ALL, "02:00", "03:00", "Australia/Sydney"),
    cron("*/45 1-3 * * *", "20m", "Europe/Berlin"),
    cron("0 1 13 * fri", "50h", "America/New_York", [bo("2027-03-13", "2027-03-14")]),
]
INSTANTS = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=300, deadline=None)
@given(index=st.integers(0, len(SPECS) - 1), now=INSTANTS)
def test_answers_agree_with_each_other(index, now):
    spec = SPECS[index]
    state = window_state(spec, now)
    tick = timedelta(microseconds=1)
    if state.open:
        assert state.closes_at is not None and state.closes_at > now
        assert is_open(spec, state.closes_at - tick)
        assert not is_open(spec, state.closes_at)
        assert state.next_open is not None and state.next_open > state.closes_at
    else:
        assert state.closes_at is None
        assert state.next_open is not None and state.next_open > now
        assert is_open(spec, state.next_open)
        assert not is_open(spec, state.next_open - tick)
        assert next_open(spec, state.next_open - tick) == state.next_open
    if spec.blackouts:
        local = now.astimezone(ZoneInfo(spec.time_zone)).date()
        if any(b.from_ <= local <= b.to for b in spec.blackouts):
            assert not state.open
