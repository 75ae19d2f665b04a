"""Changelog streams: how a batch says, per row, whether it inserts or retracts a result row,
and how the planner knows which streams are changelogs.

Representation: an *updating* stream's batches carry one extra column, ``_op`` (int8), after
the columns of the logical schema. Its sign is the row's weight:

* ``+1`` insert (Debezium ``c``), ``-1`` delete (``d``);
* ``-2`` / ``+2``: the *before* and *after* image of an update, in adjacent rows (the -2 row
  immediately followed by its +2 row), so a sink can write one Debezium ``u`` record.

Operators that fold a changelog (aggregates, joins) only use the sign (``weights``); the
update pairing is a courtesy to sinks and survives every step that keeps rows in order (a
filter re-labels a pair it breaks, see ``filter_changelog``; hash shuffles only feed
operators that fold). An append-only stream has no ``_op`` column at all, so the stateless hot path of
append queries pays nothing.

Planning: ``LogicalNode.updating`` says whether a node's output is a changelog, and
``plan.changelog_check`` rejects a plan that feeds one into an operator or a sink that cannot
take retractions.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from caudal import compute as pc

#: the column that carries each row's change kind in an updating stream
OP = "_op"
OP_TYPE = pa.int8()
INSERT, DELETE, UPDATE_BEFORE, UPDATE_AFTER = 1, -1, -2, 2
#: how each kind prints (Flink's RowKind short strings)
OP_NAMES = {INSERT: "+I", DELETE: "-D", UPDATE_BEFORE: "-U", UPDATE_AFTER: "+U"}


def has_ops(batch: pa.RecordBatch | pa.Table) -> bool:
    return OP in batch.schema.names


def ops_of(batch: pa.RecordBatch | pa.Table) -> np.ndarray:
    """The ``_op`` column as int8 NumPy (all +1 for a batch without one: append-only)."""
    if OP not in batch.schema.names:
        return np.ones(batch.num_rows, dtype=np.int8)
    col = batch.column(OP)
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if col.null_count:
        col = pc.fill_null(col, INSERT)
    return col.to_numpy(zero_copy_only=False).astype(np.int8, copy=False)


def weights(batch: pa.RecordBatch | pa.Table) -> np.ndarray:
    """Each row's weight: +1 for an insertion (or update after), -1 for a retraction."""
    return np.sign(ops_of(batch)).astype(np.int64)


def data_columns(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The batch without its ``_op`` column."""
    if OP not in batch.schema.names:
        return batch
    return batch.drop_columns([OP])


def with_ops(batch: pa.RecordBatch, ops: np.ndarray | pa.Array) -> pa.RecordBatch:
    """``batch`` (without ``_op``) plus the given ops as its last column."""
    batch = data_columns(batch)
    array = ops if isinstance(ops, pa.Array) else pa.array(ops, OP_TYPE)
    return batch.append_column(pa.field(OP, OP_TYPE), array)


def repair_pairs(ops: np.ndarray) -> np.ndarray:
    """Re-label update halves whose partner is gone (a filter dropped it): a -2 not followed
    by a +2 becomes a plain delete, a +2 not preceded by a -2 a plain insert. Vectorized."""
    if len(ops) == 0:
        return ops
    before = ops == UPDATE_BEFORE
    after = ops == UPDATE_AFTER
    if not before.any() and not after.any():
        return ops
    out = ops.copy()
    next_after = np.zeros(len(ops), dtype=bool)
    next_after[:-1] = after[1:]
    prev_before = np.zeros(len(ops), dtype=bool)
    prev_before[1:] = before[:-1]
    paired_before = before & next_after
    # a +2 belongs to the -2 just before it only if that -2 is itself paired with it
    paired_after = np.zeros(len(ops), dtype=bool)
    paired_after[1:] = paired_before[:-1]
    out[before & ~paired_before] = DELETE
    out[after & ~paired_after] = INSERT
    return out


def filter_changelog(batch: pa.RecordBatch, mask: pa.Array) -> pa.RecordBatch:
    """Filter rows of an updating batch, keeping the update pairs consistent: a pair that
    loses one of its rows becomes a plain delete or insert (decided on the rows' positions
    before filtering, so two halves of different pairs never become one)."""
    if OP not in batch.schema.names:
        return batch.filter(mask, null_selection_behavior="drop")
    keep = pc.fill_null(mask, False).to_numpy(zero_copy_only=False)
    ops = repair_pairs(ops_of(batch))
    before = np.flatnonzero(ops == UPDATE_BEFORE)  # each is followed by its +2 (repaired)
    broken = keep[before] != keep[before + 1]
    if broken.any():
        ops = ops.copy()
        ops[before[broken]] = DELETE
        ops[before[broken] + 1] = INSERT
    kept = with_ops(batch, ops).filter(pa.array(keep))
    return kept


def interleave_updates(before: pa.Table, after: pa.Table) -> tuple[pa.Table, np.ndarray]:
    """Rows ``before[i], after[i]`` interleaved (one update pair per i) and their ops."""
    n = before.num_rows
    if not after.schema.equals(before.schema):
        after = after.cast(before.schema)
    both = pa.concat_tables([before, after])
    order = np.empty(2 * n, dtype=np.int64)
    order[0::2] = np.arange(n)
    order[1::2] = np.arange(n) + n
    ops = np.empty(2 * n, dtype=np.int8)
    ops[0::2] = UPDATE_BEFORE
    ops[1::2] = UPDATE_AFTER
    index = pa.Array.from_buffers(pa.int64(), 2 * n, [None, pa.py_buffer(order)])
    return pc.take(both, index), ops


def rows_equal(a: list[pa.Array], b: list[pa.Array]) -> np.ndarray:
    """Per row, whether every column of ``a`` equals the one of ``b`` (NULL equals NULL).
    Structs compare field by field; types without an equality kernel count as different
    (an update whose two images look alike is harmless)."""
    n = len(a[0]) if a else 0
    same = np.ones(n, dtype=bool)
    for x, y in zip(a, b):
        same &= _column_equal(x, y)
    return same


def _column_equal(x, y) -> np.ndarray:
    if isinstance(x, pa.ChunkedArray):
        x = x.combine_chunks()
    if isinstance(y, pa.ChunkedArray):
        y = y.combine_chunks()
    if not x.type.equals(y.type):
        y = pc.cast(y, x.type)
    both_null = pc.and_(pc.is_null(x), pc.is_null(y)).to_numpy(zero_copy_only=False)
    one_null = pc.xor(pc.is_null(x), pc.is_null(y)).to_numpy(zero_copy_only=False)
    if pa.types.is_struct(x.type):
        eq = np.ones(len(x), dtype=bool)
        for i in range(x.type.num_fields):
            eq &= _column_equal(x.field(i), y.field(i))
        return both_null | (eq & ~one_null)
    try:
        eq = pc.fill_null(pc.equal(x, y), False).to_numpy(zero_copy_only=False)
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return both_null
    return both_null | eq


# ---- planning ---------------------------------------------------------------------------

#: what to write instead of an append-only sink
