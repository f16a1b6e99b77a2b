"""Routers, one per noun, gathered in ``moderation.api.main``."""
