"""Personal data and sensitive details about a child, found in the text of a post.

Why it exists: the school policy (POLICY.md rule 5) keeps personal matters about a child
out of the class group: they belong in the 1:1 kindgesprek. A post in a group channel
that carries a phone number, an e-mail or home address, a BSN, a bank account number,
or a health, behaviour or family detail about a named child is held, with the advice to
use the kindgesprek. This module only *finds* such passages, with ``[start, end)`` spans
into the original text a reviewer can highlight; ``moderation.policy`` decides what a
finding means in which channel. Pure stdlib regexes, thousands of texts per second.

Public API: :func:`find_privacy`.

Rules, per :class:`~moderation.domain.PrivacyKind`:

PHONE
    A chain of digit groups joined by single separators (space, ``-``, ``.``, ``/``,
    ``(0)``), optionally led by ``+CC`` or ``0031``, is cut into numbers from left to
    right: a Dutch number is 10 digits after ``+31``/``0031`` is rewritten to ``0``
    (mobile ``06``, landlines with 3- or 4-digit area codes, ``085``/``088`` and the
    other non-geographic ranges); ``0800``/``0900``/``0906``/``0909`` numbers have 8 or
    11 digits. A ``+`` number of another country counts when it has 8-15 digits in all.
    Before the search, dates (``12-03-2025``, ``2025-03-12``, ``1-3-25``), school years
    (``2024-2025``), clock times (``08.30``, ``8:30``), amounts (``€ 12,50``,
    ``1.234,56 euro``) and anything shaped like an IBAN (valid or not: ``NL92 ABNA 0417
    1643 00`` holds ``0417164300``) are masked, so they never join a chain. A number in
    ``allowed_numbers`` (the school's own, written in any way) is not reported: both
    sides are compared as national digits (``+31 (0)10 ...`` and ``0031 10 ...`` are
    ``010...``). Limits: foreign numbers written with ``00`` instead of ``+`` (other
    than ``0031``) and Dutch numbers missing their leading zero are not found.
EMAIL
    ``local@domain.tld``, and the bracketed disguises ``naam [at] school [dot] nl``,
    ``naam(at)school(punt)nl``, ``naam{apenstaartje}school.nl``. Limits: the unbracketed
    ``naam at school dot nl`` and spaces around a bare ``@`` are not matched (they read
    like English prose and @-mentions).
ADDRESS
    A street word ending in a Dutch street suffix (``straat``, ``laan``, ``weg``,
    ``plein``, ``gracht``, ``kade``, ``dijk``, ``singel``, ``hof``, ``pad``, ``steeg``,
    ``dreef``, ``plantsoen``, ``park``, ...) followed by a house number and an optional
    addition (``3a``, ``14-2``, ``12 bis``, ``7 hs``), with the capitalised words,
    titles and particles before it (``Burgemeester de Withstraat 14-2``, ``Van
    Goghlaan 3a``, ``Laan van Meerdervoort 12``); and a postcode ``1234 AB`` /
    ``1234AB`` (capital letters, not SA/SD/SS) with the town after it. A street and the
    postcode right after it form one span. A lowercase street word counts only when it
    is not a common noun of school life (``schoolplein``, ``fietspad``, ``speeltuin``...)
    and not preceded by ``het``/``een``/``ons``...; any street is dropped when the number
    is followed by a count noun (``2 keer``, ``3 kinderen``, ``5 minuten``). ``groep 5``
    and ``lokaal 12`` have no street suffix and never match. Limits: streets without a
    suffix (``Markt``-less names like ``Vinkenburg 3``, ``Het Rond 4``), lowercase
    postcodes and addresses abroad are missed.
BSN
    Nine digits, also as ``1234.56.789``, ``123 456 789`` or ``12.345.67.89``, that pass
    the elfproef (``9*d1 + 8*d2 + ... + 2*d8 - d9`` divisible by 11, not all zeros).
    Nine digits that fail it are not a BSN. Limits: one random 9-digit number in 11
    passes, so an order number can look like a BSN; numbers right after a reference word
    (``bestelnummer``, ``factuur``, ``kenmerk``, ``ref.``, ``#``...) are skipped, for
    PHONE as well.
IBAN
    Two letters, two check digits and up to 30 letters and digits (in groups of four or
    not, any case) that pass the ISO 13616 mod-97 check and, for the countries in
    :data:`IBAN_LENGTHS`, have that country's length. An IBAN in ``allowed_numbers``
    (the school's account for the parental contribution) is not reported.
CHILD_HEALTH, CHILD_BEHAVIOUR, CHILD_FAMILY
    A *child reference* and a keyword of the kind in the same sentence, at most
    :data:`MAX_CHILD_DISTANCE` words apart. A child reference is a name from
    ``student_names`` (each full name and its first name, case-insensitively and
    word-bounded, except names that are also ordinary words, like ``Ben``, ``Roos``,
    ``Max``, ``Job``, which must be capitalised; a name right after ``juf``, ``meester``,
    ``mama``, ``oma``... is an adult and not counted), or an own-child phrase (``mijn
    zoon``, ``ons dochtertje``, ``onze jongste``, ``my son``...): a parent telling the
    whole group "mijn zoon heeft ADHD" exposes their child just as well, so it is a
    finding too. A sentence that starts with ``hij``/``zij``/``ze``/``haar`` (within its
    first four words) right after a sentence with a child reference inherits it
    ("Ik maak me zorgen om Emma. Haar ouders gaan scheiden."). A keyword is linked to the
    nearest reference before it (the subject, in Dutch word order), else to the nearest
    after it ("Jeugdzorg is betrokken bij Julia"). The span runs from the child reference
    to the keyword (whichever comes first), so it shows the link; spans of one kind that
    overlap are merged. Without a child reference a sentence is never a
    finding ("er gaat griep rond in de klas", "ADHD is het thema van de ouderavond").
    The keywords (:data:`HEALTH_TERMS`, :data:`BEHAVIOUR_TERMS`, :data:`FAMILY_TERMS`)
    include mild illness ("Lotte is ziek"): in a group channel that is still a detail
    about one child; the sick-report *notice* is ``models.text.notices``. Labels such as
    ``hoogbegaafd`` and ``dyslexie`` count as health (special needs). Limits: without
    ``student_names`` only own-child phrases are references; negation is not read ("Sem
    heeft geen ADHD" is a finding); idioms with a keyword ("Sem is ziek van de regen")
    are findings; the pronoun carry-over reaches one sentence only.

Overlaps: PHONE, EMAIL, IBAN, BSN and ADDRESS findings never overlap each other; on a
clash the earlier kind in :data:`_PRIORITY` wins (the account number inside an IBAN is
not also a phone number). Child findings may overlap them. Findings are sorted by start.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from moderation.domain import PrivacyFinding, PrivacyKind, Span

__all__ = [
    "BEHAVIOUR_TERMS",
    "COMMON_WORD_NAMES",
    "FAMILY_TERMS",
    "HEALTH_TERMS",
    "IBAN_LENGTHS",
    "MAX_CHILD_DISTANCE",
    "Terms",
    "find_privacy",
    "is_valid_bsn",
    "is_valid_iban",
    "normalise_phone",
]

MAX_CHILD_DISTANCE = 12  # words between a child reference and a sensitive keyword


def _words(text: str) -> frozenset[str]:
    """A word list written as one string (easier to read and to extend)."""
    return frozenset(text.split())


_PRIORITY: tuple[PrivacyKind, ...] = (
    PrivacyKind.IBAN,
    PrivacyKind.EMAIL,
    PrivacyKind.PHONE,
    PrivacyKind.BSN,
    PrivacyKind.ADDRESS,
)

# --------------------------------------------------------------------------- masking

_MASKS = re.compile(
    r"""
    (?=[\d€Ee])(?:
    (?<![\d.,])(?:19|20)\d{2}-\d{1,2}-\d{1,2}(?!\d)                    # 2025-03-12
  | (?<![\d.,])\d{1,2}([-./])\d{1,2}\1(?:19|20)\d{2}(?!\d)            # 12-03-2025
  | (?<![\d.,])\d{1,2}([-./])\d{1,2}\2\d{2}(?![\d]|[-./ ]\d)          # 1-3-25
  | (?<![\d.,])(?:19|20)\d{2}\s?[-/\u2013]\s?(?:(?:19|20)\d{2}|\d{2})(?!\d)  # 2024-2025
  | (?<![\d.,])\d{1,2}[.:]\d{2}(?!\d|[.:]\d)                          # 08.30, 8:30
  | (?:€|\bEUR\b|\beuro\b)\s?-?\d[\d.,]*(?:-|,-)?                       # € 12,50
  | (?<![\d.,])\d[\d.,]*\s?(?:,-|€|(?i:euro|eur)\b)                    # 1.234,56 euro
    )""",
    re.VERBOSE,
)


_IBAN_SHAPE = re.compile(  # valid or not: its account number is no phone number or BSN
    r"(?<![\w])[A-Za-z]{2}\d{2}(?:[ \u00a0]?[A-Za-z0-9]{4}){2,7}(?:[ \u00a0]?[A-Za-z0-9]{1,3})?"
    r"(?![A-Za-z0-9])"
)


def _masked(text: str) -> str:
    """``text`` with dates, times, amounts and IBANs replaced by ``#`` (same length)."""
    text = _MASKS.sub(lambda m: "#" * (m.end() - m.start()), text)
    return _IBAN_SHAPE.sub(lambda m: "#" * (m.end() - m.start()), text)


