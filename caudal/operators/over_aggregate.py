"""OVER aggregates on event time (Flink's OVER aggregation): ``agg(x) OVER (PARTITION BY k
ORDER BY t ROWS|RANGE BETWEEN … PRECEDING AND CURRENT ROW)`` over an append-only stream.

Each input row is emitted once, with the aggregates over its frame, when the watermark has
passed it: the rows with ``t < watermark`` are complete (no on-time row can come before them,
and all of a row's peers — rows with the same time — are among them), so they are released
together (in arrival order), sorted by partition, time and arrival for their frames, and
aggregated in one vectorized pass
(operators.frame_kernels) over what each partition carries from earlier releases followed by
the released rows. Rows arriving below the watermark are late: counted (``late_rows``) and
dropped, as the window operators do.

What a partition carries between releases is bounded by the frame:

* ``ROWS n PRECEDING``: its last n rows (as contributions: value, count, extreme);
* ``RANGE r PRECEDING``: its rows with ``t >= watermark - r`` (a later row's frame starts at
  or after that);
* ``UNBOUNDED PRECEDING``: one row of running totals (sum, count, min, max).

The output is append-only and keeps the input's event time column, so it can feed windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from caudal.operators.base import Operator, OperatorContext
from caudal.operators.event_time import ArrivalCheck
from caudal.operators.frame_kernels import FrameAggregates, frame_bounds
from caudal.operators.partition_rows import partition_hash, sort_partitions
from caudal.plan.aggregates import AggCall
from caudal.plan.over_nodes import Frame
from caudal.state.key_groups import key_group
from caudal.state.rescale import (
    KEY_GROUP,
    keep_key_groups,
    key_group_range,
    restored_watermark,
    watermark_table,
)
from caudal.watermark import WATERMARK_MAX, WATERMARK_MIN

SEQ, TIME, HASH = "_seq", "_t", "_h"


class OverAggregate(Operator):
    """Emits every input row with its OVER aggregates once the watermark passes it.

    Input: the rows (``input_schema``), with event time in ``time_column``. Output: the input
    columns, then one column per aggregate (``output_schema``).
    """

    def __init__(self, partition: list[str], order: list[tuple[str, bool, bool]],
                 frame: Frame, aggregates: list[AggCall], input_schema: pa.Schema,
                 output_schema: pa.Schema, time_column: str):
        assert frame.kind in ("rows", "range")
        self.partition = list(partition)
        self.frame = frame
        self.aggregates = FrameAggregates(aggregates)
        self.input_schema = input_schema
        self.output_schema = output_schema
        self.time_column = time_column
        self.arrival = ArrivalCheck(time_column, None)
        self.buffer: list[pa.Table] = []
        self.buffered = 0
        self.carry: pa.Table | None = None
        self.next_seq = 0

    def open(self, ctx: OperatorContext) -> None:
        super().open(ctx)
        ctx.metrics.setdefault("late_rows", 0)

    @property
    def watermark(self) -> int:
        return self.arrival.watermark

    def process(self, batch: pa.RecordBatch, input: int = 0) -> Sequence[pa.RecordBatch]:
        if batch.num_rows == 0:
            return ()
        side: list[pa.RecordBatch] = []
        batch, ts = self.arrival.split(batch, self.ctx.metrics, side)
        n = batch.num_rows
        if n:
            table = pa.Table.from_batches([batch]).select(self.input_schema.names)
            table = table.append_column(SEQ, pa.array(
                np.arange(self.next_seq, self.next_seq + n, dtype=np.int64)))
            self.next_seq += n
            self.buffer.append(table.append_column(TIME, pa.array(ts)))
            self.buffered += n
        return side

    def on_watermark(self, time: int) -> Sequence[pa.RecordBatch]:
        if time <= self.watermark:
            return ()
        self.arrival.watermark = time
        return self._release(time)

    def on_end(self) -> Sequence[pa.RecordBatch]:
        return self._release(WATERMARK_MAX)

    # ---- a release ------------------------------------------------------------------------

    def _release(self, time: int) -> list[pa.RecordBatch]:
        if not self.buffer:
            self._prune_carry(time)
            return []
        table = pa.concat_tables(self.buffer) if len(self.buffer) > 1 else self.buffer[0]
        t = table.column(TIME).to_numpy()
        ready = t < time
        if not ready.any():
            return []
        if ready.all():
            rows, self.buffer, self.buffered = table, [], 0
        else:
            rest = table.filter(pa.array(~ready))
            self.buffer, self.buffered = [rest], rest.num_rows
            rows = table.filter(pa.array(ready))
        out = self._aggregate(rows.combine_chunks(), time)
        return out.to_batches(max_chunksize=1 << 16)

    def _aggregate(self, rows: pa.Table, time: int) -> pa.Table:
        """The released rows with their aggregates; the carried state moves on."""
        h = partition_hash(rows, self.partition)
        released = pa.table({**{c: rows.column(c) for c in self.partition},
                             HASH: pa.array(h), TIME: rows.column(TIME),
                             SEQ: rows.column(SEQ),
                             **self.aggregates.contributions(rows)})
        carried, kept = self._carried_for(np.unique(h))
        combined = pa.concat_tables([carried, released.cast(carried.schema)]) \
            if carried is not None else released
        combined = combined.combine_chunks()
        ordered = sort_partitions(combined, combined.column(HASH).to_numpy(),
                                  combined.column(SEQ).to_numpy(), self.partition,
                                  [(TIME, False, False)])
        take = pa.array(ordered.indices)
        combined = combined.take(take)
        values = combined.column(TIME).to_numpy()
        bounds = frame_bounds(ordered.heads, self.frame.kind, self.frame.preceding, values,
                              ordered.peer_start)
        gid = ordered.gid
        accs = self.aggregates.accumulate(combined, bounds, gid)
        results = self.aggregates.finalize(accs)
        # the released rows in arrival order (no copy of them), each with its results
        first = carried.num_rows if carried is not None else 0
        position = np.empty(rows.num_rows, dtype=np.int64)
        is_new = ordered.indices >= first
        position[ordered.indices[is_new] - first] = np.flatnonzero(is_new)
        self._carry_on(combined, accs, bounds, ordered.heads, kept, time)
        arrays = [rows.column(f.name) for f in self.input_schema]
        pick = pa.array(position)
        arrays += [r.take(pick) for r in results]
        return pa.Table.from_arrays(arrays, schema=self.output_schema)

    def _carried_for(self, touched: np.ndarray) -> tuple[pa.Table | None, pa.Table | None]:
        """The carried rows of the touched partitions, and the rest."""
        carry = self.carry
        if carry is None or carry.num_rows == 0:
            return None, None
        hit = pl.Series(carry.column(HASH).to_numpy()).is_in(pl.Series(touched).implode()).to_numpy()
        return carry.filter(pa.array(hit)), carry.filter(pa.array(~hit))

    def _carry_on(self, combined: pa.Table, accs: list[dict[str, Any]], bounds,
                  heads: np.ndarray, kept: pa.Table | None, time: int) -> None:
        """What each touched partition carries to the next release (see the module doc)."""
        n = combined.num_rows
        last = np.append(np.flatnonzero(heads)[1:], n) - 1
        frame = self.frame
        if frame.preceding is None:  # running totals: one row per partition
            base = combined.select(self.partition + [HASH, TIME, SEQ]).take(pa.array(last))
            totals = self.aggregates.totals(accs, last)
            for name, column in totals.items():
                base = base.append_column(name, column)
            carry = base
        elif frame.kind == "rows":
            if frame.preceding == 0:
                carry = combined.slice(0, 0)
            else:
                group_end = np.repeat(last, np.diff(np.append(np.flatnonzero(heads), n)))
                carry = combined.filter(pa.array(group_end - np.arange(n) < frame.preceding))
        else:
            carry = combined
        if kept is not None and kept.num_rows:
            carry = pa.concat_tables([kept, carry.cast(kept.schema)])
        self.carry = carry
        self._prune_carry(time)

    def _prune_carry(self, time: int) -> None:
        """RANGE frames: rows older than ``watermark - range`` are in no later frame."""
        frame = self.frame
        if self.carry is None or frame.kind != "range" or frame.preceding is None or \
                time >= WATERMARK_MAX:
            if time >= WATERMARK_MAX:
                self.carry = None
            return
        t = self.carry.column(TIME).to_numpy()
        old = t < time - frame.preceding
        if old.any():
            self.carry = self.carry.filter(pa.array(~old))

    # ---- checkpoints ----------------------------------------------------------------------

    def _key_groups(self, table: pa.Table) -> pa.Array:
        if not self.partition:
            return pa.array(np.zeros(table.num_rows, dtype=np.int32))
        return pa.array(key_group(partition_hash(table, self.partition),
                                  self.ctx.max_key_groups))

    def snapshot(self, epoch: int) -> dict[str, Any]:
        out: dict[str, Any] = {"meta": watermark_table(self.watermark)}
        if self.buffer:
            rows = pa.concat_tables(self.buffer)
            self.buffer = [rows]
            out["rows"] = rows.append_column(KEY_GROUP, self._key_groups(rows))
        if self.carry is not None and self.carry.num_rows:
            out["carry"] = self.carry.append_column(KEY_GROUP, self._key_groups(self.carry))
        return out

    def restore(self, state: dict[str, Any]) -> None:
        self.arrival.watermark = restored_watermark(state, WATERMARK_MIN)
        rows, carry = self._own(state.get("rows")), self._own(state.get("carry"))
        seqs = [t.column(SEQ).to_numpy() for t in (carry, rows) if t is not None]
        everything = np.concatenate(seqs) if seqs else np.zeros(0, dtype=np.int64)
        renumbered = np.empty(len(everything), dtype=np.int64)
        renumbered[np.argsort(everything, kind="stable")] = np.arange(len(everything))
        self.next_seq = len(everything)
        at = 0
        self.carry, self.buffer, self.buffered = None, [], 0
        if carry is not None:
            k = carry.num_rows
            self.carry = carry.set_column(carry.column_names.index(SEQ), SEQ,
                                          pa.array(renumbered[at:at + k])).combine_chunks()
            at += k
        if rows is not None and rows.num_rows:
            rows = rows.set_column(rows.column_names.index(SEQ), SEQ,
                                   pa.array(renumbered[at:at + rows.num_rows]))
            self.buffer, self.buffered = [rows.combine_chunks()], rows.num_rows

    def _own(self, table: pa.Table | None) -> pa.Table | None:
        if table is None or table.num_rows == 0:
            return None
        if not self.partition:
            table = table if self.ctx.subtask == 0 else table.slice(0, 0)
        else:
            table = keep_key_groups(table, key_group_range(self.ctx))
        if KEY_GROUP in table.column_names:
            table = table.drop_columns([KEY_GROUP])
        return table if table.num_rows else None

    def state_rows(self) -> int:
        return self.buffered + (self.carry.num_rows if self.carry is not None else 0)
