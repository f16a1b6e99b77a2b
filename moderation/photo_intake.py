"""Photos that are not posts: reference photos to enrol a child, images to block.

Why this module exists: the API and the CLI both take such photos, and both must read
them as safely as a post's attachment (``moderation.media``: declared type checked
against the bytes, pixel and size limits, EXIF orientation applied, truncated files
refused with a precise code) before any model sees them. Then:

* :func:`reference_embedding`: the child's face descriptor
  (``models.images.faces.FaceAnalyzer.reference_embedding``). The analyzer loads in
  about 2 s and holds ~100 MB, so it is loaded lazily, once per process, on the first
  enrolment; the API process that never enrols never imports torch. Enrolments in a
  process run one at a time under a lock: they are rare, and the detector and dlib's
  models are not documented as safe to share between threads.
* :func:`image_hash_strings`: the perceptual hashes of an image for a hash list.

Errors: ``moderation.media.MediaError`` subclasses for unreadable or refused images;
InvalidInput ``invalid_base64``, the enrolment codes (``no_face``, ``several_faces``,
``face_too_small``, ``face_blurry``) and ``image_not_matchable``; PayloadTooLarge
``photo_too_large``.
"""

from __future__ import annotations

import base64
import binascii
import threading
from functools import cache
from typing import TYPE_CHECKING

from PIL import Image

from moderation.errors import InvalidInput, PayloadTooLarge
from moderation.media import ImageLimits, inspect_image, sanitize_image

if TYPE_CHECKING:
    from models.images.faces import FaceAnalyzer

REFERENCE_MODEL = "dlib-resnet-v1"  # the descriptor stored with each reference
_ANALYZER_LOCK = threading.Lock()


def decode_photo(data_b64: str, *, max_bytes: int, field: str = "photo") -> bytes:
    """Base64 to bytes, bounded before and after decoding."""
    if len(data_b64) > 4 * (max_bytes // 3 + 1):
        raise PayloadTooLarge(
            f"{field} is over {max_bytes} bytes", code="photo_too_large", limit=max_bytes
        )
    try:
        data = base64.b64decode(data_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"{field} is not valid base64", code="invalid_base64") from exc
    if len(data) > max_bytes:
        raise PayloadTooLarge(
            f"{field} is over {max_bytes} bytes", code="photo_too_large", limit=max_bytes
        )
    return data


def read_photo(data: bytes, content_type: str | None, *, max_bytes: int) -> Image.Image:
    """The photo as displayed (orientation applied), RGB, metadata gone; MediaError if not.

    A declared ``content_type`` (the API's) must match the bytes; without one (a file
    given to the CLI) the format is read from the bytes alone.
    """
    limits = ImageLimits(max_bytes=max_bytes)
    if content_type is not None:
        inspect_image(data, content_type, limits)
    return sanitize_image(data, limits).rgb


@cache
def _analyzer() -> FaceAnalyzer:
    from models.images.faces import FaceAnalyzer

    return FaceAnalyzer()


def reference_embedding(image: Image.Image) -> list[float]:
    """The descriptor of the one good face in a reference photo (128 floats).

    InvalidInput with the enrolment code when the photo shows no face, several faces, a
    face too small or too blurry.
    """
    from models.images.faces import EnrolmentError

    with _ANALYZER_LOCK:
        try:
            embedding = _analyzer().reference_embedding(image)
        except EnrolmentError as exc:
            raise InvalidInput(str(exc), code=exc.code) from exc
    return [float(value) for value in embedding]


def image_hash_strings(image: Image.Image) -> list[str]:
    """The pHash of the image and of its 8 crop variants, as 16-hex strings.

    InvalidInput ``image_not_matchable`` for a flat or graded image (a blank page, a
    sky): its hash would match every other such image.
    """
    from models.images.hashes import hash_to_str, image_hashes

    hashes = image_hashes(image)
    if not hashes.matchable:
        raise InvalidInput(
            "the image has too little structure to be recognised by its hash "
            "(a blank or evenly shaded image)",
            code="image_not_matchable",
            quality=hashes.quality,
        )
    return [hash_to_str(value) for value in hashes.all()]
