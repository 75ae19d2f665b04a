"""``UNION ALL``: batches of every input pass through; an append-only input's rows become
inserts (``_op`` = +1) when the union's output is a changelog (plan.set_nodes)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from caudal.operators.base import Operator
from caudal.plan.changelog import INSERT, OP, with_ops


class UnionAll(Operator):
    def __init__(self, updating_inputs: Sequence[bool], updating_output: bool,
                 output_schema: pa.Schema):
        self.updating_inputs = list(updating_inputs)
        self.updating_output = updating_output
        self.output_schema = output_schema

    def process(self, batch: pa.RecordBatch, input: int = 0) -> Sequence[pa.RecordBatch]:
        if batch.num_rows == 0:
            return ()
        if self.updating_output and OP not in batch.schema.names:
            batch = with_ops(batch, np.full(batch.num_rows, INSERT, dtype=np.int8))
        return (batch,)
