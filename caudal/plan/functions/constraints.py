"""Column constraints checked on the rows a query writes: a column declared NOT NULL in the
sink's CREATE TABLE fails the job on a NULL, as Flink's sink not-null enforcer does by
default (it never writes the NULL, and never drops the row silently)."""

from __future__ import annotations

import pyarrow as pa

from caudal.errors import RuntimeFailure
from caudal.plan.expressions import Call, Expr
from caudal.plan.functions.registry import register

#: the IR function wrapping a value written into a NOT NULL column
NOT_NULL = "enforce_not_null"


def enforce_not_null(expr: Expr, column: str, table: str) -> Call:
    """``expr``, failing the job if a row gives NULL for NOT NULL ``column`` of ``table``."""
    return Call(expr.dtype, NOT_NULL, (expr,), {"column": column, "table": table})


def _bind(name: str, args: list[Expr]) -> Call:
    return Call(args[0].dtype, name, tuple(args[:1]), {"column": "?", "table": "?"})


def _check(args, call: Call):
    value = args[0]
    nulls = (not value.is_valid) if isinstance(value, pa.Scalar) else value.null_count > 0
    if nulls:
        raise RuntimeFailure(
            f"column {call.options['column']!r} of table {call.options['table']!r} is declared "
            "NOT NULL, and the query writes NULL into it",
            hint="filter the rows (WHERE … IS NOT NULL), COALESCE the value, or drop NOT NULL")
    return value


register(NOT_NULL, _bind, _check, "NOT NULL check of a sink column", internal=True)
