"""Blurring faces for good: a blurred child is no longer matched to their enrolment, the
rest of the photo is untouched, and the region reaches over hair and ears."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from models.images.bench_faces import (
    compose_group_photo,
    load_shared_photo,
    shared_sources,
)
from models.images.blur import blur_faces, blur_mask, blur_regions
from models.images.faces import MATCH_THRESHOLD, Face, FaceAnalyzer, distance, match

OBAMA_PHOTOS = ("barack_obama/obama.jpg", "barack_obama/obama2.jpg", "barack_obama/obama3.jpg")


@pytest.fixture(scope="module")
def analyzer() -> FaceAnalyzer:
    return FaceAnalyzer()


@pytest.fixture(scope="module")
def references(analyzer: FaceAnalyzer) -> dict[str, list[np.ndarray]]:
    return {
        "sanne": [analyzer.reference_embedding(load_shared_photo("barack_obama/obama.jpg"))],
        "daan": [analyzer.reference_embedding(load_shared_photo("joe_biden/biden.jpg"))],
        "eva": [analyzer.reference_embedding(load_shared_photo("eileen_collins/astronaut.jpg"))],
    }


def _largest(faces: list[Face]) -> Face:
    assert faces, "no face found"
    return max(faces, key=lambda f: f.width)


@pytest.mark.parametrize("path", OBAMA_PHOTOS)
def test_a_blurred_face_no_longer_matches_its_enrolment(path, analyzer, references):
    photo = load_shared_photo(path)
    before = _largest(analyzer.analyze(photo))
    assert before.embedding is not None
    assert match(before.embedding, references) == "sanne"  # the check is meaningful

    blurred = blur_faces(photo, [before.box])
    for after in analyzer.analyze(blurred):
        assert not after.matchable or match(after.embedding, references) is None
        if after.embedding is not None:  # not even close to the threshold
            assert distance(after.embedding, references["sanne"][0]) > MATCH_THRESHOLD + 0.1


def test_in_a_group_photo_only_the_blurred_child_disappears(analyzer, references):
    rng = np.random.default_rng(4)
    group = compose_group_photo(
        shared_sources(), rng, size=(1400, 800), face_px=(110, 110, 110, 110, 110)
    )
    who = [(f, match(f.embedding, references)) for f in analyzer.analyze(group.image)]
    assert sum(name == "sanne" for _, name in who) == 3  # her three photos
    assert {"daan", "eva"} <= {name for _, name in who}

    blurred = blur_faces(group.image, [f.box for f, name in who if name == "sanne"])
    after = {match(f.embedding, references) for f in analyzer.analyze(blurred) if f.matchable}
    assert "sanne" not in after
    assert {"daan", "eva"} <= after


def test_pixels_outside_the_regions_are_unchanged():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    boxes = [(50, 60, 110, 140), (300, 200, 360, 280), (380, 0, 420, 40)]  # one over the edge
    out = np.asarray(blur_faces(image, boxes))
    inside = np.asarray(blur_mask(image.size, boxes)) > 0
    assert np.array_equal(out[~inside], pixels[~inside])
    changed = np.abs(out.astype(int) - pixels.astype(int)).sum(axis=2) > 0
    assert changed[inside].mean() > 0.95  # noise inside is replaced almost everywhere


def test_the_region_covers_the_face_hair_and_ears_with_a_margin():
    box = (100, 100, 160, 180)  # 60 wide, 80 high, like MTCNN's eyebrows-to-chin boxes
    mask = np.asarray(blur_mask((400, 400), [box])) > 0
    assert mask[100:180, 100:160].all()  # every pixel of the box itself
    column, row = 130, 140
    assert mask[100 - 35, column]  # 0.45 box heights above the top: hair
    assert mask[180 + 20, column]  # 0.25 below the chin
    assert mask[row, 100 - 18] and mask[row, 160 + 18]  # 0.3 box widths beside: ears
    assert not mask[0, 0] and not mask[399, 399]
    (region,) = blur_regions([box], (400, 400))
    assert region[0] <= 100 - 18 and region[1] <= 100 - 35
    assert region[2] >= 160 + 18 and region[3] >= 180 + 20


def test_the_blur_is_a_coarse_mosaic_not_a_thin_blur():
    """Fine detail (a checkerboard of 2-pixel squares) is gone, not just softened."""
    tile = np.kron((np.indices((100, 100)).sum(axis=0) % 2) * 255, np.ones((2, 2)))
    image = Image.fromarray(tile.astype(np.uint8)).convert("RGB")
    box = (60, 60, 140, 140)
    out = np.asarray(blur_faces(image, [box]).convert("L"), dtype=float)
    face = out[70:130, 70:130]
    assert face.std() < 6  # the 0/255 pattern (std 127) is averaged away
    assert abs(face.mean() - 127.5) < 10


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P"])
def test_modes_and_boxes_that_change_nothing(mode):
    image = Image.new("RGB", (64, 48), (10, 200, 30)).convert(mode)
    out = blur_faces(image, [])
    assert out.mode == ("RGB" if mode == "P" else mode)
    assert out.tobytes() == image.convert(out.mode).tobytes()
    for boxes in ([(10, 10, 10, 20)], [(200, 200, 240, 240)], [(-50, -50, -10, -10)]):
        assert blur_faces(image, boxes).tobytes() == out.tobytes()
