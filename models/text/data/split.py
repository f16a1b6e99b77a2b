"""Validate the hand-written text corpus and split it into train/dev/test by family.

Why this exists: the moderation text classifier is trained and evaluated on the
messages in ``raw/*.jsonl`` (see DATASHEET.md). Paraphrases of one message share a
``family`` id; a whole family always lands in one split, so no test item is a
rewording of a training item. The split is a pure function of the family id
(a SHA-256 bucket), so it is stable across runs, machines and file orderings, and
adding new families never moves existing ones.

Usage (stdlib only)::

    python models/text/data/split.py            # reads raw/, writes train/dev/test.jsonl beside it
    python models/text/data/split.py --check    # validate and report only, write nothing

Importable::

    from split import split_corpus
    splits = split_corpus(Path("models/text/data/raw"))
    # -> {"train": [...], "dev": [...], "test": [...]}
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Final

Record = dict[str, Any]

CATEGORIES: Final = ("insult", "hate", "threat", "sexual")
LANGS: Final = ("nl", "en", "tr", "ar", "pl")
TARGETS: Final = ("teacher", "child", "parent", "group", "school", "none")
REQUIRED: Final = ("text", "lang", "labels", "family", "target", "kind")
SPLITS: Final = ("train", "dev", "test")
TRAIN_PCT: Final = 70  # percent of families
DEV_PCT: Final = 15  # percent of families; the rest (15) is test
OUTPUT_FIELDS: Final = ("text", "lang", "labels", "family")


class CorpusError(ValueError):
    """A line of raw/*.jsonl is not a valid corpus record."""


def fold(text: str) -> str:
    """Key for exact-duplicate detection: lowercase, whitespace runs folded to one space."""
    return " ".join(text.lower().split())


def bucket(family: str) -> str:
    """Deterministic split of a family id: SHA-256 -> 0..99 -> train/dev/test."""
    n = int.from_bytes(hashlib.sha256(family.encode("utf-8")).digest()[:8], "big") % 100
    if n < TRAIN_PCT:
        return "train"
    if n < TRAIN_PCT + DEV_PCT:
        return "dev"
    return "test"


def validate(obj: object, where: str) -> Record:
    """Check one parsed line; raise CorpusError naming file:line on the first problem."""
    if not isinstance(obj, dict):
        raise CorpusError(f"{where}: not a JSON object")
    missing = [k for k in REQUIRED if k not in obj]
    if missing:
        raise CorpusError(f"{where}: missing fields {missing}")
    text, lang, labels = obj["text"], obj["lang"], obj["labels"]
    if not isinstance(text, str) or not text.strip():
        raise CorpusError(f"{where}: empty or non-string text")
    if lang not in LANGS:
        raise CorpusError(f"{where}: lang {lang!r} not in {LANGS}")
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise CorpusError(f"{where}: labels must be a list of strings")
    bad = sorted(set(labels) - set(CATEGORIES))
    if bad:
        raise CorpusError(f"{where}: unknown labels {bad}")
    if len(set(labels)) != len(labels):
        raise CorpusError(f"{where}: repeated label in {labels}")
    for key in ("family", "kind"):
        if not isinstance(obj[key], str) or not obj[key]:
            raise CorpusError(f"{where}: {key} must be a non-empty string")
    if obj["target"] not in TARGETS:
        raise CorpusError(f"{where}: target {obj['target']!r} not in {TARGETS}")
    return dict(obj)


def read_raw(raw_dir: Path) -> list[tuple[str, Record]]:
    """All records of raw_dir/*.jsonl in file-name then line order, each with its file:line."""
    files = sorted(raw_dir.glob("*.jsonl"))
    if not files:
        raise CorpusError(f"no *.jsonl files in {raw_dir}")
    out: list[tuple[str, Record]] = []
    for path in files:
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path.name}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CorpusError(f"{where}: invalid JSON ({exc.msg})") from exc
            out.append((where, validate(obj, where)))
    return out


def dedupe(records: list[tuple[str, Record]]) -> tuple[list[Record], list[str]]:
    """Keep the first of each exact duplicate (after fold); return kept records and a report."""
    first: dict[str, tuple[str, Record]] = {}
    kept: list[Record] = []
    report: list[str] = []
    for where, rec in records:
        key = fold(rec["text"])
        if key in first:
            w0, r0 = first[key]
            conflict = " LABEL CONFLICT" if sorted(r0["labels"]) != sorted(rec["labels"]) else ""
            report.append(f"dropped {where} (duplicate of {w0}){conflict}: {rec['text'][:70]!r}")
            continue
        first[key] = (where, rec)
        kept.append(rec)
    return kept, report


def split_corpus(raw_dir: Path) -> dict[str, list[Record]]:
    """Validate raw_dir/*.jsonl, drop exact duplicates, and split whole families.

    Returns {"train": [...], "dev": [...], "test": [...]}; each record keeps all raw
    fields (text, lang, labels, family, target, kind). Raises CorpusError on invalid input.
    """
    kept, _ = dedupe(read_raw(raw_dir))
    return _assign(kept)


def _assign(records: list[Record]) -> dict[str, list[Record]]:
    splits: dict[str, list[Record]] = {s: [] for s in SPLITS}
    for rec in records:
        splits[bucket(rec["family"])].append(rec)
    return splits


def stats_table(splits: dict[str, list[Record]]) -> str:
    """Counts per split x language x category (plus benign = no label, and items/families)."""
    cols = ("items", "families", "benign", *CATEGORIES, "multi")
    lines = [f"{'split':<6} {'lang':<5} " + " ".join(f"{c:>8}" for c in cols)]
    for split in (*SPLITS, "all"):
        recs = [r for s in SPLITS for r in splits[s]] if split == "all" else splits[split]
        for lang in (*LANGS, "*"):
            rs = [r for r in recs if lang in ("*", r["lang"])]
            if not rs:
                continue
            c: Counter[str] = Counter()
            for r in rs:
                c["items"] += 1
                c["benign"] += not r["labels"]
                c["multi"] += len(r["labels"]) > 1
                for lab in r["labels"]:
                    c[lab] += 1
            c["families"] = len({r["family"] for r in rs})
            lines.append(f"{split:<6} {lang:<5} " + " ".join(f"{c[k]:>8}" for k in cols))
    return "\n".join(lines)


def write_split(records: list[Record], path: Path) -> None:
    """Write one split as JSONL with the public fields only, in a stable order."""
    rows = sorted(records, key=lambda r: (r["family"], r["text"]))
    with path.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps({k: r[k] for k in OUTPUT_FIELDS}, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--raw-dir", type=Path, default=here / "raw")
    ap.add_argument("--out-dir", type=Path, default=here)
    ap.add_argument("--check", action="store_true", help="validate and report only")
    args = ap.parse_args(argv)
    try:
        records = read_raw(args.raw_dir)
    except CorpusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    kept, report = dedupe(records)
    print(f"read {len(records)} lines, dropped {len(report)} exact duplicates, kept {len(kept)}")
    for line in report:
        print("  " + line)
    splits = _assign(kept)
    print(stats_table(splits))
    if not args.check:
        for name in SPLITS:
            write_split(splits[name], args.out_dir / f"{name}.jsonl")
        print(f"wrote {', '.join(f'{n}.jsonl' for n in SPLITS)} to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
