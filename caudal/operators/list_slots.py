"""A list column by key id, in NumPy: each key's values in a run of one pool array.

An updating aggregate keeps list states (the values of a median or percentile, array_agg's
values) per key. Kept as one Arrow list array, a flush that updates some keys rewrote the
whole column (concatenate, then take), so its cost grew with the state times the flushes.
Here each key owns a run of the pool (start, length, capacity): a new list no longer than
its run is written in place, a longer one moves to the end of the pool with room to grow
(half again its length), and the pool is compacted when more than half of it is runs left
behind. So writing the lists of the keys a flush touched costs those lists' values, not the
state. Only lists of integers or floats without NULL values are kept so (``accepts``):
others stay Arrow arrays in the SlotTable.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from caudal import compute as pc
from caudal.compute import from_numpy
from caudal.operators.keyed_tables import as_array

#: keys (and pool values) to start with
_MIN = 1024


def _numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_float32(t) or pa.types.is_float64(t)


def _gather_index(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The positions of the runs (``starts``, ``lengths``) one after the other, and the
    list offsets of the result (no Python per run)."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    if not total:
        return np.zeros(0, dtype=np.int64), offsets
    shift = np.repeat(starts - offsets[:-1], lengths)
    shift += np.arange(total, dtype=np.int64)
    return shift, offsets


class ListSlots:
    """The lists of one column, list ``i`` for key ``i`` (see the module)."""

    @staticmethod
    def accepts(t: pa.DataType) -> bool:
        """Whether a column of type ``t`` can be kept here (its values may still hold a
        NULL, which ``put`` refuses: then the caller keeps it as Arrow)."""
        return pa.types.is_list(t) and _numeric(t.value_type)

    def __init__(self, t: pa.DataType):
        self.type = t
        self.dtype = t.value_type.to_pandas_dtype()
        self.size = 0
        self.start = np.zeros(_MIN, dtype=np.int64)
        self.length = np.zeros(_MIN, dtype=np.int64)
        self.room = np.zeros(_MIN, dtype=np.int64)
        self.valid = np.zeros(_MIN, dtype=bool)
        self.pool = np.zeros(_MIN, dtype=self.dtype)
        self.used = 0      # pool positions handed out
        self.dropped = 0   # of which in runs left behind

    def take(self, ids: np.ndarray) -> pa.Array:
        """The lists of keys ``ids`` (a copy)."""
        ids = np.asarray(ids, dtype=np.int64)
        where, offsets = _gather_index(self.start[ids], self.length[ids])
        values = from_numpy(self.pool[where])   # (the value type's own NumPy dtype)
        valid = self.valid[ids]
        return pa.ListArray.from_arrays(from_numpy(offsets.astype(np.int32)), values,
                                        type=self.type,
                                        mask=None if valid.all() else from_numpy(~valid))

    def put(self, ids: np.ndarray, lists: pa.Array | pa.ChunkedArray) -> bool:
        """List ``j`` of ``lists`` becomes key ``ids[j]``'s (ids from ``size`` on are new
        keys); False, with nothing written, when a list holds a NULL value."""
        lists = as_array(lists)
        if not lists.type.equals(self.type):
            lists = lists.cast(self.type)
        flat = pc.list_flatten(lists)
        if flat.null_count:
            return False
        ids = np.asarray(ids, dtype=np.int64)
        lengths = pc.list_value_length(lists)
        lengths = (pc.fill_null(lengths, 0) if lengths.null_count else lengths).to_numpy(
            zero_copy_only=False).astype(np.int64)
        size = max(self.size, int(ids.max()) + 1) if len(ids) else self.size
        self._reserve(size)
        if size > self.size:  # keys never written before own no run
            self.start[self.size:size] = 0
            self.length[self.size:size] = 0
            self.room[self.size:size] = 0
            self.valid[self.size:size] = False
        moving = lengths > self.room[ids]
        values = flat.to_numpy(zero_copy_only=False)
        if moving.all():
            # every list moves (new keys, or all grew): one block at the end of the pool,
            # written as one copy, each run exactly its length (one that grows later moves)
            self.dropped += int(self.room[ids].sum())
            self._grow_pool(self.used + len(values))
            starts = np.zeros(len(ids), dtype=np.int64)
            np.cumsum(lengths[:-1], out=starts[1:])
            self.start[ids] = starts + self.used
            self.room[ids] = lengths
            self.pool[self.used:self.used + len(values)] = values
            self.used += len(values)
        else:
            if moving.any():
                moved = ids[moving]
                self.dropped += int(self.room[moved].sum())
                room = lengths[moving] + (lengths[moving] >> 1)
                self._grow_pool(self.used + int(room.sum()))
                starts = np.zeros(len(room), dtype=np.int64)
                np.cumsum(room[:-1], out=starts[1:])
                self.start[moved] = starts + self.used
                self.room[moved] = room
                self.used += int(room.sum())
            where, _ = _gather_index(self.start[ids], lengths)
            self.pool[where] = values
        self.length[ids] = lengths
        self.valid[ids] = lists.is_valid().to_numpy(zero_copy_only=False) \
            if lists.null_count else True
        self.size = size
        if self.dropped > max(self.used >> 1, _MIN):
            self._compact()
        return True

    def _reserve(self, size: int) -> None:
        capacity = len(self.start)
        if size <= capacity:
            return
        while capacity < size:
            capacity *= 2
        for name in ("start", "length", "room", "valid"):
            old = getattr(self, name)
            grown = np.zeros(capacity, dtype=old.dtype)
            grown[:self.size] = old[:self.size]
            setattr(self, name, grown)

    def _grow_pool(self, need: int) -> None:
        capacity = len(self.pool)
        if need <= capacity:
            return
        capacity = max(need, 2 * capacity)
        grown = np.empty(capacity, dtype=self.dtype)
        grown[:self.used] = self.pool[:self.used]
        self.pool = grown

    def _compact(self) -> None:
        """The live runs copied together in key order (each keeps its room)."""
        n = self.size
        room = self.room[:n]
        starts = np.zeros(n, dtype=np.int64)
        np.cumsum(room[:-1], out=starts[1:])
        total = int(room.sum())
        pool = np.empty(max(total + (total >> 1), _MIN), dtype=self.dtype)
        src, _ = _gather_index(self.start[:n], self.length[:n])
        dst, _ = _gather_index(starts, self.length[:n])
        pool[dst] = self.pool[src]
        self.pool, self.used, self.dropped = pool, total, 0
        self.start[:n] = starts
