"""The local half of a two-phase ("local-global") window aggregate, as Flink's MiniBatch local
aggregation: runs in the chain *before* the hash edge and turns each batch into one partial
state row per (pane, key) with the same ``Aggregator.partial`` kernel the window operator
uses, so the edge carries a few state rows instead of every raw row, and the downstream
``WindowAggregate(partial_input=True)`` only merges them.

Why it is exact:

* Only aggregates whose state is compact and mergeable are split (``splittable``); the
  others keep one phase (the planner decides).
* Late rows are still judged downstream, where the watermark is. A row is late there when
  the last window holding it ends at or before the downstream watermark (so its time is
  below it), which is never above this operator's watermark (watermarks leave a chain after
  the batches before them, and the downstream takes the minimum of its inputs). So rows at
  or above our watermark are surely on time and
  are pre-aggregated (``_ts`` null); rows below it (rare: disorder beyond the watermark
  delay) are sent one state row each with their event time in ``_ts``, for the downstream to
  check and count exactly as a single-phase aggregate would.
* Except once this subtask's source has been idle (``on_idle``): the downstream then leaves
  it out of its minimum and may pass our watermark, and no bound on how far reaches this
  subtask. From then on every row goes with its ``_ts`` (vouched rows had vanished
  uncounted into panes whose windows had fired). Its snapshot says so (``idle_meta``): a
  subtask restored from such snapshots only stays so; one restored with a never-idle
  subtask's watermark vouches from the minimum of those (the downstream's is at most it).
* Processing time: the pane of the local arrival time; downstream lifts panes whose windows
  already fired to its own clock (a row is never late on processing time).

Stateless per batch (it emits at once); only its watermark is checkpointed, so that after a
restore it is never below the restored downstream watermark.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from caudal.operators.aggregator import Aggregator
from caudal.operators.base import Operator
from caudal.operators.event_time import now_us, times_of
from caudal.plan.aggregates import AggCall
from caudal.plan.windows import WindowSpec
from caudal.state.rescale import restored_watermark, watermark_table
from caudal.watermark import WATERMARK_MIN

PANE = "_pane"
#: event time of a row that may be late downstream (null: pre-aggregated, surely on time)
TS = "_ts"
_ROWID = "__rowid"


def splittable(calls: Sequence[AggCall], input_schema: pa.Schema,
               time_column: str | None) -> bool:
    """Whether every aggregate's partial state is compact and mergeable across subtasks."""
    try:
        agg = Aggregator(calls, input_schema, time_column)
    except ValueError:
        return False
    return all(k.two_phase for k in agg.kernels)


def partial_schema(window_keys: list[str], calls: Sequence[AggCall], input_schema: pa.Schema,
                   time_column: str | None) -> pa.Schema:
    """The schema the local stage emits (for the plan and EXPLAIN)."""
    op = LocalWindowPartials(WindowSpec("tumble", 1), window_keys, list(calls), time_column,
                             input_schema)
    return op.output_schema


def _schema_row(aggregator: Aggregator, keys: list[str], schema: pa.Schema) -> pa.RecordBatch:
    """The batch a local stage derives its output schema from: where the aggregates take
    the NumPy path (count/min/max of integers by one integer key), one row of zeros (NULLs
    in other columns), which that path groups, since Acero's first ``group_by`` in a
    process costs ~50 ms of CPU, paid in planning, before any row, by a plan that may
    never run Acero; else no rows."""
    if len(keys) != 1 or aggregator.dense_partials(keys, schema) is None:
        return pa.RecordBatch.from_pylist([], schema=schema)
    return pa.RecordBatch.from_arrays(
        [pa.array([0], f.type) if pa.types.is_integer(f.type) else pa.nulls(1, f.type)
         for f in schema], schema=schema)


def key_partial_schema(keys: list[str], calls: Sequence[AggCall], input_schema: pa.Schema,
                       time_column: str | None) -> pa.Schema:
    """The schema ``LocalKeyPartials`` emits (for the plan and EXPLAIN)."""
    return LocalKeyPartials(keys, list(calls), time_column, input_schema).output_schema


#: a local pre-aggregation holds the partials of at most this many rows before it emits them
HOLD_ROWS = 1 << 20


