"""Planning one join over the IR, for both front ends: the conditions (translated
expressions over the joined columns) sorted by what they read, filters pushed below the join,
expression keys computed by a projection under it, and the kind of join chosen.

``join_inputs`` does the first part; the caller then decides whether the right side is a
lookup table (a syntax matter: ``FOR SYSTEM_TIME AS OF``, or a table declared lookup), and
otherwise ``timed_join`` picks a window join (both inputs windowed the same way, an equality
pairing their window bounds) or an interval join (time constraints bound how long both
sides' rows can find a partner: plan.lineage gives each column's lateness), and
``updating_join`` the rest, which needs an equality key (without one its state would hold
both inputs forever, so it is refused unless the caller allows it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from caudal.errors import PlanError
from caudal.plan.expressions import Call, Column, Expr, Literal, conjunction, conjuncts
from caudal.plan.join_nodes import (
    IntervalJoin,
    TimeConstraint,
    UpdatingJoin,
    WindowJoin,
    time_term,
)
from caudal.plan.lineage import time_bounds, window_columns
from caudal.plan.logical import Filter, LogicalNode, Project
from caudal.plan.optimizer import substitute
from caudal.plan.updating_nodes import UpdatingAggregate

#: the setting that accepts a join without an equality key (unbounded state)
UNKEYED_SETTING = "allow_unkeyed_join"
_COMPARE = {"lt": "lte", "lte": "lte", "gt": "gte", "gte": "gte"}


@dataclass
class Conditions:
    """A join's conditions sorted by what they read."""

    left_only: list[Expr] = field(default_factory=list)
    right_only: list[Expr] = field(default_factory=list)
    keys: list[tuple[Expr, Expr]] = field(default_factory=list)
    residual: list[Expr] = field(default_factory=list)
    constraints: list[TimeConstraint] = field(default_factory=list)


def _sort_conditions(exprs: list[Expr], left: set[str], right: set[str], kind: str,
                     left_node: LogicalNode, right_node: LogicalNode,
                     rename: dict[str, str], push_right: bool = True) -> Conditions:
    out = Conditions()
    back = {v: k for k, v in rename.items()}
    for expr in exprs:
        for e in conjuncts(expr):
            if isinstance(e, Literal) and e.value is True:
                continue
            cols = e.columns()
            if cols and cols <= left and kind in ("inner", "right"):
                out.left_only.append(e)
                continue
            if cols and cols <= right and kind in ("inner", "left") and push_right:
                out.right_only.append(substitute(
                    e, {n: Column(_dtype(right_node, back.get(n, n)), back.get(n, n))
                        for n in cols}))
                continue
            keys = equality_keys(e, left, right)
            if keys:
                out.keys.extend(keys)
                continue
            constraint = _time_constraint(e, left, right)
            if constraint is not None:
                out.constraints.extend(constraint)
            out.residual.append(e)
    return out


def equality_keys(e: Expr, left: set[str], right: set[str]) -> list[tuple[Expr, Expr]]:
    """The (left, right) key pairs of a condition that equates an expression of the
    ``left`` columns with one of the ``right`` columns: ``a = b`` one pair, ``a IS NOT
    DISTINCT FROM b`` (or ``(a IS NULL AND b IS NULL) OR a = b``) two, which NULL matches as
    that condition says; [] for any other condition."""
    null_safe = _null_safe_pair(e)
    if null_safe is not None:
        a, b = null_safe
    elif isinstance(e, Call) and e.func == "eq" and len(e.args) == 2:
        a, b = e.args
    else:
        return []
    ca, cb = a.columns(), b.columns()
    if ca and cb and ca <= right and cb <= left:
        a, b, ca, cb = b, a, cb, ca
    if not (ca and cb and ca <= left and cb <= right):
        return []
    return _null_safe_keys(a, b) if null_safe is not None else [(a, b)]


def _null_safe_pair(e: Expr) -> tuple[Expr, Expr] | None:
    """(a, b) of ``a IS NOT DISTINCT FROM b``, or of its spelled-out form
    ``(a IS NULL AND b IS NULL) OR a = b`` (in either order), else None."""
    if not isinstance(e, Call) or len(e.args) != 2:
        return None
    if e.func == "is_not_distinct_from":
        return e.args[0], e.args[1]
    if e.func != "or":
        return None
    for both, eq in (e.args, e.args[::-1]):
        if not (isinstance(both, Call) and both.func == "and" and isinstance(eq, Call)
                and eq.func == "eq" and len(eq.args) == 2):
            continue
        tested = {str(t.args[0]) for t in both.args
                  if isinstance(t, Call) and t.func == "is_null"}
        compared = [str(_uncast(x)) for x in eq.args]
        if len(both.args) == 2 and tested == set(compared) and len(tested) == 2:
            return eq.args[0], eq.args[1]
    return None


