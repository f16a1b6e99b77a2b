"""The platform's sign-in token: HS256 only, short-lived, with the claims we need."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from moderation.errors import NotAuthenticated
from moderation.review.tokens import sign_review_token, token_school, verify_review_token

SECRET = "s" * 43
OTHER = "o" * 43


def sign(**overrides: object) -> str:
    args: dict[str, object] = {
        "secret": SECRET,
        "school_id": "school-a",
        "staff_id": "mw-1",
        "role": "teacher",
        "groups": ["groep-5a"],
        "name": "Juf Anouk",
        "ttl_s": 300,
    }
    args.update(overrides)
    return sign_review_token(**args)  # type: ignore[arg-type]


def verify(token: str, secret: str = SECRET):
    return verify_review_token(token, secret=secret, max_ttl_s=900, leeway_s=5)


def test_a_good_token_verifies():
    claims = verify(sign())
    assert (claims.sub, claims.school, claims.role, claims.groups) == (
        "mw-1",
        "school-a",
        "teacher",
        ("groep-5a",),
    )
    assert claims.jti
    assert token_school(sign()) == "school-a"


@pytest.mark.parametrize(
    ("token", "code"),
    [
        (lambda: sign(secret=OTHER), "invalid_review_token"),
        (lambda: sign(now=datetime.now(UTC) - timedelta(hours=1)), "expired_review_token"),
        (lambda: sign(ttl_s=24 * 3600), "invalid_review_token"),  # not short-lived
        (lambda: sign(role="root"), "invalid_review_token"),
        (lambda: "not-a-jwt", "invalid_review_token"),
        (
            lambda: jwt.encode(
                {"sub": "mw-1", "school": "school-a", "role": "teacher", "exp": 9_999_999_999},
                None,
                algorithm="none",
            ),
            "invalid_review_token",
        ),
        (
            lambda: jwt.encode({"sub": "mw-1", "school": "school-a"}, SECRET, algorithm="HS256"),
            "invalid_review_token",  # no exp, no role
        ),
        (
            lambda: jwt.encode(
                {"sub": "mw-1", "school": "school-a", "role": "admin", "exp": 9_999_999_999},
                SECRET * 2,  # HS512 wants 64 bytes or more
                algorithm="HS512",
            ),
            "invalid_review_token",
        ),
    ],
)
def test_bad_tokens_are_refused(token, code):
    with pytest.raises(NotAuthenticated) as caught:
        raw = token()
        token_school(raw)
        verify(raw)
    assert caught.value.code == code
