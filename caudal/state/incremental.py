"""Incremental snapshots of large keyed state: an operator returns only what changed since
its previous snapshot, and the checkpoint keeps a chain ``full table, delta, delta, ...``
that a restore (or a background compaction) folds back into one table.

Writing 100 MB of state every second would cost more than the query; an updating aggregate
or a join buffer changes a small part of its keys per epoch. The rule for an operator:

- return a ``pyarrow.Table`` (the whole state) when it has no baseline: the first snapshot
  after ``open``/``restore``;
- afterwards it may return a ``StateDelta`` for the same name: the rows inserted or updated
  (whole rows, unique by ``key``), the keys deleted, and optionally ``expire=(column, value)``
  to drop every row whose ``column`` is below ``value`` (closed windows, expired join rows).

The checkpoint coordinator writes each delta as its own Parquet file and compacts the chain
into a new full file when it grows long or large; the operator never needs to know.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

#: column marking deleted keys in a delta file
DELETED = "_deleted"


@dataclass
class StateDelta:
    """The changes of one keyed state table since the operator's previous snapshot."""

    key: Sequence[str]
    #: whole rows that replace any row with the same key (keys unique within the delta)
    upserts: pa.Table | None = None
    #: the key columns of rows removed
    deletes: pa.Table | None = None
    #: after applying the rows above, drop rows whose ``expire[0]`` is below ``expire[1]``
    expire: tuple[str, Any] | None = None

    def encode(self, schema: pa.Schema | None = None) -> pa.Table:
        """One table for the delta file: upserts then deleted keys (other columns null), with
        a boolean ``_deleted`` column telling them apart."""
        schema = schema or (self.upserts.schema if self.upserts is not None else None)
        if schema is None:
            if self.deletes is None:
                raise ValueError("an empty StateDelta needs a schema")
            schema = self.deletes.schema
        parts = []
        if self.upserts is not None and self.upserts.num_rows:
            up = self.upserts.select(schema.names).cast(schema)
            parts.append(up.append_column(DELETED, pa.array([False] * up.num_rows)))
        if self.deletes is not None and self.deletes.num_rows:
            n = self.deletes.num_rows
            cols = [self.deletes.column(f.name).cast(f.type) if f.name in self.key
                    else pa.nulls(n, f.type) for f in schema]
            dele = pa.Table.from_arrays(cols, schema=schema)
            parts.append(dele.append_column(DELETED, pa.array([True] * n)))
        if not parts:
            empty = schema.empty_table()
            return empty.append_column(DELETED, pa.array([], pa.bool_()))
        return pa.concat_tables(parts)


def rows_without_keys(base: pa.Table, keys: pa.Table, key: Sequence[str]) -> pa.Table:
    """The rows of ``base`` whose key is not among ``keys`` (nulls equal to nulls)."""
    if base.num_rows == 0 or keys.num_rows == 0:
        return base
    import polars as pl

    left = pl.from_arrow(base.select(list(key))).with_row_index("_row")
    right = pl.from_arrow(keys.select(list(key))).unique()
    kept = left.join(right, on=list(key), how="anti", nulls_equal=True)["_row"]
    return base.take(kept.to_arrow().cast(pa.int64()))


def expire_rows(table: pa.Table, expire: tuple[str, Any] | None) -> pa.Table:
    if expire is None or table.num_rows == 0:
        return table
    column, value = expire
    col = table.column(column)
    if pa.types.is_timestamp(col.type) and isinstance(value, int):
        col = col.cast(pa.int64())
    mask = pc.fill_null(pc.greater_equal(col, pa.scalar(value).cast(col.type)), True)
    return table.filter(mask)


def apply_delta(base: pa.Table | None, delta: pa.Table, key: Sequence[str],
                expire: tuple[str, Any] | None = None) -> pa.Table:
    """Fold one delta file's table into ``base`` (None: empty state)."""
    flags = delta.column(DELETED)
    rows = delta.drop_columns([DELETED])
    upserts = rows.filter(pc.invert(flags))
    if base is None:
        result = upserts
    else:
        touched = rows.select(list(key))
        kept = rows_without_keys(base, touched, key)
        result = pa.concat_tables([kept, upserts.cast(kept.schema)]) if upserts.num_rows \
            else kept
    return expire_rows(result, expire)


def fold_chain(parts: Sequence[tuple[pa.Table, str, Sequence[str], tuple[str, Any] | None]]
               ) -> pa.Table:
    """The state a chain stands for: ``(table, kind, key, expire)`` per file, in order."""
    state: pa.Table | None = None
    for table, kind, key, expire in parts:
        if kind == "full":
            state = table
        else:
            state = apply_delta(state, table, key, expire)
    assert state is not None, "a state chain has at least one file"
    return state.combine_chunks() if state.num_rows else state
