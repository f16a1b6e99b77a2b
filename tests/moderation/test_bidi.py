"""The display order of text with bidirectional controls, and scoring what is shown."""

from __future__ import annotations

import pytest

from models.text.lexicon import LexiconScorer
from moderation.bidi import display_order, has_controls, worst_of
from moderation.domain import Category

RLO, LRO, PDF, RLI, PDI = "\u202e", "\u202d", "\u202c", "\u2067", "\u2069"


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("gewoon tekst", "gewoon tekst"),
        (f"Wat een {RLO}fujreknak{PDF} is dat", "Wat een kankerjuf is dat"),
        (f"{RLO}tad si fujreknak", "kankerjuf is dat"),
        (f"{RLO}12 34", "43 21"),  # an override turns digits around as well
        (f"a{RLO}b{LRO}cd{PDF}e{PDF}f", "aecdbf"),  # nested: the inner run keeps its order
        (f"x\nW{RLO}yz", "x\nWzy"),  # an override ends at the line
        (f"ab{RLI}cd ef{PDI}gh", f"ab{RLI}cd ef{PDI}gh"),  # latin in an RTL isolate stays
        ("שלום abc def", "abc def םולש"),  # an RTL paragraph: the latin run keeps together
    ],
)
def test_display_order(stored: str, shown: str):
    display = display_order(stored)
    assert display.text == shown
    assert sorted(display.origin) == sorted(set(display.origin))  # each stored char once
    assert all(stored[i] == display.text[n] for n, i in enumerate(display.origin))


def test_a_display_span_maps_back_to_the_stored_characters():
    stored = f"Wat een {RLO}fujreknak{PDF} is dat"
    display = display_order(stored)
    start = display.text.index("kankerjuf")
    span = display.logical_span(start, start + len("kankerjuf"))
    assert stored[span[0] : span[1]] == "fujreknak"
    assert display.logical_span(3, 3) == (0, 0)


def test_only_explicit_controls_trigger_the_second_reading():
    assert has_controls(f"a{RLO}b") and has_controls(f"{RLI}x{PDI}")
    assert not has_controls("שלום en gewone tekst \u200b")


def test_the_worse_reading_wins_with_stored_spans():
    scorer = LexiconScorer()
    stored = f"Wat een {RLO}fujreknak{PDF} is dat"
    display = display_order(stored)
    plain, shown = scorer.score([stored, display.text])
    assert plain.get(Category.INSULT).score == 0.0
    merged = worst_of(plain, shown, display)
    insult = merged.get(Category.INSULT)
    assert insult.score == shown.get(Category.INSULT).score > 0.5
    assert [stored[s:e] for s, e in insult.spans] == ["fujreknak"]
    assert worst_of(shown, plain, display_order(display.text)) == shown  # nothing lower wins
