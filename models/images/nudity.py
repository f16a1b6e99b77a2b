"""Exposed-body detection in photos, with the NudeNet 320n detector run on onnxruntime.

Why this module exists: POLICY.md rule 3 forbids sexual material, and photos of
children are what this service sees most. This module finds exposed breasts, genitals,
buttocks and anus in a photo and says where; ``moderation.policy`` decides (a hold for
a teacher's review, not a verdict). Covered body parts, bellies, feet, armpits, male
chests and faces are reported too, as information: swimming lessons and sports days are
school life.

The weights. ``320n.onnx`` (12 MB) ships inside the wheel ``nudenet==3.4.2``: a YOLOv8n
detector (Ultralytics 8.2.46, per the file's metadata) with 18 classes at 320x320 input.
It is found through the installed distribution's file list, without importing
``nudenet`` (whose import pulls in OpenCV), and checked against :data:`MODEL_SHA256`.
Nothing is downloaded. Licence: PyPI's metadata says MIT, but the wheel's LICENSE file
and the model's own metadata say AGPL-3.0 (Ultralytics), and NudeNet's maintainer says
AGPL applies (NudeNet issues #177, #198). Whoever ships this service must settle that.

Why our own pre- and post-processing rather than ``nudenet.NudeDetector``: nudenet 3.4.2
feeds the model BGR where Ultralytics models are trained on RGB (NudeNet issue #203:
``COLOR_RGBA2BGR`` then ``swapRB=True``), pads to a square with black at the bottom
and right, and runs one class-agnostic NMS over all labels, so a confident covered
box can suppress an overlapping exposed one. The steps here, learnt from reading its
source and the model's metadata and written anew:

1. letterbox (:func:`letterbox`): RGB, scaled so the long side is 320, centred on a
   320x320 canvas of grey 114 (Ultralytics' fill), values in [0, 1], NCHW float32;
2. the model's one output, ``(1, 22, 2100)``: per anchor (40x40 + 20x20 + 10x10 cells),
   box centre x, y, width, height in input pixels, then 18 class scores (sigmoid);
3. decoding (:func:`decode`): every (anchor, class) pair scoring at least
   :attr:`NudityDetector.MIN_SCORE` is a candidate, not only each anchor's best class,
   so an exposed score under a higher covered one survives; boxes go back to the
   photo's pixels; non-maximum suppression per class at IoU :attr:`NudityDetector.NMS_IOU`.

What is tested, and what is not. There are no explicit test images, and none may be
fetched, so the detector's recall on nudity is **not measured here** at all, nor its
behaviour on children in swimwear. Tested: the weights load offline and match their
checksum; the decoding maps a hand-made output array to the right labels, scores and
boxes; the shared face photos (and scikit-image's samples, when installed) give no
exposed label, while the model finds their faces (FACE_MALE / FACE_FEMALE), which
checks the letterbox and box mapping end to end. Known false positive: a rainbow colour
wheel scores BUTTOCKS_EXPOSED 0.74 (0.83 through nudenet's code). The face labels'
gender is unreliable (Obama and Biden come out FACE_FEMALE). The threshold below is a
convention, not a calibration; calibrate it on a licensed evaluation set before relying
on scores.

Checked by hand once, not in the tests: on the shared photos our face boxes agree with
``nudenet.NudeDetector``'s within a few pixels; fed BGR as nudenet does, the photos gave
lower face scores (astronaut 0.76 against 0.84) and spurious FEMALE_BREAST_COVERED and
BUTTOCKS_COVERED boxes on suits: some evidence, beyond Ultralytics' convention, that
RGB is right.

Exception tree::

    NudityModelError    the weights are missing, altered or not the expected model, or
                        the model's output has an unexpected shape
"""

from __future__ import annotations

import ast
import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from PIL import Image

