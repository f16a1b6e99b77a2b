"""What the model caches share: where a cache lives and how a cached file is checked.

Weights we build from packages (the e5 encoder, its ONNX exports, the dlib descriptor
as torch) are cached under ``~/.cache/school-moderation/<name>``, each movable by an
environment variable, and every cached file is checked against the sha256 its manifest
recorded before it is used.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Final

CACHE_ROOT: Final = Path.home() / ".cache" / "school-moderation"
_HASH_CHUNK: Final = 1 << 22  # bytes read per hashing step


def cache_location(env: str, default: Path) -> Path:
    """``$env`` if set, else ``default`` (a folder under ``CACHE_ROOT``)."""
    value = os.environ.get(env)
    return Path(value).expanduser() if value else default


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in chunks (the cached files run to hundreds of MB)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
