"""``moderation bench images``: photos per second through the whole image pipeline.

Why this module exists: the media worker's cost per photo is what decides how many
workers a school district needs, and the faces-only benchmark
(``models.images.bench_faces``) leaves out most of what the worker does to a photo. Here
each photo goes through the worker's steps, in the worker's order:

1. ``moderation.media.sanitize_image`` on the uploaded JPEG bytes (decode with limits,
   orientation, metadata stripped, re-encoded);
2. :func:`models.images.pipeline.analyse_image` on its RGB image: faces with descriptors,
   nudity findings, perceptual hashes and their crop variants;
3. ``models.images.blur.blur_faces`` on every :data:`BLUR_EVERY`-th face found (a
   stand-in for the children without consent, so that blurring is paid for).

The reference does the same three steps with the same sanitiser, nudity model and
hashes; only its faces come from what a developer would reach for first, the
``face_recognition`` package's recipe (dlib's HOG detector upsampled once, dlib's
5-point shapes and dlib's own descriptor network: ``bench_faces.ReferencePipeline``),
plugged into the very same :func:`~models.images.pipeline.analyse_image`.

The photos are ``bench_faces.class_like_photos``: 1024x683 class-like group photos with
6-15 faces of 30-110 px whose true boxes are known, encoded as JPEG (quality 90) before
the run, so both sides also report face recall. Ours and the reference alternate photo
by photo (and which goes first alternates too), so that a busy machine slows both
alike; wall and CPU time are both reported, and their ratio is the figure to compare.

Measured (``moderation bench images --photos 20``, two runs on the shared two-core
machine under load): 4.2-4.4x the reference's photos/s in wall time, 4.4-4.5x in CPU
time (ours about 4.5 photos per CPU-second), face recall 1.000 against 0.874; details in
docs/models.md.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from PIL import Image

from models.images.bench_faces import (
    Clock,
    GroupPhoto,
    ReferencePipeline,
    class_like_photos,
    score_boxes,
)
from models.images.blur import blur_faces
from models.images.faces import Face, FaceAnalyzer
from models.images.pipeline import ImageAnalysis, ImageModels, analyse_image
from moderation.media import sanitize_image

BLUR_EVERY: Final = 2  # every second face found is blurred, to count the blur's cost
JPEG_QUALITY: Final = 90  # of the uploaded photos (a phone's camera app: 85-95)
STAGES: Final = ("sanitize", "analyse", "blur")


def upload_bytes(image: Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    """A composed photo as the JPEG bytes an upload would carry."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@dataclass
class Side:
    """One pipeline under test, and what it has measured so far."""

    name: str
    models: ImageModels
    clocks: dict[str, Clock] = field(default_factory=lambda: {s: Clock() for s in STAGES})
    hits: int = 0  # true faces found
    false_boxes: int = 0  # boxes that are no true face
    blurred: int = 0  # faces blurred

    def process(self, data: bytes) -> ImageAnalysis:
        """The worker's steps for one upload, each timed on its own clock."""
        clean = self.clocks["sanitize"].time(sanitize_image, data)
        analysis = self.clocks["analyse"].time(analyse_image, clean.rgb, self.models)
        chosen = analysis.faces[::BLUR_EVERY]
        self.clocks["blur"].time(blur_faces, clean.rgb, [face.box for face in chosen])
        self.blurred += len(chosen)
        return analysis

    def score(self, photo: GroupPhoto, faces: Sequence[Face]) -> None:
        hits, false = score_boxes(photo, [face.box for face in faces])
        self.hits += hits
        self.false_boxes += false

    @property
    def wall(self) -> float:
        return sum(clock.wall for clock in self.clocks.values())

    @property
    def cpu(self) -> float:
        return sum(clock.cpu for clock in self.clocks.values())

    def cpu_ms_per_photo(self, photos: int) -> dict[str, float]:
        return {name: round(c.cpu / photos * 1000, 1) for name, c in self.clocks.items()}


