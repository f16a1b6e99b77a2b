"""The classifier's ONNX path: same probabilities as torch, an export cache that follows
the weights, and the setting that picks the backend.

The export tests run in a model cache of their own under ``tmp_path`` whose encoder
files are symlinks to the real cache (built once, about 15 s), so they never touch the
exports the service uses and cost no second copy of the 470 MB encoder.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from models.text.classifier import DEFAULT_WEIGHTS_DIR, TextClassifier
from models.text.encoder import (
    ADAPTED_ONNX_SUFFIX,
    STALE_EXPORT_S,
    adapter_digest,
    build_encoder,
    build_onnx,
    calibration_batch,
    load_model,
    outlier_ffn_layers,
)

pytest.importorskip("onnxruntime")

DEV = Path(__file__).resolve().parents[2] / "models/text/data/dev.jsonl"


def _dev_texts(count: int) -> list[str]:
    """``count`` dev posts spread over the file (short and long, benign and not)."""
    rows = [json.loads(line) for line in DEV.read_text(encoding="utf-8").splitlines() if line]
    step = max(len(rows) // count, 1)
    return [str(r["text"]) for r in rows[::step][:count]]


@pytest.fixture(scope="module")
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model cache of its own: the encoder's files linked from the real cache."""
    real = build_encoder()
    mine = tmp_path_factory.mktemp("model-cache") / real.name
    mine.mkdir()
    for path in real.iterdir():
        if path.is_file():
            (mine / path.name).symlink_to(path)
    assert build_encoder(mine) == mine  # the links pass the checksum check as they are
    return mine


@pytest.fixture
def adapters(tmp_path: Path) -> Path:
    """A copy of the shipped adapters, free to change."""
    copy = tmp_path / "adapter"
    copy.mkdir()
    for path in (DEFAULT_WEIGHTS_DIR / "adapter").iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    return copy


@pytest.mark.slow
def test_onnx_int8_agrees_with_torch_on_dev_posts(private_cache: Path) -> None:
    texts = _dev_texts(40)
    reference = TextClassifier(backend="torch", cache_dir=private_cache).probabilities(texts)
    fast = TextClassifier(backend="onnx-int8", cache_dir=private_cache)
    probs = fast.probabilities(texts)
    assert probs.shape == reference.shape == (40, 4)
    difference = np.abs(probs - reference)
    # measured on 351 dev posts with the v5 weights and 7-bit weights (export_onnx):
    # mean 0.004, 99th percentile 0.08, largest 0.21 (0.14 on these 40); the accuracy
    # that matters is guarded in test_classifier
    assert float(difference.mean()) <= 0.015
    assert float(difference.max()) <= 0.25
    # the same posts reach the policy's lowest threshold, but for a few near it
    assert int(((probs >= 0.4) != (reference >= 0.4)).any(axis=1).sum()) <= 3
    # a post scores the same alone as among others (each post runs as its own batch)
    alone = np.concatenate([fast.probabilities([text]) for text in texts[:5]])
    np.testing.assert_allclose(alone, probs[:5], atol=1e-6)


@pytest.mark.slow
def test_export_cache_follows_the_adapters(private_cache: Path, adapters: Path) -> None:
    first = build_onnx(private_cache, quantize=True, adapter_dir=adapters)
    root = private_cache.with_name(private_cache.name + ADAPTED_ONNX_SUFFIX)
    assert first.is_relative_to(root) and first.name == "model-int8.onnx"
    stamp = first.stat().st_mtime_ns
    assert build_onnx(private_cache, quantize=True, adapter_dir=adapters) == first
    assert first.stat().st_mtime_ns == stamp  # reused, not exported again

    # retrained adapters (here: the same config, written differently) -> a new export
    before = adapter_digest(adapters)
    config = adapters / "adapter_config.json"
    config.write_text(config.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    assert adapter_digest(adapters) != before
    second = build_onnx(private_cache, quantize=True, adapter_dir=adapters)
    assert second != first and second.is_file()
    assert (
        json.loads(second.with_name(second.name + ".json").read_text())["key"]
        != (json.loads(first.with_name(first.name + ".json").read_text())["key"])
    )

    # a damaged file is noticed (its checksum) and exported again; an export unused for
    # longer than STALE_EXPORT_S is removed when another is built
    long_ago = time.time() - STALE_EXPORT_S - 3600
    for path in first.parent.iterdir():
        os.utime(path, (long_ago, long_ago))
    with second.open("r+b") as fh:
        fh.seek(second.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0xFF]))
    damaged = second.read_bytes()
    assert build_onnx(private_cache, quantize=True, adapter_dir=adapters) == second
    assert second.read_bytes() != damaged
    assert not first.parent.exists()
    assert sorted(p.name for p in root.iterdir()) == [second.parent.name]


@pytest.mark.slow
def test_truncated_export_is_rebuilt_and_loads(private_cache: Path, adapters: Path) -> None:
    path = build_onnx(private_cache, quantize=True, adapter_dir=adapters)
    path.write_bytes(path.read_bytes()[:1000])  # an interrupted copy
    model = TextClassifier(backend="onnx-int8", cache_dir=private_cache)
    assert build_onnx(private_cache, quantize=True, adapter_dir=adapters).stat().st_size > 10**7
    assert model.probabilities(["Fijne vakantie allemaal!"]).shape == (1, 4)


def test_the_int8_recipe_keeps_the_outlier_layers_fp32() -> None:
    """The three layers that export_onnx's docstring measured as the sensitive ones."""
    model_dir = build_encoder()
    model = load_model(str(model_dir), packaged=True, adapter_dir=DEFAULT_WEIGHTS_DIR / "adapter")
    from transformers import AutoTokenizer

    batch = calibration_batch(AutoTokenizer.from_pretrained(str(model_dir)))
    assert outlier_ffn_layers(model, batch) == [0, 4, 5]


def test_backend_is_a_setting(configure) -> None:
    from pydantic import ValidationError

    from moderation.config import Settings, get_settings
    from workers.scorers import text_scorer

    assert Settings.model_fields["text_backend"].default == "onnx-int8"
    configure(text_backend="torch")
    scorer = text_scorer(get_settings())
    assert getattr(scorer, "inner", scorer).backend == "torch"
    with pytest.raises(ValidationError):
        Settings(text_backend="tpu")


def test_old_exports_are_pruned(tmp_path: Path) -> None:
    """At most MAX_ADAPTED_EXPORTS stay, the most recently used; none older than
    STALE_EXPORT_S (no model needed: the pruning looks at directories and times)."""
    from models.text.encoder import MAX_ADAPTED_EXPORTS, _prune_exports

    now = time.time()
    ages = [10, 20, 30, 40, 50, 60]  # seconds since last use
    dirs = []
    for number, age in enumerate(ages):
        entry = tmp_path / f"key{number}"
        entry.mkdir()
        (entry / "model-int8.onnx.json").write_text("{}")
        os.utime(entry / "model-int8.onnx.json", (now - age, now - age))
        dirs.append(entry)
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "model.onnx.json").write_text("{}")
    os.utime(stale / "model.onnx.json", (now - STALE_EXPORT_S - 1, now - STALE_EXPORT_S - 1))
    _prune_exports(tmp_path, keep=dirs[-1])  # the oldest is the one in use
    left = sorted(p.name for p in tmp_path.iterdir())
    assert len(left) == MAX_ADAPTED_EXPORTS
    assert left == sorted(["key5", *[f"key{i}" for i in range(MAX_ADAPTED_EXPORTS - 1)]])
