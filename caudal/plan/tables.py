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
    #: metadata columns (Flink's ``col TYPE METADATA [FROM 'key']``): column name -> the
    #: connector's metadata key. They are columns of ``schema``; the source fills them (a
    #: Source class lists the keys it supplies in ``METADATA_KEYS``, a Sink those it writes)
    metadata: dict[str, str] = field(default_factory=dict)
    #: metadata columns declared VIRTUAL: read, never written by INSERT INTO
    virtual: list[str] = field(default_factory=list)
    #: ``PRIMARY KEY (k, …) NOT ENFORCED``: column names; upsert sinks key their writes on it
    primary_key: list[str] = field(default_factory=list)
    #: columns declared NOT NULL
    not_null: list[str] = field(default_factory=list)

    def option(self, key: str, default: str | None = None) -> str | None:
        return self.options.get(key, default)

    @property
    def bad_data(self) -> str:
        return self.options.get("bad_data", "fail")

    def data_schema(self) -> pa.Schema:
        """What the source decodes from its data: ``read_schema`` without metadata columns
        (a connector reads these from the records and adds the metadata columns itself)."""
        return pa.schema([f for f in self.read_schema() if f.name not in self.metadata])

    def writable_columns(self) -> list[str]:
        """The columns INSERT INTO gives values to: all but VIRTUAL metadata columns."""
        assert self.schema is not None
        return [n for n in self.schema.names if n not in self.virtual]

    def read_schema(self) -> pa.Schema:
        """The schema of what the source emits: declared columns, narrowed by projection."""
        assert self.schema is not None
        if self.projection is None:
            return self.schema
        return pa.schema([self.schema.field(n) for n in self.projection])
