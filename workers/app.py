"""The worker-side Celery app: ``celery -A workers.app worker -Q text,media``.

Built from the same configuration as the API's enqueuer (``moderation.queue``).
"""

from __future__ import annotations

from moderation.config import get_settings
from moderation.queue import make_celery

app = make_celery(get_settings(), include=["workers.tasks"])
