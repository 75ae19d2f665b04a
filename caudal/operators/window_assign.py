"""The window table functions when nothing aggregates them: ``SELECT * FROM TABLE(HOP(…))``
emits every row once per window it belongs to, with ``window_start``, ``window_end`` and
``window_time`` (``window_end`` minus 1 µs, the last instant in the window) appended.

It is stateless (rows go out as they arrive), as in Flink. When a window aggregate or a
window top-N consumes the table function, the planner skips this operator: the aggregate
assigns panes itself and never materializes one row per window.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from caudal import compute as pc
from caudal.operators.base import Operator
from caudal.operators.event_time import times_of, timestamps
from caudal.plan.windows import WindowSpec


class WindowAssign(Operator):
    def __init__(self, window: WindowSpec, time_column: str, output_schema: pa.Schema):
        assert window.kind in ("tumble", "hop", "cumulate")
        self.window = window
        self.time_column = time_column
        self.output_schema = output_schema

    def process(self, batch: pa.RecordBatch, input: int = 0) -> Sequence[pa.RecordBatch]:
        column = batch.column(self.time_column)
        if column.null_count:  # in no window: counted, as window aggregates count them
            metrics = self.ctx.metrics
            metrics["null_time_rows"] = metrics.get("null_time_rows", 0) + column.null_count
            batch = batch.filter(pc.is_valid(column))
            column = batch.column(self.time_column)
        if batch.num_rows == 0:
            return ()
        ts = times_of(column)
        rows, ends = self.window.explode(self.window.pane_of(ts))
        out = batch if self.window.kind == "tumble" else batch.take(pa.array(rows))
        starts = self.window.window_start(ends)
        arrays = list(out.columns) + [timestamps(starts), timestamps(ends),
                                      timestamps(ends - np.int64(1))]
        return (pa.RecordBatch.from_arrays(arrays, schema=self.output_schema),)
