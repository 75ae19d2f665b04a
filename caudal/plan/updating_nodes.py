"""The logical node of an updating (non-windowed) GROUP BY, and its lowering.

``UpdatingAggregate`` emits a changelog whatever its input: a key's row is revised as rows
arrive. It takes an updating input too (a nested aggregate, a join that retracts), which is
why the plan records ``input.updating`` for the operator. Lowered to a new vertex fed by a
``hash`` edge on the keys (``single`` to one subtask for a global aggregate); at parallelism > 1
over an append-only input, each batch is first pre-aggregated to one partial state row per
key before that edge (``_two_phase``), as window aggregates are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from caudal.durations import format_duration_us
from caudal.plan.aggregates import AggCall, totals_apply
from caudal.plan.logical import LogicalNode
from caudal.plan.physical import OperatorSpec
from caudal.plan.physical_planner import LOWERINGS, PhysicalPlanner

#: default flush interval of updating results (processing time)
DEFAULT_FLUSH_US = 1_000_000


@dataclass(eq=False)
class UpdatingAggregate(LogicalNode):
    accepts_updates: ClassVar[bool] = True
    input: LogicalNode = None  # type: ignore[assignment]
    #: input columns the rows are grouped by (output under the same names)
    keys: list[str] = field(default_factory=list)
    aggregates: list[AggCall] = field(default_factory=list)
    agg_names: list[str] = field(default_factory=list)
    #: the input's event time column (first_value / last_value order by it)
    time_input: str | None = None
    flush_us: int = DEFAULT_FLUSH_US
    ttl_us: int | None = None

    @property
    def updating(self) -> bool:
        # without aggregates (SELECT DISTINCT) a key's row never changes: over an
        # append-only input each one is inserted once and the result only appends
        return self.input.updating or bool(self.aggregates)

    @property
    def updating_reason(self) -> str:
        keys = ", ".join(self.keys) or "the whole input"
        return f"a GROUP BY without a window (aggregates per {keys})"

    def children(self) -> list[LogicalNode]:
        return [self.input]

    def row_key(self) -> list[str] | None:
        """An updating GROUP BY has one row per key (none without keys: one global row)."""
        return list(self.keys) or None

    def input_columns(self) -> set[str]:
        cols = set(self.keys)
        if self.time_input:
            cols.add(self.time_input)
        for a in self.aggregates:
            cols |= a.columns()
        return cols

    def describe(self) -> str:
        aggs = ", ".join(f"{a} AS {n}" for a, n in zip(self.aggregates, self.agg_names))
        ttl = f" ttl={format_duration_us(self.ttl_us)}" if self.ttl_us else ""
        source = " over a changelog" if self.input.updating else ""
        return (f"UpdatingAggregate keys=[{', '.join(self.keys)}] aggs=[{aggs}]{source} "
                f"flush={format_duration_us(self.flush_us) if self.flush_us else '0s'}{ttl}")


def _two_phase(planner: PhysicalPlanner, node: UpdatingAggregate) -> bool:
    """Pre-aggregate each batch before the shuffle: at parallelism > 1 (at 1 the edge moves
    whole batches, unsplit), over an append-only input (a changelog's state is its rows, not
    partials) and when every aggregate's partial state merges across subtasks."""
    if planner.split is None or planner.parallelism <= 1 or not node.keys \
            or not node.aggregates or node.input.updating:
        return False
    return planner.split.splittable(node.aggregates, node.input.schema, node.time_input)


def _add_local_stage(planner: PhysicalPlanner, vid: int, node: UpdatingAggregate) -> None:
    assert planner.split is not None  # _two_phase said yes
    schema = planner.split.key_partial_schema(list(node.keys), node.aggregates,
                                              node.input.schema, node.time_input)
    # partials held at most a quarter of the flush interval: a row's result is emitted at
    # most 1.25 intervals after it (1 at parallelism 1); none with a flush after every batch
    params = {"keys": list(node.keys), "aggregates": list(node.aggregates),
              "time_column": node.time_input, "input_schema": node.input.schema,
              "hold_us": node.flush_us // 4}
    label = (f"local pre-aggregate by [{', '.join(node.keys)}] (two-phase: partial states "
             f"before the shuffle)")
    planner.graph.vertices[vid].operators.append(
        OperatorSpec("local_key_partials", params, label, schema))


def _own_changelog(node: LogicalNode) -> bool:
    """Whether the changes ``node`` carries are an updating aggregate's (through row-wise
    nodes): it retracts only rows it emitted. A source's changelog may retract rows it never
    inserted, which running totals could not tell (operators.running_totals)."""
    while getattr(node, "row_wise", False) and len(node.children()) == 1:
        node = node.children()[0]
    return isinstance(node, UpdatingAggregate)


def _lower_updating_aggregate(planner: PhysicalPlanner, node: UpdatingAggregate) -> int:
    upstream = planner.lower(node.input)
    two_phase = _two_phase(planner, node)
    if two_phase:
        _add_local_stage(planner, upstream, node)
    keyed = bool(node.keys)
    v = planner.new_vertex("updating aggregate", parallelism=None if keyed else 1)
    planner.connect(upstream, v.id, "hash" if keyed else "single", node.keys)
    params = {"keys": list(node.keys), "aggregates": list(node.aggregates),
              "input_schema": node.input.schema, "output_schema": node.schema,
              "time_column": node.time_input, "updating_input": node.input.updating,
              "flush_us": node.flush_us, "ttl_us": node.ttl_us,
              "updating_output": node.updating}
    if two_phase:
        params["partial_input"] = True
    if node.input.updating and _own_changelog(node.input) and \
            totals_apply(list(node.aggregates), node.input.schema):
        # a state of totals per key, not rows (since 2026-12-07): in the fingerprint, so a
        # checkpoint of the rows' layout is refused in one line, not mis-restored
        params["running_totals"] = True
    aggs = ", ".join(f"{a} AS {n}" for a, n in zip(node.aggregates, node.agg_names))
    label = f"updating aggregate by [{', '.join(node.keys)}]: {aggs}"
    if two_phase:
        label = f"merge partial states of {label}"
    if node.updating:
        label += " (changelog)"
    v.operators.append(OperatorSpec("updating_aggregate", params, label, node.schema))
    return v.id


LOWERINGS[UpdatingAggregate] = _lower_updating_aggregate
