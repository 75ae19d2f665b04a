"""Top-N and deduplication over partitions without a window (Flink's Top-N and
Deduplication; Nexmark q18, q19)::

    SELECT * FROM (
      SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY x DESC) AS rn FROM t
    ) WHERE rn <= N          -- or rn = 1, rn < N + 1

sql.window_rank hands over a ranking whose PARTITION BY holds no window. The plan is
``Project`` (partition and order expressions as columns) -> ``UpdatingRank`` -> the SELECT
list. The outer ``WHERE rn <= N`` sets the operator's limit and ``finish_ranks`` records
whether anything reads the rank (both in plan.rank_limits, shared by the front ends).
"""

from __future__ import annotations

import pyarrow as pa
from sqlglot import exp

from caudal.errors import PlanError
from caudal.plan.expressions import Column
from caudal.plan.logical import LogicalNode
from caudal.plan.over_planning import RANK, updating_rank
from caudal.sql.over_window import input_columns, order_items
from caudal.sql.scope import Scope, position
from caudal.sql.settings import flush_setting


def plan_updating_rank(planner, select: exp.Select, node: LogicalNode, scope: Scope,
                       window: exp.Window, function: str) -> tuple[LogicalNode, Scope]:
    """Plan ``function() OVER (PARTITION BY … ORDER BY …)`` without a window."""
    from caudal.sql.expressions import translate

    ln, col = position(window)
    columns = input_columns(scope)
    partition = [columns.column_for(translate(p, scope), "partition")
                 for p in (window.args.get("partition_by") or [])]
    order = order_items(window, scope, columns)
    if not order:
        raise PlanError(f"{function.upper()}() needs ORDER BY", line=ln, col=col,
                        hint="ORDER BY the value to rank by, e.g. ORDER BY price DESC, or "
                             "ORDER BY date_time DESC to keep the last row per key")
    rank = updating_rank(node, columns, function, partition,
                         [(c, d, nf) for c, d, nf, _, _ in order],
                         flush_setting(planner.catalog.settings), (ln, col))
    computed = dict(scope.computed)
    computed[window.sql(dialect="postgres")] = Column(pa.int64(), RANK)
    out_scope = Scope(columns=list(scope.columns), computed=computed)
    return planner.plan_projection(select.expressions, rank, out_scope)


__all__ = ["plan_updating_rank"]
