"""The identity of a job, to refuse restoring one job's state into another.

A checkpoint's state only makes sense for the dataflow that wrote it: the same vertices, the
same operators with the same parameters, the same edges. Parallelism is left out on purpose
(a job may be restored at another parallelism), and so are run-time settings. The text that
is hashed is canonical (sorted keys, no memory addresses), so it is identical across
processes, restarts and machines.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import re
from typing import Any

import pyarrow as pa

from caudal.plan.physical import PhysicalGraph, Vertex

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
#: dataclass fields that say where in the SQL text something was written, not what it is
_POSITION_FIELDS = {"line", "col", "column_position"}
#: two-phase window and updating aggregates (plan.window_nodes, plan.updating_nodes) are
#: planned only at parallelism > 1, and their state is the same as one phase's (the local
#: stage keeps at most a watermark; the merging stage keeps the same partial states per key):
#: left out, so a job may still be restored at another parallelism
_PARALLELISM_ONLY_KINDS = {"local_window_partials", "local_key_partials"}
_PARALLELISM_ONLY_PARAMS = {"partial_input"}


def canonical(obj: Any) -> str:
    """A deterministic text rendering of plan data (specs, expressions, schemas, options)."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return repr(obj)
    if isinstance(obj, enum.Enum):
        return f"{type(obj).__name__}.{obj.name}"
    if isinstance(obj, (pa.Schema, pa.DataType, pa.Field)):
        return str(obj).replace("\n", "; ")
    if isinstance(obj, dict):
        items = sorted((canonical(k), canonical(v)) for k, v in obj.items())
        return "{" + ", ".join(f"{k}: {v}" for k, v in items) + "}"
    if isinstance(obj, (list, tuple)):
        return "[" + ", ".join(canonical(x) for x in obj) + "]"
    if isinstance(obj, (set, frozenset)):
        return "{" + ", ".join(sorted(canonical(x) for x in obj)) + "}"
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = ", ".join(f"{f.name}={canonical(getattr(obj, f.name))}"
                           for f in dataclasses.fields(obj) if f.name not in _POSITION_FIELDS)
        return f"{type(obj).__name__}({fields})"
    if callable(obj) and hasattr(obj, "__qualname__"):
        return f"{getattr(obj, '__module__', '')}.{obj.__qualname__}"
    return _ADDRESS.sub("", f"{type(obj).__name__}:{obj}")


def vertex_text(vertex: Vertex, graph: PhysicalGraph) -> str:
    """What defines a vertex for restoring its state (its parallelism excluded)."""
    lines = [f"vertex {vertex.id} inputs={vertex.inputs}"]
    if vertex.source is not None:
        lines.append("source " + canonical(vertex.source))
    for op in vertex.operators:
        if op.kind in _PARALLELISM_ONLY_KINDS:
            continue
        params = {k: v for k, v in op.params.items() if k not in _PARALLELISM_ONLY_PARAMS}
        lines.append(f"op {op.kind} {canonical(params)}")
    if vertex.sink is not None:
        lines.append("sink " + canonical(vertex.sink))
    for e in graph.inputs_of(vertex.id):
        lines.append(f"edge from {e.src} {e.partitioning} keys={e.keys} input={e.input}")
    return "\n".join(lines)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def vertex_fingerprint(vertex: Vertex, graph: PhysicalGraph) -> str:
    return _digest(vertex_text(vertex, graph))


def job_fingerprint(graph: PhysicalGraph) -> str:
    """The hash of the whole dataflow's structure, parallelism excluded."""
    return _digest("\n".join(vertex_text(v, graph) for v in graph.vertices))


def describe_differences(graph: PhysicalGraph, old: dict[str, Any]) -> str:
    """Which vertices differ from the ones a checkpoint recorded (by id), for the error."""
    recorded = {int(v["id"]): v for v in old.get("vertices", [])}
    changes = []
    for v in graph.vertices:
        before = recorded.pop(v.id, None)
        if before is None:
            changes.append(f"[{v.id}] {v.name} is new")
        elif before.get("fingerprint") != vertex_fingerprint(v, graph):
            changes.append(f"[{v.id}] {v.name} changed")
    for vid, before in sorted(recorded.items()):
        changes.append(f"[{vid}] {before.get('name', '?')} was removed")
    return "; ".join(changes[:4]) + ("; ..." if len(changes) > 4 else "")
