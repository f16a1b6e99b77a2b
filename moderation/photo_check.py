"""The consent check of one photo or video: whose faces are in it, and what that means.

POLICY.md rule 2: a photo may be shown to an audience only if every recognisable child in
it has consent for that audience. The face models (``models.images.faces``) say where the
faces are, whether each can be matched, and give a descriptor; this module, pure and
without a database, turns those faces and the consent register into per-face verdicts and
the :class:`~moderation.policy.AttachmentFinding` values ``moderation.policy.decide``
understands. The worker gathers the inputs and applies the verdict (blurs the released
copy with ``models.images.blur.blur_faces``, stores the findings).

The inputs, for the post's audience scope (``SchoolPolicy.consent_scopes[channel]``):

* the faces of the image (anything shaped like ``models.images.faces.Face``);
* a :class:`ConsentRegister`: every student of the school that matters to the check, each
  a :class:`~moderation.domain.ChildConsent` with whether their consent covers the scope,
  their enrolled reference descriptors (possibly none) and whether they are in the post's
  group. **No answer counts as no consent**: a child is consented only if every parent's
  latest answer for the scope is yes (the register's builder applies "no wins");
* the students tagged in the post;
* ``SchoolPolicy.on_consent_match``: ``blur`` (the default) or ``hold``;
* the matcher, ``models.images.faces.match`` in production: nearest reference under the
  model's threshold, ``None`` when nobody is close enough. It is passed in so that this
  core module never imports the models (and their torch and dlib).

The rules:

1. **Matching** is against the references of *every* enrolled child of the school,
   consenting or not, so the closest person wins: a consenting child who resembles a
   non-consenting one is not blurred, and the other way round. Each face gets a status:
   ``consented`` (matched to a child whose consent covers the scope), ``no_consent``
   (matched to a child without it), ``unknown`` (matchable but matches nobody) or
   ``undecidable`` (too small, too blurry or without a descriptor).
2. A face matched to a **child without consent**: with ``blur``, its box is blurred in the
   released copy (``faces_blurred``, a release that tells the author why); with ``hold``,
   the photo is held (``consent_missing``).
3. An **undecidable** face matters only if some child of the school lacks consent for the
   scope: then it could be that child, and the photo is held with the faces boxed
   (``faces_undecidable``). If every child has consent, nobody can be wronged.
4. An **unknown** face (a good face that matches nobody) matters only if some child **in
   the post's group** lacks consent and has no reference: we cannot rule out that it is
   them, so the photo is held (``faces_undecidable``). Children of other groups are not
   expected in the group's photos; children with a reference would have matched.
5. A **tagged** student without consent (or not in the register: fail closed) counts as a
   match: if one of the faces matched them, rule 2 applies to that face; if none did, the
   photo is held (``consent_missing``), since the author says the child is in it.
6. **Videos** cannot be blurred: a child without consent in any sampled frame, a tagged
   child without consent, or a face that matters under rules 3-4 holds the video
   (``video_consent``).

Nudity (:func:`nudity_findings`: exposed labels hold the attachment, ``nudity``) and the
hash lists (:func:`hash_list_findings`: a removed image holds, ``image_removed``; one on
the school's block list rejects, ``image_blocked``) are here too, so that the worker turns
every model's result into findings in one place.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from moderation.domain import Action, ChildConsent
from moderation.policy import AttachmentFinding, ConsentMatchAction

__all__ = [
    "Box",
    "ConsentRegister",
    "FaceLike",
    "FaceStatus",
    "FaceVerdict",
    "Matcher",
    "PhotoVerdict",
    "VideoVerdict",
    "check_photo",
    "check_video",
    "hash_list_findings",
    "nudity_findings",
]

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels of the analysed image
# The face matcher: (descriptor, {student id: reference descriptors}) -> the closest
# student under the model's threshold, or None (models.images.faces.match).
Matcher = Callable[[Any, Mapping[str, Sequence[Any]]], str | None]


class FaceLike(Protocol):
    """What the check reads of a face (``models.images.faces.Face`` has all of it)."""

    @property
    def box(self) -> Box: ...

    @property
    def embedding(self) -> Any: ...  # the descriptor, None when the face was not described

    @property
    def matchable(self) -> bool: ...  # described, large enough and sharp enough


class NudityLike(Protocol):
    """What the check reads of a nudity result (``models.images.nudity.NudityResult``)."""

    def exposed_labels(self) -> list[str]: ...


class FaceStatus(StrEnum):
    CONSENTED = "consented"  # matched to a child whose consent covers the scope
    NO_CONSENT = "no_consent"  # matched to a child without consent for the scope
    UNKNOWN = "unknown"  # matchable, but matches no enrolled child
    UNDECIDABLE = "undecidable"  # too small, too blurry or not described: cannot be matched


@dataclass(frozen=True, slots=True)
class ConsentRegister:
    """The students of the school that matter to one check, for one audience scope.

    ``children`` should hold every student of the school (the enrolled ones for
    matching, and everyone for "does some child lack consent"). A child without any
    answer for the scope has ``consented=False``: no answer is no consent.
    """

    scope: str  # e.g. "app", "newsletter": the consent the post's audience needs
    children: tuple[ChildConsent, ...]
    _by_id: dict[str, ChildConsent] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_id = {child.student_id: child for child in self.children}
        if len(by_id) != len(self.children):
            raise ValueError("a student appears twice in the consent register")
        object.__setattr__(self, "_by_id", by_id)

    def get(self, student_id: str) -> ChildConsent | None:
        return self._by_id.get(student_id)

    def consented(self, student_id: str) -> bool:
        """Whether the student's consent covers the scope; an unknown student has none."""
        child = self._by_id.get(student_id)
        return child is not None and child.consented

    def references(self) -> dict[str, Sequence[Sequence[float]]]:
        """The reference descriptors of every enrolled child, consenting or not (rule 1)."""
        return {c.student_id: c.references for c in self.children if c.references}

    def anyone_without_consent(self) -> bool:
        """Whether some child of the school lacks consent (rule 3)."""
        return any(not c.consented for c in self.children)

    def unrecognisable_in_group(self) -> tuple[str, ...]:
        """Children of the post's group without consent and without a reference (rule 4)."""
        return tuple(
            c.student_id
            for c in self.children
            if c.in_group and not c.consented and not c.references
        )


