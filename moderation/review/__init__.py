"""The teacher's review queue: the pure parts and the page templates.

``highlight`` (the triggering
spans of a post, safe to render), ``texts`` (Dutch and English strings, the rejection
templates), ``tokens`` (the platform's sign-in JWT). None of these touches the
database; the queue's storage is ``moderation.storage.review``, its routes
``moderation.api.routes.review`` (JSON, bodies in ``schemas``) and
``moderation.api.routes.review_web`` (HTML, from ``templates/`` and ``static/``).
"""
