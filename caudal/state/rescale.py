"""Which key groups a subtask owns, and how keyed state moves when parallelism changes.

Keyed state is partitioned into a fixed number of key groups (``max_key_groups``, 128 by
default, recorded in every checkpoint); subtask ``i`` of ``p`` owns the contiguous range of
key groups ``g`` with ``g * p // max_key_groups == i`` -- the same rule the hash partitioner
uses to route rows (state.key_groups), so a subtask's state and its input always agree.
Restoring at another parallelism then needs no re-hashing: each new subtask keeps the rows of
the old subtasks' tables whose ``_key_group`` falls in its range.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from caudal import compute as pc

#: the column that keyed state tables carry
KEY_GROUP = "_key_group"


def key_groups_of(subtask: int, parallelism: int, max_key_groups: int) -> range:
    """The key groups subtask ``subtask`` of ``parallelism`` owns (contiguous)."""
    if not 0 <= subtask < parallelism:
        raise ValueError(f"subtask {subtask} out of range for parallelism {parallelism}")
    start = (subtask * max_key_groups + parallelism - 1) // parallelism
    end = ((subtask + 1) * max_key_groups + parallelism - 1) // parallelism
    return range(start, end)


def key_group_range(ctx: Any) -> range:
    """The key groups an operator instance owns, from its OperatorContext
    (``subtask``, ``parallelism``, ``max_key_groups``). Use it in ``restore``::

        def restore(self, state):
            table = keep_key_groups(state["windows"], key_group_range(self.ctx))
    """
    return key_groups_of(ctx.subtask, ctx.parallelism, ctx.max_key_groups)


def subtask_of(key_group: int, parallelism: int, max_key_groups: int) -> int:
    """The subtask that owns ``key_group`` (inverse of ``key_groups_of``)."""
    return key_group * parallelism // max_key_groups


def keep_key_groups(table: pa.Table, groups: range) -> pa.Table:
    """The rows of a keyed state table whose ``_key_group`` is in ``groups``. A table without
    the column is returned unchanged (unkeyed state is not split)."""
    mask = key_group_mask(table, groups)
    return table if mask is None else table.filter(pa.array(mask))


def key_group_mask(table: pa.Table, groups: range) -> np.ndarray | None:
    """Which rows of a keyed state table have their ``_key_group`` in ``groups``; None when
    all do (or the table has no such column)."""
    if KEY_GROUP not in table.column_names or table.num_rows == 0:
        return None
    col = table.column(KEY_GROUP)
    lo = pc.greater_equal(col, pa.scalar(groups.start, col.type))
    hi = pc.less(col, pa.scalar(groups.stop, col.type))
    mask = pc.and_(lo, hi)
    if pc.all(mask).as_py():
        return None
    return np.concatenate([c.to_numpy(zero_copy_only=False) for c in mask.chunks]) \
        if isinstance(mask, pa.ChunkedArray) else mask.to_numpy(zero_copy_only=False)


def concat_states(tables: Sequence[pa.Table]) -> pa.Table:
    """The tables of one state name from several old subtasks, as one table."""
    tables = [t for t in tables if t is not None]
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="default")


def old_subtasks_for(subtask: int, parallelism: int, old_parallelism: int,
                     max_key_groups: int) -> list[int]:
    """The old subtasks whose key groups overlap the new subtask's: the only ones whose
    keyed state it needs to read."""
    mine = key_groups_of(subtask, parallelism, max_key_groups)
    out = []
    for old in range(old_parallelism):
        theirs = key_groups_of(old, old_parallelism, max_key_groups)
        if theirs.start < mine.stop and mine.start < theirs.stop:
            out.append(old)
    return out


def watermark_table(watermark: int) -> pa.Table:
    """An operator's watermark as a one-row state table (restored as the minimum over the old
    subtasks, so a rescaled operator never claims more progress than any of them had)."""
    return pa.table({"watermark": pa.array([watermark], pa.int64())})


def restored_watermark(state: dict[str, Any], default: int, name: str = "meta") -> int:
    """The watermark saved with ``watermark_table`` under ``name`` (the minimum when several
    old subtasks' tables were concatenated), or ``default`` when none was saved."""
    meta = state.get(name)
    if meta is None or meta.num_rows == 0:
        return default
    return int(pc.min(meta.column("watermark")).as_py())
