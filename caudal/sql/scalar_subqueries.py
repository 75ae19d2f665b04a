"""Scalar subqueries: ``WHERE price > (SELECT avg(price) FROM bids)`` and
``SELECT price - (SELECT min(price) FROM bids) …``.

A scalar subquery is a query of one column and at most one row; caudal accepts the ones that
are sure to be so: an aggregate without GROUP BY (its HAVING may leave no row: the value is
then NULL, as in SQL). It is planned as ``LEFT JOIN (subquery) ON TRUE`` of the query's FROM,
and the subquery is replaced by the joined column. Its single row lives on one subtask and
every row of the outer query is kept in state, because a new value of the aggregate revises
every result row (the result is a changelog, as in Flink). In a GROUP BY query the value
joins the group keys (it is the same for every row), so the groups are revised with it; an
aggregate query without GROUP BY cannot take one (write the subquery in a derived table).
Correlated scalar subqueries are refused (a JOIN and a GROUP BY say the same).
"""

from __future__ import annotations

from sqlglot import exp

from caudal.errors import PlanError
from caudal.sql.scope import position

_PARTS = ("expressions", "where", "having")


def _scalars(node: exp.Expression) -> list[exp.Subquery]:
    """Scalar subqueries of this query level (not inside nested queries, not IN / EXISTS)."""
    out = []
    stack = [node]
    while stack:
        n = stack.pop()
        for child in n.iter_expressions():
            if isinstance(child, exp.Subquery):
                parent = child.parent
                if not (isinstance(parent, exp.In) and parent.args.get("query") is child
                        or isinstance(parent, exp.Any | exp.All)):
                    out.append(child)
                continue
            if isinstance(child, (exp.Select, exp.Exists)):
                continue
            stack.append(child)
    return out


def join_scalar_subqueries(planner, select: exp.Select) -> exp.Select:
    """``select`` with each scalar subquery replaced by a column of a LEFT JOIN … ON TRUE
    (a copy when there is any)."""
    found = [s for part in _PARTS
             for node in ([select.args[part]] if isinstance(select.args.get(part),
                                                            exp.Expression)
                          else select.args.get(part) or [])
             for s in _scalars(node)]
    if not found:
        return select
    from caudal.sql.select_items import contains_aggregate

    ln, col = position(found[0])
    from_ = select.args.get("from_") or select.args.get("from")
    if from_ is None:
        raise PlanError("a scalar subquery needs a FROM clause in the query around it",
                        line=ln, col=col)
    grouped = select.args.get("group") is not None
    select = select.copy()
    found = [s for part in _PARTS
             for node in ([select.args[part]] if isinstance(select.args.get(part),
                                                            exp.Expression)
                          else select.args.get(part) or [])
             for s in _scalars(node)]
    for i, sub in enumerate(found):
        sl, sc = position(sub)
        try:
            plan, scope = planner.plan_query(sub.this)
        except PlanError as e:
            if "unknown column" in e.message:
                raise PlanError("correlated scalar subqueries are not supported", line=sl,
                                col=sc, hint="join the table and GROUP BY instead") from None
            raise
        if len(plan.schema) != 1:
            raise PlanError(f"a scalar subquery must give one column, not "
                            f"{len(plan.schema)}", line=sl, col=sc)
        # here, not at the top: a query without scalar subqueries never loads join planning
        from caudal.plan.join_planning import single_row

        if not single_row(plan):
            raise PlanError("a scalar subquery must give at most one row", line=sl, col=sc,
                            hint="an aggregate without GROUP BY: (SELECT max(x) FROM t)")
        alias = f"__scalar{i}"
        name = scope.columns[0].name
        derived = exp.Subquery(this=sub.this.copy(),
                               alias=exp.TableAlias(this=exp.to_identifier(alias)))
        select.append("joins", exp.Join(this=derived, side="LEFT", on=exp.true()))
        column = exp.column(name, table=alias)
        sub.replace(column.copy())
        if grouped:
            select.args["group"].append("expressions", column.copy())
    if not grouped and any(contains_aggregate(e) for e in select.expressions):
        raise PlanError("a scalar subquery in an aggregate query without GROUP BY is not "
                        "supported", line=ln, col=col,
                        hint="compute the aggregate in a derived table: SELECT a, (SELECT …) "
                             "FROM (SELECT count(*) AS a FROM t)")
    return select


__all__ = ["join_scalar_subqueries"]
