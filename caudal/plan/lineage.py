"""What the planner knows about time in a node's output columns, traced through the plan.

* ``time_bounds(node)``: the columns bounded by the watermark, each with its *lateness*
  ``λ``: no row arriving after watermark ``W`` has a value below ``W - λ``. The event time of
  a source has λ = 0 (rows below the watermark are late, and dropped by event-time
  operators); a window aggregate's ``window_end`` has λ = 0 (its rows are emitted before the
  watermark that closes the window moves on), its ``window_start`` λ = the window size.
  Interval joins derive how long to keep rows from these bounds.
* ``window_columns(node)``: columns that are the start / end / time of a window (or an
  Arroyo window struct ``{start, end}``), with its spec, so a join on them can be
  recognized as a window join and a GROUP BY of both bounds as the same windows again.
* ``event_time(node)``: the event time of a node's rows as an expression over its output.
  A window aggregate's rows carry the last instant of their window, ``end - 1 µs``: Flink's
  ``window_time`` (``window_end`` - 1 ms at its precision) and the ``_timestamp`` Arroyo
  gives a window's rows (end - 1 ns). They are never late downstream: the window operator
  emits them before forwarding the watermark that closed the window (< end before it).
  ``event_time_loss(node)`` says why a node has none although its sources have one, so a
  window over it is refused instead of silently running on processing time.

All follow plain renaming projections (and the fields of a window struct) and filters; any
other node may describe its own output with ``time_bounds()`` / ``window_lineage()``.
"""

from __future__ import annotations

import datetime

from caudal.plan.expressions import Call, Column, Expr, Literal
from caudal.plan.logical import Filter, LogicalNode, Project, Scan
from caudal.types import INTERVAL, TIMESTAMP


def _renames(node: Project) -> dict[str, str]:
    """Output column -> input column, for the outputs that pass an input column through
    (possibly cast between timestamp types)."""
    out: dict[str, str] = {}
    for name, expr in zip(node.schema.names, node.exprs):
        if isinstance(expr, Column):
            out[name] = expr.name
        elif isinstance(expr, Call) and expr.func == "cast" and len(expr.args) == 1 and \
                isinstance(expr.args[0], Column) and expr.args[0].dtype.equals(expr.dtype):
            out[name] = expr.args[0].name
    return out


def _padded_windows(node: LogicalNode) -> dict[str, tuple[object, str, int]]:
    """Window bounds an outer window join pads with NULLs: name -> (spec, role, side)."""
    own = getattr(node, "padded_window_lineage", None)
    if callable(own):
        return own()
    if isinstance(node, Filter):
        return _padded_windows(node.input)
    if isinstance(node, Project):
        below = _padded_windows(node.input)
        return {out: below[src] for out, src in _renames(node).items() if src in below}
    return {}


def _coalesced(expr: Call, below: dict[str, tuple[object, str]],
               padded: dict[str, tuple[object, str, int]]) -> tuple[object, str] | None:
    """``COALESCE(l.window_end, r.window_end)`` over an outer window join: the bound of
    every row when the arguments are the same bound of both sides (or of a side never
    padded)."""
    infos, sides = [], set()
    for arg in expr.args:
        if not isinstance(arg, Column):
            return None
        if arg.name in below:
            infos.append(below[arg.name])
            sides.add("kept")
        elif arg.name in padded:
            spec, role, side = padded[arg.name]
            infos.append((spec, role))
            sides.add(side)
        else:
            return None
    if infos and all(i == infos[0] for i in infos) and ("kept" in sides or sides == {0, 1}):
        return infos[0]
    return None


def _window_part(expr: Expr, below: dict[str, tuple[object, str]],
                 padded: dict[str, tuple[object, str, int]] | None = None
                 ) -> tuple[object, str] | None:
    """(spec, role) when ``expr`` is a field of an input window struct (``start`` /
    ``end``), the last instant of a window (``end - 1 µs``: role ``time``), or a COALESCE
    of both sides' bound after an outer window join."""
    if isinstance(expr, Call) and expr.func == "coalesce":
        return _coalesced(expr, below, padded or {})
    if isinstance(expr, Call) and expr.func == "named_struct" and \
            tuple(n.lower() for n in expr.options["names"]) == ("start", "end"):
        parts = [below.get(a.name) if isinstance(a, Column) else None for a in expr.args]
        if all(parts) and parts[0][0] == parts[1][0] and \
                (parts[0][1], parts[1][1]) == ("start", "end"):
            return parts[0][0], "struct"  # a window struct rebuilt from its bounds
        return None
    if isinstance(expr, Call) and expr.func == "struct_field" and \
            isinstance(expr.args[0], Column):
        info = below.get(expr.args[0].name)
        field = expr.args[0].dtype.field(expr.options.get("index")).name.lower()
        if info is not None and info[1] == "struct" and field in ("start", "end"):
            return info[0], field
        return None
    if isinstance(expr, Call) and expr.func == "subtract" and len(expr.args) == 2 and \
            isinstance(expr.args[1], Literal) and \
            expr.args[1].value == datetime.timedelta(microseconds=1):
        inner = expr.args[0]
        part = below.get(inner.name) if isinstance(inner, Column) else \
            _window_part(inner, below)
        if part is not None and part[1] == "end":
            return part[0], "time"
    return None


