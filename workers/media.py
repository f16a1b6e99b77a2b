"""The media check of one post: every photo and video through intake, models and consent.

Per attachment, in this order (docs/photos.md has the rules):

1. **Intake**: a photo is decoded with limits and re-encoded without metadata
   (``moderation.media.sanitize_image``); a video is remuxed without metadata and
   sampled into frames (``moderation.video``). A file that fails here is held with the
   intake's code (``image_unreadable``, ``video_unreadable``, ...): never released.
2. **Models** (``models.images.pipeline``): faces with descriptors, nudity, pHashes.
3. **Findings** (``moderation.photo_check``): consent against the school's register
   for the audience's scope, nudity, and the school's removed and blocked hash lists.
4. **Released copy**: the stripped bytes, with the faces of children without consent
   blurred when the policy says ``blur``. Animated images are checked frame by frame
   like videos and, like videos, held rather than blurred.

The result stored with the check (``scores.result``) is ``{"findings": [...],
"attachments": {id: {...}}}``: per attachment the face boxes with their verdicts (for
the review page), the nudity findings and the hashes (for the hash lists). Descriptors
never leave the process.

The work runs outside any transaction: the post's data and the register are read
first, the models run, and the results are written in one transaction at the end.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageSequence

from models.images.blur import blur_faces
from models.images.faces import match
from models.images.hashes import ImageHashes
from models.images.pipeline import ImageModels, analyse_frames, analyse_image
from moderation.config import Settings
from moderation.domain import ChannelType
from moderation.media import ImageLimits, MediaError, SanitizedImage, reencode, sanitize_image
from moderation.photo_check import (
    ConsentRegister,
    FaceVerdict,
    check_photo,
    check_video,
    hash_list_findings,
    nudity_findings,
)
from moderation.policy import AttachmentFinding, ConsentMatchAction
from moderation.storage.db import session_scope
from moderation.storage.policies import current_policy
from moderation.storage.posts import MEDIA_CHECK, record_check
from moderation.storage.references import consent_register
from moderation.storage.tables import Attachment, Post
from moderation.video import VideoLimits, is_video_type, sample_frames, strip_video_metadata
from workers.hash_lists import lookup

log = logging.getLogger(__name__)

SCORER_NAME = "photo-gate"
FRAME_EVERY_S = 1.0  # seconds between sampled video frames
MAX_FRAMES = 30  # frames per video (a longer one is sampled evenly over its length)
MAX_ANIMATION_FRAMES = 10  # frames of an animated GIF or WebP checked


@dataclass(frozen=True, slots=True)
class MediaContext:
    """What every attachment of one post is checked against."""

    database_url: str  # for the hash-list lookup
    school_id: str
    register: ConsentRegister
    tagged: tuple[str, ...]
    on_match: ConsentMatchAction


@dataclass(frozen=True, slots=True)
class AttachmentResult:
    findings: tuple[AttachmentFinding, ...]
    released: bytes | None  # what may be published; None when intake failed
    detail: dict[str, Any]  # stored per attachment in the check's result


def load_context(settings: Settings, post_pk: int) -> tuple[MediaContext, list[Attachment]]:
    """The post's attachments (bytes loaded) and its consent context, read once."""
    with session_scope(settings.database_url) as session:
        post = session.get(Post, post_pk)
        assert post is not None
        policy = current_policy(session=session, school_id=post.school_id)
        scope = policy.consent_scopes[ChannelType(post.channel_type)]
        register = ConsentRegister(
            scope,
            tuple(
                consent_register(
                    session=session, school_id=post.school_id, scope=scope, group_pk=post.group_pk
                )
            ),
        )
        context = MediaContext(
            database_url=settings.database_url,
            school_id=post.school_id,
            register=register,
            tagged=tuple(s.external_id for s in post.tagged),
            on_match=policy.on_consent_match,
        )
        attachments = list(post.attachments)
        for att in attachments:
            _ = att.data  # load the deferred bytes before the session closes
        session.expunge_all()
    return context, attachments


def run_media_check(settings: Settings, post_pk: int, models: ImageModels) -> None:
    """Check every attachment of the post and store the result (idempotent)."""
    context, attachments = load_context(settings, post_pk)
    results = {
        att.external_id: check_attachment(settings, att, context, models) for att in attachments
    }
    with session_scope(settings.database_url) as session:
        for att in attachments:
            stored = session.get(Attachment, att.pk)
            if stored is not None:
                stored.released_data = results[att.external_id].released
        record_check(
            session=session,
            post_pk=post_pk,
            check_name=MEDIA_CHECK,
            scorer=SCORER_NAME,
            ok=True,
            result={
                "findings": [f.to_json() for r in results.values() for f in r.findings],
                "attachments": {aid: r.detail for aid, r in results.items()},
            },
        )


