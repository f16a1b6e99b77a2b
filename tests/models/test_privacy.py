"""The privacy detector: personal data and sensitive details about a named child are found
with exact spans; dates, times, amounts, school words and the school's own number are not."""

from __future__ import annotations

import time

import pytest

from models.text.privacy import find_privacy, is_valid_bsn, is_valid_iban, normalise_phone
from moderation.domain import PrivacyFinding, PrivacyKind

PHONE, EMAIL, ADDRESS = PrivacyKind.PHONE, PrivacyKind.EMAIL, PrivacyKind.ADDRESS
BSN, IBAN = PrivacyKind.BSN, PrivacyKind.IBAN
HEALTH, BEHAVIOUR = PrivacyKind.CHILD_HEALTH, PrivacyKind.CHILD_BEHAVIOUR
FAMILY = PrivacyKind.CHILD_FAMILY

SCHOOL_NUMBER = "010-1234567"  # the school's own phone number, as the school configured it
STUDENTS = (
    "Sem de Vries", "Lotte", "Daan", "Noah", "Emma", "Finn", "Sophie", "Milan", "Julia",
    "Ben", "Sanne",
)  # fmt: skip


def find(text: str) -> list[PrivacyFinding]:
    return find_privacy(text, allowed_numbers=[SCHOOL_NUMBER], student_names=STUDENTS)


