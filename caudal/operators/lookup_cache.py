"""The key cache of a lookup join against a LookupSource (a database table looked up by key).

For each input batch the join needs the table's rows for the batch's distinct keys. The cache
keeps, as Arrow tables, the keys looked up before (also those that found no row, so a missing
key is not asked again) and their rows; a batch costs one hash probe of its distinct keys
against the cached keys, and one ``lookup`` call for the misses. Entries older than ``ttl``
are looked up again; beyond ``max_rows`` cached keys the least recently used ones go (in bulk,
down to 90%, so eviction is rare). ``max_rows = 0`` turns caching off: every batch asks
the source for all its keys. Nothing is checkpointed: after a restore the cache starts cold.
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from caudal.connectors.base import LookupSource
from caudal.operators.join_rows import match
from caudal.operators.keyed_tables import lookup, positional


class LookupCache:
    def __init__(self, source: LookupSource, max_rows: int, ttl_s: float | None):
        self.source = source
        self.keys = list(source.keys)
        self.max_rows = max_rows
        self.ttl_s = ttl_s
        key_schema = pa.schema([source.schema.field(k) for k in self.keys])
        #: cached keys (distinct), when each was looked up and last used
        self.cached_keys: pa.Table = key_schema.empty_table()
        self.loaded_at = np.zeros(0, dtype=np.float64)
        self.used_at = np.zeros(0, dtype=np.float64)
        #: the table's rows for the cached keys, and a hash-join build side over them
        self.rows: pa.Table = source.schema.empty_table()
        self._build = positional(self.rows, self.keys)
        self.hits = 0
        self.misses = 0
        #: the warm path's view of ``rows``: for which rows, their unique key column (None
        #: when not unique) and each row's entry in ``cached_keys``
        self._warm_of: pa.Table | None = None
        self._warm_key: pa.Array | None = None
        self._row_entry: np.ndarray | None = None

    def rows_for(self, keys: pa.Table) -> tuple[pa.Table, object]:
        """The table's rows for ``keys`` (distinct, named as the source's keys, no NULLs)
        and a build side over them for ``join_rows.match``."""
        if self.max_rows <= 0:
            rows = self.source.lookup(keys)
            self.misses += keys.num_rows
            return rows, positional(rows, self.keys)
        now = time.monotonic()
        at = self._positions(keys)
        hit = at >= 0
        if self.ttl_s is not None and hit.any():
            stale = hit.copy()
            stale[hit] = self.loaded_at[at[hit]] < now - self.ttl_s
            if stale.any():
                self._drop(np.unique(at[stale]))
                at = self._positions(keys)
                hit = at >= 0
        self.used_at[at[hit]] = now
        self.hits += int(hit.sum())
        if not hit.all():
            missing = keys.filter(pa.array(~hit))
            self.misses += missing.num_rows
            found = self.source.lookup(missing)
            self.cached_keys = pa.concat_tables([self.cached_keys, missing.select(self.keys)
                                                 .cast(self.cached_keys.schema)])
            self.loaded_at = np.concatenate([self.loaded_at, np.full(missing.num_rows, now)])
            self.used_at = np.concatenate([self.used_at, np.full(missing.num_rows, now)])
            if found.num_rows:
                self.rows = pa.concat_tables([self.rows, found.cast(self.rows.schema)])
            self.rows = self.rows.combine_chunks()
            self.cached_keys = self.cached_keys.combine_chunks()
            self._build = positional(self.rows, self.keys)
            if self.cached_keys.num_rows > self.max_rows:
                # this batch joins with everything loaded; later ones see the evicted cache
                rows, build = self.rows, self._build
                self._evict()
                return rows, build
        return self.rows, self._build

    def warm_positions(self, column: pa.Array, wanted: pa.DataType) -> np.ndarray | None:
        """For each value of a batch's one key column, its row in ``rows``: the warm path,
        without taking the batch's distinct keys. Only when it is exact: the cached rows are
        unique by key, no entry is past its TTL, and every non-NULL value is cached with a
        row (else None, and the batch goes through ``rows_for``). Hits refresh the LRU."""
        if len(self.keys) != 1 or self.max_rows <= 0 or not self.rows.num_rows:
            return None
        now = time.monotonic()
        if self.ttl_s is not None and self.loaded_at.min() < now - self.ttl_s:
            return None
        if self._warm_of is not self.rows:  # the rows changed: their key column again
            self._warm_of = self.rows
            self._warm_key = unique_key_column(self.rows, self.keys[0], wanted)
            self._row_entry = None
            if self._warm_key is not None:
                self._row_entry = pc.index_in(self.rows.column(self.keys[0]),
                                              value_set=self.cached_keys.column(0)) \
                    .fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        if self._warm_key is None:
            return None
        at = pc.index_in(column, value_set=self._warm_key, skip_nulls=True)
        if at.null_count != column.null_count:
            return None  # a key without a cached row (not cached, or cached as absent)
        at = at.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        found = at[at >= 0]
        self.used_at[self._row_entry[found]] = now
        self.hits += int(np.count_nonzero(np.bincount(found, minlength=self.rows.num_rows)))
        return at

    def _positions(self, keys: pa.Table) -> np.ndarray:
        """For each key, its row in ``cached_keys``, or -1."""
        if len(self.keys) == 1:   # Arrow's hash lookup, cheaper than a join for one column
            found = pc.index_in(keys.column(0), value_set=self.cached_keys.column(0))
            return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
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
        mask = pa.array(keep)
        self.cached_keys = self.cached_keys.filter(mask)
        self.loaded_at = self.loaded_at[keep]
        self.used_at = self.used_at[keep]
        rows_at, _ = match(self.rows, self.keys, self.cached_keys, self.keys)
        kept_rows = np.zeros(self.rows.num_rows, dtype=bool)
        kept_rows[rows_at] = True
        self.rows = self.rows.filter(pa.array(kept_rows))
        self._build = positional(self.rows, self.keys)

    def close(self) -> None:
        self.source.close()


def distinct_keys(batch: pa.Table, columns: list[str], names: list[str]) -> pa.Table:
    """The distinct non-NULL values of ``columns`` of ``batch``, named ``names`` (a NULL key
    matches nothing, so it is never looked up)."""
    if len(columns) == 1:
        values = batch.column(columns[0])
        values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
        return pa.table({names[0]: pc.unique(values.drop_null())})
    table = batch.select(columns)
    for c in columns:
        table = table.filter(pc.is_valid(table.column(c)))
    distinct = table.group_by(columns, use_threads=False).aggregate([])
    return distinct.rename_columns(names)


def unique_key_column(table: pa.Table, key: str, wanted: pa.DataType) -> pa.Array | None:
    """``table``'s ``key`` column as ``wanted`` (the streaming side's key type) when no two
    rows share a value and none is NULL (a primary key: the usual lookup); else None. Then
    ``pc.index_in`` of a batch's keys gives each row its one match, in the batch's order."""
    column = table.column(key).combine_chunks()
    if column.null_count or pc.count_distinct(column).as_py() != len(column):
        return None
    if column.type.equals(wanted):
        return column
    try:
        return column.cast(wanted)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
