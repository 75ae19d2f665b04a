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

Then the kind (plan.join_nodes): a *window join* when both inputs are windowed the same way
and an equality pairs their window bounds; an *interval join* when the time constraints
bound how long both sides' rows can find a partner (plan.lineage gives each column's
lateness behind the watermark); otherwise an *updating join*, which keeps every row and
needs an equality key — without one its state would hold both inputs forever, so it is
refused unless ``SET allow_unkeyed_join = true``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pyarrow as pa
from sqlglot import exp

from caudal.connectors import registry as connectors
from caudal.errors import PlanError
from caudal.plan.expressions import Call, Column, Expr, Literal
from caudal.plan.join_nodes import (
    IntervalJoin,
    Join,
    TimeConstraint,
    UpdatingJoin,
    WindowJoin,
    time_term,
)
from caudal.plan.lineage import time_bounds, window_columns
from caudal.plan.logical import Filter, LogicalNode, Project
from caudal.plan.lookup_join import LookupJoin, declared_lookup
from caudal.plan.optimizer import substitute
from caudal.plan.proctime import proctime_columns
from caudal.sql.scope import Scope, position
from caudal.sql.settings import bool_setting, duration_setting
from caudal.types import sql_name

_KINDS = {None: "inner", "": "inner", "INNER": "inner", "CROSS": "inner", "LEFT": "left",
          "RIGHT": "right", "FULL": "full"}
#: joins after which a condition on the relations so far may be applied early: they never
#: pad those relations' columns with NULLs
_PRESERVING = ("inner", "left")
_COMPARE = {"lt": "lte", "lte": "lte", "gt": "gte", "gte": "gte"}
UNKEYED_SETTING = "allow_unkeyed_join"


@dataclass
class _Input:
    node: LogicalNode
    scope: Scope
    join: exp.Join | None = None
    kind: str = "inner"
    #: FOR SYSTEM_TIME AS OF <expr> of the right side (a lookup join)
    as_of: exp.Expression | None = None


@dataclass
class _Conditions:
    """A join's conditions sorted by what they read."""

    left_only: list[Expr] = field(default_factory=list)
    right_only: list[Expr] = field(default_factory=list)
    keys: list[tuple[Expr, Expr]] = field(default_factory=list)
    residual: list[Expr] = field(default_factory=list)
    constraints: list[TimeConstraint] = field(default_factory=list)


def plan_joins(planner, select: exp.Select) -> tuple[LogicalNode, Scope, None]:
    """Plan FROM, its JOINs and the WHERE clause; returns (node, scope, None): WHERE has been
    applied (its conjuncts pushed as far down as they may go)."""
    from_ = select.args.get("from_") or select.args.get("from")
    inputs = [_Input(*planner.plan_from(from_.this))]
    for join in select.args["joins"]:
        inputs.append(_input(planner, join))
    where = select.args.get("where")
    where_nodes = _conjuncts(where.this) if where is not None else []

    # the joined scope after each join, with the right side's clashing names renamed
    scopes: list[Scope] = [inputs[0].scope]
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
        scopes.append(Scope(columns=columns))

    # WHERE conjuncts: each goes to the first join whose output has its columns, if no
    # later join may pad those columns with NULLs
    from caudal.sql.expressions import translate

    final_scope = scopes[-1]
    available = [{c.physical for c in s.columns} for s in scopes]
    assigned: list[list[Expr]] = [[] for _ in inputs]
    on_top: list[Expr] = []
    for node in _window_struct_fields(where_nodes, final_scope):
        expr = translate(node, final_scope)
        _expect_boolean(expr, node, "WHERE")
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
        conditions = _on_conditions(item, scopes[i - 1], scopes[i])
        after: list[Expr] = []
        for expr in assigned[i]:
            (conditions if item.kind == "inner" else after).append(expr)
        node = _plan_join(node, item, conditions, renames[i], scopes[i - 1], scopes[i],
                          settings)
        if after:
            node = Filter(node.schema, node.time_column, input=node, predicate=_and(after))
    if on_top:
        node = Filter(node.schema, node.time_column, input=node, predicate=_and(on_top))
    return node, final_scope, None


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


