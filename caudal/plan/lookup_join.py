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

#: connectors whose tables a lookup join may read whole: bounded ones
LOOKUP_CONNECTORS = ("filesystem",)


def declared_lookup(table) -> bool:
    """True for a table declared ``lookup = 'true'``: a plain JOIN with it is a lookup join
    (Arroyo's style) when its connector can look rows up."""
    return table is not None and str(table.options.get("lookup", "")).lower() == "true"


def lookup_mode(table) -> str | None:
    """How a lookup join reads ``table``: 'key' (its connector looks rows up by key, a
    LookupSource: a database), 'whole' (a bounded table read whole), or None (it cannot)."""
    from caudal.connectors import registry

    if registry.lookup_class(table) is not None:
        return "key"
    return "whole" if table.connector in LOOKUP_CONNECTORS else None


@dataclass(eq=False)
class LookupJoin(Join):
    #: the streaming side's processing-time column the join is AS OF (for EXPLAIN)
    as_of: str = ""

    @property
    def updating(self) -> bool:
        return False

    def describe(self) -> str:
        how = f"FOR SYSTEM_TIME AS OF {self.as_of}" if self.as_of else "(lookup table)"
        return f"LookupJoin {self._describe_keys()} {how}"


def _lower_lookup(planner: PhysicalPlanner, node: LookupJoin) -> int:
    vid = planner.lower(node.left)
    side = PhysicalPlanner(1, planner.graph.settings)
    side.lower(node.right)
    vertices = side.graph.vertices
    if len(vertices) != 1 or vertices[0].source is None:
        raise PlanError("the table of a lookup join (FOR SYSTEM_TIME AS OF) may only be "
                        "filtered and projected", line=node.line, col=node.col,
                        hint="join the table itself, not an aggregate or join over it")
    table = vertices[0].source
    params = {**node.operator_params(), "side_table": table,
              "side_chain": list(vertices[0].operators)}
    if lookup_mode(table) == "key":
        from caudal.connectors import registry
        from caudal.connectors.base import lookup_cache_settings

        missing = [k for k in node.right_keys if k not in table.read_schema().names]
        if missing:
            raise PlanError(f"a lookup join looks table {table.name!r} up by its columns; "
                            f"{', '.join(missing)} is computed in the query", line=node.line,
                            col=node.col, hint="join on columns of the table itself")
        registry.lookup_class(table).validate(table, list(node.right_keys))
        rows, ttl = lookup_cache_settings(table)
        params.update(by_key=True, cache_rows=rows, cache_ttl_s=ttl)
    planner.graph.vertices[vid].operators.append(OperatorSpec(
        "lookup_join", params, node.describe(), node.schema))
    return vid


LOWERINGS[LookupJoin] = _lower_lookup