MODEL_DISTRIBUTION = "nudenet"  # the PyPI package that ships the weights, pinned at 3.4.2
MODEL_FILE = "nudenet/320n.onnx"  # path inside that distribution
MODEL_SHA256 = "c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f"
SCORER_NAME = "nudenet-320n"
INPUT_SIZE = 320  # pixels, square model input (the model's metadata: imgsz [320, 320])
PAD_VALUE = 114  # grey level of the letterbox border (Ultralytics' fill)

# Class id -> label, in the model's order (checked against its metadata at load).
LABELS: tuple[str, ...] = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)

# The labels the policy holds on. MALE_BREAST_, BELLY_, FEET_ and ARMPITS_EXPOSED are
# left out on purpose: children at the pool or on the sports field show them.
EXPOSED_LABELS: frozenset[str] = frozenset(
    {
        "FEMALE_BREAST_EXPOSED",
        "FEMALE_GENITALIA_EXPOSED",
        "MALE_GENITALIA_EXPOSED",
        "BUTTOCKS_EXPOSED",
        "ANUS_EXPOSED",
    }
)

Box = tuple[int, int, int, int]  # (left, top, right, bottom) in pixels of the photo, as PIL


class NudityModelError(RuntimeError):
    """The weights are missing, altered or another model, or its output is malformed."""


@dataclass(frozen=True, slots=True)
class NudityFinding:
    """One detected body part (or face): its label, score in [0, 1] and box."""

    label: str
    score: float
    box: Box

    @property
    def exposed(self) -> bool:
        return self.label in EXPOSED_LABELS


@dataclass(frozen=True, slots=True)
class NudityResult:
    """What the detector says about one photo; answers the policy's questions."""

    # Score at or above which an exposed finding counts. 0.25 is the detection
    # confidence that both NudeNet (its NMS score threshold) and Ultralytics' predict
    # use by default: a convention, not calibrated here (no positive test images). A
    # finding only holds a photo for review, so the threshold leans to recall.
    EXPOSED_THRESHOLD: ClassVar[float] = 0.25

    findings: tuple[NudityFinding, ...]
    scorer: str = SCORER_NAME

    def exposed_labels(self, threshold: float | None = None) -> list[str]:
        """The exposed labels found at or above ``threshold``, each once, highest score first."""
        limit = self.EXPOSED_THRESHOLD if threshold is None else threshold
        best: dict[str, float] = {}
        for finding in self.findings:
            if finding.exposed and finding.score >= limit:
                best[finding.label] = max(finding.score, best.get(finding.label, 0.0))
        return sorted(best, key=lambda label: (-best[label], label))

    def has_exposed(self, threshold: float | None = None) -> bool:
        return bool(self.exposed_labels(threshold))

    def max_exposed_score(self) -> float:
        """The highest score among exposed findings, 0.0 when there are none."""
        return max((f.score for f in self.findings if f.exposed), default=0.0)

    def to_json(self) -> dict[str, object]:
        return {
            "scorer": self.scorer,
            "findings": [
                {"label": f.label, "score": f.score, "box": list(f.box)} for f in self.findings
            ],
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> NudityResult:
        findings = tuple(
            NudityFinding(
                label=str(item["label"]),
                score=float(item["score"]),
                box=_as_box(item["box"]),
            )
            for item in raw["findings"]
        )
        return cls(findings=findings, scorer=str(raw["scorer"]))


def _as_box(values: Sequence[Any]) -> Box:
    left, top, right, bottom = (int(v) for v in values)
    return (left, top, right, bottom)


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How a photo was placed on the model's square input: maps boxes back to the photo."""

    scale_x: float  # input pixels per photo pixel, across
    scale_y: float  # input pixels per photo pixel, down
    pad_x: float  # input pixels of border left of the photo
    pad_y: float  # input pixels of border above the photo
    width: int  # the photo's size, in its own pixels
    height: int


def letterbox(
    image: Image.Image, size: int = INPUT_SIZE
) -> tuple[npt.NDArray[np.float32], Letterbox]:
    """The model input for a photo (1, 3, size, size), RGB in [0, 1], and its placement."""
    if image.width < 1 or image.height < 1:
        raise ValueError("cannot score an empty image")
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    scale = size / max(rgb.size)
    new_w = min(size, max(1, round(rgb.width * scale)))
    new_h = min(size, max(1, round(rgb.height * scale)))
    # reducing_gap: a box reduction first, so a 40-megapixel photo is no slower than a small one
    resized = rgb.resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=3.0)
    left, top = (size - new_w) // 2, (size - new_h) // 2
    canvas = Image.new("RGB", (size, size), (PAD_VALUE,) * 3)
    canvas.paste(resized, (left, top))
    array = np.asarray(canvas, dtype=np.float32) / np.float32(255.0)
    batch = np.ascontiguousarray(array.transpose(2, 0, 1)[np.newaxis])
    frame = Letterbox(
        scale_x=new_w / rgb.width,
        scale_y=new_h / rgb.height,
        pad_x=float(left),
        pad_y=float(top),
        width=rgb.width,
        height=rgb.height,
    )
    return batch, frame


