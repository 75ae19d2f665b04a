"""Helpers for operators whose state is Arrow tables keyed by SQL values (updating aggregates,
joins): find rows by key with a hash join, tag state with key groups for snapshots, keep a
subtask's own key groups on restore, and bring Polars results back to a declared schema.

Keys are matched with Polars joins (one hash join per call, never a Python loop per row).
GROUP BY keys match NULL to NULL (``nulls_equal=True``); join keys never match NULL (SQL
equality), which callers choose with ``nulls_equal``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from caudal import compute as pc
from caudal import float_order
from caudal.compute import from_numpy

if TYPE_CHECKING:
    import polars as pl

from caudal.state.key_groups import hash_columns, key_group
from caudal.state.rescale import (
    KEY_GROUP,
    key_group_mask,
    key_group_range,
    restored_watermark,
    watermark_table,
)


def positional(table: pa.Table | pa.RecordBatch, columns: Sequence[str],
               prefix: str = "_k", exact_floats: bool = False) -> pl.DataFrame:
    """The ``columns`` of an Arrow table as a Polars frame with names ``_k0, _k1, …`` (so
    two sides with clashing or differing names can be joined on the same names), to match
    keys: a floating-point column becomes the bits of its value with -0.0 made 0.0 and every
    NaN one NaN, so equal keys are equal integers (Polars' join did not match a NaN key with
    a NaN in a one-row frame, though it did in larger ones). ``exact_floats`` keeps them as
    they are (a frame whose values are read back)."""
    import polars as pl  # late: a lookup join on a unique key never needs Polars

    arrays = [table.column(c) for c in columns]
    if not exact_floats:
        arrays = [_float_bits(a) for a in arrays]
    names = [f"{prefix}{i}" for i in range(len(columns))]
    return pl.from_arrow(pa.table(dict(zip(names, arrays))), rechunk=False)  # type: ignore[return-value]


def _float_bits(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """A floating-point key as integers equal where the keys are (DuckDB's: NaN equals NaN,
    -0.0 equals 0.0); other columns as they are."""
    if not float_order.is_float(values.type):
        return values
    values = float_order.normalize_key(values)
    bits = {16: pa.int16(), 32: pa.int32()}.get(values.type.bit_width, pa.int64())
    if isinstance(values, pa.ChunkedArray):
        return pa.chunked_array([c.view(bits) for c in values.chunks], bits)
    return values.view(bits)


def lookup(probe: pa.Table, probe_keys: Sequence[str], build: pa.Table,
           build_keys: Sequence[str]) -> np.ndarray:
    """For each row of ``probe``, the index of the row of ``build`` with equal keys (NULL
    equals NULL), or -1. ``build``'s keys must be unique."""
    n = probe.num_rows
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if build.num_rows == 0:
        return np.full(n, -1, dtype=np.int64)
    if not probe_keys:  # rows without columns are all equal: the one row of build
        return np.zeros(n, dtype=np.int64)
    left = positional(probe, probe_keys).with_row_index("_i")
    right = positional(build, build_keys).with_row_index("_j")
    names = [f"_k{i}" for i in range(len(probe_keys))]
    joined = left.join(right, on=names, how="inner", nulls_equal=True)
    out = np.full(n, -1, dtype=np.int64)
    out[joined["_i"].to_numpy()] = joined["_j"].to_numpy()
    return out


def key_group_column(table: pa.Table, keys: Sequence[str], max_key_groups: int) -> pa.Array:
    """The int32 key group of every row (all 0 when there are no keys)."""
    if not keys:
        return pa.array(np.zeros(table.num_rows, dtype=np.int32))
    return pa.array(key_group(hash_columns(table, list(keys)), max_key_groups))


def tag_key_groups(table: pa.Table, keys: Sequence[str], max_key_groups: int) -> pa.Table:
    """A state table with its ``_key_group`` column, ready for a snapshot."""
    return table.append_column(KEY_GROUP, key_group_column(table, keys, max_key_groups))


