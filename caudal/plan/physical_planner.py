"""Lower an optimized logical plan to the physical dataflow graph.

Stateless nodes are fused into the chain of the vertex below them; a stateful node keyed by
columns starts a new vertex fed by a hash edge. Modules that add logical node types register
a lowering in ``LOWERINGS`` (type -> function), so this module stays closed to them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import pyarrow as pa

from caudal.plan.aggregates import AggCall
from caudal.plan.keys import needs_key_shuffle
from caudal.plan.logical import Filter, LogicalNode, Project, Scan, SinkWrite
from caudal.plan.physical import Edge, OperatorSpec, PhysicalGraph, Vertex

LOWERINGS: dict[type, Callable[[PhysicalPlanner, LogicalNode], int]] = {}


class SplitAggregates(Protocol):
    """What lowering asks the aggregate kernels when it splits a window aggregate (or an
    updating GROUP BY over an append-only input) into a local stage before the shuffle and a
    global one after it. The kernels live in
    ``operators`` (above ``plan``), so the caller of ``build_graph`` hands them in
    (``operators.local_window_partials``) rather than ``plan`` importing upwards."""

    def splittable(self, calls: Sequence[AggCall], input_schema: pa.Schema,
                   time_column: str | None) -> bool: ...

    def partial_schema(self, window_keys: list[str], calls: Sequence[AggCall],
                       input_schema: pa.Schema, time_column: str | None) -> pa.Schema: ...

    def key_partial_schema(self, keys: list[str], calls: Sequence[AggCall],
                           input_schema: pa.Schema, time_column: str | None) -> pa.Schema: ...


class PhysicalPlanner:
    def __init__(self, parallelism: int = 1, settings: dict | None = None,
                 split: SplitAggregates | None = None):
        self.parallelism = parallelism
        self.graph = PhysicalGraph(settings=dict(settings or {}))
        #: None: aggregates are never split in two stages
        self.split = split

    def new_vertex(self, name: str, parallelism: int | None = None, **kw) -> Vertex:
        v = Vertex(id=len(self.graph.vertices), name=name, operators=[],
                   parallelism=parallelism or self.parallelism, **kw)
        self.graph.vertices.append(v)
        return v

    def connect(self, src: int, dst: int, partitioning: str, keys: list[str] | None = None,
                input: int = 0) -> None:
        self.graph.edges.append(Edge(src, dst, partitioning, list(keys or []), input))

    def lower(self, node: LogicalNode) -> int:
        for cls in type(node).__mro__:
            if cls in LOWERINGS:
                return LOWERINGS[cls](self, node)
        raise NotImplementedError(f"no physical lowering for {type(node).__name__}")

    def chain_tail(self, vid: int) -> OperatorSpec | None:
        ops = self.graph.vertices[vid].operators
        return ops[-1] if ops else None


def refuse_late_side(node: LogicalNode, what: str) -> None:
    """Refuse ``what`` (an operator that drops rows behind the watermark) over a table whose
    ``late_data = 'side:<table>'`` it would not honour: only window aggregates send late
    rows to the side table, and an empty side table the user asked for is a lost row."""
    from caudal.errors import PlanError

    for child in node.children():
        while not isinstance(child, Scan) and getattr(child, "row_wise", False):
            child = child.children()[0]
        if not isinstance(child, Scan):
            continue
        policy = str(child.table.options.get("late_data", "drop"))
        if policy.startswith("side:"):
            raise PlanError(
                f"late_data = {policy!r} of table {child.table.name!r}: {what} drops its "
                f"late rows (counted); only a window aggregate sends them to a side table",
                line=child.table.line,
                hint="declare the source a second time without late_data for this query, "
                     "or aggregate per window")


def _lower_scan(planner: PhysicalPlanner, node: Scan) -> int:
    v = planner.new_vertex(f"source {node.table.name}", source=node.table)
    keys = node.table.normalized_key()
    if not keys:
        return v.id
    # the last row of each key: each key's changes reach one subtask, in order (a vertex
    # of its own at any parallelism, so that a checkpoint restores at another one)
    keyed = planner.new_vertex(f"normalize {node.table.name}")
    planner.connect(v.id, keyed.id, "hash", keys)
    v = keyed
    v.operators.append(OperatorSpec(
        "changelog_normalize", {"keys": keys, "output_schema": node.schema},
        f"last row per key ({', '.join(keys)}) of {node.table.name}", node.schema))
    return v.id


def _lower_filter(planner: PhysicalPlanner, node: Filter) -> int:
    vid = planner.lower(node.input)
    planner.graph.vertices[vid].operators.append(OperatorSpec(
        "project_filter", {"exprs": None, "names": None, "predicate": node.predicate,
                           "output_schema": node.schema, "updating": node.updating},
        f"filter {node.predicate}", node.schema))
    return vid


def _lower_project(planner: PhysicalPlanner, node: Project) -> int:
    vid = planner.lower(node.input)
    if node.is_identity():
        return vid
    names = node.schema.names
    tail = planner.chain_tail(vid)
    label = "project " + ", ".join(
        str(e) if str(e) == n else f"{e} AS {n}" for e, n in zip(node.exprs, names))
    if tail is not None and tail.kind == "project_filter" and tail.params["exprs"] is None:
        # fuse: filter then project in one operator
        tail.params.update(exprs=node.exprs, names=names, output_schema=node.schema)
        tail.label = f"{tail.label}; {label}"
        tail.output_schema = node.schema
        return vid
    planner.graph.vertices[vid].operators.append(OperatorSpec(
        "project_filter", {"exprs": node.exprs, "names": names, "predicate": None,
                           "output_schema": node.schema, "updating": node.updating},
        label, node.schema))
    return vid


def _lower_sink(planner: PhysicalPlanner, node: SinkWrite) -> int:
    vid = planner.lower(node.input)
    v = planner.graph.vertices[vid]
    single = node.table.connector == "stdout"
    if needs_key_shuffle(node.table, node.input):
        # an upsert sink: each key's changes must reach one writer, in order
        sink_v = planner.new_vertex(f"sink {node.table.name}")
        planner.connect(vid, sink_v.id, "hash", node.table.upsert_key)
        v = sink_v
    elif v.sink is not None or (single and v.parallelism > 1):
        sink_v = planner.new_vertex(f"sink {node.table.name}",
                                    parallelism=1 if single else v.parallelism)
        planner.connect(vid, sink_v.id, "single" if single else "forward")
        v = sink_v
    v.sink = node.table
    v.operators.append(OperatorSpec("sink", {"table": node.table}, f"write {node.table.name}",
                                    node.schema))
    return v.id


LOWERINGS.update({Scan: _lower_scan, Filter: _lower_filter, Project: _lower_project,
                  SinkWrite: _lower_sink})


def build_graph(sinks: list[SinkWrite], parallelism: int = 1,
                settings: dict | None = None,
                split: SplitAggregates | None = None) -> PhysicalGraph:
    """The physical dataflow of ``sinks``; ``split`` lets window aggregates run two-phase."""
    planner = PhysicalPlanner(parallelism, settings, split)
    for sink in sinks:
        planner.lower(sink)
    return planner.graph