@dataclass(frozen=True, slots=True)
class FaceVerdict:
    """One face: where it is, whose it is, and whether it keeps the image from release."""

    box: Box
    status: FaceStatus
    student_id: str | None = None  # the matched child (consented or no_consent)
    matters: bool = False  # blurred, or boxed for the teacher: the image is not released as is


@dataclass(frozen=True, slots=True)
class PhotoVerdict:
    """The consent check of one photo.

    ``blur_boxes`` are the faces to make unrecognisable in the released copy (policy
    ``blur``); ``review_boxes`` the faces to box for the teacher when the photo is held.
    """

    faces: tuple[FaceVerdict, ...]
    findings: tuple[AttachmentFinding, ...]
    blur_boxes: tuple[Box, ...] = ()

    @property
    def held(self) -> bool:
        """Whether a finding keeps the photo from release (held or rejected)."""
        return any(f.action is not Action.RELEASE for f in self.findings)

    @property
    def review_boxes(self) -> tuple[Box, ...]:
        return tuple(face.box for face in self.faces if face.matters)


@dataclass(frozen=True, slots=True)
class VideoVerdict:
    """The consent check of a video: the faces of each sampled frame, and the findings."""

    frames: tuple[tuple[FaceVerdict, ...], ...]
    findings: tuple[AttachmentFinding, ...]

    @property
    def held(self) -> bool:
        return any(f.action is not Action.RELEASE for f in self.findings)


# --------------------------------------------------------------------------- faces


def _classify(
    faces: Sequence[FaceLike], register: ConsentRegister, matcher: Matcher
) -> list[FaceVerdict]:
    """Rule 1: each face's status; ``matters`` is filled in by the rules that follow."""
    references = register.references()
    verdicts = []
    for face in faces:
        if not face.matchable or face.embedding is None:
            verdicts.append(FaceVerdict(face.box, FaceStatus.UNDECIDABLE))
            continue
        student = matcher(face.embedding, references) if references else None
        if student is None:
            verdicts.append(FaceVerdict(face.box, FaceStatus.UNKNOWN))
        elif register.consented(student):
            verdicts.append(FaceVerdict(face.box, FaceStatus.CONSENTED, student))
        else:
            verdicts.append(FaceVerdict(face.box, FaceStatus.NO_CONSENT, student))
    return verdicts


def _mark(verdicts: list[FaceVerdict], register: ConsentRegister) -> list[FaceVerdict]:
    """Rules 2-4: which faces keep the image from a plain release."""
    undecidable_matters = register.anyone_without_consent()
    unknown_matters = bool(register.unrecognisable_in_group())
    out = []
    for v in verdicts:
        matters = (
            v.status is FaceStatus.NO_CONSENT
            or (v.status is FaceStatus.UNDECIDABLE and undecidable_matters)
            or (v.status is FaceStatus.UNKNOWN and unknown_matters)
        )
        out.append(FaceVerdict(v.box, v.status, v.student_id, matters))
    return out


def _tagged_unmatched(
    tagged: Collection[str], register: ConsentRegister, verdicts: Iterable[FaceVerdict]
) -> list[str]:
    """Rule 5: tagged students without consent whom no face matched."""
    matched = {v.student_id for v in verdicts if v.student_id is not None}
    return [
        student
        for student in dict.fromkeys(tagged)
        if not register.consented(student) and student not in matched
    ]


def _detail(**parts: object) -> str:
    """A finding's detail as compact JSON, leaving out what is empty."""
    return json.dumps({k: v for k, v in parts.items() if v}, separators=(",", ":"))


def _boxes(verdicts: Iterable[FaceVerdict]) -> list[list[int]]:
    return [list(v.box) for v in verdicts]


