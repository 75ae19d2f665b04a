"""The key cache of a lookup join against a LookupSource (a database table looked up by key).

For each input batch the join needs the table's rows for the batch's distinct keys. The cache
keeps, as Arrow tables, the keys looked up before (also those that found no row, so a missing
key is not asked again) and their rows; a batch costs one hash probe of its distinct keys
against the cached keys, and one ``lookup`` call for the misses. Entries older than ``ttl``
are looked up again; beyond ``max_rows`` cached keys the least recently used ones go (in bulk,
down to 90%, so eviction is rare). ``max_rows = 0`` turns caching off: every batch asks
the source for all its keys. Nothing is checkpointed: after a restore the cache starts cold.

Warm, with one key column unique in the cached rows (a primary key: the usual lookup), a
batch does not even take its distinct keys: each row finds its cached entry through a
``UniquePositions`` over the cached keys (a NumPy direct-address table for integer keys in a
compact range), and its row by one more gather; the join is then one ``take`` of the cached
rows (operators.lookup_join).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from caudal import compute as pc
from caudal.connectors.base import LookupSource
from caudal.operators.join_rows import match
from caudal.operators.keyed_tables import conform_table, from_numpy, lookup, positional

if TYPE_CHECKING:
    import polars as pl

#: a direct-address table spans at most this many slots per value, beyond a fixed allowance
_SPAN_PER_VALUE = 4
_SPAN_ALLOWANCE = 1 << 16


class UniquePositions:
    """Each value's position in a column of distinct non-NULL values, built once and probed
    per batch. Integer values whose range is at most ~4 slots per value get a NumPy
    direct-address table (a probe is one subtraction and one gather, no hashing); others go
    through Arrow's hash lookup (``index_in``) of the column cast to the probe's type."""

    def __init__(self, values: pa.Array | pa.ChunkedArray):
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        self.values = values
        self._as: dict[pa.DataType, pa.Array | None] = {values.type: values}
        self._lut: np.ndarray | None = None
        self._lo = self._hi = 0
        if len(values) and pa.types.is_integer(values.type):
            ints = _int64(values)
            if ints is not None:
                lo, hi = int(ints.min()), int(ints.max())
                if hi - lo + 1 <= _SPAN_PER_VALUE * len(ints) + _SPAN_ALLOWANCE:
                    self._lo, self._hi = lo, hi
                    self._lut = np.full(hi - lo + 1, -1, dtype=np.int64)
                    self._lut[ints - lo] = np.arange(len(ints), dtype=np.int64)

    def positions(self, column: pa.Array) -> np.ndarray | None:
        """For each value of ``column``, its position, or -1 (absent or NULL). None when the
        values cannot be compared with the column's type (the caller then joins)."""
        if self._lut is not None and pa.types.is_integer(column.type):
            ints = _int64(column)
            if ints is not None:
                return self._direct(ints, pc.is_null(column).to_numpy(zero_copy_only=False)
                                    if column.null_count else None)
        value_set = self._as_type(column.type)
        if value_set is None:
            return None
        at = pc.index_in(column, value_set=value_set, skip_nulls=True)
        return pc.fill_null(at, -1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)

    def _direct(self, ints: np.ndarray, nulls: np.ndarray | None) -> np.ndarray:
        assert self._lut is not None
        if not len(ints):
            return np.zeros(0, dtype=np.int64)
        if int(ints.min()) >= self._lo and int(ints.max()) <= self._hi:
            at = self._lut[ints - self._lo if self._lo else ints]
        else:
            inside = (ints >= self._lo) & (ints <= self._hi)
            at = np.full(len(ints), -1, dtype=np.int64)
            at[inside] = self._lut[ints[inside] - self._lo]
        if nulls is not None:
            at[nulls] = -1
        return at

    def _as_type(self, t: pa.DataType) -> pa.Array | None:
        if t not in self._as:
            try:
                self._as[t] = pc.cast(self.values, t)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                self._as[t] = None
        return self._as[t]


