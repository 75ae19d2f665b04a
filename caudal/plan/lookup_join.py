"""The lookup join: ``JOIN t FOR SYSTEM_TIME AS OF s.p AS x ON …`` where ``p`` is a
processing-time attribute (``PROCTIME()``) of the streaming side and ``t`` a bounded table.

Flink's meaning: each streaming row is joined with the rows ``t`` holds when that row is
processed. caudal reads a bounded table whole when the operator opens, so every row sees the
same table: the join is a map over the streaming side, fused into its chain (no shuffle,
no state: each subtask has its own copy of the table, read again after a restore). The
output is append-only and keeps the streaming side's event time and watermark. Only an
inner or LEFT join, on at least one equality, over an append-only streaming side; the
table's side may filter and project (a stateless chain over the table's scan).
"""

from __future__ import annotations

from dataclasses import dataclass

from caudal.errors import PlanError
from caudal.plan.join_nodes import Join
from caudal.plan.physical import OperatorSpec
from caudal.plan.physical_planner import LOWERINGS, PhysicalPlanner


def declared_lookup(table) -> bool:
    """True for a table declared ``lookup = 'true'``: a plain JOIN with it is a lookup join
    (Arroyo's style) when its connector can look rows up."""
    return table is not None and str(table.options.get("lookup", "")).lower() == "true"


@dataclass(eq=False)
class LookupJoin(Join):
    #: the streaming side's processing-time column the join is AS OF (for EXPLAIN)
    as_of: str = ""
    #: what the table's connector can do, as plain data from the layer that knows
    #: connectors (sql.joins): look rows up by key (a database), else read the table whole
    by_key: bool = False
    #: for by_key: at most this many keys cached per subtask (0: none), kept this long
    cache_rows: int = 0
    cache_ttl_s: float | None = None

    @property
    def updating(self) -> bool:
        return False

    def describe(self) -> str:
        how = f"FOR SYSTEM_TIME AS OF {self.as_of}" if self.as_of else "(lookup table)"
        return f"LookupJoin {self._describe_keys()} {how}"


def _lower_lookup(planner: PhysicalPlanner, node: LookupJoin) -> int:
    vid = planner.lower(node.left)
    side = PhysicalPlanner(1, planner.graph.settings, planner.split)
    side.lower(node.right)
    vertices = side.graph.vertices
    if len(vertices) != 1 or vertices[0].source is None:
        raise PlanError("the table of a lookup join (FOR SYSTEM_TIME AS OF) may only be "
                        "filtered and projected", line=node.line, col=node.col,
                        hint="join the table itself, not an aggregate or join over it")
    table = vertices[0].source
    params = {**node.operator_params(), "side_table": table,
              "side_chain": list(vertices[0].operators)}
    if node.by_key:
        params.update(by_key=True, cache_rows=node.cache_rows, cache_ttl_s=node.cache_ttl_s)
    planner.graph.vertices[vid].operators.append(OperatorSpec(
        "lookup_join", params, node.describe(), node.schema))
    return vid


LOWERINGS[LookupJoin] = _lower_lookup
