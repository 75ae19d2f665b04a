"""The logical node of ``UNION ALL`` (any number of inputs) and its lowering.

The union of streams is the concatenation of their rows, and the union of changelogs is a
changelog (each input's inserts and retractions pass through unchanged), so the node takes
updating inputs and updates when one of them does. The planner (sql.set_operations) has
already projected every input to the output's names and types, in order; ``UNION``
(distinct) is this node under an ``UpdatingAggregate`` keyed by every column.

Lowered to a vertex with one input per union input (edge ``input=i``): the runtime's input
gate takes the minimum of the inputs' watermarks, which is the union's watermark, and aligns
checkpoint barriers across them. An edge is ``forward`` when the input runs at the union's
parallelism and ``single`` otherwise (an input on one subtask stays in order on subtask 0:
a changelog's retraction never overtakes the row it retracts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from caudal.plan.logical import LogicalNode
from caudal.plan.physical import OperatorSpec
from caudal.plan.physical_planner import LOWERINGS, PhysicalPlanner


@dataclass(eq=False)
class Union(LogicalNode):
    accepts_updates: ClassVar[bool] = True
    inputs: list[LogicalNode] = field(default_factory=list)

    def children(self) -> list[LogicalNode]:
        return list(self.inputs)

    def describe(self) -> str:
        return f"UnionAll {len(self.inputs)} inputs [{', '.join(self.schema.names)}]"

    def input_columns(self) -> set[str] | None:
        return None  # every input column is an output column, by position

    def time_bounds(self) -> dict[str, int]:
        """A column is bounded by the watermark when it is in every input (by position);
        its lateness is the largest of the inputs'."""
        from caudal.plan.lineage import time_bounds

        if self.updating:
            return {}
        out: dict[str, int] = {}
        below = [time_bounds(i) for i in self.inputs]
        for pos, name in enumerate(self.schema.names):
            lateness = [b.get(i.schema.names[pos]) for b, i in zip(below, self.inputs)]
            if all(x is not None for x in lateness):
                out[name] = max(lateness)  # type: ignore[type-var]
        return out

    def window_lineage(self) -> dict[str, tuple[object, str]]:
        """Window bounds survive a union when every input has the same window at the same
        position (a GROUP BY window_start, window_end above stays a window aggregate)."""
        from caudal.plan.lineage import window_columns

        below = [window_columns(i) for i in self.inputs]
        out: dict[str, tuple[object, str]] = {}
        for pos, name in enumerate(self.schema.names):
            infos = [b.get(i.schema.names[pos]) for b, i in zip(below, self.inputs)]
            if infos[0] is not None and all(x == infos[0] for x in infos):
                out[name] = infos[0]
        return out


def _lower_union(planner: PhysicalPlanner, node: Union) -> int:
    upstream = [planner.lower(i) for i in node.inputs]
    v = planner.new_vertex("union", inputs=len(upstream))
    for i, vid in enumerate(upstream):
        same = planner.graph.vertex(vid).parallelism == v.parallelism
        planner.connect(vid, v.id, "forward" if same else "single", input=i)
    params = {"updating_inputs": [i.updating for i in node.inputs],
              "updating_output": node.updating, "output_schema": node.schema}
    label = f"union all of {len(upstream)} inputs" + (" (changelog)" if node.updating else "")
    v.operators.append(OperatorSpec("union", params, label, node.schema))
    return v.id


LOWERINGS[Union] = _lower_union
