"""What every event-time operator does on arrival of a batch: read the event time as int64
microseconds, and split off *late* rows (event time below the operator's watermark; for a
tumbling, hopping or cumulating window aggregate: every window holding the row has fired).

Late rows are never silently mis-assigned to a window: they are counted in the operator's
``late_rows`` metric and, when the source table says ``late_data = 'side:<table>'``, emitted
as a side output (operators.side_output) with the columns that table wants. Rows without an
event time (NULL) cannot be placed in any window; they are counted as ``null_time_rows`` and
dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

from caudal import clock
from caudal import compute as pc
from caudal.operators.side_output import LATE, tag
from caudal.plan.windows import LateOutput, WindowSpec
from caudal.watermark import WATERMARK_MAX, WATERMARK_MIN

__all__ = ["ArrivalCheck", "LateOutput", "now_us", "times_of", "timestamps"]


def now_us() -> int:
    return clock.now_us()


def times_of(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Event times as int64 µs (nulls must have been removed)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not pa.types.is_int64(column.type):
        column = column.view(pa.int64()) if pa.types.is_timestamp(column.type) and \
            column.type.unit == "us" else column.cast(pa.int64())
    return column.to_numpy(zero_copy_only=False)


class ArrivalCheck:
    """Splits each arriving batch into on-time rows (with their event times) and late rows."""

    def __init__(self, time_column: str | None, late_output: LateOutput | None,
                 window: WindowSpec | None = None):
        self.time_column = time_column
        self.late_output = late_output
        #: a row in windows of this spec is late only once its last window has fired (it
        #: still counts in those that have not, as in Flink and in the batch answer)
        self.window = window
        #: the operator's current watermark (rows below it are late)
        self.watermark = WATERMARK_MIN

    def split(self, batch: pa.RecordBatch, metrics: dict[str, int],
              side: list[pa.RecordBatch],
              still_open: Callable[[pa.RecordBatch, np.ndarray], np.ndarray] | None = None
              ) -> tuple[pa.RecordBatch, np.ndarray]:
        """On-time rows and their event times; late rows are counted and appended to
        ``side`` (tagged) when a side table wants them. Processing time: now, never late.
        ``still_open(rows, times)`` says which rows behind the watermark the operator can
        still place exactly (a session window: those inside a session still open)."""
        if self.time_column is None:
            stamp = max(now_us(), self.watermark)
            return batch, np.full(batch.num_rows, stamp, dtype=np.int64)
        column = batch.column(self.time_column)
        if column.null_count:
            valid = pc.is_valid(column)
            metrics["null_time_rows"] = metrics.get("null_time_rows", 0) + column.null_count
            batch = batch.filter(valid)
            column = batch.column(self.time_column)
        ts = times_of(column)
        if self.watermark > WATERMARK_MIN and len(ts) and ts.min() < self.watermark:
            late = ts < self.watermark
            if self.window is not None:  # a window ends after each of its rows
                late[late] = self.window.last_end(ts[late]) <= self.watermark
            elif still_open is not None:
                behind = np.flatnonzero(late)
                late[behind] = ~still_open(batch.take(pa.array(behind)), ts[behind])
            count = int(late.sum())
            if not count:
                return batch, ts
            metrics["late_rows"] = metrics.get("late_rows", 0) + count
            if self.late_output is not None:
                rows = batch.filter(pa.array(late))
                cols = [rows.column(c) for c in self.late_output.columns]
                side.append(tag(pa.RecordBatch.from_arrays(cols, names=self.late_output.names),
                                LATE))
            keep = ~late
            batch = batch.filter(pa.array(keep))
            ts = ts[keep]
        return batch, ts


def timestamps(values: np.ndarray) -> pa.Array:
    """int64 µs -> TIMESTAMP (UTC) array."""
    from caudal.types import TIMESTAMP

    return pa.array(values, type=pa.int64()).view(TIMESTAMP)


class FiresOnTime:
    """Time handling shared by window operators: an event-time operator fires windows as the
    watermark advances; a processing-time one ignores watermarks (but the final one, so a
    bounded job still closes everything) and fires on the wall clock the runtime ticks.
    Subclasses provide ``arrival`` (an ArrivalCheck), ``processing_time`` and ``_fire``."""

    arrival: ArrivalCheck
    processing_time: bool

    def _fire(self, until: int) -> list[pa.RecordBatch]:
        raise NotImplementedError

    def on_watermark(self, time: int) -> Sequence[pa.RecordBatch]:
        if time > self.arrival.watermark and not self.processing_time:
            self.arrival.watermark = time
        if self.processing_time and time < WATERMARK_MAX:
            return ()
        return self._fire(time)

    def on_processing_time(self, now: int) -> Sequence[pa.RecordBatch]:
        if not self.processing_time:
            return ()
        self.arrival.watermark = max(self.arrival.watermark, now)
        return self._fire(now)
