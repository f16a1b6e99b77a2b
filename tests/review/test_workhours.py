"""School-hours arithmetic: Monday to Friday, 8:00-16:30, on the Amsterdam clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from moderation.review.workhours import SCHOOL_DAY_MIN, SCHOOL_TZ, is_overdue, working_minutes


def ams(*args: int) -> datetime:
    return datetime(*args, tzinfo=SCHOOL_TZ)


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
def test_working_minutes(start: datetime, end: datetime, minutes: float):
    assert working_minutes(start, end) == pytest.approx(minutes)


def test_utc_input_follows_the_amsterdam_clock_across_daylight_saving():
    # 2026-03-27 (Fri) is CET (UTC+1); 2026-03-30 (Mon) is CEST (UTC+2).
    friday_16_00 = datetime(2026, 3, 27, 15, 0, tzinfo=UTC)
    monday_8_30 = datetime(2026, 3, 30, 6, 30, tzinfo=UTC)
    assert working_minutes(friday_16_00, monday_8_30) == pytest.approx(30 + 30)


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        working_minutes(datetime(2026, 3, 2, 9), datetime(2026, 3, 2, 10))


def test_overdue_after_one_school_day_not_one_calendar_day():
    friday_noon = ams(2026, 3, 6, 12, 0)
    assert not is_overdue(friday_noon, ams(2026, 3, 8, 12, 0), SCHOOL_DAY_MIN)  # Sunday
    assert not is_overdue(friday_noon, ams(2026, 3, 9, 11, 59), SCHOOL_DAY_MIN)
    assert is_overdue(friday_noon, ams(2026, 3, 9, 12, 0), SCHOOL_DAY_MIN)  # Monday noon
