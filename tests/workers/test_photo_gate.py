"""The photo gate end to end in the pipeline: real face, nudity and hash models, the
consent register in the database, the decision, the released copy and the re-check.

The shared photos stand in for children: "Mohammed" (ll-2, no consent for the app) is
enrolled from Obama's first photo, "Sanne" (ll-1, consent from both parents) from
Biden's; the class photo shows Obama's *second* photo beside Biden.
"""

from __future__ import annotations

import io
import json
import secrets
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import select

from models.images.faces import FaceAnalyzer, match
from moderation.config import Settings, get_settings
from moderation.photo_check import ConsentRegister
from moderation.photo_copies import review_copy
from moderation.photo_intake import image_hash_strings
from moderation.policy_document import parse_document
from moderation.schemas import PostCreate, RosterIn
from moderation.storage import review
from moderation.storage.db import session_scope
from moderation.storage.image_hashes import block_image
from moderation.storage.policies import set_policy
from moderation.storage.posts import create_post, get_post, latest_decision
from moderation.storage.references import consent_register
from moderation.storage.roster import apply_roster
from moderation.storage.tables import Attachment, Callback, Score, TakedownReport
from moderation.video import VideoContainer
from tests.conftest import Configure, new_school
from tests.helpers import ROSTER, attachment, post_body
from tests.moderation.photos import (
    LIMITS,
    class_photo,
    encode,
    enrol,
    photo,
    recompressed,
    resized,
    small_face,
)
from tests.moderation.test_video import encode as encode_video
from workers import pipeline
from workers.recheck import recheck_student
from workers.scorers import image_models


@pytest.fixture(scope="module")
def analyzer() -> FaceAnalyzer:
    return FaceAnalyzer()


@pytest.fixture
def school(configure: Configure, db_url: str) -> str:
    configure(database_url=db_url, text_scorer="fake")
    school_id = f"s-{secrets.token_hex(4)}"  # the PostgreSQL database is shared
    new_school(db_url, school_id, webhook_url="http://127.0.0.1:9/cb")
    with session_scope(db_url) as session:
        apply_roster(session=session, school_id=school_id, roster=RosterIn(**ROSTER), source="t")
    enrol(db_url, school_id, "ll-2", "barack_obama/obama.jpg")  # no consent for the app
    enrol(db_url, school_id, "ll-1", "joe_biden/biden.jpg")  # consent from both parents
    return school_id


def run(
    url: str,
    school: str,
    post_id: str,
    data: bytes,
    content_type: str = "image/jpeg",
    **extra: Any,
) -> int:
    body = post_body(post_id, "Kijk eens!", attachments=[attachment("a1", data, content_type)])
    body.update(extra)
    with session_scope(url) as session:
        pk = create_post(
            session=session, school_id=school, post_in=PostCreate(**body), limits=LIMITS
        ).post.pk
    settings = get_settings()
    pipeline.run_text_check(settings, pk)
    pipeline.run_media_check(settings, pk)
    return pk


def outcome(url: str, pk: int) -> tuple[str, list[str], dict[str, Any], bytes | None]:
    """The post's status, its reason codes, the stored media result, the released copy."""
    with session_scope(url) as session:
        decision = latest_decision(session=session, post_pk=pk)
        assert decision is not None
        media = session.scalar(
            select(Score).where(Score.post_pk == pk, Score.check_name == "media")
        )
        assert media is not None
        att = session.scalar(select(Attachment).where(Attachment.post_pk == pk))
        assert att is not None
        return (
            decision.action,
            [r["code"] for r in decision.reasons],
            media.result,
            att.released_data,
        )


def whose(analyzer: FaceAnalyzer, url: str, school: str, data: bytes) -> list[str | None]:
    """Whom each face in an image is matched to, left to right."""
    with session_scope(url) as session:
        register = ConsentRegister(
            "app",
            tuple(consent_register(session=session, school_id=school, scope="app", group_pk=None)),
        )
    refs = register.references()
    with Image.open(io.BytesIO(data)) as image:
        faces = sorted(analyzer.analyze(image.convert("RGB")), key=lambda f: f.box[0])
    return [match(f.embedding, refs) if f.matchable else None for f in faces]  # type: ignore[arg-type]


def test_a_child_without_consent_is_blurred_in_the_released_copy(
    school: str, db_url: str, analyzer: FaceAnalyzer
):
    original = encode(class_photo())
    assert whose(analyzer, db_url, school, original) == ["ll-2", "ll-1"]
    pk = run(db_url, school, "p-blur", original)
    action, codes, media, released = outcome(db_url, pk)
    assert action == "release"
    assert codes == ["faces_blurred"]
    faces = sorted(media["attachments"]["a1"]["faces"], key=lambda f: f["box"][0])
    assert [(f["status"], f["matters"]) for f in faces] == [
        ("no_consent", True),
        ("consented", False),
    ]
    assert media["attachments"]["a1"]["blurred"] is True
    assert "embedding" not in json.dumps(media)
    assert released is not None
    # Mohammed's face is gone from the released copy; Sanne is still herself
    assert whose(analyzer, db_url, school, released) in (["ll-1"], [None, "ll-1"])


