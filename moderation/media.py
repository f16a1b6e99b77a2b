"""Safe intake of uploaded photos: identify, bound, verify and re-encode them with Pillow.

Teachers and parents post photos to class groups; every byte of an upload is hostile
until proven otherwise. This module is the one place where uploaded image bytes meet
Pillow, so that the API and the workers share a single, tested set of rules:

* :func:`inspect_image` runs in the API process before anything is stored. It reads
  the headers, bounds the size, checks that the bytes really are the declared type,
  and detects truncated uploads, without decoding the full image.
* :func:`sanitize_image` runs in the workers. It decodes everything, applies the EXIF
  orientation, converts to 8-bit sRGB, drops all metadata and re-encodes. Only its
  output is ever published: POLICY.md rule 10, released photos carry no location or
  camera metadata. It also hands the scorers an RGB image of the first frame.

Both functions raise only the exceptions below for anything in the data, whatever
Pillow raises while reading it, so the API maps the tree to HTTP in one handler and
fails closed::

    MediaError                  code                     suggested HTTP status
     ├── UnsupportedMediaType   unsupported_media_type   415
     ├── ImageTooLarge          image_too_large          413
     ├── TooManyFrames          too_many_frames          413
     └── ImageUnreadable        image_unreadable         422

Every error carries its stable ``code``, an English message (``str(error)``, for logs)
and a plain Dutch one (``message_nl``) that tells the author what to do.

* ``UnsupportedMediaType``: the declared content type is not image/jpeg, image/png,
  image/webp or image/gif; the data is empty; the bytes do not start with the
  signature of one of those formats (random bytes, HTML, SVG, PDF, ZIP: not a
  recognised image); the bytes are another allowed format than declared (a PNG sent
  as image/jpeg); or the image also carries content another program would open
  (HTML or SVG markup or a PDF header in the first KiB, a ZIP directory at the end:
  polyglots such as ``GIF89a<script>`` or a GIF with a JAR appended).
* ``ImageUnreadable``: the signature names an allowed format but Pillow cannot read
  the file: truncated, corrupt or structurally invalid.
* ``ImageTooLarge``: more bytes than ``max_bytes``, more pixels than ``max_pixels`` or
  a side over ``max_side``, decompression bombs included (a small file whose header
  declares a huge image).
* ``TooManyFrames``: an animation with more frames than ``max_frames``, or whose
  frames together exceed ``max_pixels``: Pillow decodes every frame at canvas size,
  so 100 frames of 4000x4000 are a 1.6 gigapixel bomb.

How the limits hold. The format comes from the bytes' signature, and Pillow opens
the data as that one format only (``Image.open(..., formats=[...])``); its other
plugins never see an upload. Sizes are checked against :class:`ImageLimits` before
any pixel is decoded: from the header Pillow parses on open (JPEG, PNG); from the
VP8/VP8L/VP8X header before Pillow is called (WebP, because libwebp allocates the
canvas while opening); from a walk over the GIF blocks (a later GIF frame may enlarge
the canvas, and Pillow's frame count reads the whole file whatever its length, while
the walk stops at ``max_frames + 1``).

Global Pillow state is left alone. ``Image.MAX_IMAGE_PIXELS`` keeps its value: per-call
limits above it are capped by it, its ``DecompressionBombError`` becomes
``ImageTooLarge``, and while our functions read an image its
``DecompressionBombWarning`` is raised as an error and becomes ``ImageTooLarge``, so no
bomb warning escapes (pytest runs with warnings as errors). Other Pillow warnings
(such as "Corrupt EXIF data") are logged at debug level. ``warnings.catch_warnings``
is process-wide in Python 3.11, so with concurrent threads a warning may be shown
instead of logged; no limit depends on it, our own size checks run first.
``ImageFile.LOAD_TRUNCATED_IMAGES`` must stay False: both functions raise
``RuntimeError`` if anyone has set it, rather than pass truncated uploads.
"""

from __future__ import annotations

import io
import logging
import re
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from typing import ClassVar

from PIL import ExifTags, Image, ImageCms, ImageFile, ImageOps