def run_benchmark(
    n_photos: int = 20,
    *,
    seed: int = 0,
    threads: int = 1,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Photos per second and face recall of our image pipeline and the reference.

    The keys ``photos_per_s``, ``reference_photos_per_s``, ``speedup``, ``face_recall``
    and ``reference_face_recall`` are wall-time rates and recall; the ``*_cpu_*`` keys
    are the same in CPU time of this process (less disturbed by other jobs), and
    ``cpu_ms_per_photo`` splits each side's CPU time by step.
    """
    if n_photos < 1:
        raise ValueError("the benchmark needs at least one photo")
    progress(f"composing {n_photos} class photos (seed {seed}) ...")
    photos = class_like_photos(n_photos, seed=seed)
    uploads = [upload_bytes(photo.image) for photo in photos]
    progress(f"loading the models ({threads} thread(s)) and dlib's reference ...")
    ours_models = ImageModels.load(threads=threads)
    analyzer = ours_models.faces
    assert isinstance(analyzer, FaceAnalyzer)  # ImageModels.load builds the real one
    reference_models = ImageModels(
        faces=ReferencePipeline(analyzer), nudity=ours_models.nudity, threads=threads
    )
    ours, reference = Side("ours", ours_models), Side("reference", reference_models)
    for side in (ours, reference):  # warm-up, untimed: first-call allocations
        analyse_image(sanitize_image(uploads[0]).rgb, side.models)
    faces = 0
    for index, (photo, data) in enumerate(zip(photos, uploads, strict=True)):
        order = (ours, reference) if index % 2 == 0 else (reference, ours)
        line = []
        for side in order:
            wall = side.wall
            found = side.process(data).faces
            side.score(photo, found)
            line.append(f"{side.name} {len(found)} in {(side.wall - wall) * 1000:.0f} ms")
        faces += len(photo.boxes)
        progress(f"photo {index + 1}/{n_photos}: {len(photo.boxes)} faces; " + ", ".join(line))
    return {
        "photos_per_s": round(n_photos / ours.wall, 3),
        "reference_photos_per_s": round(n_photos / reference.wall, 3),
        "speedup": round(reference.wall / ours.wall, 2),
        "face_recall": round(ours.hits / faces, 3),
        "reference_face_recall": round(reference.hits / faces, 3),
        "photos_per_cpu_s": round(n_photos / ours.cpu, 3),
        "reference_photos_per_cpu_s": round(n_photos / reference.cpu, 3),
        "speedup_cpu": round(reference.cpu / ours.cpu, 2),
        "false_boxes_per_photo": round(ours.false_boxes / n_photos, 3),
        "reference_false_boxes_per_photo": round(reference.false_boxes / n_photos, 3),
        "cpu_ms_per_photo": ours.cpu_ms_per_photo(n_photos),
        "reference_cpu_ms_per_photo": reference.cpu_ms_per_photo(n_photos),
        "faces_blurred": ours.blurred,
        "reference_faces_blurred": reference.blurred,
        "photos": n_photos,
        "faces": faces,
        "threads": threads,
        "seed": seed,
    }


def format_table(result: dict[str, Any]) -> str:
    """The result as a small table, ours beside the reference, then the ratios."""
    ours_ms, ref_ms = result["cpu_ms_per_photo"], result["reference_cpu_ms_per_photo"]
    rows = [
        ("photos/s (wall)", result["photos_per_s"], result["reference_photos_per_s"], ".2f"),
        (
            "photos per CPU-s",
            result["photos_per_cpu_s"],
            result["reference_photos_per_cpu_s"],
            ".2f",
        ),
        *((f"CPU ms/photo: {s}", ours_ms[s], ref_ms[s], ".1f") for s in STAGES),
        ("face recall", result["face_recall"], result["reference_face_recall"], ".3f"),
        (
            "false boxes/photo",
            result["false_boxes_per_photo"],
            result["reference_false_boxes_per_photo"],
            ".2f",
        ),
        ("faces blurred", result["faces_blurred"], result["reference_faces_blurred"], "d"),
    ]
    lines = [f"{'':24}{'ours':>10}{'reference':>12}"]
    lines += [f"{name:24}{a:>10{fmt}}{b:>12{fmt}}" for name, a, b, fmt in rows]
    lines.append(
        f"speedup: {result['speedup']:.2f}x wall, {result['speedup_cpu']:.2f}x CPU "
        f"({result['photos']} photos, {result['faces']} faces, {result['threads']} thread(s), "
        "interleaved in one process; reference: dlib HOG + dlib descriptor)"
    )
    return "\n".join(lines)