def check_attachment(
    settings: Settings, att: Attachment, context: MediaContext, models: ImageModels
) -> AttachmentResult:
    aid = att.external_id
    if att.data is None:  # purged by retention before it was checked
        return AttachmentResult((AttachmentFinding(aid, "attachment_unreadable"),), None, {})
    try:
        if is_video_type(att.content_type):
            return _check_video(settings, att.data, aid, context, models)
        return _check_image(settings, att.data, aid, context, models)
    except MediaError as exc:
        return AttachmentResult((AttachmentFinding(aid, exc.code, str(exc)),), None, {})


def _hash_findings(
    context: MediaContext, aid: str, hashes: ImageHashes | None
) -> tuple[AttachmentFinding, ...]:
    """A photo the school removed before (hold) or put on its block list (reject)."""
    if hashes is None or not hashes.matchable:  # too flat: it would match any flat image
        return ()
    with session_scope(context.database_url) as session:
        hits = lookup(session, context.school_id, [hashes.phash])
    return hash_list_findings(
        attachment_id=aid,
        removed=[h.entry for h in hits if h.list == "removed"],
        blocked=[h.entry for h in hits if h.list == "blocked"],
    )


def _faces_json(verdicts: Sequence[FaceVerdict], analysed: dict[str, Any]) -> dict[str, Any]:
    """The analysis JSON with each face's verdict (status, whether it matters) added."""
    faces = [
        {**face, "status": v.status.value, "matters": v.matters}
        for face, v in zip(analysed["faces"], verdicts, strict=True)
    ]
    return {**analysed, "faces": faces}


def _check_image(
    settings: Settings, data: bytes, aid: str, context: MediaContext, models: ImageModels
) -> AttachmentResult:
    clean = sanitize_image(data, ImageLimits(max_bytes=settings.max_attachment_bytes))
    if clean.frames > 1:
        return _check_animation(clean, aid, context, models)
    analysis = analyse_image(clean.rgb, models)
    verdict = check_photo(
        analysis.faces,
        context.register,
        attachment_id=aid,
        matcher=match,
        tagged=context.tagged,
        on_match=context.on_match,
    )
    findings = (
        *verdict.findings,
        *nudity_findings(analysis.nudity, attachment_id=aid),
        *_hash_findings(context, aid, analysis.hashes),
    )
    released = clean.data
    if verdict.blur_boxes:
        released = reencode(blur_faces(clean.rgb, verdict.blur_boxes), clean.format)
    detail = _faces_json(verdict.faces, analysis.to_json())
    return AttachmentResult(findings, released, detail | {"blurred": bool(verdict.blur_boxes)})


def _check_animation(
    clean: SanitizedImage, aid: str, context: MediaContext, models: ImageModels
) -> AttachmentResult:
    with Image.open(io.BytesIO(clean.data)) as image:
        frames = [f.convert("RGB") for f in ImageSequence.Iterator(image)]
    step = max(1, len(frames) // MAX_ANIMATION_FRAMES)
    return _check_frames(frames[::step][:MAX_ANIMATION_FRAMES], clean.data, aid, context, models)


def _check_video(
    settings: Settings, data: bytes, aid: str, context: MediaContext, models: ImageModels
) -> AttachmentResult:
    limits = VideoLimits.from_settings(settings)
    frames = sample_frames(data, every_s=FRAME_EVERY_S, max_frames=MAX_FRAMES, limits=limits)
    return _check_frames(frames, strip_video_metadata(data, limits), aid, context, models)


def _check_frames(
    frames: Sequence[Image.Image],
    released: bytes,
    aid: str,
    context: MediaContext,
    models: ImageModels,
) -> AttachmentResult:
    """A video or an animation: every frame checked, held rather than blurred."""
    analysis = analyse_frames(frames, models)
    verdict = check_video(
        analysis.faces, context.register, attachment_id=aid, matcher=match, tagged=context.tagged
    )
    findings = (
        *verdict.findings,
        *nudity_findings(*analysis.nudity, attachment_id=aid),
        *_hash_findings(context, aid, analysis.hashes),
    )
    stored = analysis.to_json()
    stored["frames"] = [
        _faces_json(v, frame) for v, frame in zip(verdict.frames, stored["frames"], strict=True)
    ]
    return AttachmentResult(findings, released, stored | {"blurred": False})