__all__ = [
    "DEFAULT_LIMITS",
    "ImageFormat",
    "ImageInfo",
    "ImageLimits",
    "ImageTooLarge",
    "ImageUnreadable",
    "MediaError",
    "SanitizedImage",
    "TooManyFrames",
    "UnsupportedMediaType",
    "inspect_image",
    "sanitize_image",
]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- errors


class MediaError(Exception):
    """Base of every error raised for an upload; ``code`` is stable and machine-readable."""

    code: ClassVar[str] = "media_error"

    def __init__(self, message_en: str, message_nl: str) -> None:
        super().__init__(message_en)
        self.message_en = message_en  # technical, for logs and the audit trail
        self.message_nl = message_nl  # plain Dutch, shown to the author


class UnsupportedMediaType(MediaError):
    """Not an allowed image type, not the declared type, or an image with other content."""

    code: ClassVar[str] = "unsupported_media_type"


class ImageTooLarge(MediaError):
    """Too many bytes, too many pixels or too long a side (decompression bombs included)."""

    code: ClassVar[str] = "image_too_large"


class TooManyFrames(MediaError):
    """An animation with too many frames, or too many pixels over all its frames."""

    code: ClassVar[str] = "too_many_frames"


class ImageUnreadable(MediaError):
    """An allowed format by its signature, but truncated, corrupt or not decodable."""

    code: ClassVar[str] = "image_unreadable"


# --------------------------------------------------------------------------- formats


class ImageFormat(StrEnum):
    """The allowed formats; the values are Pillow's format names."""

    JPEG = "JPEG"
    PNG = "PNG"
    WEBP = "WEBP"
    GIF = "GIF"

    @property
    def content_type(self) -> str:
        return _CONTENT_TYPES[self]

    @classmethod
    def from_content_type(cls, content_type: str) -> ImageFormat:
        """The format of a stored attachment's content type (checked at intake)."""
        return _FORMATS_BY_CONTENT_TYPE[content_type.split(";", 1)[0].strip().lower()]


_CONTENT_TYPES: dict[ImageFormat, str] = {
    ImageFormat.JPEG: "image/jpeg",
    ImageFormat.PNG: "image/png",
    ImageFormat.WEBP: "image/webp",
    ImageFormat.GIF: "image/gif",
}
_FORMATS_BY_CONTENT_TYPE = {content_type: fmt for fmt, content_type in _CONTENT_TYPES.items()}
_ALLOWED_NL = "JPEG, PNG, WebP of GIF"


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """Per-call bounds on an upload; the defaults suit phone photos and short animations."""

    MAX_BYTES: ClassVar[int] = 20 * 1024 * 1024  # bytes (20 MiB); a 12 MP phone JPEG is 3-6 MB
    MAX_PIXELS: ClassVar[int] = 40_000_000  # pixels (40 megapixels), per image and per animation
    MAX_SIDE: ClassVar[int] = 12_000  # pixels, along either side
    MAX_FRAMES: ClassVar[int] = 100  # frames in one GIF or WebP animation

    max_bytes: int = MAX_BYTES
    max_pixels: int = MAX_PIXELS
    max_side: int = MAX_SIDE
    max_frames: int = MAX_FRAMES

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_pixels", "max_side", "max_frames"):
            if getattr(self, name) < 1:
                msg = f"ImageLimits.{name} must be a positive integer"
                raise ValueError(msg)


