"""Top-N per window: ``ROW_NUMBER() / RANK() / DENSE_RANK() OVER (PARTITION BY window_start,
window_end[, k…] ORDER BY …)``, usually filtered ``<= N``.

Rows are buffered until the watermark passes their window's end (rows of a window aggregate
arrive just before that watermark), then ranked in one vectorized pass: sort by (partition,
order keys), number rows within each partition, and find runs of equal order keys for RANK
and DENSE_RANK. With a limit N, a large buffer is pruned to rows ranked <= N early: a row's
rank can only grow as rows arrive, so a row beyond N now stays beyond N.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from caudal import compute as pc
from caudal import float_order
from caudal.operators.base import Operator, OperatorContext
from caudal.operators.event_time import LateOutput, times_of
from caudal.operators.session_aggregate import _key_ids
from caudal.operators.side_output import LATE, tag
from caudal.operators.window_aggregate import KeyedWindowState
from caudal.state.rescale import KEY_GROUP, restored_watermark, watermark_table
from caudal.watermark import WATERMARK_MIN

FUNCTIONS = ("row_number", "rank", "dense_rank")
_PRUNE_ROWS = 1 << 16


def _equal_to_previous(column: pa.Array) -> np.ndarray:
    """For each row after the first: equal to the row before (NULL equals NULL)."""
    if len(column) < 2:
        return np.zeros(0, dtype=bool)
    a, b = column.slice(1), column.slice(0, len(column) - 1)
    eq = pc.fill_null(float_order.equal_or_both_nan(a, b), False)
    both_null = pc.and_(pc.is_null(a), pc.is_null(b))
    return pc.or_(eq, both_null).to_numpy(zero_copy_only=False)


def rank_rows(table: pa.Table, partition: list[str], order: list[tuple[str, bool, bool]],
              function: str, later_ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Row order (sorted by partition, then order keys) and the rank of each sorted row.

    ``order`` items are (column, descending, nulls_first). Ties keep the rows' order in
    ``table`` (arrival), reversed with ``later_ties``.
    """
    n = table.num_rows
    gid = _key_ids(table, partition)
    sortable = {"__g": pa.array(gid)}
    sort_keys: list[tuple[str, str]] = [("__g", "ascending")]
    for i, (col, desc, nulls_first) in enumerate(order):
        values = table.column(col)
        sortable[f"__n{i}"] = pc.is_null(values)
        sort_keys.append((f"__n{i}", "descending" if nulls_first else "ascending"))
        nan = float_order.sort_nan_key(values, desc)
        if nan is not None:
            sortable[f"__f{i}"] = nan[0]
            sort_keys.append((f"__f{i}", nan[1]))
        sortable[f"__v{i}"] = values
        sort_keys.append((f"__v{i}", "descending" if desc else "ascending"))
    if later_ties:
        sortable["__a"] = pa.array(np.arange(n))
        sort_keys.append(("__a", "descending"))
    indices = pc.sort_indices(pa.table(sortable), sort_keys=sort_keys).to_numpy()
    g = gid[indices]
    position = np.arange(n)
    group_start = np.ones(n, dtype=bool)
    group_start[1:] = g[1:] != g[:-1]
    first_of_group = np.maximum.accumulate(np.where(group_start, position, 0))
    if function == "row_number":
        return indices, position - first_of_group + 1
    peer = np.ones(max(n - 1, 0), dtype=bool)
    take = pa.array(indices)
    for col, _, _ in order:
        ordered = table.column(col).take(take)
        if isinstance(ordered, pa.ChunkedArray):
            ordered = ordered.combine_chunks()
        peer &= _equal_to_previous(ordered)
    run_start = group_start.copy()
    run_start[1:] |= ~peer
    if function == "rank":
        first_of_run = np.maximum.accumulate(np.where(run_start, position, 0))
        return indices, first_of_run - first_of_group + 1
    runs = np.cumsum(run_start)
    return indices, runs - runs[first_of_group] + 1


