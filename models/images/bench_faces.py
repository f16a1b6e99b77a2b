"""Benchmark of the face pipeline against the one a developer would reach for first.

Why this module exists: the consent check runs on every class photo a teacher posts, so
its cost per photo matters, and the obvious alternative (what the ``face_recognition``
package does: dlib's HOG frontal face detector, upsampled once, plus the same dlib
descriptors) must not find more faces. This module composes class-like group photos from
the shared test faces and scikit-image's LFW crops, with the true face boxes known, and
measures both pipelines in one process on the same photos, interleaved photo by photo so
that a busy machine slows both alike. The tests reuse its photo composer, and the
whole-photo benchmark (``models.images.bench``, ``moderation bench images``) reuses the
composer, the reference (:meth:`ReferencePipeline.analyze`) and :class:`Clock`.

Run ``python -m models.images.bench_faces`` (needs ``scikit-image``, a development
dependency, and the shared face photos beside the repository).

Measured (20 photos, seed 0, one torch thread, on the shared two-core development
machine under load from other jobs): ours 2.7-3.4 photos/s, the reference 0.45-0.65;
5.3-6.0x in wall time and 5.4-5.7x in CPU time; face recall 1.000 against 0.870, with
0.05 false boxes per photo against 0; 142 of the 207 faces described. Of our 164 ms of
CPU per photo, MTCNN takes 104, the descriptor 47 (6.6 ms a face, batched), dlib's
alignment and chips 9, the rest 4. With dlib's own descriptor (76 ms a face) the
speed-up was 1.4x.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Final, TypeVar, cast

import dlib
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from models.images.faces import (
    DESCRIPTOR_MODEL,
    Embedding,
    Face,
    FaceAnalyzer,
    _sharpness,  # the reference's faces are judged by our own sharpness measure
    dlib_model_path,
)

T = TypeVar("T")
Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, x1/y1 exclusive

FACES_DIR_ENV: Final = "MODERATION_FACES_DIR"
# The face box in each shared photo, in that photo's pixels (checked by eye).
SHARED_FACES: Final[dict[str, tuple[str, Box]]] = {
    "barack_obama/obama.jpg": ("barack_obama", (369, 81, 612, 420)),
    "barack_obama/obama2.jpg": ("barack_obama", (192, 220, 473, 644)),
    "barack_obama/obama3.jpg": ("barack_obama", (630, 246, 913, 612)),
    "joe_biden/biden.jpg": ("joe_biden", (434, 173, 712, 561)),
    "eileen_collins/astronaut.jpg": ("eileen_collins", (180, 62, 265, 174)),
}
CONTEXT: Final = 0.5  # face widths of surroundings kept around a shared face when pasted
HOG_UPSAMPLE: Final = 1  # what face_recognition.face_locations() uses by default


def shared_faces_dir() -> Path:
    """The shared face photos: ``$MODERATION_FACES_DIR``, else ``shared/data/faces`` beside
    the repository (the ``shared`` folder is a sibling of the repository root)."""
    env = os.environ.get(FACES_DIR_ENV)
    folder = Path(env) if env else Path(__file__).resolve().parents[3] / "shared/data/faces"
    if not (folder / "PROVENANCE.md").is_file():
        raise FileNotFoundError(
            f"the shared face photos are not at {folder}: put the project's shared/ folder "
            f"beside the repository, or set {FACES_DIR_ENV}"
        )
    return folder


def load_shared_photo(relative: str) -> Image.Image:
    """One shared photo as RGB, e.g. ``"barack_obama/obama.jpg"``."""
    with Image.open(shared_faces_dir() / relative) as image:
        return image.convert("RGB")


# --- composing group photos -------------------------------------------------------------


@dataclass(frozen=True)
class FaceSource:
    """A face to paste: ``image`` with the face at ``box`` inside it, and who it is."""

    image: Image.Image
    box: Box
    label: str


@dataclass(frozen=True)
class GroupPhoto:
    """A composed photo and the truth about it: one box and label per pasted face."""

    image: Image.Image
    boxes: list[Box]
    labels: list[str]
    distractors: list[Box] = field(default_factory=list)  # pasted non-face crops


def shared_sources() -> list[FaceSource]:
    """The five shared faces, each cut with some surroundings (hair, shoulders)."""
    sources = []
    for relative, (person, (x0, y0, x1, y1)) in SHARED_FACES.items():
        photo = load_shared_photo(relative)
        pad = round((x1 - x0) * CONTEXT)
        cx0, cy0 = max(0, x0 - pad), max(0, y0 - pad)
        cx1, cy1 = min(photo.width, x1 + pad), min(photo.height, y1 + pad)
        crop = photo.crop((cx0, cy0, cx1, cy1))
        sources.append(FaceSource(crop, (x0 - cx0, y0 - cy0, x1 - cx0, y1 - cy0), person))
    return sources


def _lfw() -> NDArray[np.float64]:
    try:
        from skimage import data
    except ImportError as exc:  # pragma: no cover - a development dependency
        raise RuntimeError("the LFW crops need scikit-image (pip install scikit-image)") from exc
    loader = cast(Callable[[], NDArray[np.float64]], data.lfw_subset)  # untyped in skimage
    return loader()


def lfw_sources() -> list[FaceSource]:
    """scikit-image's 100 LFW face crops: 25x25 grey, tight around the face."""
    sources = []
    for i, crop in enumerate(_lfw()[:100]):
        image = Image.fromarray(np.rint(crop * 255).astype(np.uint8)).convert("RGB")
        sources.append(FaceSource(image, (0, 0, image.width, image.height), f"lfw:{i}"))
    return sources