def _int64(values: pa.Array) -> np.ndarray | None:
    """An integer column as int64 NumPy values, NULL as 0 (None if a value does not fit)."""
    if not pa.types.is_int64(values.type):
        try:
            values = pc.cast(values, pa.int64())
        except pa.ArrowInvalid:  # uint64 beyond int64
            return None
    if values.null_count:
        values = pc.fill_null(values, 0)
    return values.to_numpy(zero_copy_only=False)


class LookupCache:
    def __init__(self, source: LookupSource, max_rows: int, ttl_s: float | None):
        self.source = source
        self.keys = list(source.keys)
        self.max_rows = max_rows
        self.ttl_s = ttl_s
        key_schema = pa.schema([source.schema.field(k) for k in self.keys])
        #: cached keys (distinct), when each was looked up (monotonic seconds) and last
        #: used (the ``tick`` of the last call that used it: only its order matters)
        self.cached_keys: pa.Table = key_schema.empty_table()
        self.loaded_at = np.zeros(0, dtype=np.float64)
        self.used_at = np.zeros(0, dtype=np.int64)
        self._tick = 0
        #: the table's rows for the cached keys
        self.rows: pa.Table = source.schema.empty_table()
        #: a hash-join build side over ``rows`` (made when a batch needs the general join)
        self._build: tuple[pa.Table, pl.DataFrame] | None = None
        self.hits = 0
        self.misses = 0
        #: the warm path's view of the cache, rebuilt when the cached keys change: each
        #: cached key's entry, and each entry's row (-1 for a key without one; None when the
        #: rows are not unique by key)
        self._warm_of: pa.Table | None = None
        self._entries: UniquePositions | None = None
        self._entry_row: np.ndarray | None = None

    def rows_for(self, keys: pa.Table) -> pa.Table:
        """The table's rows for ``keys`` (distinct, named as the source's keys, no NULLs):
        ``rows`` itself unless the cache is off or evicted some of them in this call."""
        if self.max_rows <= 0:
            rows = self.source.lookup(keys)
            self.misses += keys.num_rows
            return rows
        now = time.monotonic()
        self._tick += 1
        at = self._positions(keys)
        hit = at >= 0
        if self.ttl_s is not None and hit.any():
            stale = hit.copy()
            stale[hit] = self.loaded_at[at[hit]] < now - self.ttl_s
            if stale.any():
                self._drop(np.unique(at[stale]))
                at = self._positions(keys)
                hit = at >= 0
        self.used_at[at[hit]] = self._tick
        self.hits += int(hit.sum())
        if not hit.all():
            missing = pc.filter(keys, from_numpy(~hit))
            self.misses += missing.num_rows
            found = self.source.lookup(missing)
            self.cached_keys = pa.concat_tables(
                [self.cached_keys, conform_table(missing, self.cached_keys.schema)])
            self.loaded_at = np.concatenate([self.loaded_at, np.full(missing.num_rows, now)])
            self.used_at = np.concatenate([self.used_at,
                                           np.full(missing.num_rows, self._tick)])
            if found.num_rows:
                self.rows = pa.concat_tables([self.rows, conform_table(found, self.rows.schema)])
            self.rows = self.rows.combine_chunks()
            self.cached_keys = self.cached_keys.combine_chunks()
            self._warm_of = None
            if self.cached_keys.num_rows > self.max_rows:
                # this batch joins with everything loaded; later ones see the evicted cache
                rows = self.rows
                self._evict()
                return rows
        return self.rows

    def build_of(self, rows: pa.Table) -> pl.DataFrame:
        """A hash-join build side over ``rows`` (what ``rows_for`` returned) for
        ``join_rows.match``; kept while ``rows`` is the cache's."""
        if self._build is not None and self._build[0] is rows:
            return self._build[1]
        build = positional(rows, self.keys)
        if rows is self.rows:
            self._build = (rows, build)
        return build

    def warm_positions(self, column: pa.Array, count: bool = True) -> np.ndarray | None:
        """For each value of a batch's one key column, its row in ``rows`` (-1: a NULL, or a
        key cached as having no row): the warm path, without taking the batch's distinct
        keys. Only when it is exact: the cached rows are unique by key, no entry is past its
        TTL, and every non-NULL value is cached (else None, and the batch goes through
        ``rows_for``). Refreshes the LRU; ``count``: the hits count too."""
        if len(self.keys) != 1 or self.max_rows <= 0 or not self.cached_keys.num_rows:
            return None
        if self.ttl_s is not None and self.loaded_at.min() < time.monotonic() - self.ttl_s:
            return None
        if self._warm_of is not self.rows:
            self._warm_view()
        if self._entry_row is None:
            return None
        assert self._entries is not None
        entry = self._entries.positions(column)
        if entry is None:
            return None
        nulls = column.null_count
        valid = pc.is_valid(column).to_numpy(zero_copy_only=False) if nulls else None
        used = entry if valid is None else entry[valid]
        if len(used) and used.min() < 0:
            return None  # a key not cached
        self._tick += 1
        self.used_at[used] = self._tick
        if count:
            self.hits += int(np.count_nonzero(self.used_at == self._tick))
        at = self._entry_row[entry]
        if valid is not None:
            at[~valid] = -1
        return at

    def _warm_view(self) -> None:
        self._warm_of = self.rows
        self._entries = UniquePositions(self.cached_keys.column(0))
        key = self.rows.column(self.keys[0])
        self._entry_row = None
        if not key.null_count and pc.count_distinct(key).as_py() == len(key):
            by_key = UniquePositions(key).positions(self.cached_keys.column(0).combine_chunks())
            self._entry_row = by_key

    def _positions(self, keys: pa.Table) -> np.ndarray:
        """For each key, its row in ``cached_keys``, or -1."""
        if len(self.keys) == 1:   # Arrow's hash lookup, cheaper than a join for one column
            found = pc.index_in(keys.column(0), value_set=self.cached_keys.column(0))
            return pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        return lookup(keys, self.keys, self.cached_keys, self.keys)

    def _drop(self, positions: np.ndarray) -> None:
        keep = np.ones(self.cached_keys.num_rows, dtype=bool)
        keep[positions] = False
        self._keep(keep)

    def _evict(self) -> None:
        """Keep the 90% most recently used of ``max_rows`` keys."""
        target = max(int(self.max_rows * 0.9), 1)
        order = np.argsort(-self.used_at, kind="stable")
        keep = np.zeros(self.cached_keys.num_rows, dtype=bool)
        keep[order[:target]] = True
        self._keep(keep)

    def _keep(self, keep: np.ndarray) -> None:
        mask = from_numpy(keep)
        self.cached_keys = pc.filter(self.cached_keys, mask)
        self.loaded_at = self.loaded_at[keep]
        self.used_at = self.used_at[keep]
        rows_at, _ = match(self.rows, self.keys, self.cached_keys, self.keys)
        kept_rows = np.zeros(self.rows.num_rows, dtype=bool)
        kept_rows[rows_at] = True
        self.rows = pc.filter(self.rows, from_numpy(kept_rows))
        self._warm_of = None

    def close(self) -> None:
        self.source.close()


def distinct_keys(batch: pa.Table, columns: list[str], names: list[str]) -> pa.Table:
    """The distinct non-NULL values of ``columns`` of ``batch``, named ``names`` (a NULL key
    matches nothing, so it is never looked up)."""
    if len(columns) == 1:
        values = batch.column(columns[0])
        values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
        return pa.table({names[0]: pc.unique(pc.drop_null(values))})
    table = batch.select(columns)
    for c in columns:
        table = pc.filter(table, pc.is_valid(table.column(c)))
    distinct = table.group_by(columns, use_threads=False).aggregate([])
    return distinct.rename_columns(names)


def unique_positions(table: pa.Table, key: str) -> UniquePositions | None:
    """Positions of ``table``'s rows by its ``key`` column when no two rows share a value
    and none is NULL (a primary key: the usual lookup); else None. Then a batch's keys
    find their one match each, in the batch's order."""
    column = table.column(key).combine_chunks()
    if column.null_count or pc.count_distinct(column).as_py() != len(column):
        return None
    return UniquePositions(column)