DEFAULT_LIMITS = ImageLimits()


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What :func:`inspect_image` learnt without a full decode: enough to accept and audit."""

    format: ImageFormat
    content_type: str
    width: int  # pixels, as encoded (EXIF orientation not applied); GIF: the full canvas
    height: int  # pixels, as encoded
    frames: int  # 1 for still images; JPEG (MPO) and PNG (APNG) count as still
    has_exif_gps: bool  # the EXIF carries a GPS block (only in metadata before the pixels)
    byte_size: int  # bytes of the upload


@dataclass(frozen=True, slots=True, eq=False)
class SanitizedImage:
    """What :func:`sanitize_image` produced: the only bytes that may be published."""

    data: bytes  # re-encoded, without any metadata
    format: ImageFormat
    content_type: str
    width: int  # pixels, after the EXIF orientation was applied
    height: int  # pixels
    frames: int  # frames in ``data``
    rgb: Image.Image = field(repr=False)  # first frame, mode RGB, over white, for the scorers


# --------------------------------------------------------------------------- public API


def inspect_image(
    data: bytes, declared_type: str, limits: ImageLimits = DEFAULT_LIMITS
) -> ImageInfo:
    """Check an upload cheaply, in the API process, before it is stored.

    Reads the headers, checks the declared type against the bytes, bounds bytes,
    pixels and frames, and detects truncated uploads. Truncation, per format:

    * JPEG needs a decode, since nothing in its header tells whether the scan data is
      complete. It runs in libjpeg's DCT-scaling "draft" mode at 1/8 scale, which
      still reads every entropy-coded byte (a cut file fails, even one missing only
      its end marker) but skips most of the inverse DCT and the colour conversion.
    * PNG: ``verify()`` checks the CRC of every chunk up to IEND without inflating
      the pixels.
    * WebP: libwebp's demuxer checks the RIFF chunk sizes when Pillow opens the file.
    * GIF: the block walk fails when a sub-block chain runs off the end of the data
      or the trailer byte is missing.

    Cost on a 4000x3000 (12 MP) photo-like JPEG of about 5 MB (quality 92, 4:2:0),
    Pillow 13.0.0, medians on one core of a shared 2-core VM (expect +-20 %):

    ===========================  ========  ===========
    milliseconds                 baseline  progressive
    ===========================  ========  ===========
    header only (open)           0.03      0.02
    ``inspect_image``            43        165
    a full ``load()``            90        225
    ``sanitize_image``           195       320
    ===========================  ========  ===========

    The draft decode is about half a full load for baseline JPEGs (most phone photos)
    and three quarters for progressive ones, where the entropy decoding dominates.
    An embedded ICC profile costs ``sanitize_image`` about 200 ms more (the sRGB
    conversion) and ``inspect_image`` nothing. On a 12 MP PNG of 18 MB (CRCs only)
    ``inspect_image`` takes about 6 ms.

    The corrupt-but-complete files that only a full decode notices (a damaged WebP or
    GIF bitstream) pass here and fail in :func:`sanitize_image`, before publication.
    ``has_exif_gps`` is read from the EXIF found before the pixel data.
    """
    declared = declared_type.split(";", 1)[0].strip().lower()
    if declared not in _FORMATS_BY_CONTENT_TYPE:
        raise UnsupportedMediaType(
            f"content type {declared_type!r} is not allowed",
            f"Dit soort bestand wordt niet geaccepteerd. Stuur een foto als {_ALLOWED_NL}.",
        )
    fmt = _identify(data, limits)
    if fmt.content_type != declared:
        raise UnsupportedMediaType(
            f"declared as {declared} but the bytes are {fmt.content_type}",
            "Het bestand is niet wat het zegt te zijn: het type klopt niet met de inhoud. "
            "Sla de foto opnieuw op en stuur hem nog eens.",
        )
    with _reading(fmt), _open_checked(data, fmt, limits) as (image, frames, canvas):
        has_gps = _has_exif_gps(image.info.get("exif"))
        if fmt is ImageFormat.JPEG:
            # The scan data is only read by a decode; at 1/8 scale it is still read in full.
            image.draft(None, (1, 1))
            image.load()
        elif fmt is ImageFormat.PNG:
            image.verify()
    return ImageInfo(
        format=fmt,
        content_type=fmt.content_type,
        width=canvas[0],
        height=canvas[1],
        frames=frames,
        has_exif_gps=has_gps,
        byte_size=len(data),
    )


def sanitize_image(data: bytes, limits: ImageLimits = DEFAULT_LIMITS) -> SanitizedImage:
    """Decode an upload fully and re-encode it without metadata, in the workers.

    Applies the same checks as :func:`inspect_image` (except the declared type, which
    the API checked), so it is safe on its own. Decisions:

    * Format: the family of the input. JPEG at quality 90. PNG without the
      ``optimize`` pass and at zlib level 1: on a photo-like 12 MP PNG the default
      level 6 took 6.5 s against 1.1 s, for a larger file (17.9 against 17.3 MB);
      screenshots grow from 0.13 to 0.19 MB. WebP at quality 90 (lossy, also for
      lossless input). GIF. GIF and WebP animations within the limits keep their
      frames, durations and loop count; a JPEG with several pictures (MPO, as some
      phones write) and an animated PNG keep their first image only.
    * Metadata: nothing is copied. The output is encoded from pixels alone: no EXIF
      (GPS, camera make and model, orientation), XMP, IPTC, JPEG or GIF comment, PNG
      text chunk or ICC profile.
    * Colour: an embedded ICC profile converts the pixels to sRGB and is then dropped
      (a profile is an arbitrary blob, up to megabytes, that would otherwise survive
      the re-encoding; for a Display P3 photo the conversion keeps the colours right).
      An unusable profile is ignored. CMYK without one gets Pillow's plain conversion.
    * Modes: 1-bit, L, P, 16-bit grey (scaled to 8 bits, not clipped), CMYK and YCbCr
      become RGB; anything with transparency (RGBA, LA, PA, P or L with a transparent
      colour) becomes RGBA in PNG, WebP and GIF output. ``rgb``, for the scorers, is
      the first frame over white.
    """
    fmt = _identify(data, limits)
    frames: list[Image.Image] = []
    durations: list[int] = []  # milliseconds per frame
    with _reading(fmt), _open_checked(data, fmt, limits) as (image, count, canvas):
        loop: int | None = image.info.get("loop")
        for index in range(count):
            if index:
                image.seek(index)
            _check_canvas(image.size, limits)  # a GIF frame may enlarge the canvas
            if fmt is ImageFormat.GIF:  # no EXIF in GIF; frames before an enlarging one
                frames.append(_on_canvas(_to_srgb(image.copy()), canvas))
            else:
                frames.append(_to_srgb(ImageOps.exif_transpose(image)))
            durations.append(int(image.info.get("duration", 0)))
    if any(frame.mode == "RGBA" for frame in frames):
        frames = [frame.convert("RGBA") for frame in frames]
    rgb = _over_white(frames[0])
    return SanitizedImage(
        data=_encode(fmt, frames, durations, loop),
        format=fmt,
        content_type=fmt.content_type,
        width=rgb.width,
        height=rgb.height,
        frames=len(frames),
        rgb=rgb,
    )


def reencode(image: Image.Image, fmt: ImageFormat) -> bytes:
    """A still image (e.g. the sanitised photo with faces blurred) encoded as
    :func:`sanitize_image` encodes ``fmt``: same quality settings, no metadata."""
    return _encode(fmt, [image], [0], None)


# --------------------------------------------------------------------------- identification

_SNIFF_WINDOW = 1024  # bytes: PDF readers look for "%PDF-" this far; browsers sniff 512
_MARKUP = re.compile(
    rb"<(?:!doctype\s+html|html|head|body|script|iframe|svg|object|embed)[\s/>]", re.IGNORECASE
)
_ZIP_END = b"PK\x05\x06"  # ZIP end-of-central-directory record, 22 bytes + comment
_ZIP_END_SIZE = 22  # bytes
_ZIP_MAX_COMMENT = 0xFFFF  # bytes


def _identify(data: bytes, limits: ImageLimits) -> ImageFormat:
    """The allowed format the bytes' signature names, after the checks needing no decoder."""
    if not data:
        raise UnsupportedMediaType("empty upload", "Het bestand is leeg. Stuur de foto opnieuw.")
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(
            f"{len(data)} bytes exceeds the limit of {limits.max_bytes} bytes",
            f"Het bestand is te groot ({len(data) / 1_048_576:.1f} MB); het maximum is "
            f"{limits.max_bytes / 1_048_576:.0f} MB. Verklein de foto en probeer het opnieuw.",
        )
    fmt = _sniff(data)
    if fmt is None:
        raise UnsupportedMediaType(
            "not a JPEG, PNG, WebP or GIF image",
            f"Dit bestand is geen foto in een toegestaan formaat ({_ALLOWED_NL}).",
        )
    if (foreign := _foreign_content(data)) is not None:
        raise UnsupportedMediaType(
            f"the {fmt} image also carries {foreign} (a polyglot file)",
            "Dit bestand bevat naast de foto ook andere inhoud en wordt daarom niet "
            "geaccepteerd. Sla de foto opnieuw op en stuur hem nog eens.",
        )
    return fmt


