"""Persistence: tables, the engine, and the storage functions the API and workers share."""
