"""The copies of a photo that people see: the reviewer's, and a teacher's "release with blur".

The media check stores, per attachment, the faces it found with their verdicts
(``workers.media``: ``box`` in pixels of the sanitised photo, ``status``, ``matters``)
and writes the sanitised copy to ``Attachment.released_data`` (already blurred where the
policy blurred). From those two this module makes:

* :func:`review_copy`: what the flag queue shows. Children without consent are blurred
  here too (POLICY.md rule 2 holds for teachers' screens as well); the other faces stay
  visible, so the teacher can judge them, and the page draws their boxes.
* :func:`blurred_release`: the copy a teacher releases with "release with blur": the
  faces that kept the photo from release (children without consent, faces that could not
  be decided), or every face when none did (the teacher asked for blurring anyway).

Videos cannot be blurred: :func:`blurred_release` refuses them (Conflict
``video_not_blurrable``) and the review page plays them as stored.

Blurring needs Pillow only; ``models.images.blur`` is imported when it is used, so the
API process loads no model code until a photo is actually blurred.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from PIL import Image

from moderation.errors import Conflict
from moderation.media import ImageFormat, reencode

Box = tuple[int, int, int, int]


def stored_faces(detail: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The faces the media check stored for one photo (none for a video or a failure)."""
    if not detail:
        return []
    faces = detail.get("faces")
    return [f for f in faces if isinstance(f, dict)] if isinstance(faces, list) else []


def _box(face: dict[str, Any]) -> Box:
    x0, y0, x1, y1 = (int(v) for v in face["box"])
    return (x0, y0, x1, y1)


def _blurred(data: bytes, content_type: str, boxes: Sequence[Box]) -> bytes:
    from models.images.blur import blur_faces

    fmt = ImageFormat.from_content_type(content_type)
    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
    return reencode(blur_faces(rgb, boxes), fmt)


def review_copy(data: bytes, content_type: str, detail: dict[str, Any] | None) -> bytes:
    """The photo for the review page: children without consent blurred."""
    if detail is None or detail.get("blurred"):
        return data  # nothing stored about faces, or blurred at release already
    boxes = [_box(f) for f in stored_faces(detail) if f.get("status") == "no_consent"]
    return _blurred(data, content_type, boxes) if boxes else data


def blurred_release(data: bytes, content_type: str, detail: dict[str, Any] | None) -> bytes:
    """The copy a teacher's "release with blur" publishes."""
    if content_type.startswith("video/"):
        raise Conflict(
            "a video cannot be released with blur; release or reject it",
            code="video_not_blurrable",
        )
    faces = stored_faces(detail)
    boxes = [_box(f) for f in faces if f.get("matters") or f.get("status") == "no_consent"]
    if not boxes:
        boxes = [_box(f) for f in faces]
    return _blurred(data, content_type, boxes) if boxes else data