def check_photo(
    faces: Sequence[FaceLike],
    register: ConsentRegister,
    *,
    attachment_id: str,
    matcher: Matcher,
    tagged: Collection[str] = (),
    on_match: ConsentMatchAction = ConsentMatchAction.BLUR,
) -> PhotoVerdict:
    """The consent verdict for one photo (see the module docstring for the rules).

    Findings: ``faces_blurred`` (release; with ``on_match=blur``, the boxes to blur),
    ``consent_missing`` (hold: a matched child without consent under ``on_match=hold``,
    or a tagged child without consent whom no face matched) and ``faces_undecidable``
    (hold, the faces boxed). No finding: the photo may be released as it is.
    """
    verdicts = _mark(_classify(faces, register, matcher), register)
    tagged_missing = _tagged_unmatched(tagged, register, verdicts)
    no_consent = [v for v in verdicts if v.status is FaceStatus.NO_CONSENT]
    unsure = [v for v in verdicts if v.matters and v.status is not FaceStatus.NO_CONSENT]
    matched_ids = sorted({v.student_id for v in no_consent if v.student_id is not None})

    findings: list[AttachmentFinding] = []
    blur_boxes: tuple[Box, ...] = ()
    if no_consent and on_match is ConsentMatchAction.BLUR:
        blur_boxes = tuple(v.box for v in no_consent)
        findings.append(
            AttachmentFinding(
                attachment_id,
                "faces_blurred",
                _detail(students=matched_ids, boxes=_boxes(no_consent)),
                Action.RELEASE,
            )
        )
    held_matches = no_consent if on_match is ConsentMatchAction.HOLD else []
    if held_matches or tagged_missing:
        findings.append(
            AttachmentFinding(
                attachment_id,
                "consent_missing",
                _detail(
                    students=matched_ids if held_matches else [],
                    tagged=tagged_missing,
                    boxes=_boxes(held_matches),
                ),
            )
        )
    if unsure:
        findings.append(
            AttachmentFinding(attachment_id, "faces_undecidable", _detail(boxes=_boxes(unsure)))
        )
    return PhotoVerdict(tuple(verdicts), tuple(findings), blur_boxes)


def check_video(
    frames: Sequence[Sequence[FaceLike]],
    register: ConsentRegister,
    *,
    attachment_id: str,
    matcher: Matcher,
    tagged: Collection[str] = (),
) -> VideoVerdict:
    """The consent verdict for a video, from the faces of its sampled frames (rule 6).

    A video cannot be blurred, so whatever would blur or hold a photo holds the video:
    one ``video_consent`` finding whose detail lists the children without consent, the
    tagged ones no frame showed, and the boxes that matter per frame index.
    """
    per_frame = [_mark(_classify(faces, register, matcher), register) for faces in frames]
    seen = [v for verdicts in per_frame for v in verdicts]
    tagged_missing = _tagged_unmatched(tagged, register, seen)
    students = sorted(
        {v.student_id for v in seen if v.status is FaceStatus.NO_CONSENT and v.student_id}
    )
    boxes = {
        str(index): _boxes(v for v in verdicts if v.matters)
        for index, verdicts in enumerate(per_frame)
        if any(v.matters for v in verdicts)
    }
    findings: tuple[AttachmentFinding, ...] = ()
    if students or tagged_missing or boxes:
        detail = _detail(students=students, tagged=tagged_missing, frames=boxes)
        findings = (AttachmentFinding(attachment_id, "video_consent", detail),)
    return VideoVerdict(tuple(tuple(v) for v in per_frame), findings)


# --------------------------------------------------------------------------- other checks


def nudity_findings(*results: NudityLike, attachment_id: str) -> tuple[AttachmentFinding, ...]:
    """Exposed nudity in a photo (one result) or a video (one result per frame): a hold.

    One ``nudity`` finding whose detail names the exposed labels (e.g.
    ``FEMALE_BREAST_EXPOSED``), in the order first seen; nothing when none is exposed.
    Covered parts, bellies and feet are school life (swimming lessons) and hold nothing.
    """
    labels = list(dict.fromkeys(label for r in results for label in r.exposed_labels()))
    if not labels:
        return ()
    return (AttachmentFinding(attachment_id, "nudity", ",".join(labels)),)


def hash_list_findings(
    *, attachment_id: str, removed: Sequence[str] = (), blocked: Sequence[str] = ()
) -> tuple[AttachmentFinding, ...]:
    """An image whose perceptual hash matches the school's lists.

    ``removed`` and ``blocked`` are the references of the stored hashes it matched. A
    match with an image the school removed before holds it (``image_removed``: the
    teacher sees whether it is the same picture); a match with the school's block list
    rejects the post (``image_blocked``: the school decided about this image already).
    """
    findings = []
    if blocked:
        findings.append(
            AttachmentFinding(attachment_id, "image_blocked", ",".join(blocked), Action.REJECT)
        )
    if removed:
        findings.append(AttachmentFinding(attachment_id, "image_removed", ",".join(removed)))
    return tuple(findings)
