"""Skipping data by statistics: can a predicate be true for any row of a chunk (a Parquet row
group) whose per-column min, max and null count are known?

The answer is conservative: ``False`` ("may match") whenever the predicate has a shape it does
not understand. Filters still run on every row that is read, so pruning only saves work.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from caudal.plan.expressions import Call, Column, Expr, Literal


@dataclass
class ColumnStats:
    min: Any
    max: Any
    null_count: int | None
    num_rows: int


_FLIP = {"lt": "gt", "lte": "gte", "gt": "lt", "gte": "lte", "eq": "eq"}


def _comparable(value: Any) -> Any:
    """Parquet statistics give datetimes for timestamps; IR literals may hold µs ints."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value
    return value


def _literal(expr: Expr) -> tuple[bool, Any]:
    if isinstance(expr, Literal) and expr.value is not None:
        value = expr.value
        if hasattr(value, "as_py"):
            value = value.as_py()
        return True, _comparable(value)
    return False, None


def cannot_match(predicate: Expr, stats: dict[str, ColumnStats]) -> bool:
    """True only when no row described by ``stats`` can satisfy ``predicate``."""
    try:
        return _cannot(predicate, stats)
    except TypeError:  # values of types that do not compare: be safe
        return False


def _cannot(expr: Expr, stats: dict[str, ColumnStats]) -> bool:
    if not isinstance(expr, Call):
        return False
    if expr.func == "and":
        return any(_cannot(a, stats) for a in expr.args)
    if expr.func == "or":
        return all(_cannot(a, stats) for a in expr.args)
    if expr.func in ("is_null", "is_not_null") and isinstance(expr.args[0], Column):
        s = stats.get(expr.args[0].name)
        if s is None or s.null_count is None:
            return False
        if expr.func == "is_null":
            return s.null_count == 0
        return s.null_count >= s.num_rows
    if expr.func in _FLIP and len(expr.args) == 2:
        left, right = expr.args
        op = expr.func
        if not isinstance(left, Column):
            left, right, op = right, left, _FLIP[op]
        if not isinstance(left, Column):
            return False
        ok, value = _literal(right)
        s = stats.get(left.name)
        if not ok or s is None:
            return False
        if s.null_count is not None and s.null_count >= s.num_rows:
            return True  # every value is NULL: no comparison is true
        if s.min is None or s.max is None:
            return False
        low, high = _comparable(s.min), _comparable(s.max)
        if op in ("gt", "gte") and pa.types.is_floating(left.dtype):
            return False  # a NaN, which statistics leave out, is above every number
        if op == "gt":
            return high <= value
        if op == "gte":
            return high < value
        if op == "lt":
            return low >= value
        if op == "lte":
            return low > value
        return value < low or value > high
    return False