def own_rows(table: pa.Table | None, keys: Sequence[str], ctx: Any,
             combine: bool = True) -> pa.Table | None:
    """The rows of a restored state table this subtask owns, without ``_key_group``, in one
    chunk per column unless ``combine`` is False (a caller that copies the columns anyway).
    Unkeyed state belongs to subtask 0."""
    table, mask = own_rows_mask(table, keys, ctx)
    if table is None:
        return None
    if mask is not None:
        table = table.filter(pa.array(mask))
    return table.combine_chunks() if combine else table


def own_rows_mask(table: pa.Table | None, keys: Sequence[str], ctx: Any
                  ) -> tuple[pa.Table | None, np.ndarray | None]:
    """``own_rows`` without its copy, for a caller that copies the rows into a store of its
    own anyway: the table without ``_key_group`` and which of its rows this subtask owns
    (None: all)."""
    if table is None:
        return None, None
    mask = None
    if not keys:
        if ctx.subtask != 0:
            table = table.slice(0, 0)
    else:
        mask = key_group_mask(table, key_group_range(ctx))
    if KEY_GROUP in table.column_names:
        table = table.drop_columns([KEY_GROUP])
    return table, mask


def conform_table(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast and order a table's columns to ``schema`` (Polars returns large strings and
    views; a join may widen integers)."""
    arrays = []
    for field in schema:
        col = table.column(field.name)
        if not col.type.equals(field.type):
            col = pc.cast(col, field.type)
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=schema)


def to_arrow(frame: pl.DataFrame) -> pa.Table:
    """A Polars frame as an Arrow table, string views and large strings as plain strings."""
    table = frame.to_arrow()
    fields = []
    changed = False
    for f in table.schema:
        t = _plain(f.type)
        changed |= not t.equals(f.type)
        fields.append(pa.field(f.name, t))
    return table.cast(pa.schema(fields)) if changed else table


def _plain(t: pa.DataType) -> pa.DataType:
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return pa.binary()
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _plain(f.type)) for f in t])
    if pa.types.is_large_list(t) or pa.types.is_list_view(t):
        return pa.list_(_plain(t.value_type))
    if pa.types.is_list(t):
        return pa.list_(_plain(t.value_type))
    return t


def as_array(a: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A column as one array: a chunked one of one chunk is that chunk (``combine_chunks``
    would copy it)."""
    if isinstance(a, pa.ChunkedArray):
        return a.chunk(0) if a.num_chunks == 1 else a.combine_chunks()
    return a


def take_or_null(values: pa.Array | pa.ChunkedArray, index: np.ndarray) -> pa.Array:
    """``values[index[i]]``, NULL where ``index[i] < 0``."""
    values = as_array(values)
    missing = index < 0
    if not missing.any():
        return pc.take(values, from_numpy(index))
    return pc.take(values, from_numpy(np.where(missing, 0, index), missing))


def batches_of(table: pa.Table, rows: int = 1 << 16) -> list[pa.RecordBatch]:
    if table.num_rows == 0:
        return []
    return table.combine_chunks().to_batches(max_chunksize=rows)


#: column of the summed weight of equal rows, and of the lowest running sum along the way
NET, LOWEST = "_w", "_p"