# (text, kind, exactly the text the span must cover)
POSITIVES: list[tuple[str, PrivacyKind, str]] = [
    # phones, every common writing
    ("Bel me gerust op 06-12345678.", PHONE, "06-12345678"),
    ("Mijn nummer: 06 12 34 56 78", PHONE, "06 12 34 56 78"),
    ("app me op 0612345678 als er iets is", PHONE, "0612345678"),
    ("Bereikbaar op +31 6 12345678", PHONE, "+31 6 12345678"),
    ("tel. +31(0)6-1234 5678", PHONE, "+31(0)6-1234 5678"),
    ("bel 0031 6 12345678 na 18 uur", PHONE, "0031 6 12345678"),
    ("Thuis: 020 123 4567", PHONE, "020 123 4567"),
    ("Werk 0299-123456 (alleen ochtend)", PHONE, "0299-123456"),
    ("Mijn kantoor: 088 123 4567", PHONE, "088 123 4567"),
    ("Informatielijn 0800-1234", PHONE, "0800-1234"),
    ("De tandarts 0900-1234567", PHONE, "0900-1234567"),
    ("Oma is bereikbaar op (071) 5123456", PHONE, "(071) 5123456"),
    ("Mobiel 06.12.34.56.78", PHONE, "06.12.34.56.78"),
    ("bel +31 06 12345678", PHONE, "+31 06 12345678"),
    ("Belgisch nummer: +32 470 12 34 56", PHONE, "+32 470 12 34 56"),
    # e-mail
    ("Mail me op jan.jansen@gmail.com graag", EMAIL, "jan.jansen@gmail.com"),
    ("mijn mail is Petra_de-Boer+school@ziggo.nl.", EMAIL, "Petra_de-Boer+school@ziggo.nl"),
    ("schrijf naar petra [at] ziggo [dot] nl", EMAIL, "petra [at] ziggo [dot] nl"),
    ("schrijf naar petra(at)ziggo(punt)nl", EMAIL, "petra(at)ziggo(punt)nl"),
    # addresses
    ("Het feestje is op de Kerkstraat 12, iedereen welkom", ADDRESS, "Kerkstraat 12"),
    ("We wonen aan de Van Goghlaan 3a.", ADDRESS, "Van Goghlaan 3a"),
    ("adres: Burgemeester de Withstraat 14-2", ADDRESS, "Burgemeester de Withstraat 14-2"),
    ("Ophalen bij Dorpsplein 1!", ADDRESS, "Dorpsplein 1"),
    ("Postadres 2511 CV Den Haag", ADDRESS, "2511 CV Den Haag"),
    ("Wij zitten op de Hoofdweg 123, 3811AB Amersfoort", ADDRESS,
     "Hoofdweg 123, 3811AB Amersfoort"),
    ("Laan van Meerdervoort 12 is ons nieuwe huis", ADDRESS, "Laan van Meerdervoort 12"),
    ("Zie je op Prins Hendrikkade 45 hs", ADDRESS, "Prins Hendrikkade 45 hs"),
    ("ik woon op de kerkstraat 7", ADDRESS, "kerkstraat 7"),
    # BSN (elfproef)
    ("Het BSN van mijn zoon is 123456782", BSN, "123456782"),
    ("bsn: 1234.56.782", BSN, "1234.56.782"),
    ("BSN 111 222 333", BSN, "111 222 333"),
    # IBAN (mod-97)
    ("Geld graag naar NL91 ABNA 0417 1643 00 t.n.v. Jansen", IBAN, "NL91 ABNA 0417 1643 00"),
    ("rekening NL91ABNA0417164300", IBAN, "NL91ABNA0417164300"),
    ("IBAN nl91abna0417164300", IBAN, "nl91abna0417164300"),
    ("Duitse rekening DE89 3704 0044 0532 0130 00", IBAN, "DE89 3704 0044 0532 0130 00"),
    ("Belgische rekening BE68539007547034.", IBAN, "BE68539007547034"),
    # health of a named or own child
    ("Sem heeft ADHD", HEALTH, "Sem heeft ADHD"),
    ("Lotte is ziek, ze heeft waterpokken", HEALTH, "Lotte is ziek, ze heeft waterpokken"),
    ("Daan gebruikt Ritalin sinds de zomer", HEALTH, "Daan gebruikt Ritalin"),
    ("Gisteren is sem de vries opgenomen in het ziekenhuis", HEALTH,
     "sem de vries opgenomen in het ziekenhuis"),
    ("Ik wil even melden dat Emma een notenallergie heeft", HEALTH, "Emma een notenallergie"),
    ("Mijn zoon heeft ADHD, dus hij is soms druk", HEALTH, "Mijn zoon heeft ADHD"),
    ("Ben heeft astma", HEALTH, "Ben heeft astma"),
    ("De diagnose dyslexie bij Julia is rond", HEALTH, "diagnose dyslexie bij Julia"),
    ("Noah heeft zijn arm gebroken", HEALTH, "Noah heeft zijn arm gebroken"),
    # behaviour
    ("Noah heeft vandaag geslagen", BEHAVIOUR, "Noah heeft vandaag geslagen"),
    ("Emma is geschorst", BEHAVIOUR, "Emma is geschorst"),
    ("Finn pest steeds andere kinderen", BEHAVIOUR, "Finn pest"),
    ("Daan slaat andere kinderen op het plein", BEHAVIOUR, "Daan slaat andere kinderen"),
    ("Sophie heeft strafwerk gekregen", BEHAVIOUR, "Sophie heeft strafwerk"),
    ("Milan werd uit de klas gestuurd", BEHAVIOUR, "Milan werd uit de klas gestuurd"),
    # family
    ("de ouders van Sophie gaan scheiden", FAMILY, "Sophie gaan scheiden"),
    ("Milan woont nu bij een pleeggezin", FAMILY, "Milan woont nu bij een pleeggezin"),
    ("Jeugdzorg is betrokken bij Julia", FAMILY, "Jeugdzorg is betrokken bij Julia"),
    ("Veilig Thuis heeft contact gehad over Daan", FAMILY,
     "Veilig Thuis heeft contact gehad over Daan"),
    ("De opa van Sanne is overleden", FAMILY, "Sanne is overleden"),
    # a pronoun in the next sentence carries the child over
    ("Ik maak me zorgen om Lotte. Haar ouders gaan scheiden.", FAMILY, "Haar ouders gaan scheiden"),
]  # fmt: skip

