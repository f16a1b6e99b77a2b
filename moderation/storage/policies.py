"""Each school's policy, versioned: a new document is appended as the next version and
the highest version is in force. A school that never set one runs the house policy."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from moderation.policy import DEFAULT_POLICY, SchoolPolicy
from moderation.policy_document import PolicyDocument, default_document
from moderation.storage.tables import AuditEvent, SchoolPolicyVersion


def latest_version(*, session: Session, school_id: str) -> SchoolPolicyVersion | None:
    return session.scalars(
        select(SchoolPolicyVersion)
        .where(SchoolPolicyVersion.school_id == school_id)
        .order_by(SchoolPolicyVersion.version.desc())
    ).first()


def current_policy(*, session: Session, school_id: str) -> SchoolPolicy:
    row = latest_version(session=session, school_id=school_id)
    if row is None:
        return DEFAULT_POLICY
    return PolicyDocument.model_validate(row.document).to_policy(f"v{row.version}")


def current_document(*, session: Session, school_id: str) -> tuple[int, dict[str, Any]]:
    """(version, document); version 0 is the house policy."""
    row = latest_version(session=session, school_id=school_id)
    return (0, default_document()) if row is None else (row.version, row.document)


def set_policy(
    *, session: Session, school_id: str, document: PolicyDocument, actor: str
) -> SchoolPolicyVersion:
    current = session.scalar(
        select(func.max(SchoolPolicyVersion.version)).where(
            SchoolPolicyVersion.school_id == school_id
        )
    )
    row = SchoolPolicyVersion(
        school_id=school_id,
        version=(current or 0) + 1,
        document=document.model_dump(mode="json"),
        created_by=actor,
    )
    session.add(row)
    session.add(
        AuditEvent(
            school_id=school_id,
            actor=actor,
            action="policy.set",
            detail={"version": row.version},
        )
    )
    session.flush()
    return row
