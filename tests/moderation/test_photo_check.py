"""The consent check of photos and videos: table-driven over the rules of
``moderation.photo_check``, with faces built around real descriptors of the shared photos
(``../shared/data/faces``), the real matcher, and the policy deciding the findings."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pytest

from models.images.bench_faces import load_shared_photo
from models.images.faces import Face, FaceAnalyzer, match
from models.images.nudity import NudityFinding, NudityResult
from moderation.domain import Action, AuthorRole, ChannelType, ChildConsent
from moderation.photo_check import (
    ConsentRegister,
    FaceStatus,
    check_photo,
    check_video,
    hash_list_findings,
    nudity_findings,
)
from moderation.policy import (
    DEFAULT_POLICY,
    AttachmentFinding,
    CheckResults,
    ConsentMatchAction,
    PostContext,
    decide,
)

BLUR, HOLD = ConsentMatchAction.BLUR, ConsentMatchAction.HOLD
PHOTOS = {
    "obama_ref": "barack_obama/obama.jpg",  # Sanne's enrolment photo
    "obama": "barack_obama/obama2.jpg",  # Sanne in a class photo
    "obama_other": "barack_obama/obama3.jpg",
    "biden": "joe_biden/biden.jpg",  # Daan: enrolment and class photo alike
    "collins": "eileen_collins/astronaut.jpg",  # somebody nobody enrolled
}
MONDAY_10 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def vectors() -> dict[str, np.ndarray]:
    analyzer = FaceAnalyzer()
    return {
        name: analyzer.reference_embedding(load_shared_photo(path)) for name, path in PHOTOS.items()
    }


def face(
    vector: np.ndarray | None, x: int = 0, *, small: bool = False, blurry: bool = False
) -> Face:
    """A face at a distinct box; ``small``/``blurry`` make it undecidable."""
    side = 20 if small else 80
    return Face(
        box=(x, 10, x + side, 10 + side),
        score=0.99,
        landmarks=(),
        embedding=None if small else vector,
        too_small=small,
        blurry=blurry,
        sharpness=40.0 if blurry else 600.0,
    )


@dataclass(frozen=True)
class Child:
    id: str
    consented: bool
    in_group: bool = True
    refs: tuple[str, ...] = ()  # names in PHOTOS


@dataclass(frozen=True)
class Case:
    id: str
    faces: list[tuple[str | None, str]]  # (photo name or None, "ok" | "small" | "blurry")
    children: list[Child]
    statuses: list[FaceStatus]
    codes: list[str]
    tagged: tuple[str, ...] = ()
    on_match: ConsentMatchAction = BLUR
    blurred: list[int] = field(default_factory=list)  # indexes of faces to blur
    action: Action = Action.RELEASE  # of the attachment, by decide()


SANNE_YES = Child("sanne", True, refs=("obama_ref",))
SANNE_NO = Child("sanne", False, refs=("obama_ref",))
DAAN_YES = Child("daan", True, refs=("biden",))
DAAN_NO = Child("daan", False, refs=("biden",))
NOOR_NO = Child("noor", False)  # in the group, no consent, never enrolled
NOOR_OTHER_GROUP = Child("noor", False, in_group=False)
ALL_YES = [SANNE_YES, DAAN_YES, Child("noor", True)]

CASES = [
    Case("everyone consents", [("obama", "ok")], ALL_YES, [FaceStatus.CONSENTED], []),
    Case(
        "child without consent is blurred by default",
        [("obama", "ok"), ("biden", "ok")],
        [SANNE_NO, DAAN_YES],
        [FaceStatus.NO_CONSENT, FaceStatus.CONSENTED],
        ["faces_blurred"],
        blurred=[0],
    ),
    Case(
        "child without consent holds under hold",
        [("obama", "ok")],
        [SANNE_NO, DAAN_YES],
        [FaceStatus.NO_CONSENT],
        ["consent_missing"],
        on_match=HOLD,
        action=Action.HOLD,
    ),
    Case(
        "the closest enrolled child wins: a consenting one",
        [("obama_other", "ok")],
        [
            Child("sanne", True, refs=("obama_other",)),
            Child("lookalike", False, refs=("obama_ref",)),
        ],
        [FaceStatus.CONSENTED],
        [],
    ),
    Case(
        "the closest enrolled child wins: a non-consenting one",
        [("obama_other", "ok"), ("biden", "ok")],
        [
            Child("sanne", False, refs=("obama_other",)),
            Child("lookalike", True, refs=("obama_ref",)),
        ],
        [FaceStatus.NO_CONSENT, FaceStatus.UNKNOWN],
        ["faces_blurred"],
        blurred=[0],
    ),
    Case(
        "undecidable faces do not matter when every child consents",
        [(None, "small"), ("obama", "blurry")],
        ALL_YES,
        [FaceStatus.UNDECIDABLE, FaceStatus.UNDECIDABLE],
        [],
    ),
    Case(
        "an undecidable face holds when any child of the school lacks consent",
        [("obama", "ok"), (None, "small")],
        [SANNE_YES, DAAN_YES, NOOR_OTHER_GROUP],
        [FaceStatus.CONSENTED, FaceStatus.UNDECIDABLE],
        ["faces_undecidable"],
        action=Action.HOLD,
    ),
    Case(
        "an unknown face holds when a group child without consent has no reference",
        [("collins", "ok")],
        [SANNE_YES, NOOR_NO],
        [FaceStatus.UNKNOWN],
        ["faces_undecidable"],
        action=Action.HOLD,
    ),
    Case(
        "an unknown face is fine when that child is in another group",
        [("collins", "ok")],
        [SANNE_YES, NOOR_OTHER_GROUP],
        [FaceStatus.UNKNOWN],
        [],
    ),
    Case(
        "an unknown face is fine when the child without consent is enrolled",
        [("collins", "ok")],
        [SANNE_YES, DAAN_NO],
        [FaceStatus.UNKNOWN],
        [],
    ),
    Case(
        "a tagged child without consent whom no face matches holds",
        [("obama", "ok")],
        [SANNE_YES, NOOR_NO],
        [FaceStatus.CONSENTED],
        ["consent_missing"],
        tagged=("noor",),
        action=Action.HOLD,
    ),
    Case(
        "a tagged child without consent whose face matches is blurred",
        [("obama", "ok"), ("biden", "ok")],
        [SANNE_NO, DAAN_YES],
        [FaceStatus.NO_CONSENT, FaceStatus.CONSENTED],
        ["faces_blurred"],
        tagged=("sanne",),
        blurred=[0],
    ),
    Case(
        "a tagged student missing from the register counts as without consent",
        [("obama", "ok")],
        ALL_YES,
        [FaceStatus.CONSENTED],
        ["consent_missing"],
        tagged=("ghost",),
        action=Action.HOLD,
    ),
    Case(
        "a tagged child with consent changes nothing",
        [("obama", "ok")],
        ALL_YES,
        [FaceStatus.CONSENTED],
        [],
        tagged=("sanne", "daan"),
    ),
    Case(
        "blur, hold and unsure faces together: held, with the boxes to blur kept",
        [("obama", "ok"), ("collins", "ok"), (None, "small")],
        [SANNE_NO, NOOR_NO],
        [FaceStatus.NO_CONSENT, FaceStatus.UNKNOWN, FaceStatus.UNDECIDABLE],
        ["faces_blurred", "faces_undecidable"],
        blurred=[0],
        action=Action.HOLD,
    ),
    Case("no faces at all", [], [SANNE_NO, NOOR_NO], [], []),
]


def build(case: Case, vectors: dict[str, np.ndarray]) -> tuple[list[Face], ConsentRegister]:
    faces = [
        face(
            vectors[name] if name else None, 100 * i, small=kind == "small", blurry=kind == "blurry"
        )
        for i, (name, kind) in enumerate(case.faces)
    ]
    register = ConsentRegister(
        "app",
        tuple(
            ChildConsent(c.id, c.consented, c.in_group, tuple(vectors[r] for r in c.refs))
            for c in case.children
        ),
    )
    return faces, register


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_consent_rules(case: Case, vectors: dict[str, np.ndarray]):
    faces, register = build(case, vectors)
    verdict = check_photo(
        faces,
        register,
        attachment_id="a1",
        matcher=match,
        tagged=case.tagged,
        on_match=case.on_match,
    )
    assert [v.status for v in verdict.faces] == case.statuses
    assert [f.code for f in verdict.findings] == case.codes
    assert verdict.blur_boxes == tuple(faces[i].box for i in case.blurred)
    assert verdict.held is (case.action is not Action.RELEASE)
    for finding in verdict.findings:
        json.loads(finding.detail)  # machine-readable for the reviewer
    ctx = PostContext(
        ChannelType.GROUP, AuthorRole.TEACHER, False, MONDAY_10, attachment_ids=("a1",)
    )
    decision = decide(ctx, CheckResults(media_findings=verdict.findings), DEFAULT_POLICY)
    assert decision.attachments[0].action is case.action
    assert [r.code for r in decision.attachments[0].reasons] == case.codes


def test_the_lookalike_is_within_the_threshold_too(vectors):
    """What makes the two closest-wins cases meaningful: both children would match alone."""
    assert match(vectors["obama_other"], {"lookalike": [vectors["obama_ref"]]}) == "lookalike"


def test_matched_faces_name_the_child_and_boxes_travel_in_the_detail(vectors):
    faces, register = build(CASES[2], vectors)
    verdict = check_photo(faces, register, attachment_id="a1", matcher=match, on_match=HOLD)
    assert verdict.faces[0].student_id == "sanne"
    assert json.loads(verdict.findings[0].detail) == {
        "students": ["sanne"],
        "boxes": [list(faces[0].box)],
    }
    assert verdict.review_boxes == (faces[0].box,)


def test_every_photo_of_an_enrolled_child_without_consent_is_blurred_or_held(vectors):
    """The issue's target: enrolled from one photo, found in the other photos."""
    register = ConsentRegister(
        "app", (ChildConsent("sanne", False, True, (vectors["obama_ref"],)),)
    )
    for name in ("obama", "obama_other"):
        verdict = check_photo([face(vectors[name])], register, attachment_id="a", matcher=match)
        assert verdict.blur_boxes == (face(vectors[name]).box,), name