class LocalKeyPartials(Operator):
    """The local half of a two-phase updating GROUP BY over an append-only input: rows become
    partial state rows per key, with the kernels the updating aggregate itself runs
    (``_Merged.add``), so the hash edge after it carries and splits those few rows instead
    of every raw row, and the downstream ``UpdatingAggregate(partial_input=True)`` only
    merges them.

    Where the aggregator has a ``DensePartials`` (count/min/max per integer key), the rows
    of many batches are folded into its arrays, as the operator does at parallelism 1, and
    their partials are emitted together: after ``HOLD_ROWS`` rows, once ``hold_us`` of
    processing time passed since the first row held, before a checkpoint barrier
    (``release_held``: the partials are never in a snapshot, so a checkpoint taken at
    parallelism 2 restores at 1, where there is no local stage) and at the end. Per batch,
    a partial table, its hash split and its merge downstream cost more than folding its rows
    (at parallelism 2 they made the updating aggregate slower than at 1). Other aggregates,
    and ``hold_us`` 0 (the aggregate emits after every batch), emit each batch's partials
    at once.

    Exact because an append-only updating aggregate keeps nothing but partial states per
    key: it already merges the partials of many batches before a flush, and a partial built
    here is the same partial built one hop later. No event time is involved (no window, no
    lateness)."""

    def __init__(self, keys: list[str], aggregates: list[AggCall], time_column: str | None,
                 input_schema: pa.Schema, hold_us: int = 0):
        self.keys = list(keys)
        self.aggregator = Aggregator(aggregates, input_schema, time_column)
        self.output_schema = self._partial(
            _schema_row(self.aggregator, self.keys, input_schema)).schema
        self.hold_s = max(0, int(hold_us)) / 1e6
        self.dense = self.aggregator.dense_partials(self.keys, input_schema) \
            if self.hold_s > 0 else None
        #: when the first row now held arrived (monotonic seconds; None: nothing held)
        self.held_since: float | None = None

    def _partial(self, batch: pa.RecordBatch) -> pa.Table:
        columns: dict[str, Any] = {k: batch.column(k) for k in self.keys}
        columns.update(self.aggregator.prepare(batch))
        return self.aggregator.partial(pa.table(columns), self.keys)

    def _batches(self, table: pa.Table) -> list[pa.RecordBatch]:
        if not table.schema.equals(self.output_schema):
            table = table.cast(self.output_schema)
        return table.combine_chunks().to_batches()

    def process(self, batch: pa.RecordBatch, input: int = 0) -> Sequence[pa.RecordBatch]:
        if batch.num_rows == 0:
            return ()
        dense = self.dense
        if dense is None:
            return self._batches(self._partial(batch))
        if dense.add(batch):
            if self.held_since is None:
                self.held_since = time.monotonic()
            elif dense.rows >= HOLD_ROWS or time.monotonic() - self.held_since >= self.hold_s:
                return self._release()
            return ()
        out = self._release()   # keys out of the arrays' range (or NULLs): start afresh
        if dense.add(batch):
            self.held_since = time.monotonic()
            return out
        return out + self._batches(self._partial(batch))

    def _release(self) -> list[pa.RecordBatch]:
        """The partials held, emitted (none if nothing is held)."""
        self.held_since = None
        taken = self.dense.take() if self.dense is not None else None
        return self._batches(taken) if taken is not None else []

    def on_processing_time(self, now_us: int) -> Sequence[pa.RecordBatch]:
        if self.held_since is not None and time.monotonic() - self.held_since >= self.hold_s:
            return self._release()
        return ()

    def release_held(self) -> Sequence[pa.RecordBatch]:
        return self._release()

    def on_end(self) -> Sequence[pa.RecordBatch]:
        return self._release()


