"""Top-N and deduplication over partitions without a window (Flink's Top-N and
Deduplication; Nexmark q18, q19)::

    SELECT * FROM (
      SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY x DESC) AS rn FROM t
    ) WHERE rn <= N          -- or rn = 1, rn < N + 1

sql.window_rank hands over a ranking whose PARTITION BY holds no window. The plan is
``Project`` (partition and order expressions as columns) -> ``UpdatingRank`` -> the SELECT
list; the outer ``WHERE rn <= N`` sets the operator's limit (``push_updating_limit``), and the
conjuncts the limit implies leave the filter. After the statement is planned,
``finish_ranks`` records whether anything reads the rank: when nothing does (q18 selects the
bid columns only), the operator emits only rows entering and leaving the top N, as Flink
does, not the rank changes of the rows that stay.
"""

from __future__ import annotations

import pyarrow as pa
from sqlglot import exp

from caudal.errors import PlanError
from caudal.plan.expressions import Call, Column, Expr
from caudal.plan.logical import Filter, LogicalNode, Project, SinkWrite
from caudal.plan.over_nodes import UpdatingRank
from caudal.plan.rank_limits import conjuncts, rank_bound
from caudal.plan.updating_nodes import DEFAULT_FLUSH_US
from caudal.sql.over_window import InputColumns, order_items
from caudal.sql.scope import Scope, position
from caudal.sql.settings import duration_setting


def plan_updating_rank(planner, select: exp.Select, node: LogicalNode, scope: Scope,
                       window: exp.Window, function: str) -> tuple[LogicalNode, Scope]:
    """Plan ``function() OVER (PARTITION BY … ORDER BY …)`` without a window."""
    from caudal.sql.expressions import translate

    ln, col = position(window)
    columns = InputColumns(scope)
    partition = [columns.column_for(translate(p, scope), "partition")
                 for p in (window.args.get("partition_by") or [])]
    order = order_items(window, scope, columns)
    if not order:
        raise PlanError(f"{function.upper()}() needs ORDER BY", line=ln, col=col,
                        hint="ORDER BY the value to rank by, e.g. ORDER BY price DESC, or "
                             "ORDER BY date_time DESC to keep the last row per key")
    node = columns.project(node)
    rank_name = "__rank"
    schema = node.schema.append(pa.field(rank_name, pa.int64()))
    rank = UpdatingRank(
        schema, None, input=node, function=function, partition=partition,
        order=[(c, d, nf) for c, d, nf, _, _ in order], rank_name=rank_name,
        flush_us=duration_setting(planner.catalog.settings, "updating_flush",
                                  DEFAULT_FLUSH_US), position=(ln, col))
    computed = dict(scope.computed)
    computed[window.sql(dialect="postgres")] = Column(pa.int64(), rank_name)
    out_scope = Scope(columns=list(scope.columns), computed=computed)
    return planner.plan_projection(select.expressions, rank, out_scope)


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
    out = rest[0]
    for c in rest[1:]:
        out = Call(pa.bool_(), "and", (out, c))
    return out


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


__all__ = ["plan_updating_rank", "push_updating_limit", "finish_ranks"]