def decode(
    output: npt.NDArray[np.floating[Any]],
    frame: Letterbox,
    *,
    min_score: float,
    iou: float,
) -> list[NudityFinding]:
    """Findings from the model's raw output for one photo, highest score first.

    ``output`` is ``(1, 4 + classes, anchors)`` or ``(4 + classes, anchors)``: per anchor
    the box centre x, y, width and height in input pixels, then one score per label.
    """
    rows = np.asarray(output, dtype=np.float32)
    if rows.ndim == 3 and rows.shape[0] == 1:
        rows = rows[0]
    if rows.ndim != 2 or rows.shape[0] != 4 + len(LABELS):
        raise NudityModelError(
            f"expected model output (1, {4 + len(LABELS)}, anchors), got {np.shape(output)}"
        )
    scores = rows[4:].T  # (anchors, classes)
    anchors, classes = np.nonzero(scores >= min_score)
    if not len(anchors):
        return []
    confidence = scores[anchors, classes]
    cx, cy, w, h = rows[:4, anchors]
    boxes = np.stack(
        [
            (cx - w / 2 - frame.pad_x) / frame.scale_x,
            (cy - h / 2 - frame.pad_y) / frame.scale_y,
            (cx + w / 2 - frame.pad_x) / frame.scale_x,
            (cy + h / 2 - frame.pad_y) / frame.scale_y,
        ],
        axis=1,
    )
    np.clip(boxes[:, 0::2], 0, frame.width, out=boxes[:, 0::2])
    np.clip(boxes[:, 1::2], 0, frame.height, out=boxes[:, 1::2])
    findings: list[NudityFinding] = []
    for cls in np.unique(classes):
        of_class = np.flatnonzero(classes == cls)
        for i in of_class[_nms(boxes[of_class], confidence[of_class], iou)]:
            left, top, right, bottom = (round(float(v)) for v in boxes[i])
            if right > left and bottom > top:  # a box wholly in the border is dropped
                box = (left, top, right, bottom)
                findings.append(NudityFinding(LABELS[cls], float(confidence[i]), box))
    findings.sort(key=lambda f: (-f.score, f.label, f.box))
    return findings


def _nms(
    boxes: npt.NDArray[np.float32], scores: npt.NDArray[np.float32], iou: float
) -> npt.NDArray[np.int64]:
    """Greedy non-maximum suppression: indices of the boxes kept, highest score first."""
    order = np.argsort(-scores, kind="stable")
    areas = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    kept: list[int] = []
    while len(order):
        best, rest = int(order[0]), order[1:]
        kept.append(best)
        width = np.minimum(boxes[best, 2], boxes[rest, 2]) - np.maximum(
            boxes[best, 0], boxes[rest, 0]
        )
        height = np.minimum(boxes[best, 3], boxes[rest, 3]) - np.maximum(
            boxes[best, 1], boxes[rest, 1]
        )
        overlap = np.maximum(width, 0) * np.maximum(height, 0)
        union = areas[best] + areas[rest] - overlap
        ratio = np.divide(overlap, union, out=np.zeros_like(overlap), where=union > 0)
        order = rest[ratio <= iou]
    return np.asarray(kept, dtype=np.int64)


