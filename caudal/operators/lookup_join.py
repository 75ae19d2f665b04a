"""The lookup join operator (plan.lookup_join): reads the bounded table whole when it opens
(its source, computed columns and stateless chain), then joins each batch of the streaming
side against it with one hash join per batch (join_rows.match). No state is checkpointed:
a restored subtask reads the table again, which is what a processing-time lookup means."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from caudal.connectors import registry as connectors
from caudal.operators.base import Operator, OperatorContext
from caudal.operators.join_rows import JoinLayout, match
from caudal.operators.keyed_tables import positional
from caudal.plan.expressions import Expr
from caudal.plan.physical import OperatorSpec
from caudal.plan.tables import TableSpec
from caudal.types import conform_batch

#: rows per poll while reading the table
_READ_ROWS = 1 << 16


def read_table(table: TableSpec, chain: Sequence[OperatorSpec]) -> list[pa.RecordBatch]:
    """Every row of a bounded table, through its stateless chain (filters, projections)."""
    from caudal.operators.registry import create  # late: the registry imports operators

    source = connectors.source_class(table)(table)
    operators = [create(spec) for spec in chain]
    for op in operators:
        op.open(OperatorContext())
    source.open(source.partitions(1))
    computed = table.computed_step()
    out: list[pa.RecordBatch] = []
    try:
        while not source.finished():
            batch = source.poll(_READ_ROWS, 0.0)
            if batch is None:
                continue
            if not batch.schema.equals(source.schema):
                batch = conform_batch(batch, source.schema)
            batches = [computed(batch) if computed is not None else batch]
            for op in operators:
                batches = [b for one in batches for b in op.process(one, 0)]
            out.extend(batches)
    finally:
        source.close()
    return out


class LookupJoin(Operator):
    def __init__(self, kind: str, left_schema: pa.Schema, right_schema: pa.Schema,
                 left_keys: list[str], right_keys: list[str], right_rename: dict[str, str],
                 output_schema: pa.Schema, side_table: TableSpec,
                 side_chain: Sequence[OperatorSpec], residual: Expr | None = None):
        self.kind = kind
        self.layout = JoinLayout(left_schema, right_schema, right_rename, output_schema,
                                 residual)
        self.output_schema = output_schema
        self.left_keys = list(left_keys)
        self.right_keys = list(right_keys)
        self.side_table = side_table
        self.side_chain = list(side_chain)
        self.table_rows: pa.Table = right_schema.empty_table()

    def open(self, ctx: OperatorContext) -> None:
        super().open(ctx)
        schema = self.layout.right_schema
        batches = read_table(self.side_table, self.side_chain)
        rows = pa.Table.from_batches(batches) if batches else schema.empty_table()
        self.table_rows = rows.select(schema.names).cast(schema).combine_chunks()
        self._build = positional(self.table_rows, self.right_keys)
        ctx.metrics["lookup_rows"] = ctx.metrics.get("lookup_rows", 0) + self.table_rows.num_rows

    def process(self, batch: pa.RecordBatch, input: int = 0) -> Sequence[pa.RecordBatch]:
        if batch.num_rows == 0:
            return ()
        left = pa.Table.from_batches([batch]).select(self.layout.left_schema.names)
        li, ri = match(left, self.left_keys, self._build, self.right_keys)
        order = np.argsort(li, kind="stable")  # the streaming side's order
        li, ri, joined = self.layout.matching(left, self.table_rows, li[order], ri[order])
        pieces = [self.layout.output(joined)] if len(li) else []
        if self.kind == "left":
            alone = np.ones(left.num_rows, dtype=bool)
            alone[li] = False
            if alone.any():
                pieces.append(self.layout.padded(left.filter(pa.array(alone)), 0))
        out = [b for piece in pieces for b in piece.to_batches() if b.num_rows]
        return out
