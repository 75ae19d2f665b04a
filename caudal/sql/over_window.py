"""OVER aggregates: ``count / sum / avg / min / max / first_value / last_value (x) OVER
(PARTITION BY k ORDER BY t [ROWS | RANGE] BETWEEN … PRECEDING AND CURRENT ROW)`` (Nexmark
q6).

Two plans, chosen by the input (plan.over_nodes):

* an append-only input: Flink's OVER aggregation on event time. The ORDER BY must be the
  input's event time column, ascending (rows are released in time order as the watermark
  passes them); the result appends and keeps the time column.
* a changelog input (an updating GROUP BY, a regular join): the touched partitions are
  recomputed at each flush, and the result is a changelog. Any ORDER BY works; an OVER
  without ORDER BY aggregates the whole partition.

Accepted frames end at CURRENT ROW: ``ROWS BETWEEN n PRECEDING``, ``ROWS BETWEEN UNBOUNDED
PRECEDING``, ``RANGE BETWEEN INTERVAL '…' PRECEDING`` (over a timestamp; an integer offset over
an integer ORDER BY on a changelog), ``RANGE BETWEEN UNBOUNDED PRECEDING`` (the SQL default
with ORDER BY). OVER aggregates over different windows become a chain of operators, one
per window.

The plan is ``Project`` (the input columns, plus the partition, order and argument
expressions as columns) -> ``OverAggregate`` -> ``Project`` (the SELECT list, which sees each
OVER call through ``Scope.computed``).
"""

from __future__ import annotations

import pyarrow as pa
from sqlglot import exp

from caudal.errors import PlanError
from caudal.plan.aggregate_planning import exact_avg, wide_decimal_sum
from caudal.plan.aggregates import AggCall
from caudal.plan.expressions import Column, Expr
from caudal.plan.logical import LogicalNode
from caudal.plan.over_nodes import Frame, OverAggregate
from caudal.plan.over_planning import InputColumns, over_aggregate
from caudal.sql.scope import Scope, position
from caudal.sql.settings import flush_setting
from caudal.types import sql_name

OVER_FUNCTIONS = ("count", "sum", "avg", "min", "max", "first_value", "last_value")
#: the value of the frame's first / last row, NULL included: FILTER is no CASE for them
_ROW_VALUES = ("first_value", "last_value")
#: window functions that are no aggregate (sqlglot's classes): refused as OVER calls, not as
#: unknown aggregates (whose hint lists GROUP BY's aggregates)
_NOT_OVER = (exp.Lag, exp.Lead, exp.Ntile, exp.PercentRank, exp.CumeDist, exp.NthValue)
OVER_HINT = ("OVER aggregates: " + ", ".join(OVER_FUNCTIONS) + "; ROW_NUMBER(), RANK(), "
             "DENSE_RANK() filtered by WHERE rn <= N (top-N)")
FRAME_HINT = ("ROWS BETWEEN n PRECEDING AND CURRENT ROW, ROWS BETWEEN UNBOUNDED PRECEDING "
              "AND CURRENT ROW, or RANGE BETWEEN INTERVAL '1' HOUR PRECEDING AND CURRENT ROW")


def is_over_aggregate(window: exp.Window) -> bool:
    """Whether an OVER clause applies an aggregate (not ROW_NUMBER / RANK)."""
    from caudal.sql.select_items import is_aggregate

    call = window.this
    if isinstance(call, exp.Filter):
        call = call.this
    if isinstance(call, (exp.RowNumber, exp.Rank, exp.DenseRank)):
        return False  # sqlglot counts RANK (an ordered-set aggregate too) as an aggregate
    return is_aggregate(call)


def _filter_as_case(call: exp.Expression) -> exp.Expression:
    """``f(x) FILTER (WHERE c)`` as ``f(CASE WHEN c THEN x END)`` (``count(*)``: of
    ``CASE WHEN c THEN 1 END``): the same for the OVER aggregates, which all skip NULLs."""
    if not isinstance(call, exp.Filter):
        return call
    agg = call.this.copy()
    condition = call.expression.this.copy()
    arg = agg.this
    if isinstance(arg, exp.Distinct):
        return agg  # refused as DISTINCT … OVER, with or without the FILTER
    value = exp.Literal.number(1) if arg is None or isinstance(arg, exp.Star) else arg.copy()
    agg.set("this", exp.Case(ifs=[exp.If(this=condition, true=value)]))
    return agg


def input_columns(scope: Scope, carried: list[Column] | None = None) -> InputColumns:
    """The columns of ``scope`` as the input of a window function's operator."""
    return InputColumns([Column(c.dtype, c.physical) for c in scope.columns], carried)


