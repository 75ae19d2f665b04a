"""UNNEST: each row repeated once per element of its array column, the element appended.

Vectorized: the elements are the flattened lists and the rows are taken by each element's
parent index, so a batch is two Arrow kernels whatever its arrays' lengths. ``outer`` (LEFT
JOIN UNNEST … ON TRUE) keeps a row whose array is NULL or empty, with a NULL element.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from caudal import compute as pc
from caudal.operators.base import Operator
from caudal.plan.changelog import OP, OP_TYPE, has_ops, ops_of


class Unnest(Operator):
    def __init__(self, column: str, output_schema: pa.Schema, outer: bool = False):
        self.column = column
        self.output_schema = output_schema
        self.outer = outer

    def process(self, batch: pa.RecordBatch, input: int = 0) -> Sequence[pa.RecordBatch]:
        lists = batch.column(self.column)
        values = pc.list_flatten(lists)
        if self.outer:
            parents, values = _outer(lists, values)
        elif len(values) == 0:
            return ()
        else:
            parents = pc.list_parent_indices(lists)
        # the output's columns but the last (the element), repeated per element
        rows = batch.select(self.output_schema.names[:-1]).take(parents)
        columns = list(rows.columns) + [values]
        out = pa.RecordBatch.from_arrays(columns, schema=self.output_schema)
        if has_ops(batch):  # a changelog (INTERSECT ALL's copies): each copy a +1 / -1
            ops = pa.array(np.sign(ops_of(batch)[np.asarray(parents)]).astype(np.int8))
            out = out.append_column(pa.field(OP, OP_TYPE), ops)
        return (out,)


def _outer(lists: pa.Array, values: pa.Array) -> tuple[pa.Array, pa.Array]:
    """LEFT JOIN UNNEST: a row whose array is NULL or empty keeps one row, its element NULL.
    Each output row's parent and its index into the flattened elements (NULL for those)."""
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False)
    kept = np.maximum(lengths, 1)
    parents = np.repeat(np.arange(len(lengths)), kept)
    within = np.arange(len(parents)) - np.repeat(np.cumsum(kept) - kept, kept)
    first = np.repeat(np.cumsum(lengths) - lengths, kept)
    index = pa.array(first + within, mask=np.repeat(lengths == 0, kept))
    return pa.array(parents), pc.take(values, index)
