"""The FastAPI application: routers, error mapping and the body-size limit."""

from __future__ import annotations

from fastapi import FastAPI

from moderation.api import errors
from moderation.api.limits import BodySizeLimit
from moderation.api.routes import policy, posts, review, review_web, roster
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
    )
    errors.install(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    app.include_router(posts.router)
    app.include_router(roster.router)
    app.include_router(policy.router)
    app.include_router(review.router)
    app.include_router(review_web.router)

    @app.get("/healthz", tags=["ops"], summary="Liveness")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