_REFERENCE_BEFORE = re.compile(
    r"""(?ix)
    (?:
        \b(?:order|bestel(?:ling)?|factuur|klant|referentie|kenmerk|dossier|lid|pakket
          |zending|track(?:ing)?|artikel|polis|transactie|betaal|betalings|invoice|ticket
          |zaak|registratie|boeking|reservering|bon|kassabon|account)
          (?:nummer|nr\.?|code|id)?
      | \b(?:ref|nr|no|kenm)\.?
      | \#
    )
    \s*(?:is\s+)?[:.#]?\s*$
    """
)


def _after_reference_word(text: str, start: int) -> bool:
    return _REFERENCE_BEFORE.search(text, max(0, start - 40), start) is not None


# --------------------------------------------------------------------------- phones

_PHONE_SEP = r"(?:[ \u00a0]?[-./][ \u00a0]?|[ \u00a0]|(?<=\))|(?=\())"
_PHONE_GROUP = r"(?:\+\d+|\(\d{1,4}\)|\d+)"
_PHONE_CHAIN = re.compile(rf"(?<![\w+#(]){_PHONE_GROUP}(?:{_PHONE_SEP}{_PHONE_GROUP})*(?![\w#])")
_GROUP = re.compile(r"\+\d+|\(\d{1,4}\)|\d+")
_SHORT_SERVICE = ("0800", "0900", "0906", "0909")  # 8 or 11 digits
_MAX_E164 = 15  # digits, country code included