def test_the_school_may_hold_instead_of_blurring(school: str, db_url: str):
    with session_scope(db_url) as session:
        set_policy(
            session=session,
            school_id=school,
            document=parse_document("on_consent_match: hold\n"),
            actor="admin",
        )
    pk = run(db_url, school, "p-hold", encode(class_photo()))
    action, codes, _, _ = outcome(db_url, pk)
    assert (action, codes) == ("hold", ["consent_missing"])


def test_a_face_too_small_to_decide_is_held_for_the_teacher(school: str, db_url: str):
    pk = run(db_url, school, "p-small", encode(small_face()))
    action, codes, media, _ = outcome(db_url, pk)
    assert (action, codes) == ("hold", ["faces_undecidable"])
    (face,) = media["attachments"]["a1"]["faces"]
    assert face["status"] == "undecidable" and face["matters"] is True


def test_a_tagged_child_without_consent_holds_a_photo_without_faces(school: str, db_url: str):
    landscape = encode(resized(photo("eileen_collins/astronaut.jpg"), 0.02).resize((400, 300)))
    pk = run(db_url, school, "p-tag", landscape, tagged_students=["ll-2"])
    action, codes, _, _ = outcome(db_url, pk)
    assert (action, codes) == ("hold", ["consent_missing"])


def test_a_photo_on_the_block_list_is_rejected_even_recompressed(school: str, db_url: str):
    astronaut = photo("eileen_collins/astronaut.jpg")
    with session_scope(db_url) as session:
        block_image(
            session=session,
            school_id=school,
            hashes=image_hash_strings(astronaut),
            note="eerder verwijderd",
            added_by="admin",
        )
    pk = run(db_url, school, "p-blocked", encode(recompressed(resized(astronaut, 0.5), 40)))
    action, codes, _, _ = outcome(db_url, pk)
    assert action == "reject"
    assert "image_blocked" in codes


def test_a_video_showing_a_child_without_consent_is_held(school: str, db_url: str):
    frame = photo("barack_obama/obama2.jpg").resize((312, 600))  # even sides, same aspect
    video = encode_video([frame] * 20, VideoContainer.MP4, fps=10)
    pk = run(db_url, school, "p-video", video, "video/mp4")
    action, codes, media, released = outcome(db_url, pk)
    assert (action, codes) == ("hold", ["video_consent"])
    assert released is not None and released != video  # remuxed without metadata
    assert media["attachments"]["a1"]["frames"]


def test_withdrawn_consent_reports_released_photos_for_takedown(school: str, db_url: str):
    biden = encode(photo("joe_biden/biden.jpg"))
    pk = run(db_url, school, "p-sanne", biden)
    assert outcome(db_url, pk)[0] == "release"
    withdrawal = {
        "consent": [
            {"student_id": "ll-1", "parent_id": "parent-2", "scope": "app", "granted": False}
        ]
    }
    with session_scope(db_url) as session:
        apply_roster(session=session, school_id=school, roster=RosterIn(**withdrawal), source="t")
    settings: Settings = get_settings()
    report = recheck_student(settings, school, "ll-1", "consent_withdrawn", image_models(settings))
    assert (report.checked, report.reported) == (1, 1)
    again = recheck_student(settings, school, "ll-1", "consent_withdrawn", image_models(settings))
    assert again.reported == 0  # one open report per photo and child
    with session_scope(db_url) as session:
        (takedown,) = session.scalars(
            select(TakedownReport).where(TakedownReport.school_id == school)
        ).all()
        assert takedown.reason == "consent_withdrawn"
        post = get_post(session=session, school_id=school, post_id="p-sanne")
        payloads = [
            c.payload for c in session.scalars(select(Callback).where(Callback.school_id == school))
        ]
        assert any(p.get("type") == "takedown" and p["post_id"] == "p-sanne" for p in payloads)
        assert post.status == "released"


def test_the_teacher_sees_the_faces_and_releases_with_blur(
    school: str, db_url: str, analyzer: FaceAnalyzer
):
    with session_scope(db_url) as session:
        set_policy(
            session=session,
            school_id=school,
            document=parse_document("on_consent_match: hold\n"),
            actor="admin",
        )
    pk = run(db_url, school, "p-review", encode(class_photo()))
    with session_scope(db_url) as session:
        teacher = review.reviewer_from_roster(session=session, school_id=school, staff_id="mw-1")
        (item,) = review.list_queue(session=session, reviewer=teacher)
        (view,) = item.attachments
        boxes = sorted(view.faces, key=lambda f: f.left)
        assert [(f.status, f.matters) for f in boxes] == [
            ("no_consent", True),
            ("consented", False),
        ]
        assert all(0 <= f.left < f.left + f.width <= 1 for f in boxes)
        att = session.scalar(select(Attachment).where(Attachment.post_pk == pk))
        assert att is not None and att.released_data is not None
        detail = review.media_details(session, [pk])[pk]["a1"]
        shown = review_copy(att.released_data, att.content_type, detail)
    # the teacher's screen blurs the child without consent too
    assert whose(analyzer, db_url, school, shown) in (["ll-1"], [None, "ll-1"])
    with session_scope(db_url) as session:
        review.review_post(
            session=session, reviewer=teacher, action=review.ReviewAction.RELEASE_BLUR, post_pk=pk
        )
    action, _, _, released = outcome(db_url, pk)
    assert action == "release" and released is not None
    assert whose(analyzer, db_url, school, released) in (["ll-1"], [None, "ll-1"])
