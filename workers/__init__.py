"""The Celery workers: the only place where scorers and models run."""