class LocalWindowPartials(Operator):
    """Raw rows -> partial aggregate states per (pane, keys), plus ``_ts`` (see module).

    With ``hold_us`` > 0, on event time, where the aggregator has a ``DensePartials``
    (count/min/max per integer key), the on-time rows of consecutive batches of one pane
    are folded into its arrays and emitted together (as ``LocalKeyPartials`` does): when a
    batch of another pane (or with rows that may be late) comes, after ``HOLD_ROWS`` rows
    or ``hold_us``, when the watermark reaches the end of the first window that covers
    the pane (before it is forwarded: the downstream fires no window that lacks them),
    before a barrier or an idle mark (``release_held``) and at the end."""

    def __init__(self, window: WindowSpec, keys: list[str], aggregates: list[AggCall],
                 time_column: str | None, input_schema: pa.Schema, hold_us: int = 0):
        self.window = window
        self.keys = list(keys)
        self.time_column = time_column
        self.aggregator = Aggregator(aggregates, input_schema, time_column)
        self.watermark = WATERMARK_MIN
        row = _schema_row(self.aggregator, self.keys, input_schema)
        self.output_schema = self._partial(row, np.zeros(row.num_rows, np.int64), None).schema
        self.hold_s = max(0, int(hold_us)) / 1e6
        self.dense = self.aggregator.dense_partials(self.keys, input_schema) \
            if self.hold_s > 0 and time_column is not None else None
        #: False once the source subtask has been idle (module docstring)
        self.vouching = True
        #: the pane whose rows the arrays hold, and since when (None: nothing held)
        self.held_pane: int | None = None
        self.held_since = 0.0

    def _hold(self, batch: pa.RecordBatch, pane: int) -> list[pa.RecordBatch]:
        """Fold ``batch`` (on time, all in ``pane``) into the arrays; what to emit now (if
        it cannot be folded: what was held, then its own partials)."""
        out = self.release_held() if self.held_pane is not None and pane != self.held_pane \
            else []
        if not self.dense.add(batch):
            out += self.release_held()   # keys out of the arrays' range (or NULLs)
            if not self.dense.add(batch):
                panes = np.full(batch.num_rows, pane, dtype=np.int64)
                return out + self._partial(batch, panes, None).combine_chunks().to_batches()
        if self.held_pane is None:
            self.held_pane, self.held_since = pane, time.monotonic()
        elif self.dense.rows >= HOLD_ROWS or \
                time.monotonic() - self.held_since >= self.hold_s:
            out += self.release_held()
        return out

    def release_held(self) -> list[pa.RecordBatch]:
        """The partials held, emitted (none if nothing is held)."""
        if self.held_pane is None:
            return []
        pane, self.held_pane = self.held_pane, None
        taken = self.dense.take()
        if taken is None:
            return []
        taken = taken.add_column(0, PANE, pa.array(np.full(taken.num_rows, pane,
                                                           dtype=np.int64)))
        return self._batches(taken.append_column(TS, pa.nulls(taken.num_rows, pa.int64())))

    def _batches(self, table: pa.Table) -> list[pa.RecordBatch]:
        if not table.schema.equals(self.output_schema):
            table = table.cast(self.output_schema)
        return table.combine_chunks().to_batches()

    def _partial(self, batch: pa.RecordBatch, panes: np.ndarray,
                 ts: np.ndarray | None) -> pa.Table:
        """States of ``batch`` grouped by pane and keys, or (``ts`` given) one per row."""
        columns: dict[str, Any] = {PANE: pa.array(panes, pa.int64())}
        columns.update({k: batch.column(k) for k in self.keys})
        columns.update(self.aggregator.prepare(batch))
        if ts is None:
            if self.keys and len(panes) and panes.min() == panes.max():
                # the usual batch, all in one pane: group by the keys alone and add the pane
                # after (a second group key made Acero's group_by ~5x slower: this stage was
                # most of a parallel tumbling count's extra CPU)
                del columns[PANE]
                out = self.aggregator.partial(pa.table(columns), self.keys)
                out = out.add_column(0, PANE, pa.array(np.full(out.num_rows, int(panes[0]),
                                                               dtype=np.int64)))
            else:
                out = self.aggregator.partial(pa.table(columns), [PANE, *self.keys])
            return out.append_column(TS, pa.nulls(out.num_rows, pa.int64()))
        columns[_ROWID] = pa.array(np.arange(batch.num_rows))
        out = self.aggregator.partial(pa.table(columns), [PANE, *self.keys, _ROWID])
        rowid = out.column(_ROWID).to_numpy()
        return out.drop_columns([_ROWID]).append_column(TS, pa.array(ts[rowid], pa.int64()))

    def process(self, batch: pa.RecordBatch, input: int = 0) -> Sequence[pa.RecordBatch]:
        if self.time_column is None:
            ts = np.full(batch.num_rows, now_us(), dtype=np.int64)
        else:
            column = batch.column(self.time_column)
            if column.null_count:  # no window for them: counted and dropped as downstream would
                metrics = self.ctx.metrics
                metrics["null_time_rows"] = metrics.get("null_time_rows", 0) + column.null_count
                batch = batch.filter(column.is_valid())
                column = batch.column(self.time_column)
            ts = times_of(column)
        if batch.num_rows == 0:
            return ()
        panes = self.window.pane_of(ts)
        maybe_late = None if self.time_column is None else ts < self.watermark \
            if self.vouching else np.ones(len(ts), dtype=bool)
        held: list[pa.RecordBatch] = []
        if self.dense is not None:
            lo = int(panes.min())
            if not maybe_late.any() and lo == int(panes.max()):
                return self._hold(batch, lo)
            held = self.release_held()
        if maybe_late is None or not maybe_late.any():
            parts = [self._partial(batch, panes, None)]
        else:
            keep = pa.array(~maybe_late)
            late = pa.array(maybe_late)
            parts = [self._partial(batch.filter(keep), panes[~maybe_late], None),
                     self._partial(batch.filter(late), panes[maybe_late], ts[maybe_late])]
        out = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
        return held + out.combine_chunks().to_batches()

    def on_watermark(self, time: int) -> Sequence[pa.RecordBatch]:
        if time > self.watermark:
            self.watermark = time
        if self.held_pane is not None and self.window.pane_end(self.held_pane) <= time:
            return self.release_held()   # before the watermark that fires its first window
        return ()

    def on_processing_time(self, now_us: int) -> Sequence[pa.RecordBatch]:
        if self.held_pane is not None and time.monotonic() - self.held_since >= self.hold_s:
            return self.release_held()
        return ()

    def on_end(self) -> Sequence[pa.RecordBatch]:
        return self.release_held()

    def on_idle(self) -> None:
        self.vouching = False

    def snapshot(self, epoch: int) -> dict[str, Any]:
        return {"meta" if self.vouching else "idle_meta": watermark_table(self.watermark)}

    def restore(self, state: dict[str, Any]) -> None:
        if state.get("meta") is None and state.get("idle_meta") is not None:
            self.vouching = False   # only subtasks that had been idle: still no bound
            self.watermark = restored_watermark(state, self.watermark, "idle_meta")
        else:
            self.watermark = restored_watermark(state, self.watermark)
