"""One settings object for the whole service, read once from the environment.

Every setting is an environment variable with the ``MODERATION_`` prefix (or a line in
a ``.env`` file). The defaults are the *embedded* set-up: a SQLite file for the data and
a second SQLite file as the Celery broker, so that nothing else needs installing. At
scale the same code runs with ``MODERATION_DATABASE_URL=postgresql+psycopg://...`` and
``MODERATION_BROKER_URL=redis://...`` (or ``amqp://...``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path("var")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MODERATION_", env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str = ""  # empty: sqlite:///<data_dir>/moderation.sqlite
    broker_url: str = ""  # empty: sqla+sqlite:///<data_dir>/broker.sqlite

    # API limits
    max_text_chars: int = 10_000  # characters of post text
    max_attachments: int = 10  # attachments per post
    max_attachment_bytes: int = 10 * 1024 * 1024  # decoded bytes per attachment
    max_request_bytes: int = 64 * 1024 * 1024  # whole request body, base64 included
    # Videos (moderation/video.py). The body limit above must hold a base64 video of
    # max_video_bytes (4/3 of it, 53 MiB for 40 MiB) plus the JSON around it.
    max_video_bytes: int = 40 * 1024 * 1024  # bytes per video (photos: max_attachment_bytes)
    max_video_duration_s: float = 180.0  # seconds
    max_video_side: int = 4096  # pixels along either side of a frame
    max_video_pixels: int = 4096 * 2304  # pixels per frame
    max_video_streams: int = 8  # video, audio and the timecode/metadata tracks phones add
    rate_limit: str = "600/minute"  # per API key
    rate_limit_storage: str = "memory://"  # per API process; redis://... to share
    max_wait_s: float = 10.0  # ceiling for ?wait=

    # Pipeline
    text_scorer: Literal["model", "lexicon", "fake"] = "model"
    # how the model scorer runs its encoder (models/text/README.md: speed and accuracy)
    text_backend: Literal["torch", "torch-bf16", "onnx", "onnx-int8"] = "onnx-int8"
    # the photo gate's face and nudity models; "fake" finds no face and no nudity (for
    # tests of the plumbing only: it releases every readable photo)
    media_scorer: Literal["model", "fake"] = "model"
    fake_scorer_delay_s: float = 0.0  # the fake scorer sleeps this long (tests only)
    task_max_retries: int = 3  # scoring tries before a post is held as scoring_failed
    pending_timeout_s: float = 120.0  # a pending post older than this is re-enqueued
    max_enqueues: int = 5  # sweeper re-enqueues before the post is held (scoring_failed)
    sweep_interval_s: float = 30.0
    broker_poll_interval_s: float = 0.1  # SQLite broker only: how often workers poll
    # Redis: an unacked task is redelivered after this; above the longest retry wait
    # (callback_backoff_cap_s), or a task waiting for its retry runs twice
    broker_visibility_timeout_s: int = 3600

    # Callbacks to the platform
    callback_timeout_s: float = 10.0
    callback_max_retries: int = 30  # with backoff capped at 10 min: about 4 hours
    callback_backoff_cap_s: float = 600.0  # longest wait between two attempts (10 min)
    # the sweeper re-sends a pending callback untouched this long (its retry was lost with
    # the broker); it must exceed the backoff cap, or it re-sends callbacks that only wait
    callback_stale_after_s: float = 900.0

    # Embedded serve
    host: str = "127.0.0.1"
    port: int = 8000
    embedded_worker: bool = True

    log_level: str = "INFO"
    api_key_pepper: str = Field(default="dev-pepper-change-me", min_length=8)

    # Review queue (docs/review.md)
    review_cookie_secure: bool = True  # False only for plain-http local development
    review_session_ttl_s: int = 10 * 3600  # a signed-in session lasts one school day
    review_token_max_ttl_s: int = 900  # a sign-in token may be valid for 15 minutes at most
    review_token_leeway_s: int = 30  # clock skew allowed on a sign-in token's exp
    review_base_url: str = ""  # empty: http://<host>:<port>, for `admin review-link`

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'moderation.sqlite').as_posix()}"
        if not self.broker_url:
            self.broker_url = f"sqla+sqlite:///{(self.data_dir / 'broker.sqlite').as_posix()}"
        if self.callback_stale_after_s <= self.callback_backoff_cap_s:
            raise ValueError(
                "MODERATION_CALLBACK_STALE_AFTER_S must exceed MODERATION_CALLBACK_BACKOFF_CAP_S"
            )
        if self.environment == "production" and self.api_key_pepper.startswith("dev-"):
            raise ValueError(
                "MODERATION_API_KEY_PEPPER must be set to a secret value in production"
            )
        return self

    @property
    def is_embedded_broker(self) -> bool:
        return self.broker_url.startswith("sqla+")

    def ensure_data_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)


@lru_cache
def get_settings() -> Settings:
    return Settings()