def _sniff(data: bytes) -> ImageFormat | None:
    """The format named by the file signature; the same tests as Pillow's plugins."""
    if data.startswith(b"\xff\xd8\xff"):
        return ImageFormat.JPEG
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return ImageFormat.PNG
    if data.startswith((b"GIF87a", b"GIF89a")):
        return ImageFormat.GIF
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return ImageFormat.WEBP
    return None


def _foreign_content(data: bytes) -> str | None:
    """What, besides an image, another program would find in these bytes, if anything."""
    head = data[:_SNIFF_WINDOW]
    if _MARKUP.search(head):
        return "HTML or SVG markup"
    if b"%PDF-" in head:
        return "a PDF header"
    # ZIP readers (and Java, for "GIFAR" files) find an archive by its last record.
    # Requiring the comment length to reach exactly the end of the data makes a chance
    # match in compressed image bytes negligible (about 1 in 10^9 per file).
    start = max(0, len(data) - _ZIP_END_SIZE - _ZIP_MAX_COMMENT)
    position = data.rfind(_ZIP_END, start)
    while position >= 0:
        comment = data[position + 20 : position + _ZIP_END_SIZE]
        if len(comment) == 2 and position + _ZIP_END_SIZE + int.from_bytes(
            comment, "little"
        ) == len(data):
            return "a ZIP archive"
        position = data.rfind(_ZIP_END, start, position)
    return None


