"""The catalog of a script: tables (with connector options), views and SET settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from sqlglot import exp

from caudal.durations import parse_duration_us
from caudal.errors import ConfigError, PlanError
from caudal.plan.expressions import Call, Expr
from caudal.plan.functions.coerce import cast
from caudal.plan.proctime import PROCTIME
from caudal.plan.tables import MEMORY, TableSpec
from caudal.sql.dialect import Caudal, MetadataColumnConstraint
from caudal.sql.expressions import interval_literal_us
from caudal.sql.scope import Scope, ScopeColumn, position
from caudal.types import TIMESTAMP, arrow_type, column_field, sql_name

#: property classes sqlglot uses for some WITH keys, and the key they stand for
_PROPERTY_KEYS = {
    exp.FileFormatProperty: "format",
    exp.PartitionedByProperty: "partitioned_by",
    exp.LocationProperty: "location",
    exp.EngineProperty: "engine",
}
#: clauses of Flink's CREATE [TEMPORARY] TABLE … COMMENT '…' that change nothing here
_IGNORED_PROPERTIES = (exp.TemporaryProperty, exp.SchemaCommentProperty)


@dataclass
class Catalog:
    tables: dict[str, TableSpec] = field(default_factory=dict)
    views: dict[str, exp.Expression] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def add_table(self, node: exp.Create, line: int) -> TableSpec:
        target = node.this
        table = _TableElements()
        if isinstance(target, exp.Schema):
            table_node = target.this
            for item in target.expressions:
                table.add(item)
        else:
            table_node = target
        name = table_node.name
        key = name.lower()
        if key in self.tables and node.args.get("exists"):  # IF NOT EXISTS: the first stays
            return self.tables[key]
        if key in self.tables or key in self.views:
            ln, col = position(table_node)
            raise PlanError(f"table {name!r} is already defined", line=ln, col=col)
        options = self._options(node, name, line)
        connector = options.get("connector")
        if connector is None and not options:  # Arroyo's memory table (sql.memory_tables)
            connector = MEMORY
            if not table.columns or table.computed_nodes or table.metadata:
                ln, col = position(table_node)
                raise PlanError(f"memory table {name!r} needs plain columns", line=ln,
                                col=col, hint=f"CREATE TABLE {name} (col TYPE, …), or give it "
                                              "a connector: WITH (connector = …)")
            if table.watermark is not None:
                ln, col = position(table.watermark)
                raise PlanError(f"memory table {name!r} cannot declare a WATERMARK", line=ln,
                                col=col, hint="its event time is the one of the query that "
                                              "writes it")
        elif connector is None:
            raise ConfigError(f"table {name!r} has no connector", line=line,
                              hint="add connector = 'filesystem' (or another) to WITH, or "
                                   "leave WITH out for a memory table")
        columns = table.columns
        if table.computed_nodes and not columns:
            ln, col = position(target)
            raise PlanError(f"table {name!r} has computed columns but declares no other "
                            "column", line=ln, col=col,
                            hint="declare the columns the computed ones read")
        computed, proctime = table.computed()
        spec = TableSpec(name=name, connector=connector, options=options,
                         schema=pa.schema(columns) if columns else None, line=line,
                         metadata=table.metadata, virtual=table.virtual,
                         primary_key=table.primary_key(), not_null=table.not_null,
                         computed=computed, column_order=table.order if computed else None,
                         proctime=proctime)
        self._event_time(spec, table.watermark,
                         list(spec.columns_schema()) if columns else [])
        self.tables[key] = spec
        return spec

    @staticmethod
    def _options(node: exp.Create, table: str, line: int) -> dict[str, str]:
        props = node.args.get("properties")
        options: dict[str, str] = {}
        for prop in props.expressions if props else []:
            if isinstance(prop, _IGNORED_PROPERTIES):
                continue
            if type(prop) is exp.Property:
                if isinstance(prop.this, exp.Dot):  # sink.mode = '…' written unquoted
                    key = ".".join(part.name for part in prop.this.flatten())
                elif isinstance(prop.this, (exp.Var, exp.Literal, exp.Identifier)):
                    key = prop.this.name
                else:
                    key = prop.name
                value = prop.args.get("value")
            else:
                key = _PROPERTY_KEYS.get(type(prop))
                value = prop.this
                if key is None:
                    raise ConfigError(f"unsupported WITH option {prop.sql()!r} in table "
                                      f"{table!r}", line=line,
                                      hint="write options as key = 'value'")
            if isinstance(value, exp.Literal):
                text = value.this
            elif isinstance(value, (exp.Boolean,)):
                text = "true" if value.this else "false"
            elif value is not None:
                text = value.name or value.sql()
            else:
                text = ""
            options[key.lower()] = str(text)
        return options

    @staticmethod
    def _event_time(spec: TableSpec, watermark, columns: list[pa.Field]) -> None:
        names = {f.name.lower(): f for f in columns}
        if watermark is not None:
            col = watermark.this.name
            ln, cn = position(watermark)
            if columns and col.lower() not in names:
                raise PlanError(f"WATERMARK FOR names unknown column {col!r}", line=ln, col=cn,
                                hint="columns: " + ", ".join(f.name for f in columns))
            col = names[col.lower()].name if columns else col
            if col in spec.proctime:
                raise PlanError(f"WATERMARK FOR {col}: a PROCTIME() column is processing "
                                "time, not event time", line=ln, col=cn,
                                hint="declare the watermark on a TIMESTAMP column of the data")
            spec.event_time = col
            spec.watermark_delay_us = watermark_delay(watermark, col)
        elif "event_time_field" in spec.options:
            spec.event_time = spec.options["event_time_field"]
            spec.watermark_delay_us = parse_duration_us(
                spec.options.get("watermark_delay", "0s"), "watermark_delay")
        if spec.event_time and columns:
            field_ = names.get(spec.event_time.lower())
            ln, cn = position(watermark) if watermark is not None else (spec.line, None)
            if field_ is None:
                raise PlanError(f"event time column {spec.event_time!r} is not a column of "
                                f"{spec.name!r}", line=ln, col=cn,
                                hint="columns: " + ", ".join(f.name for f in columns))
            if not pa.types.is_timestamp(field_.type):
                source = spec.event_time
                convert = {"DATE": f"CAST({source} AS TIMESTAMP)",
                           "BIGINT": f"TO_TIMESTAMP_LTZ({source}, 3)",  # epoch milliseconds
                           "TEXT": f"TO_TIMESTAMP({source}, 'yyyy-MM-dd HH:mm:ss')"}.get(
                               sql_name(field_.type), f"CAST({source} AS TIMESTAMP)")
                raise PlanError(f"event time column {source!r} must be a TIMESTAMP, "
                                f"not {sql_name(field_.type)}", line=ln, col=cn,
                                hint=f"declare a computed TIMESTAMP column and the watermark "
                                     f"on it: {source}_ts AS {convert}, WATERMARK FOR "
                                     f"{source}_ts AS {source}_ts - INTERVAL '5' SECOND")
            spec.event_time = field_.name

    def add_view(self, node: exp.Create) -> None:
        name = node.this.name
        key = name.lower()
        if key in self.tables or key in self.views:
            ln, col = position(node.this)
            raise PlanError(f"view {name!r} is already defined", line=ln, col=col)
        self.views[key] = node.expression


class _TableElements:
    """The columns and constraints of a CREATE TABLE's element list, checked one by one."""

    def __init__(self) -> None:
        self.columns: list[pa.Field] = []
        self.metadata: dict[str, str] = {}
        self.virtual: list[str] = []
        self.not_null: list[str] = []
        self.watermark: exp.WatermarkColumnConstraint | None = None
        #: computed columns in declared order: name -> the sqlglot expression
        self.computed_nodes: dict[str, exp.Expression] = {}
        #: the declared types of computed columns that have one (GENERATED ALWAYS AS)
        self.computed_types: dict[str, pa.DataType] = {}
        #: every column name in declared order
        self.order: list[str] = []
        self._key: list[str] = []
        self._key_node: exp.Expression | None = None

    def add(self, item: exp.Expression) -> None:
        if isinstance(item, exp.ColumnDef):
            self._column(item)
        elif isinstance(item, exp.WatermarkColumnConstraint):
            if self.watermark is not None:
                ln, col = position(item)
                raise PlanError("a table has one WATERMARK clause", line=ln, col=col)
            self.watermark = item
        elif isinstance(item, exp.PrimaryKey):
            self._primary_key([e.name for e in item.expressions], item)
        else:
            ln, col = position(item)
            raise PlanError(f"unsupported table element {item.sql(dialect=Caudal)}", line=ln,
                            col=col, hint="columns, WATERMARK FOR col [AS expr], PRIMARY KEY "
                                          "(cols) NOT ENFORCED")

    def _column(self, item: exp.ColumnDef) -> None:
        name = item.name
        ln, col = position(item)
        if any(n.lower() == name.lower() for n in self.order):
            raise PlanError(f"column {name!r} is declared twice", line=ln, col=col)
        self.order.append(name)
        kind = item.args.get("kind")
        constraints = [c.args.get("kind") for c in item.args.get("constraints") or []]
        # Flink's `name AS expr`, Arroyo's `name TYPE GENERATED ALWAYS AS (expr) STORED`
        computed = [c.this for c in constraints if isinstance(c, exp.ComputedColumnConstraint)]
        computed += [c.expression for c in constraints
                     if isinstance(c, exp.GeneratedAsIdentityColumnConstraint)
                     and c.expression is not None]
        if computed:
            self.computed_nodes[name] = computed[0]
            if kind is not None:
                try:
                    self.computed_types[name] = arrow_type(kind)
                except PlanError as e:
                    raise e.with_position(ln, col) from None
            return
        if kind is None:
            raise PlanError(f"column {name!r} has no type", line=ln, col=col,
                            hint="name TYPE, or name AS expression (a computed column)")
        try:
            self.columns.append(column_field(name, kind))
        except PlanError as e:
            raise e.with_position(ln, col) from None
        for c in constraints:
            if isinstance(c, MetadataColumnConstraint):
                self.metadata[name] = c.this.name if c.this is not None else name
                if c.args.get("virtual"):
                    self.virtual.append(name)
            elif isinstance(c, exp.NotNullColumnConstraint) and not c.args.get("allow_null"):
                self.not_null.append(name)
            elif isinstance(c, exp.NotNullColumnConstraint):
                continue  # NULL: the default
            elif isinstance(c, exp.PrimaryKeyColumnConstraint):
                self._primary_key([name], item)
            elif isinstance(c, exp.CommentColumnConstraint):
                continue
            else:
                raise PlanError(f"unsupported constraint {c.sql(dialect=Caudal)} on column "
                                f"{name!r}", line=ln, col=col,
                                hint="NOT NULL, PRIMARY KEY NOT ENFORCED, METADATA [FROM "
                                     "'key'] [VIRTUAL]")

    def _primary_key(self, names: list[str], node: exp.Expression) -> None:
        if self._key_node is not None:
            ln, col = position(node)
            raise PlanError("a table has one PRIMARY KEY", line=ln, col=col)
        self._key, self._key_node = names, node

    def computed(self) -> tuple[dict[str, Expr], list[str]]:
        """The computed columns' IR over the declared columns, and which are PROCTIME()."""
        from caudal.sql.expressions import translate  # late: it imports the function registry

        scope = Scope(columns=[ScopeColumn(None, f.name, f.type, f.name) for f in self.columns])
        out: dict[str, Expr] = {}
        proctime: list[str] = []
        for name, node in self.computed_nodes.items():
            expr = translate(node, scope)
            if isinstance(expr, Call) and expr.func == PROCTIME:
                proctime.append(name)
            if name in self.computed_types:
                expr = cast(expr, self.computed_types[name])
            if pa.types.is_null(expr.dtype):
                expr = cast(expr, pa.string())
            out[name] = expr
        return out, proctime

    def primary_key(self) -> list[str]:
        """The key's columns as declared (checked against the columns)."""
        declared = {f.name.lower(): f.name for f in self.columns}
        out = []
        for n in self._key:
            if n.lower() not in declared:
                ln, col = position(self._key_node)
                raise PlanError(f"PRIMARY KEY names unknown column {n!r}", line=ln, col=col,
                                hint="columns: " + ", ".join(declared.values()))
            out.append(declared[n.lower()])
        return out