def _uncast(e: Expr) -> Expr:
    while isinstance(e, Call) and e.func == "cast":
        e = e.args[0]
    return e


def _null_safe_keys(a: Expr, b: Expr) -> list[tuple[Expr, Expr]]:
    """Equality keys that match as ``a IS NOT DISTINCT FROM b`` (a, b of one type): whether
    each is NULL, and its value with NULL replaced by a filler of the type; [] when the type
    has no filler here (the condition then stays a residual)."""
    from caudal.plan.functions.registry import bind_call

    filler = _filler(a.dtype)
    if filler is None or a.dtype != b.dtype:
        return []
    return [(bind_call("is_null", [a]), bind_call("is_null", [b])),
            (bind_call("coalesce", [a, filler]), bind_call("coalesce", [b, filler]))]


def _filler(dtype: pa.DataType) -> Literal | None:
    """A constant of ``dtype`` (any: it stands for NULL beside an is-NULL key)."""
    t = pa.types
    if t.is_string(dtype) or t.is_large_string(dtype):
        value: Any = ""
    elif t.is_binary(dtype) or t.is_large_binary(dtype):
        value = b""
    elif t.is_boolean(dtype):
        value = False
    elif t.is_integer(dtype) or t.is_floating(dtype) or t.is_decimal(dtype) or \
            t.is_temporal(dtype):
        value = 0
    else:
        return None
    try:
        value = pa.scalar(value, dtype).as_py()
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return None
    return Literal(dtype, value)


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

@dataclass
class JoinInputs:
    """Both sides of a join ready for its node: filtered, with their key columns, the
    joined schema and the fields every join node takes (``common``)."""

    left: LogicalNode
    right: LogicalNode
    schema: pa.Schema
    common: dict[str, Any]
    constraints: list[TimeConstraint]
    rename: dict[str, str]


def join_inputs(left: LogicalNode, right: LogicalNode, kind: str, exprs: list[Expr],
                rename: dict[str, str], line: int | None = None,
                col: int | None = None, push_right: bool = True) -> JoinInputs:
    """Sort the join's conditions (``exprs``, over the joined columns, the right side's
    renamed by ``rename``): one side's go below the join, equalities become keys.
    ``push_right=False`` keeps the right side's own conditions in the residual: a temporal
    join's versioned table, whose filtered rows would otherwise make an older version
    current (Flink's FLINK-28988)."""
    left_names = set(left.schema.names)
    right_names = {rename.get(n, n) for n in right.schema.names}
    cond = _sort_conditions(exprs, left_names, right_names, kind, left, right, rename,
                            push_right)
    if cond.left_only:
        left = Filter(left.schema, left.time_column, input=left,
                      predicate=conjunction(cond.left_only))
    if cond.right_only:
        right = Filter(right.schema, right.time_column, input=right,
                       predicate=conjunction(cond.right_only))
    back = {v: k for k, v in rename.items()}

    def to_right(e: Expr) -> Expr:
        return substitute(e, {n: Column(e_type, back.get(n, n)) for n, e_type in
                              _column_types(e).items()})

    left, left_keys = key_columns(left, [k for k, _ in cond.keys], "__jl")
    right, right_keys = key_columns(right, [to_right(v) for _, v in cond.keys], "__jr")
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
    residual = conjunction(cond.residual) if cond.residual else None
    common = dict(kind=kind, left_keys=left_keys, right_keys=right_keys,
                  right_rename={n: rename.get(n, n) for n in right.schema.names},
                  output=output, residual=residual, line=line, col=col)
    return JoinInputs(left, right, pa.schema(fields), common, cond.constraints, rename)


def timed_join(inputs: JoinInputs) -> LogicalNode | None:
    """A window join or an interval join of append-only inputs, or None."""
    left, right, common = inputs.left, inputs.right, inputs.common
    if left.updating or right.updating:
        return None
    window = window_join(left, right, common["left_keys"], common["right_keys"])
    if window is not None:
        spec, ends = window
        return WindowJoin(inputs.schema, None, left=left, right=right, window_end=ends,
                          window=spec, **common)
    if inputs.constraints:
        interval = _interval(left, right, inputs.constraints, common["kind"], inputs.rename)
        if interval is not None:
            retention, late, time_column, holdback = interval
            return IntervalJoin(inputs.schema, time_column, left=left, right=right,
                                constraints=inputs.constraints, retention=retention,
                                late_checks=late, holdback_us=holdback, **common)
    return None


