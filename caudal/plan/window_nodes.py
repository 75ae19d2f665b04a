"""Logical nodes of windowed queries, and how each becomes part of the dataflow.

* ``WindowAggregate``: GROUP BY a window (and keys) with aggregates. Its input is a
  projection that computed the event time, keys, aggregate arguments and FILTER conditions
  as columns. Lowered to a new vertex fed by a ``hash`` edge on the keys (a ``single`` edge
  to one subtask when there are no keys: a global window is small, one subtask merges it).
* ``WindowAssign``: a window table function nobody aggregates: stateless, fused into the
  chain of its input.
* ``WindowRank``: ROW_NUMBER / RANK / DENSE_RANK per window: a new vertex, hash edge on the
  PARTITION BY columns.

At parallelism > 1 a tumble / hop / cumulate aggregate whose aggregates all have compact,
mergeable states (and no late-row side table, which needs the raw rows) is split in two
phases, as Flink's local-global aggregation: a ``local_window_partials`` operator at the end
of the upstream chain turns each batch into partial states per (pane, key) before the
shuffle, and the window operator merges them (``partial_input``). At parallelism 1 there is
no shuffle to save, so it would be pure overhead.

Late rows of a source with ``late_data = 'side:<table>'`` leave a window operator as a side
output (operators.side_output) on an edge tagged ``late`` to an extra sink vertex.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import pyarrow as pa

from caudal.plan.aggregates import AggCall
from caudal.plan.logical import LogicalNode
from caudal.plan.physical import Edge, OperatorSpec
from caudal.plan.physical_planner import LOWERINGS, PhysicalPlanner, refuse_late_side
from caudal.plan.tables import TableSpec
from caudal.plan.windows import LateOutput, WindowSpec


@dataclass
class LateSide:
    """Late rows to a side table: input columns -> the side table's column names."""

    table: TableSpec
    columns: list[str]
    names: list[str]


@dataclass(eq=False)
class WindowAggregate(LogicalNode):
    input: LogicalNode = None  # type: ignore[assignment]
    window: WindowSpec = None  # type: ignore[assignment]
    #: the input column holding event time; None: processing time (arrival)
    time_input: str | None = None
    #: (output name, "start" | "end" | "time" | "struct") emitted before the keys
    window_columns: list[tuple[str, str]] = field(default_factory=list)
    #: input columns the rows are grouped by (output under the same names)
    keys: list[str] = field(default_factory=list)
    aggregates: list[AggCall] = field(default_factory=list)
    agg_names: list[str] = field(default_factory=list)
    late: LateSide | None = None

    def children(self) -> list[LogicalNode]:
        return [self.input]

    def input_columns(self) -> set[str]:
        cols = set(self.keys)
        if self.time_input:
            cols.add(self.time_input)
        for a in self.aggregates:
            cols |= a.columns()
        if self.late is not None:
            cols.update(self.late.columns)
        return cols

    def describe(self) -> str:
        time = f"event time {self.time_input}" if self.time_input else "processing time"
        aggs = ", ".join(f"{a} AS {n}" for a, n in zip(self.aggregates, self.agg_names))
        late = f" late rows -> {self.late.table.name}" if self.late else ""
        return (f"WindowAggregate {self.window} over {time} keys=[{', '.join(self.keys)}] "
                f"aggs=[{aggs}]{late}")


@dataclass(eq=False)
class WindowAssign(LogicalNode):
    """TUMBLE / HOP / CUMULATE / SESSION table function: the input plus window_start,
    window_end and window_time."""

    row_wise: ClassVar[bool] = True

    input: LogicalNode = None  # type: ignore[assignment]
    window: WindowSpec = None  # type: ignore[assignment]
    time_input: str = ""
    #: SESSION's PARTITION BY columns
    partition: list[str] = field(default_factory=list)
    #: where the table function was written (for errors raised when it is lowered)
    position: tuple[int | None, int | None] = (None, None)
    #: ``time_input`` is a PROCTIME() column: an aggregate over these windows runs on
    #: processing time (the column's values are the wall clock when rows were read)
    processing_time: bool = False

    def children(self) -> list[LogicalNode]:
        return [self.input]

    def input_columns(self) -> set[str]:
        return set(self.input.schema.names)

    def describe(self) -> str:
        part = f" PARTITION BY {', '.join(self.partition)}" if self.partition else ""
        return f"WindowAssign {self.window} on {self.time_input}{part}"


@dataclass(eq=False)
class WindowRank(LogicalNode):
    """The input plus a rank column, per window partition, emitted when windows close."""

    input: LogicalNode = None  # type: ignore[assignment]
    function: str = "row_number"
    partition: list[str] = field(default_factory=list)
    #: (column, descending, nulls_first)
    order: list[tuple[str, bool, bool]] = field(default_factory=list)
    rank_name: str = "__rank"
    #: the column (and struct field, for an Arroyo ``window`` struct) giving a row's
    #: window end
    window_end: str = "window_end"
    window_field: str | None = None
    #: keep rows ranked <= limit (pushed down from the WHERE above)
    limit: int | None = None
    #: rows tied on ORDER BY go to the later row: ORDER BY processing time DESC (see
    #: plan.over_nodes.UpdatingRank)
    later_ties: bool = False

    def children(self) -> list[LogicalNode]:
        return [self.input]

    def input_columns(self) -> set[str]:
        return set(self.input.schema.names)

    def describe(self) -> str:
        order = ", ".join(f"{c} {'DESC' if d else 'ASC'}" for c, d, _ in self.order)
        limit = f" keep <= {self.limit}" if self.limit is not None else ""
        ties = " (ties: the later row)" if self.later_ties else ""
        return (f"WindowRank {self.function}() AS {self.rank_name} PARTITION BY "
                f"{', '.join(self.partition)} ORDER BY {order}{ties}{limit}")


