"""A table as the planner hands it to connectors: name, connector, options, schema, event time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa


@dataclass
class TableSpec:
    """Everything a connector needs to read or write one table; plain data (picklable)."""

    name: str
    connector: str
    options: dict[str, str] = field(default_factory=dict)
    schema: pa.Schema | None = None
    #: column holding event time (TIMESTAMP), or None for processing time only
    event_time: str | None = None
    #: the WATERMARK expression's delay in microseconds
    watermark_delay_us: int = 0
    #: columns the plan reads (projection pushdown); None means all
    projection: list[str] | None = None
    #: a predicate (plan.expressions.Expr) the source may use to skip data; rows it lets
    #: through are filtered again downstream, so using it is an optimization only
    prune_filter: Any = None
    #: line of the CREATE TABLE, for errors about options
    line: int | None = None

    def option(self, key: str, default: str | None = None) -> str | None:
        return self.options.get(key, default)

    @property
    def bad_data(self) -> str:
        return self.options.get("bad_data", "fail")

    def read_schema(self) -> pa.Schema:
        """The schema of what the source emits: declared columns, narrowed by projection."""
        assert self.schema is not None
        if self.projection is None:
            return self.schema
        return pa.schema([self.schema.field(n) for n in self.projection])
