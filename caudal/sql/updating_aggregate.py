"""GROUP BY without a window: an updating aggregate (a running result per key, revised as
rows arrive, emitted as a changelog).

sql.aggregates hands over a GROUP BY that names no window. The plan has the same shape as a
windowed one — ``Project`` (keys, aggregate arguments, FILTER conditions as columns) ->
``UpdatingAggregate`` -> ``Filter`` (HAVING) -> ``Project`` (the SELECT list) — and reuses
its name resolution and aggregate translation. What differs: the result is a changelog, so
the sink must take one (plan.changelog), and over an updating input (a nested aggregate, an
outer join) every aggregate must be able to retract a row.

Settings: ``SET updating_flush = '1s'`` (how often changed results are emitted; ``0`` emits
after every batch), ``SET updating_ttl = '1 hour'`` (forget a key unchanged that long).
"""

from __future__ import annotations

import pyarrow as pa
from sqlglot import exp

from caudal.errors import PlanError
from caudal.plan.aggregate_planning import TIME, AggregateInput, updating_aggregate
from caudal.plan.aggregates import AggCall
from caudal.plan.expressions import Column, Expr
from caudal.plan.logical import Filter, LogicalNode
from caudal.sql.aggregates import (
    AggregateScope,
    _key,
    _resolve_group_item,
    _translate_aggregate,
    aggregate_call,
    bind_group_keys,
    collect_aggregates,
)
from caudal.sql.scope import Scope, ScopeColumn, position
from caudal.sql.settings import duration_setting, flush_setting
from caudal.types import sql_name


def plan_updating_aggregate(planner, select: exp.Select, node: LogicalNode,
                            scope: Scope) -> tuple[LogicalNode, Scope]:
    """Plan the GROUP BY / aggregates of ``select`` (no window) over ``node``."""
    from caudal.operators.updating_aggregate import retraction_problem
    from caudal.sql.expressions import translate

    group = select.args.get("group")
    items = [_resolve_group_item(i, select, scope) for i in group.expressions] \
        if group is not None else []
    having = select.args.get("having")
    agg_nodes = collect_aggregates(list(select.expressions) +
                                   ([having.this] if having is not None else []))
    ordered = any(_is_ordered(a) for a in agg_nodes)
    # first_value / last_value order by event time: carry it only when they are used
    time_input = node.time_column if ordered and not node.updating else None

    pre = AggregateInput()
    if time_input is not None:
        pre.add(TIME, Column(node.schema.field(time_input).type, time_input))
    computed: dict[str, Expr] = {}
    visible: list[ScopeColumn] = []
    key_names, key_exprs = bind_group_keys(items, scope, {TIME}, computed, visible,
                                           reject_nested=True)
    for name, expr in zip(key_names, key_exprs):
        pre.add_key(name, expr)

    calls: list[AggCall] = []
    agg_names: list[str] = []
    for i, agg_node in enumerate(agg_nodes):
        agg = _translate_aggregate(agg_node, scope, node.time_column is not None or
                                   node.updating)
        call = aggregate_call(i, agg, agg_node, pre)
        if node.updating:
            problem = retraction_problem(call)
            if problem is not None:
                ln, col = position(agg_node)
                raise PlanError(f"{call} over an updating input: {problem}", line=ln, col=col,
                                hint="over a changelog use count, sum, avg, min, max, "
                                     "count(DISTINCT …), variance or stddev")
        name = f"__agg{i}"
        calls.append(call)
        agg_names.append(name)
        computed[_key(agg_node)] = Column(agg.dtype, name)

    settings = planner.catalog.settings
    aggregate = updating_aggregate(
        pre.project(node, time_input is not None), key_names, calls, agg_names,
        flush_us=flush_setting(settings),
        ttl_us=duration_setting(settings, "updating_ttl", None))

    post_scope = AggregateScope(columns=visible, computed=computed, input_scope=scope)
    result: LogicalNode = aggregate
    if having is not None:
        predicate = translate(having.this, post_scope)
        if not (pa.types.is_boolean(predicate.dtype) or pa.types.is_null(predicate.dtype)):
            ln, col = position(having.this)
            raise PlanError(f"HAVING needs a boolean condition, got {sql_name(predicate.dtype)}",
                            line=ln, col=col)
        result = Filter(result.schema, None, input=result, predicate=predicate)
    return planner.plan_projection(select.expressions, result, post_scope)


def _is_ordered(node: exp.Expression) -> bool:
    from caudal.plan.aggregates import canonical

    call = node.this if isinstance(node, exp.Filter) else node
    raw = call.name if isinstance(call, exp.Anonymous) else type(call).__name__
    return canonical(str(raw)) in ("first_value", "last_value")


def plan_distinct(planner, select: exp.Select, node: LogicalNode,
                  scope: Scope) -> tuple[LogicalNode, Scope]:
    """``SELECT DISTINCT items``: the projection, then a GROUP BY of all its columns with
    no aggregate. Over an append-only input each distinct row is emitted once (the result
    only appends); over a changelog a row is retracted when its last copy is."""
    distinct = select.args["distinct"]
    if distinct.args.get("on") is not None:
        ln, col = position(distinct)
        raise PlanError("SELECT DISTINCT ON is not supported", line=ln, col=col,
                        hint="use ROW_NUMBER() OVER (PARTITION BY window …) <= 1, or GROUP BY")
    projected, out_scope = planner.plan_projection(select.expressions, node, scope)
    from caudal.sql.set_operations import distinct_rows

    return distinct_rows(planner, projected), out_scope
