"""GROUP BY GROUPING SETS / ROLLUP / CUBE, with GROUPING() and GROUPING_ID().

Planned as the UNION ALL of one ordinary GROUP BY per grouping set (sql.set_operations),
each planned by the usual aggregate planning, so every kind of GROUP BY works: updating
aggregates, window table functions (``GROUP BY window_start, window_end, GROUPING SETS
(…)``), Arroyo's window functions. In the query of one set, the grouped expressions that
the set leaves out are NULL in the SELECT list and HAVING (outside aggregate calls, whose
arguments read the input rows), and ``GROUPING(a, b)`` / ``GROUPING_ID(a, b)`` is the
constant bit mask of the left-out arguments (first argument most significant), as in
PostgreSQL and Flink. The input is planned (and read) once per grouping set.

``ROLLUP (a, b)`` is the sets (a, b), (a), (); ``CUBE (a, b)`` every subset; several items
in GROUP BY combine as a cross product (plain items are in every set).
"""

from __future__ import annotations

import itertools

import pyarrow as pa
from sqlglot import exp

from caudal.errors import PlanError
from caudal.plan.logical import LogicalNode
from caudal.plan.set_nodes import Union
from caudal.sql.scope import Scope, position

_SETS = (exp.GroupingSets, exp.Rollup, exp.Cube)
#: more grouping sets than this is refused (each one is an aggregate of its own)
MAX_SETS = 64


def has_grouping_sets(select: exp.Select) -> bool:
    """GROUPING SETS, ROLLUP or CUBE in GROUP BY, or GROUPING()/GROUPING_ID() over a plain
    GROUP BY (one grouping set, where they are 0)."""
    group = select.args.get("group")
    if group is None:
        return False
    return any(isinstance(i, _SETS) for i in group.expressions) or any(
        group.args.get(k) for k in ("grouping_sets", "rollup", "cube")) or any(
        e.find(exp.Grouping, exp.GroupingId) is not None
        for e in [*select.expressions, select.args.get("having")] if e is not None)


def _members(node: exp.Expression) -> list[exp.Expression]:
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Tuple):
        return list(node.expressions)
    return [node]


def _sets_of(item: exp.Expression) -> list[list[exp.Expression]]:
    """The grouping sets one GROUP BY item stands for."""
    if isinstance(item, exp.GroupingSets):
        out: list[list[exp.Expression]] = []
        for element in item.expressions:
            if isinstance(element, (exp.Rollup, exp.Cube, exp.GroupingSets)):
                out.extend(_sets_of(element))
            else:
                out.append(_members(element))
        return out
    if isinstance(item, exp.Rollup):
        parts = [_members(e) for e in item.expressions]
        return [[m for p in parts[:k] for m in p] for k in range(len(parts), -1, -1)]
    if isinstance(item, exp.Cube):
        parts = [_members(e) for e in item.expressions]
        out = []
        for keep in itertools.product((True, False), repeat=len(parts)):
            out.append([m for p, k in zip(parts, keep) if k for m in p])
        return out
    return [[item]]


def grouping_sets(select: exp.Select) -> list[list[exp.Expression]]:
    group = select.args["group"]
    items = list(group.expressions)
    for key in ("grouping_sets", "rollup", "cube"):
        extra = group.args.get(key)
        if extra:
            items.extend(extra if isinstance(extra, list) else [extra])
    sets: list[list[exp.Expression]] = [[]]
    for item in items:
        sets = [s + t for s in sets for t in _sets_of(item)]
        if len(sets) > MAX_SETS:
            ln, col = position(group)
            raise PlanError(f"GROUP BY expands to more than {MAX_SETS} grouping sets",
                            line=ln, col=col, hint="list the sets you need with GROUPING SETS")
    return sets


def _key(node: exp.Expression) -> str:
    return node.sql(dialect="postgres")


def _rewrite(node: exp.Expression, grouped: dict[str, exp.Expression], present: set[str],
             top: bool) -> exp.Expression:
    """``node`` for one grouping set: left-out grouped expressions become NULL and
    GROUPING(…) its constant."""
    from caudal.sql.select_items import is_aggregate, output_name

    def visit(n: exp.Expression) -> exp.Expression:
        if isinstance(n, (exp.Grouping, exp.GroupingId)) or (
                isinstance(n, exp.Anonymous) and n.name.lower() in ("grouping",
                                                                     "grouping_id")):
            mask = 0
            for arg in n.expressions:
                if _key(arg) not in grouped:
                    ln, col = position(arg)
                    raise PlanError(f"GROUPING() argument {arg.sql()} is not a GROUP BY "
                                    "expression", line=ln, col=col,
                                    hint="name one of the grouped columns or expressions")
                mask = mask * 2 + (0 if _key(arg) in present else 1)
            return exp.Literal.number(mask)
        if isinstance(n, exp.Window) or is_aggregate(n) or (
                isinstance(n, exp.Filter) and is_aggregate(n.this)):
            return n  # aggregate arguments read input rows, not keys
        text = _key(n)
        if text in grouped and text not in present and not isinstance(n, exp.Alias):
            return exp.Null()
        for name, value in list(n.args.items()):
            if isinstance(value, exp.Expression):
                n.set(name, visit(value))
            elif isinstance(value, list):
                n.set(name, [visit(v) if isinstance(v, exp.Expression) else v
                             for v in value])
        return n

    copy = node.copy()
    result = visit(copy)
    if top and not isinstance(node, exp.Alias) and _key(result) != _key(node):
        result = exp.alias_(result, output_name(node))  # the column keeps its name
    return result


