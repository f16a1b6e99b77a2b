"""The FastAPI application: routers, error mapping, the body-size limit and the input
guard (``moderation.api.guard``: no NUL or lone surrogate reaches a route)."""

from __future__ import annotations

from fastapi import Depends, FastAPI

from moderation.api import errors
from moderation.api.guard import refuse_unstorable_text
from moderation.api.limits import BodySizeLimit
from moderation.api.routes import (
    image_lists,
    policy,
    posts,
    references,
    released,
    review,
    review_web,
    roster,
    takedowns,
)
from moderation.config import get_settings


def create_app() -> FastAPI:
    settings = get_settings()
    app = FastAPI(
        title="School moderation gate",
        version="0.1.0",
        description=(
            "The gate in front of publication for school-parent messaging: the platform "
            "submits every post before publishing it and gets a decision back "
            "(release, hold for a teacher, or reject with a Dutch reason). Authenticate "
            "with the school's API key as a Bearer token."
        ),
        dependencies=[Depends(refuse_unstorable_text)],
    )
    errors.install(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    app.include_router(posts.router)
    app.include_router(released.router)
    app.include_router(roster.router)
    app.include_router(policy.router)
    app.include_router(review.router)
    app.include_router(review_web.router)
    app.include_router(references.router)
    app.include_router(image_lists.router)
    app.include_router(takedowns.router)

    @app.get("/healthz", tags=["ops"], summary="Liveness")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
