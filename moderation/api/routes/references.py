"""Reference photos: enrol a child's face (only the descriptor is kept), list, erase.

Enrolment reads the photo as safely as a post's attachment, then runs the face model,
which is loaded once per API process on the first enrolment (``moderation.photo_intake``).
The route is a plain ``def``: FastAPI runs it in its threadpool, so a 0.2-0.6 s model
call does not stall the event loop. After the commit the school's released photos are
queued for a re-check (``reference_added``): a child without consent who is enrolled
now may be in photos released before.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from moderation.api.deps import EnqueuerDep, RowId, SchoolDep, SessionDep, SettingsDep
from moderation.api.routes.posts import ERRORS
from moderation.photo_intake import REFERENCE_MODEL, decode_photo, read_photo, reference_embedding
from moderation.photo_schemas import ReferencePhotoCreate, ReferencePublic, ReferencesPublic
from moderation.storage import references
from moderation.storage.roster import get_student

router = APIRouter(prefix="/v1/students", tags=["reference photos"], responses=ERRORS)


def _public(info: references.ReferenceInfo) -> ReferencePublic:
    return ReferencePublic(
        id=info.id,
        student_id=info.student_id,
        model=info.model,
        enrolled_by=info.enrolled_by,
        source=info.source,
        enrolled_at=info.enrolled_at.isoformat(),
    )


@router.post(
    "/{student_id}/reference-photos",
    status_code=201,
    response_model=ReferencePublic,
    summary="Enrol a reference photo of a child (only the face descriptor is stored)",
)
def enrol_reference_photo(
    student_id: str,
    body: ReferencePhotoCreate,
    school: SchoolDep,
    session: SessionDep,
    settings: SettingsDep,
    enqueuer: EnqueuerDep,
) -> ReferencePublic:
    """The photo must show exactly one sharp face at least 40 pixels wide. **422** with
    ``no_face``, ``several_faces``, ``face_too_small`` or ``face_blurry`` otherwise;
    image errors as for post attachments; **404** ``unknown_student``."""
    student = get_student(session=session, school_id=school.id, student_id=student_id)
    data = decode_photo(body.photo, max_bytes=settings.max_attachment_bytes)
    image = read_photo(data, body.content_type, max_bytes=settings.max_attachment_bytes)
    embedding = reference_embedding(image)
    info = references.enrol_reference(
        session=session,
        school_id=school.id,
        student_id=student.external_id,
        embedding=embedding,
        model=REFERENCE_MODEL,
        enrolled_by=body.enrolled_by,
        source="api",
    )
    session.commit()
    enqueuer.recheck(school.id, student.external_id, "reference_added")
    return _public(info)


@router.get(
    "/{student_id}/reference-photos",
    response_model=ReferencesPublic,
    summary="A child's enrolled references (metadata only)",
)
def list_reference_photos(
    student_id: str, school: SchoolDep, session: SessionDep
) -> ReferencesPublic:
    found = references.list_references(session=session, school_id=school.id, student_id=student_id)
    return ReferencesPublic(data=[_public(info) for info in found], count=len(found))


@router.delete(
    "/{student_id}/reference-photos",
    status_code=204,
    summary="Erase all of a child's references",
)
def erase_reference_photos(
    student_id: str, school: SchoolDep, session: SessionDep, by: str = "api"
) -> Response:
    """Deletes every descriptor of the child; audited (``by`` names who asked)."""
    references.erase_references(
        session=session, school_id=school.id, student_id=student_id, actor=f"api:{by[:100]}"
    )
    session.commit()
    return Response(status_code=204)


@router.delete(
    "/{student_id}/reference-photos/{reference_id}",
    status_code=204,
    summary="Erase one reference",
)
def erase_reference_photo(
    student_id: str, reference_id: RowId, school: SchoolDep, session: SessionDep, by: str = "api"
) -> Response:
    """**404** ``unknown_reference`` when the child has no such reference."""
    references.erase_references(
        session=session,
        school_id=school.id,
        student_id=student_id,
        actor=f"api:{by[:100]}",
        reference_id=reference_id,
    )
    session.commit()
    return Response(status_code=204)


@router.delete(
    "/{student_id}",
    status_code=204,
    tags=["roster"],
    summary="Erase a student (GDPR): roster entry, consent, references, tags",
)
def erase_student(
    student_id: str, school: SchoolDep, session: SessionDep, by: str = "api"
) -> Response:
    """Deletes the student, their consent answers, face references and tags, and unlinks
    their takedown reports. Decisions and the audit trail stay; the audit event keeps
    the student's id, not their name."""
    references.erase_student(
        session=session, school_id=school.id, student_id=student_id, actor=f"api:{by[:100]}"
    )
    session.commit()
    return Response(status_code=204)
