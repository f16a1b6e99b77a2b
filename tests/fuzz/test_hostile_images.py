"""Hostile images through the real API, and the accepted ones through the media check.

Every file is generated here, byte by byte where Pillow would refuse to write it:
decompression bombs whose headers declare huge images (PNG, GIF, WebP, JPEG), animated
bombs (thousands of frames; frames that add up to too many pixels), truncated files,
empty data, polyglots (JPEG + ZIP, ``GIF89a<script>``), markup sent as an image, wrong
and mismatched content types. Each refused upload gets its precise 4xx and code, and
the database holds no post, attachment or audit event afterwards. Each accepted one is
decided by ``workers.pipeline.run_media_check``: held with a reason when the full
decode fails, and when released, released without its EXIF (GPS included).
"""

from __future__ import annotations

import base64
import io
import struct
import zipfile
import zlib
from typing import Any

import pytest
from PIL import ExifTags, Image
from sqlalchemy import select

from moderation.config import get_settings
from moderation.storage.db import session_scope
from moderation.storage.tables import Attachment, Decision, Post
from tests.fuzz.conftest import Api
from tests.helpers import jpeg_bytes, post_body
from workers import pipeline

# --------------------------------------------------------------------------- builders


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, idat: bytes | None = None) -> bytes:
    """A 1-bit greyscale PNG with any declared size; the pixel data is a few bytes."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    data = zlib.compress(b"\x00" * (height * ((width + 7) // 8 + 1))) if idat is None else idat
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", data)
        + _chunk(b"IEND", b"")
    )


LZW_1X1 = b"\x02\x02\x44\x01\x00"  # code size 2; clear, index 0, end; block terminator


def gif(
    screen: tuple[int, int], frames: int, frame: tuple[int, int] = (1, 1), lzw: bytes = LZW_1X1
) -> bytes:
    """A GIF with a 2-colour table and ``frames`` image blocks of ``frame`` pixels."""
    out = b"GIF89a" + struct.pack("<HHBBB", *screen, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    block = b"\x2c" + struct.pack("<HHHHB", 0, 0, *frame, 0) + lzw
    return out + block * frames + b"\x3b"


def webp_canvas(width: int, height: int) -> bytes:
    """An extended WebP (VP8X) header declaring a canvas, and nothing else."""
    vp8x = (
        b"VP8X"
        + struct.pack("<I", 10)
        + b"\x00\x00\x00\x00"
        + (width - 1).to_bytes(3, "little")
        + (height - 1).to_bytes(3, "little")
    )
    return b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header (SOF0) claims another size."""
    data = bytearray(jpeg_bytes())
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def jpeg_zip_polyglot() -> bytes:
    """A JPEG that is also a ZIP archive (the archive's directory sits at the end)."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("payload.html", "<script>alert(1)</script>")
    return jpeg_bytes() + archive.getvalue()


def jpeg_with_gps() -> bytes:
    exif = Image.Exif()
    exif[ExifTags.IFD.GPSInfo] = {1: "N", 2: (52.0, 22.0, 30.5), 3: "E", 4: (4.0, 53.0, 12.0)}
    exif[ExifTags.Base.Model] = "Telefoon van juf"
    out = io.BytesIO()
    Image.new("RGB", (80, 60), "teal").save(out, "JPEG", exif=exif)
    return out.getvalue()


def upload(data: bytes, content_type: str, post_id: str = "p1", **extra: Any) -> dict[str, Any]:
    attachment = {
        "id": "foto-1",
        "content_type": content_type,
        "data": base64.b64encode(data).decode(),
    }
    return post_body(post_id, "Foto's van de schoolreis", attachments=[attachment], **extra)


# --------------------------------------------------------------------------- refused

SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><rect width="9"/></svg>'
HTML = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>"

REFUSED = [
    # decompression bombs: a few hundred bytes declaring billions of pixels
    (
        "png 100000x100000",
        png(100_000, 100_000, idat=zlib.compress(b"\x00" * 64)),
        "image/png",
        413,
        "image_too_large",
    ),
    ("gif screen 65535x65535", gif((65_535, 65_535), 1), "image/gif", 413, "image_too_large"),
    (
        "gif frame past the screen",
        gif((10, 10), 1, frame=(20_000, 20_000)),
        "image/gif",
        413,
        "image_too_large",
    ),
    ("webp canvas 16384x16384", webp_canvas(16_384, 16_384), "image/webp", 413, "image_too_large"),
    ("jpeg sof 60000x60000", jpeg_declaring(60_000, 60_000), "image/jpeg", 413, "image_too_large"),
    # animated bombs
    ("gif 5000 frames", gif((1, 1), 5_000), "image/gif", 413, "too_many_frames"),
    (
        "gif 60 frames of 1 Mpx",
        gif((1000, 1000), 60, frame=(1000, 1000)),
        "image/gif",
        413,
        "too_many_frames",
    ),
    # truncated or empty
    ("jpeg without its end marker", jpeg_bytes()[:-2], "image/jpeg", 422, "image_unreadable"),
    (
        "jpeg cut in half",
        jpeg_bytes()[: len(jpeg_bytes()) // 2],
        "image/jpeg",
        422,
        "image_unreadable",
    ),
    ("png without IEND", png(8, 8)[:-12], "image/png", 422, "image_unreadable"),
    ("png cut in the header", png(8, 8)[:20], "image/png", 422, "image_unreadable"),
    ("gif without trailer", gif((1, 1), 1)[:-1], "image/gif", 422, "image_unreadable"),
    ("zero bytes", b"", "image/jpeg", 415, "unsupported_media_type"),
    # polyglots and markup with an image content type
    ("jpeg + zip polyglot", jpeg_zip_polyglot(), "image/jpeg", 415, "unsupported_media_type"),
    (
        "GIF89a<script>",
        b"GIF89a<script>alert(1)</script>" + b"\x00" * 32,
        "image/gif",
        415,
        "unsupported_media_type",
    ),
    ("html as image/png", HTML, "image/png", 415, "unsupported_media_type"),
    ("svg as image/png", SVG, "image/png", 415, "unsupported_media_type"),
    ("svg as image/svg+xml", SVG, "image/svg+xml", 415, "unsupported_media_type"),
    # wrong and mismatched content types
    (
        "jpeg as application/octet-stream",
        jpeg_bytes(),
        "application/octet-stream",
        415,
        "unsupported_media_type",
    ),
    ("jpeg as text/html", jpeg_bytes(), "text/html", 415, "unsupported_media_type"),
    ("png claimed as jpeg", png(8, 8), "image/jpeg", 415, "unsupported_media_type"),
    ("gif claimed as webp", gif((1, 1), 1), "image/webp", 415, "unsupported_media_type"),
]


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code"),
    [pytest.param(d, t, s, c, id=name) for name, d, t, s, c in REFUSED],
)
def test_hostile_upload_is_refused_precisely_and_writes_nothing(
    sqlite_api: Api, data: bytes, content_type: str, status: int, code: str
):
    before = sqlite_api.rows()
    r = sqlite_api.post(upload(data, content_type))
    assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
    assert r.json()["error"]["details"]["message_nl"]  # the author is told what to do
    assert sqlite_api.rows() == before == {"posts": 0, "attachments": 0, "events": 0}


def test_base64_that_is_not_an_image_or_not_base64(sqlite_api: Api):
    data_url = "data:image/png;base64," + base64.b64encode(png(8, 8)).decode()
    for value, code in ((data_url, "invalid_base64"), ("", "unsupported_media_type")):
        body = post_body(attachments=[{"id": "a", "content_type": "image/png", "data": value}])
        r = sqlite_api.post(body)
        assert r.json()["error"]["code"] == code
    assert sqlite_api.rows()["posts"] == 0


# --------------------------------------------------------------------------- accepted


def decide_media(api: Api, post_id: str) -> tuple[str, list[dict[str, Any]], Attachment]:
    """Run the media check on the stored post; (status, attachment decisions, row)."""
    with session_scope(api.url) as session:
        pk = session.scalars(
            select(Post.pk).where(
                Post.school_id == api.tenant.school_id, Post.external_id == post_id
            )
        ).one()
    pipeline.run_media_check(get_settings(), pk)
    pipeline.run_text_check(get_settings(), pk)
    with session_scope(api.url) as session:
        post = session.get(Post, pk)
        assert post is not None
        decision = session.scalars(select(Decision).where(Decision.post_pk == pk)).one()
        attachment = session.scalars(select(Attachment).where(Attachment.post_pk == pk)).one()
        session.expunge(attachment)
        return post.status, decision.attachments, attachment


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        pytest.param(
            png(10, 10, idat=b"\x78\x9c" + bytes(range(40))),
            "image/png",
            id="png with a corrupt zlib stream",
        ),
        pytest.param(
            gif((4, 4), 1, frame=(4, 4), lzw=b"\x02\x05\xff\xff\xff\xff\xff\x00"),
            "image/gif",
            id="gif with corrupt LZW data",
        ),
    ],
)
def test_corrupt_but_complete_files_are_accepted_then_held(
    sqlite_api: Api, data: bytes, content_type: str
):
    """Intake reads headers and checksums only; the full decode in the worker fails, and
    the post is held with the reason, never released with a broken photo."""
    r = sqlite_api.post(upload(data, content_type))
    assert r.status_code == 202, r.text
    status, attachments, row = decide_media(sqlite_api, "p1")
    assert status == "held"
    assert attachments[0]["action"] == "hold"
    assert [reason["code"] for reason in attachments[0]["reasons"]] == ["image_unreadable"]
    assert row.released_data is None  # nothing publishable was made


def test_gps_and_camera_exif_are_gone_from_the_released_copy(sqlite_api: Api):
    original = jpeg_with_gps()
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(ExifTags.IFD.GPSInfo)
    r = sqlite_api.post(upload(original, "image/jpeg"))
    assert r.status_code == 202, r.text
    status, attachments, row = decide_media(sqlite_api, "p1")
    assert status == "released"
    assert attachments[0]["action"] == "release"
    assert row.released_data is not None
    released = Image.open(io.BytesIO(row.released_data))
    assert dict(released.getexif()) == {}
    assert b"Telefoon van juf" not in row.released_data
    assert released.size == (80, 60)


def test_a_small_animation_within_the_limits_is_accepted_and_released(sqlite_api: Api):
    frames = [Image.new("RGB", (16, 16), (i * 12, 80, 200 - i * 8)) for i in range(20)]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert sqlite_api.post(upload(out.getvalue(), "image/gif")).status_code == 202
    status, _, row = decide_media(sqlite_api, "p1")
    assert status == "released"
    assert row.released_data is not None
    assert getattr(Image.open(io.BytesIO(row.released_data)), "n_frames", 1) > 1