def normalise_phone(number: str) -> str:
    """A phone number as national digits: ``+31 (0)6-1234 5678`` -> ``0612345678``.

    Numbers of other countries keep their ``+`` and country code; anything else is its
    digits.
    """
    raw = number.strip().replace("(0)", "", 1)
    digits = re.sub(r"\D", "", raw)
    if raw.startswith("+"):
        return "0" + digits[2:] if digits.startswith("31") else "+" + digits
    if digits.startswith("0031"):
        return "0" + digits[4:]
    return digits


@dataclass(frozen=True, slots=True)
class _Group:
    start: int
    end: int
    token: str

    @property
    def digits(self) -> str:
        return "".join(c for c in self.token if c.isdigit())


def _national_targets(number: str) -> tuple[int, ...]:
    return (8, 11) if number[:4] in _SHORT_SERVICE else (10,)


def _phone_from(groups: list[_Group], i: int) -> tuple[int, str] | None:
    """The longest valid number that starts at group ``i``: (last group index, digits)."""
    first = groups[i]
    digits = first.digits
    plus = first.token.startswith("+")
    j = i
    country_code = plus or digits.startswith("0031")
    if country_code:
        international = digits if plus else digits[2:]
        if not international.startswith("31"):
            return _foreign_from(groups, i) if plus else None
        rest = international[2:]
        number = "0" + (rest[1:] if rest.startswith("0") else rest)  # "+31 06..." happens
        if j + 1 < len(groups) and groups[j + 1].token == "(0)":
            j += 1
    elif first.token != "(0)" and digits.startswith("0"):
        number = digits
    else:
        return None
    best: tuple[int, str] | None = None
    while True:
        if len(number) >= 2 and number[1] == "0":
            return None  # 00... is an international prefix, not a national number
        if len(number) >= 4:
            targets = _national_targets(number)
            if len(number) > max(targets):
                break
            if len(number) in targets:
                best = (j, number)
        j += 1
        if j >= len(groups) or groups[j].token.startswith("+"):
            break
        more = groups[j].digits
        if country_code and number == "0" and more.startswith("0"):
            more = more[1:]  # "+31 06 ...": the 0 after the country code is written twice
        number += more
    return best


def _foreign_from(groups: list[_Group], i: int) -> tuple[int, str] | None:
    number, best = groups[i].digits, None
    j = i
    while len(number) <= _MAX_E164:
        if len(number) >= 8:
            best = (j, "+" + number)
        j += 1
        if j >= len(groups) or groups[j].token.startswith("+"):
            break
        number += groups[j].digits
    return best


def _find_phones(text: str, masked: str, allowed: frozenset[str]) -> Iterator[Span]:
    for chain in _PHONE_CHAIN.finditer(masked):
        groups = [
            _Group(chain.start() + g.start(), chain.start() + g.end(), g.group())
            for g in _GROUP.finditer(chain.group())
        ]
        i = 0
        while i < len(groups):
            found = _phone_from(groups, i)
            if found is None:
                i += 1
                continue
            j, number = found
            start, end = groups[i].start, groups[j].end
            if number not in allowed and not _after_reference_word(text, start):
                yield (start, end)
            i = j + 1


# --------------------------------------------------------------------------- e-mail

_AT = r"(?:@|\s*[\[({<]\s*(?:at|@|apenstaartje)\s*[\])}>]\s*)"
_DOT = r"(?:\.|\s*[\[({<]\s*(?:dot|punt|\.)\s*[\])}>]\s*)"
_EMAIL = re.compile(
    rf"(?<![\w.%+-])[\w%+-]+(?:\.[\w%+-]+)*{_AT}[^\W_](?:[\w-]*\w)?"
    rf"(?:{_DOT}[^\W_](?:[\w-]*\w)?)*{_DOT}[a-z]{{2,24}}(?![\w@])",
    re.IGNORECASE,
)

# --------------------------------------------------------------------------- addresses

