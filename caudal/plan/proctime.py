"""Which output columns of a plan hold processing time: a table's ``p AS PROCTIME()``
columns and a SELECT's ``PROCTIME() AS p``, followed through renaming projections and
filters. A window over such a column is a processing-time window, and a lookup join
``FOR SYSTEM_TIME AS OF`` one reads its table as it is when each row arrives (Flink's
proctime attribute)."""

from __future__ import annotations

from caudal.plan.expressions import Call
from caudal.plan.lineage import _renames
from caudal.plan.logical import Filter, LogicalNode, Project, Scan
from caudal.plan.window_nodes import WindowAssign

#: the IR function of PROCTIME() in a query (plan.functions.time)
PROCTIME = "proctime"


def proctime_columns(node: LogicalNode) -> set[str]:
    """Names of ``node``'s output columns that are processing-time attributes."""
    if isinstance(node, Scan):
        return set(node.table.proctime) & set(node.schema.names)
    if isinstance(node, Filter):
        return proctime_columns(node.input)
    if isinstance(node, WindowAssign):   # a window table function keeps its input's columns
        return proctime_columns(node.input) & set(node.schema.names)
    if isinstance(node, Project):
        below = proctime_columns(node.input)
        made = {out for out, e in zip(node.schema.names, node.exprs)
                if isinstance(e, Call) and e.func == PROCTIME}
        return made | {out for out, src in _renames(node).items() if src in below}
    return set()
