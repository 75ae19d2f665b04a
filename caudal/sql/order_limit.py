"""ORDER BY, LIMIT and OFFSET of a query (a SELECT or a set operation).

Which plan a query gets (plan.limit_nodes, plan.over_nodes):

=========================  ================================  ===============================
query                      bounded input                     unbounded input
=========================  ================================  ===============================
LIMIT n (no ORDER BY)      ``Limit``: the first n rows that  same; over a changelog refused
                           arrive (append-only input), or    (say which rows: ORDER BY)
                           ``SortLimit`` over a changelog
ORDER BY … [LIMIT n]       ``SortLimit``: sorted once the    ``LIMIT n``: a top-N
                           input ended (Flink batch)         (``UpdatingRank``), a changelog;
                                                             no LIMIT: ``TimeSort`` when the
                                                             first key is the event time,
                                                             ascending; else refused
=========================  ================================  ===============================

ORDER BY items name output columns (by name or alias, by position ``ORDER BY 2``, or as
the same expression as a SELECT item); any other expression of a plain SELECT is computed as
a hidden column and dropped after sorting. NULLs sort as in PostgreSQL (last ascending,
first descending) unless NULLS FIRST / LAST says otherwise.
"""

from __future__ import annotations

import pyarrow as pa
from sqlglot import exp

from caudal.errors import PlanError, names_hint
from caudal.plan.expressions import Column
from caudal.plan.limit_nodes import Limit, SortLimit, TimeSort
from caudal.plan.logical import LogicalNode, Project, Scan
from caudal.plan.proctime import proctime_columns
from caudal.sql.scope import Scope, negative_ordinal, position
from caudal.sql.settings import flush_setting

_HIDDEN = "__order"


def has_order_or_limit(node: exp.Expression) -> bool:
    return any(node.args.get(a) is not None for a in ("order", "limit", "offset"))


def _count(node: exp.Expression | None, what: str) -> int | None:
    if node is None:
        return None
    if isinstance(node, exp.Fetch):  # FETCH FIRST n ROWS ONLY (standard SQL, Flink)
        options = node.args.get("limit_options")
        if options is not None and (options.args.get("percent")
                                    or options.args.get("with_ties")):
            ln, col = position(node)
            raise PlanError("FETCH … PERCENT / WITH TIES is not supported", line=ln,
                            col=col, hint="FETCH FIRST n ROWS ONLY, or LIMIT n")
        value = node.args.get("count")
        if value is None:
            return 1
    else:
        value = node.args.get("expression") or node.this
    if isinstance(value, exp.Literal) and not value.is_string and value.this.isdigit():
        return int(value.this)
    ln, col = position(node)
    raise PlanError(f"{what} takes a whole number of rows", line=ln, col=col,
                    hint=f"e.g. {what} 10")


def plan_order_limit(planner, node: exp.Select | exp.SetOperation
                     ) -> tuple[LogicalNode, Scope]:
    query = node.copy()
    order = query.args.get("order")
    limit = _count(query.args.get("limit"), "LIMIT")
    offset = _count(query.args.get("offset"), "OFFSET") or 0
    for a in ("order", "limit", "offset"):
        query.set(a, None)
    items = list(order.expressions) if order is not None else []

    # ORDER BY expressions that are no output column: hidden SELECT items
    refs: list[tuple[str, object]] = []  # ("ordinal", k) | ("name", text) | ("hidden", name)
    for i, o in enumerate(items):
        inner = o.this if isinstance(o, exp.Ordered) else o
        refs.append(_reference(query, inner, i))
    if any(kind == "hidden" for kind, _ in refs):
        for (kind, name), o in zip(refs, items):
            if kind == "hidden":
                inner = o.this if isinstance(o, exp.Ordered) else o
                query.append("expressions", exp.alias_(inner.copy(), str(name)))

    plan, scope = planner.plan_query(query)
    visible = [c for c in scope.columns if not c.name.startswith(_HIDDEN)]
    order_spec: list[tuple[str, bool, bool]] = []
    for (kind, value), o in zip(refs, items):
        desc = bool(o.args.get("desc")) if isinstance(o, exp.Ordered) else False
        nulls_first = bool(o.args.get("nulls_first")) if isinstance(o, exp.Ordered) else False
        order_spec.append((_column_of(kind, value, scope, visible, o), desc, nulls_first))

    ln, col = position(order if order is not None else
                       query.args.get("limit") or node.args.get("limit") or node)
    bounded = _bounded(plan)
    updating = plan.updating
    # ORDER BY processing time DESC: rows read at once share it; the later one comes first
    later = bool(order_spec) and order_spec[0][1] and order_spec[0][0] in proctime_columns(plan)
    if not order_spec:
        if not updating:
            result: LogicalNode = Limit(plan.schema, plan.time_column, input=plan, limit=limit,
                                        offset=offset)
        elif bounded:
            result = SortLimit(plan.schema, None, input=plan, limit=limit, offset=offset)
        else:
            raise PlanError("LIMIT without ORDER BY over an updating result is not "
                            "supported", line=ln, col=col,
                            hint="say which rows to keep: ORDER BY … LIMIT n (a top-N)")
    elif bounded:
        result = SortLimit(plan.schema, None, input=plan, order=order_spec, limit=limit,
                           offset=offset, later_ties=later)
    elif not updating and plan.time_column and order_spec[0][0] == plan.time_column and \
            not order_spec[0][1]:
        # ORDER BY the event time: rows leave sorted as the watermark passes them, so a
        # LIMIT above keeps the first rows in that order (and may end the job)
        result = TimeSort(plan.schema, plan.time_column, input=plan, order=order_spec)
        if limit is not None or offset:
            result = Limit(result.schema, result.time_column, input=result, limit=limit,
                           offset=offset)
    elif limit is None:
        raise PlanError("ORDER BY over an unbounded input needs LIMIT (the sort would "
                        "never end), or its event time first, ascending", line=ln, col=col,
                        hint="ORDER BY … LIMIT n keeps the top n rows as a changelog; "
                             "ORDER BY <event time> [, …] sorts as the watermark passes; or "
                             "rank per window: ROW_NUMBER() OVER (PARTITION BY window_start,"
                             " window_end ORDER BY …)")
    else:
        from caudal.plan.over_planning import top_n

        result = top_n(plan, order_spec, limit, offset,
                       flush_setting(planner.catalog.settings), (ln, col), later)

    hidden = [n for n in result.schema.names if n.startswith(_HIDDEN) or n == "__rank"]
    if hidden:
        keep = [f for f in result.schema if f.name not in hidden]
        result = Project(pa.schema(keep), result.time_column, input=result,
                         exprs=[Column(f.type, f.name) for f in keep])
    return result, Scope(columns=visible)


