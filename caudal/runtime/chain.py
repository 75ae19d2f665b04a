"""A fused chain of operators inside one subtask: batches go from one operator to the next
by direct calls, with no queue between them."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from caudal import clock
from caudal.operators.base import Operator
from caudal.operators.side_output import tag_of


class Chain:
    def __init__(self, operators: Sequence[Operator]):
        self.operators = list(operators)
        #: operators with processing-time timers (``on_processing_time(now_us)``)
        self.timed = [i for i, op in enumerate(self.operators)
                      if getattr(op, "on_processing_time", None) is not None]

    def _push(self, batches: Sequence[pa.RecordBatch], start: int) -> list[pa.RecordBatch]:
        current = list(batches)
        side: list[pa.RecordBatch] = []
        for op in self.operators[start:]:
            if not current:
                break
            nxt: list[pa.RecordBatch] = []
            for b in current:
                if tag_of(b) is not None:  # a side output skips the rest of the chain
                    side.append(b)
                    continue
                nxt.extend(op.process(b, 0))
            current = nxt
        return current + side if side else current

    def on_processing_time(self, now_us: int) -> list[pa.RecordBatch]:
        """Fire processing-time timers (windows on arrival time) up to the wall clock."""
        with clock.batch_read():   # now() is read once for what this call pushes
            out: list[pa.RecordBatch] = []
            for i in self.timed:
                emitted = self.operators[i].on_processing_time(now_us)  # type: ignore[attr-defined]
                if emitted:
                    out.extend(self._push(emitted, i + 1))
            return out

    def process(self, batch: pa.RecordBatch, input: int = 0) -> list[pa.RecordBatch]:
        with clock.batch_read():   # now() is read once for what this call pushes
            if not self.operators:
                return [batch]
            first = self.operators[0].process(batch, input)
            return self._push(first, 1)

    def on_watermark(self, time: int) -> tuple[list[pa.RecordBatch], int]:
        """Advance every operator in order; returns emitted batches and the watermark to
        forward downstream."""
        with clock.batch_read():   # now() is read once for what this call pushes
            out: list[pa.RecordBatch] = []
            for i, op in enumerate(self.operators):
                emitted = op.on_watermark(time)
                if emitted:
                    out.extend(self._push(emitted, i + 1))
                time = op.output_watermark(time)
            return out, time

    def release_held(self) -> list[pa.RecordBatch]:
        """What the operators hold back outside their snapshots, sent before a barrier
        or an idle source's ``Idle`` (``Operator.release_held``)."""
        with clock.batch_read():   # now() is read once for what this call pushes
            out: list[pa.RecordBatch] = []
            for i, op in enumerate(self.operators):
                hook = getattr(op, "release_held", None)
                emitted = hook() if hook is not None else ()
                if emitted:
                    out.extend(self._push(emitted, i + 1))
            return out

    def on_idle(self) -> None:
        """The source subtask is about to send ``Idle`` (``Operator.on_idle``)."""
        for op in self.operators:
            hook = getattr(op, "on_idle", None)
            if hook is not None:
                hook()

    def on_end(self) -> list[pa.RecordBatch]:
        with clock.batch_read():   # now() is read once for what this call pushes
            out: list[pa.RecordBatch] = []
            for i, op in enumerate(self.operators):
                emitted = op.on_end()
                if emitted:
                    out.extend(self._push(emitted, i + 1))
            return out
