"""Content moderation gate for school-parent messaging.

The service core: configuration, domain objects, the pure decision policy,
storage, the API and the CLI. Nothing in this package imports torch; Celery is
imported only by :mod:`moderation.queue`, the one place that enqueues.
"""
