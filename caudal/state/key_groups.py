"""Key groups: which subtask owns a key, for hash partitioning and keyed state (as in Flink).

A key hashes to one of ``max_key_groups`` key groups, and subtask ``i`` of ``p`` owns the
contiguous key groups ``g`` with ``g * p // max_key_groups == i`` (state.rescale). The hash
is part of the checkpoint format: state written by one process is read back by another, on
another machine, after an upgrade. So it is defined here, bit for bit, in NumPy (splitmix64 of
value bit patterns; a polynomial over the bytes of strings), never Python's ``hash()`` or a
library's hash, whose values may change between versions or runs.

Equal SQL values hash equally whatever their physical type: any integer width, float32 or
float64, string or large string or view, timestamps of any unit (compared in µs).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from caudal.errors import PlanError
from caudal.mixing import splitmix64

#: the hash of NULL (a fixed, arbitrary constant)
NULL_HASH = np.uint64(0x6A09E667F3BCC909)
#: odd multiplier of the byte polynomial, and of the combination of several columns
_BYTE_BASE = np.uint64(0x100000001B3)
_COMBINE = np.uint64(0xC2B2AE3D27D4EB4F)
_LENGTH_SALT = np.uint64(0x165667B19E3779F9)
#: byte powers are tabulated up to this position; beyond it they are a product of two tables
_POW_BLOCK = 4096


def _powers(count: int, base: np.uint64) -> np.ndarray:
    """base**0 .. base**(count-1) modulo 2**64."""
    out = np.full(count, base, np.uint64)
    out[0] = 1
    return np.cumprod(out, dtype=np.uint64)


_POW = _powers(_POW_BLOCK, _BYTE_BASE)
_POW_STEP = np.uint64(int(_POW[-1]) * int(_BYTE_BASE) % (1 << 64))  # base ** _POW_BLOCK


def _byte_weights(position: np.ndarray) -> np.ndarray:
    """_BYTE_BASE ** position (mod 2**64) for positions of bytes within their string."""
    if len(position) == 0 or int(position.max()) < _POW_BLOCK:
        return _POW[position]
    high = _powers(int(position.max()) // _POW_BLOCK + 1, _POW_STEP)
    return _POW[position % _POW_BLOCK] * high[position // _POW_BLOCK]


def _hash_bytes(array: pa.Array) -> np.ndarray:
    """Hash of each value of a string/binary array (any offset width), from its buffers:
    sum of (byte + 1) * base**position, mixed with the length."""
    n = len(array)
    large = pa.types.is_large_string(array.type) or pa.types.is_large_binary(array.type)
    buffers = array.buffers()
    offsets = np.frombuffer(buffers[1], np.int64 if large else np.int32,
                            count=array.offset + n + 1)[array.offset:].astype(np.int64)
    starts, lengths = offsets[:-1], np.diff(offsets)
    first, last = int(offsets[0]), int(offsets[-1])
    sums = np.zeros(n, np.uint64)
    if last > first:
        data = np.frombuffer(buffers[2], np.uint8, count=last - first, offset=first)
        position = np.arange(last - first, dtype=np.int64)
        position -= np.repeat(starts - first, lengths)
        terms = data.astype(np.uint64)
        terms += np.uint64(1)
        terms *= _byte_weights(position)
        nonempty = lengths > 0
        # empty strings own no bytes, so each non-empty start opens exactly its own segment
        sums[nonempty] = np.add.reduceat(terms, (starts - first)[nonempty])
    lengths_u = lengths.astype(np.uint64)
    lengths_u *= _LENGTH_SALT
    sums ^= lengths_u
    return splitmix64(sums)


def _hash_words(values: np.ndarray) -> np.ndarray:
    """Hash of 64-bit patterns (copied: the input may be a view of an Arrow buffer)."""
    return splitmix64(values.astype(np.uint64, copy=True))


_TIME_UNIT_US = {"s": (1_000_000, 1), "ms": (1000, 1), "us": (1, 1), "ns": (1, 1000)}


def _values(array: pa.Array) -> np.ndarray:
    """The values buffer of a fixed-width array as NumPy, zero-copy (null slots arbitrary)."""
    t = array.type
    if pa.types.is_boolean(t):
        return array.fill_null(False).to_numpy(zero_copy_only=False)
    if pa.types.is_floating(t):
        dtype = np.dtype(f"<f{t.bit_width // 8}")
    elif pa.types.is_unsigned_integer(t):
        dtype = np.dtype(f"<u{t.bit_width // 8}")
    else:
        dtype = np.dtype(f"<i{t.bit_width // 8}")
    return np.frombuffer(array.buffers()[1], dtype, count=array.offset + len(array))[
        array.offset:]


def _in_us(array: pa.Array, unit: str) -> np.ndarray:
    values = _values(array).astype(np.int64)
    mul, div = _TIME_UNIT_US[unit]
    return values * mul if div == 1 else values // div


def hash_array(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The stable hash (uint64) of each value of one column; NULL hashes to ``NULL_HASH``."""
    if isinstance(array, pa.ChunkedArray):
        if array.num_chunks == 0:
            return np.zeros(0, np.uint64)
        return np.concatenate([hash_array(c) for c in array.chunks]) \
            if array.num_chunks > 1 else hash_array(array.chunk(0))
    t = array.type
    if pa.types.is_dictionary(t):
        if len(array.dictionary) == 0:
            return np.full(len(array), NULL_HASH, np.uint64)
        indices = _values(array.indices).clip(0, len(array.dictionary) - 1)
        return _with_nulls(hash_array(array.dictionary)[indices], array)
    if isinstance(t, pa.ExtensionType):
        return hash_array(array.storage)
    if pa.types.is_null(t):
        return np.full(len(array), NULL_HASH, np.uint64)
    if pa.types.is_string(t) or pa.types.is_binary(t) or pa.types.is_large_string(t) or \
            pa.types.is_large_binary(t):
        hashes = _hash_bytes(array)
    elif pa.types.is_string_view(t):
        hashes = _hash_bytes(array.cast(pa.string()))
    elif pa.types.is_binary_view(t) or pa.types.is_fixed_size_binary(t):
        hashes = _hash_bytes(array.cast(pa.binary()))
    elif pa.types.is_boolean(t) or pa.types.is_integer(t):
        values = _values(array)
        # _hash_words copies, so no copy here (a view of the Arrow buffer is fine)
        hashes = _hash_words(values.astype(np.uint64, copy=False)
                             if pa.types.is_unsigned_integer(t)
                             else values.astype(np.int64, copy=False))
    elif pa.types.is_floating(t):
        values = _values(array).astype(np.float64)
        values += 0.0                                  # -0.0 == 0.0
        values[np.isnan(values)] = np.nan              # one NaN
        hashes = splitmix64(values.view(np.uint64))
    elif pa.types.is_timestamp(t) or pa.types.is_duration(t) or pa.types.is_time(t):
        hashes = _hash_words(_in_us(array, t.unit))
    elif pa.types.is_date32(t):
        hashes = _hash_words(_values(array).astype(np.int64))
    elif pa.types.is_date64(t):
        hashes = _hash_words(_values(array) // 86_400_000)
    elif pa.types.is_decimal(t) or pa.types.is_interval(t):
        hashes = _hash_fixed_words(array)
    elif pa.types.is_struct(t):
        hashes = _combine([hash_array(array.field(i)) for i in range(t.num_fields)],
                          len(array))
    else:
        raise PlanError(f"cannot partition or key state by a column of type {t}",
                        hint="key by scalar columns (numbers, text, timestamps, structs)")
    return _with_nulls(hashes, array)


def _hash_fixed_words(array: pa.Array) -> np.ndarray:
    """Hash of fixed-width values made of several 64-bit words (decimals, intervals)."""
    width = array.type.byte_width
    if width < 8:
        narrow = np.frombuffer(array.buffers()[1], np.dtype(f"<i{width}"),
                               count=array.offset + len(array))[array.offset:]
        return _hash_words(narrow.astype(np.int64))
    words = width // 8
    data = np.frombuffer(array.buffers()[1], np.uint64, count=(array.offset + len(array)) * words)
    matrix = data.reshape(-1, words)[array.offset:]
    return _combine([_hash_words(matrix[:, w]) for w in range(words)], len(array))


def _with_nulls(hashes: np.ndarray, array: pa.Array) -> np.ndarray:
    if array.null_count:
        hashes[~array.is_valid().to_numpy(zero_copy_only=False)] = NULL_HASH
    return hashes


def _combine(hashes: list[np.ndarray], n: int) -> np.ndarray:
    """One hash from the hashes of several columns, order-sensitive."""
    if not hashes:
        return np.full(n, NULL_HASH, np.uint64)
    if len(hashes) == 1:  # a fresh array of the caller's: nothing to combine or protect
        return hashes[0]
    acc = hashes[0].copy()
    for h in hashes[1:]:
        acc *= _COMBINE
        acc += h
        splitmix64(acc)
    return acc


def hash_columns(data: pa.RecordBatch | pa.Table | Sequence[pa.Array],
                 keys: Sequence[str] | None = None) -> np.ndarray:
    """The stable hash (uint64) of each row's key: the columns ``keys`` of a batch or table,
    or a sequence of arrays. One column hashes to ``hash_array`` of it."""
    if isinstance(data, (pa.RecordBatch, pa.Table)):
        if not keys:
            raise PlanError("hash partitioning needs at least one key column")
        arrays = [data.column(k) for k in keys]
        n = data.num_rows
    else:
        arrays = list(data)
        n = len(arrays[0]) if arrays else 0
    return _combine([hash_array(a) for a in arrays], n)


def key_group(hashes: np.ndarray, max_key_groups: int) -> np.ndarray:
    """The key group (int32, 0 .. max_key_groups-1) of each hash."""
    if max_key_groups & (max_key_groups - 1) == 0:  # a power of two: the same, 5x faster
        return (hashes & np.uint64(max_key_groups - 1)).astype(np.int32)
    return (hashes % np.uint64(max_key_groups)).astype(np.int32)


def subtask_for_key_group(kg: np.ndarray | int, max_key_groups: int,
                          parallelism: int) -> np.ndarray | int:
    """The subtask owning each key group: ``kg * parallelism // max_key_groups``."""
    if isinstance(kg, np.ndarray):
        return kg.astype(np.int64) * parallelism // max_key_groups
    return kg * parallelism // max_key_groups


def _subtasks_of_hashes(hashes: np.ndarray, parallelism: int,
                        max_key_groups: int) -> np.ndarray:
    """The subtask of each key hash (consumes ``hashes``)."""
    if max_key_groups & (max_key_groups - 1) == 0 and parallelism <= 256:
        # the same as subtask_for_key_group(key_group(...)): a mask, a product and a shift
        # in place of a division, in one byte per row
        hashes &= np.uint64(max_key_groups - 1)
        hashes *= np.uint64(parallelism)
        hashes >>= np.uint64(max_key_groups.bit_length() - 1)
        return hashes.astype(np.uint8)
    return subtask_for_key_group(key_group(hashes, max_key_groups), max_key_groups,
                                 parallelism)


class IntKeyTargets:
    """The subtask of each value of one signed-integer key column, looked up in a table of
    the subtasks of a range of key values instead of hashed row by row.

    Hashing an int64 key (splitmix64, ~8 NumPy passes) was ~9 ns a row, most of what a hash
    edge costs on a narrow batch; a lookup is a min, a max, a subtraction and a gather. The
    table holds the subtask of every key of ``[base, base + len(table))``, computed with the
    same hash, so a row goes exactly where hashing it sends it (key groups are part of the
    checkpoint format). It persists across batches and grows to cover the keys seen (ids
    that grow with time extend it at its end, by doubling); a batch with NULL keys or keys
    spanning more than ``MAX_SPAN`` values is hashed instead, and so is one whose keys would
    make the entries computed exceed the rows seen (plus a batch's worth): an entry costs
    what hashing a row costs, so a table only pays where keys repeat, e.g. bids of recent
    auctions (~15 rows a key), not partial states (one row per key and batch, ids growing),
    where a budget of 4 entries a row had made a tumbling count's edge 0.07 -> 0.17 CPU s."""

    #: entries (one byte each) of the table at most
    MAX_SPAN = 1 << 22
    #: table entries computed per row seen, at most (beyond a first batch's worth)
    _BUDGET = 1
    _INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1

    def __init__(self, parallelism: int, max_key_groups: int):
        self.parallelism = parallelism
        self.max_key_groups = max_key_groups
        self.base = 0
        self.table = np.zeros(0, np.uint8)
        self.rows_seen = 0
        self.computed = 0

    def subtasks(self, column: pa.Array) -> np.ndarray | None:
        """The subtask of each row, or None when this column is not one to look up."""
        if column.null_count or not pa.types.is_signed_integer(column.type) or not len(column):
            return None
        self.rows_seen += len(column)
        values = _values(column)
        lo, hi = int(values.min()), int(values.max())
        if hi - lo >= self.MAX_SPAN:
            return None
        if (lo < self.base or hi >= self.base + len(self.table)) and not self._cover(lo, hi):
            return None
        offsets = values.astype(np.int64)
        offsets -= np.int64(self.base)
        return self.table[offsets]

    def _cover(self, lo: int, hi: int) -> bool:
        """Extend (or move) the table so it covers ``[lo, hi]``; False if over budget."""
        end = self.base + len(self.table)  # exclusive
        new_lo, new_end = min(lo, self.base), max(hi + 1, end)
        if len(self.table) and new_end - new_lo <= self.MAX_SPAN:
            grow = len(self.table)  # extend a side that lacks by at least this: doubling
            if new_lo < self.base:
                new_lo = max(min(new_lo, self.base - grow), new_end - self.MAX_SPAN)
            if new_end > end:
                new_end = min(max(new_end, end + grow), new_lo + self.MAX_SPAN)
            keep = True
        else:  # the first batch, or keys far from the table's: start over, room to grow
            new_lo, new_end = lo, min(hi + 1 + (hi - lo + 1), lo + self.MAX_SPAN)
            keep = False
        new_lo = max(new_lo, self._INT64_MIN)
        new_end = min(new_end, self._INT64_MAX + 1)
        needed = (new_end - new_lo) - (len(self.table) if keep else 0)
        if self.computed + needed > self._BUDGET * self.rows_seen + (1 << 16):
            return False
        self.computed += needed
        if keep:
            parts = [self._compute(new_lo, self.base), self.table, self._compute(end, new_end)]
            self.table = np.concatenate(parts)
        else:
            self.table = self._compute(new_lo, new_end)
        self.base = new_lo
        return True

    def _compute(self, start: int, stop: int) -> np.ndarray:
        """The subtasks of the keys ``start .. stop - 1``."""
        if stop <= start:
            return np.zeros(0, np.uint8)
        keys = np.arange(stop - start, dtype=np.int64)
        keys += np.int64(start)
        targets = _subtasks_of_hashes(_hash_words(keys), self.parallelism, self.max_key_groups)
        return targets.astype(np.uint8, copy=False)


def split_by_subtask(batch: pa.RecordBatch, keys: Sequence[str], parallelism: int,
                     max_key_groups: int = 128,
                     lookup: IntKeyTargets | None = None) -> list[tuple[int, pa.RecordBatch]]:
    """Partition a batch by key: (subtask, rows for it) for every subtask that gets rows,
    rows kept in their input order: one ``take`` per target (found by a pass per target when
    there are few, else by one stable sort). ``lookup`` (one signed-integer key column) finds
    the targets in a table that persists across batches rather than by hashing each row."""
    if batch.num_rows == 0:
        return []
    if parallelism == 1:
        return [(0, batch)]
    targets = lookup.subtasks(batch.column(keys[0])) if lookup is not None else None
    if targets is None:
        targets = _subtasks_of_hashes(hash_columns(batch, keys), parallelism, max_key_groups)
    if parallelism <= 8:
        # few targets: one pass per target finds its rows in order (cheaper than a sort)
        out = []
        for subtask in range(parallelism):
            rows = np.flatnonzero(targets == subtask)
            if len(rows) == batch.num_rows:
                return [(subtask, batch)]
            if len(rows):
                out.append((subtask, batch.take(pa.array(rows))))
        return out
    counts = np.bincount(targets, minlength=parallelism)
    if counts.max() == batch.num_rows:
        return [(int(targets[0]), batch)]
    # a stable sort of small ints is a radix sort: linear time
    order = np.argsort(targets, kind="stable")
    ordered = batch.take(pa.array(order))
    out = []
    start = 0
    for subtask in np.flatnonzero(counts):
        count = int(counts[subtask])
        out.append((int(subtask), ordered.slice(start, count)))
        start += count
    return out

