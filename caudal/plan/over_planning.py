"""Planning OVER clauses over the IR, for both front ends: the columns a window function's
operator reads (``InputColumns``), and its node: an ``OverAggregate`` (running aggregates),
an ``UpdatingRank`` (top-N without a window) or a ``WindowRank`` (top-N per window). The
front end translates PARTITION BY, ORDER BY and the calls, and checks what its syntax
allows; ``order`` items are (column, descending, nulls first)."""

from __future__ import annotations

import pyarrow as pa

from caudal.plan.aggregates import AggCall
from caudal.plan.expressions import Call, Column, Expr, Literal
from caudal.plan.functions.coerce import cast
from caudal.plan.functions.registry import bind_call
from caudal.plan.logical import Filter, LogicalNode, Project
from caudal.plan.over_nodes import Frame, OverAggregate, UpdatingRank
from caudal.plan.proctime import PROCTIME, proctime_columns
from caudal.plan.window_nodes import WindowRank

#: the rank column a ranking operator adds
RANK = "__rank"

Order = list[tuple[str, bool, bool]]


class InputColumns:
    """The columns a window function's operator reads: the input's own, plus expressions of
    PARTITION BY, ORDER BY and the arguments computed into new columns by a projection."""

    def __init__(self, own: list[Column], carried: list[Column] | None = None):
        self.exprs: list[Expr] = list(own) + list(carried or [])
        self.names: list[str] = [c.name for c in own] + [c.name for c in carried or []]
        self.own = len(self.exprs)

    def column_for(self, expr: Expr, prefix: str) -> str:
        """The name of a column holding ``expr`` (an existing column is used as it is)."""
        if isinstance(expr, Column) and expr.name in self.names:
            return expr.name
        name = f"__{prefix}{len(self.exprs) - self.own}"
        self.exprs.append(expr)
        self.names.append(name)
        return name

    def project(self, node: LogicalNode) -> LogicalNode:
        """``node`` with the computed columns added (itself when there are none)."""
        if len(self.exprs) == self.own:
            return node
        schema = pa.schema([pa.field(n, e.dtype if not pa.types.is_null(e.dtype)
                                     else pa.string()) for n, e in zip(self.names, self.exprs)])
        exprs = [cast(e, schema.field(i).type) for i, e in enumerate(self.exprs)]
        return Project(schema, node.time_column, input=node, exprs=exprs)


def over_aggregate(node: LogicalNode, columns: InputColumns, partition: list[str],
                   order: Order, frame: Frame, calls: list[AggCall], agg_names: list[str],
                   flush_us: int | None) -> OverAggregate:
    """Running aggregates over ``node``: ordered by event time over an append-only input,
    by anything over an updating one (a changelog)."""
    mode = "updating" if node.updating else "event_time"
    node = columns.project(node)
    schema = pa.schema(list(node.schema) + [pa.field(n, c.dtype)
                                            for n, c in zip(agg_names, calls)])
    time = node.time_column if mode == "event_time" else None
    return OverAggregate(schema, time, input=node, partition=partition, order=order,
                         frame=frame, aggregates=calls, agg_names=agg_names, mode=mode,
                         time_input=time, flush_us=flush_us)


def updating_rank(node: LogicalNode, columns: InputColumns, function: str,
                  partition: list[str], order: Order, flush_us: int | None,
                  position: tuple[int | None, int | None]) -> UpdatingRank:
    """``function`` (row_number, rank, dense_rank) per partition, without a window."""
    later = bool(order) and order[0][1] and _processing_time(
        columns.exprs[columns.names.index(order[0][0])], node)
    node = columns.project(node)
    schema = node.schema.append(pa.field(RANK, pa.int64()))
    return UpdatingRank(schema, None, input=node, function=function, partition=partition,
                        order=order, rank_name=RANK, flush_us=flush_us, position=position,
                        later_ties=later)


def _processing_time(expr: Expr, node: LogicalNode) -> bool:
    """Whether ``expr`` over ``node`` is processing time (a PROCTIME() column, or the call):
    its order is the order rows are read in, so of rows read at once the later is later."""
    if isinstance(expr, Column):
        return expr.name in proctime_columns(node)
    return isinstance(expr, Call) and expr.func == PROCTIME


def window_rank(node: LogicalNode, own: list[Column], function: str, partition: list[Expr],
                order: list[tuple[Expr, bool, bool]], window: tuple[str, str | None]
                ) -> WindowRank:
    """``function`` per partition of each window (``window``: the column of its end, or of
    its struct and the field); partition and order expressions that are not columns of the
    input become ``__partition<i>``/``__order<i>`` of a projection under the rank."""
    exprs: list[Expr] = list(own)
    names: list[str] = [c.name for c in own]
    seen = set(names)

    def column_for(expr: Expr, prefix: str, i: int) -> str:
        if isinstance(expr, Column) and expr.name in seen:
            return expr.name
        name = f"__{prefix}{i}"
        exprs.append(expr)
        names.append(name)
        return name

    later = bool(order) and order[0][1] and _processing_time(order[0][0], node)
    part = [column_for(e, "partition", i) for i, e in enumerate(partition)]
    ordered = [(column_for(e, "order", i), desc, nulls_first)
               for i, (e, desc, nulls_first) in enumerate(order)]
    if len(exprs) > len(own):
        schema = pa.schema([pa.field(n, e.dtype) for n, e in zip(names, exprs)])
        node = Project(schema, node.time_column, input=node, exprs=exprs)
    schema = node.schema.append(pa.field(RANK, pa.int64()))
    return WindowRank(schema, node.time_column, input=node, function=function,
                      partition=part, order=ordered, rank_name=RANK,
                      window_end=window[0], window_field=window[1], later_ties=later)


def top_n(node: LogicalNode, order: Order, limit: int, offset: int, flush_us: int | None,
          position: tuple[int | None, int | None], later_ties: bool = False) -> LogicalNode:
    """ORDER BY … LIMIT n OFFSET m over an unbounded input: ROW_NUMBER() over the whole
    input, ranks m+1 to m+n (an ``UpdatingRank`` on one subtask; ``later_ties``: ORDER BY
    processing time DESC)."""
    schema = node.schema.append(pa.field(RANK, pa.int64()))
    rank = UpdatingRank(schema, None, input=node, function="row_number", partition=[],
                        order=order, rank_name=RANK, limit=limit + offset,
                        flush_us=flush_us, position=position, later_ties=later_ties)
    rank.rank_used = offset > 0
    if not offset:
        return rank
    predicate = bind_call("gt", [Column(pa.int64(), RANK), Literal(pa.int64(), offset)])
    return Filter(schema, None, input=rank, predicate=predicate)
