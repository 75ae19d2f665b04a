"""GROUP BY with aggregates, planned as windowed aggregation.

Three spellings of the window, one plan:

* Arroyo: a window function among the GROUP BY items — ``tumble(width)``, ``hop(slide,
  width)``, ``session(gap)`` — usually aliased in SELECT (``tumble(…) AS window``); the
  window is a struct column with fields ``start`` and ``end``, on the input's event time
  (plan.lineage.event_time: over a window aggregate's output, its window's end - 1 µs).
  Over a table without event time the window is on processing (arrival) time; over an
  input whose event time was lost it is refused.
* Flink's legacy group windows, ``TUMBLE(ts, size)`` with ``TUMBLE_START(ts, size)`` …
  (sql.group_windows): the same struct under a hidden name.
* Flink: GROUP BY ``window_start, window_end`` of a window table function in FROM
  (sql.window_tvf), with ``window_start``, ``window_end`` and ``window_time`` columns.
  Also GROUP BY both bounds of an upstream window aggregate's output, under any name
  (plan.lineage follows renames through subqueries and views): a window aggregation over
  the same windows (plan.window_reaggregate), as Flink plans it.

The plan is ``Project`` (event time, keys, aggregate arguments and FILTER conditions as
columns) -> ``WindowAggregate`` -> ``Filter`` (HAVING) -> ``Project`` (the SELECT list, which
sees the keys, the window columns and each aggregate through ``Scope.computed``, so
``count(*) + 1`` or ``sum(x) / count(x)`` work as written).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pyarrow as pa
from sqlglot import exp

from caudal.connectors import registry as connectors
from caudal.errors import PlanError
from caudal.plan.aggregate_planning import (
    TIME,
    WINDOW_COLUMNS,
    WINDOW_STRUCT,
    AggregateInput,
    find_assign,
    key_source,
    scan_below,
    strip_assign,
    window_aggregate,
)
from caudal.plan.aggregates import (
    ACCEPTED,
    DISTINCT_IRRELEVANT,
    DISTINCT_OK,
    PAIR_STATISTICS,
    PERCENTILES,
    AggCall,
    argument_count,
    canonical,
    result_type,
)
from caudal.plan.expressions import Call, Column, Expr, conjunction
from caudal.plan.lineage import event_time, event_time_loss
from caudal.plan.logical import Filter, LogicalNode
from caudal.plan.window_nodes import LateSide
from caudal.plan.window_reaggregate import HIDDEN_WINDOW, struct_bound, upstream_window
from caudal.plan.windows import WindowSpec
from caudal.sql.group_windows import (
    GROUP_WINDOW_COLUMN,
    auxiliary_calls,
    bind_auxiliary,
    legacy_time_source,
)
from caudal.sql.scope import Scope, ScopeColumn, negative_ordinal, position
from caudal.sql.window_specs import group_by_window, legacy_time_argument, window_call
from caudal.types import TIMESTAMP, sql_name


@dataclass
class AggregateScope(Scope):
    """The scope after GROUP BY: group keys, window columns and computed aggregates. A
    column of the input that is neither grouped nor aggregated gets a precise error."""

    input_scope: Scope | None = None
    #: grouped columns computed after the aggregate, a window struct rebuilt from its
    #: bounds: lowercase name -> (lowercase relation or None, expression)
    derived: dict[str, tuple[str | None, Expr]] = field(default_factory=dict)

    def relation_names(self) -> set[str]:
        return super().relation_names() | {r for r, _ in self.derived.values() if r}

    def _derived(self, node: exp.Column) -> Expr | None:
        relation, expr = self.derived.get(node.name.lower(), (None, None))
        if expr is None or (node.table and relation and node.table.lower() != relation):
            return None
        return expr

    def resolve_column(self, node: exp.Column) -> Expr:
        try:
            found = super().resolve_column(node)
        except PlanError:
            derived = self._derived(node)
            if derived is not None:
                return derived
            if self.input_scope is not None:
                try:
                    self.input_scope.resolve_column(node)
                except PlanError:
                    raise
                else:
                    ln, col = position(node)
                    raise PlanError(f"column {node.name!r} must appear in GROUP BY or be "
                                    f"used in an aggregate function", line=ln, col=col,
                                    hint=f"add {node.name} to GROUP BY, or aggregate it, "
                                         f"e.g. max({node.name})") from None
            raise
        return found if found is not None else self._derived(node)  # type: ignore


# ---- finding things in the SELECT ---------------------------------------------------------


def _is_aggregate(node: exp.Expression) -> bool:
    from caudal.sql.select_items import is_aggregate

    return is_aggregate(node)


def null_treatment(select: exp.Select) -> exp.Select:
    """``agg(x IGNORE NULLS)`` / ``agg(x RESPECT NULLS)`` (Flink, BigQuery) in the terms the
    planner knows: array_agg's IGNORE NULLS is a FILTER (WHERE x IS NOT NULL); the other
    aggregates skip NULLs already, so IGNORE NULLS changes nothing and RESPECT NULLS, which
    would, is refused (as is IGNORE NULLS on a non-aggregate)."""
    wrappers = (exp.IgnoreNulls, exp.RespectNulls)
    if not any(isinstance(n, wrappers) for n in select.walk()):
        return select

    out = select.copy()
    for node in list(out.find_all(*wrappers)):
        ignore = isinstance(node, exp.IgnoreNulls)
        words = "IGNORE NULLS" if ignore else "RESPECT NULLS"
        # sqlglot puts the words around the call, or around its argument (inside an
        # ORDER BY when one follows)
        owner = node.parent
        while isinstance(owner, exp.Order):
            owner = owner.parent
        if _is_aggregate(node.this):
            call, target = node.this, node
        elif owner is not None and _is_aggregate(owner):
            call = target = owner
            node.replace(node.this)
        else:
            ln, col = position(node)
            raise PlanError(f"{words} applies to an aggregate", line=ln, col=col)
        name = (call.name if isinstance(call, exp.Anonymous) else call.sql_name()).lower()
        is_array_agg = isinstance(call, exp.ArrayAgg) or name == "array_agg"
        if is_array_agg and ignore:
            arg = call.this if not isinstance(call, exp.Anonymous) else call.expressions[0]
            value = arg.this if isinstance(arg, exp.Order) else arg
            condition = exp.Not(this=exp.Is(this=value.copy(), expression=exp.Null()))
            replacement: exp.Expression = exp.Filter(this=call.copy(),
                                                     expression=exp.Where(this=condition))
        elif is_array_agg or ignore:  # what the aggregate does anyway
            replacement = call.copy()
        else:
            ln, col = position(call)
            raise PlanError(f"{name}() skips NULLs; RESPECT NULLS is not supported", line=ln,
                            col=col)
        target.replace(replacement)
    # FILTER of an aggregate that IGNORE NULLS turned into a FILTER: one condition
    for node in list(out.find_all(exp.Filter)):
        inner = node.this
        if isinstance(inner, exp.Filter):
            both = exp.and_(inner.expression.this, node.expression.this)
            node.replace(exp.Filter(this=inner.this, expression=exp.Where(this=both)))
    return out


def collect_aggregates(nodes: list[exp.Expression]) -> list[exp.Expression]:
    """The aggregate calls (with their FILTER) in expressions, outermost first, once each."""
    found: dict[str, exp.Expression] = {}

    def visit(node: exp.Expression) -> None:
        if isinstance(node, exp.Window):
            return  # an OVER(...) window function: rejected when translated
        if isinstance(node, exp.Filter) and _is_aggregate(node.this):
            found.setdefault(_key(node), node)
            return
        if _is_aggregate(node):
            found.setdefault(_key(node), node)
            return
        for child in node.iter_expressions():
            visit(child)

    for n in nodes:
        visit(n)
    return list(found.values())


def _key(node: exp.Expression) -> str:
    return node.sql(dialect="postgres")


def _resolve_group_item(item: exp.Expression, select: exp.Select,
                        scope: Scope) -> exp.Expression:
    """A GROUP BY item as an expression: ordinals and SELECT aliases are looked up (an
    input column of the same name wins, as in PostgreSQL)."""
    ordinal = negative_ordinal(item)
    if ordinal is not None or (isinstance(item, exp.Literal) and not item.is_string):
        index = ordinal if ordinal is not None else int(item.this)
        if not 1 <= index <= len(select.expressions):
            ln, col = position(item)
            raise PlanError(f"GROUP BY {index} is not a SELECT item", line=ln, col=col,
                            hint=f"the SELECT list has {len(select.expressions)} item(s)")
        chosen = select.expressions[index - 1]
        return chosen.this if isinstance(chosen, exp.Alias) else chosen
    if isinstance(item, exp.Column) and not item.table:
        try:
            scope.resolve_column(item)
            return item
        except PlanError:
            for chosen in select.expressions:
                if isinstance(chosen, exp.Alias) and chosen.alias.lower() == item.name.lower():
                    return chosen.this
            raise
    return item


# ---- the aggregate calls ------------------------------------------------------------------


@dataclass
class _Agg:
    node: exp.Expression
    func: str
    args: list[Expr]
    distinct: bool
    filter: Expr | None
    options: dict
    dtype: pa.DataType


def _translate_aggregate(node: exp.Expression, scope: Scope, event_time: bool) -> _Agg:
    from caudal.sql.expressions import translate

    ln, col = position(node)
    condition = None
    call = node
    if isinstance(node, exp.Filter):
        call = node.this
        where = node.expression
        condition = translate(where.this if isinstance(where, exp.Where) else where, scope)
        if not (pa.types.is_boolean(condition.dtype) or pa.types.is_null(condition.dtype)):
            raise PlanError(f"FILTER needs a boolean condition, got {sql_name(condition.dtype)}",
                            line=ln, col=col)
    within = None
    if isinstance(call, exp.WithinGroup):  # percentile_cont(p) WITHIN GROUP (ORDER BY x)
        within, call = call.expression, call.this
    raw = call.name if isinstance(call, exp.Anonymous) else type(call).__name__
    if isinstance(call, exp.Anonymous):
        from caudal.plan.python_udaf import find_udaf

        udaf = find_udaf(call.name)
        if udaf is not None:
            return _udaf_call(node, udaf, list(call.expressions), condition, scope)
    func = canonical(str(raw))
    if func is None:
        raise PlanError(f"aggregate {str(raw).lower()}() is not supported",
                        line=ln, col=col, hint=f"accepted: {ACCEPTED}")
    distinct = False
    options: dict = {}
    order_key: exp.Expression | None = None
    if isinstance(call, exp.Anonymous):
        arg_nodes = list(call.expressions)
        if arg_nodes and isinstance(arg_nodes[0], exp.Distinct):
            # listagg(DISTINCT x, sep): the parser puts every argument under the DISTINCT
            distinct = True
            arg_nodes = list(arg_nodes[0].expressions) + arg_nodes[1:]
    else:
        this = call.this
        if isinstance(this, exp.Order):
            # array_agg(x ORDER BY k [DESC] [NULLS FIRST|LAST])
            ordering = this.expressions
            if func != "array_agg" or len(ordering) != 1:
                raise PlanError(f"ORDER BY inside {func}() is not supported" if
                                func != "array_agg" else
                                "array_agg() takes one ORDER BY key", line=ln, col=col,
                                hint="array_agg(x ORDER BY k [DESC])")
            order_key = ordering[0].this
            options["descending"] = bool(ordering[0].args.get("desc"))
            options["nulls_first"] = bool(ordering[0].args.get("nulls_first"))
            this = this.this
        if isinstance(this, exp.Distinct):
            distinct = True
            arg_nodes = list(this.expressions)
        elif isinstance(this, exp.Star) or this is None:
            arg_nodes = []
        else:
            arg_nodes = [this]
        if func in PAIR_STATISTICS and call.args.get("expression") is not None:
            arg_nodes.append(call.expression)
    if func in PERCENTILES:
        arg_nodes, options["fraction"], desc = _percentile_arguments(func, arg_nodes, within,
                                                                     ln, col)
        if desc:  # percentile_cont(p) WITHIN GROUP (ORDER BY x DESC)
            options["descending"] = True
    elif within is not None:
        raise PlanError(f"{func}() takes no WITHIN GROUP", line=ln, col=col,
                        hint="WITHIN GROUP (ORDER BY x) goes with percentile_cont(p) and "
                             "percentile_disc(p)")
    if func == "string_agg":
        sep = call.args.get("separator") if not isinstance(call, exp.Anonymous) else (
            arg_nodes.pop() if len(arg_nodes) == 2 else None)
        if sep is None:  # DuckDB's and Flink's default
            sep = exp.Literal.string(",")
        if not (isinstance(sep, exp.Literal) and sep.is_string):
            raise PlanError("string_agg() separator must be a constant text", line=ln,
                            col=col, hint="string_agg(x, ', ')")
        options["separator"] = sep.this
    for a in arg_nodes:
        for sub in a.walk():
            if _is_aggregate(sub):
                sl, sc = position(sub)
                raise PlanError("aggregate calls cannot be nested", line=sl, col=sc,
                                hint="compute the inner aggregate in a subquery")
    if func == "count" and len(arg_nodes) > 1:
        raise PlanError("count() takes one argument", line=ln, col=col,
                        hint="count(*), count(x) or count(DISTINCT x)")
    least, most = argument_count(func)
    if func != "count" and not least <= len(arg_nodes) <= most:
        wanted = "one argument" if most == 1 else f"{most} arguments"
        raise PlanError(f"{func}() takes {wanted}, got {len(arg_nodes)}", line=ln, col=col,
                        hint=f"accepted: {ACCEPTED}")
    args = [translate(a, scope) for a in arg_nodes]
    if order_key is not None:
        if any(_is_aggregate(sub) for sub in order_key.walk()):
            raise PlanError("aggregate calls cannot be nested", line=ln, col=col)
        args.append(translate(order_key, scope))
    if distinct:
        if func in DISTINCT_IRRELEVANT:
            distinct = False
        elif func not in DISTINCT_OK:
            raise PlanError(f"{func}(DISTINCT …) is not supported", line=ln, col=col,
                            hint="DISTINCT is accepted in count, sum and avg")
        nested = [a.dtype for a in args if pa.types.is_struct(a.dtype) or
                  pa.types.is_list(a.dtype) or pa.types.is_map(a.dtype)]
        if distinct and nested:  # no hash kernel keys by them: the job failed at its first row
            raise PlanError(f"{func}(DISTINCT …) of a {sql_name(nested[0])} value is not "
                            "supported", line=ln, col=col,
                            hint="count the distinct values of its fields, e.g. s.a, s.b")
    if func in ("first_value", "last_value") and not event_time:
        raise PlanError(f"{func}() orders by event time, and this window is on processing "
                        "time", line=ln, col=col,
                        hint="declare WATERMARK FOR … in the source table")
    try:
        dtype = result_type(func, [a.dtype for a in args])
    except PlanError as e:
        raise e.with_position(ln, col) from None
    return _Agg(node, func, args, distinct, condition, options, dtype)


def _percentile_arguments(func: str, arg_nodes: list[exp.Expression],
                          within: exp.Order | None, ln: int | None,
                          col: int | None) -> tuple[list[exp.Expression], float, bool]:
    """The value, the fraction and whether the order is descending, of a percentile in any
    of its spellings: median(x), percentile_cont(p) WITHIN GROUP (ORDER BY x [DESC]),
    approx_percentile_cont(x, p), quantile_cont(x, p). DESC (continuous only) is kept as
    such, not as the fraction 1 - p: DuckDB interpolates from the other end, and the two
    round differently."""
    example = f"{func}(0.5) WITHIN GROUP (ORDER BY x)"
    if func == "median":
        if within is not None:
            raise PlanError("median() takes no WITHIN GROUP", line=ln, col=col,
                            hint="median(x), or percentile_cont(0.5) WITHIN GROUP (ORDER BY x)")
        return arg_nodes, 0.5, False
    if within is not None:
        if len(arg_nodes) != 1 or len(within.expressions) != 1:
            raise PlanError(f"{func}() WITHIN GROUP takes one fraction and one ORDER BY key",
                            line=ln, col=col, hint=example)
        fraction_node, ordered = arg_nodes[0], within.expressions[0]
        value, descending = ordered.this, bool(ordered.args.get("desc"))
    elif len(arg_nodes) == 2:
        value, fraction_node, descending = arg_nodes[0], arg_nodes[1], False
    else:
        raise PlanError(f"{func}() needs a fraction and a value", line=ln, col=col,
                        hint=example)
    fraction = _fraction(fraction_node)
    if fraction is None:
        raise PlanError(f"{func}() takes a constant fraction between 0 and 1", line=ln,
                        col=col, hint=example)
    if descending:
        if func == "percentile_disc":
            raise PlanError("percentile_disc() WITHIN GROUP (ORDER BY x DESC) is not "
                            "supported", line=ln, col=col,
                            hint="order ascending and take the fraction from the other end")
    return [value], fraction, descending


def _fraction(node: exp.Expression) -> float | None:
    if isinstance(node, exp.Literal) and not node.is_string:
        value = float(node.this)
        return value if 0.0 <= value <= 1.0 else None
    return None


def _udaf_call(node: exp.Expression, udaf, arg_nodes: list[exp.Expression],
               condition: Expr | None, scope: Scope) -> _Agg:
    """A call of a Python UDAF: its arguments cast to the declared types."""
    from caudal.plan.functions.coerce import cast
    from caudal.sql.expressions import translate

    ln, col = position(node)
    for a in arg_nodes:
        if any(_is_aggregate(sub) for sub in a.walk()):
            raise PlanError("aggregate calls cannot be nested", line=ln, col=col,
                            hint="compute the inner aggregate in a subquery")
    args = [translate(a, scope) for a in arg_nodes]
    problem = getattr(udaf, "arity_problem", lambda n: None)(len(args))
    if problem is not None:
        raise PlanError(problem, line=ln, col=col)
    if udaf.args is not None:
        if len(args) != len(udaf.args):
            raise PlanError(f"{udaf.name}() takes {len(udaf.args)} argument(s), got "
                            f"{len(args)}", line=ln, col=col)
        args = [cast(a, t) for a, t in zip(args, udaf.args)]
    return _Agg(node, "udaf", args, False, condition, {"udaf": udaf}, udaf.returns)


# ---- the plan -----------------------------------------------------------------------------


def _late_side(planner, node: LogicalNode, scope: Scope,
               pre: AggregateInput) -> LateSide | None:
    scan = scan_below(node)
    if scan is None:
        return None
    policy = scan.table.options.get("late_data", "drop")
    if policy == "drop":
        return None
    if not policy.startswith("side:"):
        raise PlanError(f"late_data = {policy!r} in table {scan.table.name!r}",
                        line=scan.table.line, hint="accepted: drop, side:<table>")
    name = policy[len("side:"):].strip()
    spec = planner.catalog.tables.get(name.lower())
    if spec is None:
        raise PlanError(f"late_data names unknown table {name!r}", line=scan.table.line,
                        hint="CREATE TABLE it first (with a sink connector)")
    sink_cls = connectors.sink_class(spec)
    connectors.check_options(spec, sink_cls)
    sink_cls.validate(spec)
    wanted = spec.schema.names if spec.schema is not None else [c.name for c in scope.columns]
    columns, names = [], []
    for i, n in enumerate(wanted):
        matches = [c for c in scope.columns if c.name.lower() == n.lower()]
        if not matches:
            raise PlanError(f"late data table {spec.name!r} has column {n!r}, which "
                            f"{scan.table.name!r} does not have", line=spec.line,
                            hint="its columns must be columns of the source")
        c = matches[0]
        expr: Expr = Column(c.dtype, c.physical)
        if spec.schema is not None:
            from caudal.plan.functions.coerce import cast

            expr = cast(expr, spec.schema.field(n).type)
        columns.append(f"__late{i}")
        names.append(n)
        pre.add(f"__late{i}", expr)
    types = [e.dtype for e in pre.exprs[-len(columns):]] if columns else []
    table = dataclasses.replace(spec, schema=pa.schema([pa.field(n, t)
                                                        for n, t in zip(names, types)]))
    return LateSide(table, columns, names)


def aggregate_call(i: int, agg: _Agg, node: exp.Expression, pre: AggregateInput) -> AggCall:
    """The call of the ``i``-th aggregate: its arguments and FILTER become columns of
    ``pre`` (plan.aggregate_planning)."""
    return pre.call(i, agg.func, agg.args, agg.dtype, agg.distinct, agg.filter, agg.options,
                    _key(node))


def bind_group_keys(key_nodes: list[exp.Expression], scope: Scope, taken: set[str],
                    computed: dict[str, Expr], visible: list[ScopeColumn],
                    reject_nested: bool = False) -> tuple[list[str], list[Expr]]:
    """Translate GROUP BY items into the key columns computed before the aggregate.

    A plain column keeps its name (unless ``taken``), anything else is ``__key<i>``; each key
    is registered in ``computed`` under its SQL text, so SELECT and HAVING find it, and a
    plain column stays visible under its own name (and relation) in ``visible``.
    """
    from caudal.sql.expressions import translate

    names: list[str] = []
    exprs: list[Expr] = []
    for i, key_node in enumerate(key_nodes):
        expr = translate(key_node, scope)
        if reject_nested and (pa.types.is_struct(expr.dtype) or pa.types.is_list(expr.dtype)
                              or pa.types.is_map(expr.dtype)):
            ln, col = position(key_node)
            raise PlanError(f"GROUP BY a {sql_name(expr.dtype)} value is not supported",
                            line=ln, col=col, hint="group by its fields, e.g. s.a, s.b")
        name = key_node.name if isinstance(key_node, exp.Column) and \
            isinstance(expr, Column) else f"__key{i}"
        if name.lower() in taken:
            name = f"__key{i}"
        taken.add(name.lower())
        names.append(name)
        exprs.append(expr)
        computed[_key(key_node)] = Column(expr.dtype, name)
        if isinstance(key_node, exp.Column):
            source = next((c for c in scope.columns if c.name.lower() == key_node.name.lower()
                           and (not key_node.table or (c.relation or "").lower()
                                == key_node.table.lower())), None)
            visible.append(ScopeColumn(source.relation if source else None, key_node.name,
                                       expr.dtype, name))
    return names, exprs


def plan_aggregate(planner, select: exp.Select, node: LogicalNode,
                   scope: Scope) -> tuple[LogicalNode, Scope] | None:
    """Plan the GROUP BY / aggregates of ``select`` over ``node`` (after WHERE) when they
    have a window; None when they have none: an updating aggregate, which the planner hands
    to sql.updating_aggregate (so that module, which builds on this one, is not imported
    from here)."""
    from caudal.sql.expressions import translate

    group = select.args.get("group")
    raw_items = list(group.expressions) if group is not None else []
    items = [_resolve_group_item(i, select, scope) for i in raw_items]
    windows = [i for i in items if window_call(i)]
    _check_selected_windows(select, items)
    assign = find_assign(node)
    tvf_items = []
    if assign is not None:
        for i in items:
            if isinstance(i, exp.Column):
                resolved = scope.resolve_column(i)
                if isinstance(resolved, Column) and resolved.name in WINDOW_COLUMNS:
                    tvf_items.append((i, resolved.name))
    having = select.args.get("having")
    auxiliary = auxiliary_calls(list(select.expressions) +
                                ([having.this] if having is not None else []))
    legacy = legacy_time_argument(windows[0]) if len(windows) == 1 else None
    if auxiliary and legacy is None:  # TUMBLE_START(…) without GROUP BY TUMBLE(ts, …)
        bind_auxiliary(auxiliary, None, None, GROUP_WINDOW_COLUMN, scope, {})
    upstream = None
    if not windows and not tvf_items:
        grouped = [r.name for r in (scope.resolve_column(i) for i in items
                                    if isinstance(i, exp.Column)) if isinstance(r, Column)]
        upstream = upstream_window(node, grouped)
        if upstream is None:
            return None
    if len(windows) > 1 or (windows and tvf_items):
        ln, col = position(windows[-1] if len(windows) > 1 else windows[0])
        raise PlanError("GROUP BY has more than one window", line=ln, col=col,
                        hint="group by one window function (or window_start, window_end)")

    window_columns: list[tuple[str, str]] = []
    #: conditions on the window columns only, of a filter over the window table function
    lifted: list[Expr] = []
    computed: dict[str, Expr] = {}
    visible: list[ScopeColumn] = []
    if windows:
        call = windows[0]
        spec = group_by_window(call, scope)
        if legacy is not None:  # Flink: GROUP BY TUMBLE(ts, size)
            time_source = legacy_time_source(legacy, call, node, scope)
        else:  # Arroyo: GROUP BY tumble(size), on the input's event time
            time_source = event_time(node)
        if time_source is None and legacy is None:
            loss = event_time_loss(node)
            if loss is not None:
                ln, col = position(call)
                raise PlanError(f"{window_call(call)}() over an input without event time: "
                                f"{loss}", line=ln, col=col,
                                hint="a window over a window aggregate groups by the "
                                     "event time its rows carry (window end - 1 µs)")
        time_input = TIME if time_source is not None else None
        keys_nodes = [i for i in items if i is not call]
        name = "window" if legacy is None else GROUP_WINDOW_COLUMN
        for chosen in select.expressions:
            if isinstance(chosen, exp.Alias) and _key(chosen.this) == _key(call):
                name = chosen.alias
                break
        window_columns = [(name, "struct")]
        computed[_key(call)] = Column(WINDOW_STRUCT, name)
        visible.append(ScopeColumn(None, name, WINDOW_STRUCT, name))
        if legacy is not None:
            bind_auxiliary(auxiliary, call, time_source, name, scope, computed)
    elif upstream is not None:  # the bounds of an upstream window: plan.window_reaggregate
        spec = upstream.panes
        time_input = TIME
        # a grouped window struct is keyed by its bounds and rebuilt after the aggregate
        # (Acero groups by no struct)
        struct_items = [i for i in items if isinstance(i, exp.Column) and
                        getattr(scope.resolve_column(i), "name", None) in upstream.structs]
        keys_nodes = [i for i in items if not any(i is s for s in struct_items)]
        window_columns = list(HIDDEN_WINDOW)
    else:
        names = {n for _, n in tvf_items}
        if not {"window_start", "window_end"} <= names:
            missing = sorted({"window_start", "window_end"} - names)[0]
            ln, col = position(tvf_items[0][0])
            raise PlanError(f"GROUP BY of a window table function needs window_start and "
                            f"window_end ({missing} is missing)", line=ln, col=col,
                            hint="GROUP BY window_start, window_end[, keys]")
        spec = assign.window
        time_input = None if assign.processing_time else assign.time_input
        node = strip_assign(node, *position(group), lifted=lifted)
        keys_nodes = [i for i in items if not any(i is t for t, _ in tvf_items)]
        window_columns = [("window_start", "start"), ("window_end", "end"),
                          ("window_time", "time")]
        relation = next((c.relation for c in scope.columns if c.name == "window_start"), None)
        for n in WINDOW_COLUMNS:
            visible.append(ScopeColumn(relation, n, TIMESTAMP, n))

    # keys
    pre = AggregateInput()
    if upstream is not None:
        pre.add(TIME, upstream.time_expr())
    elif windows and time_source is not None:
        pre.add(TIME, time_source)
    elif time_input is not None:
        pre.add(TIME, Column(node.schema.field(time_input).type, time_input))
    taken = {n.lower() for n, _ in window_columns}
    key_names, key_exprs = bind_group_keys(keys_nodes, scope, taken, computed, visible,
                                           reject_nested=True)
    derived: dict[str, tuple[str | None, Expr]] = {}
    if upstream is not None:
        for item in struct_items:
            struct = scope.resolve_column(item)
            parts = []
            for bound in ("start", "end"):
                key = f"__{struct.name}_bound_{bound}"
                key_names.append(key)
                key_exprs.append(struct_bound(struct, bound))
                upstream.key_bounds[key] = bound
                parts.append(Column(TIMESTAMP, key))
            rebuilt = Call(struct.dtype, "named_struct", tuple(parts),
                           {"names": ("start", "end")})
            computed[_key(item)] = rebuilt
            relation = next((c.relation for c in scope.columns if c.physical == struct.name),
                            None)
            derived[item.name.lower()] = ((relation or "").lower() or None, rebuilt)
    for name, expr in zip(key_names, key_exprs):
        pre.add_key(name, expr)
    if assign is not None and spec.kind == "session" and tvf_items:
        partition = set(assign.partition)
        grouped = {e.name for e in map(key_source, pre.exprs[1 if time_input else 0:])
                   if isinstance(e, Column)}
        if partition != grouped or len(keys_nodes) != len(partition):
            ln, col = position(group)
            raise PlanError("a SESSION window groups by its PARTITION BY columns",
                            line=ln, col=col,
                            hint="GROUP BY window_start, window_end, "
                                 + ", ".join(assign.partition or ["(nothing else)"]))

    # aggregates
    agg_nodes = collect_aggregates(list(select.expressions) +
                                   ([having.this] if having is not None else []))
    calls: list[AggCall] = []
    agg_names: list[str] = []
    for i, agg_node in enumerate(agg_nodes):
        agg = _translate_aggregate(agg_node, scope, time_input is not None)
        name = f"__agg{i}"
        calls.append(aggregate_call(i, agg, agg_node, pre))
        agg_names.append(name)
        computed[_key(agg_node)] = Column(agg.dtype, name)

    late = None if upstream is not None else _late_side(planner, node, scope, pre)
    agg_node_plan = window_aggregate(
        pre.project(node, time_input is not None, keep_rows=True), spec, window_columns,
        key_names, calls, agg_names, late, upstream, key_exprs)

    post_scope = AggregateScope(columns=visible, computed=computed, input_scope=scope,
                                derived=derived)
    result: LogicalNode = agg_node_plan
    if lifted:
        result = Filter(result.schema, result.time_column, input=result,
                        predicate=conjunction(lifted))
    if having is not None:
        predicate = translate(having.this, post_scope)
        if not (pa.types.is_boolean(predicate.dtype) or pa.types.is_null(predicate.dtype)):
            ln, col = position(having.this)
            raise PlanError(f"HAVING needs a boolean condition, got {sql_name(predicate.dtype)}",
                            line=ln, col=col)
        result = Filter(result.schema, result.time_column, input=result, predicate=predicate)
    return planner.plan_projection(select.expressions, result, post_scope)


def _check_selected_windows(select: exp.Select, items: list[exp.Expression]) -> None:
    """A window call in SELECT (``tumble(…) AS w``) must be one of the GROUP BY items; the
    usual slip: ``GROUP BY window`` names an input column ``window`` (a column of the input
    wins over a SELECT alias), so the window in SELECT is grouped by nothing."""
    grouped = {_key(i) for i in items}
    for chosen in select.expressions:
        for sub in chosen.walk():
            if window_call(sub) and _key(sub) not in grouped:
                ln, col = position(sub)
                alias = f" AS {chosen.alias}" if isinstance(chosen, exp.Alias) else ""
                raise PlanError(f"{sub.sql(dialect='postgres')}{alias} in SELECT is not "
                                f"grouped by", line=ln, col=col,
                                hint="GROUP BY it, by its alias or position; an input "
                                     "column of the same name as the alias wins, so give "
                                     "the window another alias")


__all__ = ["plan_aggregate", "collect_aggregates", "AggregateScope", "WindowSpec"]
