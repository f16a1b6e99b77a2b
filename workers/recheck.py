"""Retroactive re-check: released photos that break consent after the fact.

When a parent withdraws consent, or a child gets a (new) reference photo, photos the
school already released may now show a child without consent for their audience. This
runs over the school's released posts whose attachments are still stored (retention
purges them after the school's period, and the platform's own copy is then the one to
take down by the earlier callbacks) and reports each photo or video that shows the child
for takedown (``moderation.storage.takedowns``: a list in the API, and a callback).

A photo shows the child if the child was tagged in the post, or if one of the faces in
the released copy is matched to the child against every enrolled child of the school
(the closest wins, as in the first check). The released copy is what is analysed: a face
blurred at release is not found again, which is right, since it is not recognisable.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

from PIL import Image
from sqlalchemy import select

from models.images.faces import Face, match
from models.images.pipeline import ImageModels, analyse_frames, analyse_image
from moderation.config import Settings
from moderation.domain import ChannelType, PostStatus
from moderation.errors import NotFound
from moderation.media import MediaError
from moderation.photo_check import ConsentRegister, Matcher
from moderation.queue import enqueuer_for
from moderation.storage.db import session_scope
from moderation.storage.policies import current_policy
from moderation.storage.references import consent_register
from moderation.storage.tables import Attachment, Post
from moderation.storage.takedowns import TakedownReason, report_takedown
from moderation.video import VideoLimits, is_video_type, sample_frames
from workers.media import FRAME_EVERY_S, MAX_FRAMES

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RecheckReport:
    checked: int  # attachments looked at
    reported: int  # new takedown reports


def _faces(settings: Settings, att: Attachment, models: ImageModels) -> list[Face]:
    """Every face in the released copy (all sampled frames of a video)."""
    data = att.released_data
    if data is None:
        return []
    if is_video_type(att.content_type):
        limits = VideoLimits.from_settings(settings)
        frames = sample_frames(data, every_s=FRAME_EVERY_S, max_frames=MAX_FRAMES, limits=limits)
        return [face for frame in analyse_frames(frames, models).faces for face in frame]
    with Image.open(io.BytesIO(data)) as image:
        return analyse_image(image.convert("RGB"), models).faces


def _shows(
    faces: list[Face], student_id: str, register: ConsentRegister, matcher: Matcher = match
) -> bool:
    references = register.references()
    return any(
        face.matchable
        and face.embedding is not None
        and matcher(face.embedding, references) == student_id
        for face in faces
    )


def recheck_student(
    settings: Settings, school_id: str, student_id: str, reason: str, models: ImageModels
) -> RecheckReport:
    """Report the school's released photos that show ``student_id`` without consent."""
    why = TakedownReason(reason)
    with session_scope(settings.database_url) as session:
        policy = current_policy(session=session, school_id=school_id)
        registers = {
            scope: ConsentRegister(
                scope,
                tuple(
                    consent_register(
                        session=session, school_id=school_id, scope=scope, group_pk=None
                    )
                ),
            )
            for scope in set(policy.consent_scopes.values())
        }
        posts = session.scalars(
            select(Post).where(
                Post.school_id == school_id, Post.status == PostStatus.RELEASED.value
            )
        ).all()
        work = [
            (
                p.pk,
                policy.consent_scopes[ChannelType(p.channel_type)],
                student_id in {s.external_id for s in p.tagged},
                [a.pk for a in p.attachments if a.released_data is not None],
            )
            for p in posts
        ]
    checked = reported = 0
    callbacks: list[int] = []
    for post_pk, scope, tagged, attachment_pks in work:
        register = registers[scope]
        child = register.get(student_id)
        if child is None or child.consented or not (tagged or child.references):
            continue
        for attachment_pk in attachment_pks:
            with session_scope(settings.database_url) as session:
                att = session.get(Attachment, attachment_pk)
                if att is None:
                    continue
                checked += 1
                try:
                    shown = tagged or _shows(_faces(settings, att, models), student_id, register)
                except MediaError as exc:  # a stored copy that no longer decodes
                    log.warning("re-check: attachment %d unreadable (%s)", attachment_pk, exc)
                    continue
                if not shown:
                    continue
                try:
                    outcome = report_takedown(
                        session=session,
                        school_id=school_id,
                        post_pk=post_pk,
                        attachment_id=att.external_id,
                        student_id=student_id,
                        reason=why,
                    )
                except NotFound:  # the student was erased meanwhile
                    return RecheckReport(checked, reported)
                if outcome.created:
                    reported += 1
                if outcome.callback_pk is not None:
                    callbacks.append(outcome.callback_pk)
    enqueuer = enqueuer_for(settings)
    for callback_pk in callbacks:
        enqueuer.callback(callback_pk)
    log.info(
        "re-check of school %s (%s): %d attachments checked, %d reported for takedown",
        school_id,
        why.value,
        checked,
        reported,
    )
    return RecheckReport(checked, reported)
