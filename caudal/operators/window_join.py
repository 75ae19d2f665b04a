"""Window joins: two inputs windowed the same way, joined per window once it closes.

Rows wait in per-side buffers with their window end (``col + offset``: the end column, or
the start plus the window size); when the watermark reaches a window end, the rows of every
closed window are joined at once — one hash join on the keys (the window bound is one of
them), the residual condition, and for outer joins the rows left without a partner padded
with NULLs (a semi / anti join emits each left row once, with / without a partner) — and
freed. The output only appends, and each window's rows are emitted once.
A row whose window has already closed when it arrives is late: counted in ``late_rows`` and
dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from caudal.operators.base import Operator, OperatorContext
from caudal.operators.interval_join import micros
from caudal.operators.join_rows import JoinLayout, SideState, match
from caudal.operators.keyed_tables import TwoSidedState, batches_of
from caudal.plan.changelog import data_columns
from caudal.plan.expressions import Expr
from caudal.watermark import WATERMARK_MIN

_END = "_wend"
_COUNTERS = {_END: np.int64}


class WindowJoin(TwoSidedState, Operator):
    """Input 0 is the left side, input 1 the right; both append-only."""

    accepts_merged_batches = True
    CLOCK = "fired_until"

    def __init__(self, kind: str, left_schema: pa.Schema, right_schema: pa.Schema,
                 left_keys: list[str], right_keys: list[str], right_rename: dict[str, str],
                 output_schema: pa.Schema, residual: Expr | None,
                 window_end: list[tuple[str, int]]):
        self.kind = kind
        self.layout = JoinLayout(left_schema, right_schema, right_rename, output_schema,
                                 residual)
        self.output_schema = output_schema
        self.keys = [list(left_keys), list(right_keys)]
        self.window_end = [tuple(w) for w in window_end]
        self.sides = [SideState(left_schema, self.keys[0], _COUNTERS),
                      SideState(right_schema, self.keys[1], _COUNTERS)]
        self.preserved = [kind in ("left", "full"), kind in ("right", "full")]
        self.fired_until = WATERMARK_MIN

    def open(self, ctx: OperatorContext) -> None:
        super().open(ctx)
        ctx.metrics.setdefault("late_rows", 0)

    def process(self, batch: pa.RecordBatch, input: int = 0) -> Sequence[pa.RecordBatch]:
        side = self.sides[input]
        rows = pa.Table.from_batches([data_columns(batch)]).select(side.schema.names)
        column, offset = self.window_end[input]
        values, valid = micros(rows.column(column))
        ends = values + offset
        late = valid & (ends <= self.fired_until)
        if late.any():
            self.ctx.metrics["late_rows"] += int(late.sum())
        keep = valid & ~late
        if keep.any():
            side.append(rows.filter(pa.array(keep)), **{_END: ends[keep]})
        return ()

    def on_watermark(self, time: int) -> Sequence[pa.RecordBatch]:
        if time <= self.fired_until:
            return ()
        self.fired_until = time
        closing = [side[_END] <= time for side in self.sides]
        if not any(c.any() for c in closing):
            return ()
        left = self.sides[0].take(closing[0])
        right = self.sides[1].take(closing[1])
        for side, mask in zip(self.sides, closing):
            side.keep(~mask)
        out: list[pa.Table] = []
        li, ri = match(left, self.keys[0], right, self.keys[1])
        li, ri, joined = self.layout.matching(left, right, li, ri)
        if self.kind in ("semi", "anti"):  # each left row once: with / without a partner
            found = np.zeros(left.num_rows, dtype=bool)
            found[li] = True
            keep = found if self.kind == "semi" else ~found
            if not keep.any():
                return ()
            return batches_of(self.layout.padded(left.filter(pa.array(keep)), 0))
        if len(li):
            out.append(self.layout.output(joined))
        for s, (rows, hit) in enumerate(((left, li), (right, ri))):
            if self.preserved[s] and rows.num_rows:
                lonely = np.ones(rows.num_rows, dtype=bool)
                lonely[hit] = False
                if lonely.any():
                    out.append(self.layout.padded(rows.filter(pa.array(lonely)), s))
        if not out:
            return ()
        return batches_of(pa.concat_tables(out))
