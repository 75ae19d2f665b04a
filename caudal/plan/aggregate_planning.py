"""Planning a GROUP BY over the IR, for both front ends: the projection computing what an
aggregate reads, and the aggregate node (windowed or updating) over it.

A front end translates its syntax (SQL's GROUP BY items and aggregate calls, a frame's keys
and ``.agg()`` expressions) into IR expressions and hands them to ``AggregateInput``: the
event time (``__time``), the keys, each aggregate's arguments (``__arg<i>_<j>``) and FILTER
condition (``__filter<i>``) become the columns of one ``Project`` under the aggregate, so the
operator reads plain columns. ``window_aggregate`` and ``updating_aggregate`` build the node.
Window table functions in FROM (``assign_windows``) are folded into an aggregate over them
(``find_assign``, ``strip_assign``: the aggregate assigns the windows itself).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa

from caudal.errors import PlanError
from caudal.plan.aggregates import AggCall
from caudal.plan.expressions import Call, Column, Expr, Literal, conjunction, conjuncts
from caudal.plan.functions.coerce import cast
from caudal.plan.logical import Filter, LogicalNode, Project, Scan
from caudal.plan.updating_nodes import UpdatingAggregate
from caudal.plan.window_nodes import LateSide, WindowAggregate, WindowAssign
from caudal.plan.window_reaggregate import WindowReaggregate
from caudal.plan.windows import WindowSpec
from caudal.types import TIMESTAMP, sql_name

#: the columns a window table function adds to its rows
WINDOW_COLUMNS = ("window_start", "window_end", "window_time")
#: the window column of an Arroyo-style ``GROUP BY tumble(…)``
WINDOW_STRUCT = pa.struct([pa.field("start", TIMESTAMP), pa.field("end", TIMESTAMP)])
#: the name of the event-time column computed under an aggregate
TIME = "__time"
#: ``AggCall.options["sum"]`` of an avg over integers: its state holds the sum exactly
EXACT_SUM = "exact"
#: ``AggCall.options["finish"]`` of an avg of a DECIMAL without GROUP BY: DuckDB finishes
#: it as the double nearest the exact sum, divided by the count (grouped: in long double)
UNGROUPED = "ungrouped"


def exact_avg(t: pa.DataType) -> bool:
    """Whether avg over ``t`` keeps an exact sum: integers, and DECIMALs (of at most 18
    digits their unscaled int64 values, operators.integer_sums.decimal_scale; of more, a
    decimal256 sum, integer_sums.wide_sum)."""
    return pa.types.is_integer(t) or pa.types.is_decimal(t)


def wide_decimal_sum(func: str, t: pa.DataType) -> bool:
    """Whether ``func`` over ``t`` is an avg or sum of a DECIMAL of more than 18 digits,
    whose state is a decimal256 sum (since 2026-12-07: a DOUBLE sum for avg, a wrapping
    decimal128 one for sum, before)."""
    return func in ("sum", "avg") and pa.types.is_decimal(t) and t.precision > 18


@dataclass
class AggregateInput:
    """The columns computed under an aggregate, in order: event time, keys, arguments."""

    names: list[str] = field(default_factory=list)
    exprs: list[Expr] = field(default_factory=list)

    def add(self, name: str, expr: Expr) -> None:
        self.names.append(name)
        self.exprs.append(expr)

    def add_key(self, name: str, expr: Expr) -> None:
        """A grouping key: a REAL/DOUBLE one with -0.0 made 0.0 before the shuffle and
        the hash table, where -0.0 and 0.0 differ in their bits (``group_key``)."""
        self.add(name, group_key(expr))

    def call(self, i: int, func: str, args: list[Expr], dtype: pa.DataType, distinct: bool,
             condition: Expr | None, options: dict[str, Any], text: str) -> AggCall:
        """The call of the ``i``-th aggregate, its arguments and FILTER ``condition``
        added as columns."""
        names = []
        for j, a in enumerate(args):
            same = self._same_column(a)
            if same is None:   # (an argument that is another's column is read from it:
                # median(x) and percentile_cont(0.9) ... (ORDER BY x) read one column, so
                # the updating aggregate keeps their values once)
                same = f"__arg{i}_{j}"
                self.add(same, a)
            names.append(same)
        filt = None
        if condition is not None:
            self.add(f"__filter{i}", condition)
            filt = f"__filter{i}"
        if func == "avg" and args and exact_avg(args[0].dtype) or \
                args and wide_decimal_sum(func, args[0].dtype):
            # the state of avg over integers (and DECIMALs of up to 18 digits) is an exact
            # sum (two int64 halves) since 2026-12-07, a DOUBLE sum before; sum and avg of
            # wider DECIMALs keep a decimal256 sum since then: named here, it enters the
            # job's fingerprint, so an older checkpoint of the job is refused in one line,
            # not mis-restored
            options = {**options, "sum": EXACT_SUM}
        return AggCall(func, tuple(names), dtype, distinct, filt, options, text=text)

    def _same_column(self, expr: Expr) -> str | None:
        """The argument column already computed as ``expr``, when it is a plain column."""
        if not isinstance(expr, Column):
            return None
        return next((n for n, e in zip(self.names, self.exprs)
                     if n.startswith("__arg") and isinstance(e, Column) and e.name == expr.name
                     and e.dtype.equals(expr.dtype)), None)

    def project(self, node: LogicalNode, timed: bool, keep_rows: bool = False) -> Project:
        """The projection over ``node`` (NULL-typed columns as text; ``timed``: the first
        column is the event time). ``keep_rows``: a projection that would have no column
        gets a constant one (a window's count(*) on processing time), so rows are kept."""
        if keep_rows and not self.exprs:
            self.add("__row", Literal(pa.bool_(), True))
        schema = pa.schema([pa.field(n, e.dtype if not pa.types.is_null(e.dtype)
                                     else pa.string())
                            for n, e in zip(self.names, self.exprs)])
        exprs = [cast(e, schema.field(i).type) for i, e in enumerate(self.exprs)]
        return Project(schema, TIME if timed else None, input=node, exprs=exprs)


def group_key(expr: Expr) -> Expr:
    """``expr`` as a grouping key: DuckDB groups -0.0 with 0.0 (caudal.float_order)."""
    if not pa.types.is_floating(expr.dtype):
        return expr
    return Call(expr.dtype, "float_key", (expr,))


def key_source(expr: Expr) -> Expr:
    """The expression ``group_key`` wrapped (``expr`` itself when it wrapped nothing)."""
    if isinstance(expr, Call) and expr.func == "float_key":
        return expr.args[0]
    return expr


def updating_aggregate(pre: Project, keys: list[str], calls: list[AggCall],
                       agg_names: list[str], flush_us: int | None,
                       ttl_us: int | None) -> UpdatingAggregate:
    """GROUP BY without a window over ``pre`` (an ``AggregateInput`` projection)."""
    if not keys:  # DuckDB's avg of a DECIMAL without GROUP BY (not DISTINCT) rounds its sum
        calls = [replace(c, options={**c.options, "finish": UNGROUPED})
                 if c.func == "avg" and c.args and not c.distinct and
                 pa.types.is_decimal(pre.schema.field(c.args[0]).type) else c for c in calls]
    fields = [pre.schema.field(k) for k in keys]
    fields += [pa.field(n, c.dtype) for n, c in zip(agg_names, calls)]
    timed = pre.time_column == TIME
    return UpdatingAggregate(pa.schema(fields), None, input=pre, keys=keys, aggregates=calls,
                             agg_names=agg_names, time_input=TIME if timed else None,
                             flush_us=flush_us, ttl_us=ttl_us)


def refuse_nested_rows(schema: pa.Schema) -> None:
    """Refuses rows keyed by every column (distinct rows, INTERSECT / EXCEPT [ALL]) when one
    is a STRUCT, array or MAP: no hash kernel keys by them, and the job would fail at its
    first row."""
    for f in schema:
        if pa.types.is_struct(f.type) or pa.types.is_list(f.type) or pa.types.is_map(f.type):
            raise PlanError(f"distinct rows with a {sql_name(f.type)} column ({f.name!r}) are "
                            "not supported (SELECT DISTINCT, UNION, INTERSECT, EXCEPT [ALL])",
                            hint="select its fields instead, e.g. s.a, s.b, or UNION ALL")


def distinct_rows(node: LogicalNode, flush_us: int | None,
                  ttl_us: int | None) -> UpdatingAggregate:
    """Every distinct row of ``node`` once (SELECT DISTINCT, UNION, the left side of
    INTERSECT/EXCEPT): an updating aggregate keyed by all columns, without aggregates.
    Refused for a STRUCT, array or MAP column, as GROUP BY one is (no hash kernel keys by
    them: the job failed at its first row)."""
    refuse_nested_rows(node.schema)
    if any(pa.types.is_floating(f.type) for f in node.schema):
        node = Project(node.schema, node.time_column, input=node,
                       exprs=[group_key(Column(f.type, f.name)) for f in node.schema])
    return UpdatingAggregate(node.schema, None, input=node, keys=list(node.schema.names),
                             flush_us=flush_us, ttl_us=ttl_us)


def window_aggregate(pre: Project, spec: WindowSpec, window_columns: list[tuple[str, str]],
                     keys: list[str], calls: list[AggCall], agg_names: list[str],
                     late: LateSide | None = None, upstream: Any = None,
                     key_exprs: list[Expr] | None = None) -> WindowAggregate:
    """GROUP BY a window over ``pre``: its output columns are ``window_columns`` ((name,
    what): start, end, time or struct), the keys, then the aggregates. ``upstream`` (plan.
    window_reaggregate): the windows are those of an upstream window aggregate, whose bound
    columns are among the keys (``key_exprs`` are the keys' expressions)."""
    timed = pre.time_column == TIME
    fields = [pa.field(n, WINDOW_STRUCT if what == "struct" else TIMESTAMP)
              for n, what in window_columns]
    fields += [pre.schema.field(k) for k in keys]
    fields += [pa.field(n, c.dtype) for n, c in zip(agg_names, calls)]
    # the rows' event time column (window_time); a processing-time window has none
    time_out = next((n for n, w in window_columns if w == "time"), None) if timed else None
    common = dict(input=pre, window=spec, time_input=TIME if timed else None,
                  window_columns=window_columns, keys=keys, aggregates=calls,
                  agg_names=agg_names, late=late)
    if upstream is None:
        return WindowAggregate(pa.schema(fields), time_out, **common)
    bounds = {}
    for key_name, e in zip(keys, key_exprs or []):
        what = upstream.bounds.get(e.name) if isinstance(e, Column) else None
        what = what or upstream.key_bounds.get(key_name)
        if what is not None:
            bounds[key_name] = what
    return WindowReaggregate(pa.schema(fields), time_out, upstream=upstream.spec,
                             bounds=bounds, **common)


def find_assign(node: LogicalNode) -> WindowAssign | None:
    """A window table function below filters and plain renaming projections."""
    while True:
        if isinstance(node, WindowAssign):
            return node
        if isinstance(node, Filter):
            node = node.input
        elif isinstance(node, Project) and all(isinstance(e, Column) for e in node.exprs):
            node = node.input
        else:
            return None


def strip_assign(node: LogicalNode, line: int | None = None, col: int | None = None,
                 lifted: list[Expr] | None = None) -> LogicalNode:
    """The same plan without the WindowAssign (the aggregate assigns windows itself);
    ``line``/``col``: where the grouping is written, for the error. The conditions of a
    filter that read window columns only are appended to ``lifted``, for the caller to
    apply to the aggregate's rows (which carry the window columns): one is true or not for
    all rows of a window, so filtering windows is filtering their rows (Flink's filter on
    window_start of a SESSION table function, before its aggregate)."""
    if isinstance(node, WindowAssign):
        return node.input
    if isinstance(node, Filter):
        kept = []
        for cond in conjuncts(node.predicate):
            used = cond.columns() & set(WINDOW_COLUMNS)
            if used and lifted is not None and cond.columns() <= set(WINDOW_COLUMNS):
                lifted.append(cond)
            elif used:
                raise PlanError(f"a filter on {sorted(used)[0]} and other columns before a "
                                "window aggregate is not supported", line=line, col=col,
                                hint="filter window columns in HAVING")
            else:
                kept.append(cond)
        inner = strip_assign(node.input, line, col, lifted)
        if not kept:
            return inner
        return Filter(inner.schema, inner.time_column, input=inner,
                      predicate=conjunction(kept))
    assert isinstance(node, Project)
    inner = strip_assign(node.input, line, col, lifted)
    keep = [(n, e) for n, e in zip(node.schema.names, node.exprs)
            if not (isinstance(e, Column) and e.name in WINDOW_COLUMNS)]
    schema = pa.schema([node.schema.field(n) for n, _ in keep])
    time_column = node.time_column if node.time_column in schema.names else None
    return Project(schema, time_column, input=inner, exprs=[e for _, e in keep])


def scan_below(node: LogicalNode) -> Scan | None:
    """The scan under a chain of one-input nodes, or None."""
    while not isinstance(node, Scan):
        children = node.children()
        if len(children) != 1:
            return None
        node = children[0]
    return node


def assign_windows(node: LogicalNode, window: WindowSpec, time_column: str,
                   partition: list[str], processing: bool,
                   position: tuple[int | None, int | None]
                   ) -> tuple[WindowAssign, dict[str, str]]:
    """A window table function over ``node``: each row gets ``WINDOW_COLUMNS`` (on the
    event time ``time_column``, or on arrival with ``processing``). The input's own window
    columns (a window aggregate's, cascading windows) are shadowed by the new ones, kept
    under hidden names: the renames are returned with the node."""
    node, renamed = _shadow_window_columns(node)
    time_column = renamed.get(time_column, time_column)
    partition = [renamed.get(p, p) for p in partition]
    fields = list(node.schema) + [pa.field(n, TIMESTAMP) for n in WINDOW_COLUMNS]
    assign = WindowAssign(pa.schema(fields), node.time_column if processing else time_column,
                          input=node, window=window, time_input=time_column,
                          partition=partition, position=position,
                          processing_time=processing)
    return assign, renamed


def _shadow_window_columns(node: LogicalNode) -> tuple[LogicalNode, dict[str, str]]:
    """``node`` with its columns named like the window columns renamed ``__shadowed_…``
    (a projection), and the renames; ``node`` itself when it has none."""
    renamed = {n: f"__shadowed_{n}" for n in node.schema.names if n.lower() in WINDOW_COLUMNS}
    if not renamed:
        return node, {}
    schema = pa.schema([pa.field(renamed.get(f.name, f.name), f.type) for f in node.schema])
    time_column = renamed.get(node.time_column, node.time_column) if node.time_column \
        else None
    exprs = [Column(f.type, f.name) for f in node.schema]
    return Project(schema, time_column, input=node, exprs=exprs), renamed