_STREET_SUFFIXES = _words(
    "straat straatje laan laantje weg weggetje plein pleintje gracht kade dijk singel hof "
    "hofje pad steeg steegje dreef plantsoen park markt dam wal haven baan veld erf allee "
    "boulevard akker kamp brink vliet wetering vaart kanaal burcht hoeve zoom weide gaarde "
    "tuin tuinen hoven promenade galerij dwarsstraat kwartier rade oever"
)
_HOUSE_NUMBER = (
    r"(?P<num>[1-9]\d{0,4})"
    r"(?P<add>[ \u00a0]?-[ \u00a0]?\d{1,3}|/\d{1,3}|-?[a-zA-Z](?![a-zA-Z])|[ \u00a0][A-Z](?!\w)"
    r"|[ \u00a0]?(?:hs|bis|bg|huis|boven|zw|I{1,3})(?!\w))?"
    r"(?!\w|[.,:]\d|-\d)"
)
_SUFFIX_TUPLE = tuple(sorted(_STREET_SUFFIXES))
_STREET = re.compile(  # any word before a number; its suffix is checked in Python (faster)
    rf"(?<![\w'\u2019-])(?P<word>[^\W\d_](?:[^\W\d_]|[-'\u2019](?=[^\W\d_]))*)"
    rf"[ \u00a0]+{_HOUSE_NUMBER}"
)
_STREET_FIRST = re.compile(  # the suffix word first: "Laan van Meerdervoort 12"
    r"(?<![\w-])(?P<word>(?:Laan|Plein|Weg|Kade|Dijk|Singel|Gracht|Straat|Dreef|Hof|Park|Markt)"
    r"(?:[ \u00a0]+(?:van|der|de|den|het|'t|op|aan|ter|ten|te|in|bij)){1,3}"
    r"(?:[ \u00a0]+[A-Z][\w'-]*){1,2})"
    rf"[ \u00a0]+{_HOUSE_NUMBER}"
)
_POSTCODE = re.compile(
    r"(?<![\w-])[1-9]\d{3}[ \u00a0]?(?!SA|SD|SS)[A-Z]{2}(?!\w)"
    r"(?P<town>[ \u00a0]+(?:'s[- ]|Den |De |Het |Sint |St\. |Nieuw-|Oud-)?[A-Z][^\W\d_]+"
    r"(?:-[A-Za-z][^\W\d_]+)*"
    r"(?:[ \u00a0]+(?:aan|op|bij)[ \u00a0]+(?:de[n]?[ \u00a0]+|het[ \u00a0]+)?[A-Z][^\W\d_]+)?)?"
)
_PARTICLES = _words("van de der den het 't ter ten te op aan in bij v.d. v/d")
_LEADING_PREPOSITIONS = _words(
    "aan op in bij naar via richting langs naast tegenover vanaf tot om achter voor over te"
)
_NOT_A_STREET_PREFIX = _words(
    """
    ik wij we ons onze mijn je jij u uw hij zij ze het dit dat die deze er hier daar
    adres nieuw nieuwe woonadres postadres bezoekadres afleveradres wonen woon woont
    verhuisd verhuizen welkom graag hoi hallo beste groet groeten tel telefoon email mail
    locatie plaats feest feestje verjaardag partijtje ophalen brengen afspraak adresgegevens
    maandag dinsdag woensdag donderdag vrijdag zaterdag zondag vandaag morgen gisteren
    januari februari maart april mei juni juli augustus september oktober november december
    is zijn was en of maar dus want ook nog al wel niet
    """
)
_COMMON_STREET_NOUNS = _words(
    """
    straat straatje laan weg plein pleintje schoolplein speelplein dorpsplein marktplein
    pad fietspad voetpad wandelpad zandpad tuinpad bospad hof kerkhof schoolhof binnenhof
    park pretpark speelpark attractiepark stadspark markt vismarkt weekmarkt jaarmarkt
    baan glijbaan ijsbaan atletiekbaan loopbaan racebaan rijbaan skatebaan speelbaan
    veld voetbalveld sportveld grasveld speelveld trapveld hockeyveld
    tuin speeltuin moestuin dierentuin schooltuin achtertuin voortuin kruidentuin
    haven jachthaven dam kade wal dijk singel gracht snelweg zijweg omweg terugweg heenweg
    allee erf hoeve kamp zomerkamp akker kanaal weide vaart wetering oever rivieroever
    """
)
_DETERMINERS = _words(
    "het een dit dat deze die ons onze jullie hun mijn je jouw uw elk ieder welk welke "
    "the a an our my"
)
_COUNT_NOUN_AFTER = re.compile(
    r"""(?ix)[ \u00a0]*(?:
        keer|keren|x|maal|uur|u|min|minuten|minuut|minuutjes|sec|seconden|tellen
      | dag|dagen|week|weken|maand|maanden|jaar|jaren
      | kind|kinderen|kids|leerlingen|ouders|personen|mensen|stuks|spelers|teams
      | meter|m|km|kilometer|cm|rondjes|rondes|ronden|punten|plekken|plaatsen|banen|stappen
      | euro|eur|procent|%|times|minutes|hours|days|children|people
    )(?!\w)"""
)
_WORD_BEFORE = re.compile(r"([^\s]+)[ \u00a0]+$")
_ADDRESS_GAP = re.compile(r"[ \u00a0]*,?[ \u00a0]*\Z")  # street and postcode are one address


