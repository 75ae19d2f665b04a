"""Flink's window table functions in FROM:

    TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), size))
    TABLE(HOP(TABLE t, DESCRIPTOR(ts), slide, size))
    TABLE(CUMULATE(TABLE t, DESCRIPTOR(ts), step, max_size))
    TABLE(SESSION(TABLE t PARTITION BY k, DESCRIPTOR(ts), gap))

with an optional ``offset`` after the sizes of TUMBLE, HOP and CUMULATE (window starts
aligned to the epoch plus it), or with named arguments, as Flink accepts them:
``TUMBLE(DATA => TABLE t, TIMECOL => DESCRIPTOR(ts), SIZE => …, OFFSET => …)`` (also
``SLIDE``, ``STEP``, ``GAP``).

Each returns the table's columns plus ``window_start``, ``window_end`` and ``window_time``.
The result is a ``WindowAssign`` node; a GROUP BY window_start, window_end (sql.aggregates)
or a window top-N (sql.window_rank) above it uses the window directly instead of rows
duplicated per window.
"""

from __future__ import annotations

import dataclasses

from sqlglot import exp

from caudal.errors import PlanError
from caudal.plan.aggregate_planning import WINDOW_COLUMNS, assign_windows
from caudal.plan.expressions import Column
from caudal.plan.lineage import event_time_columns, event_time_loss
from caudal.plan.proctime import proctime_columns
from caudal.sql.dialect import WindowTableFunction
from caudal.sql.scope import Scope, ScopeColumn, position
from caudal.sql.window_specs import TABLE_FUNCTIONS, constant_interval, make_window
from caudal.types import TIMESTAMP

ACCEPTED = ("TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), size[, offset])), TABLE(HOP(TABLE t, "
            "DESCRIPTOR(ts), slide, size[, offset])), TABLE(CUMULATE(TABLE t, DESCRIPTOR(ts), "
            "step, size[, offset])), TABLE(SESSION(TABLE t PARTITION BY k, DESCRIPTOR(ts), "
            "gap)), or named: DATA => TABLE t, TIMECOL => DESCRIPTOR(ts), SIZE => …")


def _arguments(name: str, tvf: WindowTableFunction,
               where: tuple[int | None, int | None]) -> dict[str, exp.Expression]:
    """The interval arguments by name: positional ones in order (Flink's ``size`` etc.,
    then ``offset``), then ``NAME => value`` ones."""
    required = TABLE_FUNCTIONS[name]
    accepted = required + (("offset",) if name != "session" else ())
    spelled = ", ".join(n.upper() for n in accepted)
    positional = list(tvf.expressions)
    if len(positional) > len(accepted):
        pl, pc = position(positional[len(accepted)])
        raise PlanError(f"{name.upper()} takes at most {len(accepted)} interval argument(s) "
                        f"({spelled}) after DESCRIPTOR, got {len(positional)}", line=pl,
                        col=pc, hint=f"accepted: {ACCEPTED}")
    values = dict(zip(accepted, positional))
    for kwarg in tvf.args.get("named") or []:
        arg = kwarg.this.name.lower()
        kl, kc = position(kwarg)
        if arg not in accepted:
            what = "a DESCRIPTOR(column)" if arg == "timecol" else \
                "first (DATA => TABLE t)" if arg == "data" else None
            raise PlanError(f"{name.upper()} has no argument {arg.upper()}"
                            if what is None else f"{arg.upper()} must be {what}",
                            line=kl, col=kc,
                            hint=f"{name.upper()}(DATA => TABLE t, TIMECOL => DESCRIPTOR(ts), "
                                 + ", ".join(f"{n.upper()} => …" for n in accepted) + ")")
        if arg in values:
            raise PlanError(f"{name.upper()} argument {arg.upper()} is given twice",
                            line=kl, col=kc, hint=f"arguments: {spelled}")
        values[arg] = kwarg.expression
    missing = [n for n in required if n not in values]
    if missing:
        then = " (then an optional OFFSET)" if name != "session" else ""
        raise PlanError(f"{name.upper()} takes {len(required)} interval argument(s) "
                        f"({', '.join(n.upper() for n in required)}) after DESCRIPTOR"
                        f"{then}; {', '.join(m.upper() for m in missing)} is missing",
                        line=where[0], col=where[1],
                        hint=f"accepted: {ACCEPTED}")
    return values


