"""Per-process cache of each school's removed and blocked image hashes, for lookups.

Why this module exists: the media check looks every new photo up in its school's
``removed`` and ``blocked`` lists (POLICY.md rule 10). Reading a million stored hashes
from the database per photo would take seconds; a :class:`models.images.hashes.HashIndex`
answers in well under a millisecond. So each worker process keeps one index per school
and brings it up to date before each lookup with two small queries:

* the school's ``hash_lists_generation``: it changes when hashes were deleted (a
  block-list entry removed), and then the index is rebuilt from scratch;
* the rows added since the last refresh: those with a pk above the highest seen, and,
  because PostgreSQL hands out pks at insert but rows become visible at commit (a lower
  pk can appear after a higher one), also those added in the last :data:`LOOKBACK`,
  skipping the pks already indexed.

``lookup`` returns one :class:`HashHit` per list entry (an image) with its smallest
Hamming distance to any of the query hashes, nearest first.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from models.images.hashes import MATCH_DISTANCE, HashIndex, hash_from_str
from moderation.storage.image_hashes import LOOKUP_LISTS, HashRow, generation, hash_rows
from moderation.storage.tables import utcnow

# Rows added this long before the last refresh are read again: longer than any
# transaction that adds hashes stays open, plus the clock skew between machines.
LOOKBACK = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class HashHit:
    """A stored image near the query: which list, which entry, how many bits apart."""

    list: str  # removed | blocked
    entry: str
    distance: int  # Hamming distance, 0-64; 0-4 is the same photo re-encoded


@dataclass
class _SchoolIndex:
    generation: int
    index: HashIndex = field(default_factory=HashIndex)
    last_pk: int = 0
    refreshed_at: datetime = field(default_factory=utcnow)
    recent: dict[int, datetime] = field(default_factory=dict)  # pk -> added_at, in LOOKBACK

    def add(self, rows: Sequence[HashRow], horizon: datetime) -> None:
        fresh = [row for row in rows if row.pk not in self.recent]
        if len(fresh) > 64:
            self.index.add_many((hash_from_str(r.hash), f"{r.list_name}:{r.entry}") for r in fresh)
        else:
            for row in fresh:
                self.index.add(hash_from_str(row.hash), f"{row.list_name}:{row.entry}")
        for row in fresh:
            self.last_pk = max(self.last_pk, row.pk)
            if row.added_at >= horizon:
                self.recent[row.pk] = row.added_at
        self.recent = {pk: at for pk, at in self.recent.items() if at >= horizon}


class HashListCache:
    """One index per school over its removed and blocked lists; safe across threads."""

    def __init__(self, *, lookback: timedelta = LOOKBACK) -> None:
        self.lookback = lookback
        self._schools: dict[str, _SchoolIndex] = {}
        self._lock = threading.Lock()

    def refresh(self, session: Session, school_id: str) -> HashIndex:
        """Bring the school's index up to date (rebuild after deletions) and return it."""
        with self._lock:
            return self._refresh(session, school_id).index

    def _refresh(self, session: Session, school_id: str) -> _SchoolIndex:
        now = utcnow()
        current = generation(session=session, school_id=school_id)
        state = self._schools.get(school_id)
        if state is None or state.generation != current:
            state = _SchoolIndex(generation=current, refreshed_at=now)
            state.add(hash_rows(session=session, school_id=school_id), now - self.lookback)
            self._schools[school_id] = state
            return state
        rows = hash_rows(
            session=session,
            school_id=school_id,
            lists=LOOKUP_LISTS,
            after_pk=state.last_pk,
            added_since=state.refreshed_at - self.lookback,
        )
        state.add(rows, now - self.lookback)
        state.refreshed_at = now
        return state

    def lookup(
        self,
        session: Session,
        school_id: str,
        hashes: Sequence[int],
        max_distance: int = MATCH_DISTANCE,
    ) -> list[HashHit]:
        """Entries of the school's removed and blocked lists within ``max_distance`` of
        any of ``hashes``, nearest first (one hit per entry)."""
        with self._lock:
            index = self._refresh(session, school_id).index
            best: dict[str, int] = {}
            for value in hashes:
                for ref, distance in index.nearest(value, max_distance):
                    if distance < best.get(ref, max_distance + 1):
                        best[ref] = distance
        hits = []
        for ref, distance in best.items():
            list_name, entry = ref.split(":", 1)
            hits.append(HashHit(list_name, entry, distance))
        return sorted(hits, key=lambda hit: (hit.distance, hit.list, hit.entry))

    def clear(self) -> None:
        with self._lock:
            self._schools.clear()


_CACHE = HashListCache()


def lookup(session: Session, school_id: str, hashes: Sequence[int]) -> list[HashHit]:
    """The process-wide cache's :meth:`HashListCache.lookup` at ``MATCH_DISTANCE``."""
    return _CACHE.lookup(session, school_id, hashes)
