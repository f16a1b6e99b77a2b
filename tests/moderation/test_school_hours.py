"""School-hours arithmetic (escalation, notices): the school's days, hours and holidays."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from moderation.errors import InvalidInput
from moderation.policy import SchoolHours
from moderation.policy_document import parse_document

AMS = ZoneInfo("Europe/Amsterdam")
HOURS = SchoolHours()
SCHOOL_DAY_MIN = 510  # 8:00-16:30


def ams(*args: int) -> datetime:
    return datetime(*args, tzinfo=AMS)


# 2026-03-02 is a Monday; 2026-03-06 a Friday; 2026-03-07/08 the weekend.
@pytest.mark.parametrize(
    ("start", "end", "minutes"),
    [
        (ams(2026, 3, 2, 9, 0), ams(2026, 3, 2, 10, 30), 90),  # within one school day
        (ams(2026, 3, 2, 6, 0), ams(2026, 3, 2, 9, 0), 60),  # before hours counts from 8:00
        (ams(2026, 3, 2, 16, 0), ams(2026, 3, 2, 22, 0), 30),  # after hours stops at 16:30
        (ams(2026, 3, 2, 17, 0), ams(2026, 3, 3, 7, 59), 0),  # the night is not counted
        (ams(2026, 3, 2, 16, 0), ams(2026, 3, 3, 9, 0), 90),  # across days: 30 + 60
        (ams(2026, 3, 2, 8, 0), ams(2026, 3, 3, 8, 0), SCHOOL_DAY_MIN),  # one school day
        (ams(2026, 3, 6, 15, 0), ams(2026, 3, 9, 9, 0), 150),  # Fri 90 + weekend 0 + Mon 60
        (ams(2026, 3, 7, 10, 0), ams(2026, 3, 8, 15, 0), 0),  # Saturday to Sunday
        (ams(2026, 3, 2, 8, 0), ams(2026, 3, 9, 8, 0), 5 * SCHOOL_DAY_MIN),  # a whole week
        (ams(2026, 3, 2, 10, 0), ams(2026, 3, 2, 9, 0), 0),  # end before start
    ],
)
def test_minutes_between(start: datetime, end: datetime, minutes: float):
    assert HOURS.minutes_between(start, end) == pytest.approx(minutes)


def test_utc_input_follows_the_amsterdam_clock_across_daylight_saving():
    # 2026-03-27 (Fri) is CET (UTC+1); 2026-03-30 (Mon) is CEST (UTC+2).
    friday_16_00 = datetime(2026, 3, 27, 15, 0, tzinfo=UTC)
    monday_8_30 = datetime(2026, 3, 30, 6, 30, tzinfo=UTC)
    assert HOURS.minutes_between(friday_16_00, monday_8_30) == pytest.approx(30 + 30)


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        HOURS.minutes_between(datetime(2026, 3, 2, 9), datetime(2026, 3, 2, 10))


def test_holidays_are_not_school_time():
    # spring holiday Monday 2026-03-02 to Friday 2026-03-06: Friday 27 Feb to Monday 9 Mar
    # counts only Friday afternoon and Monday morning
    hours = SchoolHours(holidays=((date(2026, 3, 2), date(2026, 3, 6)),))
    assert hours.minutes_between(ams(2026, 2, 27, 16, 0), ams(2026, 3, 9, 9, 0)) == 30 + 60
    assert not hours.is_open(ams(2026, 3, 4, 10, 0))
    assert hours.next_opening(ams(2026, 2, 27, 17, 0)) == ams(2026, 3, 9, 8, 0)


def test_a_school_with_wednesday_afternoons_off_and_its_own_hours():
    doc = (
        "school_hours:\n  days: [mon, tue, thu, fri]\n  start: '08:30'\n  end: '15:00'\n"
        "  holidays:\n    - {name: herfstvakantie, start: 2026-10-17, end: 2026-10-25}\n"
    )
    hours = parse_document(doc).to_policy("7").school_hours
    assert hours.start == time(8, 30)
    assert hours.holidays == ((date(2026, 10, 17), date(2026, 10, 25)),)
    # Tuesday 14:00 to Thursday 9:30: Tue 60 + Wed 0 + Thu 60
    assert hours.minutes_between(ams(2026, 3, 3, 14, 0), ams(2026, 3, 5, 9, 30)) == 120


def test_a_holiday_ending_before_it_starts_is_refused():
    doc = "school_hours:\n  holidays:\n    - {start: 2026-10-25, end: 2026-10-17}\n"
    with pytest.raises(InvalidInput):
        parse_document(doc)
