"""Perceptual hashes and the hash index: reposts are caught, different photos are not,
and a million entries answer fast and exactly.

Photos: the shared face photos (read from ``shared/data/faces`` beside the repository,
never copied) and synthetic ones built with Pillow (gradients, shapes, text), so the
tests need no data set.
"""

from __future__ import annotations

import io
import random
import time

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageDraw

from models.images.bench_faces import load_shared_photo
from models.images.hashes import (
    CROP_VARIANTS,
    MATCH_DISTANCE,
    QUALITY_THRESHOLD,
    HashIndex,
    hamming,
    hash_from_str,
    hash_to_str,
    image_hashes,
    phash,
    validate_hash_str,
)

SHARED_PHOTOS = [
    "barack_obama/obama.jpg",
    "barack_obama/obama2.jpg",
    "barack_obama/obama3.jpg",
    "joe_biden/biden.jpg",
    "eileen_collins/astronaut.jpg",
]


def synthetic_photo(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A gradient with 4-12 coloured shapes and three 'Groep N' captions."""
    rng = random.Random(seed)
    width, height = size
    across = np.linspace(0, 1, width)[None, :, None]
    down = np.linspace(0, 1, height)[:, None, None]
    start = np.array([rng.randrange(256) for _ in range(3)])
    end = np.array([rng.randrange(256) for _ in range(3)])
    mix = (across * rng.random() + down * rng.random()) / 2
    image = Image.fromarray((start * (1 - mix) + end * mix).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(4, 12)):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        box = (x0, y0, x0 + rng.randint(20, width // 2), y0 + rng.randint(20, height // 2))
        colour = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.randrange(2) else draw.rectangle)(box, fill=colour)
    for _ in range(3):
        xy = (rng.randrange(width - 100), rng.randrange(height - 20))
        draw.text(xy, f"Groep {rng.randrange(100)}", fill=(0, 0, 0), font_size=rng.randint(18, 48))
    return image


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as reloaded:
        return reloaded.convert("RGB")


def resized(image: Image.Image, factor: float) -> Image.Image:
    size = (round(image.width * factor), round(image.height * factor))
    return image.resize(size, Image.Resampling.LANCZOS)


def cropped(image: Image.Image, side: str, fraction: float = 0.10) -> Image.Image:
    w, h = image.size
    dx, dy = int(w * fraction), int(h * fraction)
    boxes = {
        "left": (dx, 0, w, h),
        "right": (0, 0, w - dx, h),
        "top": (0, dy, w, h),
        "bottom": (0, 0, w, h - dy),
    }
    return image.crop(boxes[side])


EDITS = {
    "resize 50%": lambda im: resized(im, 0.5),
    "JPEG q30": lambda im: jpeg(im, 30),
    "crop 10% left": lambda im: cropped(im, "left"),
    "crop 10% right": lambda im: cropped(im, "right"),
    "crop 10% top": lambda im: cropped(im, "top"),
    "crop 10% bottom": lambda im: cropped(im, "bottom"),
    "crop 10% left and top": lambda im: cropped(cropped(im, "left"), "top"),
    "crop 10% right + resize 50% + q30": lambda im: jpeg(resized(cropped(im, "right"), 0.5), 30),
}

PHOTOS = [*SHARED_PHOTOS, *(f"synthetic-{seed}" for seed in range(5))]


def load_photo(name: str) -> Image.Image:
    if name.startswith("synthetic-"):
        return synthetic_photo(int(name.removeprefix("synthetic-")))
    return load_shared_photo(name)


@pytest.fixture(scope="module")
def repost_index() -> tuple[HashIndex, dict[str, Image.Image]]:
    """An index of the photos above, each with its crop variants, as a list would hold it."""
    photos = {name: load_photo(name) for name in PHOTOS}
    index = HashIndex()
    for name, photo in photos.items():
        hashes = image_hashes(photo)
        assert hashes.matchable
        index.add_many((h, name) for h in hashes.all())
    return index, photos


# --- hashing ---------------------------------------------------------------------------


@pytest.mark.parametrize("edit", EDITS)
@pytest.mark.parametrize("name", PHOTOS)
def test_an_edited_repost_is_matched(repost_index, name, edit):
    index, photos = repost_index
    found = index.nearest(phash(EDITS[edit](photos[name])), MATCH_DISTANCE)
    assert found, f"{edit} of {name} not found"
    assert found[0][0] == name
    assert [ref for ref, _ in found] == [name]  # and nothing else in this small index


def test_plain_phash_misses_most_10_percent_crops():
    """Why the crop variants exist (MODELS.md: distance 14 after a 10% crop)."""
    distances = []
    for seed in range(20):
        photo = synthetic_photo(seed)
        for side in ["left", "right", "top", "bottom"]:
            distances.append(hamming(phash(photo), phash(cropped(photo, side))))
    assert np.mean(np.array(distances) <= MATCH_DISTANCE) < 0.5


def test_different_photos_are_not_matched():
    """200 different photos (195 synthetic, 5 shared): no photo's pHash comes within
    MATCH_DISTANCE of another's stored hashes. (At distance 10 seeds 4 and 42 would.)"""
    photos = {f"synthetic-{seed}": synthetic_photo(seed) for seed in range(195)}
    photos.update({name: load_shared_photo(name) for name in SHARED_PHOTOS})
    assert len(photos) == 200
    index = HashIndex()
    queries = {}
    for name, photo in photos.items():
        hashes = image_hashes(photo)
        index.add_many((h, name) for h in hashes.all())
        queries[name] = hashes.phash
    false_matches = [
        (name, ref, distance)
        for name, query in queries.items()
        for ref, distance in index.nearest(query, MATCH_DISTANCE)
        if ref != name
    ]
    assert false_matches == []


def test_phash_is_imagehash_phash_for_photos_up_to_1023_pixels():
    photo = synthetic_photo(7, size=(1000, 700))
    assert hash_to_str(phash(photo)) == str(imagehash.phash(photo))
    large = load_shared_photo("barack_obama/obama3.jpg")  # 1434x2333: box-reduced first
    assert hamming(phash(large), int(str(imagehash.phash(large)), 16)) <= 4


def test_image_hashes_lists_the_phash_then_the_crop_variants():
    photo = synthetic_photo(3)
    hashes = image_hashes(photo)
    assert hashes.phash == phash(photo)
    assert len(hashes.crops) == len(CROP_VARIANTS) == 8
    assert hashes.all() == (hashes.phash, *hashes.crops)
    assert image_hashes(photo, crops=False).crops == ()
    assert image_hashes(photo, crops=False).phash == hashes.phash


def test_flat_and_graded_images_are_not_matchable():
    gradient = np.tile(np.linspace(60, 200, 400), (300, 1)).astype(np.uint8)
    noise = np.random.default_rng(0).normal(0, 3, (300, 400))
    sky = (np.linspace(150, 200, 300)[:, None] + noise).clip(0, 255).astype(np.uint8)
    for image in [
        Image.new("RGB", (400, 300), "white"),
        Image.new("RGB", (400, 300), (200, 30, 30)),
        Image.fromarray(gradient),
        Image.fromarray(sky),
    ]:
        hashes = image_hashes(image)
        assert hashes.quality < QUALITY_THRESHOLD
        assert not hashes.matchable
    for photo in [synthetic_photo(1), load_shared_photo("joe_biden/biden.jpg")]:
        assert image_hashes(photo).quality >= 32


def test_tiny_and_odd_images_hash():
    for image in [Image.new("RGB", (1, 1)), Image.new("L", (3, 90)), Image.new("RGBA", (20, 20))]:
        assert 0 <= phash(image) < 2**64
        assert len(image_hashes(image).crops) == 8
    with pytest.raises(ValueError, match="empty"):
        phash(Image.new("RGB", (0, 0)))


# --- hash strings ----------------------------------------------------------------------


def test_hash_strings_are_validated_and_normalised():
    assert validate_hash_str("00ff00ff00ff00ff") == "00ff00ff00ff00ff"
    assert validate_hash_str(" 00FF00FF00FF00FF\n") == "00ff00ff00ff00ff"
    for bad in ["", "00ff", "0x00ff00ff00ff00", "00ff00ff00ff00fg", "00ff00ff00ff00ff0", "é" * 16]:
        with pytest.raises(ValueError):
            validate_hash_str(bad)
    with pytest.raises(ValueError):
        validate_hash_str(12345)  # type: ignore[arg-type]
    assert hash_to_str(0) == "0" * 16
    assert hash_to_str(2**64 - 1) == "f" * 16
    assert hash_from_str("8000000000000000") == 2**63
    value = phash(synthetic_photo(2))
    assert hash_from_str(hash_to_str(value)) == value
    for bad_value in [-1, 2**64]:
        with pytest.raises(ValueError):
            hash_to_str(bad_value)
    with pytest.raises(TypeError):
        hash_to_str("00ff00ff00ff00ff")  # type: ignore[arg-type]


# --- the index -------------------------------------------------------------------------


def flip_bits(value: int, count: int, rng: random.Random) -> int:
    for bit in rng.sample(range(64), count):
        value ^= 1 << bit
    return value


def reference(hashes: np.ndarray, refs: list[str], query: int, max_distance: int):
    """What nearest() must answer, by numpy brute force independent of the index."""
    distances = np.bitwise_count(hashes ^ np.uint64(query))
    best: dict[str, int] = {}
    for i in np.flatnonzero(distances <= max_distance).tolist():
        distance = int(distances[i])
        if distance < best.get(refs[i], 65):
            best[refs[i]] = distance
    return sorted(best.items(), key=lambda item: (item[1], item[0]))


def test_index_basics():
    index = HashIndex()
    assert len(index) == 0
    assert index.nearest(123) == []
    index.add(0b1111, "a")
    index.add(0b1110, "b")
    index.add(0b0000, "a")  # a second hash for "a"
    index.add(2**64 - 1, "c")
    assert len(index) == 4
    assert index.nearest(0b1111, 0) == [("a", 0)]
    assert index.nearest(0b1111, 1) == [("a", 0), ("b", 1)]
    assert index.nearest(0b0001, 4) == [("a", 1), ("b", 4)]  # "a" once, at its nearest
    assert index.nearest(2**64 - 1, 64)[0] == ("c", 0)
    assert len(index.nearest(0, 64)) == 3


def test_index_refuses_bad_input():
    index = HashIndex()
    for bad in [-1, 2**64]:
        with pytest.raises(ValueError):
            index.add(bad, "x")
        with pytest.raises(ValueError):
            index.add_many([(1, "ok"), (bad, "x")])
    for bad_type in [True, 1.0, "00ff00ff00ff00ff"]:
        with pytest.raises(TypeError):
            index.add(bad_type, "x")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            index.add_many([(bad_type, "x")])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        index.add(1, 7)  # type: ignore[arg-type]
    for bad_distance in [-1, 65]:
        with pytest.raises(ValueError):
            index.nearest(1, bad_distance)
    with pytest.raises(TypeError):
        index.nearest(1, 2.5)  # type: ignore[arg-type]
    assert len(index) == 0
    index.add_many([])
    index.add(np.uint64(5), "numpy ints are fine")  # type: ignore[arg-type]
    assert index.nearest(5, 0) == [("numpy ints are fine", 0)]


def test_single_adds_merge_and_stay_exact():
    """Adds one by one cross the merge threshold several times; answers never change."""
    rng = random.Random(3)
    index = HashIndex()
    hashes: list[int] = []
    refs: list[str] = []
    base = [rng.getrandbits(64) for _ in range(50)]
    for i in range(3 * HashIndex.MERGE_MIN + 17):
        value = flip_bits(base[i % 50], rng.randrange(0, 20), rng)
        index.add(value, f"r{i % 700}")
        hashes.append(value)
        refs.append(f"r{i % 700}")
    array = np.array(hashes, dtype=np.uint64)
    assert len(index) == len(hashes)
    for query in base[:10]:
        for distance in [0, 3, MATCH_DISTANCE, 15, 16, 30]:
            expected = reference(array, refs, query, distance)
            assert index.nearest(query, distance) == expected
            assert index.scan(query, distance) == expected


def test_a_million_hashes_answer_fast_and_exactly(capsys):
    n = 1_000_000
    rng = np.random.default_rng(11)
    hashes = rng.integers(0, 2**64, size=n, dtype=np.uint64, endpoint=False)
    refs = [f"media-{i // 9}" for i in range(n)]  # 9 hashes a photo, as stored
    pairs = list(zip(hashes.tolist(), refs, strict=True))

    start = time.perf_counter()
    index = HashIndex()
    index.add_many(pairs)
    build_s = time.perf_counter() - start
    assert len(index) == n

    py_rng = random.Random(5)
    queries = []
    for i in range(200):
        stored = int(hashes[py_rng.randrange(n)])
        queries.append(flip_bits(stored, py_rng.randrange(0, 13), py_rng) if i % 2 else stored)
    queries += [py_rng.getrandbits(64) for _ in range(50)]

    timings = []
    for query in queries:
        start = time.perf_counter()
        index.nearest(query, MATCH_DISTANCE)
        timings.append(time.perf_counter() - start)
    p50, p95 = np.percentile(timings, [50, 95]) * 1000

    for query in queries[:60]:
        for distance in [MATCH_DISTANCE, 12]:
            assert index.nearest(query, distance) == reference(hashes, refs, query, distance)
    near = sum(bool(index.nearest(q, MATCH_DISTANCE)) for q in queries[:200])
    assert near >= 150  # the planted neighbours within MATCH_DISTANCE are found

    scan = []
    for query in queries[:50]:
        start = time.perf_counter()
        index.scan(query, MATCH_DISTANCE)
        scan.append(time.perf_counter() - start)
    with capsys.disabled():
        print(
            f"\nHashIndex at 1M: build {build_s:.2f} s, {index.nbytes() / 1e6:.0f} MB arrays; "
            f"nearest p50 {p50:.2f} ms, p95 {p95:.2f} ms; "
            f"scan p50 {np.percentile(scan, 50) * 1000:.2f} ms"
        )
    assert p95 < 50  # generous: ~0.4 ms on a quiet 2-core machine
    assert build_s < 30