def lfw_distractors() -> list[Image.Image]:
    """scikit-image's 100 LFW non-face crops (25x25 grey), to test for false boxes."""
    return [
        Image.fromarray(np.rint(crop * 255).astype(np.uint8)).convert("RGB")
        for crop in _lfw()[100:]
    ]


def _background(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A smooth random colour field with some grain, like an out-of-focus classroom."""
    width, height = size
    coarse = Image.fromarray(rng.integers(40, 220, (6, 9, 3), dtype=np.uint8))
    field_ = np.asarray(coarse.resize(size, Image.Resampling.BICUBIC), dtype=np.float32)
    grain = rng.normal(0.0, 6.0, (height, width, 3))
    return Image.fromarray(np.clip(field_ + grain, 0, 255).astype(np.uint8))


def _place(
    rng: np.random.Generator, taken: list[Box], w: int, h: int, size: tuple[int, int]
) -> tuple[int, int] | None:
    """A free spot for a w x h rectangle (with a small gap to the others), or None."""
    gap = 6
    for _ in range(200):
        x = int(rng.integers(0, size[0] - w))
        y = int(rng.integers(0, size[1] - h))
        if all(
            x + w + gap <= a0 or a1 + gap <= x or y + h + gap <= b0 or b1 + gap <= y
            for a0, b0, a1, b1 in taken
        ):
            return x, y
    return None


def compose_group_photo(
    sources: Sequence[FaceSource],
    rng: np.random.Generator,
    *,
    size: tuple[int, int] = (1600, 1000),
    face_px: Sequence[int] = (30, 40, 60, 90, 140),
    distractors: Sequence[Image.Image] = (),
    distractor_px: tuple[int, int] = (30, 120),
) -> GroupPhoto:
    """Paste every source (face width from ``face_px`` in turn) and the distractors onto
    a random background without overlaps. Faces that find no room are left out."""
    canvas = _background(rng, size)
    taken: list[Box] = []
    boxes: list[Box] = []
    labels: list[str] = []
    for i, source in enumerate(sources):
        face_w = face_px[i % len(face_px)]
        fx0, fy0, fx1, fy1 = source.box
        k = face_w / (fx1 - fx0)
        w, h = max(1, round(source.image.width * k)), max(1, round(source.image.height * k))
        spot = _place(rng, taken, w, h, size)
        if spot is None:
            continue
        resample = Image.Resampling.BICUBIC if k > 1 else Image.Resampling.LANCZOS
        canvas.paste(source.image.resize((w, h), resample), spot)
        taken.append((spot[0], spot[1], spot[0] + w, spot[1] + h))
        boxes.append(
            (
                spot[0] + round(fx0 * k),
                spot[1] + round(fy0 * k),
                spot[0] + round(fx1 * k),
                spot[1] + round(fy1 * k),
            )
        )
        labels.append(source.label)
    placed: list[Box] = []
    for item in distractors:
        side = int(rng.integers(distractor_px[0], distractor_px[1] + 1))
        spot = _place(rng, taken, side, side, size)
        if spot is None:
            continue
        canvas.paste(item.resize((side, side), Image.Resampling.BICUBIC), spot)
        box = (spot[0], spot[1], spot[0] + side, spot[1] + side)
        taken.append(box)
        placed.append(box)
    return GroupPhoto(canvas, boxes, labels, placed)


def class_like_photos(n_photos: int, *, seed: int = 0) -> list[GroupPhoto]:
    """``n_photos`` photos of 1024x683 with 6-15 faces each, faces 30-110 px wide."""
    rng = np.random.default_rng(seed)
    pool = shared_sources() + lfw_sources()
    photos = []
    for _ in range(n_photos):
        count = int(rng.integers(6, 16))
        chosen = [pool[int(i)] for i in rng.choice(len(pool), size=count, replace=False)]
        widths = [int(w) for w in rng.integers(30, 111, size=count)]
        photos.append(compose_group_photo(chosen, rng, size=(1024, 683), face_px=widths))
    return photos


def truth_found(truth: Box, box: Sequence[float]) -> bool:
    """Whether a detected ``box`` is the true face ``truth``: its centre lies inside the
    true box and its width is within a factor of two (box conventions differ)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    ratio = (box[2] - box[0]) / max(1, truth[2] - truth[0])
    return truth[0] <= cx <= truth[2] and truth[1] <= cy <= truth[3] and 0.5 <= ratio <= 2.0


def score_boxes(photo: GroupPhoto, found: Sequence[Sequence[float]]) -> tuple[int, int]:
    """(true faces found, detected boxes that are no true face)."""
    hits = sum(any(truth_found(t, b) for b in found) for t in photo.boxes)
    false = sum(not any(truth_found(t, b) for t in photo.boxes) for b in found)
    return hits, false


# --- the two pipelines ------------------------------------------------------------------


class ReferencePipeline:
    """What ``face_recognition`` does: dlib HOG detector (upsampled once), the 5-point
    shape predictor on its boxes, and dlib's own descriptor network (ours is its torch
    port, :mod:`models.images.descriptor`); the one place that still runs dlib's."""

    def __init__(self, analyzer: FaceAnalyzer) -> None:
        self.detector = dlib.get_frontal_face_detector()
        self.shape_predictor = analyzer.shape_predictor
        self.descriptor = dlib.face_recognition_model_v1(str(dlib_model_path(DESCRIPTOR_MODEL)))

    def boxes(self, pixels: NDArray[np.uint8]) -> list[dlib.rectangle]:
        found: list[dlib.rectangle] = list(self.detector(pixels, HOG_UPSAMPLE))
        return found

    def run(self, image: Image.Image) -> list[tuple[Box, Embedding]]:
        return self._describe(np.asarray(image.convert("RGB")))

    def analyze(self, image: Image.Image) -> list[Face]:
        """:meth:`run` as :class:`Face` values, so that the whole-photo benchmark
        (``models.images.bench``) puts the reference through the same image pipeline as
        ours. ``face_recognition`` has no face probability and no too-small rule: every
        face gets score 1.0, no landmarks and a descriptor; size and sharpness are
        judged as ours are, boxes clipped to the image."""
        pixels = np.asarray(image.convert("RGB"))
        height, width = pixels.shape[:2]
        faces = []
        for (x0, y0, x1, y1), vector in self._describe(pixels):
            box = (max(0, x0), max(0, y0), min(width, x1 + 1), min(height, y1 + 1))  # inclusive
            sharpness = _sharpness(pixels, box)
            faces.append(
                Face(
                    box=box,
                    score=1.0,
                    landmarks=(),
                    embedding=vector,
                    too_small=min(x1 - x0, y1 - y0) + 1 < Face.MIN_SIZE_PX,
                    blurry=sharpness < Face.MIN_SHARPNESS,
                    sharpness=sharpness,
                )
            )
        return faces

    def _describe(self, pixels: NDArray[np.uint8]) -> list[tuple[Box, Embedding]]:
        out = []
        for rect in self.boxes(pixels):
            shape = self.shape_predictor(pixels, rect)
            vector = np.asarray(self.descriptor.compute_face_descriptor(pixels, shape))
            out.append(((rect.left(), rect.top(), rect.right(), rect.bottom()), vector))
        return out


@dataclass
class Clock:
    """Wall and CPU time summed over the calls it timed (both benchmarks use it)."""

    wall: float = 0.0  # seconds
    cpu: float = 0.0  # seconds of this process's CPU time, all threads

    def time(self, fn: Callable[..., T], *args: Any) -> T:
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn(*args)
        self.wall += time.perf_counter() - wall
        self.cpu += time.process_time() - cpu
        return result


def run_benchmark(
    n_photos: int = 20,
    *,
    seed: int = 0,
    analyzer: FaceAnalyzer | None = None,
    embed: bool = True,
) -> dict[str, float]:
    """Photos per second and face recall of our pipeline and the reference, same photos.

    ``embed=False`` times detection alone on both sides. Besides the five keys of the
    brief, the result has the CPU-time based rates (``*_cpu``), which a busy machine
    disturbs less than wall time, and the false boxes per photo.
    """
    analyzer = analyzer or FaceAnalyzer()
    reference = ReferencePipeline(analyzer)
    photos = class_like_photos(n_photos, seed=seed)
    ours, theirs = Clock(), Clock()
    hits = ref_hits = false = ref_false = faces = embedded = 0
    analyzer.analyze(photos[0].image, embed=embed)  # warm-up: first-call allocations
    for photo in photos:
        found = ours.time(partial(analyzer.analyze, embed=embed), photo.image)
        if embed:
            ref_found = theirs.time(reference.run, photo.image)
            ref_boxes = [box for box, _ in ref_found]
        else:
            pixels = np.asarray(photo.image)
            rects = theirs.time(reference.boxes, pixels)
            ref_boxes = [(r.left(), r.top(), r.right(), r.bottom()) for r in rects]
        h, f = score_boxes(photo, [face.box for face in found])
        rh, rf = score_boxes(photo, ref_boxes)
        hits, false, ref_hits, ref_false = hits + h, false + f, ref_hits + rh, ref_false + rf
        faces += len(photo.boxes)
        embedded += sum(face.embedding is not None for face in found)
    return {
        "photos_per_s": n_photos / ours.wall,
        "reference_photos_per_s": n_photos / theirs.wall,
        "speedup": theirs.wall / ours.wall,
        "face_recall": hits / faces,
        "reference_face_recall": ref_hits / faces,
        "photos_per_cpu_s": n_photos / ours.cpu,
        "reference_photos_per_cpu_s": n_photos / theirs.cpu,
        "speedup_cpu": theirs.cpu / ours.cpu,
        "false_boxes_per_photo": false / n_photos,
        "reference_false_boxes_per_photo": ref_false / n_photos,
        "faces": float(faces),
        "faces_embedded": float(embedded),
    }


def run_variants(n_photos: int = 20) -> dict[str, dict[str, float]]:
    """The benchmark with and without each optimisation of our pipeline."""
    variants: dict[str, tuple[dict[str, Any], bool]] = {
        "full pipeline, torch's default thread count": ({"num_threads": None}, True),
        "full pipeline, coarser pyramid (factor 0.6)": ({"pyramid_factor": 0.6}, True),
        "full pipeline, min face 24 px": ({"min_face_size": 24}, True),
        "detection only, default settings": ({}, False),
        "detection only, torch's default thread count": ({"num_threads": None}, False),
        "detection only, coarser pyramid (factor 0.6)": ({"pyramid_factor": 0.6}, False),
        "detection only, min face 24 px": ({"min_face_size": 24}, False),
    }
    out = {}
    for name, (options, embed) in variants.items():
        out[name] = run_benchmark(n_photos, analyzer=FaceAnalyzer(**options), embed=embed)
    return out


def _print(name: str, result: dict[str, float]) -> None:
    print(
        f"{name}\n"
        f"  ours      {result['photos_per_s']:6.2f} photos/s ({result['photos_per_cpu_s']:6.2f}"
        f" per CPU-s)  recall {result['face_recall']:.3f}"
        f"  false boxes/photo {result['false_boxes_per_photo']:.2f}\n"
        f"  reference {result['reference_photos_per_s']:6.2f} photos/s"
        f" ({result['reference_photos_per_cpu_s']:6.2f} per CPU-s)"
        f"  recall {result['reference_face_recall']:.3f}"
        f"  false boxes/photo {result['reference_false_boxes_per_photo']:.2f}\n"
        f"  speedup {result['speedup']:.2f}x wall, {result['speedup_cpu']:.2f}x CPU;"
        f" {result['faces_embedded']:.0f} of {result['faces']:.0f} faces embedded"
    )


if __name__ == "__main__":
    counts = [arg for arg in sys.argv[1:] if arg.isdigit()]
    count = int(counts[0]) if counts else 20
    _print("benchmark (default settings)", run_benchmark(count))
    if "--variants" in sys.argv:
        for label, numbers in run_variants(count).items():
            _print(label, numbers)
