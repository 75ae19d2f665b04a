"""UNNEST: each row repeated once per element of its array column, the element appended.

Vectorized: the elements are the flattened lists and the rows are taken by each element's
parent index, so a batch is two Arrow kernels whatever its arrays' lengths.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from caudal import compute as pc
from caudal.operators.base import Operator


class Unnest(Operator):
    def __init__(self, column: str, output_schema: pa.Schema):
        self.column = column
        self.output_schema = output_schema

    def process(self, batch: pa.RecordBatch, input: int = 0) -> Sequence[pa.RecordBatch]:
        lists = batch.column(self.column)
        values = pc.list_flatten(lists)
        if len(values) == 0:
            return ()
        # the output's columns but the last (the element), repeated per element
        rows = batch.select(self.output_schema.names[:-1]).take(pc.list_parent_indices(lists))
        columns = list(rows.columns) + [values]
        return (pa.RecordBatch.from_arrays(columns, schema=self.output_schema),)
