"""Videos: a safe intake at the API, frames for the checks, and a copy without metadata.

Teachers post short videos of school life (a song, a class trip); the same consent and
nudity checks as for photos apply to them (POLICY.md rules 1-3), and a released video,
like a photo, carries no location or device metadata (rule 10). FFmpeg's libraries, as
PyAV ships them, do the reading; this module bounds what they may do with an upload:

* :func:`inspect_video` runs in the API process before anything is stored: the declared
  type against the bytes, the container structure (a truncated upload is a 4xx), the
  stream count, codec, resolution and duration against :class:`VideoLimits`, every
  packet demuxed (no decoding) and the first frame decoded.
* :func:`sample_frames` runs in the workers: frames spread over the video, upright and at
  full resolution (small faces in a class video must stay detectable).
* :func:`strip_video_metadata` runs in the workers: the video and first audio stream
  remuxed (not re-encoded) into a new container without any container or stream
  metadata. Only its output is ever published.

Allowed: ``video/mp4`` and ``video/quicktime`` (ISO base media files, one family: phones
label the same files either way) and ``video/webm``; video codecs H.264, HEVC, VP8, VP9,
AV1 and MPEG-4 part 2.

Errors are :class:`moderation.media.MediaError` subclasses, whatever FFmpeg raises, so the
API maps them with the image errors::

    MediaError                  code                     suggested HTTP status
     ├── UnsupportedMediaType   unsupported_media_type   415  (moderation.media)
     ├── VideoTooLarge          video_too_large          413
     ├── VideoTooLong           video_too_long           413
     └── VideoUnreadable        video_unreadable         422

* ``UnsupportedMediaType``: not an allowed content type; empty data; bytes that are not
  the declared container family; no video stream, several, or a codec not allowed.
* ``VideoTooLarge``: more bytes, pixels per frame, pixels along a side, streams or packets
  than the limits allow.
* ``VideoTooLong``: a declared or demuxed duration over ``max_duration_s``.
* ``VideoUnreadable``: truncated (an ISO box or the WebM segment runs past the end of
  the data), corrupt, undecodable, or more work than ``max_work_s`` allows.

How the limits hold. The container format is chosen from the bytes' signature and FFmpeg
opens the data as that one format only (no probing, so no playlist or image demuxer ever
sees an upload), from memory (no file or network access). Decoders get FFmpeg's
``max_pixels`` option, so a bitstream that declares a huge picture fails instead of
allocating it; measured: a 25 KB MP4 whose H.264 header declares 16000x16000 made the
probe in ``av.open`` take 1.6 s and 720 MB, and with ``max_pixels`` 0.1 s and about
80 MB, after which the size check refuses it. Demuxing stops at ``max_packets`` and at
``max_duration_s`` of timestamps, and every loop checks a wall-clock budget.

What stays. :func:`strip_video_metadata` keeps the codec bitstreams as they are, so
metadata a camera writes *inside* the bitstream (H.264 SEI user data, which some dash
cams use for GPS) survives; phones write their location in the container, which is
dropped. The display rotation stays, so a portrait video still plays upright. WebM files
written with an unknown segment size (browser recordings) cannot be checked for
truncation at a cluster boundary; they are read as far as they go.
"""

from __future__ import annotations

import io
import math
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import ClassVar, Final

import av
from av.container import InputContainer
from av.video.frame import VideoFrame
from av.video.stream import VideoStream
from PIL import Image

from moderation.config import Settings, get_settings
from moderation.media import ImageInfo, ImageLimits, MediaError, UnsupportedMediaType, inspect_image

__all__ = [
    "DEFAULT_VIDEO_LIMITS",
    "VIDEO_CODECS",
    "VideoContainer",
    "VideoInfo",
    "VideoLimits",
    "VideoTooLarge",
    "VideoTooLong",
    "VideoUnreadable",
    "inspect_attachment",
    "inspect_video",
    "is_video_type",
    "sample_frames",
    "strip_video_metadata",
]


