"""The audit trail, exported as CSV for the school's privacy officer.

Every decision, automatic or human, and every report, appeal, escalation and reviewer
sign-in is an append-only row in ``audit_events``: who (``actor``), when (``at``), what
(``action``) and why (``detail``). The export covers one school and one period.

A period given as dates is in school days (Europe/Amsterdam): ``from`` at 0:00 up to and
including the whole ``to`` day. Given as ISO date-times (with a zone), ``to`` is
exclusive. Cells that a spreadsheet would run as a formula (starting with ``=``, ``+``,
``-``, ``@``, tab or carriage return) get a leading apostrophe: post authors choose
some of this text.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from moderation.errors import InvalidInput
from moderation.storage.posts import as_utc
from moderation.storage.tables import AuditEvent, Group, Post

SCHOOL_TZ = ZoneInfo("Europe/Amsterdam")  # dates in a period and in the CSV are Dutch time

COLUMNS = ("at_utc", "at_local", "actor", "action", "post_id", "channel", "group", "detail")
MAX_PERIOD = timedelta(days=400)  # a bit over a school year per export
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True, slots=True)
class AuditRow:
    at: datetime
    actor: str
    action: str
    post_id: str | None
    channel: str | None
    group: str | None
    detail: dict[str, object]


def _moment(value: str, *, end: bool) -> datetime:
    value = value.strip()
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            if end:
                day += timedelta(days=1)
            return datetime.combine(day, time(0), tzinfo=SCHOOL_TZ)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(
            f"{value!r} is not a date (YYYY-MM-DD) or an ISO date-time", code="invalid_period"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=SCHOOL_TZ)
    return moment


def parse_period(start: str, end: str) -> tuple[datetime, datetime]:
    """``from`` and ``to`` as given to the API or the CLI; InvalidInput if not a period."""
    lo, hi = _moment(start, end=False), _moment(end, end=True)
    if hi <= lo:
        raise InvalidInput("'to' must not be before 'from'", code="invalid_period")
    if hi - lo > MAX_PERIOD:
        raise InvalidInput(f"export at most {MAX_PERIOD.days} days at once", code="invalid_period")
    return lo, hi


def iter_audit(
    *, session: Session, school_id: str, start: datetime, end: datetime
) -> Iterator[AuditRow]:
    """One school's audit events in ``[start, end)``, oldest first."""
    # compare in UTC: SQLite keeps the stored (UTC) wall time and drops any zone
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    query = (
        select(AuditEvent, Post.external_id, Post.channel_type, Post.channel_id, Group.external_id)
        .outerjoin(Post, Post.pk == AuditEvent.post_pk)
        .outerjoin(Group, Group.pk == Post.group_pk)
        .where(AuditEvent.school_id == school_id, AuditEvent.at >= start, AuditEvent.at < end)
        .order_by(AuditEvent.at, AuditEvent.pk)
        .execution_options(yield_per=500)
    )
    for event, post_id, channel_type, channel_id, group_id in session.execute(query):
        yield AuditRow(
            at=as_utc(event.at),
            actor=event.actor,
            action=event.action,
            post_id=post_id,
            channel=f"{channel_type}:{channel_id}" if channel_type else None,
            group=group_id,
            detail=dict(event.detail or {}),
        )


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def _line(values: list[object]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow([_cell(v) for v in values])
    return buf.getvalue()


def csv_lines(rows: Iterator[AuditRow]) -> Iterator[str]:
    """The CSV text, a header first and then one line per event."""
    yield _line(list(COLUMNS))
    for row in rows:
        yield _line(
            [
                row.at.isoformat(),
                row.at.astimezone(SCHOOL_TZ).isoformat(),
                row.actor,
                row.action,
                row.post_id,
                row.channel,
                row.group,
                json.dumps(row.detail, ensure_ascii=False, sort_keys=True),
            ]
        )
