"""The rows that carry their tumbling window's maximum (Nexmark q7): a windowed ``max`` joined
back to the rows it was computed from, without buffering the rows.

The query joins each row to the windows whose end is within a time range of it, on
``value = max``. A row can equal a window's maximum only if it belongs to that window, or
(when the range includes the end) sits exactly on the window's end, the first instant of the
next window. So per open window it is enough to keep the running maximum and the rows that
may still equal it: rows of the window equal to its running maximum, and rows at its end
not below it. A rising maximum drops the candidates below it; when the watermark passes the
window's end the candidates equal to the maximum are emitted. State is a few rows per
window instead of every row of it (plan.window_max_join recognizes the query).

Two operators share ``candidate_rows``:

* ``WindowMaxCandidates`` (stateless, at the end of the source's chain, so it runs in every
  source subtask before the shuffle): from each batch it keeps the rows equal to their
  window's maximum within the batch and the rows on a window boundary. A row equal to a
  window's overall maximum is equal to its batch's maximum, so nothing needed is dropped;
  rows the operator cannot vouch for (behind the watermark it has seen: perhaps late
  downstream, where the watermark decides) pass unreduced.
* ``WindowMaxJoin`` (one subtask): keeps the running maximum and candidates per window and
  emits the matches when windows close. A row is late by the window aggregate's rule (the
  ``max`` it replaces): behind the watermark it still counts (in the maximum, and as a
  candidate) while its window has not fired, and is counted in ``late_rows`` and dropped
  only once it has. So the answer is the batch answer over the rows the aggregate keeps,
  at any timing. A row exactly on a window's end belongs to the next window but may match
  the one ending there: when that one has already fired, the row is matched against its
  final maximum at once (kept until the row's own window fires).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from caudal import compute as pc
from caudal.operators.base import Operator, OperatorContext
from caudal.operators.event_time import ArrivalCheck, times_of, timestamps
from caudal.plan.windows import WindowSpec
from caudal.state.rescale import restored_watermark, watermark_table
from caudal.watermark import WATERMARK_MAX, WATERMARK_MIN

#: the window index a stored candidate is kept for
WINDOW = "_window"
_NONE = np.iinfo(np.int64).min


def _values(column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """An integer column as int64 values (0 where NULL) and which are valid."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if column.null_count:
        valid = pc.is_valid(column).to_numpy(zero_copy_only=False)
        column = pc.fill_null(column, 0)
    else:
        valid = np.ones(len(column), dtype=bool)
    values = column.to_numpy(zero_copy_only=False)
    return values.astype(np.int64, copy=False), valid


