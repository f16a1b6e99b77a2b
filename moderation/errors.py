"""The service's exception tree, drawn once; ``moderation.api.errors`` maps it to HTTP.

    ModerationError                 code: a stable, machine-readable snake_case string
    ├── NotAuthenticated            401  missing_api_key, invalid_api_key
    ├── NotFound                    404  unknown_post, unknown_student, unknown_group, ...
    ├── Conflict                    409  post_id_conflict, attachment_not_released, ...
    ├── Gone                        410  attachment_purged
    ├── InvalidInput                422  invalid_field, text_too_long, too_many_attachments,
    │   │                                invalid_base64, unknown_channel, unknown_student, ...
    │   ├── PayloadTooLarge         413  request_too_large, attachment_too_large
    │   └── UnsupportedContent      415  unsupported_media_type
    └── RateLimited                 429  rate_limited

Services raise these, never ``HTTPException``. ``moderation.media.MediaError`` (image
intake) is mapped by the same handler.
"""

from __future__ import annotations

from typing import Any


class ModerationError(Exception):
    code = "error"

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details


class NotAuthenticated(ModerationError):
    code = "invalid_api_key"


class NotFound(ModerationError):
    code = "not_found"


class Conflict(ModerationError):
    code = "conflict"


class Gone(ModerationError):
    code = "gone"


class InvalidInput(ModerationError):
    code = "invalid_field"


class PayloadTooLarge(InvalidInput):
    code = "request_too_large"


class UnsupportedContent(InvalidInput):
    code = "unsupported_media_type"


class RateLimited(ModerationError):
    code = "rate_limited"