def plan_window_tvf(planner, source: exp.Table):
    """Plan ``TABLE(FN(TABLE t, DESCRIPTOR(ts), …))``; returns (WindowAssign, scope)."""
    tvf = source.this
    ln, col = position(source)
    if not isinstance(tvf, WindowTableFunction):
        raise PlanError(f"unsupported FROM item {source.sql()[:60]!r}", line=ln, col=col,
                        hint=f"a table, a view, a subquery or a window function: {ACCEPTED}")
    name = tvf.this.name.lower()
    if name not in TABLE_FUNCTIONS:
        ln, col = position(tvf.this)
        raise PlanError(f"unknown table function {tvf.this.name}", line=ln, col=col,
                        hint=f"accepted: {ACCEPTED}")
    table = tvf.args["table"]
    node, inner = planner.plan_from(table)
    relation = source.alias or table.name
    descriptor = tvf.args.get("descriptor")
    if descriptor is None:
        raise PlanError(f"{name.upper()} needs DESCRIPTOR(time column)", line=ln, col=col,
                        hint=f"accepted: {ACCEPTED}")
    time_expr = inner.resolve_column(descriptor)
    dl, dc = position(descriptor)
    processing = isinstance(time_expr, Column) and time_expr.name in proctime_columns(node)
    # DESCRIPTOR(p) of a PROCTIME() column: windows on processing time. Otherwise event
    # time columns: the input's time column, or a window bound no row arrives behind the
    # watermark (window_time / window_end of a window aggregate: cascading windows)
    times = [] if processing else event_time_columns(node)
    if not processing and not times:
        loss = event_time_loss(node)
        if loss is not None:
            raise PlanError(f"{name.upper()} over {table.name!r}, which has no event time: "
                            f"{loss}", line=dl, col=dc,
                            hint="window the event time column or window_time")
        raise PlanError(f"{name.upper()} over {table.name!r}, which has no event time",
                        line=dl, col=dc,
                        hint=f"declare WATERMARK FOR {descriptor.name} AS {descriptor.name} "
                             "- INTERVAL '1' SECOND (or event_time_field in WITH); for "
                             "windows on arrival time use GROUP BY tumble(…)")
    if not processing and (not isinstance(time_expr, Column) or time_expr.name not in times):
        raise PlanError(f"DESCRIPTOR({descriptor.name}) is not the event time of "
                        f"{table.name!r}", line=dl, col=dc,
                        hint="windows are over an event time column: "
                             + " or ".join(f"DESCRIPTOR({c})" for c in times))
    time_column = time_expr.name
    values = _arguments(name, tvf, (ln, col))
    names = TABLE_FUNCTIONS[name]
    args = [values[n] for n in names]
    sizes = [constant_interval(a, inner, f"{name.upper()} {n}") for a, n in zip(args, names)]
    offset = 0
    if "offset" in values:
        offset = constant_interval(values["offset"], inner, f"{name.upper()} offset",
                                   positive=False)
    window = make_window(name, sizes, args, tvf, offset)
    partition: list[str] = []
    keys = tvf.args.get("partition_by") or []
    if keys and name != "session":
        pl, pc = position(keys[0])
        raise PlanError(f"PARTITION BY is only accepted by SESSION, not {name.upper()}",
                        line=pl, col=pc, hint=f"accepted: {ACCEPTED}")
    for key in keys:
        resolved = inner.resolve_column(key)
        if not isinstance(resolved, Column):
            pl, pc = position(key)
            raise PlanError("SESSION PARTITION BY takes columns", line=pl, col=pc)
        partition.append(resolved.name)
    assign, renamed = assign_windows(node, window, time_column, partition, processing,
                                     (ln, col))
    columns = [dataclasses.replace(c, relation=relation) for c in inner.columns
               if c.name.lower() not in WINDOW_COLUMNS and c.physical not in renamed]
    columns += [ScopeColumn(relation, n, TIMESTAMP, n) for n in WINDOW_COLUMNS]
    return assign, Scope(columns=columns)
