"""Session window aggregation: per key, rows closer than ``gap`` form one window
``[first row, last row + gap)``; windows that touch or overlap merge, as Flink's do.

State layout: one Arrow table of open sessions (keys, ``_start``, ``_end``, aggregate states)
plus the sessions of batches not merged in yet. Sessions are intervals with partial states,
and merging them is associative, so a batch is first collapsed into its own sessions (sort
by key and time, cut where a row starts after everything before it in its key ended), and
at each watermark the new sessions are merged with the open ones by the same vectorized
cut. A session is emitted (and its state freed) once the watermark is past its end, when no
on-time row can reach it any more.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from caudal import compute as pc
from caudal import float_order
from caudal.operators.aggregate_kernels import MERGE, PARTIAL, GroupIndex
from caudal.operators.aggregator import Aggregator
from caudal.operators.base import Operator, OperatorContext
from caudal.operators.event_time import ArrivalCheck, FiresOnTime, LateOutput
from caudal.operators.window_aggregate import (
    DEFAULT_WINDOW_COLUMNS,
    KeyedWindowState,
    emit_batches,
    window_arrays,
)
from caudal.plan.aggregates import AggCall
from caudal.plan.windows import WindowSpec
from caudal.state.rescale import KEY_GROUP, restored_watermark, watermark_table
from caudal.watermark import WATERMARK_MIN

START, END, SID = "_start", "_end", "_sid"
#: merge pending sessions into the open ones once this many rows wait
_PENDING_ROWS = 1 << 18


def _key_ids(table: pa.Table, keys: list[str]) -> np.ndarray:
    """A dense id per distinct key combination (NULLs equal), for each row. Struct keys
    (an Arroyo ``window``) are grouped by their fields."""
    if not keys:
        return np.zeros(table.num_rows, dtype=np.int64)
    columns: dict[str, pa.Array] = {}
    pending = [(k, table.column(k)) for k in keys]
    while pending:
        name, col = pending.pop(0)
        if pa.types.is_struct(col.type):
            col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
            pending += [(f"{name}.{col.type.field(i).name}", pc.struct_field(col, [i]))
                        for i in range(col.type.num_fields)]
        else:
            columns[f"__k{len(columns)}"] = float_order.normalize_key(col)  # -0.0 is 0.0
    names = list(columns)
    columns["__row"] = pa.array(np.arange(table.num_rows))
    grouped = pa.table(columns).group_by(names, use_threads=False).aggregate(
        [("__row", "list")])
    return GroupIndex(grouped["__row_list"], table.num_rows).gid


def _segmented_cummax(values: np.ndarray, heads: np.ndarray) -> np.ndarray:
    """Running max of ``values`` restarting at each segment head (indices, ascending,
    starting with 0). Each segment is shifted above all earlier ones, so one global
    ``maximum.accumulate`` never carries a max across segments."""
    if len(values) == 0:
        return values
    lows = np.minimum.reduceat(values, heads)
    spans = np.maximum.reduceat(values, heads) - lows + 1
    if float(spans.sum()) >= 2.0**62:  # shifts would overflow int64: let Polars do it
        segments = np.repeat(np.arange(len(heads)), np.diff(np.append(heads, len(values))))
        frame = pl.DataFrame({"s": segments, "v": values})
        return frame.select(pl.col("v").cum_max().over("s")).to_series().to_numpy()
    bases = np.cumsum(spans) - spans
    shift = np.repeat(bases - lows, np.diff(np.append(heads, len(values))))
    return np.maximum.accumulate(values + shift) - shift


class SessionAggregate(FiresOnTime, Operator, KeyedWindowState):
    """``GROUP BY session(gap), keys`` (or the SESSION table function PARTITION BY keys).

    Input and output columns as for ``WindowAggregate``.
    """

    def __init__(self, window: WindowSpec, keys: list[str], aggregates: list[AggCall],
                 time_column: str | None, input_schema: pa.Schema, output_schema: pa.Schema,
                 late_output: LateOutput | None = None,
                 window_columns: list[tuple[str, str]] | None = None):
        assert window.kind == "session"
        self.window_columns = list(window_columns or DEFAULT_WINDOW_COLUMNS)
        self.gap = window.size_us
        self.keys = list(keys)
        self.output_schema = output_schema
        self.arrival = ArrivalCheck(time_column, late_output)
        self.processing_time = time_column is None
        self.aggregator = Aggregator(aggregates, input_schema, time_column)
        self.open_sessions: pa.Table | None = None
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.fired_until = WATERMARK_MIN

    def open(self, ctx: OperatorContext) -> None:
        super().open(ctx)
        ctx.metrics.setdefault("late_rows", 0)

    # ---- merging ----------------------------------------------------------------------------

    def _sessions(self, table: pa.Table, phase: str) -> pa.Table:
        """Collapse interval rows (keys, _start, _end, inputs or states) into sessions."""
        start = table.column(START).to_numpy()
        end = table.column(END).to_numpy()
        gid = _key_ids(table, self.keys)
        order = np.lexsort((start, gid))
        s, e, g = start[order], end[order], gid[order]
        first_of_key = np.ones(len(g), dtype=bool)
        first_of_key[1:] = g[1:] != g[:-1]
        new = first_of_key.copy()
        if phase == PARTIAL:  # rows: all intervals are gap long, the previous ends last
            new[1:] |= s[1:] > e[:-1]
        else:
            running = _segmented_cummax(e, np.flatnonzero(first_of_key))
            new[1:] |= s[1:] > running[:-1]
        heads = np.flatnonzero(new)
        ordered = table.take(pa.array(order))
        sid = np.cumsum(new) - 1
        body = ordered.drop_columns([START, END, *self.keys]).append_column(SID, pa.array(sid))
        if phase == PARTIAL:
            states = self.aggregator.partial(body, [SID])
        else:
            states = self.aggregator.merge(body, [SID])
        columns = {k: ordered.column(k).take(pa.array(heads)) for k in self.keys}
        columns[START] = pa.array(s[heads])
        columns[END] = pa.array(np.maximum.reduceat(e, heads))
        for name in states.column_names:
            if name != SID:
                columns[name] = states.column(name)
        return pa.table(columns)

    def _merge_pending(self) -> None:
        if not self.pending:
            return
        parts = ([self.open_sessions] if self.open_sessions is not None else []) + self.pending
        self.pending, self.pending_rows = [], 0
        self.open_sessions = self._sessions(pa.concat_tables(parts), MERGE)

    # ---- input ------------------------------------------------------------------------------

    def process(self, batch: pa.RecordBatch, input: int = 0) -> Sequence[pa.RecordBatch]:
        side: list[pa.RecordBatch] = []
        batch, ts = self.arrival.split(batch, self.ctx.metrics, side, self._inside_open)
        if batch.num_rows == 0:
            return side
        columns = {k: batch.column(k) for k in self.keys}
        columns[START] = pa.array(ts)
        columns[END] = pa.array(ts + self.gap)
        columns.update(self.aggregator.prepare(batch))
        sessions = self._sessions(pa.table(columns), PARTIAL)
        self.pending.append(sessions)
        self.pending_rows += sessions.num_rows
        if self.pending_rows >= _PENDING_ROWS:
            self._merge_pending()
        return side

    def _inside_open(self, rows: pa.RecordBatch, ts: np.ndarray) -> np.ndarray:
        """Which rows behind the watermark fall inside a session of their key still open
        (start <= time <= end): they join it as Flink's would, and the batch answer has them
        in it too. Any other such row is late: one before an open session's start could
        extend it back to touch a session already emitted, which then should have merged.

        An open session is the union of touching intervals (the open sessions and the
        pending parts not yet merged into them): a time is inside it when some interval of
        its key starting at or before it ends at or after it (the running maximum of the
        ends by start). Merging here instead would redo every open session for each batch
        holding a row behind the watermark. Only the intervals of the late rows' keys are
        looked at."""
        parts = [t.select([*self.keys, START, END]) for t in
                 ([self.open_sessions] if self.open_sessions is not None else []) +
                 self.pending if t.num_rows]
        if not parts:
            return np.zeros(len(ts), dtype=bool)
        late_keys = pa.Table.from_batches([rows]).select(self.keys)
        state = pa.concat_tables(parts)
        if self.keys:
            state = _of_keys(state, late_keys, self.keys[0])
        if state.num_rows == 0:
            return np.zeros(len(ts), dtype=bool)
        gid = _key_ids(pa.concat_tables([state.select(self.keys), late_keys]), self.keys)
        n = state.num_rows
        sessions = pl.DataFrame({"g": gid[:n], "s": state.column(START).to_numpy(),
                                 "e": state.column(END).to_numpy()}).sort("g", "s")
        sessions = sessions.with_columns(pl.col("e").cum_max().over("g")).sort("s")
        late = pl.DataFrame({"g": gid[n:], "t": ts, "i": np.arange(len(ts))}).sort("t")
        found = late.join_asof(sessions, left_on="t", right_on="s", by="g",
                               strategy="backward", check_sortedness=False).sort("i")
        return (found["e"] >= found["t"]).fill_null(False).to_numpy()

    # ---- time -------------------------------------------------------------------------------

    def _fire(self, until: int) -> list[pa.RecordBatch]:
        """Emit sessions that end before ``until``: a row at ``until`` or later can no
        longer touch them."""
        if until <= self.fired_until:
            return []
        self.fired_until = until
        self._merge_pending()
        table = self.open_sessions
        if table is None or table.num_rows == 0:
            return []
        end = table.column(END).to_numpy()
        closed = end < until
        if not closed.any():
            return []
        done = table.filter(pa.array(closed))
        self.open_sessions = table.filter(pa.array(~closed))
        columns = window_arrays(self.window_columns, done.column(START).to_numpy(),
                                done.column(END).to_numpy())
        columns += [done.column(k) for k in self.keys]
        columns += self.aggregator.final(done)
        return emit_batches(columns, self.output_schema)

    # ---- checkpoints ------------------------------------------------------------------------

    def snapshot(self, epoch: int) -> dict[str, Any]:
        self._merge_pending()
        meta = watermark_table(self.fired_until)
        table = self.open_sessions
        if table is None or table.num_rows == 0:
            return {"meta": meta}
        return {"sessions": table.append_column(KEY_GROUP, self.key_groups(table)),
                "meta": meta}

    def restore(self, state: dict[str, Any]) -> None:
        self.fired_until = restored_watermark(state, WATERMARK_MIN)
        if not self.processing_time:
            self.arrival.watermark = self.fired_until
        self.pending, self.pending_rows = [], 0
        table = state.get("sessions")
        self.open_sessions = None
        if table is not None and table.num_rows:
            table = self.own(table)
            if KEY_GROUP in table.column_names:
                table = table.drop_columns([KEY_GROUP])
            self.open_sessions = table.combine_chunks()

    def state_rows(self) -> int:
        rows = self.open_sessions.num_rows if self.open_sessions is not None else 0
        return rows + self.pending_rows


def _of_keys(state: pa.Table, keys: pa.Table, first: str) -> pa.Table:
    """The rows of ``state`` whose ``first`` key column holds a value of ``keys``' (a
    superset of those of their keys; NULL meets NULL, -0.0 0.0 and NaN NaN, as grouping
    does), so that only they are hashed by every key column."""
    column = state.column(first)
    if pa.types.is_nested(column.type) or pa.types.is_dictionary(column.type):
        return state
    wanted = float_order.normalize_key(keys.column(first).combine_chunks()).unique()
    return state.filter(pc.is_in(float_order.normalize_key(column), value_set=wanted,
                                 skip_nulls=False))
