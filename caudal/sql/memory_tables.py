"""Memory tables (Arroyo): a ``CREATE TABLE t (cols…)`` without WITH options is a table that
lives inside the job. ``INSERT INTO t SELECT …`` writes it and ``SELECT … FROM t`` reads it:
the rows of every INSERT into ``t`` (their union, when there are several) flow to each
reader, as if ``t`` were a view over ``INSERT_1 UNION ALL INSERT_2 …`` conformed to ``t``'s
declared columns. Each reader plans the INSERT queries anew (like a view), so no plan node is
shared between outputs; an INSERT into a memory table is not an output of its own.

A memory table's event time is the one the writing queries carry through (a WATERMARK clause
on it is refused: nothing reads it from outside).
"""

from __future__ import annotations

import pyarrow as pa
from sqlglot import exp

from caudal.errors import PlanError
from caudal.plan.logical import LogicalNode, Project
from caudal.plan.tables import TableSpec
from caudal.sql.scope import Scope, ScopeColumn, position


def inserts_by_table(nodes: list[exp.Expression]) -> dict[str, list[exp.Insert]]:
    """Every ``INSERT INTO`` of a script by target table (lower-cased name), in order."""
    out: dict[str, list[exp.Insert]] = {}
    for node in nodes:
        if isinstance(node, exp.Insert):
            target = node.this.this if isinstance(node.this, exp.Schema) else node.this
            out.setdefault(target.name.lower(), []).append(node)
    return out


def plan_write(planner, spec: TableSpec, node: exp.Insert) -> LogicalNode:
    """One INSERT's query, conformed to the memory table's declared columns (keeping the
    event time column when it is one of them)."""
    columns = [c.name for c in node.this.expressions] if isinstance(node.this, exp.Schema) \
        else None
    plan, _ = planner.plan_query(node.expression)
    conformed = planner._conform_to_sink(plan, spec, columns, node)
    if conformed is plan or not isinstance(conformed, Project):
        return conformed
    if plan.time_column is not None and plan.time_column in plan.schema.names:
        i = plan.schema.names.index(plan.time_column)
        if pa.types.is_timestamp(conformed.schema.field(i).type):
            conformed.time_column = conformed.schema.names[i]
    # INSERT INTO t (a, b): the table's declared column order
    if spec.schema is not None and columns is not None:
        order = [conformed.schema.names.index(n) for n in spec.schema.names
                 if n in conformed.schema.names]
        if len(order) != len(spec.schema):
            ln, col = position(node)
            raise PlanError(f"INSERT INTO memory table {spec.name} must give every column",
                            line=ln, col=col, hint="columns: " + ", ".join(spec.schema.names))
        conformed.exprs = [conformed.exprs[i] for i in order]
        conformed.schema = pa.schema([conformed.schema.field(i) for i in order])
    return conformed


def read(planner, spec: TableSpec, relation: str,
         source: exp.Expression) -> tuple[LogicalNode, Scope]:
    """What ``FROM t`` reads for memory table ``t``: the union of its INSERTs."""
    key = spec.name.lower()
    writes = planner.memory_inserts.get(key, [])
    ln, col = position(source)
    if not writes:
        raise PlanError(f"memory table {spec.name!r} is read but nothing writes it", line=ln,
                        col=col, hint=f"add INSERT INTO {spec.name} SELECT …, or give the "
                                      "table a connector: WITH (connector = …)")
    if key in planner.expanding:
        raise PlanError(f"memory table {spec.name!r} is written from itself", line=ln,
                        col=col, hint="a memory table's INSERT cannot read the same table")
    planner.expanding.add(key)
    try:
        plans = [plan_write(planner, spec, w) for w in writes]
    finally:
        planner.expanding.discard(key)
    if len(plans) == 1:
        node = plans[0]
    else:
        from caudal.plan.set_nodes import Union
        from caudal.sql.set_operations import unify

        first_scope = Scope(columns=[ScopeColumn(None, f.name, f.type, f.name)
                                     for f in plans[0].schema])
        first, rest, _ = unify(plans[0], first_scope, plans[1:], writes[0])
        node = Union(first.schema, first.time_column, inputs=[first, *rest])
    scope = Scope(columns=[ScopeColumn(relation, f.name, f.type, f.name)
                           for f in node.schema])
    return node, scope