def order_items(window: exp.Window, scope: Scope, columns: InputColumns
                ) -> list[tuple[str, bool, bool, Expr, exp.Expression]]:
    """ORDER BY items of an OVER clause: (column, descending, nulls first, expression,
    node)."""
    from caudal.sql.expressions import translate

    order_node = window.args.get("order")
    out = []
    for o in (list(order_node.expressions) if order_node is not None else []):
        inner = o.this if isinstance(o, exp.Ordered) else o
        desc = bool(o.args.get("desc")) if isinstance(o, exp.Ordered) else False
        nulls_first = bool(o.args.get("nulls_first")) if isinstance(o, exp.Ordered) else False
        expr = translate(inner, scope)
        out.append((columns.column_for(expr, "order"), desc, nulls_first, expr, inner))
    return out


def _window_key(window: exp.Window) -> tuple[str, str, str]:
    """PARTITION BY, ORDER BY and frame as SQL text (equal texts: the same window)."""
    part = ",".join(p.sql(dialect="postgres") for p in window.args.get("partition_by") or [])
    order, spec = window.args.get("order"), window.args.get("spec")
    return (part, order.sql(dialect="postgres") if order is not None else "",
            spec.sql(dialect="postgres") if spec is not None else "")


def _side(value) -> str:
    return str(value or "").upper()


def parse_frame(window: exp.Window, scope: Scope, ordered: bool) -> Frame:
    """The frame of an OVER clause; PlanError for frames that do not end at CURRENT ROW."""
    from caudal.sql.window_specs import constant_interval

    spec = window.args.get("spec")
    ln, col = position(window)
    if spec is None:
        # SQL: with ORDER BY, RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        return Frame("range") if ordered else Frame("partition")
    if not ordered:
        raise PlanError("a window frame needs ORDER BY in its OVER clause", line=ln, col=col,
                        hint="add ORDER BY, e.g. OVER (PARTITION BY k ORDER BY date_time "
                             "ROWS BETWEEN 10 PRECEDING AND CURRENT ROW)")
    kind = _side(spec.args.get("kind")).lower()
    end = spec.args.get("end")
    if end is not None and _side(end) != "CURRENT ROW":
        raise PlanError(f"window frames must end at CURRENT ROW, not {_side(end)} "
                        f"{_side(spec.args.get('end_side'))}".rstrip(), line=ln, col=col,
                        hint=FRAME_HINT)
    start = spec.args.get("start")
    side = _side(spec.args.get("start_side"))
    if isinstance(start, str) and start.upper() == "CURRENT ROW":
        return Frame(kind, 0)
    if side != "PRECEDING":
        raise PlanError(f"window frames must start before the current row, not {side}",
                        line=ln, col=col, hint=FRAME_HINT)
    if isinstance(start, str) and start.upper() == "UNBOUNDED":
        return Frame(kind, None)
    if kind == "rows":
        if not (isinstance(start, exp.Literal) and not start.is_string
                and str(start.this).isdigit()):
            sl, sc = position(start) if isinstance(start, exp.Expression) else (ln, col)
            raise PlanError("ROWS … PRECEDING takes a constant number of rows", line=sl,
                            col=sc, hint=FRAME_HINT)
        return Frame("rows", int(start.this))
    if isinstance(start, exp.Literal) and not start.is_string and str(start.this).isdigit():
        return Frame("range", int(start.this), interval=False)
    return Frame("range", constant_interval(start, scope, "RANGE frame offset"))


def plan_over(planner, select: exp.Select, node: LogicalNode, scope: Scope,
              windows: list[exp.Window]) -> tuple[LogicalNode, Scope]:
    """Plan the OVER aggregates of ``select`` above ``node``: one ``OverAggregate`` per
    distinct window (PARTITION BY, ORDER BY, frame), chained."""
    groups: dict[tuple[str, str, str], list[exp.Window]] = {}
    for w in windows:
        if not is_over_aggregate(w):
            wl, wc = position(w)
            raise PlanError("ranking and aggregate window functions cannot be mixed in one "
                            "SELECT", line=wl, col=wc,
                            hint="rank in a subquery, aggregate in the query around it")
        groups.setdefault(_window_key(w), []).append(w)
    computed = dict(scope.computed)
    carried: list[Column] = []  # OVER results of earlier windows, passed along the chain
    for group in groups.values():
        node = _plan_window(planner, node, scope, group, computed, carried)
    out_scope = Scope(columns=list(scope.columns), computed=computed)
    return planner.plan_projection(select.expressions, node, out_scope)


