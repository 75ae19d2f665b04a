"""How the subtasks of a physical graph connect, as plain data every runtime builds from:
per destination subtask, one input channel per (edge, upstream subtask); per source subtask,
its output edges with the downstream (vertex, subtask, channel) of each target. The local
runtime turns the targets into in-process gates, the Ray runtime into remote channels."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from caudal.connectors.base import Source
from caudal.connectors.registry import source_class
from caudal.plan.physical import PhysicalGraph, Vertex
from caudal.runtime.partitioners import make_route
from caudal.runtime.subtask import OutputEdge

Key = tuple[int, int]


@dataclass(frozen=True)
class EdgeWiring:
    partitioning: str
    keys: list[str]
    #: per downstream subtask (in index order): its key and this subtask's channel in it
    targets: list[tuple[Key, int]]
    #: the side output this edge carries (None: the main output)
    tag: str | None = None


@dataclass
class Wiring:
    #: per subtask with inputs: the operator input (0, 1) of each of its channels
    channel_inputs: dict[Key, list[int]]
    #: per subtask: its output edges
    outputs: dict[Key, list[EdgeWiring]]


def wire(graph: PhysicalGraph) -> Wiring:
    channel_inputs: dict[Key, list[int]] = {}
    channel_of: dict[tuple[int, int, int], int] = {}
    for v in graph.vertices:
        if not graph.inputs_of(v.id):
            continue
        for i in range(v.parallelism):
            inputs: list[int] = []
            for edge_index, e in enumerate(graph.edges):
                if e.dst != v.id:
                    continue
                for s in range(graph.vertex(e.src).parallelism):
                    channel_of[(edge_index, s, i)] = len(inputs)
                    inputs.append(e.input)
            channel_inputs[(v.id, i)] = inputs
    outputs: dict[Key, list[EdgeWiring]] = {}
    for v in graph.vertices:
        for i in range(v.parallelism):
            edges = []
            for edge_index, e in enumerate(graph.edges):
                if e.src != v.id:
                    continue
                dst = graph.vertex(e.dst)
                edges.append(EdgeWiring(
                    e.partitioning, list(e.keys),
                    [((dst.id, j), channel_of[(edge_index, i, j)])
                     for j in range(dst.parallelism)], getattr(e, "tag", None)))
            outputs[(v.id, i)] = edges
    return Wiring(channel_inputs, outputs)


def open_source(vertex: Vertex, index: int) -> tuple[Source | None, list[Any] | None]:
    """The source of subtask ``index`` of ``vertex`` and the partitions it reads
    (``Source.assign``: by default every P-th of the source's partitions), or (None, None)
    for a vertex without a source."""
    if vertex.source is None:
        return None, None
    source = source_class(vertex.source)(vertex.source)
    source.subtask, source.parallelism = index, vertex.parallelism
    parts = source.partitions(vertex.parallelism)
    return source, source.assign(parts, index, vertex.parallelism)


def output_edges(edges: list[EdgeWiring], index: int,
                 port_of: Callable[[Key], Any]) -> list[OutputEdge]:
    """Subtask ``index``'s output edges, each target's channel reached through ``port_of``
    (anything with ``put(channel, item)``: an in-process gate, or a remote channel)."""
    return [OutputEdge(make_route(e.partitioning, e.keys, index, len(e.targets)),
                       [(port_of(key), channel) for key, channel in e.targets], tag=e.tag)
            for e in edges]
