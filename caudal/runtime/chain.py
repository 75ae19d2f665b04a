"""A fused chain of operators inside one subtask: batches go from one operator to the next
by direct calls, with no queue between them."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from caudal.operators.base import Operator


class Chain:
    def __init__(self, operators: Sequence[Operator]):
        self.operators = list(operators)

    def _push(self, batches: Sequence[pa.RecordBatch], start: int) -> list[pa.RecordBatch]:
        current = list(batches)
        for op in self.operators[start:]:
            if not current:
                return []
            nxt: list[pa.RecordBatch] = []
            for b in current:
                nxt.extend(op.process(b, 0))
            current = nxt
        return current

    def process(self, batch: pa.RecordBatch, input: int = 0) -> list[pa.RecordBatch]:
        if not self.operators:
            return [batch]
        first = self.operators[0].process(batch, input)
        return self._push(first, 1)

    def on_watermark(self, time: int) -> tuple[list[pa.RecordBatch], int]:
        """Advance every operator in order; returns emitted batches and the watermark to
        forward downstream."""
        out: list[pa.RecordBatch] = []
        for i, op in enumerate(self.operators):
            emitted = op.on_watermark(time)
            if emitted:
                out.extend(self._push(emitted, i + 1))
            time = op.output_watermark(time)
        return out, time

    def on_end(self) -> list[pa.RecordBatch]:
        out: list[pa.RecordBatch] = []
        for i, op in enumerate(self.operators):
            emitted = op.on_end()
            if emitted:
                out.extend(self._push(emitted, i + 1))
        return out
