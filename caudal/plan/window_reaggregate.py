"""Window aggregation over a window aggregation: a GROUP BY of an upstream window's bounds.

Flink plans ``GROUP BY starttime, endtime`` over the output of a window aggregate (with
``window_start AS starttime, window_end AS endtime``) as a second window aggregate over the
*same* windows: each input row already belongs to exactly one window, the one its bounds
name, and that window closes downstream when the watermark passes its end. Without this the
GROUP BY would be an updating aggregate (a changelog, state kept forever) and a join on the
bounds an updating join instead of a window join (Nexmark q5).

How it runs on the ordinary window operator, without a new one: window ends of a tumbling,
hopping or cumulating window are multiples of its pane (``WindowSpec.pane_us``), and a
window ends at ``end`` exactly when its row's time ``end - 1µs`` falls in the tumbling pane
``[end - pane, end)``. So the second level is a *tumbling* aggregate of the pane size over
``end - 1µs`` (fired when the watermark reaches ``end``, as Flink fires it), with the bound
columns as plain grouping keys: they are constant within a pane's group (the end is, and
the end determines the start) and come out under their own names. The node then reports
those key columns as the upstream window's bounds (``window_lineage``), so a further GROUP
BY or a join on them sees the upstream window again.

Upstream rows with time ``end - 1µs`` are never late here: the upstream window operator
emits them before the watermark that closed their window (``>= end``) moves on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from caudal.plan.expressions import Call, Column, Expr
from caudal.plan.lineage import last_instant, window_columns
from caudal.plan.logical import LogicalNode
from caudal.plan.window_nodes import WindowAggregate
from caudal.plan.windows import WindowSpec
from caudal.types import TIMESTAMP

#: hidden window columns of the second level (its own tumbling panes; not in scope)
HIDDEN_WINDOW = [("__window_start", "start"), ("__window_end", "end"),
                 ("__window_time", "time")]


@dataclass
class UpstreamWindow:
    """The window whose bounds a GROUP BY names: its spec, the input column of each bound
    named (``start`` / ``end`` / ``time``), and the panes the second level groups by."""

    spec: WindowSpec
    bounds: dict[str, str]
    #: grouped window struct columns (Arroyo's ``window``) -> their type
    structs: dict[str, pa.DataType] = field(default_factory=dict)
    #: key column of the second level -> the bound it holds (a struct's start and end)
    key_bounds: dict[str, str] = field(default_factory=dict)

    @property
    def panes(self) -> WindowSpec:
        return WindowSpec("tumble", self.spec.pane_us, offset_us=self.spec.offset_us)

    def time_expr(self) -> Expr:
        """A row's time: 1µs before its window's end (its ``window_time``), so it lands in
        the pane that ends where its window ends."""
        end = next((c for c, what in self.bounds.items() if what == "end"), None)
        if end is not None:
            return last_instant(Column(TIMESTAMP, end))
        name, dtype = next(iter(self.structs.items()))
        return last_instant(struct_bound(Column(dtype, name), "end"))


def struct_bound(struct: Expr, bound: str) -> Expr:
    """The ``start`` or ``end`` field of a window struct column."""
    index = struct.dtype.get_field_index(bound)
    return Call(struct.dtype.field(index).type, "struct_field", (struct,), {"index": index})


def upstream_window(node: LogicalNode, grouped: list[str]) -> UpstreamWindow | None:
    """The upstream window when the grouped input columns include both its start and its
    end, or its struct (Arroyo's ``GROUP BY window`` of a subquery), and ``node`` is
    append-only; None otherwise (an updating aggregate then)."""
    if node.updating:
        return None
    lineage = window_columns(node)
    found: dict[WindowSpec, dict[str, str]] = {}
    for name in grouped:
        info = lineage.get(name)
        if info is None:
            continue
        spec, what = info
        if isinstance(spec, WindowSpec) and spec.pane_us > 0:
            found.setdefault(spec, {})[name] = what
    for spec, bounds in found.items():
        structs = {n: node.schema.field(n).type for n, what in bounds.items()
                   if what == "struct"}
        if {"start", "end"} <= set(bounds.values()) or structs:
            return UpstreamWindow(spec, bounds, structs)
    return None


@dataclass(eq=False)
class WindowReaggregate(WindowAggregate):
    """A ``WindowAggregate`` over tumbling panes whose key columns are an upstream window's
    bounds; lowered as a WindowAggregate (the lowering is found through the class's MRO)."""

    #: the upstream window
    upstream: WindowSpec = None  # type: ignore[assignment]
    #: output key column -> "start" | "end" | "time" of the upstream window
    bounds: dict[str, str] = field(default_factory=dict)

    def window_lineage(self) -> dict[str, tuple[object, str]]:
        out = {n: (self.upstream, what) for n, what in self.bounds.items()}
        for name, what in self.window_columns:
            if what == "time":
                out.setdefault(name, (self.upstream, "time"))
        return out

    def time_bounds(self) -> dict[str, int]:
        size = self.upstream.size_us
        return {n: size if what == "start" else 0
                for n, (_, what) in self.window_lineage().items()}

    def describe(self) -> str:
        bounds = ", ".join(f"{n}={w}" for n, w in self.bounds.items())
        return f"{super().describe()} windows of {self.upstream} [{bounds}]"


__all__ = ["HIDDEN_WINDOW", "UpstreamWindow", "WindowReaggregate", "struct_bound",
           "upstream_window"]
