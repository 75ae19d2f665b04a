"""The logical nodes of ``LIMIT`` / ``OFFSET`` and of ``ORDER BY`` on a bounded query, and
their lowering (sql.order_limit decides which one a query gets).

* ``Limit``: the first ``offset + limit`` rows of an append-only stream, minus the first
  ``offset``, in arrival order (which rows is up to the stream, as in every SQL engine
  without ORDER BY). Each upstream subtask keeps at most ``offset + limit`` rows
  (``final=False``), then one subtask counts them all (``final=True``). Once a final limit
  has all its rows it tells the runtime, which ends the sources early when every output of
  the job is such a limit: ``SELECT * FROM bids LIMIT 10`` ends by itself.
* ``SortLimit``: Flink's batch semantics for a bounded input: every row (or, with LIMIT, the
  best ``offset + limit`` so far), sorted and emitted once the input has ended. Over a
  changelog it folds the changes first (the result of a bounded updating query). The
  output only appends.

* ``TimeSort``: ``ORDER BY ts [, …]`` over an unbounded append-only stream whose event time
  is ``ts`` (Flink's sort on a time attribute): rows leave sorted as the watermark passes
  them, on one subtask; the output keeps the event time.

(``ORDER BY … LIMIT n`` over an unbounded input is a top-N: plan.over_nodes.UpdatingRank.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from caudal.plan.logical import LogicalNode
from caudal.plan.physical import OperatorSpec
from caudal.plan.physical_planner import LOWERINGS, PhysicalPlanner, refuse_late_side


@dataclass(eq=False)
class Limit(LogicalNode):
    """Rows pass unchanged and undelayed, so the input's event time stays the time
    attribute (a window above a LIMIT is still on event time)."""

    input: LogicalNode = None  # type: ignore[assignment]
    limit: int | None = None
    offset: int = 0

    def children(self) -> list[LogicalNode]:
        return [self.input]

    def describe(self) -> str:
        off = f" OFFSET {self.offset}" if self.offset else ""
        return f"Limit {self.limit if self.limit is not None else 'ALL'}{off}"


@dataclass(eq=False)
class SortLimit(LogicalNode):
    accepts_updates: ClassVar[bool] = True
    input: LogicalNode = None  # type: ignore[assignment]
    #: (column, descending, nulls_first)
    order: list[tuple[str, bool, bool]] = field(default_factory=list)
    limit: int | None = None
    offset: int = 0
    #: rows tied on ORDER BY go to the later row: ORDER BY processing time DESC (see
    #: plan.over_nodes.UpdatingRank)
    later_ties: bool = False

    @property
    def updating(self) -> bool:
        return False  # emitted once, at the end of the (bounded) input

    def children(self) -> list[LogicalNode]:
        return [self.input]

    def input_columns(self) -> set[str]:
        return set(self.input.schema.names)

    def describe(self) -> str:
        order = ", ".join(f"{c} {'DESC' if d else 'ASC'} NULLS {'FIRST' if n else 'LAST'}"
                          for c, d, n in self.order) or "(any order)"
        limit = f" LIMIT {self.limit}" if self.limit is not None else ""
        off = f" OFFSET {self.offset}" if self.offset else ""
        source = " over a changelog" if self.input.updating else ""
        ties = " (ties: the later row)" if self.later_ties else ""
        return f"Sort {order}{ties}{limit}{off} at end of input{source}"


@dataclass(eq=False)
class TimeSort(LogicalNode):
    input: LogicalNode = None  # type: ignore[assignment]
    #: (column, descending, nulls_first); the first is the event time, ascending
    order: list[tuple[str, bool, bool]] = field(default_factory=list)

    def children(self) -> list[LogicalNode]:
        return [self.input]

    def describe(self) -> str:
        order = ", ".join(f"{c} {'DESC' if d else 'ASC'}" for c, d, _ in self.order)
        return f"Sort {order} as the watermark passes"


def _lower_time_sort(planner: PhysicalPlanner, node: TimeSort) -> int:
    refuse_late_side(node, "a sort on event time")
    upstream = planner.lower(node.input)
    v = planner.new_vertex("time sort", parallelism=1)
    planner.connect(upstream, v.id, "single")
    params = {"order": list(node.order), "time_column": node.time_column,
              "output_schema": node.schema}
    v.operators.append(OperatorSpec("time_sort", params, node.describe(), node.schema))
    return v.id


def _lower_limit(planner: PhysicalPlanner, node: Limit | SortLimit) -> int:
    kind = "limit" if isinstance(node, Limit) else "sort_limit"
    upstream = planner.lower(node.input)
    params = {"limit": node.limit, "offset": node.offset, "output_schema": node.schema}
    if isinstance(node, SortLimit):
        params.update(order=list(node.order), updating_input=node.input.updating)
        if node.later_ties:   # (only when set: other jobs' parameters stay as they were)
            params["later_ties"] = True
    keep = None if node.limit is None else node.limit + node.offset
    if planner.graph.vertex(upstream).parallelism > 1 and keep is not None and \
            not node.input.updating:
        # each subtask passes on at most the rows the final step can use
        planner.graph.vertices[upstream].operators.append(OperatorSpec(
            kind, {**params, "limit": keep, "offset": 0, "final": False},
            f"{node.describe()} (per subtask: keep {keep})", node.schema))
    v = planner.new_vertex(kind.replace("_", " "), parallelism=1)
    planner.connect(upstream, v.id, "single")
    v.operators.append(OperatorSpec(kind, {**params, "final": True}, node.describe(),
                                    node.schema))
    return v.id


LOWERINGS[Limit] = _lower_limit
LOWERINGS[SortLimit] = _lower_limit
LOWERINGS[TimeSort] = _lower_time_sort
