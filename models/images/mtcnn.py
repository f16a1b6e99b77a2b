"""MTCNN face detection: a project-written forward pass over packaged weights.

Why this module exists: the consent check must find every child in a class photo, small
faces at the back included, and may only use weights that ship inside a registry
package. ``facenet-pytorch==2.6.0`` ships the three MTCNN networks as plain torch state
dicts (``data/pnet.pt``, ``rnet.pt``, ``onet.pt``), but its code imports torchvision,
which does not import beside the torch this service runs. So this module defines the
three networks itself with the same parameter names, loads only those files (found
without importing ``facenet_pytorch``, checked against pinned sha256 digests), and runs
its own cascade with its own non-maximum suppression in numpy.

The cascade (Zhang et al. 2016, "Joint Face Detection and Alignment using Multi-task
Cascaded Convolutional Networks"):

1. **P-Net** (fully convolutional, 12x12 receptive field, stride 2) runs on an image
   pyramid whose first level maps ``min_face_size`` pixels to 12 and each next level is
   ``factor`` times smaller, until the short side drops under 12 pixels. Every output
   cell whose face probability reaches ``thresholds[0]`` proposes a window, refined by
   the four regression outputs. Proposals are thinned by NMS per level (IoU 0.5) and
   over all levels (IoU 0.7), then made square.
2. **R-Net** scores a 24x24 crop of each proposal, drops those under ``thresholds[1]``,
   refines the boxes, NMS (IoU 0.7), squares them.
3. **O-Net** scores a 48x48 crop, drops those under ``thresholds[2]``, refines the box
   and predicts five landmarks; a last NMS uses intersection over the *smaller* box
   (0.7), which removes a small box inside a bigger one.

Conventions the weights carry (they were converted from the original Caffe/TensorFlow
models): RGB input scaled as ``(pixel - 127.5) / 128``; R-Net and O-Net flatten their
last feature map in (width, height, channel) order before the dense layers; O-Net's ten
landmark outputs are five x then five y, relative to the box it was given. Crops that
stick out of the image are padded with black, as the original implementation does.

Exception tree::

    WeightFileError    facenet-pytorch is not installed, or a weight file is missing or
                       not the pinned one
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image
from torch import nn

WEIGHTS_PACKAGE: Final = "facenet_pytorch"
WEIGHTS_PIP: Final = "pip install --no-deps facenet-pytorch==2.6.0"
# sha256 of the state dicts in facenet-pytorch==2.6.0: the weights this detector is pinned to.
WEIGHT_SHA256: Final[dict[str, str]] = {
    "pnet.pt": "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
    "rnet.pt": "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
    "onet.pt": "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
}

PNET_CELL: Final = 12  # pixels: P-Net's receptive field, the face size at pyramid scale 1
PNET_STRIDE: Final = 2  # pixels: distance between P-Net output cells at pyramid scale 1
RNET_INPUT: Final = 24  # pixels: side of R-Net's square input
ONET_INPUT: Final = 48  # pixels: side of O-Net's square input

FloatArray = NDArray[np.float32]
NmsMode = Literal["union", "min"]


class WeightFileError(RuntimeError):
    """The MTCNN weight files are missing or are not the pinned ones."""


def weights_dir() -> Path:
    """The ``data`` folder of the installed facenet-pytorch, found without importing it."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise WeightFileError(f"package facenet-pytorch is not installed ({WEIGHTS_PIP})")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _load_state_dict(name: str, folder: Path, verify: bool) -> dict[str, torch.Tensor]:
    path = folder / name
    if not path.is_file():
        raise WeightFileError(f"MTCNN weight file {path} is missing ({WEIGHTS_PIP})")
    if verify:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != WEIGHT_SHA256[name]:
            raise WeightFileError(f"{path} has sha256 {digest}, expected {WEIGHT_SHA256[name]}")
    state: dict[str, torch.Tensor] = torch.load(path, map_location="cpu", weights_only=True)
    return state


# --- the three networks (parameter names match the state dicts) -------------------------


def _flatten_whc(x: torch.Tensor) -> torch.Tensor:
    """Flatten (N, C, H, W) in (W, H, C) order, the order the converted dense layers expect."""
    return x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)


