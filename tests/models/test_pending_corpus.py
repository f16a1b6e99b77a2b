"""The pending batch (``models/text/data/pending/``) is valid corpus and new to it.

It joins ``raw/`` at the next retraining (``models/text/data/DATASHEET.md``, Pending), so
it must validate like ``raw/`` and share no family and no message with the corpus, or
the split by family would put paraphrases of one message on both sides.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

DATA = Path(__file__).resolve().parents[2] / "models/text/data"


def _split_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("corpus_split", DATA / "split.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_pending_batch_is_valid_and_shares_nothing_with_the_corpus():
    split = _split_module()
    pending = [record for _, record in split.read_raw(DATA / "pending")]  # validates each line
    corpus = [record for _, record in split.read_raw(DATA / "raw")]
    assert len(pending) >= 700
    assert len({split.fold(r["text"]) for r in pending}) == len(pending)
    assert not {r["family"] for r in pending} & {r["family"] for r in corpus}
    assert not {split.fold(r["text"]) for r in pending} & {split.fold(r["text"]) for r in corpus}
    labelled = sum(bool(r["labels"]) for r in pending)
    assert 0.5 < labelled / len(pending) < 0.8  # positives aimed at recall, with their neighbours
