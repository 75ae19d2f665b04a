"""Late materialization of wide columns from bounded file sources.

A column that is only carried through to the output past a selective operator need not be
decoded for every row: Nexmark q7 keeps ~1 bid in a million, yet decoding ``extra`` (~70
bytes a bid) was a third of its CPU time. Where that holds, the source emits a row locator
(``LOCATOR_FILE``, ``LOCATOR_ROW``: hidden columns) in place of the column, the operator
carries the locator like any column (and checkpoints it with its rows), and a
``LateColumns`` step right after it reads the column back for the kept rows only, from the
pages that hold them (operators.late_columns, connectors.filesystem.RowFetcher,
formats.parquet_pages).

It applies only where it cannot change a result:

* the operator is a ``WindowMaxJoin`` (it keeps a few rows per window) over filters and
  projections of one scan of a table whose source ``locates_rows`` (plain Parquet files:
  bounded, and a locator names the file by its path, size and modification time);
* the column is text, bytes, a number or a boolean (read back exactly by any reader), and
  passes through unchanged: no filter, expression, key, time or value reads it, nor
  the filter pushed into the scan;
* the table has no computed or metadata columns and is not a changelog.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pyarrow as pa

from caudal.plan.expressions import Column
from caudal.plan.logical import Filter, LogicalNode, Project, Scan, rewrite_bottom_up
from caudal.plan.physical import OperatorSpec
from caudal.plan.physical_planner import LOWERINGS, PhysicalPlanner
from caudal.plan.tables import LOCATOR_SCHEMA, TableSpec
from caudal.plan.window_max_join import WindowMaxJoin


@dataclass(eq=False)
class LateColumns(LogicalNode):
    """``input`` (which carries row locators of ``table``) with the columns ``columns``
    (output name -> the table's column) read back from the table's files."""

    input: LogicalNode = None  # type: ignore[assignment]
    table: TableSpec = None  # type: ignore[assignment]
    columns: dict[str, str] = field(default_factory=dict)

    def children(self) -> list[LogicalNode]:
        return [self.input]

    def input_columns(self) -> set[str]:
        return set(self.input.schema.names)

    def describe(self) -> str:
        cols = ", ".join(c if c == s else f"{s} AS {c}" for c, s in self.columns.items())
        return (f"LateColumns {cols}: read from {self.table.name}'s files by row locator, "
                f"for the rows kept above only")


def _late(dtype: pa.DataType) -> bool:
    """Types read back exactly whatever the reader (text, bytes, numbers, booleans)."""
    return (pa.types.is_string(dtype) or pa.types.is_large_string(dtype)
            or pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype)
            or pa.types.is_integer(dtype) or pa.types.is_floating(dtype)
            or pa.types.is_boolean(dtype))


def late_materialize(node: LogicalNode) -> LogicalNode:
    """Rewrite every place of the shape of the module docstring (after column pruning)."""
    return rewrite_bottom_up(node, lambda n: (
        _rewrite(n) or n) if isinstance(n, WindowMaxJoin) else n)


def _rewrite(node: WindowMaxJoin) -> LateColumns | None:
    chain: list[LogicalNode] = []
    below = node.input
    while isinstance(below, (Filter, Project)):
        chain.append(below)
        below = below.input
    if not isinstance(below, Scan):
        return None
    table = below.table
    if not table.locates_rows or table.late_columns or table.computed or table.metadata \
            or table.changelog or table.projection is None or below.updating:
        return None
    # what each column is at the top of the chain: the scan column it passes through
    origin = {n: n for n in below.schema.names}
    used = set() if table.event_time is None else {table.event_time}
    if table.prune_filter is not None:
        used |= table.prune_filter.columns()
    for step in reversed(chain):
        if isinstance(step, Filter):
            used |= {origin[c] for c in step.predicate.columns() if c in origin}
            continue
        passed = {}
        for name, e in zip(step.schema.names, step.exprs):  # type: ignore[attr-defined]
            if isinstance(e, Column) and e.name in origin:
                passed[name] = origin[e.name]
            else:
                used |= {origin[c] for c in e.columns() if c in origin}
        origin = passed
    used |= {origin.get(node.time_input), origin.get(node.value_column)}
    late: dict[int, str] = {}
    for i, (what, col) in enumerate(node.outputs):
        source = origin.get(col) if what == "row" and col else None
        if source is not None and source not in used and \
                _late(below.schema.field(source).type):
            late[i] = source
    if not late:
        return None
    sources = set(late.values())
    wide = dataclasses.replace(table, late_columns=sorted(sources))
    below.table = wide
    below.schema = wide.scan_schema()
    locators = [Column(f.type, f.name) for f in LOCATOR_SCHEMA]
    for step in reversed(chain):
        if isinstance(step, Project):
            # bottom-up, the input no longer has the late columns: a bare column it lacks
            # is one of them
            have = set(step.input.schema.names)
            keep = [i for i, e in enumerate(step.exprs)
                    if not (isinstance(e, Column) and e.name not in have)]
            step.exprs = [step.exprs[i] for i in keep] + locators
            step.schema = pa.schema([step.schema.field(i) for i in keep] + list(LOCATOR_SCHEMA))
        else:
            step.schema = step.input.schema  # type: ignore[attr-defined]
    full = node.schema
    keep = [i for i in range(len(node.outputs)) if i not in late]
    node.outputs = [node.outputs[i] for i in keep] + [("row", f.name) for f in LOCATOR_SCHEMA]
    node.schema = pa.schema([full.field(i) for i in keep] + list(LOCATOR_SCHEMA))
    return LateColumns(full, node.time_column, input=node, table=wide,
                       columns={full.names[i]: s for i, s in late.items()})


def _lower(planner: PhysicalPlanner, node: LateColumns) -> int:
    vid = planner.lower(node.input)
    planner.graph.vertices[vid].operators.append(OperatorSpec(
        "late_columns", {"table": node.table, "columns": dict(node.columns),
                         "output_schema": node.schema}, node.describe(), node.schema))
    return vid


LOWERINGS[LateColumns] = _lower
