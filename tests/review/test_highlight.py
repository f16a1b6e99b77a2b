"""Highlighting the triggering spans without ever producing HTML from post text."""

from __future__ import annotations

from moderation.review.highlight import Segment, merge_spans, segments


def test_merge_clips_sorts_and_joins_overlapping_spans():
    assert merge_spans([(8, 12), (0, 3), (2, 5), (12, 14), (20, 40), (-3, 1)], 30) == [
        (0, 5),
        (8, 14),
        (20, 30),
    ]
    assert merge_spans([(5, 5), (7, 3), (40, 50)], 30) == []


def test_segments_rejoin_to_the_text():
    text = "Wat ben jij een kankerjuf zeg"
    parts = segments(text, [(16, 25)])
    assert parts == [
        Segment("Wat ben jij een ", False),
        Segment("kankerjuf", True),
        Segment(" zeg", False),
    ]
    assert "".join(p.text for p in parts) == text
    assert segments(text, []) == [Segment(text, False)]
    assert segments("", [(0, 3)]) == []
