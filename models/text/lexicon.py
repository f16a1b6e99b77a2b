"""Dutch-first word and phrase scorer for insult, hate, threat and sexual text.

Why it exists: parents swear in Dutch with disease words ("kanker", "tyfus", "tering"),
glue them to any noun ("kankerjuf") and hide them ("k@nker", "t y f u s", "kaaaanker").
A trained model misses much of that and cannot say which words drove its score. This
scorer is the fast, explainable first line: pure stdlib regexes, thousands of texts per
second, and spans a reviewer can highlight. It only scores; ``moderation.policy`` decides.
The words live in ``lexicon_data.json`` beside this module, written for this project.

Normalisation (:class:`Normaliser`), one pipeline in which every step keeps an offset map:

1. fold: per character NFKD, drop combining marks (diacritics), lowercase, map a few
   Cyrillic/Greek look-alikes; drop zero-width and format characters, emoji and other
   symbols, so ``kan🤬ker`` reads ``kanker``. (NFKD and dropping marks is NFKC's
   compatibility folding plus diacritic stripping, done per character so that offsets
   stay exact.)
2. spaced letters: three or more single letters or digits separated by spaces or
   ``. - _ / |`` are joined: ``t y f u s``, ``k.a.n.k.e.r``, ``k-a-n-k-e-r``.
3. leetspeak: in a token with at least one letter, ``4 -> a, 3 -> e, 1 -> i, 0 -> o,
   5 $ -> s, 7 -> t``; ``! | @`` only inside a word, so "kanker!" keeps its "!" and
   "@juf" stays a mention.
4. repeats: a run of one letter collapses to one letter (``kaaaankerrrr -> kanker``).
   The lexicon is collapsed the same way (``klootzak`` is stored as ``klotzak``).
5. masks: a word with ``*`` inside (``k*nker``, ``f**k``) is filled in when the lexicon
   words that fit it all belong to the same categories; otherwise it is left alone.

Each character of the normalised text keeps the ``[start, end)`` of the original
characters it came from (:attr:`Normalised.origin`), so a match maps back to a span of
the original text that covers the obfuscated word, separators and emoji included.

Rules, applied to the normalised text, always on whole words (so ``borstkanker``,
``assistent``, ``Sussex`` and ``lullig`` never match ``kanker``, ``ass``, ``sex``, ``lul``):

- terms: phrase patterns per category and score tier (syntax in the JSON's ``about``).
- compounds: a free curse stem glued to any noun (``kankerjuf``, ``tyfusschool``,
  ``kut-juf``) is an insult even when the compound is not listed; a bound stem (``pest``,
  ``pokken``, ``tbc``...) only with an insult head (``pestlijer``, not ``pestkop``). A
  compound whose head names a protected group (``kankermarokkaan``) is hate as well.
  Real words are listed exceptions (``kankerbestrijding``, ``kleren``, ``Kutcher``).
- medical context: a bare disease word (``kanker``, ``tyfus``, ``pest``...) scores only
  ``medical_score`` when the word right before it is an article or preposition ("de
  kanker", "aan kanker"), a possession word precedes it within 4 words (heeft, had,
  kreeg, tegen, ...), or a medical word is within 6 words on either side (ziekte, chemo,
  genezen, behandeling, KWF, onderzoek, borst, long, ...); unless the next word is an
  insult head or person noun ("die kanker juf heeft ..." stays an insult).
- safe phrases: matches overlapping a listed idiom are dropped ("de tering naar de
  nering", "een hart onder de riem steken").
- quotation: a match inside quotation marks, in a text with at least three words
  outside them, is multiplied by ``quote_factor`` (0.6): it is probably reported speech
  ('mijn zoon werd "homo" genoemd'). A strong term stays in the review zone
  (0.95 -> 0.57), so quotes cannot be used to slip a curse through.

A category scores the highest score of its matches (0.0 when none); its spans are the
matches' spans, merged; :meth:`LexiconScorer.matches` lists the rules that fired.
Known limits: no negation rule (phrases allow only listed adverbs between their words,
so "ik maak je niet af" does not match, but "I would never kill you" and "ik zou nooit
kankerlijer zeggen" do); context it cannot see ("ik weet waar je woont, ik breng het
pakje langs"); an emoji between two words joins them; ``*`` masks that fit lexicon words
of different categories are left unresolved.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from moderation.domain import Category, CategoryScore, Span, TextScore

DATA_PATH = Path(__file__).with_name("lexicon_data.json")

_L = r"[^\W\d_]"  # one letter, any script
_LB = r"(?<![^\W\d_])"  # not preceded by a letter
_RB = r"(?![^\W\d_])"  # not followed by a letter
_SEP = r"[\W_]+"  # between two words of a phrase
_GAP_WORD = rf"{_SEP}[^\W_]+"  # one word skipped by a ``~N`` gap
_CLAUSE_END = r"(?=\s*(?:[^\w\s]|$))"  # ``$``: end of text or punctuation next

_DROP_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "So", "Sk"})
_SPACED = re.compile(r"(?<![^\W_])[^\W_](?:[ .\-_/|]{1,3}[^\W_](?![^\W_])){2,}")
_TOKEN = re.compile(r"(?:[^\W_]|[@$!|*])+")
_MASKED = re.compile(rf"(?<![\w*]){_L}+(?:\*+{_L}*)+(?![\w*])")
_WORDS = re.compile(r"[^\W_]+")
_LETTER_RUNS = re.compile(rf"{_LB}{_L}+")  # where a pattern may start
_FIRST_LETTERS = re.compile(rf"{_L}+")
_QUOTED = re.compile(  # "..." \u201c...\u201d \u201e...\u201d \u2018...\u2019 \u00ab...\u00bb '...'
    '"[^"\n]{1,80}"|\u201c[^\u201d\n]{1,80}\u201d|\u201e[^\u201d\u201c\n]{1,80}[\u201d\u201c]'
    "|\u2018[^\u2019\n]{1,80}\u2019|\u00ab[^\u00bb\n]{1,80}\u00bb|(?<!\\w)'[^'\n]{1,80}'(?!\\w)"
)
_MIN_WORDS_OUTSIDE_QUOTES = 3
_MAX_MASKED_LEN = 32  # characters; longer ``*`` tokens are not words worth filling in


@dataclass(frozen=True, slots=True)
class Normalised:
    """Normalised text and, per character, the original ``[start, end)`` it came from."""

    text: str
    origin: tuple[Span, ...]

    def span(self, start: int, end: int) -> Span:
        """The original span covered by ``text[start:end]`` (``end > start``)."""
        return (self.origin[start][0], self.origin[end - 1][1])


@dataclass(frozen=True, slots=True)
class LexiconMatch:
    """One rule that fired: its category, score, span in the original text, and why."""

    category: Category
    score: float
    span: Span
    rule: str  # "term:<pattern>", "compound:<stem>", "curse:<stem>" or "medical:<stem>"


_Chars = tuple[list[str], list[Span]]  # characters and their origins, kept in step


@dataclass(frozen=True)
class Normaliser:
    """The one normalisation pipeline (see the module docstring), with its offset map."""

    leet: Mapping[str, str]
    leet_inner_only: str
    confusables: Mapping[str, str]
    # lexicon word -> its categories; ``*`` masks are filled from these words
    vocabulary: Mapping[str, frozenset[Category]] = field(default_factory=dict)
    prefixes: frozenset[str] = frozenset()  # vocabulary words that may start a compound

    def normalise(self, text: str) -> Normalised:
        chars = self._fold(text)
        chars = self._join_spaced(chars)
        chars = self._unleet(chars)
        chars = _collapse(chars)
        chars = self._unmask(chars)
        return Normalised("".join(chars[0]), tuple(chars[1]))

    def canon(self, word: str) -> str:
        """A lexicon word as the normalised text spells it (folded, repeats collapsed)."""
        return "".join(_collapse(self._fold(word))[0])

    def _fold(self, text: str) -> _Chars:
        out: list[str] = []
        origin: list[Span] = []
        for i, ch in enumerate(text):
            if ch.isascii():
                folded = ch.lower()
            elif unicodedata.category(ch) in _DROP_CATEGORIES:
                continue
            else:
                decomposed = unicodedata.normalize("NFKD", ch)
                folded = "".join(
                    c for c in decomposed if not unicodedata.category(c).startswith("M")
                )
                folded = "".join(self.confusables.get(c, c) for c in folded.lower())
            for c in folded:
                out.append(c)
                origin.append((i, i + 1))
        return out, origin

    @staticmethod
    def _join_spaced(chars: _Chars) -> _Chars:
        text = "".join(chars[0])
        drop = {
            i
            for m in _SPACED.finditer(text)
            for i in range(m.start(), m.end())
            if not text[i].isalnum()
        }
        if not drop:
            return chars
        keep = [i for i in range(len(text)) if i not in drop]
        return [chars[0][i] for i in keep], [chars[1][i] for i in keep]

    def _unleet(self, chars: _Chars) -> _Chars:
        out = list(chars[0])
        for m in _TOKEN.finditer("".join(out)):
            token = m.group()
            if not any(c.isalpha() for c in token):
                continue
            for j, c in enumerate(token):
                if c not in self.leet:
                    continue
                inner = 0 < j < len(token) - 1 and token[j - 1].isalnum() and token[j + 1].isalnum()
                if inner or c not in self.leet_inner_only:
                    out[m.start() + j] = self.leet[c]
        return out, chars[1]

    def _unmask(self, chars: _Chars) -> _Chars:
        text = "".join(chars[0])
        if "*" not in text or not self.vocabulary:
            return chars
        out: list[str] = []
        origin: list[Span] = []
        last = 0
        for m in _MASKED.finditer(text):
            fills = self._fill(m.group())
            if fills is None:
                continue
            out += chars[0][last : m.start()]
            origin += chars[1][last : m.start()]
            runs = iter(fills)
            for piece in re.finditer(r"\*+|[^*]+", m.group()):
                start, end = m.start() + piece.start(), m.start() + piece.end()
                if piece.group().startswith("*"):
                    fill = next(runs)
                    out += list(fill)
                    origin += [(chars[1][start][0], chars[1][end - 1][1])] * len(fill)
                else:
                    out += chars[0][start:end]
                    origin += chars[1][start:end]
            last = m.end()
        out += chars[0][last:]
        origin += chars[1][last:]
        return out, origin

    def _fill(self, token: str) -> tuple[str, ...] | None:
        """The letters hidden by each ``*`` run, when the lexicon words that fit agree."""
        letters = sum(c != "*" for c in token)
        if letters < 2 or letters < token.count("*") or len(token) > _MAX_MASKED_LEN:
            return None
        pattern = re.compile(
            "".join(
                f"({_L}{{1,{len(run)}}})" if run.startswith("*") else re.escape(run)
                for run in re.findall(r"\*+|[^*]+", token)
            )
        )
        found: dict[str, tuple[str, ...]] = {}
        for word in self.vocabulary:
            options = [word]
            tail = token[len(word) :]
            if word in self.prefixes and tail and "*" not in tail:
                options.append(word + tail)  # a curse stem glued to the token's own tail
            for option in options:
                hit = pattern.fullmatch(option)
                if hit:
                    found[word] = hit.groups()
        if not found or len({self.vocabulary[w] for w in found}) != 1:
            return None
        stars = token.count("*")  # prefer the word that fills every star: f**k is fuck
        return found[min(found, key=lambda w: (len("".join(found[w])) != stars, w))]


def _collapse(chars: _Chars) -> _Chars:
    out: list[str] = []
    origin: list[Span] = []
    for c, span in zip(chars[0], chars[1], strict=True):
        if out and c == out[-1] and c.isalpha():
            origin[-1] = (origin[-1][0], span[1])
        else:
            out.append(c)
            origin.append(span)
    return out, origin


_Hit = tuple[Category, float, Span, str]  # a match in normalised coordinates, with its rule
_Sets = Mapping[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class _Rule:
    """One compiled pattern of the JSON, tried only where its first word occurs."""

    category: Category
    score: float
    pattern: str
    regex: re.Pattern[str]


@dataclass(frozen=True, slots=True)
class _Terms:
    """The phrase patterns, indexed by their first word so a text is scanned once."""

    by_first_word: Mapping[str, tuple[_Rule, ...]]
    by_prefix: tuple[tuple[str, _Rule], ...]  # patterns starting with ``word*``
    prefixes: tuple[str, ...]  # the prefixes of ``by_prefix``, for one quick test

    def hits(self, text: str) -> Iterable[_Hit]:
        for word in _LETTER_RUNS.finditer(text):
            rules = self.by_first_word.get(word.group(), ())
            if word.group().startswith(self.prefixes):
                rules += tuple(r for p, r in self.by_prefix if word.group().startswith(p))
            for rule in dict.fromkeys(rules):
                m = rule.regex.match(text, word.start())
                if m:
                    yield rule.category, rule.score, m.span(), f"term:{rule.pattern}"


@dataclass(frozen=True, slots=True)
class _Stem:
    stem: str
    bare: float
    compound: float
    free: bool
    medical: bool


@dataclass(frozen=True)
class _Curses:
    """The curse stems: bare words, compounds, and the medical-context exception."""

    stems: Mapping[str, _Stem]
    bare: re.Pattern[str]  # a stem as a whole word
    compound: re.Pattern[str]  # a stem glued (or hyphened) to a word of 3+ letters
    insult_heads: tuple[str, ...]
    person_nouns: frozenset[str]
    group_heads: tuple[str, ...]
    exceptions: tuple[str, ...]
    hate_compound_score: float
    medical_score: float
    medical_adjacent: frozenset[str]
    medical_before: frozenset[str]
    medical_around: frozenset[str]
    before_window: int
    around_window: int

    def hits(self, text: str) -> Iterable[_Hit]:
        yield from self._compounds(text)
        words: list[re.Match[str]] | None = None
        for m in self.bare.finditer(text):
            stem = self.stems[m.group()]
            if stem.medical:
                words = words if words is not None else list(_WORDS.finditer(text))
                if self._medical(text, m, words):
                    yield Category.INSULT, self.medical_score, m.span(), f"medical:{stem.stem}"
                    continue
            yield Category.INSULT, stem.bare, m.span(), f"curse:{stem.stem}"

    def _compounds(self, text: str) -> Iterable[_Hit]:
        for m in self.compound.finditer(text):
            stem, head = self.stems[m.group(1)], m.group(2)
            if (m.group(1) + head).startswith(self.exceptions):
                continue
            # collapsing repeats may have eaten the head's first letter: kut+turk -> kuturk
            heads = (head, m.group(1)[-1] + head)
            group = any(h.startswith(self.group_heads) for h in heads)
            if not (stem.free or group or any(h.startswith(self.insult_heads) for h in heads)):
                continue
            yield Category.INSULT, stem.compound, m.span(), f"compound:{stem.stem}"
            if group:
                yield Category.HATE, self.hate_compound_score, m.span(), f"compound:{stem.stem}"

    def _medical(self, text: str, m: re.Match[str], words: list[re.Match[str]]) -> bool:
        """Whether a bare disease word reads as the illness (see the module docstring)."""
        index = next(i for i, w in enumerate(words) if w.start() <= m.start() < w.end())
        following = words[index + 1] if index + 1 < len(words) else None
        if following is not None and re.fullmatch(r"[\s-]+", text[m.end() : following.start()]):
            head = following.group()
            if head.startswith(self.insult_heads) or head in self.person_nouns:
                return False
        if index > 0 and words[index - 1].group() in self.medical_adjacent:
            return True
        before = {w.group() for w in words[max(0, index - self.before_window) : index]}
        around = {
            w.group()
            for w in words[max(0, index - self.around_window) : index + self.around_window + 1]
        }
        return bool(before & self.medical_before or around & self.medical_around)


@dataclass(frozen=True)
class Lexicon:
    """The compiled word data: build it with :meth:`load`, share it between scorers."""

    normaliser: Normaliser
    terms: _Terms
    curses: _Curses
    safe: re.Pattern[str] | None  # idioms that cancel any match they overlap
    quote_factor: float

    @classmethod
    def load(cls, path: Path = DATA_PATH) -> Lexicon:
        """Read and compile the JSON; a bad score or an unknown ``@set`` is a ValueError."""
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        norm = data["normalisation"]
        plain = Normaliser(norm["leet"], norm["leet_inner_only"], norm["confusables"])
        sets = {name: tuple(words) for name, words in data["sets"].items()}
        curses = _load_curses(data["curses"], data["medical_context"], plain)
        terms, vocabulary = _load_terms(data["terms"], sets, plain)
        for stem in curses.stems:
            vocabulary.setdefault(stem, set()).add(Category.INSULT)
        safe = "|".join(_compile(p, sets, plain) for p in data["safe_phrases"])
        return cls(
            normaliser=Normaliser(
                plain.leet,
                plain.leet_inner_only,
                plain.confusables,
                {w: frozenset(c) for w, c in vocabulary.items()},
                frozenset(curses.stems),
            ),
            terms=terms,
            curses=curses,
            safe=re.compile(safe) if safe else None,
            quote_factor=_check_score(data["quote_factor"]),
        )


def _load_terms(
    levels_by_category: Mapping[str, Any], sets: _Sets, plain: Normaliser
) -> tuple[_Terms, dict[str, set[Category]]]:
    """The indexed patterns, and the one-word terms with their categories."""
    by_first_word: dict[str, list[_Rule]] = {}
    by_prefix: list[tuple[str, _Rule]] = []
    vocabulary: dict[str, set[Category]] = {}
    for name, levels in levels_by_category.items():
        category = Category(name)
        for level in levels:
            score = _check_score(level["score"])
            for pattern in level["patterns"]:
                rule = _Rule(category, score, pattern, re.compile(_compile(pattern, sets, plain)))
                for first in _alternatives(pattern.split()[0], sets):
                    # indexed under the first letter run: "homo's" is found as "homo"
                    key = _FIRST_LETTERS.match(plain.canon(first.rstrip("*")))
                    if key is None:
                        raise ValueError(f"lexicon pattern must start with a letter: {pattern!r}")
                    if first.endswith("*"):
                        by_prefix.append((key.group(), rule))
                    else:
                        by_first_word.setdefault(key.group(), []).append(rule)
            for word in _single_words(level["patterns"], sets, plain):
                vocabulary.setdefault(word, set()).add(category)
    terms = _Terms(
        by_first_word={w: tuple(dict.fromkeys(rules)) for w, rules in by_first_word.items()},
        by_prefix=tuple(by_prefix),
        prefixes=tuple({p for p, _ in by_prefix}),
    )
    return terms, vocabulary


def _load_curses(
    curses: Mapping[str, Any], medical: Mapping[str, Any], plain: Normaliser
) -> _Curses:
    canon = plain.canon
    stems = {canon(s["stem"]): _Stem(**s) for s in curses["stems"]}
    for stem in stems.values():
        _check_score(stem.bare)
        _check_score(stem.compound)
    alt = "|".join(sorted(map(re.escape, stems), key=len, reverse=True))
    return _Curses(
        stems=stems,
        bare=re.compile(rf"{_LB}(?:{alt}){_RB}"),
        compound=re.compile(rf"{_LB}({alt})-?({_L}{{3,}})"),
        insult_heads=tuple(map(canon, curses["insult_heads"])),
        person_nouns=frozenset(map(canon, curses["person_nouns"])),
        group_heads=tuple(map(canon, curses["group_heads"])),
        exceptions=tuple(map(canon, curses["exceptions"])),
        hate_compound_score=_check_score(curses["hate_compound_score"]),
        medical_score=_check_score(curses["medical_score"]),
        medical_adjacent=frozenset(map(canon, medical["adjacent"])),
        medical_before=frozenset(map(canon, medical["before"])),
        medical_around=frozenset(map(canon, medical["around"])),
        before_window=int(medical["before_window"]),
        around_window=int(medical["around_window"]),
    )


def _check_score(value: object) -> float:
    if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ValueError(f"lexicon score must be in [0, 1], got {value!r}")
    return float(value)


def _alternatives(token: str, sets: _Sets) -> list[str]:
    words: list[str] = []
    for alt in token.split("|"):
        if alt.startswith("@"):
            if alt[1:] not in sets:
                raise ValueError(f"lexicon pattern uses unknown set {alt!r}")
            words.extend(sets[alt[1:]])
        else:
            words.append(alt)
    return words


def _compile(pattern: str, sets: _Sets, norm: Normaliser) -> str:
    """One pattern of the JSON mini-syntax as a regex over normalised text."""
    out = _LB
    first = True
    for token in pattern.split():
        if token.startswith("~"):
            out += f"(?:{_GAP_WORD}){{0,{int(token[1:] or 2)}}}"
            continue
        if token == "$":
            out += _CLAUSE_END
            continue
        optional = token.endswith("?")
        regexes = {
            re.escape(norm.canon(w[:-1])) + f"{_L}*"
            if w.endswith("*")
            else re.escape(norm.canon(w))
            for w in _alternatives(token.rstrip("?"), sets)
        }
        alt = "(?:" + "|".join(sorted(regexes, key=len, reverse=True)) + ")"
        part = alt if first else _SEP + alt
        out += f"(?:{part})?" if optional else part
        first = False
    if first:
        raise ValueError(f"lexicon pattern has no word: {pattern!r}")
    return out + _RB


def _single_words(patterns: Iterable[str], sets: _Sets, norm: Normaliser) -> Iterable[str]:
    """The plain words of one-word patterns: what a ``*`` mask may stand for."""
    for pattern in patterns:
        if " " not in pattern.strip():
            for word in _alternatives(pattern.strip(), sets):
                if not word.endswith("*") and len(word) >= 3:
                    yield norm.canon(word)


@cache
def default_lexicon() -> Lexicon:
    """The lexicon shipped beside this module, loaded once per process."""
    return Lexicon.load()


class LexiconScorer:
    """A :class:`~moderation.domain.TextScorer` over the Dutch/English lexicon."""

    name = "lexicon"

    def __init__(self, lexicon: Lexicon | None = None) -> None:
        self.lexicon = lexicon or default_lexicon()

    def score(self, texts: Sequence[str]) -> list[TextScore]:
        return [self.score_one(text) for text in texts]

    def score_one(self, text: str) -> TextScore:
        by_category: dict[Category, list[LexiconMatch]] = {c: [] for c in Category}
        for match in self.matches(text):
            by_category[match.category].append(match)
        return TextScore(
            scorer=self.name,
            categories={
                category: CategoryScore(
                    category,
                    max((m.score for m in found), default=0.0),
                    _merge(m.span for m in found),
                )
                for category, found in by_category.items()
            },
        )

    def matches(self, text: str) -> list[LexiconMatch]:
        """Every rule that fired on ``text``, in order: the explanation of a score."""
        lex = self.lexicon
        norm = lex.normaliser.normalise(text)
        hits = [*lex.terms.hits(norm.text), *lex.curses.hits(norm.text)]
        if lex.safe is not None:
            safe = [m.span() for m in lex.safe.finditer(norm.text)]
            hits = [h for h in hits if not any(s < h[2][1] and h[2][0] < e for s, e in safe)]
        quoted = _quoted_regions(text)
        matches = []
        for category, score, (start, end), rule in hits:
            span = norm.span(start, end)
            if any(qs <= span[0] and span[1] <= qe for qs, qe in quoted):
                score *= lex.quote_factor
            matches.append(LexiconMatch(category, round(score, 4), span, rule))
        return sorted(matches, key=lambda m: (m.span, m.category))


def _quoted_regions(text: str) -> list[Span]:
    """Quoted stretches of ``text``, when enough words stand outside the quotes."""
    regions = [m.span() for m in _QUOTED.finditer(text)]
    if not regions:
        return []
    outside = text
    for start, end in reversed(regions):
        outside = outside[:start] + " " + outside[end:]
    if len(_WORDS.findall(outside)) < _MIN_WORDS_OUTSIDE_QUOTES:
        return []
    return regions


def _merge(spans: Iterable[Span]) -> tuple[Span, ...]:
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return tuple(merged)