def test_a_register_names_each_student_once(vectors):
    with pytest.raises(ValueError, match="twice"):
        ConsentRegister("app", (ChildConsent("a", True, True), ChildConsent("a", False, True)))


def test_messages_name_the_audience_in_dutch():
    findings = tuple(
        AttachmentFinding("a1", code) for code in ("consent_missing", "faces_undecidable")
    )
    for channel, words in ((ChannelType.GROUP, "de app"), (ChannelType.SCHOOL, "de nieuwsbrief")):
        ctx = PostContext(channel, AuthorRole.TEACHER, False, MONDAY_10, attachment_ids=("a1",))
        decision = decide(ctx, CheckResults(media_findings=findings), DEFAULT_POLICY)
        assert decision.action is Action.HOLD
        for reason in decision.reasons:
            assert words in reason.message_nl
            assert "{" not in reason.message_nl + reason.message_en


# --- videos --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frames", "children", "tagged", "expect"),
    [
        ([["collins"], ["obama"]], [SANNE_YES, DAAN_YES], (), None),
        ([["collins"], ["obama", "biden"]], [SANNE_NO, DAAN_YES], (), {"students": ["sanne"]}),
        ([["biden"]], [SANNE_YES, DAAN_YES, NOOR_NO], ("noor",), {"tagged": ["noor"]}),
        ([["collins"]], [SANNE_YES, NOOR_NO], (), {"frames": {"0": [[0, 10, 80, 90]]}}),
    ],
    ids=["all consent", "no consent in one frame", "tagged, not seen", "unknown face"],
)
def test_video_consent(frames, children, tagged, expect, vectors):
    case = Case("video", [], children, [], [])
    _, register = build(case, vectors)
    verdict = check_video(
        [[face(vectors[name], 100 * i) for i, name in enumerate(names)] for names in frames],
        register,
        attachment_id="v1",
        matcher=match,
        tagged=tagged,
    )
    if expect is None:
        assert verdict.findings == () and not verdict.held
        return
    (finding,) = verdict.findings
    assert (finding.code, finding.action) == ("video_consent", Action.HOLD)
    detail = json.loads(finding.detail)
    assert {key: detail[key] for key in expect} == expect


