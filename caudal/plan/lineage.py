"""What the planner knows about time in a node's output columns, traced through the plan.

* ``time_bounds(node)``: the columns bounded by the watermark, each with its *lateness*
  ``λ``: no row arriving after watermark ``W`` has a value below ``W - λ``. The event time of
  a source has λ = 0 (rows below the watermark are late, and dropped by event-time
  operators); a window aggregate's ``window_end`` has λ = 0 (its rows are emitted before the
  watermark that closes the window moves on), its ``window_start`` λ = the window size.
  Interval joins derive how long to keep rows from these bounds.
* ``window_columns(node)``: columns that are the start / end / time of a window, with its
  spec, so a join on them can be recognized as a window join.

Both follow plain renaming projections and filters; any other node may describe its own
output with ``time_bounds()`` / ``window_lineage()`` methods.
"""

from __future__ import annotations

from caudal.plan.expressions import Call, Column
from caudal.plan.logical import Filter, LogicalNode, Project, Scan


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
        return {out: below[src] for out, src in _renames(node).items() if src in below}
    from caudal.plan.window_nodes import WindowAggregate, WindowAssign

    if isinstance(node, WindowAssign):
        below = time_bounds(node.input)
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
        return {out: below[src] for out, src in _renames(node).items() if src in below}
    from caudal.plan.window_nodes import WindowAggregate, WindowAssign

    if isinstance(node, WindowAssign):
        if node.window.kind == "session":
            return {}
        return {"window_start": (node.window, "start"), "window_end": (node.window, "end"),
                "window_time": (node.window, "time")}
    if isinstance(node, WindowAggregate):
        if node.window.kind == "session" or node.time_input is None:
            return {}
        return {name: (node.window, what) for name, what in node.window_columns
                if what in ("start", "end", "time")}
    return {}
