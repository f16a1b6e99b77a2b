"""The recipe of the small, systematic augmentation of the hand-written corpus.

Why this exists: 335 items of the corpus (6.5% when made, 2.6% now) are machine-made
variants of hand-written items, kept in ``raw/nl_augmented.jsonl`` and
``raw/en_augmented.jsonl`` with kind "augmented" and the *same family* as their source,
so the family split keeps each variant next to its source. This script is the exact
recipe (seeded, deterministic):

- positives: one offensive token (the longest match of a small stem list) is
  obfuscated by one of leetspeak, an asterisk, letter spacing, repeated vowels, a
  known misspelling, or an emoji inside the word;
- Dutch hard negatives: a "sloppy" rewrite (lowercase, punctuation dropped, chat
  abbreviations such as "ff", "mss", "vr").

It never reads the *_augmented files, and it skips the later batches (``*_v2`` to
``*_v5``, written with their own hand-written obfuscations), so adding a batch does not
reshuffle the augmented items the earlier splits were built on.

**Frozen since 2026-11-29.** The second annotation (``DATASHEET.md``, Review) relabelled
some sources, and which items are drawn depends on the labels, so re-running now draws
different variants. The committed augmented files, each item second-annotated like the
rest, are the record; this script documents how they were made. Run it only to start a
new augmentation on purpose (then re-split and retrain).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

RAW: Final = Path(__file__).resolve().parent / "raw"
SEED: Final = 20261128
# file stems never used as sources
SKIP_SUFFIXES: Final = ("_augmented", "_v2", "_v3", "_v3b", "_v4", "_v4b", "_v5")
QUOTAS: Final = {("nl", "pos"): 230, ("en", "pos"): 45, ("nl", "ben"): 60}  # items per pool
HARD_KINDS: Final = ("hard_negative", "quote", "counter_speech", "negation")

CONTAIN: Final = (
    "kanker",
    "tyfus",
    "tering",
    "kut",
    "hoer",
    "slet",
    "trut",
    "lul",
    "mongool",
    "flikker",
    "klootzak",
    "wijf",
    "lijer",
    "fuck",
    "bitch",
    "cunt",
    "slut",
    "whore",
)
PREFIX: Final = (
    "idioot",
    "sukkel",
    "debiel",
    "achterlijk",
    "etter",
    "kreng",
    "vermoord",
    "dood",
    "slaan",
    "steek",
    "neuk",
    "geil",
    "tiet",
    "naakt",
    "moslim",
    "marokkan",
    "turk",
    "neger",
    "zwart",
    "homo",
    "idiot",
    "moron",
    "kill",
    "dead",
    "stupid",
    "prick",
    "asshole",
    "shit",
    "nude",
    "sexy",
    "muslim",
    "gay",
    "dick",
    "bitch",
    "slut",
    "whore",
    "cunt",
    "fuck",
)
LEET: Final = {"a": "@", "e": "3", "i": "1", "o": "0", "s": "$"}
MISSPELL: Final = {
    "kanker": ["kenker", "kankur", "kankah", "kanka"],
    "tyfus": ["tiefus", "tyvus", "tijfus"],
    "tering": ["teering", "tiering", "tèring"],
    "hoer": ["hoe3r", "hoor"],
    "kut": ["kutt", "kudt"],
    "mongool": ["mongol", "mongooool"],
    "klootzak": ["klotezak", "klootsak"],
    "fuck": ["fuk", "fck", "phuck"],
    "bitch": ["biatch", "bich"],
    "idiot": ["idiut", "idjit"],
}
SLOPPY: Final = (
    (r"\beven\b", "ff"),
    (r"\bmisschien\b", "mss"),
    (r"\bin verband met\b", "ivm"),
    (r"\bvoor\b", "vr"),
    (r"\bniet\b", "nie"),
    (r"\bzijn\b", "zn"),
    (r"\bheeft\b", "heef"),
)

rng = random.Random(SEED)


def leet(w: str) -> str:
    return "".join(LEET.get(c, c) if rng.random() < 0.7 else c for c in w)


def star(w: str) -> str:
    if len(w) < 3:
        return w
    vs = [i for i, c in enumerate(w) if c in "aeiouy" and 0 < i < len(w) - 1]
    if not vs:
        return w[0] + "*" * (len(w) - 2) + w[-1]
    i = rng.choice(vs)
    return w[:i] + "*" + w[i + 1 :]


def spaced(w: str) -> str:
    return rng.choice([" ", ".", "-", "_"]).join(w)


def repeat(w: str) -> str:
    vs = [i for i, c in enumerate(w) if c in "aeiou"]
    if not vs:
        return w + w[-1] * 4
    i = rng.choice(vs)
    return w[:i] + w[i] * rng.randint(3, 6) + w[i + 1 :]


def misspell(w: str) -> str:
    for k, opts in MISSPELL.items():
        if k in w:
            return w.replace(k, rng.choice(opts))
    return leet(w)


def emoji(w: str) -> str:
    return w[: len(w) // 2] + rng.choice(["🤬", "💩", "🖕", "😡", "🔥"]) + w[len(w) // 2 :]


TRANSFORMS: Final[tuple[Callable[[str], str], ...]] = (leet, star, spaced, repeat, misspell, emoji)


def obfuscate(text: str) -> str | None:
    """Obfuscate the longest offensive-looking token, or None if there is none."""
    best: re.Match[str] | None = None
    for m in re.finditer(r"[^\W\d_]+", text):
        t = m.group(0).lower()
        if t.startswith(("hoera", "lulu")):
            continue
        hit = any(c in t for c in CONTAIN) or t.startswith(PREFIX)
        if hit and (best is None or len(m.group(0)) > len(best.group(0))):
            best = m
    if best is None:
        return None
    tok = best.group(0)
    new = rng.choice(TRANSFORMS)(tok)
    if new == tok:
        new = star(tok)
    return text[: best.start()] + new + text[best.end() :]


def sloppy(text: str) -> str:
    t = re.sub(r"[.,!?;:]+", "", text.lower())
    for pat, rep in SLOPPY:
        if rng.random() < 0.6:
            t = re.sub(pat, rep, t)
    return t.strip()


def main() -> None:
    rows: list[dict[str, Any]] = []
    for p in sorted(RAW.glob("*.jsonl")):
        if not p.stem.endswith(SKIP_SUFFIXES):
            rows += [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines()]
    seen = {" ".join(r["text"].lower().split()) for r in rows}
    out: dict[str, list[dict[str, Any]]] = {"nl": [], "en": []}
    used_fam: set[str] = set()
    for (lang, pool), n in QUOTAS.items():
        cands = [
            r
            for r in rows
            if r["lang"] == lang
            and r["kind"] != "obfuscated"
            and bool(r["labels"]) == (pool == "pos")
        ]
        if pool == "ben":
            cands = [r for r in cands if r["kind"] in HARD_KINDS]
        rng.shuffle(cands)
        made = 0
        for r in cands:
            if made >= n:
                break
            if r["family"] in used_fam:
                continue
            new = obfuscate(r["text"]) if pool == "pos" else sloppy(r["text"])
            if not new:
                continue
            key = " ".join(new.lower().split())
            if key in seen:
                continue
            seen.add(key)
            used_fam.add(r["family"])
            out[lang].append(
                {
                    "text": new,
                    "lang": lang,
                    "labels": r["labels"],
                    "family": r["family"],
                    "target": r["target"],
                    "kind": "augmented",
                }
            )
            made += 1
    for lang, rs in out.items():
        (RAW / f"{lang}_augmented.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rs), encoding="utf-8"
        )
        print(f"{lang}: {len(rs)} augmented items")


if __name__ == "__main__":
    main()