def _window_fields(node: Project) -> dict[str, tuple[object, str]]:
    """Outputs computed from an input window: struct fields and last instants."""
    below = window_columns(node.input)
    padded = _padded_windows(node.input)
    if not below and not padded:
        return {}
    out = {}
    for name, expr in zip(node.schema.names, node.exprs):
        part = _window_part(expr, below, padded)
        if part is not None:
            out[name] = part
    return out


def time_bounds(node: LogicalNode) -> dict[str, int]:
    """Output column -> lateness (µs) for every watermark-bounded column of ``node``."""
    own = getattr(node, "time_bounds", None)
    if callable(own):
        return own()
    if isinstance(node, Scan):
        return {node.table.event_time: 0} if node.table.event_time else {}
    if isinstance(node, Filter):
        return time_bounds(node.input)
    if isinstance(node, Project):
        below = time_bounds(node.input)
        out = {out: below[src] for out, src in _renames(node).items() if src in below}
        for name, (spec, what) in _window_fields(node).items():
            if what in ("end", "time"):
                out.setdefault(name, 0)
            elif spec.kind != "session":
                out.setdefault(name, spec.size_us)
        return out
    from caudal.plan.window_nodes import WindowAggregate, WindowAssign

    if isinstance(node, WindowAssign):
        below = time_bounds(node.input)
        if node.processing_time:
            return below
        lateness = below.get(node.time_input, 0)
        size = node.window.size_us
        return {**below, "window_start": lateness + size, "window_end": lateness,
                "window_time": lateness}
    if isinstance(node, WindowAggregate):
        if node.time_input is None:  # windows on arrival time: not bound by the watermark
            return {}
        out = {}
        for name, what in node.window_columns:
            if what in ("end", "time"):
                out[name] = 0
            elif what == "start" and node.window.kind != "session":
                out[name] = node.window.size_us
        if node.time_column:
            out.setdefault(node.time_column, 0)
        return out
    return {node.time_column: 0} if node.time_column and not node.updating else {}


def window_columns(node: LogicalNode) -> dict[str, tuple[object, str]]:
    """Output column -> (window spec, 'start' | 'end' | 'time') for window bound columns."""
    own = getattr(node, "window_lineage", None)
    if callable(own):
        return own()
    if isinstance(node, Filter):
        return window_columns(node.input)
    if isinstance(node, Project):
        below = window_columns(node.input)
        out = {out: below[src] for out, src in _renames(node).items() if src in below}
        for name, part in _window_fields(node).items():
            out.setdefault(name, part)
        return out
    from caudal.plan.window_nodes import WindowAggregate, WindowAssign

    if isinstance(node, WindowAssign):
        if node.window.kind == "session" or node.processing_time:
            return {}
        return {"window_start": (node.window, "start"), "window_end": (node.window, "end"),
                "window_time": (node.window, "time")}
    if isinstance(node, WindowAggregate):
        if node.time_input is None:  # processing time: no bound the watermark knows
            return {}
        return {name: (node.window, what) for name, what in node.window_columns
                if what in ("start", "end", "time", "struct")}
    return {}


def last_instant(end: Expr) -> Expr:
    """``end - 1 µs``: the last instant of a window ending at ``end``."""
    one = Literal(INTERVAL, datetime.timedelta(microseconds=1))
    return Call(TIMESTAMP, "subtract", (end, one))


def event_time(node: LogicalNode) -> Expr | None:
    """The event time of ``node``'s rows, over its output columns; None when none is known.

    The time column when the node has one, else the time of a window its rows belong to:
    ``window_time``, ``window_end`` - 1 µs, or the ``end`` of a window struct - 1 µs.
    """
    if node.updating:
        return None
    if node.time_column is not None and node.time_column in node.schema.names:
        return Column(node.schema.field(node.time_column).type, node.time_column)
    roles = window_columns(node)
    for wanted in ("time", "end", "struct"):
        for name, (_, what) in roles.items():
            if what != wanted:
                continue
            column = Column(node.schema.field(name).type, name)
            if what == "time":
                return column
            if what == "end":
                return last_instant(column)
            index = column.dtype.get_field_index("end")
            return last_instant(Call(TIMESTAMP, "struct_field", (column,), {"index": index}))
    return None


def event_time_columns(node: LogicalNode) -> list[str]:
    """Columns a window may be put on as event time: the node's time column and every
    column no row arrives behind the watermark with (a window aggregate's window_end and
    window_time: cascading windows). Empty for an updating node."""
    if node.updating:
        return []
    times = [c for c, lateness in time_bounds(node).items() if lateness == 0]
    if node.time_column is not None and node.time_column not in times:
        times.insert(0, node.time_column)
    return times


def _event_time_below(node: LogicalNode) -> bool:
    from caudal.plan.window_nodes import WindowAggregate

    if isinstance(node, Scan):
        return bool(node.table.event_time)
    if isinstance(node, WindowAggregate) and node.time_input is None:
        return False  # a processing-time window: its input's event time was not used
    return any(_event_time_below(c) for c in node.children())


def event_time_loss(node: LogicalNode) -> str | None:
    """Why ``node`` has no event time although a source below it has one (None when no
    source has one: windows over it are on processing time, as the tables say)."""
    if node.updating:
        return ("it is an updating result (a changelog: an aggregate or join without a "
                "window), whose rows have no event time")
    if _event_time_below(node):
        return ("no column of it carries the event time any more (a projection dropped "
                "it, or an outer join pads it with NULLs): keep the window column "
                "(window_end, window_time or the window struct) or the event time column "
                "in the view or subquery")
    return None
