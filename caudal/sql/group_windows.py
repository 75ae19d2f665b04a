"""Flink's legacy group windows: ``GROUP BY TUMBLE(ts, size)``, ``HOP(ts, slide, size)``
(slide first, as Flink orders it) and ``SESSION(ts, gap)``, with the auxiliary functions
``TUMBLE_START/END/ROWTIME``, ``HOP_START/END/ROWTIME`` and ``SESSION_START/END/ROWTIME``
in SELECT and HAVING.

They plan as Arroyo's ``tumble(size)`` in GROUP BY (sql.aggregates): the window becomes a
struct column, here under a hidden name, and each auxiliary call is that struct's ``start``,
``end``, or ``end - 1 µs`` (``*_ROWTIME``: the window's last instant, the event time of the
output, so a window over it is on event time again). ``ts`` must be an event time column of
the input (plan.lineage.event_time_columns) or a ``PROCTIME()`` column (a processing-time
window); an auxiliary call must repeat the group window's arguments, as Flink requires.
"""

from __future__ import annotations

import pyarrow as pa
from sqlglot import exp

from caudal.errors import PlanError
from caudal.plan.expressions import Call, Column, Expr
from caudal.plan.lineage import event_time_columns, event_time_loss, last_instant
from caudal.plan.logical import LogicalNode
from caudal.plan.proctime import proctime_columns
from caudal.sql.scope import Scope, position
from caudal.sql.window_specs import GROUP_BY_WINDOWS, constant_interval
from caudal.types import TIMESTAMP

#: the hidden name of a legacy group window's struct column
GROUP_WINDOW_COLUMN = "__group_window"
_AUXILIARY = ("start", "end", "rowtime", "proctime")


def legacy_time_source(time_arg: exp.Expression, call: exp.Anonymous, node: LogicalNode,
                       scope: Scope) -> Expr | None:
    """The time the group window is on: an event time column, or None for a PROCTIME()
    column (processing time). Anything else is refused."""
    from caudal.sql.expressions import translate

    kind = str(call.this).upper()
    resolved = translate(time_arg, scope)
    ln, col = position(time_arg)
    if isinstance(resolved, Column) and resolved.name in proctime_columns(node):
        return None
    times = event_time_columns(node)
    if isinstance(resolved, Column) and resolved.name in times:
        return resolved
    text = time_arg.sql(dialect="postgres")
    if not times:
        loss = event_time_loss(node)
        raise PlanError(f"{kind}({text}, …) over an input without event time"
                        + (f": {loss}" if loss else ""), line=ln, col=col,
                        hint=f"declare WATERMARK FOR {text} AS {text} - INTERVAL '1' SECOND "
                             f"in the table, or window a PROCTIME() column")
    raise PlanError(f"{kind}({text}, …): {text} is not the event time of the input",
                    line=ln, col=col,
                    hint="group windows are on an event time column: "
                         + " or ".join(f"{kind}({c}, …)" for c in times))


def auxiliary_calls(nodes: list[exp.Expression]) -> list[exp.Anonymous]:
    """``TUMBLE_START(…)`` and the other auxiliary calls in the SELECT list and HAVING."""
    found = []
    for n in nodes:
        for sub in n.walk():
            if isinstance(sub, exp.Anonymous) and _split(sub) is not None:
                found.append(sub)
    return found


def _split(node: exp.Anonymous) -> tuple[str, str] | None:
    name = str(node.this).lower()
    kind, _, part = name.partition("_")
    if kind in GROUP_BY_WINDOWS and part in _AUXILIARY:
        return kind, part
    return None


def bind_auxiliary(calls: list[exp.Anonymous], window: exp.Anonymous | None,
                   time_source: Expr | None, struct: str, scope: Scope,
                   computed: dict[str, Expr]) -> None:
    """Register each auxiliary call as an expression over the window struct column, after
    checking it names the group window (``window``; None when there is no legacy one)."""
    from caudal.sql.expressions import translate

    window_type = pa.struct([pa.field("start", TIMESTAMP), pa.field("end", TIMESTAMP)])
    column = Column(window_type, struct)
    for aux in calls:
        kind, part = _split(aux)  # type: ignore[misc]
        ln, col = position(aux)
        name = str(aux.this).upper()
        if window is None:
            raise PlanError(f"{name} needs GROUP BY {kind.upper()}(ts, …)", line=ln, col=col,
                            hint=f"group by {kind.upper()}(ts, …) with the same arguments")
        group_kind = str(window.this).lower()
        same = kind == group_kind and len(aux.expressions) == len(window.expressions)
        if same:
            first = translate(aux.expressions[0], scope)
            group_first = translate(window.expressions[0], scope)
            same = isinstance(first, Column) and isinstance(group_first, Column) and \
                first.name == group_first.name
        if same:
            what = f"{name} argument"
            same = all(constant_interval(a, scope, what, positive=False) ==
                       constant_interval(b, scope, what, positive=False)
                       for a, b in zip(aux.expressions[1:], window.expressions[1:]))
        if not same:
            raise PlanError(f"{name} must repeat the arguments of GROUP BY "
                            f"{window.sql(dialect='postgres')}", line=ln, col=col,
                            hint=f"write {kind.upper()}_{part.upper()}"
                                 f"({', '.join(a.sql() for a in window.expressions)})"
                            if kind == group_kind else
                            f"use {group_kind.upper()}_START / _END / _ROWTIME")
        end = Call(TIMESTAMP, "struct_field", (column,), {"index": 1})
        if part == "start":
            expr: Expr = Call(TIMESTAMP, "struct_field", (column,), {"index": 0})
        elif part == "end":
            expr = end
        elif part == "rowtime" and time_source is not None:
            expr = last_instant(end)
        else:
            what = "a processing-time window" if part == "rowtime" else "caudal"
            raise PlanError(f"{name} is not supported by {what}", line=ln, col=col,
                            hint=f"{kind.upper()}_START and {kind.upper()}_END give the "
                                 f"window bounds")
        computed[aux.sql(dialect="postgres")] = expr


__all__ = ["GROUP_WINDOW_COLUMN", "auxiliary_calls", "bind_auxiliary", "legacy_time_source"]
