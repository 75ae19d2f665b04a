"""Logical nodes of window functions over partitions that contain no window, and their
lowering.

* ``UpdatingRank``: ``ROW_NUMBER() / RANK() / DENSE_RANK() OVER (PARTITION BY k ORDER BY x)``
  filtered ``<= N`` (Flink's Top-N and Deduplication). No window ever closes, so the result
  is revised as rows arrive: a changelog, whatever the input.
* ``OverAggregate``: ``agg(x) OVER (PARTITION BY k ORDER BY t ROWS|RANGE … PRECEDING)``
  (Flink's OVER aggregation). Over an append-only input it orders by event time and emits
  every row once, when the watermark passes it (append-only output). Over a changelog
  (``mode = "updating"``) every row of a touched partition is recomputed and the changed
  results are emitted as a changelog (the result equals the batch query's).

Both are keyed by the PARTITION BY columns: a new vertex fed by a ``hash`` edge on them (a
``single`` edge to one subtask without PARTITION BY).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from caudal.durations import format_duration_us
from caudal.plan.aggregates import AggCall
from caudal.plan.logical import LogicalNode
from caudal.plan.physical import OperatorSpec
from caudal.plan.physical_planner import LOWERINGS, PhysicalPlanner, refuse_late_side
from caudal.plan.updating_nodes import DEFAULT_FLUSH_US


@dataclass(frozen=True)
class Frame:
    """The rows an OVER aggregate sees for the current row, ending at the current row.

    ``kind``: ``rows`` (the ``preceding`` rows before it, or all when None), ``range``
    (rows whose ORDER BY value is at most ``preceding`` below it, µs for a timestamp, or
    all when None; rows equal to it — its peers — included) or ``partition`` (the whole
    partition: an OVER without ORDER BY).
    """

    kind: str
    preceding: int | None = None
    #: ``preceding`` of a RANGE frame is an INTERVAL in µs (False: a plain number)
    interval: bool = True

    def __str__(self) -> str:
        if self.kind == "partition":
            return "whole partition"
        if self.preceding is None:
            start = "UNBOUNDED"
        elif self.kind == "range" and self.interval:
            start = f"INTERVAL {format_duration_us(self.preceding)}"
        else:
            start = str(self.preceding)
        return f"{self.kind.upper()} BETWEEN {start} PRECEDING AND CURRENT ROW"


@dataclass(eq=False)
class UpdatingRank(LogicalNode):
    """The input plus a rank column (``rank_name``), for rows ranked ``<= limit`` in their
    partition; emitted as a changelog."""

    accepts_updates: ClassVar[bool] = True
    input: LogicalNode = None  # type: ignore[assignment]
    function: str = "row_number"
    partition: list[str] = field(default_factory=list)
    #: (column, descending, nulls_first)
    order: list[tuple[str, bool, bool]] = field(default_factory=list)
    rank_name: str = "__rank"
    #: keep rows ranked <= limit (pushed down from the WHERE above; required)
    limit: int | None = None
    #: whether anything above reads the rank: if not, only rows entering or leaving the
    #: top N are emitted, not rank changes (set by plan.rank_limits.finish_ranks)
    rank_used: bool = True
    #: rows tied on ORDER BY go to the later row, not the earlier: ORDER BY processing time
    #: DESC (the last row read; PROCTIME() is read once per batch, so a batch's rows tie)
    later_ties: bool = False
    flush_us: int = DEFAULT_FLUSH_US
    #: where the window function was written (for errors found after planning)
    position: tuple[int | None, int | None] = (None, None)

    @property
    def updating(self) -> bool:
        return True

    @property
    def updating_reason(self) -> str:
        part = ", ".join(self.partition) or "the whole input"
        return f"a {self.function.upper()}() top-N over partitions without a window ({part})"

    def children(self) -> list[LogicalNode]:
        return [self.input]

    def input_columns(self) -> set[str]:
        return set(self.input.schema.names)

    def describe(self) -> str:
        order = ", ".join(f"{c} {'DESC' if d else 'ASC'}" for c, d, _ in self.order)
        limit = f" keep <= {self.limit}" if self.limit is not None else ""
        source = " over a changelog" if self.input.updating else ""
        rank = "" if self.rank_used else " (rank not emitted)"
        ties = " (ties: the later row)" if self.later_ties else ""
        return (f"UpdatingRank {self.function}() AS {self.rank_name} PARTITION BY "
                f"{', '.join(self.partition) or '()'} ORDER BY {order}{ties}{limit}{rank}"
                f"{source}")


@dataclass(eq=False)
class OverAggregate(LogicalNode):
    """The input plus one column per aggregate (``agg_names``), each over ``frame``."""

    accepts_updates: ClassVar[bool] = True
    input: LogicalNode = None  # type: ignore[assignment]
    partition: list[str] = field(default_factory=list)
    #: (column, descending, nulls_first)
    order: list[tuple[str, bool, bool]] = field(default_factory=list)
    frame: Frame = field(default_factory=lambda: Frame("rows"))
    aggregates: list[AggCall] = field(default_factory=list)
    agg_names: list[str] = field(default_factory=list)
    #: "event_time": append-only input ordered by its time attribute ``time_input``;
    #: "updating": a changelog input, recomputed per partition
    mode: str = "event_time"
    time_input: str | None = None
    flush_us: int = DEFAULT_FLUSH_US

    @property
    def updating(self) -> bool:
        return self.mode == "updating"

    @property
    def updating_reason(self) -> str:
        return "an OVER aggregate over a changelog"

    def children(self) -> list[LogicalNode]:
        return [self.input]

    def input_columns(self) -> set[str]:
        return set(self.input.schema.names)

    def describe(self) -> str:
        aggs = ", ".join(f"{a} AS {n}" for a, n in zip(self.aggregates, self.agg_names))
        order = ", ".join(f"{c} {'DESC' if d else 'ASC'}" for c, d, _ in self.order)
        how = f"event time {self.time_input}" if self.mode == "event_time" else \
            "over a changelog, recomputed per partition"
        return (f"OverAggregate [{aggs}] PARTITION BY {', '.join(self.partition) or '()'} "
                f"ORDER BY {order or '()'} {self.frame} ({how})")


def _keyed_vertex(planner: PhysicalPlanner, node: LogicalNode, name: str,
                  partition: list[str]) -> int:
    upstream = planner.lower(node.input)  # type: ignore[attr-defined]
    v = planner.new_vertex(name, parallelism=None if partition else 1)
    planner.connect(upstream, v.id, "hash" if partition else "single", partition)
    return v.id


def _lower_updating_rank(planner: PhysicalPlanner, node: UpdatingRank) -> int:
    if node.limit is None and not node.input.updating:
        from caudal.errors import PlanError

        line, col = node.position
        raise PlanError(f"{node.function.upper()}() over partitions without a window needs a "
                        "bound on the rank", line=line, col=col,
                        hint="filter it in the query around it: WHERE rn <= N (rn = 1 to "
                             "deduplicate); or rank each window: PARTITION BY window_start, "
                             "window_end[, keys]")
    # over a changelog every row is kept anyway: no bound ranks them all (a WHERE above
    # that reads the rank, e.g. rn <= a column, filters the changes)
    vid = _keyed_vertex(planner, node, f"updating {node.function}", node.partition)
    params = {"partition": list(node.partition), "order": list(node.order),
              "function": node.function, "limit": node.limit, "rank_used": node.rank_used,
              "input_schema": node.input.schema, "output_schema": node.schema,
              "updating_input": node.input.updating, "flush_us": node.flush_us}
    if node.later_ties:   # (only when set: other jobs' parameters stay as they were)
        params["later_ties"] = True
    planner.graph.vertices[vid].operators.append(
        OperatorSpec("updating_rank", params, node.describe(), node.schema))
    return vid


def _lower_over_aggregate(planner: PhysicalPlanner, node: OverAggregate) -> int:
    vid = _keyed_vertex(planner, node, "over aggregate", node.partition)
    params = {"partition": list(node.partition), "order": list(node.order),
              "frame": node.frame, "aggregates": list(node.aggregates),
              "input_schema": node.input.schema, "output_schema": node.schema}
    if node.mode == "event_time":
        refuse_late_side(node, "an OVER aggregate")
        params["time_column"] = node.time_input
        kind = "over_aggregate"
    else:
        params["flush_us"] = node.flush_us
        kind = "updating_over"
    planner.graph.vertices[vid].operators.append(
        OperatorSpec(kind, params, node.describe(), node.schema))
    return vid


LOWERINGS.update({UpdatingRank: _lower_updating_rank, OverAggregate: _lower_over_aggregate})
