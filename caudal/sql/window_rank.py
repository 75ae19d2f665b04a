"""Window top-N: ``ROW_NUMBER() | RANK() | DENSE_RANK() OVER (PARTITION BY window_start,
window_end[, k…] ORDER BY …)`` in a SELECT, usually filtered ``WHERE rn <= N`` by the query
around it (Flink's Window Top-N). The partition must contain the window — its
``window_start`` and ``window_end`` columns (of a window table function or a window
aggregate), or the ``window`` struct of an Arroyo-style GROUP BY — so each window is ranked
once, when it is complete.

The outer ``WHERE rn <= N`` is pushed into the rank operator (plan.rank_limits.push_rank_limit) so it keeps
only N rows per partition; the filter itself stays.
"""

from __future__ import annotations

import pyarrow as pa
from sqlglot import exp

from caudal.errors import PlanError
from caudal.plan.expressions import Column, Expr
from caudal.plan.logical import LogicalNode
from caudal.sql.scope import Scope, position
from caudal.types import TIMESTAMP

FUNCTIONS = {"rownumber": "row_number", "rank": "rank", "denserank": "dense_rank"}
_PARTITION_HINT = ("PARTITION BY window_start, window_end[, keys] (or the window column of "
                   "a GROUP BY tumble/hop/session)")


def has_window_function(select: exp.Select) -> bool:
    return any(item.find(exp.Window) is not None for item in select.expressions)


def _window_of(part: list[Expr]) -> tuple[str, str | None] | None:
    """(column, struct field) giving the window end, if the partition holds a window."""
    names = {e.name: e for e in part if isinstance(e, Column)}
    if "window_start" in names and "window_end" in names and \
            pa.types.is_timestamp(names["window_end"].dtype):
        return "window_end", None
    for e in part:
        t = e.dtype
        if isinstance(e, Column) and pa.types.is_struct(t) and \
                t.get_field_index("end") >= 0 and t.get_field_index("start") >= 0 and \
                pa.types.is_timestamp(t.field("end").type):
            return e.name, "end"
    return None


def plan_window_rank(planner, select: exp.Select, node: LogicalNode,
                     scope: Scope) -> tuple[LogicalNode, Scope]:
    # here, not at the top: has_window_function is asked of every SELECT, and a query
    # without a window function never loads OVER planning
    from caudal.plan.over_planning import RANK, window_rank
    from caudal.sql.expressions import translate

    windows = [w for item in select.expressions for w in item.find_all(exp.Window)]
    from caudal.sql.over_window import OVER_HINT, is_over_aggregate, plan_over

    if is_over_aggregate(windows[0]):  # avg(x) OVER (…): OVER aggregation
        return plan_over(planner, select, node, scope, windows)
    if len(windows) > 1:
        ln, col = position(windows[1])
        raise PlanError("only one window function per SELECT is supported", line=ln, col=col,
                        hint="rank in a subquery, then filter or rank again outside")
    w = windows[0]
    ln, col = position(w)
    fn_node = w.this
    function = FUNCTIONS.get(type(fn_node).__name__.lower())
    if function is None:
        raise PlanError(f"{fn_node.sql(dialect='postgres')} OVER (…) is not supported",
                        line=ln, col=col, hint=OVER_HINT)
    if w.args.get("spec") is not None:
        raise PlanError("window frames (ROWS/RANGE …) are not supported", line=ln, col=col,
                        hint="ROW_NUMBER() OVER (PARTITION BY … ORDER BY …)")
    partition_nodes = list(w.args.get("partition_by") or [])
    part = [translate(p, scope) for p in partition_nodes]
    window = _window_of(part)
    if window is None and not any(pa.types.is_struct(e.dtype) for e in part):
        # no window: an updating top-N (Flink's Top-N / Deduplication)
        from caudal.sql.updating_rank import plan_updating_rank

        return plan_updating_rank(planner, select, node, scope, w, function)
    if window is None:
        raise PlanError(f"{function.upper()}() needs the window in PARTITION BY", line=ln,
                        col=col, hint=_PARTITION_HINT)
    order_node = w.args.get("order")
    ordered = list(order_node.expressions) if order_node is not None else []
    if not ordered:
        raise PlanError(f"{function.upper()}() needs ORDER BY", line=ln, col=col,
                        hint="ORDER BY the value to rank by, e.g. ORDER BY num DESC")

    order = []
    for o in ordered:
        inner = o.this if isinstance(o, exp.Ordered) else o
        desc = bool(o.args.get("desc")) if isinstance(o, exp.Ordered) else False
        nulls_first = bool(o.args.get("nulls_first")) if isinstance(o, exp.Ordered) else False
        order.append((translate(inner, scope), desc, nulls_first))
    rank = window_rank(node, [Column(c.dtype, c.physical) for c in scope.columns], function,
                       part, order, window)
    computed = dict(scope.computed)
    computed[w.sql(dialect="postgres")] = Column(pa.int64(), RANK)
    out_scope = Scope(columns=list(scope.columns), computed=computed)
    return planner.plan_projection(select.expressions, rank, out_scope)


__all__ = ["plan_window_rank", "has_window_function", "TIMESTAMP"]
