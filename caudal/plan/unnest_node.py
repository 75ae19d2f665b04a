"""The logical node of ``UNNEST``: one output row per element of an array column, and its
lowering (a stateless operator fused into the chain of the vertex below it).

``CROSS JOIN UNNEST(arr) AS u(x)`` (Flink) and ``SELECT unnest(arr)`` (Arroyo, DuckDB) plan to
this node; a row whose array is NULL or empty gives no row, as in both. The other columns are
repeated, the event time column among them, so the watermark needs no change.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from caudal.plan.logical import LogicalNode
from caudal.plan.physical import OperatorSpec
from caudal.plan.physical_planner import LOWERINGS, PhysicalPlanner


@dataclass(eq=False)
class Unnest(LogicalNode):
    """The input's columns (those used above, after pruning), then ``output``: each element
    of list column ``column``, always last."""

    input: LogicalNode = None  # type: ignore[assignment]
    column: str = ""
    output: str = ""

    def children(self) -> list[LogicalNode]:
        return [self.input]

    def describe(self) -> str:
        return f"Unnest {self.column} AS {self.output}"

    def prune_inputs(self, required: set[str] | None) -> list[set[str] | None]:
        """Column pruning (plan.optimizer): keep only the columns used above, the element
        and the time column, so an array nobody reads is not repeated for every element
        (copying it is most of the cost of an unnest). The input must give the array."""
        if required is None:
            return [None]
        keep = [f for f in self.schema if f.name in required or f.name == self.output
                or f.name == self.time_column]
        self.schema = pa.schema(keep[:-1] + [self.schema.field(self.output)]
                                if keep[-1].name != self.output else keep)
        return [{f.name for f in self.schema if f.name != self.output} | {self.column}]

    # an element's row keeps its row's time and window (plan.lineage)
    def time_bounds(self) -> dict[str, int]:
        from caudal.plan.lineage import time_bounds

        return time_bounds(self.input)

    def window_lineage(self) -> dict[str, tuple[object, str]]:
        from caudal.plan.lineage import window_columns

        return window_columns(self.input)


def _lower_unnest(planner: PhysicalPlanner, node: Unnest) -> int:
    vid = planner.lower(node.input)
    planner.graph.vertices[vid].operators.append(OperatorSpec(
        "unnest", {"column": node.column, "output_schema": node.schema},
        f"unnest {node.column} AS {node.output}", node.schema))
    return vid


LOWERINGS[Unnest] = _lower_unnest