def _late_sink(planner: PhysicalPlanner, vid: int, late: LateSide, schema: pa.Schema) -> None:
    """An extra sink vertex for late rows, fed by the side output tagged ``late``."""
    src = planner.graph.vertices[vid]
    table = late.table
    single = table.connector == "stdout"
    sink = planner.new_vertex(f"sink {table.name} (late rows)",
                              parallelism=1 if single else src.parallelism)
    sink.sink = table
    sink.operators.append(OperatorSpec("sink", {"table": table},
                                       f"write late rows to {table.name}", schema))
    planner.graph.edges.append(Edge(vid, sink.id, "single" if single else "forward",
                                    tag="late"))  # type: ignore[call-arg]


def _late_params(late: LateSide | None) -> LateOutput | None:
    if late is None:
        return None
    return LateOutput(list(late.columns), list(late.names))


#: how long a window's local stage may hold a pane's partials (processing time): a bound on
#: its memory, not on results, which wait for the watermark that releases them anyway
LOCAL_HOLD_US = 250_000


def _two_phase(planner: PhysicalPlanner, node: WindowAggregate) -> bool:
    if planner.split is None or planner.parallelism <= 1 or node.window.kind == "session" \
            or node.late is not None:
        return False
    return planner.split.splittable(node.aggregates, node.input.schema, node.time_input)


def _add_local_stage(planner: PhysicalPlanner, vid: int, node: WindowAggregate) -> None:
    assert planner.split is not None  # _two_phase said yes
    schema = planner.split.partial_schema(list(node.keys), node.aggregates, node.input.schema,
                            node.time_input)
    params = {"window": node.window, "keys": list(node.keys),
              "aggregates": list(node.aggregates), "time_column": node.time_input,
              "input_schema": node.input.schema, "hold_us": LOCAL_HOLD_US}
    label = (f"local pre-aggregate {node.window} panes by [{', '.join(node.keys)}] "
             f"(two-phase: partial states before the shuffle)")
    planner.graph.vertices[vid].operators.append(
        OperatorSpec("local_window_partials", params, label, schema))


def _lower_window_aggregate(planner: PhysicalPlanner, node: WindowAggregate) -> int:
    upstream = planner.lower(node.input)
    two_phase = _two_phase(planner, node)
    if two_phase:
        _add_local_stage(planner, upstream, node)
    keyed = bool(node.keys)
    v = planner.new_vertex(f"window {node.window}",
                           parallelism=None if keyed else 1)
    planner.connect(upstream, v.id, "hash" if keyed else "single", node.keys)
    kind = "session_aggregate" if node.window.kind == "session" else "window_aggregate"
    params = {"window": node.window, "keys": list(node.keys),
              "aggregates": list(node.aggregates), "time_column": node.time_input,
              "input_schema": node.input.schema, "output_schema": node.schema,
              "late_output": _late_params(node.late),
              "window_columns": list(node.window_columns)}
    if two_phase:
        params["partial_input"] = True
    aggs = ", ".join(f"{a} AS {n}" for a, n in zip(node.aggregates, node.agg_names))
    time = node.time_input or "arrival time"
    label = f"{node.window} on {time} by [{', '.join(node.keys)}]: {aggs}"
    if two_phase:
        label = f"merge partial states of {label}"
    v.operators.append(OperatorSpec(kind, params, label, node.schema))
    if node.late is not None:
        schema = pa.schema([pa.field(n, node.input.schema.field(c).type)
                            for c, n in zip(node.late.columns, node.late.names)])
        _late_sink(planner, v.id, node.late, schema)
    return v.id


def _lower_window_assign(planner: PhysicalPlanner, node: WindowAssign) -> int:
    if node.window.kind == "session":
        from caudal.errors import PlanError

        line, col = node.position
        raise PlanError("the SESSION table function needs an aggregate over it", line=line,
                        col=col, hint="GROUP BY window_start, window_end and the "
                                      "PARTITION BY columns")
    vid = planner.lower(node.input)
    planner.graph.vertices[vid].operators.append(OperatorSpec(
        "window_assign", {"window": node.window, "time_column": node.time_input,
                          "output_schema": node.schema},
        f"assign {node.window} windows on {node.time_input}", node.schema))
    return vid


def _lower_window_rank(planner: PhysicalPlanner, node: WindowRank) -> int:
    refuse_late_side(node, "a window top-N")
    upstream = planner.lower(node.input)
    v = planner.new_vertex(f"window {node.function}")
    planner.connect(upstream, v.id, "hash", node.partition)
    params = {"window_end": node.window_end, "window_field": node.window_field,
              "partition": list(node.partition), "order": list(node.order),
              "function": node.function, "limit": node.limit,
              "output_schema": node.schema}
    if node.later_ties:   # (only when set: other jobs' parameters stay as they were)
        params["later_ties"] = True
    v.operators.append(OperatorSpec("window_rank", params, node.describe(), node.schema))
    return v.id


LOWERINGS.update({WindowAggregate: _lower_window_aggregate, WindowAssign: _lower_window_assign,
                  WindowRank: _lower_window_rank})
