"""Builders for the photo gate's tests: shared face photos, edited copies, decided posts."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageFilter

from models.images.bench_faces import shared_faces_dir
from moderation.domain import Action
from moderation.errors import InvalidInput
from moderation.photo_intake import image_hash_strings, reference_embedding
from moderation.policy import AttachmentDecision
from moderation.policy import Decision as PolicyDecision
from moderation.schemas import PostCreate
from moderation.storage.db import session_scope
from moderation.storage.posts import IntakeLimits, create_post, record_check, store_auto_decision
from moderation.storage.references import enrol_reference
from tests.helpers import attachment, jpeg_bytes, post_body

LIMITS = IntakeLimits(max_text_chars=10_000, max_attachments=5, max_attachment_bytes=5_000_000)


def photo_path(relative: str) -> Path:
    return shared_faces_dir() / relative


def photo_bytes(relative: str) -> bytes:
    return photo_path(relative).read_bytes()


def photo(relative: str) -> Image.Image:
    with Image.open(photo_path(relative)) as image:
        return image.convert("RGB")


def encode(image: Image.Image, fmt: str = "JPEG", **options: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return buf.getvalue()


def cropped(image: Image.Image, left: float = 0, top: float = 0, right: float = 0) -> Image.Image:
    w, h = image.size
    return image.crop((round(w * left), round(h * top), w - round(w * right), h))


def resized(image: Image.Image, factor: float) -> Image.Image:
    return image.resize((round(image.width * factor), round(image.height * factor)))


def recompressed(image: Image.Image, quality: int = 30) -> Image.Image:
    with Image.open(io.BytesIO(encode(image, quality=quality))) as again:
        return again.convert("RGB")


def blurred(image: Image.Image, radius: float) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(radius))


def two_faces() -> Image.Image:
    """Obama and Biden side by side: a reference photo with several people."""
    left, right = photo("barack_obama/obama.jpg"), photo("joe_biden/biden.jpg")
    right = right.resize((round(right.width * left.height / right.height), left.height))
    canvas = Image.new("RGB", (left.width + right.width, left.height), "white")
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width, 0))
    return canvas


def small_face() -> Image.Image:
    """Obama's portrait shrunk until the face is 20-40 px wide, on a large white page."""
    face = resized(photo("barack_obama/obama.jpg"), 0.1)
    canvas = Image.new("RGB", (800, 600), "white")
    canvas.paste(face, (300, 200))
    return canvas


def decided_post(
    url: str,
    school_id: str,
    post_id: str,
    images: list[bytes],
    *,
    action: Action = Action.RELEASE,
    hashes: bool = True,
) -> int:
    """A post with photos, its media check (with the hashes the worker stores) and its
    automatic decision, as the pipeline leaves it; returns the post's pk."""
    body = post_body(
        post_id,
        "Foto's van de schoolreis",
        attachments=[attachment(f"foto-{i}", data) for i, data in enumerate(images)],
    )
    per_attachment = {}
    for i, data in enumerate(images):
        with Image.open(io.BytesIO(data)) as image:
            try:
                stored = image_hash_strings(image.convert("RGB")) if hashes else []
            except InvalidInput:  # a flat image: the worker stores no hashes for it
                stored = []
        per_attachment[f"foto-{i}"] = {"hashes": stored}
    with session_scope(url) as session:
        post = create_post(
            session=session, school_id=school_id, post_in=PostCreate(**body), limits=LIMITS
        ).post
        for att in post.attachments:
            att.released_data = att.data  # what the worker's sanitised copy stands in for
        record_check(
            session=session,
            post_pk=post.pk,
            check_name="text",
            scorer="test",
            ok=True,
            result={"score": {"scorer": "test", "categories": {}}, "privacy": [], "notices": []},
        )
        record_check(
            session=session,
            post_pk=post.pk,
            check_name="media",
            scorer="test",
            ok=True,
            result={"findings": [], "attachments": per_attachment},
        )
        decision = PolicyDecision(
            action=action,
            attachments=tuple(AttachmentDecision(f"foto-{i}", action) for i in range(len(images))),
        )
        store_auto_decision(session=session, post=post, decision=decision)
        return post.pk


def plain_jpeg() -> bytes:
    return jpeg_bytes((320, 240), "orange")


def class_photo() -> Image.Image:
    """Obama (another photo than his reference) and Biden side by side."""
    left, right = photo("barack_obama/obama2.jpg"), photo("joe_biden/biden.jpg")
    right = right.resize((round(right.width * left.height / right.height), left.height))
    canvas = Image.new("RGB", (left.width + right.width, left.height), "white")
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width, 0))
    return canvas


def enrol(url: str, school: str, student_id: str, relative: str) -> None:
    embedding = reference_embedding(photo(relative))
    with session_scope(url) as session:
        enrol_reference(
            session=session,
            school_id=school,
            student_id=student_id,
            embedding=embedding,
            model="test",
            enrolled_by="juf",
            source="api",
        )
