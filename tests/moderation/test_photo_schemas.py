"""The photo gate's request bodies: limits on the text as sent, values stored stripped."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from moderation.photo_schemas import BlocklistCreate

PHASH = "8f373714acfcf4d0"


def test_limits_apply_to_the_text_as_sent():
    # 129 characters with a space at the end: over the schema's 128, refused as sent
    with pytest.raises(ValidationError, match="at most 128"):
        BlocklistCreate(phash=PHASH, added_by="j" * 128 + " ")
    with pytest.raises(ValidationError, match="at most 500"):
        BlocklistCreate(phash=PHASH, note="n" * 500 + " ")


def test_values_are_stored_stripped_and_an_actor_is_never_blank():
    body = BlocklistCreate(phash=f" {PHASH} ", note="  van de GGD  ", added_by=" juf-anna ")
    assert (body.phash, body.note, body.added_by) == (PHASH, "van de GGD", "juf-anna")
    with pytest.raises(ValidationError, match="blank"):
        BlocklistCreate(phash=PHASH, added_by="   ")