def _reference(query: exp.Expression, inner: exp.Expression, i: int) -> tuple[str, object]:
    if isinstance(inner, exp.Literal) and not inner.is_string and inner.this.isdigit():
        return "ordinal", int(inner.this)
    if negative_ordinal(inner) is not None:  # a position out of range, not a constant
        return "ordinal", negative_ordinal(inner)
    if not isinstance(query, exp.Select):
        if isinstance(inner, exp.Column) and not inner.table:
            return "name", inner.name
        ln, col = position(inner)
        raise PlanError("ORDER BY of a UNION / INTERSECT / EXCEPT names output columns",
                        line=ln, col=col, hint="ORDER BY a column name or position")
    from caudal.sql.select_items import output_name

    star = any(isinstance(e, exp.Star) or (isinstance(e, exp.Column)
                                           and isinstance(e.this, exp.Star))
               for e in query.expressions)
    text = inner.sql(dialect="postgres")
    for item in query.expressions:
        expr = item.this if isinstance(item, exp.Alias) else item
        if expr.sql(dialect="postgres") == text:
            return "name", output_name(item)
    if isinstance(inner, exp.Column) and not inner.table:
        names = [output_name(e).lower() for e in query.expressions]
        if star or inner.name.lower() in names:
            return "name", inner.name
    if query.args.get("distinct") is not None:
        ln, col = position(inner)
        raise PlanError("with SELECT DISTINCT, ORDER BY expressions must appear in the "
                        "SELECT list", line=ln, col=col, hint="add it to the SELECT list")
    return "hidden", f"{_HIDDEN}{i}"


def _column_of(kind: str, value, scope: Scope, visible, node: exp.Expression) -> str:
    ln, col = position(node)
    if kind == "ordinal":
        if not 1 <= value <= len(visible):
            raise PlanError(f"ORDER BY position {value} is not in the SELECT list "
                            f"(1 to {len(visible)})", line=ln, col=col)
        return visible[value - 1].physical
    matches = [c for c in scope.columns if c.name.lower() == str(value).lower()]
    if len(matches) != 1:
        raise PlanError(f"ORDER BY {value}: {'no' if not matches else 'more than one'} "
                        f"output column of that name", line=ln, col=col,
                        hint=names_hint(str(value), [c.name for c in visible],
                                        "output columns"))
    return matches[0].physical


def _bounded(node: LogicalNode) -> bool:
    """True when every source under ``node`` ends by itself (files, generators with a
    count of events)."""
    from caudal.connectors.registry import source_class

    stack = [node]
    while stack:
        n = stack.pop()
        stack.extend(n.children())
        if isinstance(n, Scan):
            cls = source_class(n.table)
            if not getattr(cls, "bounded", True):
                return False
            try:
                if not cls(n.table).bounded:
                    return False
            except Exception:  # noqa: BLE001 - unknown: treat as unbounded (a top-N)
                return False
    return True


__all__ = ["plan_order_limit", "has_order_or_limit"]