class WindowRank(Operator, KeyedWindowState):
    """Ranks each window's rows once the window is complete; emits the input columns plus
    the rank (``rank_name``), keeping rows ranked <= ``limit`` when there is one."""

    def __init__(self, window_end: str, window_field: str | None, partition: list[str],
                 order: list[tuple[str, bool, bool]], function: str, limit: int | None,
                 output_schema: pa.Schema, late_output: LateOutput | None = None,
                 later_ties: bool = False):
        assert function in FUNCTIONS
        self.window_end = window_end
        self.window_field = window_field
        self.partition = list(partition)
        self.keys = [c for c in partition]
        self.order = list(order)
        self.function = function
        self.limit = limit
        #: ties go to the later row (ORDER BY processing time DESC)
        self.later_ties = later_ties
        self.output_schema = output_schema
        self.late_output = late_output
        self.buffer: list[pa.Table] = []
        self.buffered = 0
        self.prune_at = _PRUNE_ROWS
        self.watermark = WATERMARK_MIN

    def open(self, ctx: OperatorContext) -> None:
        super().open(ctx)
        ctx.metrics.setdefault("late_rows", 0)

    def _ends(self, table: pa.Table | pa.RecordBatch) -> np.ndarray:
        column = table.column(self.window_end)
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        if self.window_field is not None:
            column = pc.struct_field(column, self.window_field)
        return times_of(column)

    def process(self, batch: pa.RecordBatch, input: int = 0) -> Sequence[pa.RecordBatch]:
        if batch.num_rows == 0:
            return ()
        side: list[pa.RecordBatch] = []
        if self.watermark > WATERMARK_MIN:
            # late once its window has fired, as a window aggregate's row is late once its
            # last window has (Flink's window top-N and aggregate alike)
            late = self._ends(batch) <= self.watermark
            if late.any():
                self.ctx.metrics["late_rows"] += int(late.sum())
                if self.late_output is not None:
                    rows = batch.filter(pa.array(late))
                    side.append(tag(pa.RecordBatch.from_arrays(
                        [rows.column(c) for c in self.late_output.columns],
                        names=self.late_output.names), LATE))
                batch = batch.filter(pa.array(~late))
                if batch.num_rows == 0:
                    return side
        self.buffer.append(pa.Table.from_batches([batch]))
        self.buffered += batch.num_rows
        if self.limit is not None and self.buffered >= self.prune_at:
            table = pa.concat_tables(self.buffer)
            indices, ranks = rank_rows(table, self.partition, self.order, self.function,
                                       self.later_ties)
            # the kept rows in arrival order: the order later ties are broken by
            table = table.take(pa.array(np.sort(indices[ranks <= self.limit])))
            self.buffer = [table]
            self.buffered = table.num_rows
            self.prune_at = max(_PRUNE_ROWS, 4 * self.buffered)
        return side

    def _ranked(self, table: pa.Table) -> pa.Table:
        """Rows with their rank (``__rank``), limited, in rank order."""
        indices, ranks = rank_rows(table, self.partition, self.order, self.function,
                                   self.later_ties)
        if self.limit is not None:
            keep = ranks <= self.limit
            indices, ranks = indices[keep], ranks[keep]
        return table.take(pa.array(indices)).append_column("__rank", pa.array(ranks))

    def on_watermark(self, time: int) -> Sequence[pa.RecordBatch]:
        if time <= self.watermark:
            return ()
        self.watermark = time
        if not self.buffer:
            return ()
        table = pa.concat_tables(self.buffer)
        ready = self._ends(table) <= time
        if not ready.any():
            return ()
        rest = table.filter(pa.array(~ready))
        self.buffer = [rest] if rest.num_rows else []
        self.buffered = rest.num_rows
        ranked = self._ranked(table.filter(pa.array(ready)))
        names = self.output_schema.names
        columns = [ranked.column(n) for n in names[:-1]] + [ranked.column("__rank")]
        arrays = [c.cast(f.type) for c, f in zip(columns, self.output_schema)]
        return pa.Table.from_arrays(arrays, schema=self.output_schema).to_batches(
            max_chunksize=1 << 16)

    def snapshot(self, epoch: int) -> dict[str, Any]:
        meta = watermark_table(self.watermark)
        if not self.buffer:
            return {"meta": meta}
        rows = pa.concat_tables(self.buffer)
        return {"rows": rows.append_column(KEY_GROUP, self.key_groups(rows)), "meta": meta}

    def restore(self, state: dict[str, Any]) -> None:
        self.watermark = restored_watermark(state, WATERMARK_MIN)
        rows = state.get("rows")
        self.buffer, self.buffered = [], 0
        if rows is not None and rows.num_rows:
            rows = self.own(rows)
            if KEY_GROUP in rows.column_names:
                rows = rows.drop_columns([KEY_GROUP])
            self.buffer = [rows]
            self.buffered = rows.num_rows

    def state_rows(self) -> int:
        return self.buffered
