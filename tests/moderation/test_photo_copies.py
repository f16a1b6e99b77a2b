"""The reviewer's copy and the "release with blur" copy, from the stored faces."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from moderation.errors import Conflict
from moderation.photo_copies import blurred_release, review_copy
from tests.moderation.photos import encode

# a noisy photo stand-in, so that blurring a region visibly changes its pixels
PIXELS = np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)
PHOTO = encode(Image.fromarray(PIXELS), "PNG")
LEFT, RIGHT = [20, 40, 80, 110], [200, 40, 260, 110]


def face(box: list[int], status: str, matters: bool) -> dict[str, object]:
    return {"box": box, "status": status, "matters": matters}


def changed(data: bytes, box: list[int]) -> bool:
    with Image.open(io.BytesIO(data)) as image:
        now = np.asarray(image.convert("RGB"))
    x0, y0, x1, y1 = box
    return not np.array_equal(now[y0:y1, x0:x1], PIXELS[y0:y1, x0:x1])


def test_the_reviewer_sees_children_without_consent_blurred_and_others_not():
    detail = {"faces": [face(LEFT, "no_consent", True), face(RIGHT, "consented", False)]}
    shown = review_copy(PHOTO, "image/png", detail)
    assert changed(shown, LEFT) and not changed(shown, RIGHT)


def test_a_copy_blurred_at_release_or_without_faces_is_shown_as_stored():
    blurred = {"faces": [face(LEFT, "no_consent", True)], "blurred": True}
    assert review_copy(PHOTO, "image/png", blurred) == PHOTO
    assert review_copy(PHOTO, "image/png", None) == PHOTO
    assert review_copy(PHOTO, "image/png", {"faces": [face(RIGHT, "consented", False)]}) == PHOTO


def test_release_with_blur_blurs_the_flagged_faces_or_else_every_face():
    flagged = {"faces": [face(LEFT, "undecidable", True), face(RIGHT, "consented", False)]}
    copy = blurred_release(PHOTO, "image/png", flagged)
    assert changed(copy, LEFT) and not changed(copy, RIGHT)
    calm = {"faces": [face(LEFT, "consented", False), face(RIGHT, "unknown", False)]}
    copy = blurred_release(PHOTO, "image/png", calm)
    assert changed(copy, LEFT) and changed(copy, RIGHT)


def test_a_video_cannot_be_released_with_blur():
    with pytest.raises(Conflict) as caught:
        blurred_release(b"\x00" * 10, "video/mp4", None)
    assert caught.value.code == "video_not_blurrable"
