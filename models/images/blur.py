"""Making faces unrecognisable, for good, in the copy of a photo that is released.

Why this module exists: by default a school releases a class photo with the faces of
children without consent blurred (``SchoolPolicy.on_consent_match``), instead of holding
the whole photo. That copy is published to every parent of the group, so the blurring must
not be undoable and must hide what identifies a child beyond the face box itself.

How. Each face box (from :mod:`models.images.faces`) is widened into an ellipse that
reaches over the hair and the ears and past the chin (:func:`blur_regions`). Inside the
ellipse the picture is replaced by a coarse mosaic, about :data:`CELLS_ACROSS_FACE` cells
across the face, each cell the mean colour of its pixels, then softened with a Gaussian
blur so that it reads as a blur rather than as a glitch. The mosaic is what makes it
irreversible: a face becomes some thirty average colours, far below what a person or a
face descriptor needs, and no deconvolution brings back what averaging threw away (a
plain Gaussian blur, by contrast, can be partly undone). Pixels outside the ellipses are
left exactly as they were (:func:`blur_mask` is the set that may change).

The box convention is that of :class:`models.images.faces.Face`: (x0, y0, x1, y1) in
pixels of the image the faces were found in, ``x1``/``y1`` exclusive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

from PIL import Image, ImageDraw, ImageFilter

__all__ = ["CELLS_ACROSS_FACE", "blur_faces", "blur_mask", "blur_regions"]

Box = tuple[int, int, int, int]

# The ellipse around a face box of width w and height h (MTCNN's boxes reach from the
# eyebrows to the chin): centred LIFT h above the box centre, with semi-axes REACH_X w and
# REACH_Y h. It then passes 0.35 w beside each side (ears), 0.5 h above the top (hair,
# forehead) and 0.3 h under the chin, and contains the box's corners with room to spare
# ((0.5/0.85)^2 + (0.6/0.9)^2 = 0.79 < 1 at the lower corners).
REACH_X: Final = 0.85  # face-box widths, horizontal semi-axis
REACH_Y: Final = 0.9  # face-box heights, vertical semi-axis
LIFT: Final = 0.1  # face-box heights the centre is moved up, towards the hair
MIN_MARGIN_PX: Final = 3  # pixels: the least the ellipse reaches beyond a tiny box
CELLS_ACROSS_FACE: Final = 5  # mosaic cells across the face box: an identity needs far more
SOFTEN: Final = 0.6  # Gaussian radius after the mosaic, in mosaic cells


def blur_regions(boxes: Sequence[Box], size: tuple[int, int]) -> list[Box]:
    """The bounding boxes of the ellipses that :func:`blur_faces` covers, clipped to
    the image (empty boxes are skipped)."""
    return [_clip(_ellipse(box), size) for box in boxes if _valid(box)]


def blur_mask(size: tuple[int, int], boxes: Sequence[Box]) -> Image.Image:
    """An ``L`` image of ``size``: 255 where :func:`blur_faces` may change pixels, else 0."""
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    for box in boxes:
        if _valid(box):
            draw.ellipse(_ellipse(box), fill=255)
    return mask


def blur_faces(image: Image.Image, boxes: Sequence[Box]) -> Image.Image:
    """A copy of ``image`` with every face in ``boxes`` made unrecognisable.

    The copy has the image's mode if it is RGB, RGBA, L or LA (anything else becomes RGB)
    and carries no metadata. Boxes that are empty or outside the image change nothing.
    """
    source = image if image.mode in ("RGB", "RGBA", "L", "LA") else image.convert("RGB")
    mosaic = source.copy()
    valid = [box for box in boxes if _valid(box)]
    for box in valid:
        region = _clip(_ellipse(box), source.size)
        if region[2] > region[0] and region[3] > region[1]:
            cell = max(2, math.ceil((box[2] - box[0]) / CELLS_ACROSS_FACE))
            mosaic.paste(_mosaic(source.crop(region), cell), region[:2])
    out = Image.composite(mosaic, source, blur_mask(source.size, valid))
    out.info = {}
    return out


def _valid(box: Box) -> bool:
    return box[2] > box[0] and box[3] > box[1]


def _ellipse(box: Box) -> Box:
    """The ellipse's bounding box in whole pixels, rounded outwards."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 - LIFT * h
    ax = max(REACH_X * w, w / 2 + MIN_MARGIN_PX)
    ay = max(REACH_Y * h, h / 2 + LIFT * h + MIN_MARGIN_PX)
    return (
        math.floor(cx - ax),
        math.floor(cy - ay),
        math.ceil(cx + ax),
        math.ceil(cy + ay),
    )


def _clip(box: Box, size: tuple[int, int]) -> Box:
    width, height = size
    return (
        min(max(box[0], 0), width),
        min(max(box[1], 0), height),
        min(max(box[2], 0), width),
        min(max(box[3], 0), height),
    )


def _mosaic(patch: Image.Image, cell: int) -> Image.Image:
    """Each ``cell`` x ``cell`` block of ``patch`` as its mean colour, then softened."""
    small = (max(1, math.ceil(patch.width / cell)), max(1, math.ceil(patch.height / cell)))
    blocks = patch.resize(small, Image.Resampling.BOX)  # area mean: the information is gone
    coarse = blocks.resize(patch.size, Image.Resampling.NEAREST)
    return coarse.filter(ImageFilter.GaussianBlur(SOFTEN * cell))
