"""Videos: intake limits, hostile files, frame sampling, metadata stripping, and the API.

Every video is made here with PyAV from the shared face photos (``../shared/data/faces``)
or from generated frames; hostile ones are cut, relabelled or patched from those.
"""

from __future__ import annotations

import base64
import io
import json
import random
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from models.images.bench_faces import compose_group_photo, load_shared_photo, shared_sources
from models.images.faces import FaceAnalyzer, match
from moderation.api.main import create_app
from moderation.config import Settings
from moderation.domain import ChildConsent
from moderation.media import DEFAULT_LIMITS, MediaError, UnsupportedMediaType
from moderation.photo_check import ConsentRegister, check_video
from moderation.video import (
    VideoContainer,
    VideoLimits,
    VideoTooLarge,
    VideoTooLong,
    VideoUnreadable,
    inspect_attachment,
    inspect_video,
    sample_frames,
    strip_video_metadata,
)
from tests.conftest import Configure, new_school
from tests.helpers import ROSTER, attachment, jpeg_bytes, post_body

FORMATS = {  # container -> (PyAV muxer, video encoder)
    VideoContainer.MP4: ("mp4", "libx264"),
    VideoContainer.QUICKTIME: ("mov", "libx264"),
    VideoContainer.WEBM: ("webm", "libvpx"),
}

ENCODER_OPTIONS = {  # sharp enough for small faces; libvpx's default speed is slow
    "libx264": {"crf": "18"},
    "libvpx": {"deadline": "realtime", "cpu-used": "8", "crf": "10", "b": "4M"},
}


def numbered_frames(count: int, size: tuple[int, int] = (320, 240)) -> list[Image.Image]:
    """Frames of the shared Obama photo with the frame number as the grey level of a
    block in the top-left corner (8 per frame, up to 31), to see which frame was sampled."""
    photo = load_shared_photo("barack_obama/obama.jpg").resize(size)
    frames = []
    for index in range(count):
        frame = photo.copy()
        ImageDraw.Draw(frame).rectangle((0, 0, 31, 31), fill=(8 * index,) * 3)
        frames.append(frame)
    return frames


def frame_number(image: Image.Image) -> int:
    block = np.asarray(image.convert("L"))[4:28, 4:28]
    return round(float(block.mean()) / 8)