# --------------------------------------------------------------------------- reading


_PILLOW_ERRORS = (
    # What Pillow's plugins and decoders raise on hostile bytes; none of it is documented
    # as a contract, so the list is wide. UnidentifiedImageError is an OSError.
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
)


@contextmanager
def _reading(fmt: ImageFormat) -> Iterator[None]:
    """Translate whatever Pillow raises or warns while reading an upload into MediaError."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        msg = "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set; truncated uploads would pass"
        raise RuntimeError(msg)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageTooLarge(
                f"the {fmt} image is a decompression bomb: {exc}",
                "De foto is te groot om te verwerken. Verklein de foto en probeer het opnieuw.",
            ) from exc
        except _PILLOW_ERRORS as exc:
            raise ImageUnreadable(
                f"cannot read the {fmt} image: {type(exc).__name__}: {exc}",
                "De foto kan niet worden gelezen; het bestand is beschadigd of niet volledig "
                "verstuurd. Probeer het opnieuw.",
            ) from exc
        finally:
            for warning in caught:
                logger.debug("Pillow warned while reading a %s image: %s", fmt, warning.message)


@contextmanager
def _open_checked(
    data: bytes, fmt: ImageFormat, limits: ImageLimits
) -> Iterator[tuple[ImageFile.ImageFile, int, tuple[int, int]]]:
    """Open the data as ``fmt`` only, after and with every check that needs no pixels.

    Yields the open image, the number of frames to decode and the canvas size.
    """
    gif: tuple[int, tuple[int, int]] | None = None
    if fmt is ImageFormat.WEBP:
        _check_canvas(_webp_canvas(data), limits)  # libwebp allocates it while opening
    elif fmt is ImageFormat.GIF:
        gif = _walk_gif(data, limits)
        _check_canvas(gif[1], limits)
    with Image.open(io.BytesIO(data), formats=[fmt.value]) as image:
        _check_canvas(image.size, limits)
        if gif is not None:
            frames, canvas = gif
        elif fmt is ImageFormat.WEBP:
            frames, canvas = int(getattr(image, "n_frames", 1)), image.size
        else:  # JPEG and PNG: the first (MPO) or default (APNG) image only
            frames, canvas = 1, image.size
        if frames > limits.max_frames:
            raise _too_many_frames(frames, limits)
        if frames > 1 and frames * canvas[0] * canvas[1] > limits.max_pixels:
            raise TooManyFrames(
                f"{frames} frames of {canvas[0]}x{canvas[1]} exceed "
                f"{limits.max_pixels} pixels in total",
                f"De animatie is te groot ({frames} beeldjes van {canvas[0]}x{canvas[1]} "
                "pixels). Maak de animatie korter of kleiner.",
            )
        yield image, frames, canvas


def _check_canvas(size: tuple[int, int], limits: ImageLimits) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise ImageUnreadable(
            f"image of {width}x{height} pixels has no pixels",
            "De foto kan niet worden gelezen: hij bevat geen beeld.",
        )
    if width > limits.max_side or height > limits.max_side or width * height > limits.max_pixels:
        raise ImageTooLarge(
            f"{width}x{height} pixels exceeds {limits.max_pixels} pixels "
            f"or {limits.max_side} pixels per side",
            f"De foto is te groot ({width}x{height} pixels). Het maximum is "
            f"{limits.max_pixels / 1_000_000:.0f} megapixel en {limits.max_side} pixels per "
            "zijde. Verklein de foto en probeer het opnieuw.",
        )


def _too_many_frames(frames: int | None, limits: ImageLimits) -> TooManyFrames:
    """``frames`` None: counting stopped at the limit."""
    counted_en = f"more than {limits.max_frames}" if frames is None else str(frames)
    counted_nl = f"meer dan {limits.max_frames}" if frames is None else str(frames)
    return TooManyFrames(
        f"{counted_en} frames exceeds the limit of {limits.max_frames}",
        f"De animatie heeft te veel beeldjes ({counted_nl}); het maximum is "
        f"{limits.max_frames}. Maak de animatie korter.",
    )


def _webp_canvas(data: bytes) -> tuple[int, int]:
    """The canvas size in the first WebP chunk (simple lossy, lossless, or extended)."""
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    raise ImageUnreadable(
        "WebP without a VP8, VP8L or VP8X header",
        "De foto kan niet worden gelezen; het bestand is beschadigd. Probeer het opnieuw.",
    )


def _walk_gif(data: bytes, limits: ImageLimits) -> tuple[int, tuple[int, int]]:
    """Count a GIF's frames and the canvas they paint, without decoding any LZW data.

    Stops as soon as there are more than ``max_frames`` frames. A sub-block chain that
    runs off the end, or a missing trailer byte, means the file is truncated.
    """
    if len(data) < 13:
        raise _truncated_gif()
    width, height = struct.unpack_from("<HH", data, 6)  # the logical screen
    flags = data[10]
    position = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # global colour table
    frames = 0
    while True:
        if position >= len(data):
            raise _truncated_gif()
        introducer = data[position]
        position += 1
        if introducer == 0x3B:  # trailer
            break
        if introducer == 0x21:  # extension: a label byte, then data sub-blocks
            position = _skip_sub_blocks(data, position + 1)
        elif introducer == 0x2C:  # image descriptor: left, top, width, height, flags
            if position + 9 > len(data):
                raise _truncated_gif()
            left, top, frame_width, frame_height, flags = struct.unpack_from("<4HB", data, position)
            position += 9 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # local colour table
            position = _skip_sub_blocks(data, position + 1)  # after the LZW minimum code size
            frames += 1
            if frames > limits.max_frames:
                raise _too_many_frames(None, limits)
            width = max(width, left + frame_width)  # as Pillow, a frame may enlarge the canvas
            height = max(height, top + frame_height)
        else:
            raise ImageUnreadable(
                f"unexpected GIF block 0x{introducer:02x} at byte {position - 1}",
                "De foto kan niet worden gelezen; het bestand is beschadigd. Probeer het opnieuw.",
            )
    if frames == 0:
        raise ImageUnreadable(
            "GIF without an image", "De foto kan niet worden gelezen: hij bevat geen beeld."
        )
    return frames, (width, height)


def _skip_sub_blocks(data: bytes, position: int) -> int:
    """The position after a chain of GIF data sub-blocks (length byte, data; 0 ends it)."""
    while position < len(data):
        size = data[position]
        position += 1 + size
        if size == 0:
            return position
    raise _truncated_gif()


def _truncated_gif() -> ImageUnreadable:
    return ImageUnreadable(
        "truncated GIF",
        "De foto kan niet worden gelezen; het bestand is niet volledig verstuurd. "
        "Probeer het opnieuw.",
    )


def _has_exif_gps(exif_bytes: object) -> bool:
    """Whether raw EXIF (as Pillow puts it in ``info["exif"]``) has a GPS block.

    EXIF that cannot be parsed counts as no GPS: it is for the audit only, a photo with
    a broken EXIF block still decodes, and :func:`sanitize_image` drops the block anyway.
    """
    if not isinstance(exif_bytes, bytes) or not exif_bytes:
        return False
    exif = Image.Exif()
    try:
        exif.load(exif_bytes)
    except _PILLOW_ERRORS as exc:
        logger.debug("unparseable EXIF, counted as no GPS: %s", exc)
        return False
    return ExifTags.IFD.GPSInfo in exif


# --------------------------------------------------------------------------- pixels


@cache
def _srgb() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _to_srgb(frame: Image.Image) -> Image.Image:
    """One decoded frame as 8-bit sRGB, mode RGB or RGBA, without any metadata."""
    icc = frame.info.get("icc_profile")
    if frame.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):  # 16-bit grey PNG
        frame = frame.point(lambda value: value / 257).convert("L")
        alpha = False  # a tRNS grey level is given in 16 bits; it does not survive scaling
    else:
        alpha = frame.has_transparency_data
    target = "RGBA" if alpha else "RGB"
    if frame.mode not in ("RGB", "RGBA", "CMYK", "L") or (alpha and frame.mode != "RGBA"):
        frame = frame.convert(target)  # 1, P, PA, LA, La, RGBa, YCbCr; L or RGB with tRNS
    converted: Image.Image | None = None
    if isinstance(icc, bytes) and icc:
        try:
            converted = ImageCms.profileToProfile(
                frame, io.BytesIO(icc), _srgb(), outputMode=target
            )
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as exc:
            logger.debug("embedded ICC profile not applied: %s", exc)
    result = converted if converted is not None else frame.convert(target)
    result.info = {}  # nothing from the upload travels on, not even the sRGB profile
    return result


def _on_canvas(frame: Image.Image, canvas: tuple[int, int]) -> Image.Image:
    """A GIF frame decoded before a later frame enlarged the canvas, padded to its size."""
    if frame.size == canvas:
        return frame
    padded = Image.new("RGBA", canvas, (0, 0, 0, 0))
    padded.paste(frame, (0, 0))
    return padded


def _over_white(frame: Image.Image) -> Image.Image:
    """The frame as RGB, transparent areas shown on white (as a messaging app shows them)."""
    if frame.mode == "RGB":
        return frame
    background = Image.new("RGBA", frame.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(background, frame.convert("RGBA")).convert("RGB")
    rgb.info = {}
    return rgb


def _encode(
    fmt: ImageFormat, frames: list[Image.Image], durations: list[int], loop: int | None
) -> bytes:
    """Encode clean frames in the upload's format family, passing no metadata at all."""
    out = io.BytesIO()
    first = frames[0]
    animated = len(frames) > 1
    if fmt is ImageFormat.JPEG:
        _over_white(first).save(out, "JPEG", quality=90)  # JPEG frames are RGB already
    elif fmt is ImageFormat.PNG:
        first.save(out, "PNG", optimize=False, compress_level=1)  # see module docstring
    elif fmt is ImageFormat.WEBP:
        if animated:
            first.save(
                out,
                "WEBP",
                quality=90,
                save_all=True,
                append_images=frames[1:],
                duration=durations,
                loop=loop or 0,
            )
        else:
            first.save(out, "WEBP", quality=90)
    elif animated:  # GIF; with transparency each frame is drawn on a cleared canvas
        extra = {} if loop is None else {"loop": loop}
        first.save(
            out,
            "GIF",
            save_all=True,
            append_images=frames[1:],
            duration=durations,
            disposal=2 if first.mode == "RGBA" else 0,
            **extra,
        )
    else:
        first.save(out, "GIF")
    return out.getvalue()
