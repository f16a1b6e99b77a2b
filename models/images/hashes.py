"""Perceptual hashes of photos, and an index that finds near copies among millions.

Why this module exists: POLICY.md rule 10. The service remembers what it released and
what it removed, so that a removed photo posted again is caught, also when it comes
back resized, recompressed or lightly cropped (a screenshot, a forward, a re-upload),
and a school can block particular photos. Exact byte hashes miss all of those edits.

The hash is pHash as ``imagehash==4.3.2`` computes it: 64 bits from the low
frequencies of the DCT of a 32x32 grey thumbnail, each bit "above the median". Photos
are first box-reduced by a whole factor (``Image.reduce``) to 512-1023 pixels on the long
side, then made grey, so a 12-megapixel upload costs ~15 ms instead of ~60 ms; photos
that small already hash exactly as ``imagehash.phash`` does. Two hashes are compared by
Hamming distance (bits that differ, 0-64).

Measured on 327 photos (the 27 distinct shared face photos and scikit-image samples,
300 synthetic ones with gradients, shapes and text): pHash distance of the edited photo
to the original, median / max, and the share caught at :data:`MATCH_DISTANCE` (8):

============================ ================ =====================================
edit                         plain pHash      with the stored crop variants (below)
============================ ================ =====================================
resize to 50%                0 / 2, 100%      0 / 2, 100%
JPEG quality 30              0 / 6, 100%      0 / 6, 100%
crop 10% off one side        12 / 26, 16%     0 / 0, 100%
crop 10% off 2 adjacent      20 / 34, 1%      0 / 0, 100%
crop 10% + resize 50% + q30  14 / 30, 16%     0 / 8, 100%
crop 8% or 12% off one side  12 / 34, 25%     4 / 12, 99%
crop 5% off one side         8 / 28, 73%      6 / 14, 93% (99% at distance 10)
crop 15% off one side        20 / 36, 3%      8 / 24, 64% (82% at distance 10)
crop 5% off every side       10 / 24, 33%     10 / 18, 39%
mirror image                 32 / 38, 0%      26 / 32, 0% (not a goal)
============================ ================ =====================================

Plain pHash survives resizing and recompression but not a 10% crop (MODELS.md's 14 is
typical). Other single hashes were no better for a 10% crop (medians: dHash 16, wHash
10, aHash 8, pHash of the centre 80% 16), and imagehash.crop_resistant_hash takes
~600 ms a photo. So a stored image gets, besides its pHash, the pHashes of
:data:`CROP_VARIANTS`, the photo with 10% cut off each side and off each pair of
adjacent sides: 9 hashes an image. A repost cropped like that hashes like one of them,
and crops near 10% land close. Confirming matches with dHash would halve the false
pairs but lose 10% of the 5% crops, so it is not done.

False matches between different photos, each photo's pHash against the others' 9
stored hashes: the 27 real photos never came closer than 16 (702 ordered pairs). Among
1,000 synthetic photos, 4 of 999,000 ordered pairs came within 8 (28 within 10, 0 within
6). scikit-image's 200 tiny (25x25) grey face crops, all alike in layout, reach 3e-4 of
pairs within 8. pHash sees composition, not content: the same synthetic scene with ~5%
of its area changed (other people in front of the same wall) came within 8 in 48 of 400
pairs, and one-line texts on a white page come within 6-10 of each other. So a match is
a reason for review, not a verdict, and false candidates grow with the index: expect
about (photos in the index) x 4e-6 per query on material like the synthetic set. Keep
indexes per school and per list; ``nearest`` returns the distance (0-4: the same photo
re-encoded).

Degenerate hashes. A flat or smoothly graded image (a blank page, a clear sky, a
gradient) has almost no low-frequency structure: its bits are decided by noise and all
such images hash alike (0x8000000000000000 for white, grey, red and gradients).
:attr:`ImageHashes.quality` counts the bits whose DCT coefficient lies more than
:data:`STABLE_MARGIN` from the median: 40-64 for the photos, texts and textures
measured, 1-5 for flat images, gradients and a noisy sky. Below
:data:`QUALITY_THRESHOLD` an image is not ``matchable``: neither store nor look up its
pHash; rely on the exact sha256 of the bytes.

The index (:class:`HashIndex`) keeps (hash, ref) pairs in numpy arrays and answers
"every ref within distance d" by multi-index hashing: the 64 bits are cut into 4 chunks
of 16; if two hashes differ in at most d bits, one chunk differs in at most d // 4 bits
(pigeonhole), so the candidates are the entries whose chunk equals one of the values
within that radius of the query's chunk (137 values a chunk for d = 8 to 11). Each chunk
has a counting-sort table (positions ordered by chunk value, an offset per value), so
a bucket is a slice; candidates are verified by popcount over uint64. Distances above
:attr:`HashIndex.MIH_MAX_DISTANCE` use a vectorised scan. Single adds go to a pending
buffer, scanned directly and merged into the tables when it reaches 1/16 of the index.

Measured (2 cores), random hashes, d = 8: 1M entries build from (hash, ref) pairs in
~1.3 s, hold 30 MB of arrays (plus the ref strings), answer in 0.3 ms p50 / 0.35 ms
p95 (a full scan: 0.8 / 0.9 ms); 9M entries (1M photos x 9 hashes): 6.7 s, 254 MB,
2.2 / 2.5 ms (scan 16 / 25 ms). Real photo hashes cluster more than random ones, so
real buckets are fuller; the scan bounds the worst case.

Persistence is the caller's: store an image's 9 hashes (hex through :func:`hash_to_str`,
checked by :func:`validate_hash_str`) and rebuild indexes at start with
:meth:`HashIndex.add_many`. A per-school block list is one more index.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import imagehash
import numpy as np
import numpy.typing as npt
from PIL import Image

HASH_BITS = 64  # bits in a pHash (8x8 low-frequency DCT coefficients)
HASH_MAX = (1 << HASH_BITS) - 1
WORK_SIDE = 512  # pixels; larger photos are box-reduced to 512-1023 on their long side

# Hamming distance (bits, of 64) at or below which two pHashes are the same photo.
# From the measurements in the module docstring: resize, JPEG q30 and 10% crops (against
# the crop variants), alone or together, came to at most 8; different photos came no
# closer than 16 (real) and, against the variants, 4 in a million synthetic pairs were
# within 8 and 28 within 10. imagehash's pHash sets 32 of 64 bits unless coefficients
# tie, so distances are even: 10 would catch 5% and 15% crops more often (99% and 82%
# instead of 93% and 64%) at 7 times the false matches.
MATCH_DISTANCE = 8

STABLE_MARGIN = 200.0  # DCT units (unnormalised DCT-II of 0-255 grey); photos: median 650-11,000
# Minimum count of stable bits (of 64) for a hash to be matchable: photos, texts and
# textures measured 40-64, flat images, gradients and a noisy sky 1-5.
QUALITY_THRESHOLD = 16

CROP_FRACTION = 0.10  # of the side's length, cut off in each crop variant
_F = CROP_FRACTION
# (left, top, right, bottom) fractions cut off: each side, then each pair of adjacent sides.
CROP_VARIANTS: tuple[tuple[float, float, float, float], ...] = (
    (_F, 0, 0, 0),
    (0, _F, 0, 0),
    (0, 0, _F, 0),
    (0, 0, 0, _F),
    (_F, _F, 0, 0),
    (_F, 0, 0, _F),
    (0, _F, _F, 0),
    (0, 0, _F, _F),
)

_HEX_RE = re.compile(r"[0-9a-f]{16}")

HashArray = npt.NDArray[np.uint64]
OwnerArray = npt.NDArray[np.int32]


def validate_hash_str(value: str) -> str:
    """The canonical form (16 lowercase hex characters) of a stored pHash string.

    Raises ``ValueError`` for anything else: wrong length, non-hex characters, ``0x``.
    """
    if not isinstance(value, str):
        raise ValueError(f"a pHash string must be a str, not {type(value).__name__}")
    normalised = value.strip().lower()
    if not _HEX_RE.fullmatch(normalised):
        raise ValueError(f"a pHash string is 16 hex characters, got {value!r}")
    return normalised


def hash_to_str(hash_value: int) -> str:
    """16 lowercase hex characters, the same text as ``str(imagehash.phash(...))``."""
    return f"{_check_hash(hash_value):016x}"


def hash_from_str(value: str) -> int:
    return int(validate_hash_str(value), 16)


def hamming(a: int, b: int) -> int:
    """Bits that differ between two 64-bit hashes."""
    return (_check_hash(a) ^ _check_hash(b)).bit_count()


def _check_hash(hash_value: int) -> int:
    if isinstance(hash_value, bool) or not isinstance(hash_value, int | np.integer):
        raise TypeError(f"a hash is an int, not {type(hash_value).__name__}")
    value = int(hash_value)
    if not 0 <= value <= HASH_MAX:
        raise ValueError(f"a hash is an unsigned 64-bit int, got {value}")
    return value


@dataclass(frozen=True, slots=True)
class ImageHashes:
    """What is stored for one image: its pHash, its crop variants and how reliable they are."""

    phash: int
    crops: tuple[int, ...]  # pHashes of CROP_VARIANTS, in that order; () when not asked for
    quality: int  # stable bits, 0-64; see QUALITY_THRESHOLD

    @property
    def matchable(self) -> bool:
        """Whether the pHash carries enough structure to be stored and looked up."""
        return self.quality >= QUALITY_THRESHOLD

    def all(self) -> tuple[int, ...]:
        """The pHash and the crop variants: the hashes to add to an index for this image."""
        return (self.phash, *self.crops)


def phash(image: Image.Image) -> int:
    """The 64-bit pHash of a photo as displayed (pass ``sanitize_image``'s RGB output)."""
    return _phash(_prepare(image))


def image_hashes(image: Image.Image, *, crops: bool = True) -> ImageHashes:
    """pHash, quality and (unless ``crops=False``, as for a query) the crop variants."""
    grey = _prepare(image)
    variants: tuple[int, ...] = ()
    if crops:
        width, height = grey.size
        variants = tuple(
            _phash(
                grey.crop(
                    (
                        round(width * left),
                        round(height * top),
                        width - round(width * right),
                        height - round(height * bottom),
                    )
                )
            )
            for left, top, right, bottom in CROP_VARIANTS
        )
    return ImageHashes(phash=_phash(grey), crops=variants, quality=_quality(grey))


def _prepare(image: Image.Image) -> Image.Image:
    """The photo box-reduced by a whole factor to a longest side below 2 x WORK_SIDE, grey."""
    if image.width < 1 or image.height < 1:
        raise ValueError("cannot hash an empty image")
    factor = max(image.size) // WORK_SIDE
    if factor >= 2:
        image = image.reduce(factor)
    return image.convert("L")


def _phash(grey: Image.Image) -> int:
    return int(str(imagehash.phash(grey)), 16)


# Rows 0-7 of the 32-point DCT-II matrix, unnormalised as scipy.fftpack.dct (imagehash):
# X[k] = 2 * sum_n x[n] * cos(pi * k * (2n + 1) / 64).
_DCT_LOW = 2 * np.cos(np.pi * np.arange(8)[:, None] * (2 * np.arange(32)[None, :] + 1) / 64)


def _quality(grey: Image.Image) -> int:
    """Bits whose coefficient is more than STABLE_MARGIN from the median (imagehash's steps)."""
    pixels = np.asarray(grey.resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    coefficients = _DCT_LOW @ pixels @ _DCT_LOW.T  # scipy's unnormalised DCT-II, 8x8 corner
    margin = np.abs(coefficients - np.median(coefficients))
    return int(np.count_nonzero(margin > STABLE_MARGIN))


class HashIndex:
    """(64-bit hash, ref) pairs, searchable by Hamming distance; see the module docstring.

    A ref is any string the caller maps back to a stored image (a media id). Adding the
    same ref with several hashes (an image's crop variants) is the intended use: results
    list each ref once, at its smallest distance. Not safe for concurrent use from
    several threads while adding.
    """

    CHUNKS: ClassVar[int] = 4  # 16-bit chunks for multi-index hashing
    # Largest distance served by multi-index hashing: chunk radius 2, 137 buckets a chunk.
    # At radius 3 (697 buckets, d 12-15) a scan of 1M entries was already faster (0.8 ms
    # against 1.3 ms), so larger distances scan.
    MIH_MAX_DISTANCE: ClassVar[int] = 11
    MERGE_MIN: ClassVar[int] = 4096  # pending entries before they are merged into the tables
    MERGE_FRACTION: ClassVar[float] = 1 / 16  # or this share of the indexed entries, if more

    _CHUNK_BITS: ClassVar[int] = HASH_BITS // 4
    _CHUNK_MASK: ClassVar[int] = (1 << (HASH_BITS // 4)) - 1

    def __init__(self) -> None:
        self._ref_ids: dict[str, int] = {}
        self._refs: list[str] = []
        # entries merged into the multi-index tables
        self._hashes: HashArray = np.empty(0, dtype=np.uint64)
        self._owners: OwnerArray = np.empty(0, dtype=np.int32)
        self._order: list[OwnerArray] = []  # per chunk: positions sorted by chunk value
        self._starts: list[npt.NDArray[np.int64]] = []  # per chunk: 65537 bucket offsets
        # entries added one by one since the last merge, scanned directly
        self._pending = np.empty(self.MERGE_MIN, dtype=np.uint64)
        self._pending_owners = np.empty(self.MERGE_MIN, dtype=np.int32)
        self._pending_count = 0
        self._masks = _masks_by_radius(self._CHUNK_BITS, self.MIH_MAX_DISTANCE // self.CHUNKS)

    def __len__(self) -> int:
        return len(self._hashes) + self._pending_count

    def add(self, hash_value: int, ref: str) -> None:
        value = _check_hash(hash_value)
        owner = self._ref_id(ref)
        if self._pending_count == len(self._pending):
            capacity = 2 * len(self._pending)
            self._pending = np.resize(self._pending, capacity)
            self._pending_owners = np.resize(self._pending_owners, capacity)
        self._pending[self._pending_count] = value
        self._pending_owners[self._pending_count] = owner
        self._pending_count += 1
        if self._pending_count >= max(self.MERGE_MIN, len(self._hashes) * self.MERGE_FRACTION):
            self._merge(np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int32))

    def add_many(self, pairs: Iterable[tuple[int, str]]) -> None:
        """Add (hash, ref) pairs in bulk: the fast way to build an index from storage."""
        hashes: list[int] = []
        owners: list[int] = []
        ref_id = self._ref_id
        for hash_value, ref in pairs:
            if type(hash_value) is not int:
                hash_value = _check_hash(hash_value)
            hashes.append(hash_value)
            owners.append(ref_id(ref))
        if not hashes:
            return
        try:
            array = np.array(hashes, dtype=np.uint64)
        except OverflowError:
            for hash_value in hashes:  # name the value that is out of range
                _check_hash(hash_value)
            raise
        self._merge(array, np.array(owners, dtype=np.int32))

    def nearest(self, hash_value: int, max_distance: int = MATCH_DISTANCE) -> list[tuple[str, int]]:
        """Every ref with a hash within ``max_distance`` bits, as (ref, distance), nearest first.

        Ties are ordered by ref. A ref with several hashes appears once, at its smallest
        distance.
        """
        query = _check_hash(hash_value)
        _check_distance(max_distance)
        best: dict[int, int] = {}
        if len(self._hashes):
            if max_distance <= self.MIH_MAX_DISTANCE:
                positions = self._candidates(query, max_distance // self.CHUNKS)
                hashes, owners = self._hashes[positions], self._owners[positions]
            else:
                hashes, owners = self._hashes, self._owners
            _collect(hashes, owners, query, max_distance, best)
        self._collect_pending(query, max_distance, best)
        return self._answer(best)

    def scan(self, hash_value: int, max_distance: int = MATCH_DISTANCE) -> list[tuple[str, int]]:
        """The same answer as :meth:`nearest` by a vectorised scan of every entry."""
        query = _check_hash(hash_value)
        _check_distance(max_distance)
        best: dict[int, int] = {}
        _collect(self._hashes, self._owners, query, max_distance, best)
        self._collect_pending(query, max_distance, best)
        return self._answer(best)

    def nbytes(self) -> int:
        """Bytes held in numpy arrays (not counting the refs' Python strings)."""
        arrays: list[npt.NDArray[np.generic]] = [
            self._hashes,
            self._owners,
            self._pending,
            self._pending_owners,
            *self._order,
            *self._starts,
        ]
        return sum(array.nbytes for array in arrays)

    # internals

    def _ref_id(self, ref: str) -> int:
        found = self._ref_ids.get(ref)
        if found is None:
            if not isinstance(ref, str):
                raise TypeError(f"a ref is a str, not {type(ref).__name__}")
            found = self._ref_ids[ref] = len(self._refs)
            self._refs.append(ref)
        return found

    def _answer(self, best: dict[int, int]) -> list[tuple[str, int]]:
        refs = self._refs
        found = [(refs[owner], distance) for owner, distance in best.items()]
        return sorted(found, key=lambda item: (item[1], item[0]))

    def _collect_pending(self, query: int, max_distance: int, best: dict[int, int]) -> None:
        count = self._pending_count
        if count:
            pending = self._pending[:count], self._pending_owners[:count]
            _collect(*pending, query, max_distance, best)

    def _merge(self, hashes: HashArray, owners: OwnerArray) -> None:
        """Fold the pending entries and these arrays into the multi-index tables."""
        count = self._pending_count
        self._hashes = np.concatenate([self._hashes, self._pending[:count], hashes])
        self._owners = np.concatenate([self._owners, self._pending_owners[:count], owners])
        self._pending_count = 0
        self._order, self._starts = [], []
        for chunk in range(self.CHUNKS):
            shift = np.uint64(chunk * self._CHUNK_BITS)
            values = ((self._hashes >> shift) & np.uint64(self._CHUNK_MASK)).astype(np.uint16)
            # a stable sort of 16-bit keys is a radix sort in numpy: linear time
            self._order.append(np.argsort(values, kind="stable").astype(np.int32))
            starts = np.zeros(self._CHUNK_MASK + 2, dtype=np.int64)
            np.cumsum(np.bincount(values, minlength=self._CHUNK_MASK + 1), out=starts[1:])
            self._starts.append(starts)

    def _candidates(self, query: int, radius: int) -> npt.NDArray[np.int64]:
        """Positions whose chunk lies within ``radius`` bits of the query's, in any chunk.

        A position may appear more than once (it can match in several chunks).
        """
        masks = self._masks[radius]
        found: list[OwnerArray] = []
        for chunk in range(self.CHUNKS):
            probes = masks ^ ((query >> (chunk * self._CHUNK_BITS)) & self._CHUNK_MASK)
            starts = self._starts[chunk][probes]
            lengths = self._starts[chunk][probes + 1] - starts
            keep = lengths > 0
            starts, lengths = starts[keep], lengths[keep]
            total = int(lengths.sum())
            if total:
                # the slices order[start:start + length], concatenated without a Python loop
                shifts = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
                found.append(self._order[chunk][shifts + np.arange(total)])
        if not found:
            return np.empty(0, dtype=np.int64)
        return np.concatenate(found).astype(np.int64)


def _check_distance(max_distance: int) -> None:
    if isinstance(max_distance, bool) or not isinstance(max_distance, int):
        raise TypeError(f"max_distance is an int, not {type(max_distance).__name__}")
    if not 0 <= max_distance <= HASH_BITS:
        raise ValueError(f"max_distance must be 0-{HASH_BITS}, got {max_distance}")


def _collect(
    hashes: HashArray, owners: OwnerArray, query: int, max_distance: int, best: dict[int, int]
) -> None:
    """Record, per owner, the smallest distance within ``max_distance`` among these entries."""
    distances = np.bitwise_count(hashes ^ np.uint64(query))
    hit = np.flatnonzero(distances <= max_distance)
    for owner, distance in zip(owners[hit].tolist(), distances[hit].tolist(), strict=True):
        if distance < best.get(owner, HASH_BITS + 1):
            best[owner] = distance


def _masks_by_radius(bits: int, max_radius: int) -> list[npt.NDArray[np.int64]]:
    """For each radius r, every ``bits``-bit mask with at most r bits set."""
    values = np.arange(1 << bits, dtype=np.int64)
    weights = np.bitwise_count(values)
    return [values[weights <= radius] for radius in range(max_radius + 1)]