# (text, the kind that must not be found; None: nothing at all may be found)
NEGATIVES: list[tuple[str, PrivacyKind | None]] = [
    # the school's own number, written differently from the configured "010-1234567"
    ("Bel bij twijfel de administratie: +31 (0)10 123 45 67", None),
    ("Ziekmelden via 010 - 123 45 67 graag", None),
    ("Het nummer van school is 0031101234567", None),
    # dates, times, amounts, years
    ("De ouderavond is op 12-03-2025 om 19.30 uur", None),
    ("Op 06-12-2025 12:00 begint de kerstmarkt", None),
    ("Schoolreis op 12 maart, vertrek om 08.30 uur", None),
    ("De ouderbijdrage is € 12,50 per kind", None),
    ("Totaal 1.234,56 euro opgehaald, dank jullie wel!", None),
    ("Het jaarrooster 2024-2025 staat online", None),
    ("Datum: 2025-03-12, 08:30", None),
    # numbers that are not a BSN or an IBAN
    ("Het getal van de dag is 123456789", None),  # fails the elfproef
    ("Uw bestelnummer is 123456782", None),  # passes it, but is an order number
    ("ordernummer 0612345678", None),
    ("Kenmerk 2024-0012345 graag vermelden", None),
    ("Factuur 2025-000123 is betaald", None),
    ("Rekening NL92 ABNA 0417 1643 00", None),  # wrong check digits
    ("Tel 06-1234567", None),  # one digit short
    ("Het nummer is 06123456789", None),  # one digit too many
    # school words with numbers are not addresses
    ("Groep 5 gaat morgen naar de kinderboerderij", None),
    ("De les is in lokaal 12 om 8 uur", None),
    ("We spelen op het schoolplein 2 keer per week", None),
    ("Op de glijbaan 3 kinderen tegelijk", None),
    ("In het park 4 groepjes van 5", None),
    ("Hoi @juf.anna, bedankt!", None),
    ("Kijk op www.school.nl/nieuws", None),
    ("Neem 1000 mg paracetamol niet mee naar school", None),
    # no child named or referenced: a general statement is no finding
    ("Er gaat griep rond in de klas", None),
    ("ADHD is een onderwerp op de ouderavond", None),
    ("Pesten accepteren we niet op school", None),
    ("Veel ouders gaan scheiden, er is een folder bij de administratie", None),
    # a named child without a sensitive detail, or an adult with a pupil's name
    ("Sem heeft een mooie tekening gemaakt", None),
    ("Juf Lotte is ziek, er is een invaller", None),
    ("Daan slaat de bal over het hek", None),
    ("Sem helpt met afval scheiden", None),
    ("ik ben ziek van die regen", None),  # "ben" is not the pupil Ben
    ("Lotte zit in groep 5. Ze kan goed rekenen.", None),
]

SPAN_CASES = [pytest.param(t, k, s, id=s) for t, k, s in POSITIVES]


@pytest.mark.parametrize(("text", "kind", "covered"), SPAN_CASES)
def test_positive_found_with_exact_span(text: str, kind: PrivacyKind, covered: str) -> None:
    findings = find(text)
    spans = [text[f.span[0] : f.span[1]] for f in findings if f.kind == kind]
    assert covered in spans, (findings, spans)


@pytest.mark.parametrize(("text", "kind"), NEGATIVES, ids=[t for t, _ in NEGATIVES])
def test_negative_not_found(text: str, kind: PrivacyKind | None) -> None:
    findings = find(text)
    if kind is None:
        assert findings == [], [(f.kind, text[f.span[0] : f.span[1]]) for f in findings]
    else:
        assert all(f.kind != kind for f in findings)


def test_counts() -> None:
    per_kind = {k: sum(1 for _, kind, _ in POSITIVES if kind == k) for k in PrivacyKind}
    assert all(n >= 3 for n in per_kind.values()), per_kind
    assert len(POSITIVES) >= 12 and len(NEGATIVES) >= 12


@pytest.mark.parametrize(
    "writing",
    ["010-1234567", "010 123 45 67", "+31 10 1234567", "+31 (0)10 123 4567", "0031101234567"],
)
def test_allowed_number_in_any_writing(writing: str) -> None:
    text = "Bel school: 010-1234567 of +31 10 123 45 67, of mij: 06-12345678"
    findings = find_privacy(text, allowed_numbers=[writing])
    assert [text[f.span[0] : f.span[1]] for f in findings] == ["06-12345678"]


def test_without_allowed_numbers_the_school_number_is_a_phone() -> None:
    text = "Bel school: 010-1234567"
    assert find_privacy(text) == [PrivacyFinding(PHONE, (12, 23))]


def test_allowed_iban_is_not_reported() -> None:
    text = "Ouderbijdrage naar NL91 ABNA 0417 1643 00 t.n.v. De Marel"
    assert find_privacy(text, allowed_numbers=["NL91ABNA0417164300"]) == []
    assert [f.kind for f in find_privacy(text)] == [IBAN]


def test_iban_account_number_is_not_also_a_phone() -> None:
    text = "NL91ABNA0417164300"
    assert find_privacy(text) == [PrivacyFinding(IBAN, (0, len(text)))]


