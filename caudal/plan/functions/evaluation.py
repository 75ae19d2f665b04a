"""Compile IR expressions into functions of a RecordBatch that run vectorized kernels.

The tree is walked once per batch (not per row); constant subtrees are folded at compile time.
The function families use it too (a constant argument is evaluated when planning), so it
imports only the registry; ``plan.compile`` is the entry point that registers the families.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa

from caudal.errors import RuntimeFailure
from caudal.plan.expressions import Call, Column, Expr, Literal, source_of
from caudal.plan.functions.registry import is_constant, lookup

Evaluator = Callable[[pa.RecordBatch], "pa.Array | pa.Scalar"]


def compile_expr(expr: Expr) -> Evaluator:
    """A function batch -> Array (or Scalar when the expression reads no column)."""
    if isinstance(expr, Column):
        name = expr.name
        return lambda batch: batch.column(name)
    if isinstance(expr, Literal):
        scalar = expr.scalar()
        return lambda batch: scalar
    assert isinstance(expr, Call)
    if is_constant(expr):
        value = _call(expr, [compile_expr(a) for a in expr.args])(_EMPTY)
        if isinstance(value, pa.Array) and len(value) == 1:
            value = value[0]
        if isinstance(value, pa.Scalar):
            return lambda batch: value
    return _call(expr, [compile_expr(a) for a in expr.args])


#: one row to evaluate constants on; from pa.nulls, not from Python values, whose conversion
#: would import dateutil (with calendar and locale: ~3-15 ms) in every job
_EMPTY = pa.RecordBatch.from_arrays([pa.nulls(1)], ["_"])


def _call(call: Call, args: list[Evaluator]) -> Evaluator:
    fn = lookup(call.func)
    kernel = fn.kernel
    if fn.lazy:  # CASE, COALESCE, random(): the kernel evaluates its arguments itself
        run = lambda batch: kernel(args, call, batch)  # noqa: E731
    else:
        run = lambda batch: kernel([a(batch) for a in args], call)  # noqa: E731
    source = source_of(call)
    if source is None:
        return run
    line, col, text = source

    def located(batch: pa.RecordBatch):
        try:
            return run(batch)
        except RuntimeFailure as e:
            # the innermost expression written in the SQL names the error
            if e.line is None:
                if f" in {call}" not in e.message:  # a kernel may name its call itself
                    e.message = f"{e.message} in {text}"
                    e.args = (e.message,)
                e.with_position(line, col)
            raise

    return located


def evaluate(evaluator: Evaluator, batch: pa.RecordBatch, dtype: pa.DataType) -> pa.Array:
    """Run an evaluator and broadcast a scalar result to the batch's length."""
    value = evaluator(batch)
    if isinstance(value, pa.ChunkedArray):
        value = value.combine_chunks()
    if isinstance(value, pa.Scalar):
        if not value.type.equals(dtype):
            value = value.cast(dtype) if value.is_valid else pa.scalar(None, dtype)
        return pa.repeat(value, batch.num_rows)
    if not value.type.equals(dtype):
        value = value.cast(dtype)
    return value


def compile_projection(exprs: list[Expr], names: list[str]) -> Callable[[pa.RecordBatch],
                                                                         pa.RecordBatch]:
    """A function batch -> batch with one column per expression.

    With no expression (``SELECT count(*)`` needs no column) the result still has the input's
    row count: a zero-column batch built from arrays would have zero rows and lose them."""
    evaluators = [compile_expr(e) for e in exprs]
    schema = pa.schema([pa.field(n, e.dtype) for n, e in zip(names, exprs)])
    dtypes = [e.dtype for e in exprs]

    def project(batch: pa.RecordBatch) -> pa.RecordBatch:
        if not evaluators:
            return batch.select([])
        cols = [evaluate(ev, batch, t) for ev, t in zip(evaluators, dtypes)]
        return pa.RecordBatch.from_arrays(cols, schema=schema)

    return project
