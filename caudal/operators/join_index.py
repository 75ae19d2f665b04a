"""A persistent key -> rows index of one updating join side.

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
O(log rows) runs. A run finds an id's rows through an offsets array over the range of ids it
holds (one gather) when the range is dense enough (ids are handed out as keys arrive, so a
run of recent rows spans few ids however many the index has seen); else by binary search in
its sorted ids. NULL keys get no id and match
nothing, as SQL ``=``; a join comparing NULL equal to NULL (INTERSECT / EXCEPT) does not use
this index.

One integer-like key column is its own id's key. Other keys (text, binary, decimals, booleans,
several columns) are indexed by a 64-bit hash of the key columns (Polars' row hash, computed
for a stored row when its run is made and once per probing row) and need no ids: a run groups
its rows by the top bits of their hash (``_HashRun``, 2-4 buckets per distinct hash), a probe
takes its bucket's rows and keeps those of equal hash, and the pairs left are verified by
comparing the key values themselves (``verified``): keys whose hashes collide are candidates
of each other, and the comparison drops the pair. A collision costs a comparison, never a
wrong match. Floating-point keys are not indexed (``-0.0 = 0.0`` with different bits).

While every integer key has at most one stored row (the auctions an interval join or an
updating join of bids keeps, by auction id), there are no runs: ``unique`` holds each id's
row, a probe is one gather from it, and a cover one scatter into it (no sort). The first id
to get a second row ends that for good: the runs are built over all the rows from then on.

Removing rows (a changelog's retractions, TTL) renumbers them: ``keep`` renumbers the rows
in the runs and drops the removed ones, in time proportional to the rows (as the store's own
``keep``), without sorting anything again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

from caudal import compute as pc
from caudal.operators.key_index import KeyIndex, _integer_like, _mix, _sorted_homes
from caudal.operators.keyed_tables import positional

#: a run finds ids through an offsets array over its range of ids while it has at least
#: this share of rows per id of the range (else the array would cost more than the run)
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


#: the seed of the key hash (any fixed value: the hashes never leave the process, an index
#: is rebuilt from the rows after a restore)
_SEED = 0x5EED


def indexable(t: pa.DataType) -> bool:
    """Whether a key column of this type can be indexed here: integer-like (int64 inside),
    or hashed with equality that is equality of the bits (text, binary, 128-bit decimals,
    booleans, and uint64, whose values above 2^63 are not int64)."""
    return _integer_like(t) or pa.types.is_unsigned_integer(t) or \
        pa.types.is_string(t) or pa.types.is_large_string(t) or \
        pa.types.is_binary(t) or pa.types.is_large_binary(t) or \
        pa.types.is_decimal128(t) or pa.types.is_boolean(t)


def _hashed(keys: pa.Table | pa.RecordBatch, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """The row hash of the key columns (uint64; only its low ``bits`` bits kept, then spread
    over all 64 so buckets by top bits still separate them) and the rows whose keys are all
    non-NULL (a NULL key matches nothing)."""
    if isinstance(keys, pa.RecordBatch):
        keys = pa.Table.from_batches([keys])
    h = positional(keys, keys.column_names).hash_rows(seed=_SEED).to_numpy()
    if bits < 64:
        h = _mix((h & np.uint64((1 << bits) - 1)).view(np.int64))
    null = None
    for column in keys.columns:
        if column.null_count:
            here = pc.is_null(column).to_numpy(zero_copy_only=False)
            null = here if null is None else null | here
    return h, (np.arange(len(h)) if null is None else np.flatnonzero(~null))


def _expand(at: np.ndarray, lo: np.ndarray, hi: np.ndarray, rows: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probe row ``at[i]`` against ``rows[lo[i]:hi[i]]``: (probe rows, positions in
    ``rows``, stored rows) of every such pair, by index arrays."""
    counts = hi - lo
    total = int(counts.sum())
    if not total:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    has = np.flatnonzero(counts)
    lo = lo[has]
    if total == len(has):   # each probe row with one candidate (a side of unique keys)
        return at[has], lo, rows[lo].astype(np.int64, copy=False)
    counts = counts[has]
    # pair k of a probe row whose matches start at lo: rows[lo + (k - first k)]
    first = np.cumsum(counts) - counts
    where = np.arange(total, dtype=np.int64) + np.repeat(lo - first, counts)
    return np.repeat(at[has], counts), where, rows[where].astype(np.int64, copy=False)


