"""Logical plan nodes: what a query computes, independent of how it is run.

Every node knows its output schema and which output column (if any) carries event time (the
*time attribute*: windows and watermarks are defined on it). Nodes explain themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa

from caudal.plan.expressions import Column, Expr
from caudal.plan.tables import TableSpec


@dataclass(eq=False)
class LogicalNode:
    schema: pa.Schema
    #: the output column that carries event time, or None
    time_column: str | None

    #: whether the node can take a changelog (rows with retractions) as input; nodes that
    #: cannot are refused over an updating input at planning (plan.changelog)
    accepts_updates: ClassVar[bool] = False

    def children(self) -> list[LogicalNode]:
        return []

    @property
    def updating(self) -> bool:
        """True when the output is a changelog: batches carry an ``_op`` column (see
        plan.changelog). By default a node updates when one of its inputs does."""
        return any(c.updating for c in self.children())

    def row_key(self) -> list[str] | None:
        """Output columns that identify this node's rows (one row per value) when the node
        itself makes them unique, else None; projections above it are followed by
        ``plan.keys``."""
        return None

    def describe(self) -> str:
        return type(self).__name__

    def explain(self, indent: int = 0) -> str:
        # a node whose output is a changelog says so (plan.changelog)
        mark = "  [changelog]" if self.updating and not isinstance(self, SinkWrite) else ""
        lines = ["  " * indent + self.describe() + mark]
        for child in self.children():
            lines.append(child.explain(indent + 1))
        return "\n".join(lines)


@dataclass(eq=False)
class Scan(LogicalNode):
    table: TableSpec = None  # type: ignore[assignment]

    @property
    def updating(self) -> bool:
        """A table read in a changelog format (debezium_json) or by a CDC connector is an
        updating stream (``TableSpec.changelog``, set where the table is resolved)."""
        return self.table.changelog

    def describe(self) -> str:
        cols = ", ".join(self.schema.names)
        extra = ""
        if self.table.prune_filter is not None:
            extra = f" prune: {self.table.prune_filter}"
        return f"Scan {self.table.name} ({self.table.connector}) [{cols}]{extra}"


@dataclass(eq=False)
class Filter(LogicalNode):
    accepts_updates: ClassVar[bool] = True
    #: a row in, at most a row out, no state (refuse_late_side looks through it)
    row_wise: ClassVar[bool] = True
    input: LogicalNode = None  # type: ignore[assignment]
    predicate: Expr = None  # type: ignore[assignment]

    def children(self) -> list[LogicalNode]:
        return [self.input]

    def describe(self) -> str:
        return f"Filter {self.predicate}"


@dataclass(eq=False)
class Project(LogicalNode):
    accepts_updates: ClassVar[bool] = True
    #: a row in, at most a row out, no state (refuse_late_side looks through it)
    row_wise: ClassVar[bool] = True
    input: LogicalNode = None  # type: ignore[assignment]
    exprs: list[Expr] = field(default_factory=list)

    def children(self) -> list[LogicalNode]:
        return [self.input]

    def is_identity(self) -> bool:
        """True when it passes the input's columns through unchanged, in order."""
        names = self.input.schema.names
        return len(self.exprs) == len(names) and self.schema.names == names and all(
            isinstance(e, Column) and e.name == n for e, n in zip(self.exprs, names))

    def describe(self) -> str:
        parts = []
        for name, e in zip(self.schema.names, self.exprs):
            text = str(e)
            parts.append(text if text == name else f"{text} AS {name}")
        return "Project " + ", ".join(parts)


@dataclass(eq=False)
class SinkWrite(LogicalNode):
    accepts_updates: ClassVar[bool] = True
    input: LogicalNode = None  # type: ignore[assignment]
    table: TableSpec = None  # type: ignore[assignment]

    def children(self) -> list[LogicalNode]:
        return [self.input]

    def describe(self) -> str:
        return f"Sink {self.table.name} ({self.table.connector})"


@dataclass(eq=False)
class Aggregate(LogicalNode):
    """GROUP BY (windowed when ``window`` is set): keys, then aggregate outputs."""

    input: LogicalNode = None  # type: ignore[assignment]
    keys: list[Expr] = field(default_factory=list)
    key_names: list[str] = field(default_factory=list)
    aggregates: list[Any] = field(default_factory=list)
    agg_names: list[str] = field(default_factory=list)
    window: Any = None

    def children(self) -> list[LogicalNode]:
        return [self.input]

    def describe(self) -> str:
        keys = ", ".join(f"{k} AS {n}" for k, n in zip(self.keys, self.key_names))
        aggs = ", ".join(f"{a} AS {n}" for a, n in zip(self.aggregates, self.agg_names))
        win = f" window={self.window}" if self.window is not None else ""
        return f"Aggregate keys=[{keys}] aggs=[{aggs}]{win}"


def rewrite_bottom_up(node: LogicalNode, rewrite: Callable[[LogicalNode], LogicalNode]
                      ) -> LogicalNode:
    """``rewrite`` applied to every node of a plan, children first (through the ``input``,
    ``left`` and ``right`` links the optimizer's rewrites follow); a node is replaced by
    what ``rewrite`` returns for it."""
    for attr in ("input", "left", "right"):
        child = getattr(node, attr, None)
        if isinstance(child, LogicalNode):
            setattr(node, attr, rewrite_bottom_up(child, rewrite))
    return rewrite(node)