def _conjuncts(node: exp.Expression) -> list[exp.Expression]:
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.And):
        return _conjuncts(node.this) + _conjuncts(node.expression)
    return [node]


def _flatten(expr: Expr) -> list[Expr]:
    if isinstance(expr, Call) and expr.func == "and":
        out: list[Expr] = []
        for a in expr.args:
            out.extend(_flatten(a))
        return out
    return [expr]


def _and(exprs: list[Expr]) -> Expr:
    out = exprs[0]
    for e in exprs[1:]:
        out = Call(pa.bool_(), "and", (out, e))
    return out


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
        for node in _window_struct_fields(_conjuncts(on), scope):
            expr = translate(node, scope)
            _expect_boolean(expr, node, "ON")
            out.extend(_flatten(expr))
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


def _sort_conditions(exprs: list[Expr], left: set[str], right: set[str], kind: str,
                     left_node: LogicalNode, right_node: LogicalNode,
                     rename: dict[str, str]) -> _Conditions:
    out = _Conditions()
    back = {v: k for k, v in rename.items()}
    for expr in exprs:
        for e in _flatten(expr):
            if isinstance(e, Literal) and e.value is True:
                continue
            cols = e.columns()
            if cols and cols <= left and kind in ("inner", "right"):
                out.left_only.append(e)
                continue
            if cols and cols <= right and kind in ("inner", "left"):
                out.right_only.append(substitute(
                    e, {n: Column(_dtype(right_node, back.get(n, n)), back.get(n, n))
                        for n in cols}))
                continue
            if isinstance(e, Call) and e.func == "eq" and len(e.args) == 2:
                a, b = e.args
                ca, cb = a.columns(), b.columns()
                if ca and cb and ca <= left and cb <= right:
                    out.keys.append((a, b))
                    continue
                if ca and cb and ca <= right and cb <= left:
                    out.keys.append((b, a))
                    continue
            constraint = _time_constraint(e, left, right)
            if constraint is not None:
                out.constraints.extend(constraint)
            out.residual.append(e)
    return out


def _dtype(node: LogicalNode, name: str) -> pa.DataType:
    return node.schema.field(name).type


def _time_constraint(expr: Expr, left: set[str], right: set[str]
                     ) -> list[TimeConstraint] | None:
    """``p <= q`` style comparisons of time terms of different sides, as constraints
    ``small + offset <= big`` (strictness is left to the residual condition)."""
    if not (isinstance(expr, Call) and expr.func in _COMPARE and len(expr.args) == 2):
        return None
    a, b = expr.args
    if _COMPARE[expr.func] == "gte":
        a, b = b, a  # now a <= b
    ta, tb = time_term(a), time_term(b)
    if ta is None or tb is None:
        return None

    def side(name: str) -> int | None:
        return 0 if name in left else 1 if name in right else None

    sa, sb = side(ta[0]), side(tb[0])
    if sa is None or sb is None or sa == sb:
        return None
    # a.col + oa <= b.col + ob  <=>  a.col + (oa - ob) <= b.col
    return [TimeConstraint(sa, ta[0], ta[1] - tb[1], sb, tb[0])]