def encode(
    frames: Sequence[Image.Image],
    container: VideoContainer = VideoContainer.MP4,
    *,
    fps: int = 10,
    pts: Sequence[int] | None = None,
    metadata: dict[str, str] | None = None,
    stream_metadata: dict[str, str] | None = None,
    rotation: int = 0,
    audio: bool = False,
    faststart: bool = False,
    codec: str | None = None,
    video_streams: int = 1,
    gop: int | None = None,
) -> bytes:
    """A video of ``frames`` (all the first frame's size), written with PyAV."""
    muxer, encoder = FORMATS[container]
    options = {"movflags": "+faststart"} if faststart else {}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"video.{muxer}"
        with av.open(str(path), "w", format=muxer, container_options=options) as out:
            out.metadata.update(metadata or {})
            videos = []
            for _ in range(video_streams):
                stream = out.add_stream(codec or encoder, rate=fps)
                stream.width, stream.height = frames[0].size
                stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
                stream.options = ENCODER_OPTIONS.get(codec or encoder, {})
                stream.metadata.update(stream_metadata or {})
                if rotation:
                    stream.set_display_rotation(rotation)
                if gop:
                    stream.codec_context.gop_size = gop
                videos.append(stream)
            sound = out.add_stream("aac", rate=48_000, layout="stereo") if audio else None
            for index, image in enumerate(frames):
                for stream in videos:
                    frame = av.VideoFrame.from_image(image)
                    frame.pts = index if pts is None else pts[index]
                    for packet in stream.encode(frame):
                        out.mux(packet)
            for stream in videos:
                for packet in stream.encode(None):
                    out.mux(packet)
            if sound is not None:
                samples = 1024
                for index in range(len(frames) * 48_000 // fps // samples):
                    chunk = av.AudioFrame.from_ndarray(
                        np.zeros((2, samples), dtype=np.float32), format="fltp", layout="stereo"
                    )
                    chunk.sample_rate, chunk.pts = 48_000, index * samples
                    for packet in sound.encode(chunk):
                        out.mux(packet)
                for packet in sound.encode(None):
                    out.mux(packet)
        return path.read_bytes()


@pytest.fixture(scope="module")
def clip() -> bytes:
    """3 s of 320x240 H.264 at 10 fps, index first, with sound."""
    return encode(numbered_frames(30), faststart=True, audio=True)


# --- intake -------------------------------------------------------------------------


@pytest.mark.parametrize("container", list(VideoContainer))
def test_each_allowed_container_is_inspected(container):
    data = encode(numbered_frames(20), container)
    info = inspect_video(data, container.content_type)
    assert info.container is container
    assert info.content_type == container.content_type
    assert (info.width, info.height, info.streams) == (320, 240, 1)
    assert info.duration_s == pytest.approx(2.0, abs=0.05)
    assert info.video_codec == ("vp8" if container is VideoContainer.WEBM else "h264")
    assert info.byte_size == len(data)
    assert not info.has_location


def test_sound_and_parameters_of_the_content_type(clip):
    info = inspect_video(clip, " Video/MP4; codecs=avc1")
    assert (info.audio_codec, info.streams, info.content_type) == ("aac", 2, "video/mp4")
    assert inspect_video(clip, "video/quicktime").container is VideoContainer.QUICKTIME


def cut(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


def huge_resolution_mp4() -> bytes:
    """An MP4 whose H.264 sequence parameter set declares 16000x16000 pixels (a
    decompression bomb: the stream holds 320x240 pictures). See :func:`patch_sps`."""
    data = encode(numbered_frames(3))
    at = data.index(b"avcC") + 4  # avcC: version, profile, compat, level, length, SPS count
    length = int.from_bytes(data[at + 6 : at + 8], "big")
    sps = data[at + 8 : at + 8 + length]
    return data[: at + 8] + patch_sps(sps, 1000, 1000) + data[at + 8 + length :]


def long_mp4() -> bytes:
    """Three frames an hour apart: a tiny file that says it lasts an hour."""
    return encode(numbered_frames(3), pts=[0, 18_000, 36_000])


@pytest.mark.parametrize(
    ("make", "declared", "error"),
    [
        (lambda clip: b"", "video/mp4", UnsupportedMediaType),
        (lambda clip: clip, "video/ogg", UnsupportedMediaType),
        (lambda clip: clip, "video/webm", UnsupportedMediaType),
        (
            lambda clip: encode(numbered_frames(5), VideoContainer.WEBM),
            "video/mp4",
            UnsupportedMediaType,
        ),
        (lambda clip: load_jpeg(), "video/mp4", UnsupportedMediaType),
        (lambda clip: b"\x1a\x45\xdf\xa3" + bytes(60), "video/webm", VideoUnreadable),
        (lambda clip: b"\x00\x00\x00\x18ftypisom" + bytes(100), "video/mp4", VideoUnreadable),
        (lambda clip: cut(clip, 0.9), "video/mp4", VideoUnreadable),
        (lambda clip: cut(clip, 0.5), "video/mp4", VideoUnreadable),
        (lambda clip: cut(clip, 0.02), "video/mp4", VideoUnreadable),
        (lambda clip: cut(encode(numbered_frames(30)), 0.7), "video/mp4", VideoUnreadable),
        (
            lambda clip: cut(encode(numbered_frames(30), VideoContainer.WEBM), 0.95),
            "video/webm",
            VideoUnreadable,
        ),
        (lambda clip: huge_resolution_mp4(), "video/mp4", VideoTooLarge),
        (lambda clip: long_mp4(), "video/mp4", VideoTooLong),
        (
            lambda clip: encode(numbered_frames(3), VideoContainer.QUICKTIME, codec="mjpeg"),
            "video/quicktime",
            UnsupportedMediaType,
        ),
        (
            lambda clip: encode(numbered_frames(3), video_streams=2),
            "video/mp4",
            UnsupportedMediaType,
        ),
    ],
    ids=[
        "zero length",
        "container not allowed",
        "mp4 declared as webm",
        "webm declared as mp4",
        "a jpeg declared as mp4",
        "ebml without a webm header",
        "ftyp and nothing else",
        "truncated 90%",
        "truncated 50%",
        "truncated 2%",
        "truncated, index at the end",
        "truncated webm",
        "huge declared resolution",
        "an hour long",
        "codec not allowed",
        "two video streams",
    ],
)
def test_hostile_and_wrong_uploads_get_a_precise_error(clip, make, declared, error):
    data = make(clip)
    started = time.monotonic()
    with pytest.raises(error) as raised:
        inspect_video(data, declared)
    assert time.monotonic() - started < 3.0  # never hangs; the bomb is refused in ~0.1 s
    assert raised.value.code == error.code
    assert raised.value.message_nl  # plain Dutch for the author


def load_jpeg() -> bytes:
    buffer = io.BytesIO()
    load_shared_photo("joe_biden/biden.jpg").save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("limits", "error"),
    [
        (VideoLimits(max_bytes=1000), VideoTooLarge),
        (VideoLimits(max_side=200), VideoTooLarge),
        (VideoLimits(max_pixels=320 * 200), VideoTooLarge),
        (VideoLimits(max_streams=1), VideoTooLarge),
        (VideoLimits(max_packets=10), VideoTooLarge),
        (VideoLimits(max_duration_s=2.0), VideoTooLong),
        (VideoLimits(max_work_s=1e-9), VideoUnreadable),
    ],
    ids=["bytes", "side", "pixels", "streams", "packets", "duration", "work"],
)
def test_each_limit_holds(clip, limits, error):
    with pytest.raises(error):
        inspect_video(clip, "video/mp4", limits)


def test_a_duration_beyond_the_declared_one_is_caught_while_demuxing():
    """The container may understate the duration; the packets' timestamps cannot."""
    data = bytearray(long_mp4())
    mvhd = data.index(b"mvhd") + 4  # version 0: flags, created, modified, timescale, duration
    data[mvhd + 16 : mvhd + 20] = (1).to_bytes(4, "big")
    for tkhd in (i for i in range(len(data)) if data[i : i + 4] == b"tkhd"):
        data[tkhd + 24 : tkhd + 28] = (1).to_bytes(4, "big")
    with pytest.raises(VideoTooLong):
        inspect_video(bytes(data), "video/mp4")


def test_mutated_files_raise_media_errors_only(clip):
    """Bytes flipped at random in valid files: an answer or a MediaError, nothing else."""
    rng = random.Random(7)
    webm = encode(numbered_frames(10), VideoContainer.WEBM)
    outcomes = {"ok": 0, "error": 0}
    for original, declared in ((clip, "video/mp4"), (webm, "video/webm")):
        for _ in range(40):
            data = bytearray(original)
            for _ in range(rng.randint(1, 20)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            for call in (
                lambda d=bytes(data), t=declared: inspect_video(d, t),
                lambda d=bytes(data): sample_frames(d, every_s=1.0, max_frames=3),
                lambda d=bytes(data): strip_video_metadata(d),
            ):
                try:
                    call()
                    outcomes["ok"] += 1
                except MediaError:
                    outcomes["error"] += 1
    assert outcomes["ok"] and outcomes["error"]  # both paths were exercised


def test_images_still_go_to_the_image_intake(clip):
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, "PNG")
    assert inspect_attachment(buffer.getvalue(), "image/png", DEFAULT_LIMITS).content_type == (
        "image/png"
    )
    with pytest.raises(UnsupportedMediaType):  # a video declared as a photo
        inspect_attachment(clip, "image/jpeg", DEFAULT_LIMITS)
    info = inspect_attachment(clip, "video/mp4", DEFAULT_LIMITS, VideoLimits())
    assert info.content_type == "video/mp4"


def test_default_body_limit_fits_the_largest_video():
    settings = Settings()
    base64_video = 4 * (settings.max_video_bytes // 3 + 1)
    assert settings.max_request_bytes >= base64_video + 64 * 1024
    assert VideoLimits.from_settings(settings) == VideoLimits()


# --- frames -------------------------------------------------------------------------


def test_frames_every_second_at_full_resolution(clip):
    frames = sample_frames(clip, every_s=1.0)
    assert [frame_number(f) for f in frames] == [0, 10, 20]
    assert all(f.size == (320, 240) and f.mode == "RGB" for f in frames)


@pytest.mark.parametrize("container", list(VideoContainer))
def test_a_long_video_is_sampled_over_its_whole_length(container):
    data = encode(numbered_frames(13), container, fps=1)  # 13 s, a frame a second
    frames = sample_frames(data, every_s=1.0, max_frames=4)
    assert [frame_number(f) for f in frames] == [0, 4, 7, 10]  # every 3.25 s, seeking


def test_sampling_seeks_from_keyframe_to_keyframe():
    """60 s at 10 fps with a keyframe a second: 4 samples need some 40 decoded frames, so a
    budget of 100 holds; with one keyframe only it would take 600, and the budget stops it."""
    frames = numbered_frames(1, size=(160, 120)) * 600
    seekable = encode(frames, gop=10)
    tight = VideoLimits(max_packets=100)
    assert len(sample_frames(seekable, every_s=1.0, max_frames=4, limits=tight)) == 4
    with pytest.raises(VideoUnreadable, match="too long"):
        sample_frames(encode(frames, gop=600), every_s=1.0, max_frames=4, limits=tight)


def test_frames_are_turned_upright():
    upright = numbered_frames(3, size=(240, 320))
    stored = [frame.transpose(Image.Transpose.ROTATE_270) for frame in upright]  # sideways
    data = encode(stored, rotation=90)  # the player turns it 90 degrees counter-clockwise
    (first, *_) = sample_frames(data, every_s=1.0)
    assert first.size == (240, 320)
    diff = np.abs(np.asarray(first, dtype=float) - np.asarray(upright[0], dtype=float))
    assert diff.mean() < 8


def test_a_child_without_consent_in_a_class_video_holds_it():
    """Small faces survive sampling: the consent check finds the enrolled child."""
    analyzer = FaceAnalyzer()
    rng = np.random.default_rng(1)
    group = compose_group_photo(
        shared_sources(), rng, size=(1280, 720), face_px=(60, 70, 80, 60, 70)
    )
    data = encode([group.image] * 10, fps=5)
    frames = sample_frames(data, every_s=1.0)
    assert len(frames) == 2 and frames[0].size == (1280, 720)
    faces = [analyzer.analyze(frame) for frame in frames]
    assert len(faces[0]) >= len(group.boxes) - 1
    reference = analyzer.reference_embedding(load_shared_photo("barack_obama/obama.jpg"))
    register = ConsentRegister("app", (ChildConsent("sanne", False, True, (reference,)),))
    verdict = check_video(faces, register, attachment_id="v1", matcher=match)
    (finding,) = verdict.findings
    assert finding.code == "video_consent"
    assert json.loads(finding.detail)["students"] == ["sanne"]


# --- metadata -----------------------------------------------------------------------

PRIVATE = {
    "location": "+52.3702+004.8952/",
    "creation_time": "2024-05-01T10:00:00Z",
    "make": "Apple",
    "model": "iPhone 13 van Eva",
    "comment": "Sanne op schoolreis",
    "title": "Groep 5a",
}


@pytest.mark.parametrize(
    ("container", "location_box"),
    [(VideoContainer.QUICKTIME, b"\xa9xyz"), (VideoContainer.MP4, b"loci")],
)
def test_stripping_removes_container_and_stream_metadata(container, location_box):
    data = encode(
        numbered_frames(20),
        container,
        metadata=PRIVATE,
        stream_metadata={"handler_name": "Core Media Video", "language": "nld"},
        rotation=-90,
        audio=True,
    )
    assert location_box in data and b"Sanne op schoolreis" in data  # the test is meaningful
    assert inspect_video(data, container.content_type).has_location

    clean = strip_video_metadata(data)
    for marker in (location_box, b"Sanne", b"iPhone", b"Core Media", b"Groep 5a", b"Lavf"):
        assert marker not in clean, marker
    with av.open(io.BytesIO(clean)) as reopened:
        assert set(reopened.metadata) <= {"major_brand", "minor_version", "compatible_brands"}
        for stream in reopened.streams:
            assert set(stream.metadata) <= {"language", "handler_name", "vendor_id"}
            assert stream.metadata.get("language", "und") == "und"
        assert len(reopened.streams.audio) == 1
        frames = list(reopened.decode(video=0))
    assert len(frames) == 20
    assert frames[0].rotation == -90  # still plays upright
    info = inspect_video(clean, container.content_type)
    assert (info.has_location, info.width, info.height) == (False, 320, 240)
    assert clean[4:8] == b"ftyp" and clean.index(b"moov") < clean.index(b"mdat")  # faststart


def test_stripping_a_webm_keeps_it_playable():
    data = encode(numbered_frames(10), VideoContainer.WEBM, metadata={"title": "Groep 5a"})
    assert b"Groep 5a" in data
    clean = strip_video_metadata(data)
    assert b"Groep 5a" not in clean
    assert inspect_video(clean, "video/webm").duration_s == pytest.approx(1.0, abs=0.05)


def test_stripping_refuses_what_the_intake_refuses(clip):
    with pytest.raises(VideoUnreadable):
        strip_video_metadata(cut(clip, 0.5))


# --- the API ------------------------------------------------------------------------


@pytest.fixture
def api(configure: Configure, sqlite_url: str) -> Iterator[tuple[TestClient, dict[str, str]]]:
    configure(database_url=sqlite_url, rate_limit="1000/minute")
    headers = {"Authorization": f"Bearer {new_school(sqlite_url, 'school-a')}"}
    with TestClient(create_app()) as client:
        assert client.post("/v1/roster", json=ROSTER, headers=headers).status_code == 200
        yield client, headers


def video_post(data: bytes, content_type: str = "video/mp4", post_id: str = "p1") -> dict[str, Any]:
    encoded = base64.b64encode(data).decode()
    return post_body(
        post_id, attachments=[{"id": "v1", "content_type": content_type, "data": encoded}]
    )


@pytest.mark.parametrize(
    ("make", "content_type", "status", "code"),
    [
        (lambda clip: cut(clip, 0.6), "video/mp4", 422, "video_unreadable"),
        (lambda clip: long_mp4(), "video/mp4", 413, "video_too_long"),
        (lambda clip: huge_resolution_mp4(), "video/mp4", 413, "video_too_large"),
        (lambda clip: clip, "video/x-msvideo", 415, "unsupported_media_type"),
    ],
    ids=["truncated", "too long", "huge resolution", "avi"],
)
def test_api_refuses_bad_videos_with_their_code(api, clip, make, content_type, status, code):
    client, headers = api
    r = client.post("/v1/posts", json=video_post(make(clip), content_type), headers=headers)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert r.json()["error"]["details"]["message_nl"]
    assert client.get("/v1/posts/p1", headers=headers).status_code == 404  # nothing stored


def test_api_accepts_a_video(api, clip):
    client, headers = api
    r = client.post("/v1/posts", json=video_post(clip), headers=headers)
    assert r.status_code == 202, r.text


def test_videos_have_their_own_size_limit(configure: Configure, sqlite_url: str, clip):
    """A video may be larger than a photo may (MAX_VIDEO_BYTES against MAX_ATTACHMENT_BYTES)."""
    photo_cap = len(clip) // 2
    configure(
        database_url=sqlite_url, max_attachment_bytes=str(photo_cap), max_video_bytes=str(len(clip))
    )
    headers = {"Authorization": f"Bearer {new_school(sqlite_url, 'school-a')}"}
    with TestClient(create_app()) as client:
        client.post("/v1/roster", json=ROSTER, headers=headers)
        assert client.post("/v1/posts", json=video_post(clip), headers=headers).status_code == 202
        photo = attachment("a1", jpeg_bytes((400, 300)))
        big = photo | {"data": base64.b64encode(b"\xff" * (photo_cap + 1)).decode()}
        r = client.post("/v1/posts", json=post_body("p2", attachments=[big]), headers=headers)
        assert r.status_code == 413
        assert r.json()["error"]["details"]["limit"] == photo_cap
        too_big = video_post(clip + b"\x00" * 10, post_id="p3")
        r = client.post("/v1/posts", json=too_big, headers=headers)
        assert (r.status_code, r.json()["error"]["details"]["limit"]) == (413, len(clip))


# --- helper: a bomb in an H.264 header ------------------------------------------------


def patch_sps(nal: bytes, width_mbs: int, height_mbs: int) -> bytes:
    """An H.264 sequence parameter set NAL unit with another picture size, same length.

    Reads the fields before the size (Exp-Golomb codes, H.264 section 7.3.2.1.1), writes
    the new size in macroblocks, keeps frame_mbs_only and direct_8x8_inference, drops
    frame cropping and the VUI (which frees the bits the larger numbers need), and pads
    with zero bytes to the original length. Handles x264's High-profile SPS.
    """
    bits = "".join(f"{byte:08b}" for byte in nal[1:].replace(b"\x00\x00\x03", b"\x00\x00"))
    position = 0

    def read(count: int) -> int:
        nonlocal position
        value = int(bits[position : position + count], 2)
        position += count
        return value

    def read_ue() -> int:
        nonlocal position
        zeros = bits.index("1", position) - position
        position += zeros
        return read(zeros + 1) - 1

    def ue(value: int) -> str:
        code = f"{value + 1:b}"
        return "0" * (len(code) - 1) + code

    profile = read(8)
    read(16)  # constraint flags, level
    read_ue()  # seq_parameter_set_id
    if profile in (100, 110, 122, 244):
        assert read_ue() == 1  # chroma_format_idc 4:2:0
        read_ue(), read_ue(), read(1)  # bit depths, qpprime_y_zero_transform_bypass
        assert read(1) == 0  # no scaling matrices
    read_ue()  # log2_max_frame_num_minus4
    if read_ue() == 0:  # pic_order_cnt_type
        read_ue()  # log2_max_pic_order_cnt_lsb_minus4
    read_ue(), read(1)  # max_num_ref_frames, gaps_in_frame_num_allowed
    head = bits[:position]
    read_ue(), read_ue()  # the old size
    assert read(1) == 1  # frame_mbs_only
    direct = bits[position]
    out = head + ue(width_mbs - 1) + ue(height_mbs - 1) + "1" + direct + "0" + "0" + "1"
    out += "0" * (-len(out) % 8)
    rbsp = bytes(int(out[i : i + 8], 2) for i in range(0, len(out), 8))
    escaped = bytearray()
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            escaped.append(3)
            zeros = 0
        escaped.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    patched = nal[:1] + bytes(escaped)
    assert len(patched) <= len(nal)
    return patched + bytes(len(nal) - len(patched))