def updating_join(inputs: JoinInputs, allow_unkeyed: bool, ttl_us: int | None
                  ) -> UpdatingJoin:
    """The join that keeps every row of both sides (for ``ttl_us`` when set)."""
    common = inputs.common
    if not common["left_keys"] and not allow_unkeyed:
        raise PlanError(
            "a join without an equality key between two unbounded inputs would keep every "
            "row of both inputs forever", line=common["line"], col=common["col"],
            hint="join on equal columns (ON a.k = b.k), bound it in time (b.t BETWEEN a.t - "
                 "INTERVAL '1' MINUTE AND a.t), join windows on window_start and window_end,"
                 f" or accept unbounded state with SET {UNKEYED_SETTING} = true")
    return UpdatingJoin(inputs.schema, None, left=inputs.left, right=inputs.right,
                        ttl_us=ttl_us, **common)


def filtering_join(left: LogicalNode, right: LogicalNode, left_exprs: list[Expr],
                   right_exprs: list[Expr], residual: list[Expr], kind: str,
                   allow_unkeyed: bool, ttl_us: int | None, line: int | None = None,
                   col: int | None = None) -> LogicalNode:
    """A semi / anti join (``kind``) of ``left`` with ``right`` (a subquery whose columns
    are named apart from the outer ones) on ``left_exprs`` = ``right_exprs`` and the
    ``residual`` conditions: a window join when both are windowed the same way and the
    keys pair their bounds, else an updating join."""
    if not left_exprs and not allow_unkeyed:
        raise PlanError(
            "a subquery correlated without an equality would keep every row of both inputs "
            "forever", line=line, col=col,
            hint="correlate on equal columns (WHERE u.k = t.k), or accept unbounded state "
                 f"on one subtask with SET {UNKEYED_SETTING} = true")
    output = list(left.schema.names)
    left_node, left_keys = key_columns(left, left_exprs, "__jl")
    right_node, right_keys = key_columns(right, right_exprs, "__jr")
    assert not set(left_node.schema.names) & set(right_node.schema.names)
    common = dict(kind=kind, left_keys=left_keys, right_keys=right_keys,
                  right_rename={n: n for n in right_node.schema.names}, output=output,
                  residual=conjunction(residual) if residual else None, line=line, col=col)
    window = window_join(left_node, right_node, left_keys, right_keys)
    if window is not None and not (left.updating or right.updating):
        # correlated on both window bounds of identically windowed inputs: a window
        # semi / anti join (append-only, state freed when windows close), as Flink's
        spec, ends = window
        return WindowJoin(left.schema, None, left=left_node, right=right_node,
                          window_end=ends, window=spec, **common)
    return UpdatingJoin(left.schema, None, left=left_node, right=right_node, ttl_us=ttl_us,
                        **common)


def set_membership(left: LogicalNode, right: LogicalNode, anti: bool, ttl_us: int | None,
                   line: int | None = None, col: int | None = None) -> UpdatingJoin:
    """The rows of ``left`` (distinct already) that are (INTERSECT) / are not (EXCEPT) rows
    of ``right``: a semi / anti join on every column, NULL matching NULL."""
    names = list(left.schema.names)
    right_names = [f"__set{i}" for i in range(len(names))]
    right = Project(pa.schema([pa.field(n, f.type) for n, f in zip(right_names, right.schema)]),
                    None, input=right, exprs=[Column(f.type, f.name) for f in right.schema])
    return UpdatingJoin(left.schema, None, left=left, right=right,
                        kind="anti" if anti else "semi", left_keys=names,
                        right_keys=right_names, right_rename={n: n for n in right_names},
                        output=names, line=line, col=col, nulls_equal=True, ttl_us=ttl_us)


def single_row(node: LogicalNode) -> bool:
    """True for a plan that emits at most one row at a time: an aggregate without keys
    (under projections and filters)."""
    while isinstance(node, (Project, Filter)):
        node = node.input
    return isinstance(node, UpdatingAggregate) and not node.keys and bool(node.aggregates)


def scanned_table(node: LogicalNode):
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


def key_columns(node: LogicalNode, exprs: list[Expr], prefix: str
                 ) -> tuple[LogicalNode, list[str]]:
    """Names of the key columns of one side; keys that are expressions (or casts) become
    extra columns of a projection under the join, as does a column a second key reads
    again (``ON a.k = b.k AND a.k = b.j``: each key column is named once)."""
    names: list[str] = []
    extra: list[tuple[str, Expr]] = []
    for i, e in enumerate(exprs):
        if isinstance(e, Column) and e.name not in names:
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


def window_join(left: LogicalNode, right: LogicalNode, left_keys: list[str],
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
