"""Tests for moderation.media: every image is built here with Pillow, none is committed.

Hostile inputs (bombs, polyglots, truncated and mutated files) are crafted in the
test itself, so that what each case contains is visible next to its assertion.
pytest runs with warnings as errors: a DecompressionBombWarning (or any other Pillow
warning) escaping from the module fails the test that triggered it.
"""

from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib
from collections.abc import Callable

import pytest
from PIL import ExifTags, Image, ImageCms, ImageFile, ImageSequence, PngImagePlugin

from moderation.media import (
    DEFAULT_LIMITS,
    ImageFormat,
    ImageInfo,
    ImageLimits,
    ImageTooLarge,
    ImageUnreadable,
    MediaError,
    SanitizedImage,
    TooManyFrames,
    UnsupportedMediaType,
    inspect_image,
    sanitize_image,
)

FORMATS = list(ImageFormat)
RED = (255, 0, 0)

# --------------------------------------------------------------------------- builders


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def photo(size: tuple[int, int] = (64, 48)) -> Image.Image:
    """A small photo-like RGB image with a red 8x8 marker in its top-left corner."""
    grey = Image.linear_gradient("L").resize(size)
    image = Image.merge("RGB", (grey, grey.transpose(Image.Transpose.ROTATE_180), grey))
    image.paste(RED, (0, 0, 8, 8))
    return image