def window_maxima(windows: np.ndarray, values: np.ndarray, valid: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The distinct windows of a batch and the maximum valid value of each (``_NONE``
    where a window has none), and each row's position among the windows."""
    if len(windows) and windows[0] == windows[-1] and (windows == windows[0]).all():
        vals = values[valid]
        top = vals.max() if len(vals) else _NONE
        return np.array([windows[0]]), np.array([top]), np.zeros(len(windows), np.intp)
    ids, pos = np.unique(windows, return_inverse=True)
    top = np.full(len(ids), _NONE, dtype=np.int64)
    np.maximum.at(top, pos[valid], values[valid])
    return ids, top, pos


class _Geometry:
    """Where a row stands relative to the tumbling windows, and which window ends' ranges
    it falls in: a row at time t matches window w when ``end(w) + lo <= t <= end(w) + hi``
    (``-size <= lo <= hi <= 0``: its own window, or the previous one when t is exactly that
    window's end)."""

    def __init__(self, window: WindowSpec, lo_us: int, hi_us: int):
        assert window.kind == "tumble" and -window.size_us <= lo_us <= hi_us <= 0
        self.window, self.lo, self.hi = window, lo_us, hi_us
        self.size, self.offset = window.size_us, window.offset_us
        #: a row exactly at a window's end can match that window
        self.edges = lo_us <= 0 <= hi_us

    def of(self, ts: np.ndarray) -> np.ndarray:
        return np.floor_divide(ts - self.offset, self.size)

    def end(self, w: np.ndarray | int) -> np.ndarray | int:
        return (w + 1) * self.size + self.offset

    def own_match(self, ts: np.ndarray, w: np.ndarray) -> np.ndarray | None:
        """Which rows are in range of their own window's end (None: all are)."""
        if self.lo == -self.size and self.hi >= -1:
            return None
        d = ts - self.end(w)
        return (d >= self.lo) & (d <= self.hi)

    def boundary(self, ts: np.ndarray) -> np.ndarray | None:
        """Rows exactly at a window end that is in their range (None: no row can be)."""
        if not self.edges:
            return None
        return (ts - self.offset) % self.size == 0


def candidate_rows(geometry: _Geometry, ts: np.ndarray, values: np.ndarray,
                   valid: np.ndarray) -> np.ndarray:
    """Rows of a batch that may carry a window's maximum: equal to their window's maximum in
    the batch, or on a window boundary (they may match the window that ends there)."""
    first, last = geometry.of(np.array([ts.min(), ts.max()]))
    if first == last:  # the usual case: the batch lies in one window (no division per row)
        vals = values[valid] if not valid.all() else values
        keep = (values == vals.max()) & valid if len(vals) else np.zeros(len(ts), bool)
        if geometry.edges:
            keep |= valid & (ts == geometry.end(first - 1))
        return keep
    w = geometry.of(ts)
    ids, top, pos = window_maxima(w, values, valid)
    keep = valid & (values == top[pos])
    edge = geometry.boundary(ts)
    if edge is not None:
        keep |= valid & edge
    return keep


class WindowMaxCandidates(Operator):
    """Stateless pre-filter before the shuffle (see the module docstring)."""

    def __init__(self, window: WindowSpec, lo_us: int, hi_us: int, time_column: str,
                 value_column: str, output_schema: pa.Schema):
        self.geometry = _Geometry(window, lo_us, hi_us)
        self.time_column, self.value_column = time_column, value_column
        self.output_schema = output_schema
        self.watermark = WATERMARK_MIN

    def process(self, batch: pa.RecordBatch, input: int = 0) -> Sequence[pa.RecordBatch]:
        batch = batch.select(self.output_schema.names)
        tcol = batch.column(self.time_column)
        if tcol.null_count:  # no window: dropped (and counted) downstream
            return (batch,)
        ts = times_of(tcol)
        values, valid = _values(batch.column(self.value_column))
        keep = candidate_rows(self.geometry, ts, values, valid)
        if self.watermark > WATERMARK_MIN:
            keep |= ts < self.watermark  # the join's watermark decides whether late
        if keep.all():
            return (batch,)
        idx = np.flatnonzero(keep)
        return (batch.take(pa.array(idx)),) if len(idx) else ()

    def on_watermark(self, time: int) -> Sequence[pa.RecordBatch]:
        self.watermark = max(self.watermark, time)
        return ()


class WindowMaxJoin(Operator):
    """Per tumbling window: the rows (columns ``input_schema``) whose ``value_column``
    equals the window's maximum of it and whose time is in range of the window's end.

    ``outputs`` gives each output column: ``("row", column)``, ``("max", None)``, or a
    window bound ``("start" | "end" | "time", None)`` of the matched window."""

    def __init__(self, window: WindowSpec, lo_us: int, hi_us: int, time_column: str,
                 value_column: str, input_schema: pa.Schema,
                 outputs: list[tuple[str, str | None]], output_schema: pa.Schema,
                 holdback_us: int):
        self.geometry = _Geometry(window, lo_us, hi_us)
        self.time_column, self.value_column = time_column, value_column
        self.input_schema = input_schema
        self.outputs = [tuple(o) for o in outputs]
        self.output_schema = output_schema
        self.holdback = holdback_us
        #: late as in the window aggregate: once the row's (tumbling) window has fired
        self.arrival = ArrivalCheck(time_column, None, window)
        #: window index -> running maximum (final once the window fired: kept until the
        #: next window fires, for the rows on its end, which may still arrive)
        self.maxima: dict[int, int] = {}
        #: rows that may still equal their window's maximum, with ``WINDOW``
        self.candidates = _empty(input_schema)

    def open(self, ctx: OperatorContext) -> None:
        super().open(ctx)
        ctx.metrics.setdefault("late_rows", 0)

    # ---- input ----------------------------------------------------------------------------

    def process(self, batch: pa.RecordBatch, input: int = 0) -> Sequence[pa.RecordBatch]:
        batch, ts = self.arrival.split(batch.select(self.input_schema.names),
                                       self.ctx.metrics, [])
        if batch.num_rows == 0:
            return ()
        g = self.geometry
        values, valid = _values(batch.column(self.value_column))
        w = g.of(ts)
        ids, top, pos = window_maxima(w, values, valid)
        raised = False
        current = np.empty(len(ids), dtype=np.int64)
        for i, (win, value) in enumerate(zip(ids.tolist(), top.tolist())):
            old = self.maxima.get(win, _NONE)
            if value > old:
                self.maxima[win] = old = value
                raised = True
            elif win not in self.maxima and value != _NONE:
                self.maxima[win] = value
            current[i] = old
        own = valid & (values == current[pos])
        match = g.own_match(ts, w)
        if match is not None:
            own &= match
        parts_idx = [np.flatnonzero(own)]
        parts_win = [w[parts_idx[0]]]
        edge = g.boundary(ts)
        fired = None
        if edge is not None:
            prev = np.flatnonzero(valid & edge)
            if len(prev):
                pw = w[prev] - 1
                floor = np.array([self.maxima.get(x, _NONE) for x in pw.tolist()],
                                 dtype=np.int64)
                # the window ending at the row fired already (the row is behind the
                # watermark, its own window still open): its maximum is final
                closed = g.end(pw) < self.arrival.watermark
                ok = values[prev] >= floor
                parts_idx.append(prev[ok & ~closed])
                parts_win.append(pw[ok & ~closed])
                now = closed & (values[prev] == floor) & (floor != _NONE)
                if now.any():
                    fired = pa.Table.from_batches([batch]).take(pa.array(prev[now]))
                    fired = fired.append_column(WINDOW, pa.array(pw[now]))
        idx = np.concatenate(parts_idx)
        if raised and self.candidates.num_rows:
            self._prune()
        if len(idx):
            rows = pa.Table.from_batches([batch]).take(pa.array(idx))
            rows = rows.append_column(WINDOW, pa.array(np.concatenate(parts_win)))
            self.candidates = pa.concat_tables([self.candidates, rows])
        return self._emit(fired) if fired is not None else ()

    def _prune(self) -> None:
        """Drop candidates below their window's (risen) maximum."""
        cw = self.candidates.column(WINDOW).to_numpy()
        floor = np.array([self.maxima.get(x, _NONE) for x in cw.tolist()], dtype=np.int64)
        values, _ = _values(self.candidates.column(self.value_column))
        keep = values >= floor
        if not keep.all():
            self.candidates = self.candidates.filter(pa.array(keep))

    # ---- time -----------------------------------------------------------------------------

    def on_watermark(self, time: int) -> Sequence[pa.RecordBatch]:
        if time <= self.arrival.watermark:
            return ()
        self.arrival.watermark = time
        return self._close(time)

    def on_end(self) -> Sequence[pa.RecordBatch]:
        return self._close(WATERMARK_MAX)

    def _close(self, until: int) -> list[pa.RecordBatch]:
        """Emit every window whose end is before ``until`` (a row at the end itself may
        still come while the watermark is at it)."""
        g = self.geometry
        out = None
        if self.candidates.num_rows:
            cw = self.candidates.column(WINDOW).to_numpy()
            closing = g.end(cw) < until if until < WATERMARK_MAX else \
                np.ones(len(cw), dtype=bool)
            if closing.any():
                floor = np.array([self.maxima.get(x, _NONE) for x in cw.tolist()],
                                 dtype=np.int64)
                values, valid = _values(self.candidates.column(self.value_column))
                hit = closing & valid & (values == floor) & (floor != _NONE)
                out = self.candidates.filter(pa.array(hit)) if hit.any() else None
                self.candidates = self.candidates.filter(pa.array(~closing))
        # a fired window's maximum is kept while a row on its end can still arrive and
        # match it (until the next window fires: a row is late once its own window has)
        after = 1 if g.edges else 0
        for w in [w for w in self.maxima
                  if until == WATERMARK_MAX or g.end(w + after) <= until - 1 + after]:
            del self.maxima[w]
        return self._emit(out) if out is not None else []

    def _emit(self, rows: pa.Table) -> list[pa.RecordBatch]:
        ends = self.geometry.end(rows.column(WINDOW).to_numpy())
        columns = []
        for (what, column), field in zip(self.outputs, self.output_schema):
            if what == "row":
                col = rows.column(column).combine_chunks()
            elif what == "max":
                col = rows.column(self.value_column).combine_chunks()
            elif what == "end":
                col = timestamps(ends)
            elif what == "start":
                col = timestamps(ends - self.geometry.size)
            else:  # "time": Flink's window_time, the end minus 1 µs
                col = timestamps(ends - 1)
            if not col.type.equals(field.type):
                col = col.cast(field.type)
            columns.append(col)
        return pa.Table.from_arrays(columns, schema=self.output_schema).to_batches()

    def output_watermark(self, time: int) -> int:
        if time >= WATERMARK_MAX or time <= WATERMARK_MIN + self.holdback:
            return time
        return time - self.holdback

    # ---- checkpoints ----------------------------------------------------------------------

    def snapshot(self, epoch: int) -> dict[str, Any]:
        wins = np.fromiter(self.maxima.keys(), dtype=np.int64, count=len(self.maxima))
        tops = np.fromiter(self.maxima.values(), dtype=np.int64, count=len(self.maxima))
        return {"maxima": pa.table({WINDOW: wins, "max": tops}),
                "candidates": self.candidates,  # immutable: only ever replaced
                "meta": watermark_table(self.arrival.watermark)}

    def restore(self, state: dict[str, Any]) -> None:
        self.arrival.watermark = restored_watermark(state, WATERMARK_MIN)
        maxima = state.get("maxima")
        self.maxima = {} if maxima is None else dict(zip(
            maxima.column(WINDOW).to_pylist(), maxima.column("max").to_pylist()))
        candidates = state.get("candidates")
        self.candidates = (_empty(self.input_schema) if candidates is None
                           else candidates.cast(_empty(self.input_schema).schema))

    def state_rows(self) -> int:
        return self.candidates.num_rows + len(self.maxima)


def _empty(schema: pa.Schema) -> pa.Table:
    return schema.append(pa.field(WINDOW, pa.int64())).empty_table()
