"""Tumbling, hopping and cumulating window aggregation over event (or processing) time.

State layout: for each *pane* (a slice of ``pane_us``: the width of a tumbling window, the
slide of a hopping window, the step of a cumulating one) a list of Arrow tables of partial
aggregate states, one row per (pane, key) per table. Each arriving batch is aggregated once
(one Acero ``group_by`` by pane and key) and its partial table is filed under its pane(s);
a pane's tables are merged into one when they pile up.

When the watermark passes window ends, the panes of the windows that close are merged once
more (one table per pane, kept for the pane's later windows), their rows are *exploded* into
the windows that close (a hopping pane belongs to width/slide windows: its partial rows, not
its raw rows, are repeated), and one ``group_by`` by (window end, key) merges and finalizes
them — every closing window at once. A pane is freed when the last window containing it has
fired, so state holds only panes of windows still open.

With ``partial_input`` (two-phase aggregation at parallelism > 1) the input is already
partial states per (pane, key) from ``operators.local_window_partials`` upstream of the
shuffle: the partial step is skipped and the states are filed (merged) as they are, while
late rows are still detected here, where the watermark is, from the ``_ts`` of the rows the
local stage could not vouch for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from caudal import compute as pc
from caudal.operators.aggregator import Aggregator
from caudal.operators.base import Operator, OperatorContext
from caudal.operators.event_time import ArrivalCheck, FiresOnTime, LateOutput, timestamps
from caudal.operators.local_window_partials import TS as LOCAL_TS
from caudal.plan.aggregates import AggCall
from caudal.plan.windows import WindowSpec
from caudal.state.incremental import ChangedParts, StateDelta, Unfolded, key_membership
from caudal.state.key_groups import hash_columns, key_group
from caudal.state.rescale import (
    KEY_GROUP,
    keep_key_groups,
    key_group_range,
    restored_watermark,
    watermark_table,
)
from caudal.watermark import WATERMARK_MIN

PANE = "_pane"
WEND = "_wend"
#: merge a pane's partial tables once it has this many
_COMPACT_TABLES = 16
#: largest batch emitted at once
_OUT_ROWS = 1 << 16
#: above every pane: expires them all
_NO_PANE = 1 << 62


class KeyedWindowState:
    """Shared by windowed operators: key columns and snapshot helpers."""

    keys: list[str]

    def key_groups(self, table: pa.Table) -> pa.Array:
        if not self.keys:
            return pa.array(np.zeros(table.num_rows, dtype=np.int32))
        return pa.array(key_group(hash_columns(table, self.keys), self.ctx.max_key_groups))

    def own(self, table: pa.Table) -> pa.Table:
        """The rows of a restored (possibly concatenated) state table this subtask owns."""
        if not self.keys:
            return table if self.ctx.subtask == 0 else table.slice(0, 0)
        return keep_key_groups(table, key_group_range(self.ctx))


#: the window columns an aggregate emits by default: (output name, what)
DEFAULT_WINDOW_COLUMNS = [("window_start", "start"), ("window_end", "end")]


def tiered_run(tables: list[pa.Table]) -> int:
    """Where the run of tables to merge starts: the newest two, extended to older tables while
    each is no larger than the run so far. Like a log-structured merge, a row is re-merged
    O(log n) times, instead of every time the pane is compacted (quadratic for a large pane
    with many distinct keys)."""
    start = len(tables) - 2
    rows = tables[-1].num_rows + tables[-2].num_rows
    while start > 0 and tables[start - 1].num_rows <= rows:
        start -= 1
        rows += tables[start].num_rows
    return start


def window_arrays(window_columns: list[tuple[str, str]], starts: np.ndarray,
                  ends: np.ndarray) -> list[pa.Array]:
    """The requested window columns: ``start``, ``end``, ``time`` (end - 1 µs, Flink's
    window_time) or ``struct`` (Arroyo's ``window`` with fields start and end)."""
    out = []
    for _, what in window_columns:
        if what == "start":
            out.append(timestamps(starts))
        elif what == "end":
            out.append(timestamps(ends))
        elif what == "time":
            out.append(timestamps(ends - 1))
        else:
            out.append(pa.StructArray.from_arrays([timestamps(starts), timestamps(ends)],
                                                  names=["start", "end"]))
    return out


def emit_batches(columns: list[pa.Array], schema: pa.Schema) -> list[pa.RecordBatch]:
    arrays = []
    for col, field in zip(columns, schema):
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        if not col.type.equals(field.type):
            col = col.cast(field.type)
        arrays.append(col)
    table = pa.Table.from_arrays(arrays, schema=schema)
    return table.to_batches(max_chunksize=_OUT_ROWS)


class WindowAggregate(FiresOnTime, Operator, KeyedWindowState):
    """``GROUP BY window, keys`` with aggregates, for tumble / hop / cumulate windows.

    Input columns: the event time (unless ``time_column`` is None: processing time), the
    ``keys`` and the aggregates' argument and FILTER columns. Output: the window columns
    (``window_columns``, see ``window_arrays``), the keys, then one column per aggregate
    (``output_schema`` names them).
    """

    #: a chain restored unfolded is filed as the rows the deltas leave and the deltas' rows
    unfolded = frozenset({"panes"})

    def __init__(self, window: WindowSpec, keys: list[str], aggregates: list[AggCall],
                 time_column: str | None, input_schema: pa.Schema, output_schema: pa.Schema,
                 late_output: LateOutput | None = None,
                 window_columns: list[tuple[str, str]] | None = None,
                 partial_input: bool = False):
        assert window.kind in ("tumble", "hop", "cumulate")
        assert not (partial_input and late_output is not None), "late rows need raw rows"
        self.partial_input = partial_input
        #: partial states are one row per (pane, key) per batch: never merged
        self.accepts_merged_batches = not partial_input
        self.window = window
        self.keys = list(keys)
        self.output_schema = output_schema
        self.window_columns = list(window_columns or DEFAULT_WINDOW_COLUMNS)
        self.arrival = ArrivalCheck(time_column, late_output, window)
        self.processing_time = time_column is None
        self.aggregator = Aggregator(aggregates, input_schema, time_column)
        self.group_keys = [PANE, *self.keys]
        #: pane index -> partial state tables (columns: _pane, keys, states)
        self.panes: dict[int, list[pa.Table]] = {}
        #: windows with end <= fired_until have been emitted
        self.fired_until = WATERMARK_MIN
        #: panes changed since the last snapshot (a checkpoint writes only those)
        self.changes = ChangedParts()

    def open(self, ctx: OperatorContext) -> None:
        super().open(ctx)
        ctx.metrics.setdefault("late_rows", 0)

    # ---- input ----------------------------------------------------------------------------

    def process(self, batch: pa.RecordBatch, input: int = 0) -> Sequence[pa.RecordBatch]:
        if self.partial_input:
            self._process_partials(batch)
            return ()
        side: list[pa.RecordBatch] = []
        batch, ts = self.arrival.split(batch, self.ctx.metrics, side)
        if batch.num_rows == 0:
            return side
        panes = self.window.pane_of(ts)
        lo, hi = int(panes.min()), int(panes.max())
        columns = {k: batch.column(k) for k in self.keys}
        columns.update(self.aggregator.prepare(batch))
        if lo == hi and self.keys:  # the usual case: one pane, group by the keys only
            partial = self.aggregator.partial(pa.table(columns), self.keys)
            partial = partial.add_column(0, PANE, pa.array(np.full(partial.num_rows, lo)))
            self._file(lo, partial)
            return side
        columns[PANE] = pa.array(panes)
        partial = self.aggregator.partial(pa.table(columns), self.group_keys)
        if lo == hi:
            self._file(lo, partial)
        else:
            self._file_many(partial)
        return side

    def _process_partials(self, batch: pa.RecordBatch) -> None:
        """File partial states from the local stage. Rows with a ``_ts`` stand for one raw
        row each that may be late: dropped and counted as ``ArrivalCheck`` would (once the
        last window of their pane has fired). On processing time, panes whose windows
        already fired move to the current clock."""
        if batch.num_rows == 0:
            return
        ts = batch.column(LOCAL_TS)
        table = pa.Table.from_batches([batch]).drop_columns([LOCAL_TS])
        # rows with a _ts may repeat a (pane, key) of the pre-aggregated rows
        dirty = ts.null_count < len(ts)
        if dirty and self.arrival.watermark > WATERMARK_MIN:
            closes = self.window.pane_last_end(table.column(PANE).to_numpy())
            late = pc.is_valid(ts).to_numpy(zero_copy_only=False) & \
                (closes <= self.arrival.watermark)
            count = int(late.sum())
            if count:
                self.ctx.metrics["late_rows"] += count
                table = table.filter(pa.array(~late))
        panes = table.column(PANE).to_numpy()
        if self.processing_time and len(panes):
            floor = int(self.window.pane_of(np.array([self.arrival.watermark]))[0])
            if panes.min() < floor:
                panes = np.maximum(panes, floor)
                table = table.set_column(0, PANE, pa.array(panes))
                dirty = True
        if table.num_rows == 0:
            return
        if dirty:
            table = self.aggregator.merge(table, self.group_keys)
            panes = table.column(PANE).to_numpy()
        lo, hi = int(panes.min()), int(panes.max())
        if lo == hi:
            self._file(lo, table)
        else:
            self._file_many(table)

    def _file(self, pane: int, table: pa.Table) -> None:
        self.changes.touch(pane, table.select(self.keys))
        tables = self.panes.setdefault(pane, [])
        tables.append(table)
        if len(tables) >= _COMPACT_TABLES:
            start = tiered_run(tables)
            tables[start:] = [self.aggregator.merge(pa.concat_tables(tables[start:]),
                                                    self.group_keys)]

    def _file_many(self, partial: pa.Table) -> None:
        """File a partial table that spans several panes: sorted by pane (unless it is, as
        a whole snapshot is), sliced."""
        panes = partial.column(PANE).to_numpy()
        if len(panes) > 1 and (panes[1:] < panes[:-1]).any():
            partial = partial.sort_by(PANE)
            panes = partial.column(PANE).to_numpy()
        starts = np.flatnonzero(np.diff(panes)) + 1
        bounds = [0, *starts.tolist(), len(panes)]
        for a, b in zip(bounds[:-1], bounds[1:]):
            self._file(int(panes[a]), partial.slice(a, b - a))

    def _compacted(self, pane: int) -> pa.Table:
        tables = self.panes[pane]
        if len(tables) > 1:
            tables[:] = [self.aggregator.merge(pa.concat_tables(tables), self.group_keys)]
        return tables[0]

    # ---- time -----------------------------------------------------------------------------

    def _fire(self, until: int) -> list[pa.RecordBatch]:
        """Emit every window with end in (fired_until, until]; free panes no window needs."""
        done = self.fired_until
        if until <= done:
            return []
        self.fired_until = until
        if not self.panes or self.window.next_end_after(done) > until:
            return []  # no window ends in (done, until]
        ids = np.fromiter(self.panes.keys(), dtype=np.int64, count=len(self.panes))
        first_end = self.window.pane_end(ids)
        last_end = self.window.pane_last_end(ids)
        ready = ids[(first_end <= until) & (last_end > done)]
        out: list[pa.RecordBatch] = []
        if len(ready):
            ready.sort()
            out = self._emit(ready, done, until)
        for pane in ids[last_end <= until].tolist():
            del self.panes[pane]
        return out

    def _emit(self, panes: np.ndarray, done: int, until: int) -> list[pa.RecordBatch]:
        state = pa.concat_tables([self._compacted(int(p)) for p in panes])
        pane_col = state.column(PANE).to_numpy()
        if self.window.kind == "tumble":
            ends = self.window.pane_end(pane_col)
            merged = state
        else:
            rows, ends = self.window.explode(pane_col, done + 1, until)
            if len(rows) == 0:
                return []
            exploded = state.drop_columns([PANE]).take(pa.array(rows))
            exploded = exploded.append_column(WEND, pa.array(ends))
            merged = self.aggregator.merge(exploded, [WEND, *self.keys])
            ends = merged.column(WEND).to_numpy()
        starts = self.window.window_start(ends)
        columns = window_arrays(self.window_columns, starts, ends)
        columns += [merged.column(k) for k in self.keys]
        columns += self.aggregator.final(merged)
        return emit_batches(columns, self.output_schema)

    def output_watermark(self, time: int) -> int:
        return time

    # ---- checkpoints ----------------------------------------------------------------------

    def snapshot(self, epoch: int) -> dict[str, Any]:
        meta = watermark_table(self.fired_until)
        if not self.changes.baseline:
            tables = [self._compacted(p) for p in sorted(self.panes)]
            if not tables:
                return {"meta": meta}
            self.changes.baseline = True
            self.changes.take()
            return {"panes": self._tagged(tables), "meta": meta}
        # what changed: the rows of the keys that got rows in each pane (they replace the
        # stored ones); panes of fired windows are expired below the lowest pane still open
        touched = self.changes.take()
        tables = [self._changed_rows(p, touched[p]) for p in sorted(touched)
                  if p in self.panes]
        lowest = min(self.panes) if self.panes else _NO_PANE
        upserts = self._tagged(tables) if tables else None
        return {"panes": StateDelta(self.group_keys, upserts=upserts,
                                    expire=(PANE, lowest)), "meta": meta}

    def _changed_rows(self, pane: int, touched: list[pa.Table]) -> pa.Table:
        """The merged rows of the keys of ``touched`` in ``pane``: each of the pane's tables
        cut to those keys first, so the merge costs what changed, not the pane."""
        tables = self.panes[pane]
        if not self.keys or len(tables) == 1:
            return ChangedParts.changed_rows(self._compacted(pane), touched, self.keys)
        keys = pa.concat_tables(touched) if len(touched) > 1 else touched[0]
        parts = [t.filter(pa.array(key_membership(t, keys, self.keys))) for t in tables]
        return self.aggregator.merge(pa.concat_tables(parts), self.group_keys)

    def _tagged(self, tables: list[pa.Table]) -> pa.Table:
        panes = pa.concat_tables(tables)
        return panes.append_column(KEY_GROUP, self.key_groups(panes))

    def restore(self, state: dict[str, Any]) -> None:
        self.fired_until = restored_watermark(state, WATERMARK_MIN)
        if not self.processing_time:
            self.arrival.watermark = self.fired_until
        self.panes = {}
        self.changes = ChangedParts()
        table = state.get("panes")
        if isinstance(table, Unfolded):
            # the whole table's rows the deltas leave (still in pane order) and the deltas'
            # rows, filed apart: their keys are disjoint, so a pane's two parts are
            # concatenated, not merged (no fold appending the deltas' rows to re-sort).
            # Unfolded means the same parallelism: every row is this subtask's, so the key
            # group column is neither decoded nor tested
            for part in table.split([n for n in table.schema.names if n != KEY_GROUP]):
                self._file_owned(part)
            for tables in self.panes.values():
                if len(tables) > 1:
                    tables[:] = [pa.concat_tables(tables)]
            return
        if table is None or table.num_rows == 0:
            return
        self._file_owned(table)
        for pane in list(self.panes):
            self._compacted(pane)

    def _file_owned(self, table: pa.Table) -> None:
        """File the rows of a restored table this subtask owns."""
        table = self.own(table)
        if KEY_GROUP in table.column_names:
            table = table.drop_columns([KEY_GROUP])
        if table.num_rows:
            self._file_many(table)

    # ---- introspection --------------------------------------------------------------------

    def state_rows(self) -> int:
        """Rows held in window state (for tests and metrics)."""
        return sum(t.num_rows for tables in self.panes.values() for t in tables)
