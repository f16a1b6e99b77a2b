"""Faces in a class photo: where they are, whether they can be matched, and whose they are.

Why this module exists: a teacher's photo may only be published to an audience if every
recognisable child in it has parental consent for that audience. That needs three
things, all with weights that ship inside registry packages (no download at run time):

* **detection** of every face, small ones at the back of a group included: our own
  MTCNN (:mod:`models.images.mtcnn`) over the weights in ``facenet-pytorch==2.6.0``;
* a **descriptor** per face: dlib's 128-dimensional ResNet face descriptor
  (``dlib_face_recognition_resnet_model_v1.dat``), read by our own reader and run in
  torch, all faces of a photo in one batch (:mod:`models.images.descriptor`; equal to
  dlib's own within a Euclidean distance of 2e-6, at a tenth of its cost or less);
  the face is aligned by dlib's 5-point shape predictor
  (``shape_predictor_5_face_landmarks.dat``) and cut out by dlib's ``get_face_chip``,
  as dlib's ``compute_face_descriptor`` does. Both files come from
  ``face-recognition-models==0.3.0``; ``dlib-bin==20.0.1.post1`` runs the predictor;
* **matching** a descriptor to the enrolled children (:func:`match`): Euclidean
  distance, the closest enrolled person under :data:`MATCH_THRESHOLD`.

The face-recognition-models files are found without importing that package (its
``__init__`` needs ``pkg_resources``, which setuptools 81 and later no longer ship), and
every weight file is checked against a pinned sha256.

This module only describes faces; ``moderation.policy`` decides what an unmatched, too
small or blurry face means for a post. Descriptors of children are biometric data: keep
them in memory for the check and store only what enrolment needs.

Exception tree::

    FaceError
     +-- EnrolmentError    a reference photo does not show exactly one good face;
                           ``code`` is no_face, several_faces, face_too_small or
                           face_blurry
    WeightFileError        (models.images.mtcnn) a weight file is missing or not pinned,
     +-- DlibFormatError   (models.images.descriptor) or not the dlib network expected
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar, Final, Literal

import dlib
import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps

from models.images.descriptor import CHIP_PADDING, CHIP_SIZE, FaceDescriptor
from models.images.mtcnn import MTCNN, Detections, WeightFileError

__all__ = [
    "MATCH_THRESHOLD",
    "EnrolmentError",
    "Face",
    "FaceAnalyzer",
    "FaceError",
    "WeightFileError",
    "match",
]

DLIB_PACKAGE: Final = "face_recognition_models"
DLIB_PIP: Final = "pip install face-recognition-models==0.3.0 dlib-bin==20.0.1.post1"
SHAPE_PREDICTOR: Final = "shape_predictor_5_face_landmarks.dat"
DESCRIPTOR_MODEL: Final = "dlib_face_recognition_resnet_model_v1.dat"
# sha256 of the files in face-recognition-models==0.3.0: the weights this module is pinned to.
DLIB_SHA256: Final[dict[str, str]] = {
    SHAPE_PREDICTOR: "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
    DESCRIPTOR_MODEL: "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
}

# Euclidean distance between dlib descriptors under which two faces are the same person.
# dlib's own cut-off is 0.6 (99.38% on LFW pairs of adults). Measured here: one photo and
# its edits (flip, darker, half size, JPEG q30, slight blur) 0.08-0.23; Obama's other two
# photos against his enrolment photo 0.33-0.41, edits included; Obama against Biden and
# Collins 0.82-0.89. Pairs of different LFW faces (blurry 25 px crops blown up) are closer:
# 0.43% of 5,151 pairs under 0.5, 2% under 0.55, 7% under 0.6. A false match can publish a
# child without consent, while a missed match only sends the photo to a person, so we take
# 0.5: false matches stay under 1% and a real match keeps a margin of about 0.1.
# Measured with dlib's own descriptor; the torch port (models.images.descriptor) gives the
# same descriptors within 2e-6, so every distance above, and the threshold, still hold.
MATCH_THRESHOLD: Final = 0.5

EnrolmentCode = Literal["no_face", "several_faces", "face_too_small", "face_blurry"]
Embedding = NDArray[np.float64]


class FaceError(Exception):
    """Base class of the errors this module raises about images."""


class EnrolmentError(FaceError, ValueError):
    """A reference photo cannot enrol a person; ``code`` says why."""

    def __init__(self, code: EnrolmentCode, message: str) -> None:
        super().__init__(message)
        self.code: EnrolmentCode = code


@dataclass(frozen=True)
class Face:
    """One face found in an image, with what the consent check needs to know about it.

    ``box`` is (x0, y0, x1, y1) in pixels of the analysed image, ``x1``/``y1`` exclusive;
    ``landmarks`` are MTCNN's five points (left eye, right eye, nose, left and right mouth
    corner, image left/right) in the same pixels; ``embedding`` is the 128-d dlib
    descriptor, ``None`` for a face too small to describe (or when embedding was off).
    """

    MIN_SIZE_PX: ClassVar[int] = 40  # pixels: a face box with a side under this is `too_small`
    # Sharpness is the variance of the 4-neighbour Laplacian of the face box, resized to
    # SHARPNESS_SIDE_PX and stretched to a grey-level standard deviation of
    # SHARPNESS_CONTRAST (so a dark but sharp photo is not "blurry"). Measured on the
    # shared photos: sharp faces 760-1700; the same faces shrunk to 40 px wide and blown up
    # again 260-610, to 30 px 160-360, to 20 px 67-155; LFW's 25 px crops upscaled:
    # median 165. Under 150 a face carries about the detail of a 20-25 px face.
    MIN_SHARPNESS: ClassVar[float] = 150.0  # grey levels squared: under this, `blurry`
    SHARPNESS_SIDE_PX: ClassVar[int] = 64  # pixels: the face is measured at this size
    SHARPNESS_CONTRAST: ClassVar[float] = 50.0  # grey levels: standard deviation, see above

    box: tuple[int, int, int, int]
    score: float  # MTCNN's face probability, 0-1
    landmarks: tuple[tuple[float, float], ...]
    embedding: Embedding | None = field(repr=False, compare=False)
    too_small: bool
    blurry: bool
    sharpness: float  # the Laplacian variance behind `blurry`, grey levels squared

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]

    @property
    def matchable(self) -> bool:
        """Whether the face is fit for matching: described, large enough and sharp enough."""
        return self.embedding is not None and not self.too_small and not self.blurry


def match(
    embedding: Embedding,
    references: Mapping[str, Sequence[Embedding]],
    threshold: float = MATCH_THRESHOLD,
) -> str | None:
    """The enrolled person whose nearest reference is closest, if closer than ``threshold``.

    ``references`` maps a person id to that person's reference descriptors (one or more
    photos). Returns ``None`` when nobody is under the threshold.
    """
    best_id: str | None = None
    best = threshold
    for person, refs in references.items():
        if not refs:
            continue
        distance = float(np.min(np.linalg.norm(np.asarray(refs) - embedding, axis=1)))
        if distance < best:
            best_id, best = person, distance
    return best_id


def distance(a: Embedding, b: Embedding) -> float:
    """Euclidean distance between two descriptors (the quantity :func:`match` thresholds)."""
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


def dlib_model_dir() -> Path:
    """The ``models`` folder of face-recognition-models, found without importing it."""
    spec = importlib.util.find_spec(DLIB_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise WeightFileError(f"package face-recognition-models is not installed ({DLIB_PIP})")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def dlib_model_path(name: str, folder: Path | None = None, *, verify: bool = True) -> Path:
    """The dlib model file ``name`` in ``folder`` (default :func:`dlib_model_dir`), its
    sha256 checked against the pinned one when ``verify``."""
    path = (folder if folder is not None else dlib_model_dir()) / name
    if not path.is_file():
        raise WeightFileError(f"dlib model file {path} is missing ({DLIB_PIP})")
    if verify:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != DLIB_SHA256[name]:
            raise WeightFileError(f"{path} has sha256 {digest}, expected {DLIB_SHA256[name]}")
    return path


def laplacian_variance(grey: NDArray[np.float32]) -> float:
    """Variance of the 4-neighbour Laplacian over the interior of a 2-D grey image."""
    lap = grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4 * grey[1:-1, 1:-1]
    return float(lap.var())


class FaceAnalyzer:
    """Loads the detector and dlib's models once; :meth:`analyze` describes every face.

    ``min_face_size``, ``max_side`` and ``pyramid_factor`` tune the MTCNN detector (see
    :class:`models.images.mtcnn.MTCNN`); ``num_threads`` is the torch thread count of
    both the detector and the descriptor (one suits a two-core worker that runs two
    processes). Descriptors are computed on the image at full resolution, all faces of
    a photo in one torch batch; ``descriptor_cache`` is where the converted descriptor
    weights are kept (see :func:`models.images.descriptor.load_state_dict`).

    Measured by :func:`models.images.bench_faces.run_benchmark` (20 class-like photos of
    1024x683 with 6-15 faces, 142 faces described): 5.3-6.0x the reference pipeline's
    photos per second (5.4-5.7x per CPU second) at face recall 1.0 against 0.87; 164 ms
    of CPU per photo, of which MTCNN 104 ms, the descriptor 6.6 ms a face and dlib's
    alignment and chip 1.3 ms a face. With dlib's own descriptor (76 ms a face) it was
    1.4x.
    """

    # MTCNN's boxes reach from the eyebrows to the chin and are taller than wide; dlib's
    # shape predictor was trained on its own detector's square boxes. Measured on the
    # shared photos, dlib's box is about 1.08 MTCNN widths wide, horizontally centred,
    # with its centre 0.54 MTCNN heights below the MTCNN top.
    DLIB_BOX_SIDE: ClassVar[float] = 1.08  # in MTCNN box widths
    DLIB_BOX_CENTRE_Y: ClassVar[float] = 0.54  # in MTCNN box heights, from the top

    def __init__(
        self,
        *,
        min_face_size: int = 20,
        max_side: int | None = 1024,
        pyramid_factor: float = 0.709,
        num_threads: int | None = 1,
        mtcnn_weights: Path | None = None,
        dlib_models: Path | None = None,
        descriptor_cache: Path | None = None,
        verify_weights: bool = True,
    ) -> None:
        self.detector = MTCNN(
            min_face_size=min_face_size,
            factor=pyramid_factor,
            max_side=max_side,
            num_threads=num_threads,
            weights=mtcnn_weights,
            verify_weights=verify_weights,
        )
        self.shape_predictor = dlib.shape_predictor(
            str(dlib_model_path(SHAPE_PREDICTOR, dlib_models, verify=verify_weights))
        )
        self.descriptor = FaceDescriptor(
            dlib_model_path(DESCRIPTOR_MODEL, dlib_models, verify=False),  # hashed inside
            expected_sha256=DLIB_SHA256[DESCRIPTOR_MODEL],
            verify=verify_weights,
            num_threads=num_threads,
            cache_dir=descriptor_cache,
        )

    def analyze(self, image: Image.Image, *, embed: bool = True) -> list[Face]:
        """Every face in ``image``, best detection score first.

        The descriptors of all describable faces are computed in one batch.
        """
        image = _upright_rgb(image)
        pixels = np.asarray(image)
        found = self.detector.detect(image)
        faces = [self._face(pixels, found, i) for i in range(len(found))]
        if not embed:
            return faces
        todo = [i for i, face in enumerate(faces) if not face.too_small]
        if not todo:
            return faces
        chips = np.stack([self.chip(pixels, found.boxes[i].tolist()) for i in todo])
        vectors = self.descriptor.describe(chips)
        for i, vector in zip(todo, vectors, strict=True):
            faces[i] = replace(faces[i], embedding=vector)
        return faces

    def chip(self, pixels: NDArray[np.uint8], box: Sequence[float]) -> NDArray[np.uint8]:
        """The aligned 150x150 chip of the face in MTCNN ``box``, as dlib's
        ``compute_face_descriptor`` cuts it: 5-point shape, then ``get_face_chip``."""
        shape = self.shape_predictor(pixels, self.dlib_rectangle(box))
        chip: NDArray[np.uint8] = dlib.get_face_chip(
            pixels, shape, size=CHIP_SIZE, padding=CHIP_PADDING
        )
        return chip

    def reference_embedding(self, image: Image.Image) -> Embedding:
        """The descriptor of the one good face in an enrolment photo.

        Faces narrower than :attr:`Face.MIN_SIZE_PX` are ignored (a face in the
        background); there must be exactly one other, and it must not be blurry.
        """
        faces = self.analyze(image)
        if not faces:
            raise EnrolmentError("no_face", "no face was found in the reference photo")
        large = [face for face in faces if not face.too_small]
        if not large:
            raise EnrolmentError(
                "face_too_small",
                f"the face is narrower than {Face.MIN_SIZE_PX} pixels; use a closer photo",
            )
        if len(large) > 1:
            raise EnrolmentError(
                "several_faces",
                f"{len(large)} faces were found; a reference photo must show one person",
            )
        (face,) = large
        if face.blurry or face.embedding is None:
            raise EnrolmentError(
                "face_blurry", "the face is too blurry to enrol; use a sharp photo"
            )
        return face.embedding

    def dlib_rectangle(self, box: Sequence[float]) -> dlib.rectangle:
        """The square box dlib's shape predictor expects for an MTCNN box."""
        x0, y0, x1, y1 = box
        side = (x1 - x0) * self.DLIB_BOX_SIDE
        cx, cy = (x0 + x1) / 2, y0 + (y1 - y0) * self.DLIB_BOX_CENTRE_Y
        return dlib.rectangle(
            round(cx - side / 2), round(cy - side / 2), round(cx + side / 2), round(cy + side / 2)
        )

    def _face(self, pixels: NDArray[np.uint8], found: Detections, i: int) -> Face:
        """Face ``i`` of ``found``, not yet described."""
        height, width = pixels.shape[:2]
        x0, y0, x1, y1 = found.boxes[i].tolist()
        box = (
            max(0, round(x0)),
            max(0, round(y0)),
            min(width, round(x1)),
            min(height, round(y1)),
        )
        sharpness = _sharpness(pixels, box)
        return Face(
            box=box,
            score=float(found.scores[i]),
            landmarks=tuple((float(x), float(y)) for x, y in found.landmarks[i]),
            embedding=None,
            too_small=min(x1 - x0, y1 - y0) < Face.MIN_SIZE_PX,
            blurry=sharpness < Face.MIN_SHARPNESS,
            sharpness=sharpness,
        )


def _upright_rgb(image: Image.Image) -> Image.Image:
    """Apply an EXIF orientation if one is left, and convert to RGB."""
    if image.getexif().get(0x0112, 1) != 1:  # 0x0112: the EXIF Orientation tag
        image = ImageOps.exif_transpose(image)
    return image if image.mode == "RGB" else image.convert("RGB")


def _sharpness(pixels: NDArray[np.uint8], box: tuple[int, int, int, int]) -> float:
    x0, y0, x1, y1 = box
    if x1 - x0 < 3 or y1 - y0 < 3:
        return 0.0
    side = Face.SHARPNESS_SIDE_PX
    crop = Image.fromarray(pixels[y0:y1, x0:x1]).convert("L")
    grey = np.asarray(crop.resize((side, side), Image.Resampling.BILINEAR), dtype=np.float32)
    spread = float(grey.std())
    if spread < 1.0:  # a flat patch: no detail at all
        return 0.0
    return laplacian_variance((grey - grey.mean()) * (Face.SHARPNESS_CONTRAST / spread))