def packaged_model_path() -> Path:
    """Where the installed ``nudenet`` distribution keeps ``320n.onnx`` (no import of it)."""
    try:
        distribution = metadata.distribution(MODEL_DISTRIBUTION)
    except metadata.PackageNotFoundError as error:
        raise NudityModelError(
            f"{MODEL_DISTRIBUTION} is not installed: pip install nudenet==3.4.2"
        ) from error
    path = Path(str(distribution.locate_file(MODEL_FILE)))
    if not path.is_file():
        raise NudityModelError(f"{MODEL_FILE} not found in {MODEL_DISTRIBUTION} at {path}")
    return path


class NudityDetector:
    """NudeNet 320n on onnxruntime: load once, then :meth:`detect` or :meth:`score` photos.

    Pass photos as displayed (``moderation.media.sanitize_image``'s RGB output: EXIF
    orientation applied). ``model_path`` may point at another NudeNet export with the
    same 18 labels (the 640m model, with ``input_size=640``); ``sha256`` then pins it (the
    packaged file is always checked against :data:`MODEL_SHA256`). ``num_threads`` sets
    onnxruntime's intra-op threads (its default: one per core).
    """

    MIN_SCORE: ClassVar[float] = 0.2  # scores below are not reported at all (NudeNet's floor)
    NMS_IOU: ClassVar[float] = 0.45  # IoU above which a lower box of the same label is dropped

    name: str = SCORER_NAME

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        sha256: str | None = None,
        input_size: int = INPUT_SIZE,
        num_threads: int | None = None,
    ) -> None:
        expected: str | None
        if model_path is None:
            path, expected = packaged_model_path(), MODEL_SHA256
        else:
            path, expected = Path(model_path), sha256
        data = path.read_bytes()
        if expected is not None and hashlib.sha256(data).hexdigest() != expected:
            raise NudityModelError(f"{path} does not match its pinned sha256 {expected}")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: no graph-optimiser chatter in logs
        if num_threads is not None:
            options.intra_op_num_threads = num_threads
            options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                data, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own untyped errors
            raise NudityModelError(f"onnxruntime cannot load {path}: {error}") from error
        self._check_labels(path)
        self._input = self._session.get_inputs()[0].name
        self.input_size = input_size
        self.model_path = path

    def detect(self, image: Image.Image) -> list[NudityFinding]:
        """Every finding scoring at least MIN_SCORE, highest score first."""
        batch, frame = letterbox(image, self.input_size)
        (output,) = self._session.run(None, {self._input: batch})
        return decode(np.asarray(output), frame, min_score=self.MIN_SCORE, iou=self.NMS_IOU)

    def score(self, image: Image.Image) -> NudityResult:
        return NudityResult(findings=tuple(self.detect(image)), scorer=self.name)

    def _check_labels(self, path: Path) -> None:
        names = self._session.get_modelmeta().custom_metadata_map.get("names")
        if names is None:
            return  # not an Ultralytics export: the caller vouches for the label order
        try:
            parsed = ast.literal_eval(names)
            labels = tuple(parsed[i] for i in range(len(parsed)))
        except (ValueError, SyntaxError, KeyError, TypeError) as error:
            raise NudityModelError(f"{path}: unreadable label metadata {names!r}") from error
        if labels != LABELS:
            raise NudityModelError(f"{path} has labels {labels}, expected NudeNet's {LABELS}")


@functools.cache
def default_detector() -> NudityDetector:
    """The packaged detector, loaded once per process (workers call this)."""
    return NudityDetector()


class FakeNudityDetector:
    """For tests and local development: no model; every photo gets the findings given."""

    name = "fake"

    def __init__(self, findings: Sequence[NudityFinding] = ()) -> None:
        self._findings = tuple(findings)

    def detect(self, image: Image.Image) -> list[NudityFinding]:
        return list(self._findings)

    def score(self, image: Image.Image) -> NudityResult:
        return NudityResult(findings=self._findings, scorer=self.name)
