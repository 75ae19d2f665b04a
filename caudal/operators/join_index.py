"""A persistent key -> rows index of one updating join side with one integer-like key.

A batch of one side finds its partners among the other side's stored rows. A hash join of
the batch against all of that side's keys (Polars) rebuilds a hash table over the stored keys
for every batch: in a join of a stream of bids against the auctions kept so far, every batch
of bids paid for hashing all the auctions again, and at parallelism 2 the two subtasks' joins
queued for the one Polars thread pool of the process, so the second core bought nothing. This
index persists across batches, and a probe costs time in proportion to the batch and its
matches, not to the state.

Keys go through a ``KeyIndex`` (key -> dense id, direct addressing while ids are dense); the
rows are grouped by id in *runs*, each covering a contiguous range of row numbers: the rows
appended since the last probe become a new run when the side is next probed, and a run is
merged with the one before it while that one is less than four times its size, so a row is
sorted again O(log rows) times in all (as an LSM tree's levels) and a probe looks in
O(log rows) runs. A large run finds an id's rows through an offsets array over all ids (one
gather); a small one by binary search in its sorted ids. NULL keys get no id and match
nothing, as SQL ``=``; a join comparing NULL equal to NULL (INTERSECT / EXCEPT) does not use
this index. Removing rows (a changelog's retractions, TTL) renumbers them: the runs are
dropped and rebuilt at the next probe.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from caudal.operators.key_index import KeyIndex, _integer_like, _sorted_homes

#: a run finds ids through an offsets array over every id while it has at least this share
#: of rows per id (else the array would cost more than the run)
_DENSE_SHARE = 1 / 8
#: key ids stay directly addressed while the keys' range spans at most this many slots per
#: key (8 bytes each): a side of one subtask of P holds about every P-th key of a dense id
#: range, and a join keeps only some of them (a filtered side), so the default span of a
#: ``KeyIndex`` (4) would put most probes through its slower hash table
_DENSE_SPAN = 16
#: ... and while their range spans at most this many slots, however sparse (16 MB): a
#: side's density moves around its limit as keys arrive (two source subtasks at different
#: points of an id range), and a side that crossed it stayed in the hash table for good
#: (q20 at P = 2: its probes 0.03 -> 0.32 CPU s in one run of three)
_MIN_DIRECT = 1 << 21
#: runs are merged while the one before is less than this many times the newer's size
_MERGE_RATIO = 4


def indexable(t: pa.DataType) -> bool:
    """Whether a key column of this type can be indexed here (integer-like, int64 inside)."""
    return _integer_like(t)


class _Run:
    """Rows ``start``..``stop`` (row numbers) grouped by key id: ``rows`` in id order; with
    ``offsets`` (dense) id ``g``'s rows are ``rows[offsets[g]:offsets[g + 1]]``, else
    ``ids`` (sorted) is searched."""

    def __init__(self, start: int, stop: int, ids: np.ndarray, known: int):
        self.start, self.stop = start, stop
        keep = np.flatnonzero(ids >= 0)   # NULL keys (-1) match nothing
        order, sorted_ids = _sorted_homes(ids[keep].view(np.uint64)) if len(keep) else (
            np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64))
        rows = keep[order] + start
        self.rows = rows.astype(np.int32) if stop < (1 << 31) else rows
        self.known = known   # ids below this were assigned when the run was made
        self.offsets: np.ndarray | None = None
        self.ids: np.ndarray | None = None
        if len(keep) >= _DENSE_SHARE * known:
            counts = np.bincount(sorted_ids.view(np.int64), minlength=known)
            offsets = np.zeros(known + 2, dtype=np.int64)
            np.cumsum(counts, out=offsets[1:known + 1])
            offsets[known + 1] = offsets[known]   # any id from ``known`` on has no rows
            self.offsets = offsets
        else:
            self.ids = sorted_ids.view(np.int64)

    @property
    def size(self) -> int:
        return self.stop - self.start

    def bounds(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each id (>= 0), where its rows start and end in ``rows``."""
        if self.offsets is not None:
            at = np.minimum(ids, self.known)
            return self.offsets[at], self.offsets[at + 1]
        assert self.ids is not None
        return (np.searchsorted(self.ids, ids, side="left"),
                np.searchsorted(self.ids, ids, side="right"))


class KeyRows:
    """Row numbers of a side's stored rows by the value of its one integer-like key column."""

    def __init__(self, name: str, schema: pa.Schema):
        self.keys = KeyIndex([name], schema, dense_span=_DENSE_SPAN, min_direct=_MIN_DIRECT)
        self.runs: list[_Run] = []
        self.covered = 0   # rows below this are in a run

    def reset(self) -> None:
        """Forget the runs (rows were removed or renumbered); the key ids stay valid."""
        self.runs = []
        self.covered = 0

    def pairs(self, probe: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
        """``(probe rows, stored rows)`` of every pair with equal keys, among the rows
        ``cover`` was given."""
        ids = self.keys.find(probe)
        at = np.flatnonzero(ids >= 0)
        empty = np.zeros(0, dtype=np.int64)
        if not len(at) or not self.runs:
            return empty, empty
        ids = ids[at]
        probe_rows, rows = [], []
        for run in self.runs:
            lo, hi = run.bounds(ids)
            counts = hi - lo
            total = int(counts.sum())
            if not total:
                continue
            has = np.flatnonzero(counts)
            lo, counts = lo[has], counts[has]
            # pair k of a probe row whose matches start at lo: rows[lo + (k - first k)]
            first = np.cumsum(counts) - counts
            where = np.arange(total, dtype=np.int64) + np.repeat(lo - first, counts)
            probe_rows.append(np.repeat(at[has], counts))
            rows.append(run.rows[where].astype(np.int64, copy=False))
        if not probe_rows:
            return empty, empty
        if len(probe_rows) == 1:
            return probe_rows[0], rows[0]
        return np.concatenate(probe_rows), np.concatenate(rows)

    def cover(self, stored: pa.Array | pa.ChunkedArray) -> None:
        """Index the side's rows: ``stored`` is its whole key column, of which the rows
        past ``covered`` are new (they become a run, and runs merge: see the module doc)."""
        n = len(stored)
        if n <= self.covered:
            return
        start = self.covered
        while self.runs and self.runs[-1].size < _MERGE_RATIO * (n - start):
            start = self.runs.pop().start
        ids = self.keys.find_or_add(stored.slice(start, n - start))
        self.runs.append(_Run(start, n, ids, self.keys.size))
        self.covered = n