def _plan_window(planner, node: LogicalNode, scope: Scope, windows: list[exp.Window],
                 computed: dict[str, Expr], carried: list[Column]) -> OverAggregate:
    """One ``OverAggregate`` for the OVER calls sharing ``windows[0]``'s window; their
    results are added to ``computed`` (and ``carried``, for the next window)."""
    from caudal.sql.aggregates import _translate_aggregate
    from caudal.sql.expressions import translate

    first = windows[0]
    ln, col = position(first)
    columns = input_columns(scope, carried)
    partition = [columns.column_for(translate(p, scope), "partition")
                 for p in (first.args.get("partition_by") or [])]
    order = order_items(first, scope, columns)
    frame = parse_frame(first, scope, bool(order))
    mode = "updating" if node.updating else "event_time"
    if mode == "event_time":
        _check_event_time(node, order, ln, col)
    if frame.kind == "range" and frame.preceding:
        _check_range_offset(order, first, ln, col)

    calls: list[AggCall] = []
    agg_names: list[str] = []
    for w in windows:
        key = w.sql(dialect="postgres")
        if key in computed:
            continue
        wl, wc = position(w)
        if isinstance(w.this, _NOT_OVER):
            raise PlanError(f"{w.this.sql_name().lower()}() OVER (…) is not supported",
                            line=wl, col=wc, hint=OVER_HINT)
        agg = _translate_aggregate(_filter_as_case(w.this), scope, True)
        if agg.func in _ROW_VALUES and isinstance(w.this, exp.Filter):
            raise PlanError(f"{agg.func}(x) FILTER (WHERE …) OVER (…) is not supported",
                            line=wl, col=wc, hint=f"{agg.func}(x) OVER (…) of a subquery "
                                                  "that filters the rows")
        if agg.func not in OVER_FUNCTIONS:
            name = agg.options.get("udaf", agg.func)  # a Python UDAF by its own name
            raise PlanError(f"{name}() OVER (…) is not supported", line=wl, col=wc,
                            hint=OVER_HINT)
        if agg.distinct:
            raise PlanError(f"{agg.func}(DISTINCT …) OVER (…) is not supported", line=wl,
                            col=wc, hint=f"{agg.func}(x) OVER (…)")
        t = agg.args[0].dtype if agg.args else None
        if agg.func in ("sum", "avg") and t is not None and pa.types.is_decimal(t) and \
                (agg.func == "sum" or wide_decimal_sum(agg.func, t)):
            # avg of a DECIMAL of up to 18 digits: its unscaled integers summed exactly;
            # frames have no exact sum of wider ones, nor a DECIMAL result
            raise PlanError(f"{agg.func}() OVER (…) of {sql_name(t)} is not supported"
                            + (" (avg of DECIMAL of up to 18 digits is)"
                               if agg.func == "avg" else ""), line=wl, col=wc,
                            hint=f"cast it: {agg.func}(CAST(x AS DOUBLE)) OVER (…)" +
                            (f" or avg(CAST(x AS DECIMAL(18, {min(t.scale, 18)}))) OVER (…)"
                             if agg.func == "avg" else ""))
        if agg.func in ("sum", "avg") and t is not None and \
                not (pa.types.is_integer(t) or pa.types.is_floating(t)
                     or pa.types.is_null(t) or agg.func == "avg" and exact_avg(t)):
            raise PlanError(f"{agg.func}() OVER (…) takes an integer or floating point "
                            f"number, got {sql_name(t)}", line=wl, col=wc,
                            hint=f"cast it: {agg.func}(CAST(x AS DOUBLE)) OVER (…)")
        args = tuple(columns.column_for(a, "arg") for a in agg.args)
        name = f"__over{len(carried)}"
        calls.append(AggCall(agg.func, args, agg.dtype, text=key))
        agg_names.append(name)
        computed[key] = Column(agg.dtype, name)
        carried.append(Column(agg.dtype, name))

    return over_aggregate(node, columns, partition, [(c, d, nf) for c, d, nf, _, _ in order],
                          frame, calls, agg_names,
                          flush_setting(planner.catalog.settings))


def _check_event_time(node: LogicalNode, order, ln, col) -> None:
    time = node.time_column
    if time is None:
        raise PlanError("an OVER aggregate on an append-only stream orders rows by event "
                        "time, and this input has none", line=ln, col=col,
                        hint="declare WATERMARK FOR <column> (or event_time_field) on the "
                             "source table and ORDER BY that column")
    shown = f"not by {order[0][4].sql(dialect='postgres')}" if order else "it has no ORDER BY"
    if len(order) != 1 or not (isinstance(order[0][3], Column) and order[0][3].name == time) \
            or order[0][1]:
        ol, oc = position(order[0][4]) if order else (ln, col)
        raise PlanError(f"an OVER aggregate on an append-only stream must be ordered by its "
                        f"event time column {time!r} ascending ({shown}"
                        + (" DESC" if order and order[0][1] else "") + ")", line=ol, col=oc,
                        hint=f"ORDER BY {time}; any ORDER BY is accepted over an updating "
                             f"input (e.g. the result of a GROUP BY)")


def _check_range_offset(order, window: exp.Window, ln, col) -> None:
    """An INTERVAL offset ranges over one ascending timestamp, a number over an integer."""
    interval = not isinstance(window.args["spec"].args.get("start"), exp.Literal)
    dtype = order[0][3].dtype if len(order) == 1 else None
    ok = dtype is not None and not order[0][1] and (
        pa.types.is_timestamp(dtype) if interval else pa.types.is_integer(dtype))
    if not ok:
        raise PlanError("a RANGE frame with an offset needs one ascending ORDER BY column: "
                        "a timestamp for an INTERVAL offset, an integer for a number",
                        line=ln, col=col, hint=FRAME_HINT)


__all__ = ["plan_over", "is_over_aggregate", "parse_frame", "input_columns", "order_items",
           "OVER_HINT"]
