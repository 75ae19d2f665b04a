"""Subqueries in WHERE: ``x IN (SELECT …)``, ``EXISTS (SELECT …)`` and their negations,
planned as semi and anti joins (plan.join_nodes.UpdatingJoin with kind ``semi`` / ``anti``).

Each such predicate must be a conjunct of WHERE of its own (``WHERE a > 1 AND x IN (…)``);
the other conjuncts are planned as usual, then every subquery predicate joins the rows that
passed them.

Decorrelation: a subquery that is a plain ``SELECT … FROM … [JOIN …] WHERE …`` may name
columns of the outer query in its WHERE. Its conjuncts that read only its own columns filter
its rows; an equality between an expression of its columns and one of the outer columns is a
join key; anything else that mixes both is the join's residual condition. A subquery with
GROUP BY, aggregates, DISTINCT or a set operation is planned on its own (uncorrelated).

Semantics (PostgreSQL, DuckDB, Flink):

* ``x IN (SELECT y …)`` / ``EXISTS``: a semi join: each outer row once (with its
  multiplicity) when at least one subquery row matches; NULL matches nothing.
* ``NOT EXISTS``: an anti join on the same keys.
* ``x NOT IN (SELECT y …)`` is true only when no ``y`` equals ``x`` *and* no ``y`` is NULL;
  a NULL ``x`` passes only when the subquery has no rows (per correlation key). Planned as
  two anti joins: on ``x = y``, then against the distinct ``(correlation keys, y IS NULL)``
  of the subquery with the condition ``y IS NULL OR x IS NULL`` (correlated on both window
  bounds: against its rows, so that both are window anti joins and the result appends).

On streams, a semi join over append-only inputs only appends (a row is emitted when its
first match arrives); an anti join is updating (a row emitted while it has no match is
retracted when one arrives). A join with no equality key runs on one subtask: it is only
planned when its right side is known to stay small (the distinct rows of an uncorrelated
EXISTS or of NOT IN's NULL check); otherwise it is refused as other unkeyed joins are.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pyarrow as pa
from sqlglot import exp

from caudal.errors import PlanError
from caudal.plan.expressions import Column, Expr, Literal, conjuncts
from caudal.plan.functions.coerce import cast, common_type
from caudal.plan.functions.registry import BindError, bind_call
from caudal.plan.logical import Filter, LogicalNode, Project
from caudal.sql.expressions import quantified_error
from caudal.sql.scope import Scope, ScopeColumn, position, sql_conjuncts
from caudal.sql.settings import bool_setting, duration_setting


@dataclass
class SubqueryPredicate:
    """One WHERE conjunct with a subquery."""

    node: exp.Expression
    negated: bool
    #: IN: the outer expressions compared with the subquery's columns; EXISTS: None
    lhs: list[exp.Expression] | None
    query: exp.Expression


def _subquery_of(node: exp.Expression) -> SubqueryPredicate | None:
    negated = False
    inner = node
    while isinstance(inner, exp.Paren):
        inner = inner.this
    if isinstance(inner, exp.Not):
        negated = True
        inner = inner.this
        while isinstance(inner, exp.Paren):
            inner = inner.this
    if isinstance(inner, exp.In) and inner.args.get("query") is not None:
        lhs = inner.this
        items = list(lhs.expressions) if isinstance(lhs, exp.Tuple) else [lhs]
        return SubqueryPredicate(node, negated, items, inner.args["query"])
    if isinstance(inner, exp.Exists):
        return SubqueryPredicate(node, negated, None, inner.this)
    if isinstance(inner, exp.EQ | exp.NEQ) and _quantified(inner.expression):
        every = isinstance(inner.expression, exp.All)
        if isinstance(inner, exp.EQ) != every:
            # x = ANY (S) is x IN (S) and x <> ALL (S) is NOT (x IN (S)), NULLs alike
            lhs = inner.this
            items = list(lhs.expressions) if isinstance(lhs, exp.Tuple) else [lhs]
            return SubqueryPredicate(node, negated != every, items, inner.expression.this)
    return None


def _quantified(node: exp.Expression) -> bool:
    return isinstance(node, exp.Any | exp.All) and isinstance(node.this,
                                                              exp.Select | exp.Subquery)


def _has_subquery(node: exp.Expression) -> exp.Expression | None:
    for sub in node.walk():
        if isinstance(sub, exp.Exists) or (isinstance(sub, exp.In)
                                           and sub.args.get("query") is not None):
            return sub
        if isinstance(sub, exp.Subquery | exp.Select) and sub is not node:
            return sub
    return None


def split_where(condition: exp.Expression) -> tuple[exp.Expression | None,
                                                    list[SubqueryPredicate]]:
    """WHERE's conjuncts without subqueries (AND-ed again, or None), and the subquery
    predicates. A subquery anywhere else in WHERE is refused."""
    rest: list[exp.Expression] = []
    found: list[SubqueryPredicate] = []
    for conjunct in sql_conjuncts(condition):
        pred = _subquery_of(conjunct)
        if pred is not None:
            found.append(pred)
            continue
        quantified = next((q for q in conjunct.walk() if _quantified(q)), None)
        if quantified is not None:
            raise quantified_error(quantified)
        inside = _has_subquery(conjunct)
        if inside is not None:
            ln, col = position(inside)
            raise PlanError("a subquery in WHERE must be a condition of its own, AND-ed with "
                            "the others", line=ln, col=col,
                            hint="x [NOT] IN (SELECT …) or [NOT] EXISTS (SELECT …); for OR, "
                                 "write a UNION of two queries")
        rest.append(conjunct)
    if not found:
        return condition, []
    remaining = None
    for c in rest:
        remaining = c if remaining is None else exp.And(this=remaining, expression=c)
    return remaining, found


def without_subqueries(select: exp.Select) -> tuple[exp.Select, list[SubqueryPredicate]]:
    """A copy of ``select`` whose WHERE has no subquery predicate, and the predicates (the
    statement's tree is left as it is: a view is planned each time it is read)."""
    where = select.args.get("where")
    if where is None or _has_subquery(where.this) is None:
        return select, []
    select = select.copy()
    where = select.args["where"]
    remaining, found = split_where(where.this)
    select.set("where", exp.Where(this=remaining) if remaining is not None else None)
    return select, found


# ---- planning -----------------------------------------------------------------------------


@dataclass
class _Nested(Scope):
    """The scope of a correlated condition: the subquery's columns first, then the outer
    query's (SQL's rule: a name resolves in the innermost query that has it)."""

    inner: Scope = field(default_factory=Scope)
    outer: Scope = field(default_factory=Scope)

    def resolve_column(self, node: exp.Column) -> Expr:
        if _visible(self.inner, node):
            return self.inner.resolve_column(node)
        return self.outer.resolve_column(node)


def _visible(scope: Scope, node: exp.Column) -> bool:
    name, relation = node.name.lower(), (node.table or "").lower()
    return any(c.name.lower() == name and (not relation or (c.relation or "").lower()
                                           == relation) for c in scope.columns)


def _reads_only(node: exp.Expression, scope: Scope) -> bool:
    """True when every column ``node`` names resolves in ``scope``."""
    return all(_visible(scope, c) for c in node.find_all(exp.Column)
               if not isinstance(c.this, exp.Star))


def _simple(query: exp.Expression) -> bool:
    """A SELECT whose WHERE may be decorrelated: no grouping, aggregate, DISTINCT, window
    function, ORDER BY or LIMIT."""
    from caudal.sql.select_items import contains_aggregate

    if not isinstance(query, exp.Select):
        return False
    if any(query.args.get(a) is not None for a in ("group", "having", "distinct", "order",
                                                   "limit", "offset", "qualify")):
        return False
    return not any(contains_aggregate(e) or e.find(exp.Window) is not None
                   for e in query.expressions)


def apply_subqueries(planner, node: LogicalNode, scope: Scope,
                     predicates: list[SubqueryPredicate]) -> LogicalNode:
    """``node`` (rows in ``scope``) filtered by each subquery predicate in turn."""
    for pred in predicates:
        node = _plan_predicate(planner, node, scope, pred)
    return node


def _plan_inner(planner, query: exp.Select, outer_names: set[str], what: str
                ) -> tuple[LogicalNode, Scope, list[exp.Expression]]:
    """The subquery's FROM (and JOINs), its columns renamed away from the outer ones, and
    its WHERE conjuncts (not applied yet)."""
    probe = query.copy()
    where = probe.args.get("where")
    conds = sql_conjuncts(where.this) if where is not None else []
    probe.set("where", None)
    if probe.args.get("joins"):
        from caudal.sql.joins import plan_joins

        inner, inner_scope, _ = plan_joins(planner, probe)
    else:
        from_ = probe.args.get("from_") or probe.args.get("from")
        if from_ is None:
            ln, col = position(query)
            raise PlanError(f"{what} (SELECT …): a subquery needs a FROM clause", line=ln,
                            col=col, hint="EXISTS (SELECT 1 FROM t WHERE …)")
        inner, inner_scope = planner.plan_from(from_.this)
    rename = {n: new for n, new in zip(inner.schema.names,
                                        _names_apart(inner.schema.names, outer_names))
              if new != n}
    if rename:
        schema = pa.schema([pa.field(rename.get(f.name, f.name), f.type) for f in inner.schema])
        inner = Project(schema, rename.get(inner.time_column or "", inner.time_column),
                        input=inner, exprs=[Column(f.type, f.name) for f in inner.schema])
        inner_scope = Scope(columns=[dataclasses.replace(
            c, physical=rename.get(c.physical, c.physical)) for c in inner_scope.columns])
    return inner, inner_scope, conds


def _plan_predicate(planner, node: LogicalNode, scope: Scope,
                    pred: SubqueryPredicate) -> LogicalNode:
    from caudal.sql.expressions import translate

    query = pred.query
    while isinstance(query, exp.Subquery):
        query = query.this
    ln, col = position(pred.node)
    outer_names = set(node.schema.names)
    what = ("NOT " if pred.negated else "") + ("IN" if pred.lhs is not None else "EXISTS")

    correlated: list[exp.Expression] = []
    if _simple(query):
        inner, inner_scope, conds = _plan_inner(planner, query, outer_names, what)
        own = [c for c in conds if _reads_only(c, inner_scope)]
        correlated = [c for c in conds if not _reads_only(c, inner_scope)]
        if own:
            inner = Filter(inner.schema, inner.time_column, input=inner,
                           predicate=_boolean(translate(_and_exp(own), inner_scope), own[0]))
        items = None
        if pred.lhs is not None:
            items = []
            for item in query.expressions:
                if isinstance(item, exp.Star) or (isinstance(item, exp.Column)
                                                  and isinstance(item.this, exp.Star)):
                    relation = item.table if isinstance(item, exp.Column) else None
                    items.extend(Column(c.dtype, c.physical)
                                 for c in inner_scope.star(relation))
                else:
                    items.append(translate(item.this if isinstance(item, exp.Alias) else item,
                                           inner_scope))
    else:
        planned, _ = planner.plan_query(query)
        inner, inner_scope, _ = _plan_renamed(planned, outer_names)
        items = [Column(c.dtype, c.physical) for c in inner_scope.columns]

    # join keys and residual: IN's comparison, then the correlated conditions
    left_keys: list[Expr] = []
    right_keys: list[Expr] = []
    residual: list[Expr] = []
    lhs: list[Expr] = []
    if pred.lhs is not None:
        assert items is not None
        if len(items) != len(pred.lhs):
            raise PlanError(f"{what}: {len(pred.lhs)} value(s) compared with a subquery of "
                            f"{len(items)} column(s)", line=ln, col=col,
                            hint="select as many columns in the subquery as are compared")
        for outer_node, right in zip(pred.lhs, items):
            left = translate(outer_node, scope)
            try:
                t = common_type([left, right], f"{what} (SELECT …)")
            except BindError as e:
                raise PlanError(e.message, line=ln, col=col,
                                hint="CAST one side to the other's type") from None
            if pa.types.is_null(t):
                t = pa.string()
            lhs.append(cast(left, t))
            left_keys.append(cast(left, t))
            right_keys.append(cast(right, t))
    from caudal.plan.join_planning import equality_keys

    inner_names = set(inner.schema.names)
    nested = _Nested(columns=list(inner_scope.columns) + list(scope.columns),
                     inner=inner_scope, outer=scope)
    for cond in correlated:
        for e in conjuncts(_boolean(translate(cond, nested), cond)):
            cols = e.columns()
            keys = equality_keys(e, outer_names, inner_names)
            if keys:
                left_keys.extend(a for a, _ in keys)
                right_keys.extend(b for _, b in keys)
                continue
            if cols <= inner_names:
                inner = Filter(inner.schema, inner.time_column, input=inner, predicate=e)
                continue
            residual.append(e)

    if pred.negated and pred.lhs is not None:
        if len(lhs) != 1:
            raise PlanError("NOT IN with several columns is not supported", line=ln, col=col,
                            hint="write NOT EXISTS (SELECT … WHERE a = x AND b = y), minding "
                                 "NULLs")
        if residual:
            raise PlanError("NOT IN with a correlated condition other than equality is not "
                            "supported", line=ln, col=col,
                            hint="write NOT EXISTS (SELECT … WHERE …), minding NULLs")
        corr = len(left_keys) - 1  # the correlation keys come after IN's own
        in_left, in_right = left_keys[:1], right_keys[:1]
        corr_left, corr_right = left_keys[1:1 + corr], right_keys[1:1 + corr]
        node = _join(planner, node, inner, corr_left + in_left, corr_right + in_right, [],
                     "anti", ln, col, small_right=False)
        # the NULL check: against the distinct (correlation keys, y IS NULL) of the subquery
        names = [f"__nk{i}" for i in range(len(corr_right))] + ["__null"]
        exprs = list(corr_right) + [bind_call("is_null", [in_right[0]])]
        fields = [pa.field(n, e.dtype) for n, e in zip(names, exprs)]
        nulls: LogicalNode = Project(pa.schema(fields), None, input=inner, exprs=exprs)
        condition = bind_call("or", [Column(pa.bool_(), "__null"),
                                     bind_call("is_null", [in_left[0]])])
        keys = [Column(f.type, f.name) for f in fields[:-1]]
        # imported here, where a join is planned anyway: a job without joins plans without it
        from caudal.plan.join_nodes import WindowJoin

        if isinstance(node, WindowJoin):
            # correlated on both window bounds: the check is a window anti join too, against
            # the rows themselves (an anti join ignores how often a row matches); against
            # their distinct rows (an updating input) the whole query would be updating
            checked = _join(planner, node, nulls, corr_left, keys, [condition], "anti", ln,
                            col, small_right=True)
            if isinstance(checked, WindowJoin):
                return checked
        return _join(planner, node, _distinct(planner, nulls), corr_left, keys, [condition],
                     "anti", ln, col, small_right=True)

    small = False
    if not left_keys and not residual:
        # uncorrelated EXISTS: only whether the subquery has a row matters
        flag = Literal(pa.bool_(), True)
        inner = _distinct(planner, Project(pa.schema([pa.field("__exists", pa.bool_())]), None,
                                           input=inner, exprs=[flag]))
        small = True
    return _join(planner, node, inner, left_keys, right_keys, residual,
                 "anti" if pred.negated else "semi", ln, col, small_right=small)


def _plan_renamed(node: LogicalNode, outer_names: set[str]
                  ) -> tuple[LogicalNode, Scope, None]:
    """A planned subquery with its columns renamed away from the outer ones."""
    names = _names_apart(node.schema.names, outer_names)
    if names != node.schema.names:
        schema = pa.schema([pa.field(n, f.type) for n, f in zip(names, node.schema)])
        node = Project(schema, None, input=node,
                       exprs=[Column(f.type, f.name) for f in node.schema])
    scope = Scope(columns=[ScopeColumn(None, n, f.type, n) for n, f in zip(names, node.schema)])
    return node, scope, None


def _names_apart(names: list[str], outer_names: set[str]) -> list[str]:
    """The subquery's column names, renamed (``x__sub1``) where the outer query has the
    name too or it looks like a join's helper key column."""
    out = []
    taken = set(outer_names)
    for n in names:
        new, i = n, 0
        while new in taken or new.startswith("__j"):
            i += 1
            new = f"{n}__sub{i}"
        taken.add(new)
        out.append(new)
    return out


def _distinct(planner, node: LogicalNode) -> LogicalNode:
    from caudal.sql.set_operations import distinct_rows

    return distinct_rows(planner, node)


def _and_exp(nodes: list[exp.Expression]) -> exp.Expression:
    out = nodes[0]
    for n in nodes[1:]:
        out = exp.And(this=out, expression=n)
    return out


def _boolean(expr: Expr, node: exp.Expression) -> Expr:
    if not (pa.types.is_boolean(expr.dtype) or pa.types.is_null(expr.dtype)):
        ln, col = position(node)
        raise PlanError("a subquery's WHERE needs a boolean condition", line=ln, col=col)
    return expr


def _join(planner, left: LogicalNode, right: LogicalNode, left_exprs: list[Expr],
          right_exprs: list[Expr], residual: list[Expr], kind: str, ln, col,
          small_right: bool) -> LogicalNode:
    from caudal.plan.join_planning import UNKEYED_SETTING, filtering_join

    settings = planner.catalog.settings
    allow = bool(left_exprs) or small_right or bool_setting(settings, UNKEYED_SETTING)
    return filtering_join(left, right, left_exprs, right_exprs, residual, kind, allow,
                          duration_setting(settings, "updating_ttl", None), ln, col)


__all__ = ["split_where", "without_subqueries", "apply_subqueries", "SubqueryPredicate"]
