"""Interval joins: rows of two append-only streams joined on keys and time conditions, such
as ``b.t BETWEEN a.t - INTERVAL '5' SECOND AND a.t + INTERVAL '1' SECOND``. The output only
appends.

Both sides keep their rows only while a partner can still arrive. The planner derives, per
side, a *deadline* for each row (``min(col + delta)`` over the constraints, plan.join_nodes):
a row stays while the watermark has not passed it, so the state holds a bounded slice of
time. A row arriving with its time already behind what the watermark allows is late: it is
counted in ``late_rows`` and dropped (its partners may be gone), never joined partially.

A batch probes the other side's stored rows (hash join on the keys, then the full condition,
time comparisons included, on the candidate pairs) and is then stored. In an outer join a
row that never matched is emitted padded with NULLs when it expires (or at once, if it
arrives already unable to find a partner). The output watermark trails the input's by
``holdback_us``: a pair is emitted when its later row arrives, and the earlier row's time may
be behind the watermark by that much.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from caudal import compute as pc
from caudal.operators.base import Operator, OperatorContext
from caudal.operators.join_rows import JoinLayout, SideState, match
from caudal.operators.keyed_tables import TwoSidedState, batches_of
from caudal.plan.changelog import data_columns
from caudal.plan.expressions import Expr
from caudal.watermark import WATERMARK_MAX, WATERMARK_MIN

_DEADLINE, _MATCHED = "_deadline", "_matched"
_COUNTERS = {_DEADLINE: np.int64, _MATCHED: np.bool_}
_NEVER = np.iinfo(np.int64).min


def micros(column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """A timestamp column as int64 µs, and which values are valid."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    valid = pc.is_valid(column).to_numpy(zero_copy_only=False)
    t = column.type
    if pa.types.is_timestamp(t) and t.unit != "us":
        column = column.cast(pa.timestamp("us", t.tz))
    values = pc.fill_null(column.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
    return values.astype(np.int64, copy=False), valid


class IntervalJoin(TwoSidedState, Operator):
    """Input 0 is the left side, input 1 the right; both append-only."""

    accepts_merged_batches = True

    def __init__(self, kind: str, left_schema: pa.Schema, right_schema: pa.Schema,
                 left_keys: list[str], right_keys: list[str], right_rename: dict[str, str],
                 output_schema: pa.Schema, residual: Expr | None,
                 retention: list[list[tuple[str, int]]],
                 late_checks: list[list[tuple[str, int]]], holdback_us: int = 0):
        self.kind = kind
        self.layout = JoinLayout(left_schema, right_schema, right_rename, output_schema,
                                 residual)
        self.output_schema = output_schema
        self.keys = [list(left_keys), list(right_keys)]
        self.retention = [list(r) for r in retention]
        self.late_checks = [list(c) for c in late_checks]
        self.holdback = max(0, int(holdback_us))
        self.sides = [SideState(left_schema, self.keys[0], _COUNTERS),
                      SideState(right_schema, self.keys[1], _COUNTERS)]
        self.preserved = [kind in ("left", "full"), kind in ("right", "full")]
        self.watermark = WATERMARK_MIN

    def open(self, ctx: OperatorContext) -> None:
        super().open(ctx)
        ctx.metrics.setdefault("late_rows", 0)

    # ---- input ----------------------------------------------------------------------------

    def _deadlines(self, s: int, rows: pa.Table) -> np.ndarray:
        """When each row stops being able to find a partner (``_NEVER``: it cannot)."""
        out = np.full(rows.num_rows, np.iinfo(np.int64).max, dtype=np.int64)
        for column, delta in self.retention[s]:
            values, valid = micros(rows.column(column))
            out = np.minimum(out, np.where(valid, values + delta, _NEVER))
        return out

    def _late(self, s: int, rows: pa.Table) -> np.ndarray:
        late = np.zeros(rows.num_rows, dtype=bool)
        if self.watermark == WATERMARK_MIN:
            return late
        for column, lateness in self.late_checks[s]:
            values, valid = micros(rows.column(column))
            late |= valid & (values < self.watermark - lateness)
        return late

    def process(self, batch: pa.RecordBatch, input: int = 0) -> Sequence[pa.RecordBatch]:
        s, o = input, 1 - input
        side, other = self.sides[s], self.sides[o]
        rows = pa.Table.from_batches([data_columns(batch)]).select(side.schema.names)
        late = self._late(s, rows)
        if late.any():
            self.ctx.metrics["late_rows"] += int(late.sum())
            rows = rows.filter(pa.array(~late))
        if rows.num_rows == 0:
            return ()
        out: list[pa.Table] = []
        pi, oi = match(rows, self.keys[s], other.build(), self.keys[o])
        if s == 0:
            li, ri, joined = self.layout.matching(rows, other.rows, pi, oi)
            pi, oi = li, ri
        else:
            li, ri, joined = self.layout.matching(other.rows, rows, oi, pi)
            pi, oi = ri, li
        if len(pi):
            out.append(self.layout.output(joined))
            if self.preserved[o]:
                other[_MATCHED][oi] = True
        matched = np.zeros(rows.num_rows, dtype=bool)
        matched[pi] = True
        deadline = self._deadlines(s, rows)
        alive = deadline >= self.watermark
        if self.preserved[s]:
            gone = ~alive & ~matched
            if gone.any():
                out.append(self.layout.padded(rows.filter(pa.array(gone)), s))
        if alive.any():
            side.append(rows.filter(pa.array(alive)), **{_DEADLINE: deadline[alive],
                                                         _MATCHED: matched[alive]})
        return _batches(out)

    # ---- time -----------------------------------------------------------------------------

    def on_watermark(self, time: int) -> Sequence[pa.RecordBatch]:
        if time <= self.watermark:
            return ()
        self.watermark = time
        out: list[pa.Table] = []
        for s, side in enumerate(self.sides):
            if not side.size:
                continue
            expired = side[_DEADLINE] < time
            if not expired.any():
                continue
            if self.preserved[s]:
                lonely = expired & ~side[_MATCHED]
                if lonely.any():
                    out.append(self.layout.padded(side.take(lonely), s))
            side.keep(~expired)
        return _batches(out)

    def output_watermark(self, time: int) -> int:
        if time >= WATERMARK_MAX or time <= WATERMARK_MIN + self.holdback:
            return time
        return time - self.holdback

    # ---- checkpoints ----------------------------------------------------------------------


def _batches(tables: list[pa.Table]) -> list[pa.RecordBatch]:
    if not tables:
        return []
    return batches_of(pa.concat_tables(tables))
