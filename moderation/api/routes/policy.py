"""The school's own policy: read it, or set a new version."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from moderation.api.deps import SchoolDep, SessionDep
from moderation.api.routes.posts import ERRORS
from moderation.policy_document import parse_document
from moderation.storage.policies import current_document, set_policy

router = APIRouter(prefix="/v1/policy", tags=["policy"], responses=ERRORS)


class PolicyPublic(BaseModel):
    """The policy in force; version 0 is the house policy (the school never set one)."""

    version: int
    document: dict[str, Any]


@router.get("", response_model=PolicyPublic, summary="The policy in force")
def get_policy(school: SchoolDep, session: SessionDep) -> PolicyPublic:
    version, document = current_document(session=session, school_id=school.id)
    return PolicyPublic(version=version, document=document)


@router.put("", response_model=PolicyPublic, summary="Set a new version of the policy")
def put_policy(
    document: dict[str, Any], school: SchoolDep, session: SessionDep, actor: str = "api"
) -> PolicyPublic:
    """Validates the whole document first; an invalid one changes nothing (422
    ``invalid_policy`` with the failing fields). Anything left out takes the house
    default. ``actor`` names who made the change, for the audit trail."""
    parsed = parse_document(document)
    row = set_policy(session=session, school_id=school.id, document=parsed, actor=actor[:128])
    session.commit()
    return PolicyPublic(version=row.version, document=row.document)