class _HashRun:
    """Rows ``start``..``stop`` of hashed keys grouped by the top ``bits`` bits of their
    hash (about 2-4 buckets per distinct hash, so a bucket holds one key's rows and seldom
    another's): ``rows`` and their ``hashes`` in bucket order, bucket ``b``'s at
    ``offsets[b]:offsets[b + 1]``. A probe takes its bucket's rows and keeps those of equal
    hash: one gather, no probing loop, no key ids."""

    def __init__(self, start: int, stop: int, h: np.ndarray, plain: np.ndarray):
        self.start, self.stop = start, stop
        n = len(plain)
        low = max(n - 1, 1).bit_length()
        top = 64 - low   # the top bits of the hash sorted with each row's position
        order, sorted_top = _sorted_homes(h[plain] >> np.uint64(low)) if n else (
            np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64))
        distinct = int(np.count_nonzero(np.diff(sorted_top))) + 1 if n else 0
        self.bits = min(max(distinct, 1).bit_length() + 1, top)
        rows = plain[order] + start
        self.rows = rows.astype(np.int32) if stop < (1 << 31) else rows
        self.hashes = h[plain[order]]
        buckets = (sorted_top >> np.uint64(top - self.bits)).view(np.int64)
        counts = np.bincount(buckets, minlength=1 << self.bits)
        # int32 while they fit: half the bytes a probe's random gathers go through
        self.offsets = np.zeros((1 << self.bits) + 1,
                                dtype=np.int32 if n < (1 << 31) else np.int64)
        np.cumsum(counts, out=self.offsets[1:])

    @property
    def size(self) -> int:
        return self.stop - self.start

    def pairs(self, h: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probe rows, stored rows) of equal hashes, probe rows ``at`` of hashes ``h``."""
        probe = h if len(at) == len(h) else h[at]
        bucket = (probe >> np.uint64(64 - self.bits)).view(np.int64)
        lo = np.take(self.offsets, bucket)
        hi = np.take(self.offsets, bucket + 1)
        # a bucket of one row (most, on a side of unique keys): its hash decides at once
        single = np.flatnonzero(hi - lo == 1)
        one = single[self.hashes[lo[single]] == probe[single]]
        pi1, ri1 = at[one], self.rows[lo[one]].astype(np.int64, copy=False)
        more = np.flatnonzero(hi - lo > 1)
        if not len(more):
            return pi1, ri1
        pi, where, ri = _expand(at[more], lo[more], hi[more], self.rows)
        same = self.hashes[where] == h[pi]
        if not same.all():
            pi, ri = pi[same], ri[same]
        return np.concatenate([pi1, pi]), np.concatenate([ri1, ri])

    def keep(self, mask: np.ndarray, below: np.ndarray) -> None:
        """``_Run.keep``."""
        kept = mask[self.rows]
        self.rows = below[self.rows[kept]].astype(self.rows.dtype, copy=False)
        self.hashes = self.hashes[kept]
        prefix = np.zeros(len(kept) + 1, dtype=np.int64)
        np.cumsum(kept, out=prefix[1:])
        self.offsets = prefix[self.offsets].astype(self.offsets.dtype, copy=False)
        self.start, self.stop = int(below[self.start]), int(below[self.stop])


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
        #: the offsets array covers the ids ``base`` .. ``base + span - 1`` (the run's own
        #: range: ids are handed out in the order keys arrive, so a run of recent rows, as
        #: an interval join keeps, spans few ids however many the index has seen)
        self.base, self.span = 0, 0
        if len(keep):
            self.base = int(sorted_ids[0])
            self.span = int(sorted_ids[-1]) - self.base + 1
        if len(keep) >= _DENSE_SHARE * self.span:
            span = self.span
            counts = np.bincount(sorted_ids.view(np.int64) - self.base, minlength=span)
            offsets = np.zeros(span + 2, dtype=np.int64)
            np.cumsum(counts, out=offsets[1:span + 1])
            offsets[span + 1] = offsets[span]   # any id outside the range has no rows
            self.offsets = offsets
        else:
            self.ids = sorted_ids.view(np.int64)

    @property
    def size(self) -> int:
        return self.stop - self.start

    def keep(self, mask: np.ndarray, below: np.ndarray) -> None:
        """Only the rows where ``mask`` is True stay, renumbered (``below[r]``: how many are
        kept below row ``r``); their order by id stays, so nothing is sorted again."""
        kept = mask[self.rows]
        rows = below[self.rows[kept]]
        self.rows = rows.astype(self.rows.dtype, copy=False)
        if self.offsets is not None:
            prefix = np.zeros(len(kept) + 1, dtype=np.int64)
            np.cumsum(kept, out=prefix[1:])
            self.offsets = prefix[self.offsets]
        else:
            assert self.ids is not None
            self.ids = self.ids[kept]
        self.start, self.stop = int(below[self.start]), int(below[self.stop])

    def bounds(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each id (>= 0), where its rows start and end in ``rows``."""
        if self.offsets is not None:
            at = ids - self.base
            at[(at < 0) | (at > self.span)] = self.span
            return self.offsets[at], self.offsets[at + 1]
        assert self.ids is not None
        return (np.searchsorted(self.ids, ids, side="left"),
                np.searchsorted(self.ids, ids, side="right"))