def net_rows(table: pa.Table, names: Sequence[str], schema: pa.Schema) -> pa.Table:
    """Sum the weights (``_w``) of equal rows (``names``; NULL equals NULL) of an ordered
    changelog, keeping what ordering means: ``_p`` is the lowest running sum of each row's
    weight, at most 0. A row stored ``have`` times can take the changes only if
    ``have + _p >= 0``; the shortfall is a retraction of something that was never there.
    Rows may carry ``_p`` already (netted before): consecutive pieces combine. Rows whose
    weights cancel exactly are kept only when they went below zero on the way."""
    import polars as pl

    names = list(names)
    frame = positional(table, names, exact_floats=True)  # read back as the rows
    if not names:  # rows without columns (an uncorrelated EXISTS): all equal, one group
        frame = pl.DataFrame({"_k0": np.zeros(table.num_rows, dtype=np.int8)})
    w = pl.from_arrow(table.column(NET)).cast(pl.Int64).alias(NET)  # type: ignore[union-attr]
    if LOWEST in table.column_names:
        p = pl.from_arrow(table.column(LOWEST)).cast(pl.Int64).alias(LOWEST)  # type: ignore
    else:
        p = w.clip(upper_bound=0).alias(LOWEST)
    frame = frame.with_columns(w, p)
    cols = [f"_k{i}" for i in range(max(len(names), 1))]
    if p.min() == 0 if len(p) else True:
        # nothing retracted: order cannot matter, a plain hash aggregation does
        net = frame.group_by(cols).agg(pl.col(NET).sum(), pl.lit(0, pl.Int64).alias(LOWEST))
    else:
        # each group's weights in their order (a group keeps its rows' order), then the
        # running sums in NumPy: an ordered group_by with a cumulative sum per group cost
        # ~4x a plain one (q4's average over a changelog: most of its flushes)
        grouped = frame.group_by(cols).agg(pl.col(NET), pl.col(LOWEST))
        lengths = grouped[NET].list.len().to_numpy().astype(np.int64, copy=False)
        w_flat = grouped[NET].explode().to_numpy().astype(np.int64, copy=False)
        p_flat = grouped[LOWEST].explode().to_numpy().astype(np.int64, copy=False)
        starts = np.cumsum(lengths) - lengths
        before = np.cumsum(w_flat) - w_flat   # the weights before each row, all groups
        # a row's running sum in its group before it, plus its own lowest
        run = before - np.repeat(before[starts], lengths) + p_flat
        net = grouped.select(cols).with_columns(
            pl.Series(NET, np.add.reduceat(w_flat, starts)),
            pl.Series(LOWEST, np.minimum(np.minimum.reduceat(run, starts), 0)))
    net = net.filter((pl.col(NET) != 0) | (pl.col(LOWEST) < 0))
    out = to_arrow(net)
    arrays = [out.column(c).cast(schema.field(n).type) for c, n in zip(cols, names)]
    arrays += [out.column(NET).cast(pa.int64()), out.column(LOWEST).cast(pa.int64())]
    return pa.Table.from_arrays(arrays, names=[*names, NET, LOWEST])


def apply_net(net: np.ndarray, lowest: np.ndarray, have: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """(effective change, ignored retractions) of rows stored ``have`` times taking netted
    changes: a retraction that would go below zero is ignored."""
    ignored = np.maximum(-(have + lowest), 0)
    return net + ignored, ignored


def snapshot_sides(sides: Sequence[Any], max_key_groups: int) -> dict[str, pa.Table]:
    """A two-input operator's rows per side (``left``, ``right``), tagged with key groups."""
    return {name: tag_key_groups(side.table(), side.keys, max_key_groups)
            for name, side in zip(("left", "right"), sides)}


def restore_sides(sides: Sequence[Any], state: dict[str, Any], ctx: Any) -> None:
    """Load each side's rows of a snapshot, keeping this subtask's key groups."""
    for name, side in zip(("left", "right"), sides):
        side.load(own_rows(state.get(name), side.keys, ctx))


class TwoSidedState:
    """Checkpoints of a two-input join whose state is ``self.sides`` (a SideState per input,
    snapshotted by key group) and a watermark kept in the attribute ``CLOCK`` names."""

    CLOCK = "watermark"

    def snapshot(self, epoch: int) -> dict[str, Any]:
        out: dict[str, Any] = snapshot_sides(self.sides, self.ctx.max_key_groups)
        out["meta"] = watermark_table(getattr(self, self.CLOCK))
        return out

    def restore(self, state: dict[str, Any]) -> None:
        restore_sides(self.sides, state, self.ctx)
        setattr(self, self.CLOCK, restored_watermark(state, getattr(self, self.CLOCK)))

    def state_rows(self) -> int:
        return sum(s.size for s in self.sides)