def watermark_delay(watermark: exp.WatermarkColumnConstraint, column: str) -> int:
    """The delay in µs of ``WATERMARK FOR ts [AS ts | AS ts - INTERVAL …]``, in parentheses
    or not; without AS the watermark is the largest event time seen (delay 0)."""
    expr = watermark.expression
    if not isinstance(expr, exp.Expression):  # WATERMARK FOR ts
        return 0
    while isinstance(expr, exp.Paren):
        expr = expr.this

    def is_column(node: exp.Expression) -> bool:
        while isinstance(node, exp.Paren):
            node = node.this
        return isinstance(node, exp.Column) and node.name.lower() == column.lower()

    if is_column(expr):
        return 0
    if isinstance(expr, exp.Sub) and is_column(expr.this):
        interval = expr.expression
        while isinstance(interval, exp.Paren):
            interval = interval.this
        if isinstance(interval, exp.Interval):
            delay = interval_literal_us(interval)
            if delay < 0:
                ln, cn = position(interval)
                raise PlanError(f"the watermark delay {interval.sql()} is negative", line=ln,
                                col=cn, hint="a watermark trails the event time")
            return delay
    ln, cn = position(expr)
    raise PlanError(f"unsupported watermark expression {expr.sql(dialect=Caudal)}", line=ln,
                    col=cn, hint=f"write WATERMARK FOR {column} AS {column} - INTERVAL '1' "
                                 f"SECOND, or WATERMARK FOR {column}")


__all__ = ["Catalog", "TIMESTAMP"]
