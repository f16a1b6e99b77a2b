"""Everything the photo gate asks of the image models, for one photo or a video's frames.

Why this module exists: the media worker needs, per photo, the faces (for the consent
check and for blurring), the nudity findings and the perceptual hashes (for the hash
lists), and the review page needs the face boxes to draw. Those are three models with
their own loading, thread and input conventions; this module loads them once per
process (:class:`ImageModels`) and runs them on the sanitised image in one call
(:func:`analyse_image`, :func:`analyse_frames`), so the worker, the benchmark
(``models.images.bench``) and the tests exercise the very same steps.

Input: ``moderation.media.sanitize_image(...).rgb`` (or ``moderation.video.sample_frames``
for a video): RGB, EXIF orientation applied, metadata gone. Every box in the results is
in that image's pixels, (x0, y0, x1, y1) with ``x1``/``y1`` exclusive.

What leaves the process (``to_json``) is what the stored media result needs: face boxes
in pixels and as fractions of the width and height (the review page overlays them on a
scaled photo), each face's quality flags, the nudity findings, and the hashes as 16-hex
strings with variant = index (``moderation.storage.image_hashes``'s layout). **Never the
descriptors**: they are biometric data of children, used in memory for the consent
check (``moderation.photo_check.check_photo`` takes :attr:`ImageAnalysis.faces`) and
then dropped.

Measured end to end, with sanitising and blurring: ``moderation bench images`` (see
``models.images.bench`` and docs/models.md).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from PIL import Image

from models.images.faces import Face, FaceAnalyzer
from models.images.hashes import ImageHashes, hash_to_str, image_hashes
from models.images.nudity import FakeNudityDetector, NudityDetector, NudityResult

__all__ = [
    "FaceFinder",
    "FakeFaceFinder",
    "FrameAnalysis",
    "ImageAnalysis",
    "ImageModels",
    "NudityScorer",
    "VideoAnalysis",
    "analyse_frames",
    "analyse_image",
]

# Torch and onnxruntime threads per worker process. A two-core media worker runs two
# processes (``moderation worker --queues media --concurrency 2``), one thread each: the
# detector's and descriptor's convolutions are small, and a second thread made them
# slower, not faster, on the two-core machines (see models.images.mtcnn and .descriptor);
# the nudity model took 27 ms of CPU a photo at one onnxruntime thread, 60 ms at two.
WORKER_THREADS = 1
BOX_FRACTION_DIGITS = 4  # decimals of the box fractions: 1/10,000 of a side, under a pixel


class FaceFinder(Protocol):
    """What the pipeline needs of a face model (``FaceAnalyzer`` is the real one)."""

    def analyze(self, image: Image.Image) -> list[Face]: ...


class NudityScorer(Protocol):
    """What the pipeline needs of a nudity model (``NudityDetector`` is the real one)."""

    def score(self, image: Image.Image) -> NudityResult: ...


class FakeFaceFinder:
    """For tests and local development: no model; every image gets the faces given."""

    def __init__(self, faces: Sequence[Face] = ()) -> None:
        self._faces = list(faces)

    def analyze(self, image: Image.Image) -> list[Face]:
        return list(self._faces)


@dataclass(frozen=True, eq=False)
class ImageModels:
    """The face and nudity models of one process; build with :meth:`load`.

    Calls are serialised by a lock: neither dlib's shape predictor nor the torch modules
    are documented as safe to share between threads. A prefork worker runs one task at a
    time, so the lock costs nothing there, and it keeps a threads pool correct.
    """

    faces: FaceFinder
    nudity: NudityScorer
    threads: int | None = WORKER_THREADS
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @classmethod
    def load(cls, *, threads: int | None = WORKER_THREADS) -> ImageModels:
        """The packaged models (weights checked against their pinned sha256), loaded once
        per process for each ``threads``: later calls return the same instance.

        ``threads`` is the torch and onnxruntime thread count of every model call;
        ``None`` keeps the libraries' defaults (one thread per core).
        """
        return _load(threads)

    @classmethod
    def fake(
        cls, faces: Sequence[Face] = (), nudity: FakeNudityDetector | None = None
    ) -> ImageModels:
        """Models that load nothing and find what they are given (tests, development)."""
        return cls(faces=FakeFaceFinder(faces), nudity=nudity or FakeNudityDetector())


@functools.cache
def _load(threads: int | None) -> ImageModels:
    return ImageModels(
        faces=FaceAnalyzer(num_threads=threads),
        nudity=NudityDetector(num_threads=threads),
        threads=threads,
    )


def _face_json(face: Face, width: int, height: int) -> dict[str, Any]:
    """One face for the stored result and the review page: no descriptor, no landmarks."""
    x0, y0, x1, y1 = face.box
    return {
        "box": [x0, y0, x1, y1],
        "box_fraction": [
            round(x0 / width, BOX_FRACTION_DIGITS),
            round(y0 / height, BOX_FRACTION_DIGITS),
            round(x1 / width, BOX_FRACTION_DIGITS),
            round(y1 / height, BOX_FRACTION_DIGITS),
        ],
        "score": round(face.score, 4),
        "too_small": face.too_small,
        "blurry": face.blurry,
        "matchable": face.matchable,
    }


@dataclass(frozen=True, eq=False)
class FrameAnalysis:
    """The faces and the nudity findings of one image or video frame."""

    width: int  # pixels of the analysed image
    height: int
    faces: list[Face]  # best detection first; descriptors in memory only
    nudity: NudityResult

    def to_json(self) -> dict[str, Any]:
        """Sizes, faces (boxes in pixels and as fractions) and nudity findings."""
        return {
            "width": self.width,
            "height": self.height,
            "faces": [_face_json(face, self.width, self.height) for face in self.faces],
            "nudity": self.nudity.to_json(),
        }


def _hashes_json(hashes: ImageHashes) -> dict[str, Any]:
    """The hashes as the hash lists store them: 16-hex strings, variant = index; none at
    all for an image too flat to be recognised by its hash (it would match every other
    such image; ``models.images.hashes.QUALITY_THRESHOLD``)."""
    stored = [hash_to_str(value) for value in hashes.all()] if hashes.matchable else []
    return {"hashes": stored, "hash_quality": hashes.quality}


@dataclass(frozen=True, eq=False)
class ImageAnalysis(FrameAnalysis):
    """A photo: its frame analysis and its perceptual hashes (pHash and crop variants)."""

    hashes: ImageHashes = field(kw_only=True)

    def to_json(self) -> dict[str, Any]:
        """The frame's JSON plus ``hashes`` (16-hex strings in ``ImageHashes.all()``
        order, variant = index; empty when the image is not matchable) and
        ``hash_quality``."""
        return {**super().to_json(), **_hashes_json(self.hashes)}


@dataclass(frozen=True, eq=False)
class VideoAnalysis:
    """A video's sampled frames, each analysed, and the hashes of its first frame."""

    frames: list[FrameAnalysis]
    hashes: ImageHashes | None  # of the first frame; None when there were no frames

    @property
    def faces(self) -> list[list[Face]]:
        """The faces per frame, as ``moderation.photo_check.check_video`` takes them."""
        return [frame.faces for frame in self.frames]

    @property
    def nudity(self) -> list[NudityResult]:
        """One result per frame, as ``moderation.photo_check.nudity_findings`` takes them."""
        return [frame.nudity for frame in self.frames]

    def to_json(self) -> dict[str, Any]:
        hashes = _hashes_json(self.hashes) if self.hashes is not None else {"hashes": []}
        return {"frames": [frame.to_json() for frame in self.frames], **hashes}


def _frame(rgb: Image.Image, models: ImageModels) -> FrameAnalysis:
    return FrameAnalysis(
        width=rgb.width,
        height=rgb.height,
        faces=models.faces.analyze(rgb),
        nudity=models.nudity.score(rgb),
    )


def analyse_image(rgb: Image.Image, models: ImageModels) -> ImageAnalysis:
    """Faces (with descriptors), nudity findings and hashes of one sanitised photo."""
    with models._lock:  # one photo, or all of a video's frames, at a time
        frame = _frame(rgb, models)
    return ImageAnalysis(
        width=frame.width,
        height=frame.height,
        faces=frame.faces,
        nudity=frame.nudity,
        hashes=image_hashes(rgb),
    )


def analyse_frames(frames: Sequence[Image.Image], models: ImageModels) -> VideoAnalysis:
    """Faces and nudity findings of each sampled video frame; hashes of the first only
    (a video is listed by its opening picture, and hashing every frame buys nothing)."""
    with models._lock:
        analysed = [_frame(frame, models) for frame in frames]
    return VideoAnalysis(analysed, image_hashes(frames[0]) if frames else None)