def _from_scope(planner, select: exp.Select) -> Scope:
    """The scope of the columns the FROM clause (and its joins) gives the query."""
    branch = select.copy()
    if branch.args.get("joins"):
        from caudal.sql.joins import plan_joins

        return plan_joins(planner, branch)[1]
    from_ = branch.args.get("from_") or branch.args.get("from")
    return planner.plan_from(from_.this)[1]


def _unqualified(select: exp.Select, scope: Scope) -> exp.Select:
    """``select`` with ``relation.name`` written ``name`` in its SELECT items, GROUP BY and
    HAVING (not in subqueries) where no other input column has that name, so the grouping
    sets match a column however it is written (``GROUP BY e.gender … HAVING gender``)."""
    names: dict[str, int] = {}
    for c in scope.columns:
        names[c.name.lower()] = names.get(c.name.lower(), 0) + 1
    relations = {c.relation.lower() for c in scope.columns if c.relation}
    out = select.copy()
    parts = [*out.expressions, out.args.get("group"), out.args.get("having")]
    for part in parts:
        if part is None:
            continue
        for node in list(part.walk(prune=lambda n: isinstance(n, (exp.Subquery, exp.Select)))):
            if isinstance(node, exp.Column) and node.table and \
                    node.table.lower() in relations and names.get(node.name.lower()) == 1:
                node.set("table", None)
    return out


def _one_row(planner, branch: exp.Select) -> tuple[LogicalNode, Scope]:
    """The empty grouping set of a SELECT list without aggregates: one row (the grouped
    items' NULLs and constants), planned with a hidden count(*) that is then dropped."""
    from caudal.plan.expressions import Column
    from caudal.plan.logical import Project

    counted = branch.copy()
    counted.set("expressions", [*counted.expressions,
                                exp.alias_(exp.Count(this=exp.Star()), "_gs_rows")])
    node, scope = planner.plan_select(counted)
    fields = pa.schema(list(node.schema)[:-1])
    if isinstance(node, Project):  # its NULLs stay literals, typed by the other sets
        dropped = Project(fields, node.time_column, input=node.input, exprs=node.exprs[:-1])
    else:
        dropped = Project(fields, node.time_column, input=node,
                          exprs=[Column(f.type, f.name) for f in fields])
    return dropped, Scope(columns=scope.columns[:-1], computed=scope.computed)


def plan_grouping_sets(planner, select: exp.Select) -> tuple[LogicalNode, Scope]:
    from caudal.sql.select_items import contains_aggregate
    from caudal.sql.set_operations import unify

    from_ = select.args.get("from_") or select.args.get("from")
    inputs = _from_scope(planner, select) if from_ is not None else None
    if inputs is not None:
        select = _unqualified(select, inputs)
    sets = grouping_sets(select)
    grouped: dict[str, exp.Expression] = {}
    for s in sets:
        for e in s:
            grouped.setdefault(_key(e), e)
    # a SELECT alias used as a grouping item stands for its expression, unless an input
    # column has that name (which wins, as in PostgreSQL and DuckDB)
    aliases = {i.alias.lower(): i.this for i in select.expressions if isinstance(i, exp.Alias)}
    if inputs is not None:
        columns = {c.name.lower() for c in inputs.columns}
        aliases = {a: e for a, e in aliases.items() if a not in columns}
    for e in list(grouped.values()):
        if isinstance(e, exp.Column) and not e.table and e.name.lower() in aliases:
            grouped.setdefault(_key(aliases[e.name.lower()]), aliases[e.name.lower()])
    planned: list[tuple[LogicalNode, Scope]] = []
    for s in sets:
        present = {_key(e) for e in s}
        for e in s:  # an alias in the set makes its expression present, and back
            if isinstance(e, exp.Column) and not e.table and e.name.lower() in aliases:
                present.add(_key(aliases[e.name.lower()]))
        for alias, target in aliases.items():
            if _key(target) in present:
                present.add(_key(exp.column(alias)))
        branch = select.copy()
        branch.set("expressions", [_rewrite(i, grouped, present, True)
                                   for i in select.expressions])
        having = select.args.get("having")
        if having is not None:
            branch.set("having", exp.Having(this=_rewrite(having.this, grouped, present,
                                                          False)))
        branch.set("group", exp.Group(expressions=[e.copy() for e in s]) if s else None)
        if not s and not any(contains_aggregate(e) for e in branch.expressions):
            planned.append(_one_row(planner, branch))
            continue
        planned.append(planner.plan_select(branch))
    first, first_scope = planned[0]
    first, rest, scope = unify(first, first_scope, [p for p, _ in planned[1:]], select)
    if not rest:
        return first, scope
    return Union(first.schema, first.time_column, inputs=[first, *rest]), scope


__all__ = ["has_grouping_sets", "plan_grouping_sets", "grouping_sets"]