def _street_start(text: str, word_start: int) -> int:
    """Extend a street word leftwards over titles, names and particles on its line."""
    tokens: list[tuple[int, str]] = []
    pos = word_start
    while len(tokens) < 4:
        m = _WORD_BEFORE.search(text, max(0, pos - 40), pos)
        if m is None:
            break
        token = m.group(1)
        lower = token.lower()
        if lower in _PARTICLES or lower in _LEADING_PREPOSITIONS:
            pass
        elif (
            re.fullmatch(r"[A-Z][\w'\u2019.-]*", token) is None
            or lower.rstrip(".:,") in _NOT_A_STREET_PREFIX
            or (not token[-1].isalpha() and token[-1] != ".")
        ):
            break
        tokens.append((m.start(1), token))
        pos = m.start(1)
    # drop leading prepositions of any case and leading lowercase particles
    while tokens:
        token = tokens[-1][1]
        lower = token.lower()
        if lower in _LEADING_PREPOSITIONS or (lower in _PARTICLES and token[0].islower()):
            tokens.pop()
        else:
            break
    return tokens[-1][0] if tokens else word_start


def _find_addresses(text: str) -> Iterator[Span]:
    spans: list[Span] = []
    postcodes = [(m.start(), m.end()) for m in _POSTCODE.finditer(text)]
    for pattern in (_STREET_FIRST, _STREET):
        for m in pattern.finditer(text):
            if _COUNT_NOUN_AFTER.match(text, m.end()):
                continue
            word = m.group("word")
            start = m.start("word")
            if pattern is _STREET:
                if not word.lower().endswith(_SUFFIX_TUPLE):
                    continue
                last = re.split(r"[-'\u2019]", word)[-1]
                if word[0].islower():
                    followed_by_postcode = any(
                        ps >= m.end() and text[m.end() : ps].strip(" ,\u00a0") == ""
                        for ps, _ in postcodes
                    )
                    before = _WORD_BEFORE.search(text, max(0, start - 40), start)
                    determiner = before is not None and before.group(1).lower() in _DETERMINERS
                    if not followed_by_postcode and (
                        word.lower() in _COMMON_STREET_NOUNS
                        or last.lower() in _COMMON_STREET_NOUNS
                        or determiner
                    ):
                        continue
                start = _street_start(text, start)
            spans.append((start, m.end()))
    spans.extend(postcodes)
    yield from _merge(spans, gap=_ADDRESS_GAP, text=text)


def _merge(
    spans: Iterable[Span], *, gap: re.Pattern[str] | None = None, text: str = ""
) -> list[Span]:
    """Union of overlapping spans; with ``gap``, also of spans separated by ``gap`` only."""
    out: list[Span] = []
    for start, end in sorted(spans):
        if out and (
            start <= out[-1][1]
            or (gap is not None and gap.match(text, out[-1][1], start) is not None)
        ):
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


# --------------------------------------------------------------------------- BSN

_BSN = re.compile(
    r"(?<![\w.,/+#-])(?<!\d[ \u00a0])"
    r"(?:\d{9}|\d{4}[. ]\d{2}[. ]\d{3}|\d{3}[. ]\d{3}[. ]\d{3}|\d{2}[. ]\d{3}[. ]\d{2}[. ]\d{2})"
    r"(?![\w#]|[.,/-]\d|[ \u00a0]\d)"
)
_BSN_WEIGHTS = (9, 8, 7, 6, 5, 4, 3, 2, -1)


def is_valid_bsn(number: str) -> bool:
    """The elfproef: nine digits, weighted sum divisible by 11, not all zeros."""
    digits = [int(c) for c in number if c.isdigit()]
    if len(digits) != 9 or not any(digits):
        return False
    return sum(w * d for w, d in zip(_BSN_WEIGHTS, digits, strict=True)) % 11 == 0


def _find_bsns(text: str, masked: str) -> Iterator[Span]:
    for m in _BSN.finditer(masked):
        if is_valid_bsn(m.group()) and not _after_reference_word(text, m.start()):
            yield (m.start(), m.end())


# --------------------------------------------------------------------------- IBAN

IBAN_LENGTHS: dict[str, int] = {  # ISO 13616 lengths of the countries parents bank in
    "AD": 24, "AT": 20, "BA": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24,
    "DE": 22, "DK": 18, "EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GR": 27,
    "HR": 21, "HU": 28, "IE": 22, "IS": 26, "IT": 27, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MA": 28, "MC": 27, "MT": 31, "NL": 18, "NO": 15, "PL": 28, "PT": 25,
    "RO": 24, "RS": 22, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TR": 26, "UA": 29,
}  # fmt: skip
_IBAN_START = re.compile(r"(?<![\w])[A-Za-z]{2}\d{2}(?=[ \u00a0]?[A-Za-z0-9])")
_IBAN_MIN, _IBAN_MAX = 15, 34  # characters


