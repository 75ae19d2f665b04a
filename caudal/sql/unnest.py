"""UNNEST in SQL: Flink's ``FROM t CROSS JOIN UNNEST(t.arr) AS u(x)`` (also ``FROM t,
UNNEST(…)``) and Arroyo's / DuckDB's ``SELECT unnest(arr) FROM t`` (sqlglot calls it
Explode). Both plan to plan.unnest_node.Unnest over the FROM clause, before WHERE, so the
element is a column like any other.
"""

from __future__ import annotations

import pyarrow as pa
from sqlglot import exp

from caudal.errors import PlanError
from caudal.plan.expressions import Call, Column, Expr
from caudal.plan.functions.nested import ordinality_type
from caudal.plan.functions.registry import bind_call
from caudal.plan.logical import LogicalNode
from caudal.plan.unnest_node import row_fields, unnest_array
from caudal.sql.scope import Scope, ScopeColumn, position

_HINT = "CROSS JOIN UNNEST(t.arr) AS u(x), or SELECT unnest(arr) FROM t"


def standalone_unnest(select: exp.Select) -> tuple[exp.Select, bool]:
    """``FROM UNNEST(ARRAY[…]) AS u(x)`` (Flink, DuckDB) as ``FROM <one row> CROSS JOIN
    UNNEST(…)``, and whether it was one (the one row's column is then dropped)."""
    key = "from_" if select.args.get("from_") is not None else "from"
    from_ = select.args.get(key)
    if from_ is None or not isinstance(from_.this, exp.Unnest):
        return select, False
    column = next(iter(from_.this.find_all(exp.Column)), None)
    if column is not None:  # (it would be looked up among the one row's hidden columns)
        ln, col = position(column)
        raise PlanError(f"UNNEST alone in FROM takes an array value, not a column "
                        f"({column.sql()})", line=ln, col=col, hint=_HINT)
    from caudal.sql.values import ONE_ROW

    out = select.copy()
    out.set(key, exp.From(this=ONE_ROW.copy()))
    out.set("joins", [exp.Join(this=from_.this.copy(), kind="CROSS"),
                      *(j.copy() for j in select.args.get("joins") or [])])
    return out, True


def split_unnest_joins(select: exp.Select) -> tuple[exp.Select, list[exp.Join]]:
    """``select`` without its UNNEST joins (they are planned by ``apply_unnest_joins``),
    and those joins. They must follow the table joins."""
    joins = select.args.get("joins") or []
    unnests = [j for j in joins if isinstance(j.this, exp.Unnest)]
    if not unnests:
        return select, []
    first = joins.index(unnests[0])
    if any(not isinstance(j.this, exp.Unnest) for j in joins[first:]):
        ln, col = position(unnests[0])
        raise PlanError("UNNEST must come after the tables it reads", line=ln, col=col,
                        hint=_HINT)
    for join in unnests:
        kind = (join.args.get("kind") or "").upper()
        side = (join.args.get("side") or "").upper()
        on = join.args.get("on")
        left = side == "LEFT" and kind in ("", "OUTER") and on == exp.true()
        if not left and (side or kind not in ("", "CROSS") or on is not None):
            ln, col = position(join.this)
            raise PlanError("only CROSS JOIN UNNEST(…) and LEFT JOIN UNNEST(…) ON TRUE are "
                            "supported", line=ln, col=col, hint=_HINT)
    rest = select.copy()
    rest.set("joins", [j.copy() for j in joins[:first]] or None)
    return rest, unnests


def _unnest(node: LogicalNode, arr: Expr, what: exp.Expression, index: int,
            outer: bool = False) -> tuple[LogicalNode, str, pa.DataType]:
    ln, col = position(what)
    return unnest_array(node, arr, index, ln, col, _HINT, outer)


def apply_unnest_joins(node: LogicalNode, scope: Scope, joins: list[exp.Join]
                       ) -> tuple[LogicalNode, Scope]:
    from caudal.sql.expressions import translate

    if node.updating:
        ln, col = position(joins[0].this)
        raise PlanError("UNNEST over an updating input is not supported", line=ln, col=col)
    columns = list(scope.columns)
    for join in joins:
        call = join.this
        if len(call.expressions) != 1:
            ln, col = position(call)
            raise PlanError("UNNEST takes one array", line=ln, col=col, hint=_HINT)
        arr = translate(call.expressions[0], Scope(columns=columns, computed=scope.computed))
        if pa.types.is_map(arr.dtype):  # Flink: UNNEST(map) AS u(k, v), one row per entry
            arr = bind_call("map_entries", [arr])
        alias = call.args.get("alias")
        relation = alias.name if alias is not None and alias.name else None
        names = [c.name for c in alias.columns] if alias is not None else []
        ordinality = call.args.get("offset")
        if ordinality and pa.types.is_list(arr.dtype):
            # WITH ORDINALITY (sqlglot holds the alias's last name apart): the elements as
            # ROWs of the element (its fields, when the alias names them) and the position
            spread = pa.types.is_struct(arr.dtype.value_type) and len(names) > 1
            arr = Call(ordinality_type(arr.dtype, spread), "with_ordinality", (arr,),
                       {"spread": spread})
            names = (names or [relation or "unnest"]) + [
                ordinality.name if isinstance(ordinality, exp.Expression) else "ordinality"]
        outer = (join.args.get("side") or "").upper() == "LEFT"
        node, element, dtype = _unnest(node, arr, call, len(columns), outer)
        if len(names) > 1:  # Flink: an array of ROWs unnests into one column per field
            node = row_fields(node, element, dtype, names, *position(call))
            columns.extend(ScopeColumn(relation, n, dtype.field(j).type, f"{element}_{j}")
                           for j, n in enumerate(names))
            continue
        name = names[0] if names else (relation or "unnest")
        columns.append(ScopeColumn(relation, name, dtype, element))
    return node, Scope(columns=columns, computed=dict(scope.computed))


def plan_select_unnest(items: list[exp.Expression], node: LogicalNode, scope: Scope
                       ) -> tuple[list[exp.Expression], LogicalNode, Scope]:
    """``SELECT …, unnest(arr), …``: the Unnest below the projection, the call read as the
    element column (named ``unnest`` unless aliased)."""
    from caudal.sql.expressions import translate

    calls = [sub for item in items for sub in item.walk() if isinstance(sub, exp.Explode)]
    if not calls:
        return items, node, scope
    texts = {c.sql(dialect="postgres") for c in calls}
    if len(texts) > 1:
        ln, col = position(calls[1])
        raise PlanError("one unnest() per SELECT is supported", line=ln, col=col,
                        hint="CROSS JOIN UNNEST(a) AS u(x) CROSS JOIN UNNEST(b) AS v(y)")
    if node.updating:
        ln, col = position(calls[0])
        raise PlanError("unnest() over an updating input is not supported", line=ln, col=col)
    call = calls[0]
    arr = translate(call.this, scope)
    node, element, dtype = _unnest(node, arr, call, len(scope.columns))
    computed = dict(scope.computed)
    computed[call.sql(dialect="postgres")] = Column(dtype, element)
    out = [exp.alias_(item, "unnest") if isinstance(item, exp.Explode) else item
           for item in items]
    return out, node, Scope(columns=list(scope.columns), computed=computed)
