"""FROM with JOINs: plan the inputs, split the conditions, and pick the kind of join.

The conditions of a join are its ON clause (or USING) plus, for an inner join, the WHERE
conjuncts that only read the relations joined so far (``FROM a, b WHERE a.k = b.k`` is an
inner join). Every condition is translated once in the joined scope and then sorted by the
columns it reads:

* one side only: a filter pushed below the join (for the side an outer join does not
  preserve); otherwise part of the match condition;
* ``left_expr = right_expr``: an equality key (hash-partitions both inputs);
* anything else: the *residual* condition, checked on candidate pairs. Comparisons of time
  columns (``b.t BETWEEN a.t - INTERVAL '1' SECOND AND a.t``, ``a.t <= b.u``) stay in it and
  also become ``TimeConstraint``s, from which an interval join learns how long rows live.

A right side written ``t FOR SYSTEM_TIME AS OF s.p`` (``p`` a PROCTIME() column) is a
*lookup join* (plan.lookup_join) against the bounded table ``t``, read whole by each subtask.

Then the kind (plan.join_planning, shared with the frame API): a *window join*, an *interval
join*, or an *updating join*, which needs an equality key unless ``SET allow_unkeyed_join =
true`` (or the right side is a scalar subquery's single row).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pyarrow as pa
from sqlglot import exp

from caudal.connectors import registry as connectors
from caudal.errors import PlanError
from caudal.plan.expressions import Call, Column, Expr, conjunction, conjuncts
from caudal.plan.join_nodes import Join, TemporalJoin
from caudal.plan.join_planning import (
    UNKEYED_SETTING,
    equality_keys,
    join_inputs,
    scanned_table,
    single_row,
    timed_join,
    updating_join,
)
from caudal.plan.logical import Filter, LogicalNode, Project
from caudal.plan.lookup_join import LookupJoin, declared_lookup
from caudal.plan.proctime import proctime_columns
from caudal.sql.scope import Scope, ScopeColumn, position, sql_conjuncts
from caudal.sql.settings import bool_setting, duration_setting
from caudal.types import sql_name

_KINDS = {None: "inner", "": "inner", "INNER": "inner", "CROSS": "inner", "LEFT": "left",
          "RIGHT": "right", "FULL": "full"}
#: joins after which a condition on the relations so far may be applied early: they never
#: pad those relations' columns with NULLs
_PRESERVING = ("inner", "left")


@dataclass
class _Input:
    node: LogicalNode
    scope: Scope
    join: exp.Join | None = None
    kind: str = "inner"
    #: FOR SYSTEM_TIME AS OF <expr> of the right side (a lookup join)
    as_of: exp.Expression | None = None


def _qualified_virtuals(scope: Scope, rename: dict[str, str]) -> dict[str, Expr]:
    """A join side's ``relation.name`` virtual columns that are one of its columns (its
    ``_timestamp``), under the name that column has in the joined output."""
    return {key: Column(expr.dtype, rename.get(expr.name, expr.name))
            for key, expr in scope.computed.items()
            if "." in key and isinstance(expr, Column)}


def plan_joins(planner, select: exp.Select) -> tuple[LogicalNode, Scope, None]:
    """Plan FROM, its JOINs and the WHERE clause; returns (node, scope, None): WHERE has been
    applied (its conjuncts pushed as far down as they may go)."""
    from_ = select.args.get("from_") or select.args.get("from")
    inputs = [_Input(*planner.plan_from(from_.this))]
    for join in select.args["joins"]:
        inputs.append(_input(planner, join))
    where = select.args.get("where")
    where_nodes = sql_conjuncts(where.this) if where is not None else []

    # the joined scope after each join, with the right side's clashing names renamed; a
    # side's qualified virtual columns (Arroyo's b._timestamp: its event time) stay visible
    scopes: list[Scope] = [inputs[0].scope]
    #: before USING merged its columns (where the USING columns are found)
    joined: list[Scope] = [inputs[0].scope]
    merged: list[list[tuple[str, Expr]]] = [[]]
    qualified = _qualified_virtuals(inputs[0].scope, {})
    renames: list[dict[str, str]] = [{}]
    for item in inputs[1:]:
        taken = {c.physical for c in scopes[-1].columns}
        rename: dict[str, str] = {}
        for name in item.node.schema.names:
            new = name
            relation = next((c.relation for c in item.scope.columns if c.physical == name),
                            None) or "right"
            n = 1
            while new in taken:
                new = f"{name}_{relation}" if n == 1 else f"{name}_{relation}{n}"
                n += 1
            taken.add(new)
            if new != name:
                rename[name] = new
        renames.append(rename)
        columns = list(scopes[-1].columns) + [
            dataclasses.replace(c, physical=rename.get(c.physical, c.physical))
            for c in item.scope.columns]
        qualified.update(_qualified_virtuals(item.scope, rename))
        joined.append(Scope(columns=columns, computed=dict(qualified)))
        columns, computed = _merge_using(item, scopes[-1], columns)
        merged.append(computed)
        scopes.append(Scope(columns=columns, computed=dict(qualified)))

    # WHERE conjuncts: each goes to the first join whose output has its columns, if no
    # later join may pad those columns with NULLs
    from caudal.sql.expressions import translate

    final_scope = scopes[-1]
    available = [{c.physical for c in s.columns} for s in scopes]
    assigned: list[list[Expr]] = [[] for _ in inputs]
    on_top: list[Expr] = []
    where_exprs: list[Expr] = []
    for node in _window_struct_fields(where_nodes, final_scope):
        expr = translate(node, final_scope)
        _expect_boolean(expr, node, "WHERE")
        where_exprs.extend(conjuncts(expr))
        cols = expr.columns()
        target = None
        for i in range(1, len(inputs)):
            if cols <= available[i] and all(inputs[j].kind in _PRESERVING
                                            for j in range(i + 1, len(inputs))):
                target = i
                break
        if target is None:
            on_top.append(expr)
        else:
            assigned[target].append(expr)

    node = inputs[0].node
    settings = planner.catalog.settings
    for i in range(1, len(inputs)):
        item = inputs[i]
        conditions = _on_conditions(item, scopes[i - 1], joined[i])
        after: list[Expr] = []
        for expr in assigned[i]:
            (conditions if item.kind == "inner" else after).append(expr)
        if item.kind == "inner":
            conditions += _implied_keys(conditions, where_exprs, node, item, renames[i])
        node = _plan_join(node, item, conditions, renames[i], scopes[i - 1], scopes[i],
                          settings)
        if merged[i]:  # a FULL join's USING columns: coalesce(left, right)
            node = Project(pa.schema(list(node.schema) + [pa.field(n, e.dtype)
                                                           for n, e in merged[i]]),
                           node.time_column, input=node,
                           exprs=[Column(f.type, f.name) for f in node.schema] +
                           [e for _, e in merged[i]])
        if after:
            node = Filter(node.schema, node.time_column, input=node, predicate=conjunction(after))
    if on_top:
        node = Filter(node.schema, node.time_column, input=node, predicate=conjunction(on_top))
    return node, final_scope, None


def _implied_keys(conditions: list[Expr], where: list[Expr], left: LogicalNode,
                  item: _Input, rename: dict[str, str]) -> list[Expr]:
    """For an inner join without an equality key of its own: the equalities of a left and a
    right column that WHERE's column equalities imply (``FROM a, b, c WHERE a.k = c.k AND
    b.k = c.k`` joins a and b on ``a.k = b.k``). Every result row satisfies WHERE, so a pair
    of rows without them could only reach a result row padded with NULLs in those columns,
    which WHERE drops. Only equalities of columns (integers of different widths too) count:
    through other casts equality need not be transitive ('01' and '1' both equal 1)."""
    from caudal.plan.functions.registry import bind_call

    left_names = set(left.schema.names)
    right_names = {rename.get(n, n) for n in item.node.schema.names}
    if any(equality_keys(e, left_names, right_names) for e in conditions):
        return []
    parent: dict[str, str] = {}
    types: dict[str, pa.DataType] = {}

    def root(name: str) -> str:
        while parent.setdefault(name, name) != name:
            name = parent[name]
        return name

    for e in where:
        if not (isinstance(e, Call) and e.func == "eq" and len(e.args) == 2):
            continue
        a, b = (_plain_column(x) for x in e.args)
        if a is not None and b is not None:
            types[a.name], types[b.name] = a.dtype, b.dtype
            parent[root(a.name)] = root(b.name)
    out: list[Expr] = []
    done: set[str] = set()
    for name in sorted(types):
        group = root(name)
        if group in done or name not in left_names:
            continue
        partner = next((n for n in sorted(types) if n in right_names and root(n) == group),
                       None)
        if partner is not None:
            done.add(group)
            out.append(bind_call("eq", [Column(types[name], name),
                                        Column(types[partner], partner)]))
    return out


def _plain_column(e: Expr) -> Column | None:
    """The column an equality's side is: itself, or under a cast from one integer type to
    another (exact, so equality stays transitive); else None."""
    if isinstance(e, Call) and e.func == "cast" and len(e.args) == 1 and \
            pa.types.is_integer(e.dtype) and pa.types.is_integer(e.args[0].dtype):
        e = e.args[0]
    return e if isinstance(e, Column) else None


def _merge_using(item: _Input, left_scope: Scope, columns: list[ScopeColumn]
                 ) -> tuple[list[ScopeColumn], list[tuple[str, Expr]]]:
    """The joined columns after ``USING (k, …)``: each pair of ``k`` columns is one column
    ``k`` in the left one's place (as in DuckDB and PostgreSQL): the left side's value for
    an inner or LEFT join, the right side's for a RIGHT join, ``coalesce(left, right)`` for
    a FULL join (returned as (name, expression) to compute after the join). The two sides'
    own columns stay reachable as ``l.k`` and ``r.k``, not in ``*``."""
    using = [ident.name.lower() for ident in (item.join.args.get("using") or [])] \
        if item.join is not None else []
    if not using:
        return columns, []
    from caudal.plan.functions.registry import bind_call

    width = len(left_scope.columns)
    columns = list(columns)
    computed: list[tuple[str, Expr]] = []
    taken = {c.physical for c in columns}
    for name in using:
        left = [i for i, c in enumerate(columns[:width])
                if c.name.lower() == name and not c.qualified_only]
        right = [i for i, c in enumerate(columns[width:], width)
                 if c.name.lower() == name and not c.qualified_only]
        if len(left) != 1 or not right:
            continue  # unknown or ambiguous: _on_conditions says which
        li, ri = left[0], right[0]
        lc, rc = columns[li], columns[ri]
        columns[ri] = dataclasses.replace(rc, qualified_only=True)
        if item.kind in ("inner", "left"):
            if lc.relation is None:  # already a merged column: it stays the one
                continue
            columns[li] = dataclasses.replace(lc, qualified_only=True)
            columns.insert(li, ScopeColumn(None, lc.name, lc.dtype, lc.physical))
        elif item.kind == "right":
            columns[li] = dataclasses.replace(lc, qualified_only=True)
            columns.insert(li, ScopeColumn(None, lc.name, rc.dtype, rc.physical))
        else:
            value = bind_call("coalesce", [Column(lc.dtype, lc.physical),
                                           Column(rc.dtype, rc.physical)])
            physical, n = f"{lc.name}_using", 1
            while physical in taken:
                n += 1
                physical = f"{lc.name}_using{n}"
            taken.add(physical)
            computed.append((physical, value))
            columns[li] = dataclasses.replace(lc, qualified_only=True)
            columns.insert(li, ScopeColumn(None, lc.name, value.dtype, physical))
        width += 1
    return columns, computed


def _input(planner, join: exp.Join) -> _Input:
    side = (join.args.get("side") or "").upper() or None
    kind = (join.args.get("kind") or "").upper()
    ln, col = position(join)
    if join.args.get("method") or kind in ("SEMI", "ANTI", "NATURAL") or \
            join.args.get("natural"):
        raise PlanError(f"{(join.args.get('method') or kind or 'NATURAL')} JOIN is not "
                        f"supported", line=ln, col=col,
                        hint="[INNER] JOIN, LEFT/RIGHT/FULL [OUTER] JOIN, CROSS JOIN or a "
                             "comma, with ON or USING")
    source, as_of = join.this, None
    if isinstance(source, exp.Table) and source.args.get("version") is not None:
        version = source.args["version"]
        if str(version.args.get("kind", "")).upper() != "AS OF":
            raise PlanError(f"FOR SYSTEM_TIME {version.args.get('kind')} is not supported",
                            line=ln, col=col, hint="FOR SYSTEM_TIME AS OF s.proctime_column")
        as_of = version.expression
        source = source.copy()
        source.set("version", None)
    node, scope = planner.plan_from(source)
    return _Input(node, scope, join, _KINDS.get(side or kind or None, "inner"), as_of)


def _window_struct_fields(nodes: list[exp.Expression], scope: Scope
                          ) -> list[exp.Expression]:
    """``a.window = b.window`` of two Arroyo window structs ``{start, end}`` as the equality
    of their fields (``a.window.start = b.window.start AND a.window."end" = …``): equal
    windows, and keys the window join recognizes (plan.lineage follows the fields)."""
    from caudal.sql.expressions import translate

    out: list[exp.Expression] = []
    for node in nodes:
        if isinstance(node, exp.EQ) and all(_is_window_struct(translate(side, scope))
                                            for side in (node.this, node.expression)):
            for field_name in ("start", "end"):
                sides = [exp.Dot(this=side.copy(), expression=exp.to_identifier(field_name))
                         for side in (node.this, node.expression)]
                eq = exp.EQ(this=sides[0], expression=sides[1])
                eq.meta.update(node.meta)
                out.append(eq)
        else:
            out.append(node)
    return out


def _is_window_struct(expr: Expr) -> bool:
    t = expr.dtype
    return pa.types.is_struct(t) and t.num_fields == 2 and \
        [t.field(i).name for i in range(2)] == ["start", "end"]


def _expect_boolean(expr: Expr, node: exp.Expression, clause: str) -> None:
    if not (pa.types.is_boolean(expr.dtype) or pa.types.is_null(expr.dtype)):
        ln, col = position(node)
        raise PlanError(f"{clause} needs a boolean condition, got {sql_name(expr.dtype)}",
                        line=ln, col=col)


def _on_conditions(item: _Input, left_scope: Scope, scope: Scope) -> list[Expr]:
    """The ON (or USING) conditions of a join, translated in the joined scope."""
    from caudal.sql.expressions import translate

    join = item.join
    assert join is not None
    out: list[Expr] = []
    on = join.args.get("on")
    if on is not None:
        for node in _window_struct_fields(sql_conjuncts(on), scope):
            expr = translate(node, scope)
            _expect_boolean(expr, node, "ON")
            out.extend(conjuncts(expr))
    for ident in join.args.get("using") or []:
        name = ident.name
        column = exp.column(name)
        left = left_scope.resolve_column(column)
        right_columns = [c for c in scope.columns[len(left_scope.columns):]
                         if c.name.lower() == name.lower()]
        if not right_columns:
            ln, col = position(ident)
            raise PlanError(f"USING ({name}): the right side has no column {name!r}",
                            line=ln, col=col)
        rc = right_columns[0]
        from caudal.plan.functions.registry import bind_call

        out.append(bind_call("eq", [left, Column(rc.dtype, rc.physical)]))
    return out


# ---- one join -----------------------------------------------------------------------------


def _plan_join(left: LogicalNode, item: _Input, exprs: list[Expr], rename: dict[str, str],
               left_scope: Scope, scope: Scope, settings: dict) -> LogicalNode:
    ln, col = position(item.join) if item.join is not None else (None, None)
    from caudal.sql.expressions import translate

    as_of = translate(item.as_of, left_scope) if item.as_of is not None else None
    inputs = join_inputs(left, item.node, item.kind, exprs, rename, ln, col,
                         push_right=not _is_temporal(left, as_of))
    if item.as_of is not None or declared_lookup(scanned_table(inputs.right)):
        return _lookup_join(inputs.left, inputs.right, item, left_scope, inputs.schema,
                            inputs.common)
    joined = timed_join(inputs)
    if joined is not None:
        return joined
    # a scalar subquery's one row may be joined to everything (sql.scalar_subqueries)
    allow = bool(inputs.common["left_keys"]) or single_row(inputs.right) or \
        bool_setting(settings, UNKEYED_SETTING)
    return updating_join(inputs, allow, duration_setting(settings, "updating_ttl", None))


def _is_temporal(left: LogicalNode, as_of: Expr | None) -> bool:
    """Whether ``FOR SYSTEM_TIME AS OF`` names the streaming side's event time (an
    event-time temporal join), not a PROCTIME() column (a lookup join)."""
    return isinstance(as_of, Column) and as_of.name == left.time_column and \
        as_of.name not in proctime_columns(left)


def _lookup_join(left: LogicalNode, right: LogicalNode, item: _Input, left_scope: Scope,
                 schema: pa.Schema, common: dict) -> LookupJoin | TemporalJoin:
    """``JOIN t FOR SYSTEM_TIME AS OF s.p``: checked, then planned as a lookup join."""
    from caudal.sql.expressions import translate

    if item.as_of is None:  # JOIN a table declared lookup = 'true' (Arroyo's style)
        ln, cn = common["line"], common["col"]
        as_of = Column(pa.timestamp("us"), "")
    else:
        ln, cn = position(item.as_of)
        as_of = translate(item.as_of, left_scope)
    if item.as_of is not None and _is_temporal(left, as_of):
        return _temporal_join(left, right, schema, common, item.as_of.sql(), ln, cn)
    if item.as_of is not None and not (isinstance(as_of, Column)
                                       and as_of.name in proctime_columns(left)):
        raise PlanError(f"FOR SYSTEM_TIME AS OF {item.as_of.sql()}: AS OF takes the "
                        "streaming side's event time column (a temporal join) or a "
                        "PROCTIME() column (a lookup join)", line=ln, col=cn,
                        hint="FOR SYSTEM_TIME AS OF s.<its WATERMARK column>, or add "
                             "PROCTIME() AS p_time to the streaming side and write "
                             "FOR SYSTEM_TIME AS OF s.p_time")
    table = scanned_table(right)
    mode = None if table is None else connectors.lookup_mode(table)
    if mode is None:
        raise PlanError("FOR SYSTEM_TIME AS OF: the joined table must be a table of a "
                        "bounded connector (" + ", ".join(connectors.LOOKUP_CONNECTORS) +
                        "), read whole "
                        "by each subtask, or of one that looks rows up by key (postgres)",
                        line=ln, col=cn,
                        hint="join a filesystem table, or drop FOR SYSTEM_TIME AS OF for a "
                             "regular join")
    kind = common["kind"]
    if kind not in ("inner", "left"):
        raise PlanError(f"a lookup join (FOR SYSTEM_TIME AS OF) is an inner or LEFT join, "
                        f"not {kind.upper()}", line=common["line"], col=common["col"])
    if not common["left_keys"]:
        raise PlanError("a lookup join (FOR SYSTEM_TIME AS OF) needs an equality between "
                        "the two sides", line=common["line"], col=common["col"],
                        hint="ON mod(s.k, 10000) = t.key")
    if left.updating:
        raise PlanError("a lookup join (FOR SYSTEM_TIME AS OF) needs an append-only "
                        "streaming side, not an updating one", line=common["line"],
                        col=common["col"])
    time_column = left.time_column if left.time_column in common["output"] else None
    by_key = {}
    if mode == "key":
        by_key = _by_key(table, common)
    return LookupJoin(schema, time_column, left=left, right=right, as_of=as_of.name,
                      **by_key, **common)


def _temporal_join(left: LogicalNode, right: LogicalNode, schema: pa.Schema, common: dict,
                   as_of: str, ln: int | None, cn: int | None) -> TemporalJoin:
    """``JOIN versions FOR SYSTEM_TIME AS OF s.event_time ON s.k = versions.pk``: checked
    as Flink checks it (a versioned table: append-only, with a watermark and a PRIMARY KEY
    the join's equalities cover), then planned as an event-time temporal join."""
    what = f"an event-time temporal join (FOR SYSTEM_TIME AS OF {as_of})"
    kind = common["kind"]
    if kind not in ("inner", "left"):
        raise PlanError(f"{what} is an inner or LEFT join, not {kind.upper()}",
                        line=common["line"], col=common["col"])
    if left.updating or right.updating:
        side = "streaming side" if left.updating else "versioned table"
        raise PlanError(f"{what} needs an append-only {side}; an updating one (a changelog) "
                        "is not supported", line=ln, col=cn,
                        hint="join an append-only stream of versions (each row a new "
                             "version of its key)")
    if right.time_column is None:
        raise PlanError(f"{what} needs a versioned table with event time", line=ln, col=cn,
                        hint="declare WATERMARK FOR <its time column> in the joined table")
    table = scanned_table(right)
    primary = [k.lower() for k in (table.primary_key if table is not None else [])]
    keys = [k.lower() for k in common["right_keys"]]
    if not primary or not set(primary) <= set(keys):
        name = table.name if table is not None else "the joined table"
        raise PlanError(f"{what} needs the versioned table's PRIMARY KEY in the ON "
                        f"equalities ({name} " + (f"has PRIMARY KEY ({', '.join(primary)})"
                                                  if primary else "declares none") + ")",
                        line=ln, col=cn,
                        hint="declare PRIMARY KEY (k) NOT ENFORCED and join ON s.k = t.k")
    time_column = left.time_column if left.time_column in common["output"] else None
    return TemporalJoin(schema, time_column, left=left, right=right,
                        left_time=left.time_column, right_time=right.time_column, **common)


def _by_key(table, common: dict) -> dict:
    """A table whose connector looks rows up by key (a database): the join's keys must be
    columns of the table itself, which the connector checks; its cache settings, as the
    LookupJoin's plain-data fields."""
    keys = list(common["right_keys"])
    missing = [k for k in keys if k not in table.schema.names]
    if missing:
        raise PlanError(f"a lookup join looks table {table.name!r} up by its columns; "
                        f"{', '.join(missing)} is computed in the query", line=common["line"],
                        col=common["col"], hint="join on columns of the table itself")
    from caudal.connectors.base import lookup_cache_settings

    connectors.lookup_class(table).validate(table, keys)
    rows, ttl = lookup_cache_settings(table)
    return dict(by_key=True, cache_rows=rows, cache_ttl_s=ttl)


__all__ = ["plan_joins", "Join", "UNKEYED_SETTING"]