class PNet(nn.Module):
    """Proposal net: 12x12 windows, stride 2, fully convolutional."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)  # face / not face
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)  # box regression

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, H, W) -> face probability (N, h, w) and box offsets (N, 4, h, w)."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        prob = torch.softmax(self.conv4_1(x), dim=1)[:, 1]
        return prob, self.conv4_2(x)


class RNet(nn.Module):
    """Refine net: scores and refines 24x24 crops."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)  # face / not face
        self.dense5_2 = nn.Linear(128, 4)  # box regression

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, 24, 24) -> face probability (N,) and box offsets (N, 4)."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = self.prelu4(self.dense4(_flatten_whc(x)))
        prob = torch.softmax(self.dense5_1(x), dim=1)[:, 1]
        return prob, self.dense5_2(x)


class ONet(nn.Module):
    """Output net: scores 48x48 crops, refines the box, predicts five landmarks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)  # face / not face
        self.dense6_2 = nn.Linear(256, 4)  # box regression
        self.dense6_3 = nn.Linear(256, 10)  # landmarks: 5 x then 5 y, relative to the box

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(N, 3, 48, 48) -> face probability (N,), box offsets (N, 4), landmarks (N, 10)."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(_flatten_whc(x)))
        prob = torch.softmax(self.dense6_1(x), dim=1)[:, 1]
        return prob, self.dense6_2(x), self.dense6_3(x)


# --- box helpers (numpy, boxes are float (N, 4) arrays of x0, y0, x1, y1) ----------------


def nms(
    boxes: FloatArray, scores: FloatArray, threshold: float, mode: NmsMode = "union"
) -> NDArray[np.intp]:
    """Greedy non-maximum suppression; the indices kept, best score first.

    A box is dropped when its overlap with a better-scoring kept box exceeds
    ``threshold``. Overlap is intersection over union (``"union"``) or intersection over
    the smaller of the two areas (``"min"``, which also removes a box nested in another).
    """
    if len(boxes) == 0:
        return np.empty(0, dtype=np.intp)
    x0, y0, x1, y1 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.maximum(x1 - x0, 0.0) * np.maximum(y1 - y0, 0.0)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best, rest = int(order[0]), order[1:]
        keep.append(best)
        iw = np.minimum(x1[best], x1[rest]) - np.maximum(x0[best], x0[rest])
        ih = np.minimum(y1[best], y1[rest]) - np.maximum(y0[best], y0[rest])
        inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
        if mode == "min":
            denom = np.minimum(areas[best], areas[rest])
        else:
            denom = areas[best] + areas[rest] - inter
        overlap = inter / np.maximum(denom, 1e-9)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.intp)


def _regress(boxes: FloatArray, offsets: FloatArray) -> FloatArray:
    """Move each box edge by its offset times the box width (x) or height (y)."""
    size = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]] * 2, axis=1)
    return (boxes + offsets * size).astype(np.float32)


def _square(boxes: FloatArray) -> FloatArray:
    """The square with the same centre whose side is the longer side of each box."""
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    half = side / 2
    return np.stack([cx - half, cy - half, cx + half, cy + half], axis=1).astype(np.float32)


# --- the detector ------------------------------------------------------------------------


@dataclass(frozen=True)
class Detections:
    """What :meth:`MTCNN.detect` found: parallel arrays, best score first.

    ``boxes`` (N, 4) are x0, y0, x1, y1 in pixels of the input image; ``scores`` (N,) are
    O-Net's face probabilities; ``landmarks`` (N, 5, 2) are (x, y) of the left eye, right
    eye, nose tip, left and right mouth corner, "left" meaning the image's left.
    """

    boxes: FloatArray
    scores: FloatArray
    landmarks: FloatArray

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Detections:
        zeros = np.zeros
        return cls(zeros((0, 4), np.float32), zeros((0,), np.float32), zeros((0, 5, 2), np.float32))


class MTCNN:
    """The three-stage MTCNN detector; load once, call :meth:`detect` per image.

    Tuning knobs, all in pixels of the image as detected (after ``max_side``):

    * ``min_face_size``: the smallest face searched for; the default 20 finds the back
      row of a class photo; raising it makes the pyramid shorter and detection faster.
    * ``factor``: ratio between pyramid levels; 0.709 (the paper's) halves the area per
      level; a smaller ratio means fewer levels, faster, with a little less recall.
    * ``max_side``: an image whose longer side exceeds this is shrunk before detection,
      and the boxes are scaled back; ``None`` keeps every image at full size.
    * ``num_threads``: torch threads while detecting (restored afterwards); ``None``
      leaves torch's setting alone. These convolutions are small: on the two-core
      development machine, torch's default of two threads made detection about ten
      times slower (CPU time too) than one thread.
    """

    THRESHOLDS: Final = (0.6, 0.7, 0.7)  # P-Net, R-Net, O-Net face probability cut-offs
    PNET_NMS_LEVEL: Final = 0.5  # IoU for NMS within one pyramid level
    PNET_NMS_ALL: Final = 0.7  # IoU for NMS across pyramid levels
    RNET_NMS: Final = 0.7  # IoU
    ONET_NMS: Final = 0.7  # intersection over the smaller box

    def __init__(
        self,
        *,
        min_face_size: int = 20,
        factor: float = 0.709,
        thresholds: tuple[float, float, float] = THRESHOLDS,
        max_side: int | None = 1024,
        num_threads: int | None = 1,
        weights: Path | None = None,
        verify_weights: bool = True,
    ) -> None:
        if min_face_size < PNET_CELL:
            raise ValueError(f"min_face_size must be at least {PNET_CELL} pixels")
        if not 0.1 <= factor < 1.0:
            raise ValueError("factor must be in [0.1, 1)")
        self.min_face_size = min_face_size
        self.factor = factor
        self.thresholds = thresholds
        self.max_side = max_side
        self.num_threads = num_threads
        folder = weights if weights is not None else weights_dir()
        self.pnet = PNet()
        self.rnet = RNet()
        self.onet = ONet()
        for name, net in (("pnet.pt", self.pnet), ("rnet.pt", self.rnet), ("onet.pt", self.onet)):
            net.load_state_dict(_load_state_dict(name, folder, verify_weights))
            net.eval()
            net.requires_grad_(False)

    # -- public ---------------------------------------------------------------------------

    def detect(self, image: Image.Image | NDArray[np.uint8]) -> Detections:
        """Find the faces in an RGB image (PIL image or (H, W, 3) uint8 array)."""
        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] != 3:
                raise ValueError("expected an RGB image of shape (H, W, 3)")
            image = Image.fromarray(image)
        if image.mode != "RGB":
            image = image.convert("RGB")
        shrink = 1.0
        if self.max_side is not None and max(image.size) > self.max_side:
            shrink = self.max_side / max(image.size)
            size = (max(1, round(image.width * shrink)), max(1, round(image.height * shrink)))
            image = image.resize(size, Image.Resampling.BILINEAR)
        with torch.inference_mode(), torch_threads(self.num_threads):
            found = self._cascade(image)
        if shrink != 1.0 and len(found):
            found = Detections(found.boxes / shrink, found.scores, found.landmarks / shrink)
        return found

    def pyramid_scales(self, height: int, width: int) -> list[float]:
        """The P-Net pyramid: scale factors from ``12 / min_face_size`` down by ``factor``."""
        scale = PNET_CELL / self.min_face_size
        scales: list[float] = []
        while min(height, width) * scale >= PNET_CELL:
            scales.append(scale)
            scale *= self.factor
        return scales

    # -- the cascade ----------------------------------------------------------------------

    def _cascade(self, image: Image.Image) -> Detections:
        boxes = self._propose(image)
        if len(boxes) == 0:
            return Detections.empty()

        probs, offsets = self.rnet(_crops(image, boxes, RNET_INPUT))
        keep = probs.numpy() >= self.thresholds[1]
        boxes, scores = boxes[keep], probs.numpy()[keep]
        offsets_np = offsets.numpy()[keep]
        pick = nms(boxes, scores, self.RNET_NMS)
        boxes = _square(_regress(boxes[pick], offsets_np[pick]))
        if len(boxes) == 0:
            return Detections.empty()

        probs, offsets, marks = self.onet(_crops(image, boxes, ONET_INPUT))
        keep = probs.numpy() >= self.thresholds[2]
        boxes, scores = boxes[keep], probs.numpy()[keep]
        offsets_np, marks_np = offsets.numpy()[keep], marks.numpy()[keep]
        size = (boxes[:, 2:] - boxes[:, :2])[:, None, :]  # (N, 1, 2): width, height
        landmarks = np.stack([marks_np[:, :5], marks_np[:, 5:]], axis=2) * size
        landmarks = landmarks + boxes[:, None, :2]
        boxes = _regress(boxes, offsets_np)
        pick = nms(boxes, scores, self.ONET_NMS, mode="min")
        return Detections(
            boxes[pick].astype(np.float32),
            scores[pick].astype(np.float32),
            landmarks[pick].astype(np.float32),
        )

    def _propose(self, image: Image.Image) -> FloatArray:
        """Stage 1: P-Net over the pyramid; square candidate boxes (N, 4)."""
        width, height = image.size
        candidates: list[FloatArray] = []
        scores: list[FloatArray] = []
        for scale in self.pyramid_scales(height, width):
            level_w, level_h = math.ceil(width * scale), math.ceil(height * scale)
            # reducing_gap: PIL first shrinks by a whole factor with a box filter, then
            # resamples; about half the work of a plain resize, and no face lost in our
            # benchmark (resizing each level from the one before lost one in 200).
            level = image.resize((level_w, level_h), Image.Resampling.BILINEAR, reducing_gap=2.0)
            prob, offsets = self.pnet(_to_input(np.asarray(level)[None]))
            rows, cols = torch.nonzero(prob[0] >= self.thresholds[0], as_tuple=True)
            if len(rows) == 0:
                continue
            sx, sy = level_w / width, level_h / height
            x0 = cols.numpy().astype(np.float32) * PNET_STRIDE
            y0 = rows.numpy().astype(np.float32) * PNET_STRIDE
            boxes = np.stack(
                [x0 / sx, y0 / sy, (x0 + PNET_CELL) / sx, (y0 + PNET_CELL) / sy], axis=1
            ).astype(np.float32)
            level_scores = prob[0, rows, cols].numpy()
            level_offsets = offsets[0, :, rows, cols].T.numpy()
            pick = nms(boxes, level_scores, self.PNET_NMS_LEVEL)
            candidates.append(_regress(boxes[pick], level_offsets[pick]))
            scores.append(level_scores[pick])
        if not candidates:
            return np.zeros((0, 4), np.float32)
        boxes = np.concatenate(candidates)
        pick = nms(boxes, np.concatenate(scores), self.PNET_NMS_ALL)
        return _square(boxes[pick])


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` torch threads, then restore the previous count."""
    before = torch.get_num_threads()
    if count is None or count == before:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _to_input(pixels: NDArray[np.uint8]) -> torch.Tensor:
    """(N, H, W, 3) uint8 RGB -> (N, 3, H, W) float scaled as the networks were trained."""
    tensor = torch.from_numpy(np.array(pixels, dtype=np.float32)).permute(0, 3, 1, 2)
    return (tensor - 127.5) * (1.0 / 128.0)


def _crops(image: Image.Image, boxes: FloatArray, side: int) -> torch.Tensor:
    """(N, 3, side, side) network input cut from ``image``; outside the image is black.

    PIL's ``resize(box=...)`` crops and resamples in one C call (antialiased when it
    shrinks), much faster than one torch interpolation per box.
    """
    width, height = image.size
    out = np.zeros((len(boxes), side, side, 3), dtype=np.uint8)
    for i, (bx0, by0, bx1, by1) in enumerate(boxes.tolist()):
        bx1, by1 = max(bx1, bx0 + 1.0), max(by1, by0 + 1.0)
        if bx0 >= 0 and by0 >= 0 and bx1 <= width and by1 <= height:
            patch = image.resize((side, side), Image.Resampling.BILINEAR, box=(bx0, by0, bx1, by1))
        else:
            ix0, iy0 = math.floor(bx0), math.floor(by0)
            ix1, iy1 = max(math.ceil(bx1), ix0 + 1), max(math.ceil(by1), iy0 + 1)
            canvas = Image.new("RGB", (ix1 - ix0, iy1 - iy0))
            inside = (max(ix0, 0), max(iy0, 0), min(ix1, width), min(iy1, height))
            if inside[0] < inside[2] and inside[1] < inside[3]:
                canvas.paste(image.crop(inside), (inside[0] - ix0, inside[1] - iy0))
            patch = canvas.resize((side, side), Image.Resampling.BILINEAR)
        out[i] = np.asarray(patch)
    return _to_input(out)
