"""The physical dataflow graph: plain data that a runtime (local or Ray) deploys.

A vertex is a fused chain of operators that runs as ``parallelism`` subtasks; it may start at a
source table and end at a sink table. Edges say how batches move between the subtasks of two
vertices: ``forward`` (subtask i to subtask i), ``round_robin``, ``hash`` (by key group of
``keys``), ``broadcast`` or ``single`` (everything to subtask 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from caudal.plan.tables import TableSpec
from caudal.types import sql_name


@dataclass
class OperatorSpec:
    """One operator of a chain: the registry kind, its parameters, and a label for EXPLAIN."""

    kind: str
    params: dict[str, Any]
    label: str
    output_schema: pa.Schema | None = None


@dataclass
class Vertex:
    id: int
    name: str
    operators: list[OperatorSpec]
    parallelism: int
    source: TableSpec | None = None
    sink: TableSpec | None = None
    #: number of inputs of the first operator (2 for a join)
    inputs: int = 1

    @property
    def output_schema(self) -> pa.Schema | None:
        for op in reversed(self.operators):
            if op.output_schema is not None:
                return op.output_schema
        return self.source.scan_schema() if self.source else None


@dataclass
class Edge:
    src: int
    dst: int
    partitioning: str = "forward"
    keys: list[str] = field(default_factory=list)
    #: which input of the destination's first operator this edge feeds
    input: int = 0
    #: a side output (operators.side_output) this edge carries instead of the main output
    tag: str | None = None


PARTITIONINGS = ("forward", "round_robin", "hash", "broadcast", "single")


@dataclass
class PhysicalGraph:
    vertices: list[Vertex] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    #: the job's settings (SET statements, CLI flags) that operators may read
    settings: dict[str, Any] = field(default_factory=dict)

    def vertex(self, vid: int) -> Vertex:
        return self.vertices[vid]

    def inputs_of(self, vid: int) -> list[Edge]:
        return [e for e in self.edges if e.dst == vid]

    def outputs_of(self, vid: int) -> list[Edge]:
        return [e for e in self.edges if e.src == vid]

    def limited_outputs(self) -> int | None:
        """How many final LIMITs feed the sinks when every sink is fed by one (the job may
        end once they all have their rows); None when some output has no LIMIT."""
        def final_limit(v: Vertex) -> bool:
            return any(op.kind == "limit" and op.params.get("final") for op in v.operators)

        sinks = [v for v in self.vertices if v.sink is not None]
        if not sinks or not all(final_limit(v) for v in sinks):
            return None
        return sum(v.parallelism for v in sinks)

    def explain(self) -> str:
        lines = []
        for v in self.vertices:
            head = f"[{v.id}] {v.name}  parallelism={v.parallelism}"
            ins = self.inputs_of(v.id)
            if ins:
                head += "  inputs: " + ", ".join(
                    f"[{e.src}] {e.partitioning}" + (f"({', '.join(e.keys)})" if e.keys else "")
                    + (f" side output {e.tag}" if e.tag else "") for e in ins)
            lines.append(head)
            if v.source is not None:
                cols = ", ".join(n for n in v.source.projection or v.source.schema.names
                                 if n not in v.source.late_columns)
                late = v.source.late_columns
                lines.append(f"    source {v.source.name} ({v.source.connector}) "
                             f"columns [{cols}]" + (f", row locators for [{', '.join(late)}] "
                                                    "(read late)" if late else ""))
                if v.source.event_time:
                    lines.append(f"      watermark {v.source.event_time} - "
                                 f"{v.source.watermark_delay_us}us")
            for op in v.operators:
                lines.append(f"    {op.label}")
            schema = v.output_schema
            if schema is not None and v.sink is None:
                lines.append("    -> " + ", ".join(f"{f.name} {sql_name(f.type)}"
                                                   for f in schema))
        return "\n".join(lines)
