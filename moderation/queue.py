"""The Celery app's configuration and the one place in the core that enqueues.

The API enqueues tasks by *name* (``send_task``), so the API process never imports the
workers or the models. ``workers.app`` builds the worker side from the same
:func:`make_celery`. Tasks are sent only after the database commit and carry ids only.

Queues: ``text`` and ``media`` (scoring, scaled apart), ``callbacks`` (decision
callbacks to the platform, never blocking scoring), ``maintenance`` (the sweeper, and
the re-check of released photos after a consent withdrawal or a new reference).

The embedded broker is kombu's SQLAlchemy transport on a SQLite file. Its stock channel
polls once a second and passes every transport option to ``create_engine``; the small
subclass below takes ``polling_interval`` out first, so the embedded worker can poll
every 0.1 s and a synchronous ``?wait=`` answers in well under a second.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable
from functools import cache
from typing import Any

from celery import Celery
from kombu.entity import Exchange, Queue
from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import sqlalchemy as kombu_sqla

from moderation.config import Settings

log = logging.getLogger(__name__)

TEXT_QUEUE = "text"
MEDIA_QUEUE = "media"
CALLBACK_QUEUE = "callbacks"
MAINTENANCE_QUEUE = "maintenance"
ALL_QUEUES = (TEXT_QUEUE, MEDIA_QUEUE, CALLBACK_QUEUE, MAINTENANCE_QUEUE)

SCORE_TEXT = "moderation.score_text"
SCORE_MEDIA = "moderation.score_media"
DELIVER_CALLBACK = "moderation.deliver_callback"
SWEEP = "moderation.sweep"
# re-check a school's released photos after a consent withdrawal or a new reference
RECHECK_SCHOOL = "moderation.recheck_school"
RECHECK_REASONS = ("consent_withdrawn", "reference_added")

ROUTES = {
    SCORE_TEXT: {"queue": TEXT_QUEUE},
    SCORE_MEDIA: {"queue": MEDIA_QUEUE},
    DELIVER_CALLBACK: {"queue": CALLBACK_QUEUE},
    SWEEP: {"queue": MAINTENANCE_QUEUE},
    RECHECK_SCHOOL: {"queue": MAINTENANCE_QUEUE},
}


class _PollingChannel(kombu_sqla.Channel):
    def _engine_from_config(self) -> Any:
        options = self.connection.client.transport_options
        saved = options.pop("polling_interval", None)
        try:
            return super()._engine_from_config()  # type: ignore[no-untyped-call]
        finally:
            if saved is not None:
                options["polling_interval"] = saved


class PollingSQLTransport(kombu_sqla.Transport):
    """kombu's SQLAlchemy transport with a settable polling interval."""

    Channel = _PollingChannel


TRANSPORT_ALIASES["msqla"] = "moderation.queue:PollingSQLTransport"

# kombu's SQLAlchemy transport declares its relationships with ``lazy="noload"``, which
# SQLAlchemy 2.1 deprecates; the transport never loads them, so the warning is noise.
warnings.filterwarnings(
    "ignore", message="The ``noload`` loader strategy is deprecated", module="sqlalchemy"
)


def _broker_url(settings: Settings) -> str:
    if settings.is_embedded_broker:
        return "msqla+" + settings.broker_url.removeprefix("sqla+")
    return settings.broker_url


def make_celery(settings: Settings, *, include: list[str] | None = None) -> Celery:
    transport_options: dict[str, Any] = {}
    if settings.is_embedded_broker:
        settings.ensure_data_dir()
        transport_options["polling_interval"] = settings.broker_poll_interval_s
    else:
        transport_options["visibility_timeout"] = settings.broker_visibility_timeout_s
    app = Celery("moderation", broker=_broker_url(settings), include=include or [])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_routes=ROUTES,
        task_default_queue=TEXT_QUEUE,
        # each queue on its own direct exchange: a bare Queue(name) is bound to the default
        # queue's exchange ("text") with key "text", so all four shared one binding
        task_queues=[Queue(q, Exchange(q), routing_key=q) for q in ALL_QUEUES],  # type: ignore[no-untyped-call]
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        beat_schedule={
            "sweep": {"task": SWEEP, "schedule": settings.sweep_interval_s},
        },
        timezone="UTC",
    )
    return app


class Enqueuer:
    """Sends tasks by name; failures are logged, never raised: the sweeper re-sends."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def _send(self, name: str, *args: Any, **kwargs: Any) -> bool:
        try:
            self.app.send_task(
                name, args=args, kwargs=kwargs, retry=True, retry_policy={"max_retries": 2}
            )
        except Exception:  # broker down: the row is committed, the sweeper will resend
            log.warning("could not enqueue %s%r%r; the sweeper will retry", name, args, kwargs)
            return False
        return True

    def post(self, post_pk: int, *, text: bool, media: bool) -> bool:
        ok = True
        if text:
            ok &= self._send(SCORE_TEXT, post_pk)
        if media:
            ok &= self._send(SCORE_MEDIA, post_pk)
        return ok

    def callback(self, callback_pk: int) -> bool:
        return self._send(DELIVER_CALLBACK, callback_pk)

    def recheck(self, school_id: str, student_id: str, reason: str) -> bool:
        """Queue the re-check of the school's released photos for one student, on the
        ``maintenance`` queue (``reason``: consent_withdrawn or reference_added)."""
        if reason not in RECHECK_REASONS:
            raise ValueError(f"reason is one of {RECHECK_REASONS}, not {reason!r}")
        sent = self._send(RECHECK_SCHOOL, school_id=school_id, student_id=student_id, reason=reason)
        if not sent:  # no sweeper finds a lost re-check: say so loudly
            log.error(
                "the re-check of school %s for student %s (%s) was not queued; queue it again",
                school_id,
                student_id,
                reason,
            )
        return sent

    def recheck_withdrawn(self, school_id: str, withdrawn: Iterable[tuple[str, str]]) -> int:
        """One ``consent_withdrawn`` re-check per child among (student id, scope) pairs
        (``RosterResult.withdrawn``); returns how many children."""
        students = list(dict.fromkeys(student_id for student_id, _ in withdrawn))
        for student_id in students:
            self.recheck(school_id, student_id, "consent_withdrawn")
        return len(students)


@cache  # one per broker; never evicted, so no connection is orphaned
def _enqueuer(broker_url: str, settings_json: str) -> Enqueuer:
    return Enqueuer(make_celery(Settings.model_validate_json(settings_json)))


def enqueuer_for(settings: Settings) -> Enqueuer:
    """One enqueuer (and broker connection pool) per process and broker."""
    return _enqueuer(settings.broker_url, settings.model_dump_json())
