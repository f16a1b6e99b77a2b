"""The notice finder: a parent reporting their child sick or absent, and urgent matters, are
found with exact spans; illness in general, a sick teacher, idioms and wishes are not."""

from __future__ import annotations

import time

import pytest

from models.text.notices import find_notices
from moderation.domain import NoticeFinding, NoticeKind

SICK, URGENT = NoticeKind.SICK_REPORT, NoticeKind.URGENT

# (text, kind, exactly the text the span must cover)
POSITIVES: list[tuple[str, NoticeKind, str]] = [
    # sick or absent today
    ("Sanne is ziek en blijft vandaag thuis", SICK, "Sanne is ziek en blijft vandaag thuis"),
    ("Goedemorgen, ik meld Daan ziek.", SICK, "ik meld Daan ziek"),
    ("Mijn dochter heeft koorts, ze komt niet.", SICK, "Mijn dochter heeft koorts, ze komt niet"),
    ("Noah is niet lekker en blijft thuis", SICK, "Noah is niet lekker en blijft thuis"),
    ("Hi, my son is sick today", SICK, "my son is sick"),
    ("Helaas is Lotte ziek", SICK, "is Lotte ziek"),
    ("Daan heeft buikgriep", SICK, "Daan heeft buikgriep"),
    ("Bij deze meld ik Sem ziek.", SICK, "meld ik Sem ziek"),
    ("Ik wil mijn zoon graag ziekmelden", SICK, "Ik wil mijn zoon graag ziekmelden"),
    ("Emma moest vannacht overgeven, ze blijft vandaag thuis", SICK,
     "Emma moest vannacht overgeven, ze blijft vandaag thuis"),
    ("Our daughter has a fever and will stay home", SICK,
     "Our daughter has a fever and will stay home"),
    ("Sem voelt zich niet lekker vandaag", SICK, "Sem voelt zich niet lekker"),
    ("Vandaag blijft Finn thuis, hij heeft koorts", SICK, "blijft Finn thuis"),
    ("Sanne komt vandaag niet naar school", SICK, "Sanne komt vandaag niet"),
    ("Hoi juf, Milan is ziek.", SICK, "Milan is ziek"),
    ("Ik meld Sem af voor vandaag", SICK, "Ik meld Sem af"),
    ("Ziekmelding voor Lotte", SICK, "Ziekmelding voor Lotte"),
    ("Mijn zoon is vandaag erg verkouden", SICK, "Mijn zoon is vandaag erg verkouden"),
    # urgent
    ("DRINGEND: bel me terug", URGENT, "DRINGEND"),
    ("Het is spoed!", URGENT, "spoed"),
    ("This is urgent, sorry", URGENT, "urgent"),
    ("Kunt u mij zo snel mogelijk terugbellen?", URGENT, "zo snel mogelijk"),
    ("Graag vandaag nog antwoord", URGENT, "Graag vandaag nog antwoord"),
    ("Het is belangrijk dat u dit nu leest", URGENT, "Het is belangrijk dat u dit nu leest"),
    ("Noodgeval, bel me", URGENT, "Noodgeval"),
    ("Wilt u reageren, ASAP graag", URGENT, "ASAP"),
    ("Kunt u me meteen bellen?", URGENT, "Kunt u me meteen bellen"),
    ("Please call me as soon as possible", URGENT, "as soon as possible"),
    ("Ik moet u met spoed spreken", URGENT, "met spoed"),
    ("zsm reageren aub", URGENT, "zsm"),
    ("Er is een noodsituatie thuis", URGENT, "noodsituatie"),
    ("Bel me direct als u dit leest", URGENT, "Bel me direct"),
]  # fmt: skip

