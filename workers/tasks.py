"""Celery tasks: thin wrappers over ``workers.pipeline`` with one named retry policy.

Every task takes ids only, re-reads its rows and writes idempotently; with ``acks_late``
a task that dies with its worker is delivered again, and the sweeper finds whatever a
queue lost. A scoring task that still fails after its retries records the failure,
which holds the post with reason ``scoring_failed``: fail closed.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any

from celery import Task
from celery.signals import worker_init
from sqlalchemy.exc import InterfaceError, OperationalError

from moderation.config import get_settings
from moderation.queue import DELIVER_CALLBACK, RECHECK_SCHOOL, SCORE_MEDIA, SCORE_TEXT, SWEEP
from moderation.storage.posts import MEDIA_CHECK, TEXT_CHECK
from workers import callbacks, pipeline, recheck
from workers.app import app
from workers.scorers import image_models, text_scorer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped, for a bounded number of tries."""

    max_retries: int
    base_s: float
    cap_s: float

    def countdown(self, retries: int) -> float:
        return random.uniform(0, min(self.cap_s, self.base_s * 2**retries))


SCORING_RETRY = RetryPolicy(max_retries=get_settings().task_max_retries, base_s=1, cap_s=30)
CALLBACK_RETRY = RetryPolicy(
    max_retries=get_settings().callback_max_retries,
    base_s=2,
    cap_s=get_settings().callback_backoff_cap_s,  # 10 min by default
)


# The database unreachable (a restart, a fail-over) says nothing about the post: such a
# task retries on its own schedule, and after it the post stays pending for the sweeper.
# A database outage never holds a post as scoring_failed.
OUTAGE_RETRY = RetryPolicy(max_retries=8, base_s=1, cap_s=30)  # about 2 minutes at most


def _database_unreachable(exc: Exception) -> bool:
    return isinstance(exc, OperationalError | InterfaceError)


def _retry_or_fail(task: Task[Any, Any], exc: Exception, post_pk: int, check: str) -> None:
    retries = task.request.retries
    if _database_unreachable(exc):
        if retries < OUTAGE_RETRY.max_retries:
            log.warning("%s on post %d: database unreachable (%s); retrying", check, post_pk, exc)
            raise task.retry(exc=exc, countdown=OUTAGE_RETRY.countdown(retries))
        log.error("%s on post %d: database still unreachable; left to the sweeper", check, post_pk)
        return
    if retries == 0:
        log.warning("%s on post %d failed (%s); retrying", check, post_pk, exc)
    if retries < SCORING_RETRY.max_retries:
        raise task.retry(exc=exc, countdown=SCORING_RETRY.countdown(retries))
    log.error("%s on post %d failed after %d retries; holding it", check, post_pk, retries)
    pipeline.record_failure(get_settings(), post_pk, check, f"{type(exc).__name__}: {exc}")


@worker_init.connect
def _load_scorers(**_: object) -> None:
    """Load the text and image models before the worker takes tasks (and before prefork
    children fork, so they share them): "ready." then means ready to score."""
    text_scorer(get_settings())
    image_models(get_settings())


@app.task(name=SCORE_TEXT, bind=True, max_retries=None)
def score_text(self: Task[Any, Any], post_pk: int) -> None:
    try:
        pipeline.run_text_check(get_settings(), post_pk)
    except Exception as exc:
        _retry_or_fail(self, exc, post_pk, TEXT_CHECK)


@app.task(name=SCORE_MEDIA, bind=True, max_retries=None)
def score_media(self: Task[Any, Any], post_pk: int) -> None:
    try:
        pipeline.run_media_check(get_settings(), post_pk)
    except Exception as exc:
        _retry_or_fail(self, exc, post_pk, MEDIA_CHECK)


@app.task(name=DELIVER_CALLBACK, bind=True, max_retries=None)
def deliver_callback(self: Task[Any, Any], callback_pk: int) -> None:
    try:
        result = callbacks.deliver(get_settings(), callback_pk)
    except (OperationalError, InterfaceError) as exc:  # the outbox is unreachable: try later
        log.warning("callback %d: database unreachable (%s); retrying", callback_pk, exc)
        result = callbacks.Delivery.RETRY
    if result is not callbacks.Delivery.RETRY:
        return
    retries = self.request.retries
    if retries >= CALLBACK_RETRY.max_retries:
        callbacks.give_up(get_settings(), callback_pk)
        return
    raise self.retry(countdown=CALLBACK_RETRY.countdown(retries))


@app.task(name=SWEEP)
def sweep() -> None:
    pipeline.sweep(get_settings())


@app.task(name=RECHECK_SCHOOL)
def recheck_school(school_id: str, student_id: str, reason: str) -> None:
    """Released photos that show the student without consent, reported for takedown."""
    recheck.recheck_student(
        get_settings(), school_id, student_id, reason, image_models(get_settings())
    )