def is_valid_iban(iban: str) -> bool:
    """The ISO 13616 mod-97 check (and the country's length, when we know it)."""
    code = "".join(c for c in iban if c.isalnum()).upper()
    if not _IBAN_MIN <= len(code) <= _IBAN_MAX or not code[:2].isalpha():
        return False
    if not code[2:4].isdigit() or IBAN_LENGTHS.get(code[:2], len(code)) != len(code):
        return False
    rotated = code[4:] + code[:4]
    return int("".join(str(int(c, 36)) for c in rotated)) % 97 == 1


def _find_ibans(text: str, allowed: frozenset[str]) -> Iterator[Span]:
    pos = 0
    while True:
        m = _IBAN_START.search(text, pos)
        if m is None:
            return
        # every place where the IBAN may end: after an alphanumeric, before a non-one
        ends: list[int] = []
        count, i = 0, m.start()
        while i < len(text) and count < _IBAN_MAX:
            if text[i].isascii() and text[i].isalnum():
                count += 1
                i += 1
                at_end = i == len(text) or not (text[i].isascii() and text[i].isalnum())
                if at_end and count >= _IBAN_MIN:
                    ends.append(i)
            elif text[i] in " \u00a0" and i + 1 < len(text) and text[i + 1].isalnum():
                i += 1
            else:
                break
        found = next((e for e in reversed(ends) if is_valid_iban(text[m.start() : e])), None)
        if found is None:
            pos = m.end()
            continue
        code = "".join(c for c in text[m.start() : found] if c.isalnum()).upper()
        if code not in allowed:
            yield (m.start(), found)
        pos = found


# --------------------------------------------------------------------------- child details


@dataclass(frozen=True, slots=True)
class Terms:
    """The keywords of one kind of sensitive detail, in the cheapest form that fits.

    ``words`` are whole words (lowercase; a hyphenated word also matches by its parts, so
    ``ADHD-medicatie`` finds ``adhd``), ``acronyms`` whole words in exactly this case,
    ``prefixes`` and ``heads`` match the start or end of a word (``autistisch`` ->
    ``autistische``, ``allergie`` -> ``notenallergie``), ``phrases`` are regexes for the
    rest (several words, inflections that need context).
    """

    words: frozenset[str]
    acronyms: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    heads: tuple[str, ...] = ()
    phrases: tuple[str, ...] = ()


_VICTIM = (  # who is hit or kicked: "Sem slaat de bal" is no incident
    r"(?:\w+\s+){0,2}?(?:kinderen|kind|klasgenoot|klasgenoten|jongen|jongens|meisje|meisjes"
    r"|hem|haar|mij|me|ons|jou|iedereen|juf|meester|leerkracht|broertje|zusje|anderen)"
)
HEALTH_TERMS = Terms(
    words=_words(
        """
        adhd autisme pdd-nos pddnos ass-diagnose dyslexie dyscalculie epilepsie diabetes
        suikerziekte astma allergisch depressie depressief angstaanval angstaanvallen
        paniekaanval paniekaanvallen tourette ziek ziekjes ziekte koorts griep buikgriep
        waterpokken mazelen rodehond roodvonk kinkhoest krentenbaard hoofdluis luizen corona
        covid covid-19 hersenschudding operatie geopereerd ziekenhuis kliniek medicijnen
        medicatie ritalin concerta methylfenidaat dexamfetamine melatonine insuline epipen
        puffer psycholoog ggz anorexia zelfbeschadiging leukemie kanker
        ontwikkelingsachterstand gehandicapt handicap diagnose gediagnosticeerd
        gediagnostiseerd ocd sick fever flu hospital allergic allergy autism autistic
        dyslexia dyslexic asthma epilepsy medication surgery diagnosed
        """
    ),
    acronyms=_words("ADD ASS ODD NLD DCD TOS"),
    prefixes=("autistisch", "dyslectisch", "epileptisch", "hoogbegaafd"),
    heads=("allergie", "allergieën", "stoornis", "stoornissen", "therapie", "therapeut",
           "psychiater", "syndroom"),
    phrases=(
        r"gilles\s+de\s+la\s+tourette",
        r"gebroken\s+(?:arm|been|pols|enkel|sleutelbeen)",
        r"(?:arm|been|pols|enkel|sleutelbeen)\s+gebroken",
    ),
)  # fmt: skip
BEHAVIOUR_TERMS = Terms(
    words=_words(
        """
        geslagen geschopt gebeten gekrabd geduwd gepest pest pesten pestte pestten pestkop
        pestgedrag pesterij pesterijen gescholden uitgescholden scheldt schold gevochten
        vechtpartij geschorst schorsing straf straffen gestraft strafwerk nablijven
        nagebleven stelen steelt gestolen diefstal agressief agressie woedeaanval
        woedeaanvallen driftbui driftbuien brutaal liegt gelogen onhandelbaar vernield
        bullied bullying bully suspended detention stole punished kicked aggressive
        """
    ),
    prefixes=("gedragsproble",),
    phrases=(
        rf"(?:sloeg|slaat|slaan|schopt|schopte|schoppen|bijt|beet|bijten|krabt|duwt|duwde)"
        rf"\s+{_VICTIM}",
        r"(?:naar\s+huis|eruit|uit\s+de\s+klas)\s+gestuurd",
        r"(?:slecht|vervelend|storend|grensoverschrijdend|ongepast)\w*\s+gedrag",
        r"(?:bit|hit)\s+(?:him|her|someone|another|a)",
    ),
)
FAMILY_TERMS = Terms(
    words=_words(
        """
        scheiding gescheiden echtscheiding voogdij omgangsregeling co-ouderschap
        coouderschap bezoekregeling pleeggezin pleegouder pleegouders pleegkind pleegzorg
        jeugdzorg jeugdbescherming gezinsvoogd ondertoezichtstelling uithuisplaatsing
        schuldsanering schulden bewind bewindvoering voedselbank overleden overlijden
        gestorven begrafenis gevangenis mishandeld mishandeling verwaarloosd verwaarlozing
        vrouwenopvang opvanghuis dakloos divorce divorced divorces custody foster prison
        died
        """
    ),
    acronyms=frozenset({"OTS"}),
    phrases=(
        r"(?<!afval\s)scheiden",
        r"uit\s+elkaar",
        r"ouderlijk\s+gezag",
        r"veilig\s+thuis",
        r"uit\s+huis\s+geplaatst",
        r"in\s+de\s+rouw",
        r"huiselijk\s+geweld",
        r"passed\s+away",
        r"social\s+services",
        r"child\s+protection",
    ),
)
_TERMS: tuple[tuple[PrivacyKind, Terms], ...] = (
    (PrivacyKind.CHILD_HEALTH, HEALTH_TERMS),
    (PrivacyKind.CHILD_BEHAVIOUR, BEHAVIOUR_TERMS),
    (PrivacyKind.CHILD_FAMILY, FAMILY_TERMS),
)
_KIND_GROUP = {kind: kind.value for kind, _ in _TERMS}
_PHRASES = re.compile(
    r"(?<![\w-])(?:"
    + "|".join(rf"(?P<{_KIND_GROUP[kind]}>{'|'.join(terms.phrases)})" for kind, terms in _TERMS)
    + r")(?![\w-])",
    re.IGNORECASE,
)
_WORD_TOKEN = re.compile(r"\w+(?:-\w+)*")
_WORD_KIND = {word: kind for kind, terms in reversed(_TERMS) for word in terms.words}
_ACRONYM_KIND = {word: kind for kind, terms in reversed(_TERMS) for word in terms.acronyms}
_AFFIXES = tuple(
    (kind, terms.prefixes, terms.heads) for kind, terms in _TERMS if terms.prefixes or terms.heads
)
_ALL_PREFIXES = tuple(p for _, prefixes, _ in _AFFIXES for p in prefixes)
_ALL_HEADS = tuple(h for _, _, heads in _AFFIXES for h in heads)


