"""SQL types and their Arrow types; the single place that maps one to the other.

TIMESTAMP is ``timestamp[us, tz=UTC]`` everywhere (event time is compared across sources),
TEXT is ``string``, INTERVAL is ``duration[us]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa

from caudal.errors import DataError, PlanError

if TYPE_CHECKING:  # sqlglot is the SQL front end's: a Ray worker never imports it
    from sqlglot import exp

TIMESTAMP = pa.timestamp("us", tz="UTC")
#: TIME: microseconds of the day (what a declared TIME column and any time read from outside
#: hold)
TIME = pa.time64("us")
INTERVAL = pa.duration("us")

ACCEPTED = ("BOOLEAN, SMALLINT, INT, BIGINT, UTINYINT, USMALLINT, UINTEGER, UBIGINT, "
            "REAL/FLOAT, DOUBLE, DECIMAL(p, s), TEXT/VARCHAR/"
            "STRING, JSON, TIMESTAMP[(p)] [WITH [LOCAL] TIME ZONE], TIMESTAMP_LTZ[(p)], DATE, "
            "INTERVAL, BYTEA, type[] / ARRAY<type>, STRUCT<name type, ...> / ROW<name type, ...>, "
            "MAP<key, value>")

_SIMPLE = {
    "BOOLEAN": pa.bool_(),
    "TINYINT": pa.int8(),
    "SMALLINT": pa.int16(),
    "INT": pa.int32(),
    "BIGINT": pa.int64(),
    "UTINYINT": pa.uint8(),
    "USMALLINT": pa.uint16(),
    "UINT": pa.uint32(),
    "UBIGINT": pa.uint64(),
    "FLOAT": pa.float32(),
    "DOUBLE": pa.float64(),
    "TEXT": pa.string(),
    "VARCHAR": pa.string(),
    "NVARCHAR": pa.string(),
    "CHAR": pa.string(),
    "NCHAR": pa.string(),
    "JSON": pa.string(),
    "JSONB": pa.string(),
    "DATE": pa.date32(),
    "TIMESTAMP": TIMESTAMP,
    "TIMESTAMPTZ": TIMESTAMP,
    "TIMESTAMP_S": TIMESTAMP,
    "TIMESTAMP_MS": TIMESTAMP,
    "TIMESTAMPLTZ": TIMESTAMP,
    "DATETIME": TIMESTAMP,
    "INTERVAL": INTERVAL,
    "VARBINARY": pa.binary(),
    "BINARY": pa.binary(),
    "TIME": TIME,
}


#: DuckDB's unsigned integer types, which the SQL dialect parses as user-defined names
_UNSIGNED = {"UTINYINT": pa.uint8(), "USMALLINT": pa.uint16(), "UINTEGER": pa.uint32(),
             "UBIGINT": pa.uint64()}
#: the name an unsigned integer type is printed with, by bit width (what the DDL accepts)
_UNSIGNED_NAME = {t.bit_width: name for name, t in _UNSIGNED.items()}


#: field metadata of a declared TIMESTAMP column: its precision (``TIMESTAMP(3)``: digits of
#: the second's fraction) and whether it is zoned (WITH [LOCAL] TIME ZONE, TIMESTAMP_LTZ).
#: Text formats read epoch numbers in the precision's unit and write the zone suffix only
#: for zoned columns; the Arrow type is TIMESTAMP either way.
PRECISION_KEY = b"caudal.precision"
ZONED_KEY = b"caudal.zoned"
_ZONED = ("TIMESTAMPTZ", "TIMESTAMPLTZ")
#: field metadata of a column declared JSON (Arroyo's type): TEXT holding JSON, which JSON
#: writers embed as a value rather than as a string
JSON_KEY = b"caudal.json"
_JSON = ("JSON", "JSONB")


def column_field(name: str, node: exp.DataType) -> pa.Field:
    """The Arrow field of a declared column, with the metadata above for timestamps."""
    from sqlglot import exp

    dtype = arrow_type(node)
    if node.this.name in _JSON:
        return pa.field(name, dtype, metadata={JSON_KEY: b"true"})
    if not pa.types.is_timestamp(dtype):
        return pa.field(name, dtype)
    metadata = {}
    if node.this.name in _ZONED:
        metadata[ZONED_KEY] = b"true"
    params = node.expressions
    if params and isinstance(params[0].this, exp.Literal):
        metadata[PRECISION_KEY] = str(int(params[0].this.this)).encode()
    return pa.field(name, dtype, metadata=metadata or None)


def timestamp_precision(field: pa.Field) -> int | None:
    """The declared precision of a TIMESTAMP column (None when not declared)."""
    value = (field.metadata or {}).get(PRECISION_KEY)
    return int(value) if value is not None else None


def is_json(field: pa.Field) -> bool:
    """True for a TEXT column declared JSON."""
    return (field.metadata or {}).get(JSON_KEY) == b"true"


def is_zoned(field: pa.Field) -> bool:
    """True for a column declared TIMESTAMP WITH [LOCAL] TIME ZONE or TIMESTAMP_LTZ."""
    return (field.metadata or {}).get(ZONED_KEY) == b"true"


def arrow_type(node: exp.DataType) -> pa.DataType:
    """Translate a sqlglot DataType node into the Arrow type caudal uses for it."""
    from sqlglot import exp

    kind = node.this.name   # (the _SIMPLE keys: sqlglot's type names)
    if kind == "FLOAT" and node.expressions and int(node.expressions[0].name) > 24:
        return pa.float64()   # FLOAT(25..53): the SQL standard's double precision
    if kind in _SIMPLE:
        return _SIMPLE[kind]
    if kind == "USERDEFINED":  # names the dialect does not know: DuckDB's unsigned integers
        named = str(node.args.get("kind") or "").upper()
        if named in _UNSIGNED:
            return _UNSIGNED[named]
    if kind == "DECIMAL":
        params = [int(p.this.this) if isinstance(p.this, exp.Literal) else int(p.name)
                  for p in node.expressions]
        precision = params[0] if params else 38
        scale = params[1] if len(params) > 1 else 0
        return pa.decimal128(precision, scale)
    if kind == "ARRAY":
        return pa.list_(arrow_type(node.expressions[0]))
    if kind == "MAP" and len(node.expressions) == 2:
        return pa.map_(arrow_type(node.expressions[0]), arrow_type(node.expressions[1]))
    if kind == "STRUCT":
        fields = []
        for f in node.expressions:  # nested timestamps keep their precision and zone too
            fields.append(column_field(f.name, f.args["kind"]))
        return pa.struct(fields)
    raise PlanError(f"unsupported type {node.sql()}", hint=f"accepted: {ACCEPTED}")


def sql_name(t: pa.DataType) -> str:
    """The SQL spelling of an Arrow type, for messages and EXPLAIN."""
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_int8(t):  # was SMALLINT: a frame's DDL widened an int8 column
        return "TINYINT"
    if pa.types.is_int16(t):
        return "SMALLINT"
    if pa.types.is_int32(t):
        return "INT"
    if pa.types.is_int64(t):
        return "BIGINT"
    if pa.types.is_unsigned_integer(t):
        return _UNSIGNED_NAME[t.bit_width]
    if pa.types.is_float32(t):
        return "REAL"
    if pa.types.is_float64(t):
        return "DOUBLE"
    if pa.types.is_decimal(t):
        return f"DECIMAL({t.precision}, {t.scale})"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "TEXT"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "BYTEA"
    if pa.types.is_timestamp(t):
        return "TIMESTAMP"
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_duration(t) or pa.types.is_interval(t):
        return "INTERVAL"
    if pa.types.is_time(t):
        return "TIME"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"{sql_name(t.value_type)}[]"
    if pa.types.is_struct(t):
        inner = ", ".join(f"{t.field(i).name} {sql_name(t.field(i).type)}"
                          for i in range(t.num_fields))
        return f"STRUCT<{inner}>"
    if pa.types.is_map(t):
        return f"MAP<{sql_name(t.key_type)}, {sql_name(t.item_type)}>"
    if pa.types.is_null(t):
        return "NULL"
    return str(t).upper()


def normalize_type(t: pa.DataType) -> pa.DataType:
    """The canonical in-engine type for data read from outside (large/view strings, other
    timestamp units and zones), so every operator sees one type per SQL type."""
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return pa.binary()
    if pa.types.is_timestamp(t):
        return TIMESTAMP
    if pa.types.is_date64(t):   # DATE; a checkpoint's Parquet gives date64 back as date32
        return pa.date32()
    if pa.types.is_time(t):
        # TIME as declared; CSV infers time32[s], which Parquet (so a checkpoint) cannot
        # store: it came back as time32[ms] and a restored state no longer matched the rows
        return TIME
    if pa.types.is_dictionary(t):
        return normalize_type(t.value_type)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return pa.list_(normalize_type(t.value_type))   # type[]: no operator takes the others
    if pa.types.is_struct(t):
        return pa.struct([pa.field(t.field(i).name, normalize_type(t.field(i).type))
                          for i in range(t.num_fields)])
    if pa.types.is_duration(t):
        return INTERVAL
    return t


def normalize_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(f.name, normalize_type(f.type)) for f in schema])


def conform_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Cast a batch read from outside to the table's schema (no copy when already equal).

    Timestamps without a zone are taken as UTC, which is what TIMESTAMP means in caudal.
    """
    if batch.schema.equals(schema):
        return batch
    columns = []
    for field in schema:
        col = batch.column(field.name)
        if not col.type.equals(field.type):
            if pa.types.is_timestamp(col.type) and col.type.tz is None and \
                    pa.types.is_timestamp(field.type):
                col = cast_exactly(col, pa.timestamp(field.type.unit), field.name)
            col = cast_exactly(col, field.type, field.name)
        columns.append(col)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def cast_exactly(column: Any, target: pa.DataType, name: str) -> Any:
    """``column`` cast to ``target``, or a one-line DataError: a nanosecond timestamp, time or
    interval with sub-microsecond digits is refused rather than truncated to the microseconds
    TIMESTAMP, TIME and INTERVAL hold (truncating silently merges distinct values, which
    DuckDB's TIMESTAMP_NS keeps apart); a whole-microsecond one converts exactly."""
    try:
        return column.cast(target)     # a safe cast: fails when a value would lose digits
    except pa.ArrowInvalid as e:
        reason = str(e).splitlines()[0]
    if not (pa.types.is_temporal(column.type) and pa.types.is_temporal(target)):
        raise DataError(f"column {name!r}: {reason}",
                        hint=f"declare it as {sql_name(normalize_type(column.type))}") from None
    import pyarrow.compute as pc  # only on this error path: readers start without it

    back = column.cast(target, safe=False).cast(column.type)
    lossy = pc.not_equal(back, column)
    if isinstance(lossy, pa.ChunkedArray):
        lossy = lossy.combine_chunks()
    first = column.slice(pc.index(lossy, True).as_py(), 1)
    try:
        text = first.cast(pa.string())[0].as_py()
    except pa.ArrowNotImplementedError:    # durations have no text cast
        text = f"{first.cast(pa.int64())[0].as_py()} {column.type.unit}"
    raise DataError(f"column {name!r} holds {text} with digits finer than a microsecond, "
                    f"which {sql_name(target)} cannot hold (truncating would merge distinct "
                    f"values)", hint="write it with microsecond values, or read the "
                    "column as BIGINT (its integer)") from None


def is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)