# --- nudity and hash lists ----------------------------------------------------------


def test_exposed_nudity_holds_with_the_labels():
    exposed = NudityResult(
        (
            NudityFinding("BUTTOCKS_EXPOSED", 0.6, (0, 0, 9, 9)),
            NudityFinding("FEET_EXPOSED", 0.9, (0, 0, 9, 9)),
        )
    )
    covered = NudityResult((NudityFinding("BELLY_EXPOSED", 0.9, (0, 0, 9, 9)),))
    assert nudity_findings(covered, attachment_id="a1") == ()
    assert nudity_findings(covered, exposed, exposed, attachment_id="a1") == (
        AttachmentFinding("a1", "nudity", "BUTTOCKS_EXPOSED"),
    )


def test_blocked_image_rejects_and_removed_image_holds():
    ctx = PostContext(
        ChannelType.GROUP, AuthorRole.PARENT, False, MONDAY_10, attachment_ids=("a1", "a2")
    )
    findings = hash_list_findings(attachment_id="a1", blocked=["block:7"]) + hash_list_findings(
        attachment_id="a2", removed=["post-3/a1"]
    )
    decision = decide(ctx, CheckResults(media_findings=findings), DEFAULT_POLICY)
    assert decision.action is Action.REJECT
    assert [(a.attachment_id, a.action) for a in decision.attachments] == [
        ("a1", Action.REJECT),
        ("a2", Action.HOLD),
    ]
    assert [r.code for r in decision.reasons] == ["image_blocked", "image_removed"]
    assert hash_list_findings(attachment_id="a1") == ()


def test_findings_round_trip_through_json_and_old_ones_hold():
    finding = AttachmentFinding("a1", "image_blocked", "block:7", Action.REJECT)
    assert AttachmentFinding.from_json(finding.to_json()) == finding
    old = {"attachment_id": "a1", "code": "image_unreadable"}
    assert AttachmentFinding.from_json(old).action is Action.HOLD
