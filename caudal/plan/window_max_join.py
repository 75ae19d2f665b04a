"""Recognize "the rows that carry their window's maximum" (Nexmark q7) and plan it as one
windowed operator that keeps a few rows per window (operators.window_max_join) instead of
an interval join buffering every row of a window until its maximum is known.

The shape users write (Nexmark's q7, in Flink's and Arroyo's suites alike)::

    SELECT B.* FROM bid B JOIN (
      SELECT max(price) AS maxprice, window_end AS t
      FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
      GROUP BY window_start, window_end) B1
    ON B.price = B1.maxprice
    WHERE B.date_time BETWEEN B1.t - INTERVAL '10' SECOND AND B1.t

is planned by plan.join_planning as an inner ``IntervalJoin`` whose left input is the rows and whose
right input is a keyless tumbling ``WindowAggregate`` with the single aggregate ``max``
over the same rows. ``fuse_window_max_joins`` replaces it when all of this holds, and leaves
the plan alone otherwise:

* both inputs are filters and projections of one scan of the same table, with the same
  filters, and the join key of the rows and the argument of ``max`` are the same expression
  of it, as are the rows' time column and the window's time;
* ``max`` is plain (no DISTINCT, no FILTER, no late-rows table) over an integer column;
* every non-key condition compares the rows' time with a bound of the window (start, end
  or window_time) plus or minus a constant, and together they put the rows' time in
  ``[end + lo, end + hi]`` with ``-size <= lo <= hi <= 0``: a row can then only match its
  own window or, exactly at its end, the previous one;
* the right side's columns used above are the maximum or window bounds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from caudal.plan.expressions import Call, Column, Expr, Literal
from caudal.plan.join_nodes import IntervalJoin, time_term
from caudal.plan.logical import Filter, LogicalNode, Project, Scan, rewrite_bottom_up
from caudal.plan.physical import OperatorSpec
from caudal.plan.physical_planner import LOWERINGS, PhysicalPlanner
from caudal.plan.window_nodes import WindowAggregate
from caudal.plan.windows import WindowSpec

_BOUNDS = {"start": None, "end": 0, "time": -1}  # a window column's offset from the end
_FLIP = {"lt": "gt", "lte": "gte", "gt": "lt", "gte": "lte"}


@dataclass(eq=False)
class WindowMaxJoin(LogicalNode):
    """The rows of ``input`` whose ``value_column`` equals the maximum of their tumbling
    window (or, exactly at its end, the previous window's), with time in
    ``[end + lo_us, end + hi_us]`` of the matched window."""

    input: LogicalNode = None  # type: ignore[assignment]
    window: WindowSpec = None  # type: ignore[assignment]
    time_input: str = ""
    value_column: str = ""
    lo_us: int = 0
    hi_us: int = 0
    #: per output column: ("row", input column) or ("max" | "start" | "end" | "time", None)
    outputs: list[tuple[str, str | None]] = field(default_factory=list)
    holdback_us: int = 0

    def children(self) -> list[LogicalNode]:
        return [self.input]

    def input_columns(self) -> set[str]:
        return {c for what, c in self.outputs if what == "row" and c} | {
            self.time_input, self.value_column}

    def prune_inputs(self, required: set[str] | None) -> list[set[str] | None]:
        if required is not None:
            keep = [i for i, n in enumerate(self.schema.names) if n in required]
            if not keep:
                keep = [0]
            self.outputs = [self.outputs[i] for i in keep]
            self.schema = pa.schema([self.schema.field(i) for i in keep])
            if self.time_column not in self.schema.names:
                self.time_column = None
        return [self.input_columns()]

    def describe(self) -> str:
        return (f"WindowMaxJoin {self.window} on {self.time_input}: rows whose "
                f"{self.value_column} = the window's max, time in [end"
                f"{self.lo_us:+d}us, end{self.hi_us:+d}us] (keeps the rows equal to the "
                f"running max)")


def fuse_window_max_joins(node: LogicalNode) -> LogicalNode:
    """Replace every interval join of the recognized shape (module docstring)."""
    return rewrite_bottom_up(node, lambda n: (
        _fuse(n) or n) if isinstance(n, IntervalJoin) else n)


# ---- recognition ------------------------------------------------------------------------

@dataclass
class _Lineage:
    """A chain of filters and projections over a scan: the scan's identity, its filters
    and each output column, as text over the scan's columns."""

    scan: str
    filters: frozenset[str]
    columns: dict[str, str]


def _lineage(node: LogicalNode) -> _Lineage | None:
    if isinstance(node, Scan):
        t = node.table
        ident = repr((t.name, t.connector, sorted(t.options.items()), t.event_time,
                      t.watermark_delay_us, str(t.schema), sorted(t.computed)))
        return _Lineage(ident, frozenset(), {n: f"[{n}]" for n in node.schema.names})
    if isinstance(node, Filter):
        below = _lineage(node.input)
        if below is None:
            return None
        return _Lineage(below.scan, below.filters | {_text(node.predicate, below.columns)},
                        below.columns)
    if isinstance(node, Project):
        below = _lineage(node.input)
        if below is None:
            return None
        return _Lineage(below.scan, below.filters, {
            n: _text(e, below.columns) for n, e in zip(node.schema.names, node.exprs)})
    return None


def _text(expr: Expr, columns: dict[str, str]) -> str:
    """An expression as text with its columns replaced by their definitions (and types)."""
    if isinstance(expr, Column):
        return columns.get(expr.name, f"?{expr.name}")
    if isinstance(expr, Literal):
        return f"{expr.value!r}::{expr.dtype}"
    if isinstance(expr, Call):
        args = ", ".join(_text(a, columns) for a in expr.args)
        return f"{expr.func}({args}; {sorted(expr.options.items())!r})::{expr.dtype}"
    return f"<{type(expr).__name__}>"


def _window_side(node: LogicalNode) -> tuple[WindowAggregate, dict[str, str]] | None:
    """The window aggregate under projections of plain columns, and what each output column
    is in its terms (an output name of the aggregate)."""
    mapping: dict[str, str] | None = None
    while isinstance(node, Project):
        if not all(isinstance(e, Column) for e in node.exprs):
            return None
        here = {n: e.name for n, e in zip(node.schema.names, node.exprs)}  # type: ignore
        mapping = here if mapping is None else {
            k: here[v] for k, v in mapping.items() if v in here}
        node = node.input
    if not isinstance(node, WindowAggregate):
        return None
    if mapping is None:
        mapping = {n: n for n in node.schema.names}
    return node, mapping


def _conjuncts(expr: Expr | None) -> list[Expr]:
    if expr is None:
        return []
    if isinstance(expr, Call) and expr.func == "and":
        return [c for a in expr.args for c in _conjuncts(a)]
    return [expr]


def _range(residual: Expr | None, row_time: str, bounds: dict[str, int]
           ) -> tuple[int, int] | None:
    """The conditions as ``end + lo <= row_time <= end + hi``, or None if one is anything
    else. ``bounds``: the joined names of window bound columns -> their offset from end."""
    lo, hi = None, None
    for c in _conjuncts(residual):
        if not (isinstance(c, Call) and c.func in _FLIP and len(c.args) == 2):
            return None
        a, b = time_term(c.args[0]), time_term(c.args[1])
        func = c.func
        if a is None or b is None:
            return None
        if a[0] != row_time:
            a, b, func = b, a, _FLIP[func]
        if a[0] != row_time or b[0] not in bounds:
            return None
        # row_time + a1 (func) bound + b1, bound = end + off  =>  row_time (func) end + k
        k = bounds[b[0]] + b[1] - a[1]
        if func in ("lt", "lte"):
            k -= 1 if func == "lt" else 0
            hi = k if hi is None else min(hi, k)
        else:
            k += 1 if func == "gt" else 0
            lo = k if lo is None else max(lo, k)
    if lo is None or hi is None:
        return None
    return lo, hi


def _fuse(join: IntervalJoin) -> WindowMaxJoin | None:
    if join.kind != "inner" or len(join.left_keys) != 1 or join.left.updating:
        return None
    found = _window_side(join.right)
    if found is None:
        return None
    agg, right_cols = found
    window = agg.window
    if window.kind != "tumble" or agg.keys or agg.late is not None or \
            len(agg.aggregates) != 1 or agg.time_input is None:
        return None
    call = agg.aggregates[0]
    if call.func != "max" or call.distinct or call.filter or len(call.args) != 1:
        return None
    value_type = agg.input.schema.field(call.args[0]).type
    if not (pa.types.is_signed_integer(value_type) or value_type in (
            pa.uint8(), pa.uint16(), pa.uint32())):
        return None
    left, right = _lineage(join.left), _lineage(agg.input)
    if left is None or right is None or left.scan != right.scan or \
            left.filters != right.filters:
        return None
    key = join.left_keys[0]
    if right_cols.get(join.right_keys[0]) != agg.agg_names[0]:
        return None
    if left.columns.get(key) != right.columns.get(call.args[0]):
        return None
    row_time = next((c for c, text in left.columns.items()
                     if text == right.columns.get(agg.time_input)), None)
    if row_time is None or not pa.types.is_timestamp(join.left.schema.field(row_time).type):
        return None
    kinds = dict(agg.window_columns)
    bounds = {}
    for col, inner in right_cols.items():
        what = kinds.get(inner)
        if what in _BOUNDS:
            off = _BOUNDS[what]
            bounds[join.joined_name(1, col)] = -window.size_us if off is None else off
    found_range = _range(join.residual, row_time, bounds)
    if found_range is None:
        return None
    lo, hi = found_range
    if not -window.size_us <= lo <= hi <= 0:
        return None
    outputs: list[tuple[str, str | None]] = []
    right_names = {join.joined_name(1, c): c for c in join.right.schema.names}
    for name in join.output:
        if name in join.left.schema.names:
            outputs.append(("row", name))
            continue
        inner = right_cols.get(right_names.get(name, ""))
        if inner == agg.agg_names[0]:
            outputs.append(("max", None))
        elif kinds.get(inner) in _BOUNDS:
            outputs.append((kinds[inner], None))
        else:
            return None
    return WindowMaxJoin(join.schema, join.time_column, input=join.left, window=window,
                         time_input=row_time, value_column=key, lo_us=lo, hi_us=hi,
                         outputs=outputs, holdback_us=window.size_us)


# ---- lowering -----------------------------------------------------------------------------

def _lower(planner: PhysicalPlanner, node: WindowMaxJoin) -> int:
    upstream = planner.lower(node.input)
    rows = node.input.schema
    needed = node.input_columns()
    input_schema = pa.schema([f for f in rows if f.name in needed])
    common = {"window": node.window, "lo_us": node.lo_us, "hi_us": node.hi_us,
              "time_column": node.time_input, "value_column": node.value_column}
    planner.graph.vertices[upstream].operators.append(OperatorSpec(
        "window_max_candidates", {**common, "output_schema": input_schema},
        f"keep rows equal to their {node.window} window's max in the batch (or on a "
        f"window boundary)", input_schema))
    v = planner.new_vertex("window max join", parallelism=1)
    planner.connect(upstream, v.id, "single")
    v.operators.append(OperatorSpec(
        "window_max_join", {**common, "input_schema": input_schema,
                            "outputs": list(node.outputs), "output_schema": node.schema,
                            "holdback_us": node.holdback_us},
        node.describe(), node.schema))
    return v.id


LOWERINGS[WindowMaxJoin] = _lower
