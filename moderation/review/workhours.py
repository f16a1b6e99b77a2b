"""School hours: how long a flag has waited in the time a teacher can read it.

POLICY.md rule 7: teachers are reachable on their working days from 8:00 to 16:30, and
do not read messages during lessons. An open flag is escalated after a number of
*school minutes*, counted Monday to Friday between 8:00 and 16:30 on the clock in
Amsterdam (so daylight saving time is followed). Holidays are not known here yet.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

SCHOOL_TZ = ZoneInfo("Europe/Amsterdam")
DAY_START = time(8, 0)
DAY_END = time(16, 30)
SCHOOL_DAY_MIN = 510  # minutes from 8:00 to 16:30: the default escalation limit
WORKING_DAYS = frozenset(range(5))  # Monday (0) to Friday (4)


def working_minutes(
    start: datetime,
    end: datetime,
    *,
    tz: ZoneInfo = SCHOOL_TZ,
    day_start: time = DAY_START,
    day_end: time = DAY_END,
) -> float:
    """Minutes of school time between two aware moments (0 if ``end`` is not later)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("working_minutes needs timezone-aware datetimes")
    if end <= start:
        return 0.0
    total = timedelta()
    day = start.astimezone(tz).date()
    last = end.astimezone(tz).date()
    while day <= last:
        if day.weekday() in WORKING_DAYS:
            opens = datetime.combine(day, day_start, tzinfo=tz)
            closes = datetime.combine(day, day_end, tzinfo=tz)
            lo, hi = max(start, opens), min(end, closes)
            if hi > lo:
                total += hi - lo
        day += timedelta(days=1)
    return total.total_seconds() / 60


def is_overdue(created_at: datetime, now: datetime, limit_min: int) -> bool:
    """Has an item created at ``created_at`` waited ``limit_min`` school minutes by now?"""
    return working_minutes(created_at, now) >= limit_min
