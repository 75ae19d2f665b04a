"""Which output columns of a plan hold processing time: a table's ``p AS PROCTIME()``
columns, followed through renaming projections and filters. A window over such a column
is a processing-time window (Flink's proctime attribute)."""

from __future__ import annotations

from caudal.plan.lineage import _renames
from caudal.plan.logical import Filter, LogicalNode, Project, Scan


def proctime_columns(node: LogicalNode) -> set[str]:
    """Names of ``node``'s output columns that are processing-time attributes."""
    if isinstance(node, Scan):
        return set(node.table.proctime) & set(node.schema.names)
    if isinstance(node, Filter):
        return proctime_columns(node.input)
    if isinstance(node, Project):
        below = proctime_columns(node.input)
        return {out for out, src in _renames(node).items() if src in below}
    return set()