def encode_photo(fmt: ImageFormat, image: Image.Image | None = None) -> bytes:
    params: dict[str, object] = (
        {"quality": 95} if fmt in (ImageFormat.JPEG, ImageFormat.WEBP) else {}
    )
    return encode(image or photo(), fmt.value, **params)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of zeros: a few KB on disk, ``width * height`` pixels decoded."""
    row = b"\x00" + bytes((width + 7) // 8)  # filter type 0, then the packed pixels
    rows_per_block = max(1, 4_000_000 // len(row))
    compressor = zlib.compressobj(9)
    parts = []
    for first in range(0, height, rows_per_block):
        parts.append(compressor.compress(row * min(rows_per_block, height - first)))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", b"".join(parts))
        + png_chunk(b"IEND", b"")
    )


def with_png_size(data: bytes, width: int, height: int) -> bytes:
    """A PNG whose IHDR is patched to declare another size (CRC recomputed)."""
    assert data[12:16] == b"IHDR"
    body = struct.pack(">II", width, height) + data[24:29]
    return data[:8] + png_chunk(b"IHDR", body) + data[33:]


def raw_gif(screen: tuple[int, int], frames: list[tuple[int, int]]) -> bytes:
    """A GIF written byte by byte: a 2-colour palette and 1x1 frames at (left, top)."""
    header = b"GIF89a" + struct.pack("<HHBBB", *screen, 0x80, 0, 0) + b"\xff\xff\xff\x00\x00\x00"
    # image descriptor, LZW minimum code size 2, one sub-block of 2 bytes, terminator
    blocks = [
        b"," + struct.pack("<4HB", left, top, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
        for left, top in frames
    ]
    return header + b"".join(blocks) + b";"


def animation(count: int, size: tuple[int, int] = (8, 8)) -> list[Image.Image]:
    """``count`` frames, each clearly a different colour from the one before."""
    return [
        Image.new("RGB", size, (i * 53 % 256, i * 97 % 256, (i // 256) * 60)) for i in range(count)
    ]


def exif_with_gps(orientation: int = 6) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Google"
    exif[ExifTags.Base.Model] = "Pixel 9 Pro"
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.IFD.GPSInfo] = {
        ExifTags.GPS.GPSLatitudeRef: "N",
        ExifTags.GPS.GPSLatitude: (52.0, 5.0, 31.0),
        ExifTags.GPS.GPSLongitudeRef: "E",
        ExifTags.GPS.GPSLongitude: (4.0, 53.0, 12.0),
    }
    return exif


def srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def close(colour: object, expected: object, tolerance: int = 8) -> bool:
    """Whether two RGB pixels are equal up to lossy re-encoding."""
    assert isinstance(colour, tuple) and isinstance(expected, tuple)
    return all(abs(a - b) <= tolerance for a, b in zip(colour, expected, strict=True))


def reopen(result: SanitizedImage) -> Image.Image:
    image = Image.open(io.BytesIO(result.data))
    assert image.format == result.format.value
    return image


def both(
    data: bytes, declared: str, limits: ImageLimits = DEFAULT_LIMITS
) -> list[Callable[[], object]]:
    """The two entry points on the same data, for cases both must refuse alike."""
    return [lambda: inspect_image(data, declared, limits), lambda: sanitize_image(data, limits)]


def assert_refused(
    error: type[MediaError], data: bytes, declared: str, limits: ImageLimits = DEFAULT_LIMITS
) -> None:
    for call in both(data, declared, limits):
        with pytest.raises(error):
            call()


# --------------------------------------------------------------------------- accepted images


@pytest.mark.parametrize("fmt", FORMATS)
def test_valid_images_pass(fmt: ImageFormat) -> None:
    data = encode_photo(fmt)

    info = inspect_image(data, fmt.content_type)
    result = sanitize_image(data)

    assert info == ImageInfo(
        format=fmt,
        content_type=fmt.content_type,
        width=64,
        height=48,
        frames=1,
        has_exif_gps=False,
        byte_size=len(data),
    )
    assert (result.format, result.content_type) == (fmt, fmt.content_type)
    assert (result.width, result.height, result.frames) == (64, 48, 1)
    assert result.rgb.mode == "RGB"
    assert result.rgb.size == (64, 48)
    assert reopen(result).size == (64, 48)
    red, green, blue = result.rgb.getpixel((2, 2))  # type: ignore[misc]
    assert red > 200 and green < 60 and blue < 60  # the marker survived re-encoding


@pytest.mark.parametrize("fmt", FORMATS)
def test_one_pixel_image_passes(fmt: ImageFormat) -> None:
    data = encode_photo(fmt, Image.new("RGB", (1, 1), RED))

    assert inspect_image(data, fmt.content_type).width == 1
    assert sanitize_image(data).rgb.size == (1, 1)


def test_declared_type_is_compared_without_parameters_or_case() -> None:
    data = encode_photo(ImageFormat.JPEG)

    assert inspect_image(data, " Image/JPEG; charset=binary").format is ImageFormat.JPEG


def test_limits_default_to_the_documented_constants() -> None:
    limits = ImageLimits()

    assert limits.max_bytes == ImageLimits.MAX_BYTES == 20 * 1024 * 1024
    assert limits.max_pixels == 40_000_000
    assert limits.max_side == 12_000
    assert limits.max_frames == 100


@pytest.mark.parametrize("field", ["max_bytes", "max_pixels", "max_side", "max_frames"])
def test_limits_refuse_non_positive_values(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ImageLimits(**{field: 0})


def test_errors_carry_stable_codes_and_dutch_messages() -> None:
    codes = {
        UnsupportedMediaType: "unsupported_media_type",
        ImageTooLarge: "image_too_large",
        TooManyFrames: "too_many_frames",
        ImageUnreadable: "image_unreadable",
    }
    for error_type, code in codes.items():
        assert issubclass(error_type, MediaError)
        assert error_type.code == code

    with pytest.raises(UnsupportedMediaType) as caught:
        inspect_image(b"", "image/png")
    assert caught.value.code == "unsupported_media_type"
    assert "leeg" in caught.value.message_nl
    assert str(caught.value) == caught.value.message_en == "empty upload"


# --------------------------------------------------------------------------- metadata


@pytest.mark.parametrize("fmt", [ImageFormat.JPEG, ImageFormat.PNG, ImageFormat.WEBP])
def test_exif_gps_camera_and_orientation_are_applied_then_stripped(fmt: ImageFormat) -> None:
    params: dict[str, object] = {"exif": exif_with_gps(orientation=6), "icc_profile": srgb_icc()}
    if fmt is not ImageFormat.PNG:
        params["xmp"] = b'<x:xmpmeta xmlns:x="adobe:ns:meta/">secret-xmp</x:xmpmeta>'
    if fmt is ImageFormat.JPEG:
        params["comment"] = b"secret-comment"
    data = encode(photo(), fmt.value, **params)
    assert b"Pixel 9 Pro" in data

    info = inspect_image(data, fmt.content_type)
    result = sanitize_image(data)

    assert info.has_exif_gps is True
    assert (info.width, info.height) == (64, 48)  # as encoded
    assert (result.width, result.height) == (48, 64)  # orientation 6: rotated 90 degrees clockwise
    # the marker from the stored top-left corner is now in the top-right corner
    red, green, blue = result.rgb.getpixel((47, 0))  # type: ignore[misc]
    assert red > 200 and green < 60 and blue < 60
    out = reopen(result)
    assert dict(out.getexif()) == {}
    assert not any("GPS" in str(key) for key in out.info)
    assert not {"exif", "xmp", "comment", "icc_profile"} & set(out.info)
    for secret in (b"Exif", b"Pixel 9 Pro", b"Google", b"secret-xmp", b"secret-comment", b"sRGB"):
        assert secret not in result.data


def test_image_without_exif_has_no_gps() -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Model] = "Pixel 9 Pro"
    data = encode(photo(), "JPEG", exif=exif)

    assert inspect_image(data, "image/jpeg").has_exif_gps is False


def test_broken_exif_counts_as_no_gps_and_does_not_stop_the_photo() -> None:
    broken = b"Exif\x00\x00MX\x00*\x00\x00\x00\x08\x00\x00"  # not a TIFF byte order
    data = encode(photo(), "JPEG", exif=broken)

    assert inspect_image(data, "image/jpeg").has_exif_gps is False
    assert b"MX\x00*" not in sanitize_image(data).data


def test_png_text_chunks_are_removed() -> None:
    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "secret-text")
    text.add_text("Author", "secret-zipped", zip=True)
    text.add_itxt("Description", "secret-international", lang="nl")
    data = encode(photo(), "PNG", pnginfo=text)
    assert Image.open(io.BytesIO(data)).text  # type: ignore[attr-defined]

    result = sanitize_image(data)

    out = reopen(result)
    assert out.text == {}  # type: ignore[attr-defined]
    for chunk in (b"tEXt", b"zTXt", b"iTXt", b"secret"):
        assert chunk not in result.data


def test_gif_comment_is_removed() -> None:
    data = encode(photo().convert("P"), "GIF", comment=b"secret-gif-comment")
    assert Image.open(io.BytesIO(data)).info["comment"] == b"secret-gif-comment"

    result = sanitize_image(data)

    assert "comment" not in reopen(result).info
    assert b"secret" not in result.data


def test_unusable_icc_profile_is_dropped_and_the_image_still_passes() -> None:
    data = encode(photo(), "JPEG", icc_profile=b"not an ICC profile at all")

    result = sanitize_image(data)

    assert "icc_profile" not in reopen(result).info
    assert b"not an ICC" not in result.data


# --------------------------------------------------------------------------- modes


def test_cmyk_jpeg_becomes_rgb() -> None:
    data = encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG")  # red in CMYK
    assert Image.open(io.BytesIO(data)).mode == "CMYK"

    result = sanitize_image(data)

    assert result.rgb.mode == "RGB"
    assert reopen(result).mode == "RGB"
    red, green, blue = result.rgb.getpixel((8, 8))  # type: ignore[misc]
    assert red > 200 and green < 60 and blue < 60


def test_palette_with_transparency_keeps_alpha_and_shows_white_to_scorers() -> None:
    image = Image.new("P", (10, 10), 1)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.paste(0, (0, 0, 5, 10))
    data = encode(image, "PNG", transparency=0)

    result = sanitize_image(data)

    assert reopen(result).mode == "RGBA"
    assert result.rgb.mode == "RGB"
    assert result.rgb.getpixel((1, 1)) == (255, 255, 255)  # transparent -> white
    assert result.rgb.getpixel((8, 1)) == RED


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [
        ("1", 1, (255, 255, 255)),
        ("L", 128, (128, 128, 128)),
        ("LA", (128, 255), (128, 128, 128)),
        ("LA", (0, 0), (255, 255, 255)),
        ("I;16", 32896, (128, 128, 128)),  # 16-bit grey, scaled to 8 bits, not clipped
        ("RGBA", (255, 0, 0, 255), RED),
    ],
)
def test_png_modes_become_sensible_rgb(
    mode: str, value: object, expected: tuple[int, int, int]
) -> None:
    data = encode(Image.new(mode, (4, 4), value), "PNG")  # type: ignore[arg-type]
    assert Image.open(io.BytesIO(data)).mode == mode

    result = sanitize_image(data)

    assert result.rgb.mode == "RGB"
    assert result.rgb.getpixel((1, 1)) == expected
    assert reopen(result).mode in ("RGB", "RGBA")


# --------------------------------------------------------------------------- animations


@pytest.mark.parametrize("fmt", [ImageFormat.GIF, ImageFormat.WEBP])
def test_animation_within_limits_keeps_its_frames(fmt: ImageFormat) -> None:
    frames = animation(3, (16, 16))
    params: dict[str, object] = {"lossless": True} if fmt is ImageFormat.WEBP else {}
    data = encode(
        frames[0],
        fmt.value,
        save_all=True,
        append_images=frames[1:],
        duration=[100, 200, 300],
        loop=0,
        **params,
    )

    info = inspect_image(data, fmt.content_type)
    result = sanitize_image(data)

    assert info.frames == result.frames == 3
    out = reopen(result)
    assert out.n_frames == 3  # type: ignore[attr-defined]
    assert out.info["loop"] == 0
    for index, frame in enumerate(ImageSequence.Iterator(out)):
        colour = frame.convert("RGB").getpixel((8, 8))  # loads the frame, and its duration
        assert frame.info["duration"] == [100, 200, 300][index]
        assert close(colour, frames[index].getpixel((8, 8)))
    assert close(result.rgb.getpixel((8, 8)), frames[0].getpixel((8, 8)))


def test_transparent_gif_animation_stays_transparent() -> None:
    frames = []
    for colour in ("red", "blue"):
        frame = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
        frame.paste(colour, (2, 2, 8, 8))
        frames.append(frame)
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], disposal=2)

    out = reopen(sanitize_image(data))

    for frame, centre in zip(ImageSequence.Iterator(out), (RED, (0, 0, 255)), strict=True):
        rgba = frame.convert("RGBA")
        assert rgba.getpixel((0, 0))[3] == 0  # type: ignore[index]
        assert rgba.getpixel((5, 5))[:3] == centre  # type: ignore[index]


def test_gif_frame_that_enlarges_the_canvas_is_padded() -> None:
    data = raw_gif((1, 1), [(0, 0), (3, 3)])  # the second frame paints outside the screen

    info = inspect_image(data, "image/gif")
    result = sanitize_image(data)

    assert (info.width, info.height, info.frames) == (4, 4, 2)
    assert (result.width, result.height, result.frames) == (4, 4, 2)
    assert reopen(result).size == (4, 4)


def test_multi_picture_jpeg_keeps_its_first_picture() -> None:
    data = encode(photo(), "MPO", save_all=True, append_images=[photo((32, 24))])
    assert Image.open(io.BytesIO(data)).format == "MPO"  # what some phones write

    info = inspect_image(data, "image/jpeg")
    result = sanitize_image(data)

    assert (info.format, info.frames, info.width) == (ImageFormat.JPEG, 1, 64)
    out = reopen(result)
    assert (result.frames, out.size) == (1, (64, 48))
    assert getattr(out, "n_frames", 1) == 1


def test_animated_png_keeps_its_first_image() -> None:
    image = photo()
    data = encode(image, "PNG", save_all=True, append_images=[image.rotate(180)])
    assert Image.open(io.BytesIO(data)).n_frames == 2  # type: ignore[attr-defined]

    result = sanitize_image(data)

    assert inspect_image(data, "image/png").frames == result.frames == 1
    assert getattr(reopen(result), "n_frames", 1) == 1
    assert result.rgb.getpixel((2, 2)) == RED


@pytest.mark.parametrize("fmt", [ImageFormat.GIF, ImageFormat.WEBP])
def test_animation_with_too_many_frames_is_refused(fmt: ImageFormat) -> None:
    frames = animation(500 if fmt is ImageFormat.GIF else 150)
    data = encode(frames[0], fmt.value, save_all=True, append_images=frames[1:])
    assert Image.open(io.BytesIO(data)).n_frames == len(frames)  # type: ignore[attr-defined]

    assert_refused(TooManyFrames, data, fmt.content_type)


def test_animation_over_the_pixel_budget_is_refused() -> None:
    frames = animation(20, (10, 10))  # 100 pixels a frame, 2000 in all
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    limits = ImageLimits(max_pixels=1_000)

    assert_refused(TooManyFrames, data, "image/gif", limits)


def test_gif_with_a_million_frames_is_refused_without_reading_them_all() -> None:
    data = raw_gif((1, 1), [(0, 0)] * 1_000_000)  # 15 MB of 1x1 frames

    with pytest.raises(TooManyFrames, match="more than 100"):
        inspect_image(data, "image/gif")


# --------------------------------------------------------------------------- bombs


@pytest.mark.parametrize(
    "side",
    [
        7_000,  # 49 MP: over our 40 MP, under Pillow's limits
        10_000,  # 100 MP: where Pillow would warn (DecompressionBombWarning)
        20_000,  # 400 MP: where Pillow raises DecompressionBombError
    ],
)
def test_png_decompression_bomb_is_too_large_without_a_warning(side: int) -> None:
    data = png_bomb(side, side)
    assert len(data) < 60_000

    assert_refused(ImageTooLarge, data, "image/png")


def test_png_declaring_50000_square_is_too_large() -> None:
    data = with_png_size(encode(Image.new("L", (1, 1)), "PNG"), 50_000, 50_000)

    assert_refused(ImageTooLarge, data, "image/png")
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # the module leaves Pillow's global alone
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_side_over_the_limit_is_too_large_even_with_few_pixels() -> None:
    data = png_bomb(12_001, 1)

    assert_refused(ImageTooLarge, data, "image/png")


def test_webp_declaring_a_huge_canvas_is_refused_before_libwebp_allocates_it() -> None:
    data = bytearray(encode(photo(), "WEBP", exif=Image.Exif()))  # extended format: VP8X
    assert data[12:16] == b"VP8X"
    data[24:30] = (16_000 - 1).to_bytes(3, "little") * 2  # a 16000x16000 canvas

    assert_refused(ImageTooLarge, bytes(data), "image/webp")


def test_gif_screen_or_frame_beyond_the_limits_is_too_large() -> None:
    assert_refused(ImageTooLarge, raw_gif((65_535, 65_535), [(0, 0)]), "image/gif")
    assert_refused(ImageTooLarge, raw_gif((1, 1), [(0, 0), (60_000, 0)]), "image/gif")


def test_upload_over_the_byte_limit_is_too_large() -> None:
    data = encode_photo(ImageFormat.PNG)

    assert_refused(ImageTooLarge, data, "image/png", ImageLimits(max_bytes=len(data) - 1))


# --------------------------------------------------------------------------- wrong type


def test_png_declared_as_jpeg_is_unsupported() -> None:
    with pytest.raises(UnsupportedMediaType, match="image/png"):
        inspect_image(encode_photo(ImageFormat.PNG), "image/jpeg")


def test_svg_is_unsupported_whatever_it_is_declared_as() -> None:
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'

    for declared in ("image/svg+xml", "image/png"):
        with pytest.raises(UnsupportedMediaType):
            inspect_image(svg, declared)
    with pytest.raises(UnsupportedMediaType):
        sanitize_image(svg)


def test_empty_data_is_unsupported() -> None:
    assert_refused(UnsupportedMediaType, b"", "image/jpeg")


def test_random_bytes_are_not_a_recognised_image() -> None:
    rng = random.Random(20240601)
    for length in (1, 16, 1_000, 100_000):
        assert_refused(UnsupportedMediaType, rng.randbytes(length), "image/jpeg")


@pytest.mark.parametrize(
    ("data", "declared"),
    [
        pytest.param(
            b"GIF89a<script>alert(document.cookie)</script>",
            "image/gif",
            id="html-after-a-gif-signature",
        ),
        pytest.param(
            encode(Image.new("P", (4, 4)), "GIF", comment=b"<html><body onload=alert(1)>"),
            "image/gif",
            id="valid-gif-with-markup-in-a-comment",
        ),
        pytest.param(
            encode(photo(), "JPEG", comment=b"%PDF-1.7\n1 0 obj"),
            "image/jpeg",
            id="jpeg-with-a-pdf-header",
        ),
    ],
)
def test_polyglot_is_unsupported(data: bytes, declared: str) -> None:
    assert_refused(UnsupportedMediaType, data, declared)


def test_image_with_a_zip_archive_appended_is_unsupported() -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("payload.class", b"\xca\xfe\xba\xbe")
    data = encode_photo(ImageFormat.GIF) + archive.getvalue()  # a "GIFAR"

    assert_refused(UnsupportedMediaType, data, "image/gif")


# --------------------------------------------------------------------------- unreadable


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_image_is_unreadable(fmt: ImageFormat) -> None:
    data = encode_photo(fmt, photo((320, 240)))

    assert_refused(ImageUnreadable, data[: len(data) // 2], fmt.content_type)


def test_truncated_progressive_jpeg_is_unreadable() -> None:
    data = encode(photo((320, 240)), "JPEG", progressive=True)

    assert_refused(ImageUnreadable, data[: len(data) * 3 // 4], "image/jpeg")


def test_jpeg_missing_only_its_end_marker_is_unreadable() -> None:
    data = encode_photo(ImageFormat.JPEG)

    assert_refused(ImageUnreadable, data[:-2], "image/jpeg")


def test_refuses_to_run_when_truncated_images_are_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)

    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        inspect_image(encode_photo(ImageFormat.JPEG), "image/jpeg")


# --------------------------------------------------------------------------- mutations


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One random corruption: flipped bytes, a cut, a spliced copy, or inserted junk."""
    mutated = bytearray(data)
    kind = rng.randrange(4)
    if kind == 0:
        for _ in range(rng.randint(1, 8)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
    elif kind == 1:
        del mutated[rng.randrange(1, len(mutated)) :]
    elif kind == 2:
        start = rng.randrange(len(mutated))
        piece = mutated[start : start + rng.randint(1, 64)]
        position = rng.randrange(len(mutated))
        mutated[position:position] = piece
    else:
        position = rng.randrange(len(mutated))
        mutated[position:position] = rng.randbytes(rng.randint(1, 32))
    return bytes(mutated)


@pytest.mark.parametrize(
    ("fmt", "iterations"),
    [(ImageFormat.JPEG, 200), (ImageFormat.PNG, 60), (ImageFormat.GIF, 60), (ImageFormat.WEBP, 60)],
)
def test_mutated_images_raise_only_media_errors(fmt: ImageFormat, iterations: int) -> None:
    source = photo((48, 32))
    if fmt is ImageFormat.GIF:
        frames = animation(3, (48, 32))
        original = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], comment=b"c")
    else:
        params: dict[str, object] = {"exif": exif_with_gps()}
        original = encode(source, fmt.value, **params)
    rng = random.Random(f"mutations-{fmt}")  # str seeds are stable across runs
    outcomes: dict[str, int] = {}
    for _ in range(iterations):
        data = mutate(original, rng)
        for call in both(data, fmt.content_type):
            try:
                call()
                outcome = "accepted"
            except MediaError as error:
                outcome = error.code
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert "media_error" not in outcomes  # always a specific subclass
    assert outcomes.get("image_unreadable", 0) > 0  # the corruptions were noticed
