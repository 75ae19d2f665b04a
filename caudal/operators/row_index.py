"""A persistent index of int64 keys to the rows of a store that holds them, at 5 bytes a slot.

An operator that keeps one row per key in a store (a top-1's best row per partition)
needs the row of each key a batch brings. ``KeyIndex`` would hold every key again (an int64
per slot) beside an int64 id, in a table at most half full, and a row number per id beside
it: ~45 bytes a key, plus a second table while it doubles. The store already has the keys,
so this table keeps only what it cannot read there: per slot the row number (int32) and
8 bits of the key's hash (a tag). A probe compares the tags of the slots it passes and reads
a key back from the store (``key_of``) only where a tag matches: a missing key costs no
read of the store (255 in 256 tags differ), a found one about one. The table is open
addressing with linear probing, kept at most 3/4 full (5 bytes a slot: 6.7 to 13.3 bytes a
key); it doubles by reading the stored rows' keys back a chunk at a time (the old table's
row numbers, sorted, are all it keeps meanwhile). Every step is a vectorized pass over the
keys still probing, never a Python loop per key.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from caudal.operators.key_index import _mix

_EMPTY = -1
_MIN_SLOTS = 1 << 12
#: the table doubles once more than this share of its slots would be used
_MAX_LOAD = 0.75
#: keys read back from the store and placed at a time while the table doubles (bounds the
#: temporaries of a doubling to a few MB, whatever the table's size)
_CHUNK = 1 << 18


class RowIndex:
    """Distinct int64 keys -> rows (below 2^31) of a store; ``key_of(rows)`` reads the keys
    of stored rows back (an int64 array)."""

    def __init__(self, key_of: Callable[[np.ndarray], np.ndarray], max_load: float = _MAX_LOAD):
        self.key_of = key_of
        self.max_load = max_load
        self.size = 0
        self._rows = np.full(_MIN_SLOTS, _EMPTY, dtype=np.int32)   # slot -> row, or -1
        self._tags = np.zeros(_MIN_SLOTS, dtype=np.uint8)          # slot -> 8 hash bits

    @property
    def nbytes(self) -> int:
        return self._rows.nbytes + self._tags.nbytes

    def _home(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each key's home slot (the hash's low bits) and tag (its top 8 bits)."""
        h = _mix(np.ascontiguousarray(keys, dtype=np.int64))
        tag = (h >> np.uint64(56)).astype(np.uint8)
        h &= np.uint64(len(self._rows) - 1)
        return h.view(np.int64), tag

    def find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each key's row (-1 for a key not stored) and the slot that holds it, or for a
        key not stored the free slot its probe ended at (where ``add`` starts)."""
        n = len(keys)
        rows = np.full(n, _EMPTY, dtype=np.int64)
        at = np.full(n, _EMPTY, dtype=np.int64)
        if not n:
            return rows, at
        mask = len(self._rows) - 1
        slot, tag = self._home(keys)
        pending = np.arange(n)
        want = np.asarray(keys, dtype=np.int64)
        while len(pending):
            r = self._rows[slot]
            occupied = r != _EMPTY
            hit = occupied & (self._tags[slot] == tag)
            maybe = np.flatnonzero(hit)
            if len(maybe):
                same = self.key_of(r[maybe]) == want[maybe]
                hit[maybe[~same]] = False
                rows[pending[hit]] = r[hit]
                at[pending[hit]] = slot[hit]
            at[pending[~occupied]] = slot[~occupied]
            go_on = occupied & ~hit
            pending, slot, tag, want = pending[go_on], slot[go_on], tag[go_on], want[go_on]
            slot += 1
            slot &= mask
        return rows, at

    def set(self, at: np.ndarray, rows: np.ndarray) -> None:
        """The keys in slots ``at`` (from ``find``) are at ``rows`` from now on."""
        self._rows[at] = rows

    def add(self, keys: np.ndarray, rows: np.ndarray, at: np.ndarray | None = None) -> None:
        """Distinct keys, none of them stored yet, at ``rows`` (whose keys ``key_of`` must
        read back from now on). ``at``: the free slots ``find`` ended at for them, nothing
        added since (their probes go on from there, not from their homes)."""
        n = len(keys)
        if not n:
            return
        need = self.size + n
        if need > self.max_load * len(self._rows):
            slots = len(self._rows)
            while need > self.max_load * slots:
                slots *= 2
            self._resize(slots)
            at = None
        for start in range(0, n, _CHUNK):
            end = start + _CHUNK
            self._place(keys[start:end], rows[start:end], None if at is None else at[start:end])
        self.size = need

    def _place(self, keys: np.ndarray, rows: np.ndarray, at: np.ndarray | None = None
               ) -> None:
        """Put keys not stored into free slots, probing from their homes (or from ``at``,
        a slot their probe reaches): of the keys wanting one free slot, one takes it (each
        writes its negative mark, the one whose mark stayed won: NumPy keeps one of
        repeated writes), the others probe on."""
        mask = len(self._rows) - 1
        slot, tag = self._home(keys)
        if at is not None:
            slot = at.astype(np.int64)
        pending = np.arange(len(keys))
        table = self._rows
        while len(pending):
            free = table[slot] == _EMPTY
            mark = (-2 - pending).astype(np.int32)
            table[slot[free]] = mark[free]
            wins = free & (table[slot] == mark)
            table[slot[free & ~wins]] = _EMPTY   # (a loser's slot holds a winner's mark)
            table[slot[wins]] = rows[pending[wins]]
            self._tags[slot[wins]] = tag[wins]
            lose = ~wins
            # a loser of a free slot tries it again (its winner may have been another's
            # loser), one that met a taken slot probes the next
            step = lose & ~free
            pending, slot, tag = pending[lose], slot[lose], tag[lose]
            slot += step[lose]
            slot &= mask

    def _resize(self, slots: int) -> None:
        """A table of ``slots`` slots with the stored keys, read back from the store a
        chunk at a time (in row order: the store is read forward)."""
        stored = self._rows[self._rows != _EMPTY]
        stored.sort()
        self._rows = np.full(slots, _EMPTY, dtype=np.int32)
        self._tags = np.zeros(slots, dtype=np.uint8)
        for start in range(0, len(stored), _CHUNK):
            rows = stored[start:start + _CHUNK]
            self._place(self.key_of(rows), rows)

    def renumber(self, below: np.ndarray) -> None:
        """The store dropped rows: row ``r`` is row ``below[r]`` from now on."""
        used = self._rows != _EMPTY
        self._rows[used] = below[self._rows[used]]
