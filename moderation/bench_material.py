"""What the end-to-end benchmark sends: a realistic mix of posts, built once at start-up.

Why a module of its own: the load generator must spend its time sending, not building.
Every post body is assembled from pre-encoded JSON fragments (the photos' base64 is
encoded once), so a 1 MB photo post costs the generator a byte concatenation.

- **Texts** are the Dutch posts of our held-out test split (``models/text/data``), alone
  or two to four joined, as parents write: a line, a paragraph, now and then a long
  message (20 to ~1,000 characters). The split holds insults and threats too, so some
  posts are held or rejected, as in life.
- **Photos** are phone-sized JPEGs (1600x1200, quality 85, with a little sensor noise so
  they compress like real photos, 0.3 to 0.6 MB) made from the shared face photos
  (``shared/data/faces``, beside the repository) and scikit-image's sample images. Where
  neither is there, a generated scene stands in, so the benchmark always runs.
- **The mix** (``realistic``): 70% text only, 25% one photo, 5% three to five photos.
  ``text``: text only, the issue's throughput target.
"""

from __future__ import annotations

import base64
import io
import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from PIL import Image

Mix = Literal["realistic", "text"]
Kind = Literal["text", "photo", "photos"]
MIXES: tuple[Mix, ...] = ("realistic", "text")

PHOTO_SIZE = (1600, 1200)  # pixels; what a messaging app sends after its own downscale
PHOTO_QUALITY = 85
NOISE_SIGMA = 6.0  # grey levels of Gaussian noise, like a phone sensor's
REPO = Path(__file__).resolve().parents[1]
TEST_TEXTS = REPO / "models/text/data/test.jsonl"
FACES_DIR_ENV = "MODERATION_FACES_DIR"  # the same variable the face tests read
SAMPLE_IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "retina")

GROUP = "groep-5a"
ROSTER: dict[str, Any] = {
    "groups": [{"id": GROUP, "name": "Groep 5a"}],
    "students": [
        {"id": f"ll-{i}", "name": name, "group_id": GROUP}
        for i, name in enumerate(
            ("Sanne de Vries", "Mohammed El Amrani", "Daan Jansen", "Noor Bakker", "Lucas Smit"),
            start=1,
        )
    ],
    "staff": [{"id": "mw-1", "name": "Juf Anouk", "role": "teacher", "group_ids": [GROUP]}],
    "parents": [
        {"id": f"ouder-{i}", "name": f"Ouder {i}", "student_ids": [f"ll-{i}"]} for i in range(1, 6)
    ],
}


@dataclass(frozen=True)
class PostTemplate:
    """One post to send, but for its id: ``body(post_id)`` gives the request bytes."""

    kind: Kind
    photos: int
    _head: bytes  # the JSON object up to the id's value
    _tail: bytes  # everything after it

    def body(self, post_id: str) -> bytes:
        return self._head + json.dumps(post_id).encode() + self._tail


def dutch_texts(path: Path = TEST_TEXTS) -> list[str]:
    """The Dutch posts of the held-out test split."""
    texts = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row.get("lang") == "nl" and row["text"].strip():
                texts.append(row["text"].strip())
    if not texts:
        raise ValueError(f"no Dutch texts in {path}")
    return texts


def realistic_text(texts: list[str], rng: random.Random) -> str:
    """A line (60%), a short paragraph (30%) or a long message (10%)."""
    roll = rng.random()
    parts = 1 if roll < 0.6 else rng.randint(2, 3) if roll < 0.9 else rng.randint(4, 8)
    return " ".join(rng.choice(texts) for _ in range(parts))


def _faces_dir() -> Path:
    env = os.environ.get(FACES_DIR_ENV)
    return Path(env) if env else REPO.parent / "shared/data/faces"


def _source_images() -> list[Image.Image]:
    images = []
    for path in sorted(_faces_dir().glob("*/*.jpg")):
        with Image.open(path) as image:
            images.append(image.convert("RGB"))
    try:
        import skimage.data  # a development dependency: optional here

        for name in SAMPLE_IMAGES:
            try:
                images.append(Image.fromarray(getattr(skimage.data, name)()).convert("RGB"))
            except Exception:  # a sample that needs a download: skip it
                continue
    except ImportError:
        pass
    return images


