"""Logical join nodes and how each becomes a two-input vertex of the dataflow.

Three ways to join two streams, chosen by plan.join_planning from the join condition:

* ``WindowJoin``: both inputs windowed identically and joined on their window bounds: rows
  wait per window and are joined once the watermark closes it (append output, any outer
  kind);
* ``IntervalJoin``: time conditions (``b.t BETWEEN a.t - i1 AND a.t + i2``) bound how long
  a row can still find a partner, so each side's rows expire with the watermark (append
  output; outer rows are emitted when they expire unmatched);
* ``UpdatingJoin``: anything else on equality keys: every row is kept (or until
  ``updating_ttl``), inputs may be changelogs, and the output is a changelog whenever an
  input is one or the join is outer (a padded row is retracted when its first match comes).

Columns: the left input's columns keep their names; the right input's are renamed where
they clash (``right_rename``); ``residual`` (the non-equality conditions) and ``output`` use
the joined names. The vertex has two inputs: edge ``input=0`` from the left, ``input=1``
from the right, both hash-partitioned on the keys (``single`` to one subtask when there is
no key).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import pyarrow as pa

from caudal.durations import format_duration_us
from caudal.plan.expressions import Call, Column, Expr, Literal
from caudal.plan.logical import LogicalNode
from caudal.plan.physical import OperatorSpec
from caudal.plan.physical_planner import LOWERINGS, PhysicalPlanner, refuse_late_side

SIDES = ("left", "right")


@dataclass(frozen=True)
class TimeConstraint:
    """``small.col + offset_us <= big.col`` between a column of one side and one of the
    other (sides: 0 left, 1 right), taken from the join condition."""

    small_side: int
    small_col: str
    offset_us: int
    big_side: int
    big_col: str


def time_term(expr: Expr) -> tuple[str, int] | None:
    """``col``, ``col + INTERVAL``, ``col - INTERVAL`` (a timestamp) as (column, offset µs):
    the terms of the time conditions of interval joins."""
    if isinstance(expr, Column) and pa.types.is_timestamp(expr.dtype):
        return expr.name, 0
    if isinstance(expr, Call) and expr.func in ("add", "subtract") and len(expr.args) == 2:
        base, delta = expr.args
        if isinstance(base, Column) and pa.types.is_timestamp(base.dtype) and \
                isinstance(delta, Literal) and pa.types.is_duration(delta.dtype) and \
                delta.value is not None:
            us = int(pa.scalar(delta.value, pa.duration("us")).value)
            return base.name, us if expr.func == "add" else -us
    return None


@dataclass(eq=False)
class Join(LogicalNode):
    left: LogicalNode = None  # type: ignore[assignment]
    right: LogicalNode = None  # type: ignore[assignment]
    #: inner, left, right or full; semi or anti (updating joins only: the left rows that
    #: have / have no match, left columns only)
    kind: str = "inner"
    left_keys: list[str] = field(default_factory=list)
    right_keys: list[str] = field(default_factory=list)
    #: right input column -> its name in the joined rows (left columns keep theirs)
    right_rename: dict[str, str] = field(default_factory=dict)
    #: joined names emitted, in order
    output: list[str] = field(default_factory=list)
    #: conditions other than key equality, over joined names
    residual: Expr | None = None
    line: int | None = None
    col: int | None = None

    def children(self) -> list[LogicalNode]:
        return [self.left, self.right]

    def joined_name(self, side: int, column: str) -> str:
        return column if side == 0 else self.right_rename.get(column, column)

    def needed_columns(self) -> set[str]:
        """Joined names the operator reads besides the output (keys, conditions)."""
        cols = set(self.left_keys) | {self.joined_name(1, k) for k in self.right_keys}
        if self.residual is not None:
            cols |= self.residual.columns()
        return cols

    def prune_inputs(self, required: set[str] | None) -> list[set[str] | None]:
        """Column pruning (plan.optimizer): keep only the output columns used above, and
        ask each input for the columns the join reads."""
        if required is not None:
            keep = [c for c in self.output if c in required]
            if keep != self.output:
                self.output = keep
                self.schema = pa.schema([self.schema.field(c) for c in keep])
                if self.time_column not in keep:
                    self.time_column = None
        need = set(self.output) | self.needed_columns()
        left = {c for c in self.left.schema.names if c in need}
        right = {c for c in self.right.schema.names if self.joined_name(1, c) in need}
        return [left, right]

    def operator_params(self) -> dict:
        return {"kind": self.kind, "left_schema": self.left.schema,
                "right_schema": self.right.schema, "left_keys": list(self.left_keys),
                "right_keys": list(self.right_keys), "right_rename": dict(self.right_rename),
                "output_schema": self.schema, "residual": self.residual}

    def _describe_keys(self) -> str:
        pairs = ", ".join(f"{a} = {self.joined_name(1, b)}"
                          for a, b in zip(self.left_keys, self.right_keys)) or "no key"
        extra = f" AND {self.residual}" if self.residual is not None else ""
        return f"{self.kind.upper()} ON {pairs}{extra}"


@dataclass(eq=False)
class UpdatingJoin(Join):
    accepts_updates: ClassVar[bool] = True
    ttl_us: int | None = None
    #: NULL keys match NULL keys (INTERSECT / EXCEPT compare whole rows that way)
    nulls_equal: bool = False

    @property
    def updating(self) -> bool:
        # a semi join over append-only inputs only appends: a left row's match count only
        # grows, so it is emitted once, when its first match is there
        return self.left.updating or self.right.updating or self.kind not in ("inner",
                                                                               "semi")

    @property
    def updating_reason(self) -> str | None:
        if self.kind == "anti" and not (self.left.updating or self.right.updating):
            return ("an anti join (NOT IN / NOT EXISTS: a row is retracted when its first "
                    "match arrives)")
        if self.kind != "inner" and not (self.left.updating or self.right.updating):
            return (f"a {self.kind.upper()} JOIN (a padded row is retracted when its first "
                    f"match arrives)")
        return None

    def describe(self) -> str:
        ttl = f" ttl={format_duration_us(self.ttl_us)}" if self.ttl_us else ""
        nulls = " (NULL keys match)" if self.nulls_equal else ""
        return f"UpdatingJoin {self._describe_keys()}{nulls}{ttl}"

    def operator_params(self) -> dict:
        # the state keeps of each side's rows only the columns the join reads or emits: an
        # input may carry more (a scan keeps its event time column for the watermark)
        need = set(self.output) | self.needed_columns()
        left = pa.schema([f for f in self.left.schema if f.name in need])
        right = pa.schema([f for f in self.right.schema if self.joined_name(1, f.name) in need])
        return {**super().operator_params(), "left_schema": left, "right_schema": right,
                "updating_inputs": [self.left.updating, self.right.updating],
                "ttl_us": self.ttl_us, "updating_output": self.updating,
                "nulls_equal": self.nulls_equal}


@dataclass(eq=False)
class IntervalJoin(Join):
    constraints: list[TimeConstraint] = field(default_factory=list)
    #: per side: (column, delta): a row can still match while watermark <= min(col + delta)
    retention: list[list[tuple[str, int]]] = field(default_factory=list)
    #: per side: (column, lateness): a row with col < watermark - lateness is late
    late_checks: list[list[tuple[str, int]]] = field(default_factory=list)
    #: the output watermark trails the input's by this much (rows emitted late by it)
    holdback_us: int = 0

    def time_bounds(self) -> dict[str, int]:
        return {self.time_column: 0} if self.time_column in self.output else {}

    def describe(self) -> str:
        keep = "; ".join(f"{SIDES[s]} rows until watermark > " + (" min ".join(
            f"{c} + {format_duration_us(d) if d >= 0 else '-' + format_duration_us(-d)}"
            for c, d in r)) for s, r in enumerate(self.retention))
        return f"IntervalJoin {self._describe_keys()} ({keep})"

    def operator_params(self) -> dict:
        return {**super().operator_params(), "retention": self.retention,
                "late_checks": self.late_checks, "holdback_us": self.holdback_us}


@dataclass(eq=False)
class WindowJoin(Join):
    #: per side: (column, offset): the window end of a row is ``col + offset``
    window_end: list[tuple[str, int]] = field(default_factory=list)
    window: object = None

    def describe(self) -> str:
        return f"WindowJoin {self.window} {self._describe_keys()}"

    def _padded_sides(self) -> tuple[int, ...]:
        """Sides whose columns are NULL in the rows of an outer join without a partner."""
        return {"left": (1,), "right": (0,), "full": (0, 1)}.get(self.kind, ())

    def _side_windows(self, side: int) -> dict[str, tuple[object, str]]:
        from caudal.plan.lineage import window_columns

        node = (self.left, self.right)[side]
        return {self.joined_name(side, col): info for col, info in window_columns(node).items()
                if self.joined_name(side, col) in self.output}

    def window_lineage(self) -> dict[str, tuple[object, str]]:
        out: dict[str, tuple[object, str]] = {}
        for side in (0, 1):
            if side not in self._padded_sides():
                for name, info in self._side_windows(side).items():
                    out.setdefault(name, info)
        return out

    def padded_window_lineage(self) -> dict[str, tuple[object, str, int]]:
        """Window bounds of the padded sides (NULL in some rows): only a COALESCE of the
        same bound of both sides is a bound again (plan.lineage)."""
        return {name: (*info, side) for side in self._padded_sides()
                for name, info in self._side_windows(side).items()}

    def time_bounds(self) -> dict[str, int]:
        return {c: 0 for c, (_, what) in self.window_lineage().items()
                if what in ("end", "time")}

    def operator_params(self) -> dict:
        return {**super().operator_params(), "window_end": self.window_end}


@dataclass(eq=False)
class TemporalJoin(Join):
    """Flink's event-time temporal join: each left row with the right side's version (per
    key) current at the left row's time (operators.temporal_join)."""

    #: the event time columns of the left rows and of the versions
    left_time: str = ""
    right_time: str = ""

    def time_bounds(self) -> dict[str, int]:
        return {self.time_column: 0} if self.time_column in self.output else {}

    def needed_columns(self) -> set[str]:
        # both times are read to pick each row's version, selected or not (pruned, the
        # versions' time was NULL: every version late, no row matched)
        return super().needed_columns() | {self.left_time,
                                           self.joined_name(1, self.right_time)}

    def describe(self) -> str:
        return (f"TemporalJoin {self._describe_keys()} AS OF {self.left_time} "
                f"(versions by {self.joined_name(1, self.right_time)})")

    def operator_params(self) -> dict:
        return {**super().operator_params(), "left_time": self.left_time,
                "right_time": self.right_time}


_KINDS = {UpdatingJoin: "updating_join", IntervalJoin: "interval_join",
          WindowJoin: "window_join", TemporalJoin: "temporal_join"}


def _lower_join(planner: PhysicalPlanner, node: Join) -> int:
    left = planner.lower(node.left)
    right = planner.lower(node.right)
    keyed = bool(node.left_keys)
    kind = _KINDS[type(node)]
    if kind != "updating_join":
        what = kind.replace("_", " ")
        refuse_late_side(node, f"{'an' if what[0] in 'aeiou' else 'a'} {what}")
    v = planner.new_vertex(kind.replace("_", " "), parallelism=None if keyed else 1, inputs=2)
    partitioning = "hash" if keyed else "single"
    planner.connect(left, v.id, partitioning, node.left_keys, input=0)
    planner.connect(right, v.id, partitioning, node.right_keys, input=1)
    label = node.describe()
    if node.updating:
        label += " (changelog)"
    v.operators.append(OperatorSpec(kind, node.operator_params(), label, node.schema))
    return v.id


for _cls in _KINDS:
    LOWERINGS[_cls] = _lower_join
