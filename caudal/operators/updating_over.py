"""OVER aggregates over a changelog (Nexmark q6: a window over the rows of an updating
GROUP BY), emitted as a changelog whose folded result is the batch query's.

A retraction can land anywhere in a partition's order and change the frames of the rows
after it, so the operator keeps every row of each partition (operators.partition_rows) with
the aggregate values it emitted for it. At each flush (``flush_us``, and at the end of the
input) the partitions that received changes are sorted (partition, ORDER BY, arrival) and
their frames aggregated in one vectorized pass (operators.frame_kernels); each row's new
values are compared with the emitted ones: a new row is inserted, a retracted row deleted,
a row whose values changed is an update pair, an unchanged row emits nothing.

The ORDER BY may be any columns here (rows are not released by the watermark), and an OVER
without ORDER BY aggregates the whole partition.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from caudal import compute as pc
from caudal.operators.base import Operator
from caudal.operators.frame_kernels import FrameAggregates, frame_bounds
from caudal.operators.partition_rows import (
    PartitionRows,
    changelog,
    images,
    pick_rows,
    sort_partitions,
)
from caudal.operators.periodic_flush import PeriodicFlush
from caudal.plan.aggregates import AggCall
from caudal.plan.changelog import rows_equal
from caudal.plan.over_nodes import Frame

#: NULL ORDER BY values of a RANGE frame with an offset: far from every real value, so a
#: NULL row's frame holds just its NULL peers
_NULL_LOW, _NULL_HIGH = -(2**61), 2**61


class UpdatingOver(PeriodicFlush, Operator):
    """OVER aggregates recomputed per touched partition, emitted as a changelog.

    Input: the rows (plus ``_op`` when the input is a changelog). Output: the input columns,
    one column per aggregate (``output_schema``), then ``_op``.
    """

    #: at another parallelism its rows are taken from the old subtasks' tables as they are
    #: copied into its store (PartitionRows.restore)
    own_key_groups = frozenset({"rows"})

    def __init__(self, partition: list[str], order: list[tuple[str, bool, bool]],
                 frame: Frame, aggregates: list[AggCall], input_schema: pa.Schema,
                 output_schema: pa.Schema, flush_us: int = 1_000_000):
        self.partition = list(partition)
        self.order = list(order)
        self.frame = frame
        self.aggregates = FrameAggregates(aggregates)
        self.output_schema = output_schema
        self.flush_us = max(0, int(flush_us))
        data = pa.schema([f for f in input_schema if f.name in output_schema.names])
        value_fields = [f for f in output_schema if f.name not in data.names]
        self.state = PartitionRows(input_schema, self.partition, value_fields,
                                   updating_input=True)

    def process(self, batch: pa.RecordBatch, input: int = 0) -> Sequence[pa.RecordBatch]:
        if batch.num_rows == 0:
            return ()
        self.state.add(batch)
        if self._flush_due():
            return self.flush()
        return ()

    def _range_values(self, rows: pa.Table, indices: np.ndarray) -> np.ndarray | None:
        """The ORDER BY value (int64) of sorted rows, for a RANGE frame with an offset."""
        if self.frame.kind != "range" or self.frame.preceding is None:
            return None
        column, _, nulls_first = self.order[0]
        values = rows.column(column).take(pa.array(indices))
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if pa.types.is_timestamp(values.type) and values.type.unit != "us":
            values = values.cast(pa.timestamp("us", values.type.tz))
        ints = pc.fill_null(values.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
        if values.null_count:
            valid = pc.is_valid(values).to_numpy(zero_copy_only=False)
            return np.where(valid, ints, _NULL_LOW if nulls_first else _NULL_HIGH)
        return ints

    def flush(self) -> list[pa.RecordBatch]:
        """Recompute the touched partitions and emit what changed."""
        self._schedule_flush()
        t = self.state.take_touched(self.ctx.metrics)
        if t is None:
            return []
        rows = t.rows
        n = rows.num_rows
        ordered = sort_partitions(rows, t.h, t.seq, self.partition, self.order)
        bounds = frame_bounds(ordered.heads, self.frame.kind, self.frame.preceding,
                              self._range_values(rows, ordered.indices), ordered.peer_start)
        contrib = pa.table(self.aggregates.contributions(rows)).take(
            pa.array(ordered.indices)) if n else None
        back = np.empty(n, dtype=np.int64)
        back[ordered.indices] = np.arange(n)
        unsort = pa.array(back)
        if contrib is not None and contrib.num_columns:
            accs = self.aggregates.accumulate(contrib, bounds, ordered.gid)
            results = [r.take(unsort) for r in self.aggregates.finalize(accs)]
        else:
            results = [pa.nulls(n, f.type) for f in self.state.value_schema]
        values = pa.Table.from_arrays(results, schema=self.state.value_schema)
        self.state.put(rows, values, t.seq, t.h, np.ones(n, dtype=bool))
        schema = self.output_schema
        born = pa.array(~t.old_emitted)
        both = np.flatnonzero(t.old_emitted)
        changed = both
        if len(both):
            idx = pa.array(both)
            same = rows_equal([c.take(idx) for c in t.old.columns],
                              [c.take(idx) for c in values.columns])
            changed = both[~same]
        moved = pick_rows(rows, changed)
        gone = pa.array(t.removed_emitted)
        return changelog(
            schema, [images(t.removed.filter(gone), t.removed_old.filter(gone), schema)],
            [images(moved, pick_rows(t.old, changed), schema)],
            [images(moved, pick_rows(values, changed), schema)],
            [images(rows.filter(born), values.filter(born), schema)])

    def snapshot(self, epoch: int) -> dict[str, Any]:
        return self.state.snapshot(self.ctx.max_key_groups)

    def restore(self, state: dict[str, Any]) -> None:
        self.state.restore(state, self.ctx)

    def state_rows(self) -> int:
        return self.state.size + self.state.pending_rows
