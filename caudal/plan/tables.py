"""A table as the planner hands it to connectors: name, connector, options, schema, event time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

#: the connector of a table declared without WITH options: a memory table (sql.memory_tables)
MEMORY = "memory"

#: hidden columns a source emits in place of its late columns (TableSpec.late_columns): a
#: key of the file a row comes from (its path, size and modification time, hashed) and the
#: row's index in that file
LOCATOR_FILE = "__caudal_file"
LOCATOR_ROW = "__caudal_row"
LOCATOR_SCHEMA = pa.schema([pa.field(LOCATOR_FILE, pa.int64()), pa.field(LOCATOR_ROW, pa.int64())])


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
    #: the plan reads the (stored) event time column for the watermark only: a source that
    #: knows each part's largest event time without decoding the column (Parquet row group
    #: statistics) may leave the column NULL and report the watermark itself
    event_time_unread: bool = False
    #: columns the plan reads (projection pushdown); None means all
    projection: list[str] | None = None
    #: a predicate (plan.expressions.Expr) the source may use to skip data; rows it lets
    #: through are filtered again downstream, so using it is an optimization only
    prune_filter: Any = None
    #: line of the CREATE TABLE, for errors about options
    line: int | None = None
    #: a heading for rows printed to stdout, set when several outputs of a job print there
    title: str | None = None
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
    #: computed columns (Flink's ``c AS expr``): name -> IR expression (plan.expressions)
    #: over the columns of ``schema``. They are not in ``schema`` (sources never read them,
    #: sinks never write them): the source's subtask evaluates them right after reading, so
    #: one can be the event time
    computed: dict[str, Any] = field(default_factory=dict)
    #: every column in declared order, when some are computed (else ``schema``'s order)
    column_order: list[str] | None = None
    #: computed columns holding processing time (``p AS PROCTIME()``): a window over one is
    #: a processing-time window
    proctime: list[str] = field(default_factory=list)
    #: struct columns of which the plan reads only some fields (plan.optimizer): column ->
    #: those field names; a source may leave the other fields NULL (never required to)
    struct_fields: dict[str, list[str]] = field(default_factory=dict)
    #: for a sink that writes by key (an upsert sink): the columns identifying a row, from
    #: the declared PRIMARY KEY or else the query's own key (plan.keys); None: append only
    upsert_key: list[str] | None = None
    #: its rows carry their change kind (plan.changelog): read in a changelog format
    #: (debezium_json) or by a connector that reads changes (postgres-cdc). What the
    #: connector can do is plain data here, filled in by the layer that knows connectors
    #: (sql.planner, from connectors.registry), so the planner never imports connectors
    changelog: bool = False
    #: as a sink: it accepts a changelog (an updating query), from Sink.takes_changelog
    takes_changelog: bool = False
    #: the source can name each row it emits by a stable locator (file key, row in file)
    #: and read columns back by locator later (Source.locates_rows, set by sql.planner)
    locates_rows: bool = False
    #: columns the source does not decode (plan.late_columns): it emits ``LOCATOR_FILE``
    #: and ``LOCATOR_ROW`` in their place, and an operator after a selective one reads
    #: them back for the rows it kept. Hidden: the locator columns never reach a sink
    late_columns: list[str] = field(default_factory=list)

    def option(self, key: str, default: str | None = None) -> str | None:
        return self.options.get(key, default)

    def normalized_key(self) -> list[str]:
        """The declared PRIMARY KEY of a source read in a changelog format (debezium_json),
        whose changes the plan folds into the last row of each key (Flink's
        ChangelogNormalize, operators.changelog_normalize): such a log may repeat a create
        or delete a key it never created; and of an upsert-kafka source, whose tombstones
        name only the key. Empty otherwise (a CDC connector's own log is
        consistent: it is taken as it is)."""
        if not (self.changelog and self.primary_key and (self.option("format") or
                                                         self.connector == "upsert-kafka")):
            return []
        names = {n.lower(): n for n in self.columns_schema().names}
        return [names.get(k.lower(), k) for k in self.primary_key]

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

    def columns_schema(self) -> pa.Schema:
        """Every column a query sees: stored, metadata and computed, in declared order."""
        assert self.schema is not None
        if not self.computed:
            return self.schema
        types = {f.name: f for f in self.schema}
        types.update({n: pa.field(n, e.dtype) for n, e in self.computed.items()})
        return pa.schema([types[n] for n in self.column_order or list(types)])

    def scan_schema(self) -> pa.Schema:
        """What a scan of the table outputs: ``columns_schema`` narrowed by projection."""
        full = self.columns_schema()
        if self.projection is None:
            return full
        return self._with_locators(pa.schema([full.field(n) for n in self.projection]))

    def _with_locators(self, schema: pa.Schema) -> pa.Schema:
        """``schema`` without the late columns and with the row locators, when some are."""
        if not self.late_columns:
            return schema
        kept = [f for f in schema if f.name not in self.late_columns]
        return pa.schema(kept + list(LOCATOR_SCHEMA))

    def read_schema(self) -> pa.Schema:
        """The schema of what the source emits: the declared columns the scan needs (those
        projected, and those its projected computed columns read)."""
        assert self.schema is not None
        if self.projection is None:
            return self.schema
        if not self.computed:
            return self._with_locators(pa.schema([self.schema.field(n)
                                                  for n in self.projection]))
        needed = {n for n in self.projection if n not in self.computed}
        for n in self.projection:
            if n in self.computed:
                needed |= self.computed[n].columns()
        if not needed:  # only constants or PROCTIME(): read a column for the row count
            needed = {self.schema.names[0]}
        return pa.schema([f for f in self.schema if f.name in needed])

    def computed_step(self):
        """A function batch (``read_schema``) -> batch (``scan_schema``) that adds the
        computed columns; None when the scan outputs none."""
        if not self.computed:
            return None
        from caudal.plan.changelog import OP
        from caudal.plan.compile import compile_projection  # late: plan.compile is heavy
        from caudal.plan.expressions import Column

        out = self.scan_schema()
        exprs = [self.computed[f.name] if f.name in self.computed else Column(f.type, f.name)
                 for f in out]
        project = compile_projection(exprs, out.names)

        def step(batch: pa.RecordBatch) -> pa.RecordBatch:
            result = project(batch)
            if OP in batch.schema.names:  # a changelog's change kinds stay last
                result = result.append_column(OP, batch.column(OP))
            return result

        return step