# (text, the kind that must not be found; None: nothing at all may be found)
NEGATIVES: list[tuple[str, NoticeKind | None]] = [
    # illness without a child who is reported sick
    ("Er gaat griep rond in de klas", None),
    ("De juf is ziek, er is een invaller", None),
    ("Juf Anna is ziek", None),
    ("Juf Anna is ziek, ze blijft thuis", None),
    ("Ik word ziek van die regen", None),
    ("Ik ben ziek van al die regen", None),
    ("Ik hoop dat je snel beter bent", None),
    ("Beterschap voor Sem!", None),
    ("Mama is ziek, papa brengt Sem", None),
    ("Mijn man is ziek", None),
    ("De moeder van Sem is ziek", None),
    ("Iedereen is ziek thuis", None),
    # not today, not sick, a question, the standing advice
    ("Is Sem nog ziek?", None),
    ("Sem was vorige week ziek", None),
    ("Sem is ziek geweest maar komt morgen weer", None),
    ("Sem heeft griep gehad", None),
    ("Sem is niet ziek hoor", None),
    ("Sem heeft geen koorts meer", None),
    ("Sem is niet goed in rekenen", None),
    ("Sem komt niet op tijd", None),
    ("Ziekmeldingen graag telefonisch bij de administratie", None),
    ("Ik meld me af voor de ouderavond", None),
    ("Ik meld Sem af voor het schoolreisje", None),
    ("Lotte zit in groep 5, lokaal 12, om 08.30 uur", None),
    # not urgent
    ("Beterschap en spoedig herstel!", None),
    ("Het is niet dringend hoor", None),
    ("Het is niet zo dringend", None),
    ("Geen spoed, als u tijd heeft", None),
    ("Nothing urgent, just a question", None),
    ("Let op de nooduitgang bij de gymzaal", None),
    ("Het is noodzakelijk dat de kinderen laarzen meenemen", None),
    ("In geval van nood kunt u de administratie bellen", None),
    ("Ik hoop dat je zo snel mogelijk beter wordt", None),
    ("Het is belangrijk dat kinderen een jas meenemen", None),
    ("Wilt u mij bellen als het uitkomt?", None),
    ("De urgentie van het klimaat is ons thema", None),
]


@pytest.mark.parametrize(("text", "kind", "covered"), POSITIVES, ids=[c for _, _, c in POSITIVES])
def test_positive_found_with_exact_span(text: str, kind: NoticeKind, covered: str) -> None:
    findings = find_notices(text)
    spans = [text[f.span[0] : f.span[1]] for f in findings if f.kind == kind]
    assert covered in spans, (findings, spans)


@pytest.mark.parametrize(("text", "kind"), NEGATIVES, ids=[t for t, _ in NEGATIVES])
def test_negative_not_found(text: str, kind: NoticeKind | None) -> None:
    findings = find_notices(text)
    if kind is None:
        assert findings == [], [(f.kind, text[f.span[0] : f.span[1]]) for f in findings]
    else:
        assert all(f.kind != kind for f in findings)


def test_counts() -> None:
    for kind in NoticeKind:
        assert sum(1 for _, k, _ in POSITIVES if k == kind) >= 12
    assert len(NEGATIVES) >= 24


def test_both_kinds_in_one_message_sorted_by_start() -> None:
    text = "Dringend: Sanne is ziek. Kunt u me meteen bellen?"
    assert find_notices(text) == [
        NoticeFinding(URGENT, (0, 8)),
        NoticeFinding(SICK, (10, 23)),
        NoticeFinding(URGENT, (25, 48)),
    ]


def test_overlapping_findings_of_one_kind_are_merged() -> None:
    text = "Sanne is ziek en blijft thuis"
    assert find_notices(text) == [NoticeFinding(SICK, (0, len(text)))]


def test_pronoun_is_a_child_unless_an_adult_is_named_first() -> None:
    assert [f.kind for f in find_notices("Hij is ziek vandaag")] == [SICK]
    assert find_notices("Mijn man belde: hij is ziek vandaag") == []


def test_is_fast() -> None:
    texts = [t for t, _, _ in POSITIVES] + [t for t, _ in NEGATIVES]
    start = time.perf_counter()
    for _ in range(30):
        for text in texts:
            find_notices(text)
    assert time.perf_counter() - start < 5.0  # about 2,000 texts; about 0.1 s on a laptop