def _plan_join(left: LogicalNode, item: _Input, exprs: list[Expr], rename: dict[str, str],
               left_scope: Scope, scope: Scope, settings: dict) -> LogicalNode:
    right = item.node
    kind = item.kind
    join_exp = item.join
    ln, col = position(join_exp) if join_exp is not None else (None, None)
    left_names = set(left.schema.names)
    right_names = {rename.get(n, n) for n in right.schema.names}
    cond = _sort_conditions(exprs, left_names, right_names, kind, left, right, rename)
    if cond.left_only:
        left = Filter(left.schema, left.time_column, input=left,
                      predicate=_and(cond.left_only))
    if cond.right_only:
        right = Filter(right.schema, right.time_column, input=right,
                       predicate=_and(cond.right_only))
    back = {v: k for k, v in rename.items()}

    def to_right(e: Expr) -> Expr:
        return substitute(e, {n: Column(e_type, back.get(n, n)) for n, e_type in
                              _column_types(e).items()})

    left, left_keys = _key_columns(left, [k for k, _ in cond.keys], "__jl")
    right, right_keys = _key_columns(right, [to_right(v) for _, v in cond.keys], "__jr")
    helpers = {k for k in left_keys if k.startswith("__jl")} | \
        {k for k in right_keys if k.startswith("__jr")}
    for k in right_keys:
        if k in helpers:
            rename.setdefault(k, k)
    output = [n for n in left.schema.names if n not in helpers] + \
        [rename.get(n, n) for n in right.schema.names if n not in helpers]
    fields = [left.schema.field(n) for n in left.schema.names if n not in helpers] + \
        [pa.field(rename.get(n, n), right.schema.field(n).type)
         for n in right.schema.names if n not in helpers]
    schema = pa.schema(fields)
    residual = _and(cond.residual) if cond.residual else None
    common = dict(kind=kind, left_keys=left_keys, right_keys=right_keys,
                  right_rename={n: rename.get(n, n) for n in right.schema.names},
                  output=output, residual=residual, line=ln, col=col)

    if item.as_of is not None or declared_lookup(_scanned_table(right)):
        return _lookup_join(left, right, item, left_scope, schema, common)
    window = _window_join(left, right, left_keys, right_keys)
    if window is not None and not (left.updating or right.updating):
        spec, ends = window
        return WindowJoin(schema, None, left=left, right=right, window_end=ends,
                          window=spec, **common)
    if cond.constraints and not (left.updating or right.updating):
        interval = _interval(left, right, cond.constraints, kind, rename)
        if interval is not None:
            retention, late, time_column, holdback = interval
            return IntervalJoin(schema, time_column, left=left, right=right,
                                constraints=cond.constraints, retention=retention,
                                late_checks=late, holdback_us=holdback, **common)
    from caudal.sql.scalar_subqueries import single_row

    # a scalar subquery's one row may be joined to everything (sql.scalar_subqueries)
    if not left_keys and not single_row(right) and not bool_setting(settings, UNKEYED_SETTING):
        raise PlanError(
            "a join without an equality key between two unbounded inputs would keep every "
            "row of both inputs forever", line=ln, col=col,
            hint="join on equal columns (ON a.k = b.k), bound it in time (b.t BETWEEN a.t - "
                 "INTERVAL '1' MINUTE AND a.t), join windows on window_start and window_end,"
                 f" or accept unbounded state with SET {UNKEYED_SETTING} = true")
    return UpdatingJoin(schema, None, left=left, right=right,
                        ttl_us=duration_setting(settings, "updating_ttl", None), **common)


def _lookup_join(left: LogicalNode, right: LogicalNode, item: _Input, left_scope: Scope,
                 schema: pa.Schema, common: dict) -> LookupJoin:
    """``JOIN t FOR SYSTEM_TIME AS OF s.p``: checked, then planned as a lookup join."""
    from caudal.sql.expressions import translate

    if item.as_of is None:  # JOIN a table declared lookup = 'true' (Arroyo's style)
        ln, cn = common["line"], common["col"]
        as_of = Column(pa.timestamp("us"), "")
    else:
        ln, cn = position(item.as_of)
        as_of = translate(item.as_of, left_scope)
    if item.as_of is not None and not (isinstance(as_of, Column)
                                       and as_of.name in proctime_columns(left)):
        raise PlanError(f"FOR SYSTEM_TIME AS OF {item.as_of.sql()}: only a processing-time "
                        "lookup join is supported (AS OF a PROCTIME() column of the other "
                        "side); a temporal join on event time is not", line=ln, col=cn,
                        hint="add PROCTIME() AS p_time to the streaming side and write "
                             "FOR SYSTEM_TIME AS OF s.p_time")
    table = _scanned_table(right)
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


def _scanned_table(node: LogicalNode):
    """The table under a chain of filters and projections, or None."""
    scans = [n for n in _walk(node) if not isinstance(n, (Filter, Project))]
    return getattr(scans[0], "table", None) if len(scans) == 1 else None


def _walk(node: LogicalNode) -> list[LogicalNode]:
    out, stack = [], [node]
    while stack:
        n = stack.pop()
        out.append(n)
        stack.extend(n.children())
    return out


