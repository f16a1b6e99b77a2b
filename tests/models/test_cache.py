"""Where the model caches live, and the checksum every cached file is checked against."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from models.cache import CACHE_ROOT, cache_location, file_sha256


def test_an_environment_variable_moves_a_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    default = CACHE_ROOT / "e5-small"
    monkeypatch.delenv("MODERATION_TEST_CACHE", raising=False)
    assert cache_location("MODERATION_TEST_CACHE", default) == default
    monkeypatch.setenv("MODERATION_TEST_CACHE", str(tmp_path / "elsewhere"))
    assert cache_location("MODERATION_TEST_CACHE", default) == tmp_path / "elsewhere"


def test_file_sha256_reads_files_larger_than_one_chunk(tmp_path: Path):
    data = bytes(range(256)) * (1 << 15)  # 8 MiB: two chunks
    path = tmp_path / "weights.bin"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
