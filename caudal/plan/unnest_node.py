"""The logical node of ``UNNEST``: one output row per element of an array column, and its
lowering (a stateless operator fused into the chain of the vertex below it).

``CROSS JOIN UNNEST(arr) AS u(x)`` (Flink) and ``SELECT unnest(arr)`` (Arroyo, DuckDB) plan to
this node; a row whose array is NULL or empty gives no row, as in both (with ``LEFT JOIN
UNNEST(arr) AS u(x) ON TRUE``, one row whose element is NULL). The other columns are
repeated, the event time column among them, so the watermark needs no change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pyarrow as pa

from caudal.errors import PlanError
from caudal.plan.expressions import Call, Column, Expr
from caudal.plan.logical import LogicalNode, Project
from caudal.plan.physical import OperatorSpec
from caudal.plan.physical_planner import LOWERINGS, PhysicalPlanner
from caudal.types import sql_name


@dataclass(eq=False)
class Unnest(LogicalNode):
    """The input's columns (those used above, after pruning), then ``output``: each element
    of list column ``column``, always last."""

    #: over a changelog each element's row keeps its row's sign (INTERSECT ALL's copies;
    #: SQL's UNNEST of an updating input is refused in sql.unnest)
    accepts_updates: ClassVar[bool] = True
    input: LogicalNode = None  # type: ignore[assignment]
    column: str = ""
    output: str = ""
    #: LEFT JOIN UNNEST … ON TRUE: a row whose array is NULL or empty gives one row, NULL
    outer: bool = False

    def children(self) -> list[LogicalNode]:
        return [self.input]

    def describe(self) -> str:
        return f"Unnest{' outer' if self.outer else ''} {self.column} AS {self.output}"

    def prune_inputs(self, required: set[str] | None) -> list[set[str] | None]:
        """Column pruning (plan.optimizer): keep only the columns used above, the element
        and the time column, so an array nobody reads is not repeated for every element
        (copying it is most of the cost of an unnest). The input must give the array."""
        if required is None:
            return [None]
        keep = [f for f in self.schema if f.name in required or f.name == self.output
                or f.name == self.time_column]
        self.schema = pa.schema(keep[:-1] + [self.schema.field(self.output)]
                                if keep[-1].name != self.output else keep)
        return [{f.name for f in self.schema if f.name != self.output} | {self.column}]

    # an element's row keeps its row's time and window (plan.lineage)
    def time_bounds(self) -> dict[str, int]:
        from caudal.plan.lineage import time_bounds

        return time_bounds(self.input)

    def window_lineage(self) -> dict[str, tuple[object, str]]:
        from caudal.plan.lineage import window_columns

        return window_columns(self.input)


def _lower_unnest(planner: PhysicalPlanner, node: Unnest) -> int:
    vid = planner.lower(node.input)
    planner.graph.vertices[vid].operators.append(OperatorSpec(
        "unnest", {"column": node.column, "output_schema": node.schema, "outer": node.outer},
        f"unnest{' outer' if node.outer else ''} {node.column} AS {node.output}", node.schema))
    return vid


LOWERINGS[Unnest] = _lower_unnest


def unnest_array(node: LogicalNode, arr: Expr, index: int, line: int | None = None,
                 col: int | None = None, hint: str | None = None, outer: bool = False
                 ) -> tuple[LogicalNode, str, pa.DataType]:
    """``node`` with an Unnest of the array ``arr`` appended (an expression is computed
    first, beside the input's columns, as ``__unnest_arr<index>``): the element's column
    (``__unnest<index>``) and type. ``outer``: LEFT JOIN UNNEST."""
    if not (pa.types.is_list(arr.dtype) or pa.types.is_large_list(arr.dtype)):
        raise PlanError(f"unnest() takes an array, got {sql_name(arr.dtype)}", line=line,
                        col=col, hint=hint)
    if isinstance(arr, Column):
        source = arr.name
    else:
        source = f"__unnest_arr{index}"
        fields = list(node.schema) + [pa.field(source, arr.dtype)]
        exprs: list[Expr] = [Column(f.type, f.name) for f in node.schema] + [arr]
        node = Project(pa.schema(fields), node.time_column, input=node, exprs=exprs)
    element = f"__unnest{index}"
    dtype = arr.dtype.value_type
    schema = pa.schema(list(node.schema) + [pa.field(element, dtype)])
    return Unnest(schema, node.time_column, input=node, column=source, output=element,
                  outer=outer), element, dtype


def row_fields(node: LogicalNode, element: str, dtype: pa.DataType, names: list[str],
               line: int | None = None, col: int | None = None) -> LogicalNode:
    """The fields of a ROW element as columns ``<element>_<j>`` beside the input's (one
    name per field: ``names``)."""
    if not pa.types.is_struct(dtype) or dtype.num_fields != len(names):
        fields = dtype.num_fields if pa.types.is_struct(dtype) else 1
        raise PlanError(f"UNNEST gives {fields} column(s) per element ({sql_name(dtype)}), "
                        f"the alias names {len(names)}", line=line, col=col,
                        hint="UNNEST(arr) AS u(x), or one name per field of an array of ROWs")
    element_col = Column(dtype, element)
    exprs: list[Expr] = [Column(f.type, f.name) for f in node.schema]
    fields = list(node.schema)
    for j in range(dtype.num_fields):
        exprs.append(Call(dtype.field(j).type, "struct_field", (element_col,), {"index": j}))
        fields.append(pa.field(f"{element}_{j}", dtype.field(j).type))
    return Project(pa.schema(fields), node.time_column, input=node, exprs=exprs)
