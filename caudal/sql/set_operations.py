"""Set operations: ``UNION ALL``, ``UNION``, ``INTERSECT`` and ``EXCEPT`` between queries.

* ``UNION ALL`` of any number of inputs is one ``Union`` node (plan.set_nodes). Columns
  match by position: the output takes the first input's names, and each column the type
  all inputs' values meet in (PostgreSQL's rules, plan.functions.coerce: integers widen,
  numbers meet as decimal or float, dates meet timestamps); each input is projected to
  those names and types below the union. An event time column stays the time attribute when
  every input has its time attribute at the same position (as in Flink).
* ``UNION`` (distinct) is the same union under an updating aggregate keyed by every column,
  with no aggregate: a row is emitted when its first copy arrives and, over a changelog,
  retracted when its last copy is retracted. Over append-only inputs the result only
  appends (Flink's UNION over an append stream gives the first occurrences).
  ``A UNION ALL B UNION C`` is ``(A UNION ALL B) UNION C``: nested unions under a distinct
  one fold into it (the distinct rows of all inputs).
* ``INTERSECT`` / ``EXCEPT`` (distinct) are a semi / anti join of the left input's distinct
  rows with the right input on every column, NULL matching NULL (as set operations compare
  rows). INTERSECT over append-only inputs only appends; EXCEPT is updating (a row leaves
  the result when the right input gets it). ``INTERSECT ALL`` / ``EXCEPT ALL`` count each
  row's copies on both sides (``_multiset``) and are updating.
"""

from __future__ import annotations

import pyarrow as pa
from sqlglot import exp

from caudal.errors import PlanError
from caudal.plan.aggregate_planning import distinct_rows as plan_distinct_rows
from caudal.plan.aggregate_planning import group_key, refuse_nested_rows
from caudal.plan.aggregates import AggCall
from caudal.plan.expressions import Column, Expr, Literal
from caudal.plan.functions.coerce import cast, common_type
from caudal.plan.functions.registry import BindError, bind_call
from caudal.plan.join_planning import set_membership
from caudal.plan.logical import LogicalNode, Project
from caudal.plan.optimizer import substitute
from caudal.plan.set_nodes import Union
from caudal.plan.unnest_node import unnest_array
from caudal.plan.updating_nodes import UpdatingAggregate
from caudal.sql.scope import Scope, ScopeColumn, position
from caudal.sql.settings import duration_setting, flush_setting


def _name(node: exp.SetOperation) -> str:
    kind = {exp.Union: "UNION", exp.Intersect: "INTERSECT", exp.Except: "EXCEPT"}.get(
        type(node), "UNION")
    return kind + ("" if node.args.get("distinct") else " ALL")


def _plain(node: exp.Expression) -> bool:
    """A set operation without ORDER BY / LIMIT of its own (it may fold into its parent)."""
    return not any(node.args.get(a) is not None for a in ("order", "limit", "offset"))


def _union_inputs(node: exp.Expression, distinct: bool) -> list[exp.Expression]:
    """The operands of a chain of unions that fold into one: UNION ALL under UNION ALL,
    any union under a distinct UNION."""
    if isinstance(node, exp.Union) and _plain(node) and (
            distinct or not node.args.get("distinct")):
        return _union_inputs(node.this, distinct) + _union_inputs(node.expression, distinct)
    return [node]


def plan_set_operation(planner, node: exp.SetOperation) -> tuple[LogicalNode, Scope]:
    distinct = bool(node.args.get("distinct"))
    if isinstance(node, (exp.Intersect, exp.Except)):
        left, left_scope = planner.plan_query(node.this)
        right, _ = planner.plan_query(node.expression)
        left, rest, scope = unify(left, left_scope, [right], node)
        if not distinct:
            return _multiset(planner, left, rest[0], isinstance(node, exp.Except)), scope
        ln, col = position(node)
        ttl = duration_setting(planner.catalog.settings, "updating_ttl", None)
        return set_membership(distinct_rows(planner, left), rest[0],
                              isinstance(node, exp.Except), ttl, ln, col), scope
    operands = _union_inputs(node.this, distinct) + _union_inputs(node.expression, distinct)
    planned = [planner.plan_query(o) for o in operands]
    first, first_scope = planned[0]
    first, rest, scope = unify(first, first_scope, [p for p, _ in planned[1:]], node)
    union: LogicalNode = Union(first.schema, first.time_column, inputs=[first, *rest])
    if distinct:
        union = distinct_rows(planner, union)
    return union, scope


