"""Text looked up in a column's dictionary by a hash of each value, checked exactly.

A dictionary-encoded column (compact_rows._Dictionary) gives every appended value the code
of its value in the dictionary. Arrow's ``index_in`` does it with one hash set of the
dictionary per call and a hash and a compare per value; on this machine that cost ~150 ns a
value for Nexmark's bid texts (q20: 4.0 of the join's 6.2 CPU s; q18 about a third), growing
with the values' length. Polars hashes the same values in ~10 ns each. So here:

1. each value's 64-bit Polars hash (``Series.hash``, a fixed seed: the same in the process,
   never stored) is looked up in a persistent NumPy open-addressing table of the hashes of
   the dictionary's values (kept at most half full; one gather and one compare per value,
   further probes only for the few that collide on a slot);
2. every value that hit is compared exactly with the dictionary value at its code (a
   Polars gather of string views, no bytes copied, and one ``==``);
3. the rest (a value not in the dictionary, or whose hash is another value's: never trusted)
   are looked up by ``index_in`` as before, which also adds the new values.

The answer never depends on the hash: a hash only proposes a code, which the comparison
confirms. The table is memory of this process only (rebuilt from the dictionary after a
restore, on first use); snapshots never see it. It costs the dictionary once more (the
Polars copy) and 48-80 bytes per dictionary value (slots, hashes, entries), beside the
codes' 4 bytes per row: q20's bid store, 47 k values in three columns, ~7 MB.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    import polars as pl

_EMPTY = -1
_MIN_SLOTS = 1024
#: the table is kept at most 1/4 full: few values are away from their home slot
_LOAD = 4
#: Polars' hash seed (any constant: the hashes live in this process only)
_SEED = 0x5EED
_HIGH = np.int64(-1 << 32)   # a hash's high 32 bits, kept in its slot beside the code
_LOW = np.int64(0xFFFFFFFF)
#: the int32 half of an int64 holding its low bits
_LOW_HALF = 0 if sys.byteorder == "little" else 1


def hash_values(values: pl.Series) -> np.ndarray:
    """The 64-bit hash of each value as int64 (NULLs too: callers mask them)."""
    return values.hash(seed=_SEED).to_numpy().view(np.int64)


class TextHashes:
    """Hash -> code of a dictionary's values: an open-addressing table (linear probing from
    the slot of a hash's low bits) of int64 entries, each a hash's high 32 bits and its
    value's code in the low 32 (one gather a lookup). Equal high bits on one probe path
    propose a code: the first value placed keeps it, the caller checks every proposal."""

    def __init__(self) -> None:
        self.slots = np.full(_MIN_SLOTS, _EMPTY, dtype=np.int64)
        #: the hashes and entries placed, to place them again in a larger table
        self.hashes = np.zeros(0, dtype=np.int64)
        self.entries = np.zeros(0, dtype=np.int64)

    def find(self, h: np.ndarray) -> np.ndarray:
        """The int32 code proposed for each hash of ``h`` (int64), or -1."""
        mask = np.int64(len(self.slots) - 1)
        slot = h & mask
        entry = self.slots[slot]
        same = entry ^ h
        same >>= 32
        hit = same == 0
        code = np.where(hit, entry.view(np.int32)[_LOW_HALF::2], np.int32(_EMPTY))
        further = np.flatnonzero(~hit & (entry != _EMPTY))   # another value's slot: go on
        while len(further):
            at = (slot[further] + 1) & mask
            slot[further] = at
            entry = self.slots[at]
            ok = ((entry ^ h[further]) >> 32) == 0
            code[further[ok]] = entry[ok] & _LOW
            further = further[~ok & (entry != _EMPTY)]
        return code

    def add(self, h: np.ndarray, codes: np.ndarray) -> None:
        """Put the hashes ``h`` of new dictionary values (codes ``codes``) in the table; a
        hash that finds a code here already (or repeated in ``h``) is left out: its
        values then find no code here, or one the caller refuses."""
        if not len(h):
            return
        h, first = np.unique(h, return_index=True)
        entries = (h & _HIGH) | codes[first].astype(np.int64)
        fresh = self.find(h) == _EMPTY
        h, entries = h[fresh], entries[fresh]
        self.hashes = np.concatenate([self.hashes, h])
        self.entries = np.concatenate([self.entries, entries])
        if _LOAD * len(self.hashes) > len(self.slots):
            size = len(self.slots)
            while size < _LOAD * len(self.hashes):
                size *= 2
            self.slots = np.full(size, _EMPTY, dtype=np.int64)
            h, entries = self.hashes, self.entries
        self._place(h, entries)

    def _place(self, h: np.ndarray, entries: np.ndarray) -> None:
        """Entries (distinct hashes not in the table) into free slots by linear probing:
        in each round those whose slot is free write it, one of those wanting the same
        slot wins (NumPy keeps one of repeated writes: the one whose mark stayed), the
        others and those whose slot was taken go on to the next slot."""
        mask = np.int64(len(self.slots) - 1)
        slot = h & mask
        pending = np.arange(len(h))
        while len(pending):
            s = slot[pending]
            free = self.slots[s] == _EMPTY
            mark = -2 - pending   # (only free slots are marked, and read back at once)
            self.slots[s[free]] = mark[free]
            wins = free & (self.slots[s] == mark)
            self.slots[s[free & ~wins]] = _EMPTY
            self.slots[s[wins]] = entries[pending[wins]]
            lose = ~wins
            pending = pending[lose]
            slot[pending] = np.where(free[lose], s[lose], (s[lose] + 1) & mask)


class HashedLookup:
    """``lookup``: the codes of values in a growing dictionary (an Arrow array only ever
    appended to, never renumbered), by hash and exact compare, the values it could not
    confirm left to the caller."""

    def __init__(self) -> None:
        self.table = TextHashes()
        self.hashed = 0   # the dictionary's values in the table (a prefix)
        self._values: pl.Series | None = None   # the dictionary, for the exact compare

    def _cover(self, dictionary: pa.Array) -> pl.Series:
        """The table and the Polars copy of the dictionary up to date with it."""
        import polars as pl

        n = len(dictionary)
        if n < self.hashed:   # (not this column's dictionary any more: start again)
            self.table, self.hashed, self._values = TextHashes(), 0, None
        if self._values is None or n > self.hashed:
            new = pl.Series(dictionary.slice(self.hashed))
            self.table.add(hash_values(new), np.arange(self.hashed, n, dtype=np.int64))
            self._values = pl.Series(dictionary)
            self.hashed = n
        return self._values

    def lookup(self, values: pa.Array | pa.ChunkedArray, dictionary: pa.Array
               ) -> tuple[np.ndarray, np.ndarray]:
        """Int32 codes of ``values`` in ``dictionary`` (-1 for NULL) and the rows not
        confirmed (new values, or a hash shared with another value), whose codes are
        to be found otherwise."""
        import polars as pl

        known = self._cover(dictionary)
        series = pl.Series(values)
        code = self.table.find(hash_values(series))
        proposed = code != _EMPTY
        if not proposed.any():
            return code, np.flatnonzero(series.is_not_null().to_numpy())
        same = (known.gather(np.where(proposed, code, 0)) == series)
        confirmed = same.fill_null(False).to_numpy() & proposed
        code[~confirmed] = _EMPTY
        if confirmed.all():
            return code, np.zeros(0, dtype=np.intp)
        valid = series.is_not_null().to_numpy()
        return code, np.flatnonzero(valid & ~confirmed)