def _generated_scene(seed: int) -> Image.Image:
    """A stand-in photo: colour gradients and shapes (no source images available)."""
    from PIL import ImageDraw

    rng = random.Random(seed)
    image = Image.linear_gradient("L").resize(PHOTO_SIZE).convert("RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(40):
        x, y = rng.randrange(PHOTO_SIZE[0]), rng.randrange(PHOTO_SIZE[1])
        r = rng.randrange(20, 300)
        colour = tuple(rng.randrange(256) for _ in range(3))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    return image


def _phone_jpeg(source: Image.Image, seed: int) -> bytes:
    """``source`` cropped to 4:3, scaled to ``PHOTO_SIZE`` (portrait or landscape) and
    given sensor noise, as a JPEG."""
    import numpy as np

    width, height = PHOTO_SIZE if seed % 3 else PHOTO_SIZE[::-1]
    ratio = width / height
    w, h = source.size
    crop = (w, int(w / ratio)) if w / h < ratio else (int(h * ratio), h)
    left, top = (w - crop[0]) // 2, (h - crop[1]) // 2
    image = source.crop((left, top, left + crop[0], top + crop[1]))
    image = image.resize((width, height), Image.Resampling.BICUBIC)
    pixels = np.asarray(image, dtype=np.float32)
    noise = np.random.default_rng(seed).normal(0.0, NOISE_SIGMA, pixels.shape)
    noisy = np.clip(pixels + noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noisy).save(buffer, "JPEG", quality=PHOTO_QUALITY)
    return buffer.getvalue()


def phone_photos(count: int = 8) -> list[bytes]:
    """``count`` distinct phone-sized JPEGs (at least one source image each, cycled)."""
    sources = _source_images() or [_generated_scene(i) for i in range(count)]
    return [_phone_jpeg(sources[i % len(sources)], seed=i) for i in range(count)]


class Material:
    """The texts and photos, and a deterministic stream of post templates in a mix."""

    def __init__(self, mix: Mix, *, seed: int = 7, photos: int = 8) -> None:
        if mix not in MIXES:
            raise ValueError(f"unknown mix {mix!r}; choose from {', '.join(MIXES)}")
        self.mix = mix
        self.rng = random.Random(seed)
        self.texts = dutch_texts()
        self.photos = phone_photos(photos) if mix == "realistic" else []
        self._b64 = [base64.b64encode(p).decode() for p in self.photos]

    @property
    def photo_bytes(self) -> list[int]:
        return [len(p) for p in self.photos]

    def _attachments(self, n: int) -> list[dict[str, str]]:
        count = len(self._b64)  # distinct photos where there are enough
        picks = (
            self.rng.sample(range(count), n) if n <= count else self.rng.choices(range(count), k=n)
        )
        return [
            {"id": f"foto-{i + 1}", "content_type": "image/jpeg", "data": self._b64[p]}
            for i, p in enumerate(picks)
        ]

    def template(self) -> PostTemplate:
        roll = self.rng.random()
        kind: Kind
        if self.mix == "text" or roll < 0.70:
            kind, photos = "text", 0
        elif roll < 0.95:
            kind, photos = "photo", 1
        else:
            kind, photos = "photos", self.rng.randint(3, 5)
        student = self.rng.randint(1, 5)
        if photos:  # the teacher shares photos with the group, with a line of text
            channel = {"type": "group", "id": GROUP}
            author = {"id": "mw-1", "role": "teacher"}
            text = self.rng.choice(self.texts) if self.rng.random() < 0.8 else ""
        elif self.rng.random() < 0.3:  # a parent in the kindgesprek about their child
            channel = {"type": "kindgesprek", "id": f"ll-{student}"}
            author = {"id": f"ouder-{student}", "role": "parent"}
            text = realistic_text(self.texts, self.rng)
        else:
            channel = {"type": "group", "id": GROUP}
            author = {"id": f"ouder-{student}", "role": "parent"}
            text = realistic_text(self.texts, self.rng)
        rest = {
            "channel": channel,
            "author": author,
            "text": text,
            "attachments": self._attachments(photos) if photos else [],
        }
        tail = json.dumps(rest, ensure_ascii=False, separators=(",", ":")).encode()
        return PostTemplate(kind, photos, b'{"id":', b"," + tail[1:])

    def stream(self) -> Iterator[PostTemplate]:
        while True:
            yield self.template()