# --------------------------------------------------------------------------- errors


class VideoTooLarge(MediaError):
    """Too many bytes, pixels, streams or packets."""

    code: ClassVar[str] = "video_too_large"


class VideoTooLong(MediaError):
    """A duration over the limit."""

    code: ClassVar[str] = "video_too_long"


class VideoUnreadable(MediaError):
    """Truncated, corrupt, undecodable, or too much work to read."""

    code: ClassVar[str] = "video_unreadable"


# --------------------------------------------------------------------------- containers


class VideoContainer(StrEnum):
    """The allowed containers; the values are the content types' subtypes."""

    MP4 = "mp4"
    QUICKTIME = "quicktime"
    WEBM = "webm"

    @property
    def content_type(self) -> str:
        return f"video/{self.value}"

    @property
    def ffmpeg_format(self) -> str:
        """FFmpeg's name of the (de)muxer: mp4 and mov read alike, and write as themselves."""
        return {"mp4": "mp4", "quicktime": "mov", "webm": "webm"}[self.value]

    @property
    def is_iso(self) -> bool:
        return self is not VideoContainer.WEBM


_BY_CONTENT_TYPE = {c.content_type: c for c in VideoContainer}
VIDEO_CODECS: Final = frozenset({"h264", "hevc", "vp8", "vp9", "av1", "mpeg4"})
_ALLOWED_NL = "MP4, MOV of WebM"
_EBML_MAGIC: Final = b"\x1a\x45\xdf\xa3"
_SEGMENT_ID: Final = 0x18538067
_DOCTYPE_ID: Final = 0x4282
# Top-level atoms an old QuickTime file may start with instead of ftyp.
_QUICKTIME_FIRST: Final = frozenset({b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"})
_MAX_BOXES: Final = 10_000  # top-level ISO boxes: real files have a handful
_PROBE_PACKETS: Final = 64  # video packets the first frame may take to come out
SEEK_GAP_S: Final = 0.5  # seconds: a sample further ahead than this seeks, nearer decodes on
# What reading a hostile file may raise besides FFmpegError (PyAV's own checks, metadata).
_AV_ERRORS: Final = (
    av.FFmpegError,
    OSError,
    ValueError,
    EOFError,
    IndexError,
    OverflowError,
    ZeroDivisionError,
)


@dataclass(frozen=True, slots=True)
class VideoLimits:
    """Per-call bounds on a video; the defaults suit a few minutes of phone video."""

    MAX_BYTES: ClassVar[int] = 40 * 1024 * 1024  # bytes (40 MiB): base64 fits a 64 MiB body
    MAX_DURATION_S: ClassVar[float] = 180.0  # seconds: three minutes
    MAX_SIDE: ClassVar[int] = 4096  # pixels along either side: 4K
    MAX_PIXELS: ClassVar[int] = 4096 * 2304  # pixels per frame (9.4 megapixels)
    MAX_STREAMS: ClassVar[int] = 8  # phones add timecode and metadata tracks to video + audio
    MAX_PACKETS: ClassVar[int] = 100_000  # all streams: 3 min of 120 fps video, audio, data
    MAX_WORK_S: ClassVar[float] = 5.0  # seconds of wall clock for inspecting or remuxing

    max_bytes: int = MAX_BYTES
    max_duration_s: float = MAX_DURATION_S
    max_side: int = MAX_SIDE
    max_pixels: int = MAX_PIXELS
    max_streams: int = MAX_STREAMS
    max_packets: int = MAX_PACKETS
    max_work_s: float = MAX_WORK_S

    def __post_init__(self) -> None:
        for name in (
            "max_bytes",
            "max_duration_s",
            "max_side",
            "max_pixels",
            "max_streams",
            "max_packets",
            "max_work_s",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"VideoLimits.{name} must be positive")

    @classmethod
    def from_settings(cls, settings: Settings) -> VideoLimits:
        return cls(
            max_bytes=settings.max_video_bytes,
            max_duration_s=settings.max_video_duration_s,
            max_side=settings.max_video_side,
            max_pixels=settings.max_video_pixels,
            max_streams=settings.max_video_streams,
        )


DEFAULT_VIDEO_LIMITS = VideoLimits()


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What :func:`inspect_video` learnt: enough to accept and audit the upload."""

    container: VideoContainer
    content_type: str  # the declared type, normalised (video/mp4 and video/quicktime kept)
    width: int  # pixels, as coded (the display rotation not applied)
    height: int  # pixels, as coded
    duration_s: float  # seconds
    video_codec: str  # FFmpeg's name: h264, hevc, vp8, vp9, av1, mpeg4
    audio_codec: str | None  # of the first audio stream, if any
    streams: int  # all streams: video, audio, timecode, metadata tracks
    has_location: bool  # the container metadata names a location (stripped on release)
    byte_size: int  # bytes of the upload


# --------------------------------------------------------------------------- public API


def is_video_type(content_type: str) -> bool:
    """Whether a declared content type is a video one (allowed or not)."""
    return _normalise(content_type).startswith("video/")


def inspect_attachment(
    data: bytes,
    content_type: str,
    image_limits: ImageLimits,
    video_limits: VideoLimits | None = None,
) -> ImageInfo | VideoInfo:
    """The API's intake of one attachment: a video type goes to :func:`inspect_video`
    (with the configured limits unless given), anything else to ``inspect_image``."""
    if not is_video_type(content_type):
        return inspect_image(data, content_type, image_limits)
    if video_limits is None:
        video_limits = VideoLimits.from_settings(get_settings())
    return inspect_video(data, content_type, video_limits)


def inspect_video(
    data: bytes, content_type: str, limits: VideoLimits = DEFAULT_VIDEO_LIMITS
) -> VideoInfo:
    """Check a video upload in the API process, before it is stored.

    Demuxes every packet (cheap: no decoding) and decodes only the first frame. Measured
    on one core of the shared 2-core VM: 46 ms for a 12 MB, 20 s, 1080p30 H.264 clip;
    5-25 ms for the small test clips.
    """
    declared = _normalise(content_type)
    container = _BY_CONTENT_TYPE.get(declared)
    if container is None:
        raise UnsupportedMediaType(
            f"content type {content_type!r} is not an allowed video type",
            f"Dit soort video wordt niet geaccepteerd. Stuur een video als {_ALLOWED_NL}.",
        )
    _check_bytes(data, limits)
    found = _identify(data)
    if found.is_iso != container.is_iso:
        raise UnsupportedMediaType(
            f"declared as {declared} but the bytes are {found.content_type}",
            "Het bestand is niet wat het zegt te zijn: het type klopt niet met de inhoud. "
            "Sla de video opnieuw op en stuur hem nog eens.",
        )
    deadline = time.monotonic() + limits.max_work_s
    with _opened(data, found, limits) as source:
        video = _video_stream(source, limits)
        declared_s = _declared_duration(source, video)
        if declared_s is not None:
            _check_duration(declared_s, limits)
        audio = source.streams.audio
        audio_codec = audio[0].codec_context.codec.canonical_name if audio else None
        has_location = any("location" in key.lower() for key in source.metadata)
        streams = len(source.streams)
        video.codec_context.thread_count = 1  # the API process: one frame, one thread
        demuxed_s = _demux_all(source, video, limits, deadline)
        return VideoInfo(
            container=container,
            content_type=declared,
            width=video.codec_context.width,
            height=video.codec_context.height,
            duration_s=round(declared_s if declared_s is not None else demuxed_s, 3),
            video_codec=video.codec_context.codec.canonical_name,
            audio_codec=audio_codec,
            streams=streams,
            has_location=has_location,
            byte_size=len(data),
        )


def sample_frames(
    data: bytes,
    *,
    every_s: float = 1.0,
    max_frames: int = 30,
    limits: VideoLimits = DEFAULT_VIDEO_LIMITS,
    max_decode_s: float = 60.0,
) -> list[Image.Image]:
    """Frames for the photo checks: one every ``every_s`` seconds from the start, RGB,
    upright (the display rotation applied) and at the video's full resolution.

    A video longer than ``every_s * max_frames`` is sampled evenly over its whole length
    instead (``max_frames`` frames), so its end is checked too. A sample more than
    :data:`SEEK_GAP_S` ahead of the last decoded frame seeks to the keyframe before it;
    nearer ones decode on. Decoding more than ``limits.max_packets`` frames or for longer
    than ``max_decode_s`` raises :class:`VideoUnreadable`: the check fails closed rather
    than pass a video it did not see.

    Measured on a 10 s 1080p30 H.264 clip with a keyframe a second: 10 frames, a second
    apart, in 0.5 s, 40 % of it the conversion to RGB (a full decode: 2.4 ms a frame).
    """
    if every_s <= 0 or max_frames < 1:
        raise ValueError("every_s must be positive and max_frames at least 1")
    _check_bytes(data, limits)
    found = _identify(data)
    deadline = time.monotonic() + max_decode_s
    with _opened(data, found, limits) as source:
        video = _video_stream(source, limits)
        duration = _declared_duration(source, video)
        step = every_s if duration is None else max(every_s, duration / max_frames)
        count = (
            max_frames if duration is None else max(1, min(max_frames, math.ceil(duration / step)))
        )
        video.codec_context.thread_type = "AUTO"
        targets = [k * step for k in range(count)]
        return _sample(source, video, targets, limits.max_packets, deadline)


def strip_video_metadata(data: bytes, limits: VideoLimits = DEFAULT_VIDEO_LIMITS) -> bytes:
    """The video and its first audio stream remuxed into a clean container of the same
    kind: no container or stream metadata (location, creation time, device, names),
    no chapters, attachments, subtitle, timecode or data tracks. MP4 and MOV are written
    with the index first (``faststart``), so the released copy plays while it loads.
    """
    _check_bytes(data, limits)
    found = _identify(data)
    deadline = time.monotonic() + limits.max_work_s
    options = {"fflags": "+bitexact"}  # no encoder name either
    if found.is_iso:
        options["movflags"] = "+faststart"
    with _opened(data, found, limits) as source, tempfile.TemporaryDirectory() as folder:
        video = _video_stream(source, limits)
        kept = [video, *source.streams.audio[:1]]
        path = Path(folder) / f"released.{found.ffmpeg_format}"
        try:
            with av.open(
                str(path), "w", format=found.ffmpeg_format, container_options=options
            ) as out:
                streams = {s.index: out.add_stream_from_template(s) for s in kept}
                for stream in streams.values():
                    stream.metadata.clear()
                for count, packet in enumerate(source.demux(kept)):
                    _within_budget(count, limits, deadline)
                    if packet.dts is None:  # the demuxer's flush packet
                        continue
                    packet.stream = streams[packet.stream.index]
                    out.mux(packet)
        except _AV_ERRORS as exc:
            raise _unreadable(f"remuxing failed: {exc}") from exc
        return path.read_bytes()


# --------------------------------------------------------------------------- checks


def _normalise(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _check_bytes(data: bytes, limits: VideoLimits) -> None:
    if not data:
        raise UnsupportedMediaType(
            "the video is empty", "Het bestand is leeg. Stuur de video opnieuw."
        )
    if len(data) > limits.max_bytes:
        raise VideoTooLarge(
            f"{len(data)} bytes exceeds the limit of {limits.max_bytes}",
            f"De video is te groot ({len(data) / 1_048_576:.0f} MB); het maximum is "
            f"{limits.max_bytes / 1_048_576:.0f} MB. Maak hem korter of kleiner.",
        )


def _identify(data: bytes) -> VideoContainer:
    """The container family by signature (MP4 or QuickTime by the ftyp brand, or WebM),
    after checking that its structure fits the data (not truncated)."""
    if data[:4] == _EBML_MAGIC:
        _check_webm(data)
        return VideoContainer.WEBM
    if data[4:8] == b"ftyp" or data[4:8] in _QUICKTIME_FIRST:
        _check_iso_boxes(data)
        brand = data[8:12] if data[4:8] == b"ftyp" else b"qt  "
        return VideoContainer.QUICKTIME if brand == b"qt  " else VideoContainer.MP4
    raise UnsupportedMediaType(
        "the bytes are not an MP4, QuickTime or WebM video",
        f"Dit bestand is geen video die we kunnen lezen. Stuur een video als {_ALLOWED_NL}.",
    )


def _check_iso_boxes(data: bytes) -> None:
    """Walk the top-level ISO boxes: each must fit in the data, and a moov must be there."""
    position = boxes = 0
    kinds = set()
    while position < len(data):
        if position + 8 > len(data):
            raise _truncated()
        size = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        header = 8
        if size == 1:  # a 64-bit size follows the type
            if position + 16 > len(data):
                raise _truncated()
            size = int.from_bytes(data[position + 8 : position + 16], "big")
            header = 16
        elif size == 0:  # the box runs to the end of the file
            size = len(data) - position
        if size < header:
            raise _unreadable(f"ISO box {kind!r} at byte {position} has size {size}")
        if position + size > len(data):
            raise _truncated()
        kinds.add(kind)
        position += size
        boxes += 1
        if boxes > _MAX_BOXES:
            raise _unreadable(f"more than {_MAX_BOXES} top-level ISO boxes")
    if b"moov" not in kinds:
        raise _unreadable("no moov box: the video index is missing")


def _read_vint(data: bytes, position: int, *, keep_marker: bool) -> tuple[int, int, bool]:
    """An EBML variable-length integer: (value, length in bytes, all value bits set)."""
    if position >= len(data) or data[position] == 0:
        raise _truncated() if position >= len(data) else _unreadable("invalid EBML number")
    length = 9 - data[position].bit_length()
    if position + length > len(data):
        raise _truncated()
    value = int.from_bytes(data[position : position + length], "big")
    unmarked = value & ((1 << (7 * length)) - 1)
    return (value if keep_marker else unmarked), length, unmarked == (1 << (7 * length)) - 1


def _check_webm(data: bytes) -> None:
    """The EBML header must name DocType webm, and a Segment of known size must fit."""
    _, id_len, _ = _read_vint(data, 0, keep_marker=True)
    header_size, size_len, _ = _read_vint(data, id_len, keep_marker=False)
    start = id_len + size_len
    end = start + header_size
    if end > len(data):
        raise _truncated()
    doctype = b""
    position = start
    while position < end:
        element, length, _ = _read_vint(data, position, keep_marker=True)
        size, size_length, _ = _read_vint(data, position + length, keep_marker=False)
        body = position + length + size_length
        if element == _DOCTYPE_ID:
            doctype = data[body : body + size].rstrip(b"\x00")
        position = body + size
    if doctype != b"webm":
        raise UnsupportedMediaType(
            f"EBML document type {doctype!r}, not webm",
            f"Dit bestand is geen video die we kunnen lezen. Stuur een video als {_ALLOWED_NL}.",
        )
    element, length, _ = _read_vint(data, end, keep_marker=True)
    if element != _SEGMENT_ID:
        raise _unreadable("no Segment after the EBML header")
    size, size_length, unknown = _read_vint(data, end + length, keep_marker=False)
    if not unknown and end + length + size_length + size > len(data):
        raise _truncated()


@contextmanager
def _opened(
    data: bytes, container: VideoContainer, limits: VideoLimits
) -> Iterator[InputContainer]:
    """The data opened by FFmpeg as exactly this container format, errors wrapped."""
    decoder_pixels = str(limits.max_pixels * 5 // 4)  # a little over: coded sizes are padded
    try:
        source = av.open(
            io.BytesIO(data),
            "r",
            format=container.ffmpeg_format,
            options={"max_pixels": decoder_pixels},  # the probe decodes: no bombs there
            metadata_errors="replace",
        )
    except _AV_ERRORS as exc:
        raise _unreadable(f"FFmpeg cannot open it: {exc}") from exc
    try:
        with source:
            yield source
    except _AV_ERRORS as exc:
        raise _unreadable(f"FFmpeg failed reading it: {exc}") from exc


def _video_stream(source: InputContainer, limits: VideoLimits) -> VideoStream:
    """The one video stream, checked against the limits; its decoder bounded."""
    if len(source.streams) > limits.max_streams:
        raise VideoTooLarge(
            f"{len(source.streams)} streams exceeds the limit of {limits.max_streams}",
            "De video bevat te veel sporen. Sla hem opnieuw op en stuur hem nog eens.",
        )
    videos = source.streams.video
    if len(videos) != 1:
        raise UnsupportedMediaType(
            f"{len(videos)} video streams; exactly one is allowed",
            f"Dit bestand bevat geen gewone video. Stuur een video als {_ALLOWED_NL}.",
        )
    video = videos[0]
    codec = video.codec_context.codec.canonical_name
    if codec not in VIDEO_CODECS:
        raise UnsupportedMediaType(
            f"video codec {codec!r} is not allowed",
            "Deze video is op een manier opgeslagen die we niet kunnen lezen. Sla hem op als "
            "MP4 (H.264) en stuur hem opnieuw.",
        )
    width, height = video.codec_context.width, video.codec_context.height
    if width < 1 or height < 1:
        raise _unreadable(f"video stream of {width}x{height} pixels")
    if width > limits.max_side or height > limits.max_side or width * height > limits.max_pixels:
        raise VideoTooLarge(
            f"{width}x{height} pixels exceeds {limits.max_pixels} pixels "
            f"or {limits.max_side} pixels per side",
            f"De video heeft een te hoge resolutie ({width}x{height}). Het maximum is "
            f"{limits.max_side} pixels per zijde. Sla hem kleiner op en stuur hem opnieuw.",
        )
    video.codec_context.options = {"max_pixels": str(limits.max_pixels * 5 // 4)}
    return video


def _declared_duration(source: InputContainer, video: VideoStream) -> float | None:
    """Seconds, from the container or else the video stream; None when neither says."""
    if source.duration is not None and source.duration > 0:
        return float(source.duration) / av.time_base
    if video.duration is not None and video.duration > 0 and video.time_base is not None:
        return float(video.duration * video.time_base)
    return None


def _check_duration(seconds: float, limits: VideoLimits) -> None:
    if seconds > limits.max_duration_s:
        raise VideoTooLong(
            f"{seconds:.1f} s exceeds the limit of {limits.max_duration_s:.0f} s",
            f"De video is te lang ({seconds / 60:.1f} minuten); het maximum is "
            f"{limits.max_duration_s / 60:.1f} minuten. Maak hem korter.",
        )


def _within_budget(count: int, limits: VideoLimits, deadline: float) -> None:
    if count >= limits.max_packets:
        raise VideoTooLarge(
            f"more than {limits.max_packets} packets",
            "De video is te groot om te controleren. Maak hem korter.",
        )
    if time.monotonic() > deadline:
        raise _unreadable("reading the video took too long")


def _demux_all(
    source: InputContainer, video: VideoStream, limits: VideoLimits, deadline: float
) -> float:
    """Read every packet without decoding, and decode the first video frame.

    Returns the end of the last packet in seconds. Corrupt (cut-off) packets, a demuxer
    error, timestamps past the duration limit or no decodable frame raise.
    """
    end = 0.0
    probed = 0
    decoded = False
    for count, packet in enumerate(source.demux()):
        _within_budget(count, limits, deadline)
        if packet.dts is None and packet.size == 0:  # the demuxer's flush packet
            continue
        if packet.is_corrupt:
            raise _truncated()
        stamp = packet.pts if packet.pts is not None else packet.dts
        if stamp is not None and packet.time_base is not None:
            end = max(end, float((stamp + max(packet.duration or 0, 0)) * packet.time_base))
            _check_duration(end, limits)
        if not decoded and packet.stream.index == video.index:
            probed += 1
            decoded = bool(video.decode(packet))
            if not decoded and probed >= _PROBE_PACKETS:
                raise _unreadable(f"no frame from the first {_PROBE_PACKETS} video packets")
    if not decoded and not video.decode(None):  # drain: a short video's frames are buffered
        raise _unreadable("no decodable video frame")
    return end


def _sample(
    source: InputContainer,
    video: VideoStream,
    targets: list[float],
    max_decoded: int,
    deadline: float,
) -> list[Image.Image]:
    """The first frame at or after each target time (seconds from the stream start).

    Seeks while seeking pays: if a seek lands at or before a frame already decoded (a
    video with few keyframes, such as a screen recording), it decodes straight on from
    then, so the work stays under two decodes of the video.
    """
    base = video.time_base
    if base is None:
        raise _unreadable("the video stream has no time base")
    start = float(video.start_time * base) if video.start_time is not None else 0.0
    images: list[Image.Image] = []
    frames: Iterator[VideoFrame] | None = None
    last = -math.inf  # seconds: the latest frame decoded
    may_seek = True
    decoded = 0
    index = 0
    while index < len(targets):
        target = targets[index]
        reached = last
        if frames is None or (may_seek and target - last > SEEK_GAP_S):
            if frames is not None or target > 0:
                source.seek(int((start + target) / base), stream=video, backward=True)
            frames = source.decode(video)
        taken = False
        for frame in frames:
            decoded += 1
            if decoded > max_decoded or time.monotonic() > deadline:
                raise _unreadable(f"sampling frames took too long ({decoded} frames decoded)")
            if frame.time is None:
                continue
            if reached > -math.inf and frame.time - start <= reached:
                may_seek = False  # the seek went back to where we were: decode on from now
            reached = -math.inf
            last = frame.time - start
            if last + 1e-3 >= target:
                images.append(_upright(frame))
                taken = True
                while index < len(targets) and targets[index] <= last + 1e-3:
                    index += 1
                break
        if not taken:
            break  # the end of the video
    if not images:
        raise _unreadable("no decodable video frame")
    return images


def _upright(frame: VideoFrame) -> Image.Image:
    """The frame as RGB, turned as the player would show it (counter-clockwise degrees)."""
    image: Image.Image = frame.to_image()  # type: ignore[no-untyped-call]  # untyped in PyAV
    turn = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180}
    turn |= {-180: Image.Transpose.ROTATE_180, -90: Image.Transpose.ROTATE_270}
    rotation = round(frame.rotation / 90) * 90 if frame.rotation else 0
    return image.transpose(turn[rotation]) if rotation in turn else image


def _truncated() -> VideoUnreadable:
    return VideoUnreadable(
        "truncated video",
        "De video kan niet worden gelezen; het bestand is niet volledig verstuurd. "
        "Probeer het opnieuw.",
    )


def _unreadable(reason: str) -> VideoUnreadable:
    return VideoUnreadable(
        reason,
        "De video kan niet worden gelezen; het bestand is beschadigd of wordt niet "
        "ondersteund. Sla hem opnieuw op en probeer het nog eens.",
    )