def _multiset(planner, left: LogicalNode, right: LogicalNode, except_: bool) -> LogicalNode:
    """INTERSECT ALL / EXCEPT ALL: each row min(m, n) / max(m - n, 0) times, m and n its
    copies in the left and the right input. An updating aggregate keyed by every column
    (NULL matching NULL) counts both sides; each count becomes that many rows (an Unnest of
    copies(k), which over the changelog retracts and inserts copies as the counts move)."""
    refuse_nested_rows(left.schema)
    names = list(left.schema.names)
    sides = ("__left", "__right")
    tagged = []
    for i, side in enumerate((left, right)):
        exprs: list[Expr] = [Column(f.type, f.name) for f in side.schema]
        exprs += [Literal(pa.int8(), 1 if i == j else None) for j in range(2)]
        schema = pa.schema(list(side.schema) + [pa.field(s, pa.int8()) for s in sides])
        tagged.append(Project(schema, None, input=side, exprs=exprs))
    union: LogicalNode = Union(tagged[0].schema, None, inputs=tagged)
    if any(pa.types.is_floating(f.type) for f in left.schema):  # -0.0 is 0.0, as GROUP BY
        union = Project(union.schema, None, input=union,
                        exprs=[group_key(Column(f.type, f.name)) for f in union.schema])
    settings = planner.catalog.settings
    counts = [pa.field(f"__n{s}", pa.int64()) for s in sides]
    grouped = UpdatingAggregate(
        pa.schema(list(left.schema) + counts), None, input=union, keys=names,
        aggregates=[AggCall("count", (s,), pa.int64()) for s in sides],
        agg_names=[c.name for c in counts], flush_us=flush_setting(settings),
        ttl_us=duration_setting(settings, "updating_ttl", None))
    m, n = (Column(pa.int64(), c.name) for c in counts)
    k = bind_call("subtract", [m, n]) if except_ else bind_call("least", [m, n])
    copies = bind_call("copies", [k])
    with_copies = Project(pa.schema(list(left.schema) + [pa.field("__copies", copies.dtype)]),
                          None, input=grouped,
                          exprs=[Column(f.type, f.name) for f in left.schema] + [copies])
    repeated, _, _ = unnest_array(with_copies, Column(copies.dtype, "__copies"), 0)
    return Project(left.schema, None, input=repeated,
                   exprs=[Column(f.type, f.name) for f in left.schema])


def distinct_rows(planner, node: LogicalNode) -> LogicalNode:
    """Every distinct row of ``node`` once (plan.aggregate_planning), with the job's
    ``updating_flush`` and ``updating_ttl`` settings."""
    settings = planner.catalog.settings
    return plan_distinct_rows(node, flush_setting(settings),
                              duration_setting(settings, "updating_ttl", None))


def unify(first: LogicalNode, first_scope: Scope, rest: list[LogicalNode],
          node: exp.Expression) -> tuple[LogicalNode, list[LogicalNode], Scope]:
    """Project every input to the first one's column names and the common types, by
    position; the output scope has the first input's names."""
    inputs = [first, *rest]
    width = len(first.schema)
    ln, col = position(node)
    for i, other in enumerate(rest, start=2):
        if len(other.schema) != width:
            raise PlanError(f"each {_name(node)} input must have the same number of columns:"
                            f" the first has {width}, input {i} has {len(other.schema)}",
                            line=ln, col=col, hint="select the same number of columns in "
                                                   "each input, in the same order")
    names = [c.name for c in first_scope.columns] if len(first_scope.columns) == width \
        else list(first.schema.names)
    types: list[pa.DataType] = []
    for pos in range(width):
        columns: list[Expr] = [_column_value(i, pos) for i in inputs]
        try:
            t = common_type(columns, f"column {pos + 1} ({names[pos]}) of {_name(node)}")
        except BindError as e:
            raise PlanError(e.message, line=ln, col=col,
                            hint="CAST the column to one type in every input") from None
        types.append(pa.string() if pa.types.is_null(t) else t)
    positions = [_time_position(i) for i in inputs]
    time_pos = positions[0] if positions[0] is not None and \
        all(p == positions[0] for p in positions) else None
    schema = pa.schema([pa.field(n, t) for n, t in zip(names, types)])
    projected = []
    for i in inputs:
        exprs: list[Expr] = [cast(Column(f.type, f.name), t) for f, t in zip(i.schema, types)]
        if isinstance(i, Project):  # NULL literals take the column's type directly
            exprs = [Literal(t, None) if isinstance(e, Literal) and e.value is None else x
                     for e, x, t in zip(i.exprs, exprs, types)]
        if isinstance(i, Project) and not i.is_identity():
            # one projection per input: inline the input's own SELECT list
            mapping = dict(zip(i.schema.names, i.exprs))
            exprs = [substitute(e, mapping) for e in exprs]
            i = i.input
        time_column = names[time_pos] if time_pos is not None and \
            pa.types.is_timestamp(types[time_pos]) else None
        p = Project(schema, time_column, input=i, exprs=exprs)
        projected.append(i if p.is_identity() and i.time_column == time_column else p)
    scope = Scope(columns=[ScopeColumn(None, n, t, n) for n, t in zip(names, types)])
    return projected[0], projected[1:], scope


def _column_value(node: LogicalNode, pos: int) -> Expr:
    """An input column as the type resolution sees it: a bare NULL (typed TEXT by the
    projection) has no type yet and a text literal adapts to the others' type, as
    PostgreSQL's unknown literals do (``SELECT 1 UNION SELECT '2'`` is an integer)."""
    if isinstance(node, Project):
        e = node.exprs[pos]
        if isinstance(e, Literal) and e.value is None:
            return Literal(pa.null(), None)
        if isinstance(e, Literal) and pa.types.is_string(e.dtype):
            return e
    return Column(node.schema.field(pos).type, node.schema.names[pos])


def _time_position(node: LogicalNode) -> int | None:
    if node.time_column is None or node.time_column not in node.schema.names:
        return None
    return node.schema.names.index(node.time_column)


__all__ = ["plan_set_operation", "unify", "distinct_rows"]