def _column_types(expr: Expr) -> dict[str, pa.DataType]:
    out: dict[str, pa.DataType] = {}
    stack = [expr]
    while stack:
        e = stack.pop()
        if isinstance(e, Column):
            out[e.name] = e.dtype
        stack.extend(e.children())
    return out


def _key_columns(node: LogicalNode, exprs: list[Expr], prefix: str
                 ) -> tuple[LogicalNode, list[str]]:
    """Names of the key columns of one side; keys that are expressions (or casts) become
    extra columns of a projection under the join."""
    names: list[str] = []
    extra: list[tuple[str, Expr]] = []
    for i, e in enumerate(exprs):
        if isinstance(e, Column):
            names.append(e.name)
        else:
            name = f"{prefix}{i}"
            names.append(name)
            extra.append((name, e))
    if not extra:
        return node, names
    exprs_all: list[Expr] = [Column(f.type, f.name) for f in node.schema]
    fields = list(node.schema)
    for name, e in extra:
        exprs_all.append(e)
        fields.append(pa.field(name, e.dtype))
    return Project(pa.schema(fields), node.time_column, input=node, exprs=exprs_all), names


def _window_join(left: LogicalNode, right: LogicalNode, left_keys: list[str],
                 right_keys: list[str]) -> tuple[object, list[tuple[str, int]]] | None:
    """(window spec, per side (column, offset to the window end)) when an equality key
    pairs the same bound of identically windowed inputs (key columns of each side, after
    the projection computing expression keys such as a window struct's fields)."""
    lw, rw = window_columns(left), window_columns(right)
    if not lw or not rw:
        return None
    for a, b in zip(left_keys, right_keys):
        la, rb = lw.get(a), rw.get(b)
        if la is None or rb is None or la != rb:
            continue
        spec, what = la
        if getattr(spec, "kind", "") == "session" or what == "struct":
            continue  # sessions differ per side; a window struct is keyed by its fields
        if what == "start" and getattr(spec, "kind", "") == "cumulate":
            continue
        offset = {"end": 0, "time": 1, "start": getattr(spec, "size_us", 0)}[what]
        return spec, [(a, offset), (b, offset)]
    return None


def _interval(left: LogicalNode, right: LogicalNode, constraints: list[TimeConstraint],
              kind: str, rename: dict[str, str]):
    """Retention, late checks, output time column and watermark hold-back of an interval
    join, or None when some side's rows could wait forever for a partner."""
    back = {v: k for k, v in rename.items()}
    nodes = (left, right)
    bounds = (time_bounds(left), time_bounds(right))

    def col_of(side: int, joined: str) -> str:
        return joined if side == 0 else back.get(joined, joined)

    retention: list[list[tuple[str, int]]] = [[], []]
    late: list[list[tuple[str, int]]] = [[], []]
    for c in constraints:
        small = col_of(c.small_side, c.small_col)
        big = col_of(c.big_side, c.big_col)
        lateness = bounds[c.small_side].get(small)
        if lateness is not None:
            # a future row of the small side has small >= wm - lateness; it can match this
            # row only while small + offset <= big
            retention[c.big_side].append((big, lateness - c.offset_us))
        for side, column in ((c.small_side, small), (c.big_side, big)):
            lat = bounds[side].get(column)
            if lat is not None and (column, lat) not in late[side]:
                late[side].append((column, lat))
    if not retention[0] or not retention[1]:
        return None
    time_column, holdback = None, 0
    if kind == "inner":
        for side in (0, 1):
            column = nodes[side].time_column
            if column is None or column not in bounds[side]:
                continue
            joined = column if side == 0 else rename.get(column, column)
            other = []
            for c in constraints:
                if c.big_side == side and col_of(side, c.big_col) == column:
                    lat = bounds[c.small_side].get(col_of(c.small_side, c.small_col))
                    if lat is not None:
                        other.append(lat - c.offset_us)
            if other:
                time_column = joined
                holdback = max(bounds[side][column], min(other), 0)
                break
    return retention, late, time_column, holdback


__all__ = ["plan_joins", "Join", "UNKEYED_SETTING"]