def _term_kind(token: str) -> PrivacyKind | None:
    kind = _ACRONYM_KIND.get(token)
    if kind is not None:
        return kind
    lower = token.lower()
    parts = (lower, *lower.split("-")) if "-" in lower else (lower,)
    for part in parts:
        kind = _WORD_KIND.get(part)
        if kind is not None:
            return kind
        if part.startswith(_ALL_PREFIXES) or part.endswith(_ALL_HEADS):
            for affix_kind, prefixes, heads in _AFFIXES:
                if part.startswith(prefixes) or part.endswith(heads):
                    return affix_kind
    return None


def _find_keywords(text: str) -> list[tuple[PrivacyKind, Span]]:
    found = []
    for m in _WORD_TOKEN.finditer(text):
        kind = _term_kind(m.group())
        if kind is not None:
            found.append((kind, (m.start(), m.end())))
    for m in _PHRASES.finditer(text):
        kind = next(k for k, group in _KIND_GROUP.items() if m.group(group) is not None)
        found.append((kind, (m.start(), m.end())))
    return found


_OWN_CHILD = re.compile(
    r"""(?ix)(?<!\w)(?:
        (?:mijn|m'n|ons|onze|my|our)\s+
        (?:zoon(?:tje)?|dochter(?:tje)?|kind(?:je)?|kinderen|jongen|meisje|meid|jongste
          |oudste|middelste|kleine|mannetje|ventje|son|daughter|child|kid|kids|boy|girl)
    )(?!\w)"""
)
_PRONOUN_LEAD = re.compile(
    r"(?i)\W*(?:\w+\W+){0,3}?(?P<p>hij|zij|ze|haar|zijn|hem|he|she|her|his|him)(?!\w)"
)
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)|\n+|;")
_WORD = re.compile(r"\w+")
_ADULT_TITLE = re.compile(
    r"(?i)(?:\b(?:juf|juffrouw|meester|meneer|mevrouw|mevr|mw|dhr|heer|mr|mrs|ms|miss"
    r"|teacher|mama|papa|mam|pap|oma|opa|tante|oom)\.?)\s+$"
)
# first names that are also ordinary words: matched only when capitalised
COMMON_WORD_NAMES = _words(
    """
    ben job max roos storm mees lot jet iris amber jade bloem lente zomer fleur hoop
    koen sterre bo puck vos joy sky will may june rose hope grace ivy faith
    """
)


