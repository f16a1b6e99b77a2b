"""Posts that are a sick report or an urgent matter: the policy reminds their author.

Why it exists: the school policy releases these posts but adds a reminder (POLICY.md
rules 7 and 8). Sick reports go by phone to the administration, a message in the app is
welcome but not enough; urgent matters go to the administration by phone too, because
teachers don't read the app during lessons. This module only *finds* the passages, with
``[start, end)`` spans into the original text; ``moderation.policy`` decides whom to remind
(a teacher writing "Sem is ziek, beterschap!" to the class needs no reminder). The
"outside school hours" notice depends on the clock and lives in the policy. Pure stdlib
regexes, thousands of texts per second.

Public API: :func:`find_notices`.

Rules (case-insensitive, whole words; a sentence ending in ``?`` is never a report):

SICK_REPORT
    A child as the subject and a sick or absent state, in one of these shapes:

    * subject + verb + state: ``Sanne is ziek``, ``mijn dochter heeft koorts``, ``Noah
      voelt zich niet lekker``, ``my son is sick``; up to three words may come between the
      verb and the state (``is vandaag erg ziek``), but not ``niet``, ``geen``,
      ``nooit``, ``not``, ``never`` (``Sem is niet ziek``, ``heeft geen koorts meer``);
      ``ziek geweest`` (the past) and ``ziek van die/dat ...`` (the idiom) don't count.
    * inverted: ``Helaas is Daan ziek``, ``Vandaag blijft Finn thuis``.
    * subject + absence: ``Sanne blijft vandaag thuis``, ``Noah komt vandaag niet``,
      ``Emma kan morgen niet komen``, ``gaat vandaag niet naar school``, ``my daughter
      will stay home``. A bare ``komt niet`` counts only at the end of the clause or
      before ``naar school``/``want``/``omdat``... (``Sem komt niet op tijd`` does not).
    * the parent reports: ``ik meld Daan ziek``, ``hierbij meld ik Sem af``, ``ik wil mijn
      zoon ziekmelden``, ``ziekmelding voor Lotte``.

    A child is an own-child phrase (``mijn zoon``, ``ons dochtertje``, ``onze jongste``,
    ``my son``...), a capitalised name that is not an adult or a function word (``Juf``,
    ``Meester``, ``Mama``, ``Ik``, ``Iedereen``... are not; ``juf Anna`` is an adult), or
    ``hij``/``zij``/``ze``/``he``/``she`` when no adult (``juf``, ``meester``,
    ``leerkracht``, ``mama``, ``papa``, ``mijn man``...) is named earlier in the sentence.
    The span covers subject to state. Not reports: ``er gaat griep rond``, ``de juf is
    ziek``, ``ik word ziek van die regen``, ``ik hoop dat je snel beter bent``. Limits:
    names are recognised by their capital only, so a name written in lowercase is missed
    and a capitalised noun before ``is ziek`` is taken for a child; a report spread over
    two sentences without a subject in the second ("Sem. Ziek.") is missed.
URGENT
    ``dringend``, ``spoed``/``met spoed``/``spoedeisend``, ``urgent``, ``zo snel mogelijk``
    / ``zsm`` / ``z.s.m.``, ``ASAP``, ``as soon as possible``, ``noodgeval``,
    ``noodsituatie``, ``nood`` (not ``in geval van nood``/``bij nood``, the standing
    advice), ``acuut``, ``emergency``; ``graag vandaag (nog) antwoord/reactie``,
    ``vandaag nog (terug)bellen``; ``het is (heel) belangrijk dat u/je dit nu/meteen
    leest``; ``kunt u me meteen/direct/nu bellen``, ``bel me meteen``, ``call me right
    away``. A keyword right after a negation (``niet dringend``, ``geen spoed``,
    ``nothing urgent``) is not urgent, nor are the wishes ``spoedig herstel`` and ``zo snel
    mogelijk beter``. Limits: urgency without these words ("kom nu naar school!") is
    missed; a teacher's "dringend verzoek om niet te parkeren" is found.

Findings are sorted by start; overlapping findings of one kind are merged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from moderation.domain import NoticeFinding, NoticeKind, Span

__all__ = ["find_notices"]

# --------------------------------------------------------------------------- sick reports

_OWN_CHILD = (
    r"(?:mijn|m'n|ons|onze|my|our)\s+"
    r"(?:zoon(?:tje)?|dochter(?:tje)?|kind(?:je)?|kinderen|jongen|meisje|meid|jongste|oudste"
    r"|middelste|kleine|mannetje|ventje|son|daughter|child|kid|kids|boy|girl|little\s+one)"
)
# capitalised words that are not a pupil's name
_NOT_A_NAME = (
    "Ik|Jij|Je|U|Hij|Zij|Ze|Wij|We|Jullie|Het|De|Een|Dit|Dat|Die|Deze|Er|Hier|Daar|Wie|Wat"
    "|Iedereen|Niemand|Alles|Men|Mijn|Onze|Ons|Uw|Jouw|Zijn|Haar|Hun|Juf|Juffrouw|Meester"
    "|Meneer|Mevrouw|Mama|Papa|Mam|Pap|Oma|Opa|Tante|Oom|Helaas|Vandaag|Morgen|Gisteren"
    "|Vanochtend|Vannacht|Nu|Ook|Dus|Maar|En|Of|Want|Hoi|Hallo|Beste|Lieve|Goedemorgen"
    "|Goedemiddag|Dag|Groep|Klas|School|Leerkracht|Docent|Teacher|I|He|She|It|They|You|My"
    "|Our|The|Today|Mom|Mum|Dad|Mr|Mrs|Ms|Miss|Sorry|Excuses|Bedankt|Dank|Graag|Wel|Niet"
    "|Is|Was|Zo|Al|Nog|Even|Ziek|Koorts|Griep"
)
_NAME = rf"(?-i:(?!(?:{_NOT_A_NAME})\b)[A-Z][a-z\u00e0-\u00ff]+(?:-[A-Z][a-z\u00e0-\u00ff]+)?)"
_PRONOUN = r"(?:hij|zij|ze|he|she)"
_CHILD = rf"(?:{_OWN_CHILD}|{_NAME})"
_SUBJECT = rf"(?P<subject>{_OWN_CHILD}|{_NAME}|{_PRONOUN})"
_SICK = (
    r"(?:ziek(?:jes)?|niet\s+(?:lekker|fit|goed(?!\s+in\b))|koorts(?:ig)?|griep|buikgriep|verkouden"
    r"|hoofdpijn|buikpijn|keelpijn|oorpijn|diarree|waterpokken|krentenbaard|roodvonk"
    r"|overgeven|overgegeven|gespuugd|spuugt|braakt|corona|covid|sick|ill|unwell|fever"
    r"|(?:the\s+)?flu|not\s+(?:feeling\s+)?well)"
    r"(?!\s+(?:geweest|gehad|been)\b|\s+van\s+(?:die|dat|deze|dit|al)\b|\w)"
)
_VERB = (
    r"(?:is|zijn|voelt\s+zich|voelen\s+zich|heeft|hebben|moest|moet|lijkt|ligt|was\s+vannacht"
    r"|has|feels|is\s+feeling|was\s+up\s+all\s+night|got|gets|is\s+home)"
)
_FILLER = r"(?:(?!(?:niet|nooit|geen|not|never|no|nauwelijks|zelden)\b)\w+[\s,]+){0,3}?"
_ABSENT = (
    r"(?:blijft\s+(?:\w+\s+){0,2}?thuis"
    r"|komt\s+(?:vandaag|morgen|vanochtend|vanmiddag|deze\s+week)?\s*niet"
    r"(?=\s*(?:[,.!;\n]|$)|\s+(?:naar\s+school|want|omdat|vanwege|ivm|i\.v\.m\.|door))"
    r"|kan\s+(?:vandaag|morgen|vanochtend)\s+niet\s+(?:komen|naar\s+school)"
    r"|is\s+(?:vandaag|morgen)\s+(?:niet\s+op\s+school|afwezig|er\s+niet)"
    r"|gaat\s+(?:vandaag|morgen)\s+niet\s+naar\s+school"
    r"|stays?\s+(?:at\s+)?home|(?:will\s+)?stay(?:ing)?\s+(?:at\s+)?home"
    r"|won'?t\s+be\s+(?:in|at\s+school|coming)|is\s+absent|will\s+be\s+absent)"
)
_SICK_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        # Sanne is ziek / mijn dochter heeft koorts / Noah voelt zich niet lekker
        rf"(?<![\w-]){_SUBJECT}\s+(?:\w+\s+)??{_VERB}\s+{_FILLER}{_SICK}",
        # Helaas is Daan ziek / vandaag is mijn zoon niet lekker
        rf"(?<![\w-])(?:is|voelt|heeft|ligt)\s+(?P<subject>{_CHILD})\s+(?:zich\s+)?{_FILLER}{_SICK}",
        # Sanne blijft vandaag thuis / Noah komt vandaag niet
        rf"(?<![\w-]){_SUBJECT}\s+(?:[\w,]+\s+){{0,4}}?{_ABSENT}",
        # Vandaag blijft Finn thuis
        rf"(?<![\w-])blijft\s+(?P<subject>{_CHILD}|{_PRONOUN})\s+(?:\w+\s+){{0,2}}?thuis",
        # ik meld Daan ziek / hierbij meld ik Sem af
        rf"(?<![\w-])(?:(?:ik|we|wij)\s+(?:\w+\s+){{0,2}}?meld(?:en)?|meld(?:en)?\s+(?:ik|we|wij))"
        rf"\s+(?P<subject>{_CHILD}|hem|haar)\s+(?:\w+\s+){{0,3}}?"
        r"(?:ziek|af(?=\s+(?:voor\s+)?(?:vandaag|morgen|deze\s+week)|\s*[.!,;\n]|\s*$))(?!\w)",
        # ik wil mijn zoon ziekmelden / we moeten Sem helaas ziek melden
        r"(?<![\w-])(?:ik|we|wij)\s+(?:[\w']+\s+){1,5}?ziek\s?(?:melden|gemeld)(?!\w)",
        # ziekmelding voor Lotte
        rf"(?<![\w-])ziekmelding\s+(?:voor|van)\s+(?P<subject>{_CHILD})",
        # calling in sick for Sem
        rf"(?<![\w-])(?:calling|call)\s+in\s+sick\s+for\s+(?P<subject>{_CHILD})",
    )
)
_ADULT_BEFORE = re.compile(
    r"(?i)\b(?:juf|juffrouw|meester|meneer|mevrouw|leerkracht|docent|invaller|teacher|mama"
    r"|papa|mam|pap|oma|opa|mijn\s+(?:man|vrouw|partner|vriend|vriendin|moeder|vader)"
    r"|mr|mrs|ms|miss|mom|mum|dad|my\s+(?:husband|wife|partner))\b"
)
_ADULT_TITLE = re.compile(  # juf Anna; "de moeder van Sem" is not Sem
    r"(?i)\b(?:juf|juffrouw|meester|meneer|mevrouw|mevr|mw|dhr|heer|mama|papa|oma|opa|tante"
    r"|oom|mr|mrs|ms|miss|teacher|van|of)\.?\s+$"
)
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)|\n+|;")
_PRONOUNS = frozenset({"hij", "zij", "ze", "he", "she"})


def _sentence_bounds(text: str) -> list[Span]:
    bounds, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        bounds.append((start, m.end()))
        start = m.end()
    if start < len(text):
        bounds.append((start, len(text)))
    return bounds


def _is_child_subject(text: str, sentence: Span, m: re.Match[str]) -> bool:
    if "subject" not in m.re.groupindex or m.group("subject") is None:
        return True
    start = m.start("subject")
    if _ADULT_TITLE.search(text, max(0, start - 16), start) is not None:
        return False  # juf Anna, meester Jan
    subject = m.group("subject").lower()
    return subject not in _PRONOUNS or _ADULT_BEFORE.search(text, sentence[0], start) is None


def _find_sick_reports(text: str) -> Iterator[Span]:
    for sentence in _sentence_bounds(text):
        if text[sentence[0] : sentence[1]].rstrip().endswith("?"):
            continue
        for pattern in _SICK_PATTERNS:
            for m in pattern.finditer(text, sentence[0], sentence[1]):
                if _is_child_subject(text, sentence, m):
                    yield (m.start(), m.end())


# --------------------------------------------------------------------------- urgent

_URGENT = re.compile(
    r"""(?ix)(?<![\w-])(?:
        dringend(?:e|er)?|urgent|spoed|spoedeisend|met\s+spoed|acuut|acute|emergency
      | zo\s+snel\s+mogelijk|z\.s\.m\.?|zsm|asap|a\.s\.a\.p\.?|as\s+soon\s+as\s+possible
      | noodgeval(?:len)?|noodsituatie|nood
      | graag\s+(?:nog\s+)?vandaag\s+(?:nog\s+)?(?:een\s+)?(?:antwoord|reactie|bericht|contact
          |terugbellen|bellen)
      | vandaag\s+nog\s+(?:een\s+)?(?:antwoord|reactie|contact|terugbellen|bellen|terug)
      | (?:het\s+)?is\s+(?:heel\s+|erg\s+|echt\s+|zeer\s+)?belangrijk\s+dat\s+(?:u|je|jij|jullie)
          \s+(?:dit\s+)?(?:nu|meteen|direct|vandaag|onmiddellijk)
          (?:\s+(?:leest|lezen|weet|weten|doet|doen|belt|bellen|ziet))?
      | (?:kunt|kan|wilt|wil)\s+(?:u|je|jij)\s+(?:me|mij|ons)\s+(?:\w+\s+){0,2}?
          (?:meteen|direct|nu|onmiddellijk|gelijk)\s+(?:terug)?bellen
      | bel\s+(?:me|mij|ons)\s+(?:\w+\s+)?(?:meteen|direct|onmiddellijk|gelijk)
      | call\s+me\s+(?:right\s+away|immediately|now|urgently)
    )(?![\w-])"""
)
_NEGATION_BEFORE = re.compile(r"(?i)\b(?:niet|geen|not|no|nothing|niks|niets|nie)\s+(?:zo\s+)?$")
_NOT_URGENT_AFTER = re.compile(r"(?i)\s+beter|\s+herstel|\s+better")
_STANDING_ADVICE_BEFORE = re.compile(r"(?i)\b(?:in\s+(?:het\s+)?geval\s+van|bij)\s+$")


def _find_urgent(text: str) -> Iterator[Span]:
    for m in _URGENT.finditer(text):
        start, end = m.span()
        word = m.group().lower()
        if _NEGATION_BEFORE.search(text, max(0, start - 16), start):
            continue
        if word in ("zo snel mogelijk", "zsm", "z.s.m.", "z.s.m") and _NOT_URGENT_AFTER.match(
            text, end
        ):
            continue
        if word == "nood" and _STANDING_ADVICE_BEFORE.search(text, max(0, start - 24), start):
            continue
        yield (start, end)


# --------------------------------------------------------------------------- public API


def _merge(spans: Iterable[Span]) -> list[Span]:
    out: list[Span] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def find_notices(text: str) -> list[NoticeFinding]:
    """The sick reports and urgent matters in ``text`` (see the module docstring)."""
    findings = [NoticeFinding(NoticeKind.SICK_REPORT, s) for s in _merge(_find_sick_reports(text))]
    findings += [NoticeFinding(NoticeKind.URGENT, s) for s in _merge(_find_urgent(text))]
    return sorted(findings, key=lambda f: (f.span[0], f.span[1], f.kind.value))
