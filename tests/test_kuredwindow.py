"""kured's own tests for pkg/timewindow (timewindow_test.go TestTimeWindows, days_test.go
TestParseWeekdays / TestParseWeekdaysErrors at kubereboot/kured@51220cc7), ported case for case
to tests/kuredwindow.py, plus the rules SUC's window gate depends on that kured's cases do not
pin: the inclusive end, the wrap to the previous day and the Go time.Date DST behaviour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.kuredwindow import (
    TimeWindow,
    TimeWindowError,
    go_date,
    parse_time,
    parse_weekdays,
    suc_open_spans,
    suc_window_contains,
    to_ns,
    weekdays_string,
)

# timewindow_test.go TestTimeWindows: (days, start, end, loc, [(time, result)])
KURED_CASES = [
    ("mon,tue,wed,thu,fri", "9am", "5pm", "America/Los_Angeles", [
        ("2019/03/31 10:00 PDT", False),
        ("2019/04/04 00:49 PDT", False),
        ("2019/04/04 12:00 PDT", True),
        ("2019/04/04 11:59 UTC", False),
        ("2019/04/05 08:59 PDT", False),
        ("2019/04/05 9:01 PDT", True),
    ]),
    ("mon,we,fri", "10:01", "11:30am", "America/Los_Angeles", [
        ("2019/04/05 10:30 PDT", True),
        ("2019/04/06 10:30 PDT", False),
        ("2019/04/07 10:30 PDT", False),
        ("2019/04/08 10:30 PDT", True),
        ("2019/04/09 10:30 PDT", False),
        ("2019/04/10 10:30 PDT", True),
        ("2019/04/11 10:30 PDT", False),
    ]),
    ("mo,tu,we,th,fr", "00:00", "23:59:59", "UTC", [
        ("2019/04/18 00:00 UTC", True),
        ("2019/04/18 23:59 UTC", True),
    ]),
    ("mon,tue,wed,thu,fri", "9pm", "5am", "America/Los_Angeles", [
        ("2019/03/30 04:00 PDT", False),
        ("2019/03/31 10:00 PDT", False),
        ("2019/03/31 22:00 PDT", False),
        ("2019/04/04 00:49 PDT", True),
        ("2019/04/04 12:00 PDT", False),
        ("2019/04/04 22:49 PDT", True),
        ("2019/04/05 00:49 PDT", True),
        ("2019/04/05 08:59 PDT", False),
        ("2019/04/05 9:01 PDT", False),
    ]),
    ("mon,tue,wed,thu,fri", "11:59pm", "00:01am", "America/Los_Angeles", [
        ("2019/04/04 23:58 PDT", False),
        ("2019/04/04 23:59 PDT", True),
        ("2019/04/05 00:00 PDT", True),
        ("2019/04/05 00:01 PDT", True),
        ("2019/04/05 00:02 PDT", False),
    ]),
    ("mon,tue,wed,fri", "11:59pm", "00:01am", "America/Los_Angeles", [
        ("2019/04/04 23:58 PDT", False),
        ("2019/04/04 23:59 PDT", False),
        ("2019/04/05 00:00 PDT", True),
        ("2019/04/05 00:02 PDT", False),
    ]),
    ("mon,tue,wed,thu", "11:59pm", "00:01am", "America/Los_Angeles", [
        ("2019/04/04 23:58 PDT", False),
        ("2019/04/04 23:59 PDT", True),
        ("2019/04/05 00:00 PDT", False),
        ("2019/04/05 00:02 PDT", False),
    ]),
    ("mon,tue,wed,thu,fri", "11:59pm", "00:01am", "UTC", [
        ("2019/04/04 23:58 UTC", False),
        ("2019/04/04 23:59 UTC", True),
        ("2019/04/05 00:00 UTC", True),
        ("2019/04/05 00:01 UTC", True),
        ("2019/04/05 00:02 UTC", False),
    ]),
]  # fmt: skip


def go_parse(text: str, loc: str) -> datetime:
    """time.ParseInLocation("2006/01/02 15:04 MST", text, loc): "UTC" is UTC wherever; another
    abbreviation takes the location's offset (the cases only use the zone's own)."""
    day, clock, abbrev = text.split()
    naive = datetime.strptime(f"{day} {clock}", "%Y/%m/%d %H:%M")
    if abbrev == "UTC":
        return naive.replace(tzinfo=UTC)
    local = naive.replace(tzinfo=ZoneInfo(loc))
    assert local.tzname() == abbrev, text
    return local


@pytest.mark.parametrize(("days", "start", "end", "loc", "cases"), KURED_CASES)
def test_kured_time_windows(days, start, end, loc, cases):
    tw = TimeWindow.new(days.split(","), start, end, loc)
    for text, expected in cases:
        assert tw.contains(go_parse(text, loc)) is expected, f"{tw} contains {text}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0,4", "Sun---------Thu------"),
        ("su,mo,tu", "SunMonTue------------"),
        ("sunday,tu,thu", "Sun---Tue---Thu------"),
        ("THURSDAY", "------------Thu------"),
        ("we,WED,WeDnEsDaY", "---------Wed---------"),
        ("", "---------------------"),
        (",,,", "---------------------"),
    ],
)
def test_kured_parse_weekdays(text, expected):
    assert weekdays_string(parse_weekdays(text.split(","))) == expected


@pytest.mark.parametrize("text", ["15", "-8", "8", "mon,tue,wed,fridayyyy"])
def test_kured_parse_weekdays_errors(text):
    with pytest.raises(TimeWindowError):
        parse_weekdays(text.split(","))


def test_parse_time_layouts_as_go_parses_them():
    assert parse_time("9am") == (9, 0, 0) and parse_time("5pm") == (17, 0, 0)
    assert parse_time("11:30am") == (11, 30, 0) and parse_time("00:01am") == (0, 1, 0)
    assert parse_time("12am") == (0, 0, 0) and parse_time("12pm") == (12, 0, 0)
    assert parse_time("1:05") == (1, 5, 0) and parse_time("23:59:59") == (23, 59, 59)
    assert parse_time("7") == (7, 0, 0)
    for bad in ("24:00", "1:5", "13pm", "9AM", "", "05:00 ", "123"):
        with pytest.raises(TimeWindowError):
            parse_time(bad)


def test_end_is_inclusive_to_the_last_nanosecond_of_its_second():
    tw = TimeWindow.new(["mon"], "01:00", "05:00", "UTC")
    monday = datetime(2026, 11, 23, tzinfo=UTC)
    assert tw.contains(monday + timedelta(hours=5))
    assert tw.contains(monday + timedelta(hours=5, microseconds=999_999))
    assert not tw.contains(monday + timedelta(hours=5, seconds=1))
    assert tw.contains(monday + timedelta(hours=1)) and not tw.contains(
        monday + timedelta(hours=1) - timedelta(microseconds=1)
    )


def test_a_wrap_past_midnight_belongs_to_the_weekday_of_the_instant():
    """{fri} 22:00-02:00 is open Friday 00:00-02:00 and 22:00-24:00, closed Saturday 00-02."""
    tw = TimeWindow.new(["fri"], "22:00", "02:00", "UTC")
    friday = datetime(2026, 11, 27, tzinfo=UTC)
    assert friday.weekday() == 4
    assert tw.contains(friday + timedelta(hours=1))
    assert tw.contains(friday + timedelta(hours=23))
    assert not tw.contains(friday + timedelta(hours=25))  # Saturday 01:00
    assert not tw.contains(friday + timedelta(hours=12))


def test_go_date_in_a_dst_gap_and_overlap():
    """Go's time.Date picks, for a missing wall time, the offset in force before the gap
    (02:30 on the spring-forward day is 03:30 CEST); for a repeated one, the later offset
    (02:30 on the fall-back day is 02:30 CET)."""
    berlin = ZoneInfo("Europe/Berlin")
    spring = go_date(2026, 3, 29, 2, 30, 0, 0, berlin)
    assert spring == to_ns(datetime(2026, 3, 29, 1, 30, tzinfo=UTC))
    autumn = go_date(2026, 10, 25, 2, 30, 0, 0, berlin)
    assert autumn == to_ns(datetime(2026, 10, 25, 1, 30, tzinfo=UTC))
    # and the window 02:00-03:00 on the spring-forward Sunday: open 01:00-01:59:59 UTC
    tw = TimeWindow.new(["sun"], "02:00", "03:00", "Europe/Berlin")
    assert tw.contains(datetime(2026, 3, 29, 1, 0, tzinfo=UTC))
    assert not tw.contains(datetime(2026, 3, 29, 0, 59, tzinfo=UTC))


def test_suc_window_contains_an_invalid_window_contains_nothing():
    ok = {"days": ["mon"], "startTime": "01:00", "endTime": "05:00", "timeZone": "UTC"}
    monday = datetime(2026, 11, 23, 2, tzinfo=UTC)
    assert suc_window_contains(ok, monday)
    assert not suc_window_contains({**ok, "timeZone": "Mars/Base"}, monday)
    assert not suc_window_contains({**ok, "endTime": "24:00"}, monday)


def test_suc_open_spans_of_a_wrap_past_midnight_on_one_weekday():
    """gitedge's {days: [fri], 22:00-02:00} as SUC reads it: Friday 00:00-02:00 and 22:00-24:00
    (the end minute 02:00 included), nothing on Saturday."""
    window = {"days": ["fri"], "startTime": "22:00", "endTime": "02:00", "timeZone": "UTC"}
    thursday = datetime(2026, 11, 26, tzinfo=UTC)
    spans = suc_open_spans(window, thursday, thursday + timedelta(days=3))
    friday = thursday + timedelta(days=1)
    assert spans == [
        (friday, friday + timedelta(hours=2, minutes=1)),
        (friday + timedelta(hours=22), friday + timedelta(days=1)),
    ]
