"""Reading ``rank <= N`` out of a predicate: the top-N operators (window and updating)
keep only the rows such a filter above them keeps (``push_rank_limit``), and an updating
top-N whose rank nothing reads emits only rows entering and leaving it (``finish_ranks``).
Over the IR, shared by the front ends."""

from __future__ import annotations

import math
from decimal import Decimal

import pyarrow as pa

from caudal.plan.expressions import Call, Column, Expr, conjunction, conjuncts
from caudal.plan.functions.coerce import constant_value
from caudal.plan.functions.registry import is_constant
from caudal.plan.logical import Filter, LogicalNode, Project, SinkWrite
from caudal.plan.over_nodes import UpdatingRank
from caudal.plan.window_nodes import WindowRank


def _rank(expr: Expr, rank_columns: set[str]) -> bool:
    """Whether ``expr`` is a rank column, or one cast to a wider number (``rn <= 2.5``
    compares ``CAST(rn AS DECIMAL)``): the same order."""
    if isinstance(expr, Call) and expr.func == "cast" and len(expr.args) == 1 and (
            pa.types.is_integer(expr.dtype) or pa.types.is_decimal(expr.dtype)
            or pa.types.is_floating(expr.dtype)):
        expr = expr.args[0]
    return isinstance(expr, Column) and expr.name in rank_columns


def rank_bound(expr: Expr, rank_columns: set[str]) -> int | None:
    """N when ``expr`` is ``rank <= N`` (or <, =, and the mirrored forms); the bound may be
    any constant number (``rn < 2 + 1``, ``rn <= 2.5``)."""
    if not isinstance(expr, Call) or len(expr.args) != 2:
        return None
    a, b = expr.args
    func = expr.func
    if is_constant(a) and not is_constant(b):
        a, b = b, a
        func = {"gte": "lte", "gt": "lt", "eq": "eq"}.get(func, "")
    if func not in ("lte", "lt", "eq") or not _rank(a, rank_columns) or not is_constant(b):
        return None
    value = constant_value(b, "rank", "bound", default=None)
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)) or \
            value != value or value in (float("inf"), float("-inf")):
        return None   # (NULL, NaN, ±inf: not a bound this reads)
    if func == "lte":
        return math.floor(value)
    if func == "lt":
        return math.ceil(value) - 1
    return int(value) if value == int(value) else None


def _implied(conjunct: Expr, columns: set[str], limit: int) -> bool:
    """Whether keeping ranks <= ``limit`` already guarantees ``conjunct``."""
    bound = rank_bound(conjunct, columns)
    if bound is None or bound < limit:
        return False
    return conjunct.func != "eq" or bound == 1  # type: ignore[attr-defined]


def push_updating_limit(node: LogicalNode, predicate: Expr) -> Expr | None:
    """Set the limit of an ``UpdatingRank`` under ``node`` (through the projection of the
    ranking SELECT) from ``WHERE rn <= N``; the predicate left to filter (None: nothing)."""
    if isinstance(node, Project) and isinstance(node.input, UpdatingRank):
        rank = node.input
        columns = {n for n, e in zip(node.schema.names, node.exprs)
                   if isinstance(e, Column) and e.name == rank.rank_name}
    elif isinstance(node, UpdatingRank):
        rank, columns = node, {node.rank_name}
    else:
        return predicate
    parts = conjuncts(predicate)
    bounds = [b for b in (rank_bound(c, columns) for c in parts) if b is not None]
    if not bounds:
        return predicate
    limit = max(0, min(bounds))
    rank.limit = limit if rank.limit is None else min(rank.limit, limit)
    rest = [c for c in parts if not _implied(c, columns, rank.limit)]
    if not rest:
        return None
    return conjunction(rest)


def finish_ranks(plan: LogicalNode) -> None:
    """Record in every ``UpdatingRank`` of a planned statement whether its rank is read
    above it (through projections and filters)."""
    _walk(plan, None)


def _walk(node: LogicalNode, required: set[str] | None) -> None:
    if isinstance(node, UpdatingRank):
        node.rank_used = required is None or node.rank_name in required
        _walk(node.input, None)
    elif isinstance(node, Project):
        needed: set[str] = set()
        for name, e in zip(node.schema.names, node.exprs):
            if required is None or name in required:
                needed |= e.columns()
        _walk(node.input, needed)
    elif isinstance(node, Filter):
        _walk(node.input, None if required is None else required | node.predicate.columns())
    elif isinstance(node, SinkWrite):
        _walk(node.input, None)
    else:
        for child in node.children():
            _walk(child, None)


def push_rank_limit(node: LogicalNode, predicate: Expr) -> Expr | None:
    """Tell a WindowRank under ``node`` (through a projection) to keep only the rows a
    ``WHERE rank <= N`` above it keeps. Returns the predicate still to filter by (an
    updating top-N drops the conjuncts its limit implies)."""
    predicate = push_updating_limit(node, predicate)  # type: ignore[assignment]
    if predicate is None:
        return None
    rank = node
    columns: set[str]
    if isinstance(node, Project) and isinstance(node.input, WindowRank):
        rank = node.input
        columns = {n for n, e in zip(node.schema.names, node.exprs)
                   if isinstance(e, Column) and e.name == rank.rank_name}
    elif isinstance(node, WindowRank):
        columns = {node.rank_name}
    else:
        return predicate
    assert isinstance(rank, WindowRank)
    bounds = [b for b in (rank_bound(c, columns) for c in conjuncts(predicate))
              if b is not None]
    if bounds:
        limit = max(0, min(bounds))
        rank.limit = limit if rank.limit is None else min(rank.limit, limit)
    return predicate