class KeyRows:
    """Row numbers of a side's stored rows by the value of its key columns ``names``: one
    integer-like column by its ``KeyIndex`` id, other keys by their hash (``bits`` of it:
    fewer only in tests, to force collisions)."""

    def __init__(self, names: str | Sequence[str], schema: pa.Schema, bits: int = 64):
        self.names = [names] if isinstance(names, str) else list(names)
        #: keys hashed (candidates then ``verified``) rather than their own int64 values
        self.hashed = not (len(self.names) == 1 and _integer_like(
            schema.field(self.names[0]).type))
        self.bits = bits
        self.keys = None if self.hashed else KeyIndex(
            self.names, schema, dense_span=_DENSE_SPAN, min_direct=_MIN_DIRECT)
        self.runs: list[_Run | _HashRun] = []
        self.covered = 0   # rows below this are in a run (or in ``unique``)
        #: integer keys while no id has two rows: each id's row (-1: none; ids past its
        #: end have none), what probes gather from instead of runs; None after that
        self.unique: np.ndarray | None = None if self.hashed else np.zeros(0, dtype=np.int64)

    def reset(self) -> None:
        """Forget the runs (rows were renumbered); the key ids stay valid."""
        self.runs = []
        self.covered = 0
        if self.unique is not None:
            self.unique[:] = -1

    def keep(self, mask: np.ndarray) -> None:
        """Only the rows where ``mask`` is True stay, renumbered in order (as the store's
        ``keep``): the runs drop the others, in time proportional to the rows covered."""
        mask = np.asarray(mask, dtype=bool)
        below = np.zeros(len(mask) + 1, dtype=np.int64)
        np.cumsum(mask, out=below[1:])
        if self.unique is not None:
            row = self.unique
            kept = row >= 0
            kept[kept] = mask[row[kept]]
            self.unique = np.where(kept, below[np.maximum(row, 0)], -1)
        for run in self.runs:
            run.keep(mask, below)
        self.runs = [r for r in self.runs if r.size]
        self.covered = int(below[self.covered])

    def pairs(self, probe: pa.Table | pa.RecordBatch | pa.Array | pa.ChunkedArray,
              names: Sequence[str] | None = None,
              stored: Callable[[np.ndarray], pa.Table] | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """``(probe rows, stored rows)`` of every pair with equal keys (probe columns
        ``names``, the side's own names by default), among the rows ``cover`` was given.
        Hashed keys need ``stored`` (rows -> their key columns) to verify the candidates."""
        names = self.names if names is None else list(names)
        probe = _as_table(probe, names)
        empty = np.zeros(0, dtype=np.int64)
        if not self.runs and self.unique is None:
            return empty, empty
        probe_rows, rows = [], []
        if self.hashed:
            h, at = _hashed(probe.select(names), self.bits)
            for run in self.runs:
                assert isinstance(run, _HashRun)
                pi, ri = run.pairs(h, at)
                if len(pi):
                    probe_rows.append(pi)
                    rows.append(ri)
        else:
            assert self.keys is not None
            ids = self.keys.find(probe.column(names[0]))
            if self.unique is not None:
                at = np.flatnonzero((ids >= 0) & (ids < len(self.unique)))
                row = self.unique[ids[at]]
                hit = row >= 0
                return (at, row) if hit.all() else (at[hit], row[hit])
            at = np.flatnonzero(ids >= 0)
            ids = ids[at]
            for run in self.runs:
                assert isinstance(run, _Run)
                pi, _, ri = _expand(at, *run.bounds(ids), run.rows)
                if len(pi):
                    probe_rows.append(pi)
                    rows.append(ri)
        if not probe_rows:
            return empty, empty
        pi, ri = (probe_rows[0], rows[0]) if len(probe_rows) == 1 else \
            (np.concatenate(probe_rows), np.concatenate(rows))
        if self.hashed:
            assert stored is not None, "hashed keys are verified against the stored keys"
            pi, ri = verified(probe, names, pi, stored(ri), ri)
        return pi, ri

    def cover(self, stored: pa.Table | pa.Array | pa.ChunkedArray) -> None:
        """Index the side's rows: ``stored`` is its key columns (``names``), of which the
        rows past ``covered`` are new (they become a run, and runs merge: see the module
        doc)."""
        stored = _as_table(stored, self.names)
        n = stored.num_rows
        if n <= self.covered:
            return
        if self.unique is not None:
            assert self.keys is not None
            ids = self.keys.find_or_add(stored.slice(self.covered).column(self.names[0]))
            if self._add_unique(ids, self.covered):
                self.covered = n
                return
            self.unique, self.covered = None, 0   # an id has two rows: runs over all rows
        start = self.covered
        while self.runs and self.runs[-1].size < _MERGE_RATIO * (n - start):
            start = self.runs.pop().start
        keys = stored.slice(start, n - start)
        if self.hashed:
            self.runs.append(_HashRun(start, n, *_hashed(keys.select(self.names), self.bits)))
        else:
            assert self.keys is not None
            ids = self.keys.find_or_add(keys.column(self.names[0]))
            self.runs.append(_Run(start, n, ids, self.keys.size))
        self.covered = n


    def _add_unique(self, ids: np.ndarray, start: int) -> bool:
        """Rows ``start``, ``start + 1``, … of ids ``ids`` (-1: NULL) into ``unique``; False
        (and ``unique`` no longer of use) when one of the ids has a row already or twice."""
        assert self.keys is not None and self.unique is not None
        if len(self.unique) < self.keys.size:   # room for every id, grown by doubling
            grown = np.full(max(2 * len(self.unique), self.keys.size, 1024), -1,
                            dtype=np.int64)
            grown[:len(self.unique)] = self.unique
            self.unique = grown
        at = np.flatnonzero(ids >= 0)
        ids = ids[at]
        if (self.unique[ids] >= 0).any():
            return False
        rows = at + start
        self.unique[ids] = rows
        return bool((self.unique[ids] == rows).all())   # (an id twice: one write lost)


def _as_table(rows: pa.Table | pa.RecordBatch | pa.Array | pa.ChunkedArray,
              names: Sequence[str]) -> pa.Table | pa.RecordBatch:
    """A key column given alone (one key) as a table of it."""
    if isinstance(rows, (pa.Array, pa.ChunkedArray)):
        return pa.table({names[0]: rows})
    return rows


def verified(probe: pa.Table | pa.RecordBatch, names: Sequence[str], pi: np.ndarray,
             stored: pa.Table, ri: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The candidate pairs ``(pi, ri)`` whose keys are equal: probe row ``pi[k]``'s columns
    ``names`` against row ``k`` of ``stored`` (the stored rows' keys, in pair order)."""
    if not len(pi):
        return pi, ri
    index = pa.array(pi)
    same = None
    for name, column in zip(names, stored.columns):
        equal = pc.equal(probe.column(name).take(index), column)
        same = equal if same is None else pc.and_(same, equal)
    assert same is not None
    keep = same.to_numpy(zero_copy_only=False) if isinstance(same, pa.Array) else \
        same.combine_chunks().to_numpy(zero_copy_only=False)
    keep = np.asarray(keep, dtype=bool)   # (NULL keys never became candidates)
    if keep.all():
        return pi, ri
    return pi[keep], ri[keep]