def test_two_numbers_in_one_chain_are_cut_apart() -> None:
    text = "bel 0612345678 0687654321 of 06-12345678/06-87654321"
    spans = [text[f.span[0] : f.span[1]] for f in find_privacy(text)]
    assert spans == ["0612345678", "0687654321", "06-12345678", "06-87654321"]


def test_numbers_on_separate_lines_stay_separate() -> None:
    text = "papa 0612345678\nmama 0687654321"
    assert [f.kind for f in find_privacy(text)] == [PHONE, PHONE]


def test_street_and_postcode_form_one_address() -> None:
    text = "Nieuw adres: Kerkstraat 12, 2511 CV Den Haag."
    assert [text[f.span[0] : f.span[1]] for f in find_privacy(text)] == [
        "Kerkstraat 12, 2511 CV Den Haag"
    ]


def test_sentence_without_child_reference_is_not_linked_to_the_previous_one() -> None:
    text = "Sem is jarig. De juf gaat scheiden."  # no pronoun: not about Sem
    assert find_privacy(text, student_names=["Sem"]) == []


def test_keyword_too_far_from_the_child_is_not_linked() -> None:
    text = (
        "Sem vond het een hele leuke dag met de juf en alle kinderen van de klas en "
        "daarna was er nog een film over een kind met ADHD"
    )
    assert find_privacy(text, student_names=["Sem"]) == []


def test_keyword_links_to_the_child_before_it() -> None:
    text = "Sem is ziek, Lotte niet"
    findings = find_privacy(text, student_names=["Sem", "Lotte"])
    assert [text[f.span[0] : f.span[1]] for f in findings] == ["Sem is ziek"]


def test_names_only_from_student_names() -> None:
    assert find_privacy("Sem heeft ADHD") == []
    assert [f.kind for f in find_privacy("Sem heeft ADHD", student_names=["sem"])] == [HEALTH]


def test_first_name_of_a_full_name_is_a_reference() -> None:
    findings = find_privacy("sem is geschorst", student_names=["Sem de Vries"])
    assert findings == [PrivacyFinding(BEHAVIOUR, (0, 16))]


def test_findings_sorted_by_start_and_all_kinds_together() -> None:
    text = (
        "Hoi, Sem is ziek. Bel 06-12345678 of mail a@b.nl, Kerkstraat 12. "
        "BSN 123456782, NL91ABNA0417164300"
    )
    findings = find_privacy(text, student_names=["Sem"])
    assert [f.kind for f in findings] == [HEALTH, PHONE, EMAIL, ADDRESS, BSN, IBAN]
    assert [f.span for f in findings] == sorted(f.span for f in findings)


@pytest.mark.parametrize(
    ("number", "valid"),
    [("123456782", True), ("1234.56.782", True), ("111222333", True), ("123456789", False),
     ("000000000", False), ("12345678", False)],
)  # fmt: skip
def test_elfproef(number: str, valid: bool) -> None:
    assert is_valid_bsn(number) is valid


@pytest.mark.parametrize(
    ("iban", "valid"),
    [("NL91 ABNA 0417 1643 00", True), ("NL92ABNA0417164300", False),
     ("NL91ABNA04171643000", False), ("GB82 WEST 1234 5698 7654 32", True), ("XX00", False)],
)  # fmt: skip
def test_iban_check(iban: str, valid: bool) -> None:
    assert is_valid_iban(iban) is valid


@pytest.mark.parametrize(
    ("writing", "national"),
    [("+31 (0)6-1234 5678", "0612345678"), ("0031 6 12345678", "0612345678"),
     ("06 12 34 56 78", "0612345678"), ("+32 470 12 34 56", "+32470123456")],
)  # fmt: skip
def test_normalise_phone(writing: str, national: str) -> None:
    assert normalise_phone(writing) == national


def test_is_fast() -> None:
    texts = [t for t, _, _ in POSITIVES] + [t for t, _ in NEGATIVES]
    start = time.perf_counter()
    for _ in range(20):
        for text in texts:
            find_privacy(text, allowed_numbers=[SCHOOL_NUMBER], student_names=STUDENTS)
    assert time.perf_counter() - start < 5.0  # about 2,000 texts; about 0.2 s on a laptop