@lru_cache(maxsize=256)
def _name_pattern(names: frozenset[str]) -> re.Pattern[str] | None:
    variants: set[str] = set()
    for name in names:
        name = " ".join(name.split())
        if len(name) < 2:
            continue
        variants.add(name)
        first = name.split(" ")[0]
        if first != name and len(first) >= 2:
            variants.add(first)
    if not variants:
        return None
    alternatives = []
    for variant in sorted(variants, key=len, reverse=True):
        escaped = r"\s+".join(re.escape(part) for part in variant.split(" "))
        if variant.lower() in COMMON_WORD_NAMES:
            alternatives.append(escaped[0].upper() + escaped[1:])  # capitalised only
        else:
            alternatives.append(f"(?i:{escaped})")
    return re.compile(rf"(?<![\w-])(?:{'|'.join(alternatives)})(?![\w-])")


def _sentences(text: str) -> list[int]:
    """Start offsets of the sentences of ``text`` (the first is 0)."""
    return [0, *(m.end() for m in _SENTENCE_END.finditer(text))]


def _child_references(text: str, names: frozenset[str]) -> list[Span]:
    refs = [(m.start(), m.end()) for m in _OWN_CHILD.finditer(text)]
    pattern = _name_pattern(names)
    if pattern is not None:
        for m in pattern.finditer(text):
            if _ADULT_TITLE.search(text, max(0, m.start() - 16), m.start()) is None:
                refs.append((m.start(), m.end()))
    return sorted(refs)


def _words_between(word_starts: list[int], a: Span, b: Span) -> int:
    """How many words start between the two spans (``word_starts`` sorted)."""
    lo, hi = (a[1], b[0]) if a[1] <= b[0] else (b[1], a[0])
    return bisect_left(word_starts, hi) - bisect_left(word_starts, lo) if lo < hi else 0


def _find_child_details(text: str, names: frozenset[str]) -> list[PrivacyFinding]:
    keywords = _find_keywords(text)
    if not keywords:
        return []
    word_starts = [m.start() for m in _WORD.finditer(text)]
    starts = _sentences(text)
    refs_by_sentence: dict[int, list[Span]] = {}
    for ref in _child_references(text, names):
        refs_by_sentence.setdefault(bisect_right(starts, ref[0]) - 1, []).append(ref)
    found: dict[PrivacyKind, list[Span]] = {}
    for kind, kw in keywords:
        s = bisect_right(starts, kw[0]) - 1
        refs = refs_by_sentence.get(s, [])
        if not refs and refs_by_sentence.get(s - 1):
            lead = _PRONOUN_LEAD.match(text, starts[s])
            if lead is not None:
                refs = [(lead.start("p"), lead.end("p"))]
        # the nearest reference before the keyword (the subject, in Dutch word order),
        # else the nearest after it ("Jeugdzorg is betrokken bij Julia")
        k = bisect_left(refs, kw)
        near = [
            r
            for r in refs[max(0, k - 1) : k + 1]
            if _words_between(word_starts, r, kw) <= MAX_CHILD_DISTANCE
        ]
        if not near:
            continue
        ref = near[0]
        found.setdefault(kind, []).append((min(ref[0], kw[0]), max(ref[1], kw[1])))
    return [PrivacyFinding(kind, span) for kind, spans in found.items() for span in _merge(spans)]


# --------------------------------------------------------------------------- public API


def find_privacy(
    text: str,
    *,
    allowed_numbers: Collection[str] = (),
    student_names: Collection[str] = (),
) -> list[PrivacyFinding]:
    """Every personal detail in ``text`` (see the module docstring), sorted by start.

    ``allowed_numbers``: phone numbers and IBANs that may be shown (the school's own), in
    any writing. ``student_names``: the pupils' names (full or first names) that make a
    sentence about a child a finding.
    """
    allowed_phones = frozenset(normalise_phone(n) for n in allowed_numbers)
    allowed_ibans = frozenset("".join(c for c in n if c.isalnum()).upper() for n in allowed_numbers)
    masked = _masked(text)
    candidates: dict[PrivacyKind, Iterable[Span]] = {
        PrivacyKind.IBAN: _find_ibans(text, allowed_ibans),
        PrivacyKind.EMAIL: [(m.start(), m.end()) for m in _EMAIL.finditer(text)],
        PrivacyKind.PHONE: _find_phones(text, masked, allowed_phones),
        PrivacyKind.BSN: _find_bsns(text, masked),
        PrivacyKind.ADDRESS: _find_addresses(text),
    }
    taken: list[Span] = []
    findings: list[PrivacyFinding] = []
    for kind in _PRIORITY:
        for span in candidates[kind]:
            if all(span[1] <= s or span[0] >= e for s, e in taken):
                taken.append(span)
                findings.append(PrivacyFinding(kind, span))
    findings.extend(_find_child_details(text, frozenset(student_names)))
    return sorted(findings, key=lambda f: (f.span[0], f.span[1], f.kind.value))
