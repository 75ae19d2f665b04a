"""The stateless chain: filter then project, fused in one operator (no queue between them).

Over an updating stream (``updating=True``) each batch carries the ``_op`` column after its
data columns (plan.changelog): the filter keeps update pairs consistent and the projection
carries ``_op`` along.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from caudal import compute as pc
from caudal.operators.base import Operator
from caudal.plan.changelog import OP, filter_changelog
from caudal.plan.compile import compile_expr, compile_projection
from caudal.plan.expressions import Expr
from caudal.plan.functions.python_udf import ROWS_DROPPED, DropBatch


class ProjectFilter(Operator):
    """``SELECT exprs FROM input WHERE predicate`` over one batch at a time."""

    def __init__(self, exprs: list[Expr] | None, names: list[str] | None,
                 predicate: Expr | None, output_schema: pa.Schema, updating: bool = False):
        self.output_schema = output_schema
        self.updating = updating
        self._predicate = compile_expr(predicate) if predicate is not None else None
        self._project = compile_projection(exprs, names) if exprs is not None else None

    def process(self, batch: pa.RecordBatch, input: int = 0) -> Sequence[pa.RecordBatch]:
        try:
            return self._process(batch)
        except DropBatch:  # a UDF with on_error = 'drop' raised on this batch
            metrics = self.ctx.metrics
            metrics[ROWS_DROPPED] = metrics.get(ROWS_DROPPED, 0) + batch.num_rows
            return ()

    def _process(self, batch: pa.RecordBatch) -> Sequence[pa.RecordBatch]:
        if self._predicate is not None:
            mask = self._predicate(batch)
            if isinstance(mask, pa.Scalar):
                if not mask.as_py():
                    return ()
            elif self.updating:
                batch = filter_changelog(batch, mask)
                if batch.num_rows == 0:
                    return ()
            else:
                batch = pc.filter(batch, mask, null_selection_behavior="drop")
                if batch.num_rows == 0:
                    return ()
        if self._project is not None:
            projected = self._project(batch)
            if self.updating and OP in batch.schema.names:
                projected = projected.append_column(batch.schema.field(OP), batch.column(OP))
            batch = projected
        return (batch,)
