"""When updating operators emit: their net changes at most every ``flush_us`` of processing
time (0: after every batch) and at the end of the input, like Flink's mini-batches. Fewer,
larger flushes emit fewer intermediate updates of the same key."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pyarrow as pa

from caudal.operators.base import OperatorContext


class PeriodicFlush:
    """Mixed into an Operator that implements ``flush()``; also registers the
    ``corrupt_retractions`` counter every updating operator reports."""

    flush_us: int
    _next_flush: float = 0.0

    def flush(self) -> list[pa.RecordBatch]:
        raise NotImplementedError

    def open(self, ctx: OperatorContext) -> None:
        super().open(ctx)  # type: ignore[misc]
        ctx.metrics.setdefault("corrupt_retractions", 0)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        """Start the interval that ends with the next flush (called by each flush)."""
        self._next_flush = time.monotonic() + self.flush_us / 1e6

    def _flush_due(self) -> bool:
        """After a batch: flush when flushing after every batch or the interval is over."""
        return self.flush_us == 0 or time.monotonic() >= self._next_flush

    def on_processing_time(self, now_us: int) -> Sequence[pa.RecordBatch]:
        if self.flush_us and time.monotonic() >= self._next_flush:
            return self.flush()
        return ()

    def on_end(self) -> Sequence[pa.RecordBatch]:
        return self.flush()
