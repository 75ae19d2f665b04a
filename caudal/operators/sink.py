"""The operator at the end of a chain that hands batches to a Sink and drives its two-phase
commit (pre-commit at a barrier, commit when the checkpoint is complete)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from caudal.connectors.registry import sink_class
from caudal.operators.base import Operator, OperatorContext
from caudal.plan.tables import TableSpec

#: checkpoint state names of a sink's pre-commit tables (``sink.rows``): restored only to the
#: sink's recovery, never into operators
SINK_TABLE = "sink."


class SinkOperator(Operator):
    def __init__(self, table: TableSpec):
        self.table = table
        self.output_schema = table.schema
        self.rows = 0
        self.pending: dict[int, dict[str, Any]] = {}

    def open(self, ctx: OperatorContext, restored: dict[str, Any] | None = None) -> None:
        super().open(ctx)
        self.sink = sink_class(self.table)(self.table, ctx.subtask, ctx.parallelism)
        self.sink.writer = ctx.vertex
        self.sink.checkpointing = ctx.checkpointing
        self.sink.open(self.table.schema, restored)

    def process(self, batch: pa.RecordBatch, input: int = 0) -> Sequence[pa.RecordBatch]:
        if batch.num_rows:
            self.sink.write(batch)
            self.rows += batch.num_rows
        return ()

    def pre_commit(self, epoch: int) -> dict[str, Any]:
        state = self.sink.pre_commit(epoch)
        self.pending[epoch] = state
        return state

    def commit(self, epoch: int) -> None:
        for e in sorted(k for k in self.pending if k <= epoch):
            self.sink.commit(e)
            del self.pending[e]

    def finish(self, epoch: int) -> None:
        """End of input without checkpoints: pre-commit and commit the final epoch."""
        self.pre_commit(epoch)
        self.commit(epoch)

    def close(self) -> None:
        self.sink.close()
