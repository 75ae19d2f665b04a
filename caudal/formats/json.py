"""JSON lines: one object per line. Read with Arrow's parser, written with Polars' encoder.

A missing key is NULL; a value of the wrong JSON type (``"3"`` for a BIGINT, ``1.5`` for an
INT) is a malformed record, never coerced. DECIMAL is a number or its text, BYTEA is
``\\x``-hex text. Time values, as Flink and Arroyo write them:

* TIMESTAMP is read from text with or without a zone (``2024-01-01 10:00:00.123``,
  ``2024-01-01T10:00:00.123Z``, ``…+02:00``; no zone means UTC), or from an epoch number:
  milliseconds with ``json.timestamp_format = 'unix_millis'``, else in the unit of the
  column's declared precision (TIMESTAMP(3): ms, (6): µs, (9): ns; Debezium writes
  timestamps so). It is written as ``2024-01-01T10:00:00.123`` (``Z`` only for a column
  declared WITH [LOCAL] TIME ZONE / TIMESTAMP_LTZ), with a space instead of ``T`` for
  Flink's ``json.timestamp-format.standard = 'SQL'``, or as epoch milliseconds.
* DATE is ``YYYY-MM-DD``, or a number: days since 1970 (Debezium), milliseconds with
  ``unix_millis``.

A column declared JSON (Arroyo's type) is read as the raw JSON text of its key's value and
written as a JSON value, not a string. ``json.unstructured = 'true'`` (Arroyo) reads each
line whole into one TEXT column ``value``.
"""

from __future__ import annotations

import io
import json
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.json as pj

from caudal import compute as pc
from caudal.compute import from_numpy
from caudal.errors import ConfigError, DataError, RuntimeFailure
from caudal.formats import bad_data, lines, text
from caudal.types import (
    is_json,
    is_text,
    is_zoned,
    normalize_schema,
    sql_name,
    timestamp_precision,
)

NAME = "json"
EXTENSIONS = (".json", ".jsonl", ".ndjson")
#: bytes of the first file that schema inference looks at
INFER_BYTES = 4 << 20
_FIRST_OBJECT = re.compile(rb"[ \t\r\n]*\{")
_NOT_OBJECT = re.compile(rb"\n[ \t\r]*[^{ \t\r\n]")
#: NaN and the infinities as the JSON sinks write them (and Flink's JSON format reads them)
_SPECIAL_TEXT = rb'"(NaN|-?Infinity)"'


#: options of the json format (also read by debezium_json and by message connectors)
OPTIONS = {
    "json.timestamp_format": "rfc3339 (default: timestamps as text) or unix_millis (epoch "
                             "milliseconds), for reading and writing",
    "json.timestamp-format.standard": "Flink's name: ISO-8601 (2024-01-01T10:00:00, the "
                                      "default) or SQL (2024-01-01 10:00:00)",
    "json.unstructured": "true: each line is read whole into one TEXT column named value",
}
TIMESTAMP_FORMATS = ("rfc3339", "unix_millis")
_STANDARDS = {"iso-8601": "T", "sql": " "}
#: the column of a table read with json.unstructured
VALUE = "value"
_DAY_MS = 86_400_000


@dataclass(frozen=True)
class JsonOptions:
    """How time values are read and written, from a table's options (see the module doc)."""

    timestamp_format: str = "rfc3339"
    #: between date and time in written timestamps: "T" (RFC 3339, ISO-8601) or " " (SQL)
    separator: str = "T"
    unstructured: bool = False

    @classmethod
    def of(cls, options: dict[str, str] | JsonOptions | None) -> JsonOptions:
        """The options of a table (its WITH options); ConfigError naming a bad value."""
        if isinstance(options, JsonOptions):
            return options
        options = options or {}
        fmt = options.get("json.timestamp_format", "rfc3339").lower()
        if fmt not in TIMESTAMP_FORMATS:
            raise ConfigError(f"json.timestamp_format = {fmt!r}",
                              hint="accepted: " + ", ".join(TIMESTAMP_FORMATS))
        standard = options.get("json.timestamp-format.standard", "ISO-8601").lower()
        if standard not in _STANDARDS:
            raise ConfigError(f"json.timestamp-format.standard = {standard!r}",
                              hint="accepted: ISO-8601, SQL")
        flag = options.get("json.unstructured", "false").lower()
        if flag not in ("true", "false"):
            raise ConfigError(f"json.unstructured = {flag!r}", hint="accepted: true, false")
        return cls(fmt, _STANDARDS[standard], flag == "true")


def check_options(options: dict[str, str], schema: pa.Schema | None,
                  sink: bool = False) -> None:
    """Planning-time check of a table's json options against its declared columns."""
    opts = JsonOptions.of(options)
    if opts.unstructured and sink:
        raise ConfigError("json.unstructured is for reading; a sink writes its columns as one "
                          "JSON object per line", hint="remove json.unstructured")
    if opts.unstructured and schema is not None and (
            schema.names != [VALUE] or not is_text(schema.field(0).type)):
        raise ConfigError("json.unstructured = 'true' reads one TEXT (or JSON) column named "
                          f"{VALUE!r}, not ({', '.join(schema.names)})",
                          hint=f"declare ({VALUE} JSON) or no columns at all")


def _unsupported(field: pa.Field, t: pa.DataType) -> None:
    if pa.types.is_duration(t) or pa.types.is_interval(t) or pa.types.is_map(t):
        raise ConfigError(f"JSON input cannot hold {sql_name(t)} column {field.name!r}",
                          hint="declare it as TEXT (or ROW<…> for an object) and convert it "
                               "in the query")


def _parse_type(field: pa.Field, numeric: bool, flipped: frozenset[str] = frozenset(),
                path: str = "") -> pa.DataType:
    """The type Arrow's JSON parser is asked for: dates and bytes are read as text (dates as
    numbers when ``numeric``), timestamps as text (as int64 when ``numeric``), then
    converted by ``_convert``; nested types recursively. A time column whose path (as Arrow
    names it: ``/after/ts``) is in ``flipped`` is parsed the other way."""
    t = field.type
    path = f"{path}/{field.name}"
    _unsupported(field, t)
    as_number = numeric != (path in flipped)
    if pa.types.is_timestamp(t):
        return pa.int64() if as_number else t
    if pa.types.is_date(t):
        return pa.int64() if as_number else pa.string()
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_time(t):
        return pa.string()
    if pa.types.is_struct(t):
        return pa.struct([pa.field(t.field(i).name,
                                   _parse_type(t.field(i), numeric, flipped, path))
                          for i in range(t.num_fields)])
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(_parse_type(t.value_field, numeric, flipped, path))
    return t


def _time_paths(schema: pa.Schema) -> set[str]:
    """Arrow's paths of the TIMESTAMP and DATE fields (those read as text or as numbers)."""
    out: set[str] = set()

    def visit(field: pa.Field, path: str) -> None:
        path = f"{path}/{field.name}"
        t = field.type
        if pa.types.is_timestamp(t) or pa.types.is_date(t):
            out.add(path)
        elif pa.types.is_struct(t):
            for i in range(t.num_fields):
                visit(t.field(i), path)
        elif pa.types.is_list(t) or pa.types.is_large_list(t):
            visit(t.value_field, path)

    for f in schema:
        visit(f, "")
    return out


_CHANGED = re.compile(r"Column\((/[^)]*)\) changed from (?:string to number|number to string)")


def _epoch_to_timestamp(values: pa.Array, field: pa.Field, opts: JsonOptions) -> pa.Array:
    """Epoch numbers -> TIMESTAMP: milliseconds (unix_millis), else the declared precision's
    unit; a column without a declared precision cannot say which."""
    if opts.timestamp_format == "unix_millis":
        factor, divisor = 1_000, 1
    else:
        precision = timestamp_precision(field)
        if precision is None:
            raise pa.ArrowInvalid(
                f"column {field.name!r} holds an epoch number; declare TIMESTAMP(3) for "
                "milliseconds, TIMESTAMP(6) for microseconds or TIMESTAMP(9) for "
                "nanoseconds, or set json.timestamp_format = 'unix_millis'")
        factor, divisor = (1_000, 1) if precision <= 3 else (1, 1) if precision <= 6 \
            else (1, 1_000)
    micros = pc.multiply_checked(values, factor) if factor != 1 else values
    if divisor != 1:
        micros = pc.divide(micros, divisor)
        if pc.any(pc.not_equal(pc.multiply(micros, divisor), values)).as_py():
            # truncating would merge distinct instants: refused as Parquet's nanoseconds are
            raise pa.ArrowInvalid(
                f"column {field.name!r} holds epoch nanoseconds finer than a microsecond, "
                "which TIMESTAMP cannot hold (write whole microseconds)")
    return micros.cast(pa.timestamp("us")).cast(field.type)


#: a TIME's text as the sinks (and DuckDB, Flink) write it: hours, minutes, seconds and up
#: to 6 digits of fraction; no zone
_TIME_TEXT = r"^[0-2][0-9]:[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?$"


def _parse_time(values: pa.Array, field: pa.Field) -> pa.Array:
    """TIME from its text (``23:59:59.999999``), read as that time of 1970-01-01."""
    if not pc.all(pc.or_kleene(pc.match_substring_regex(values, _TIME_TEXT),
                               pc.is_null(values))).as_py():
        raise pa.ArrowInvalid(f"column {field.name!r} expects TIME text (HH:MM:SS[.ffffff])")
    day = pc.binary_join_element_wise(pa.scalar("1970-01-01T", pa.string()), values,
                                      pa.scalar("", pa.string()))
    micros = day.cast(pa.timestamp("us")).cast(pa.int64())
    return micros.cast(pa.time64("us")).cast(field.type)


def _convert(values: pa.Array, field: pa.Field, opts: JsonOptions) -> pa.Array:
    """A parsed column (``_parse_type``) as the field's type, vectorized; nested types are
    rebuilt from their converted children."""
    t = field.type
    if values.type.equals(t):
        return values
    if pa.types.is_timestamp(t) and pa.types.is_integer(values.type):
        return _epoch_to_timestamp(values, field, opts)
    if pa.types.is_date(t) and pa.types.is_integer(values.type):
        # milliseconds: the day holding that instant (floored: -1 is 1969-12-31, not 1970)
        days = pc.divide(pc.subtract(values, pc.if_else(pc.less(values, 0), _DAY_MS - 1, 0)),
                         _DAY_MS) if opts.timestamp_format == "unix_millis" else values
        return days.cast(pa.int32()).cast(t)
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return text.parse_hex(values).cast(t)
    if pa.types.is_time(t):
        return _parse_time(values, field)
    if pa.types.is_struct(t):
        children = [_convert(values.field(i), t.field(i), opts) for i in range(t.num_fields)]
        return pa.StructArray.from_arrays(children, fields=list(t),
                                          mask=values.is_null() if values.null_count else None)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        inner = _convert(values.flatten(), t.value_field, opts)
        offsets = pc.subtract(values.offsets, values.offsets[0])
        return type(values).from_arrays(offsets, inner, type=t,
                                        mask=values.is_null() if values.null_count else None)
    return values.cast(t)


def infer_schema(stream: Any, options: dict[str, str] | None = None) -> pa.Schema:
    """Arrow's inference on the start of a file; a column that is only NULL there is TEXT
    (with json.unstructured, the one column ``value``)."""
    return merge_samples([("", sample_schema(stream, options))])


def sample_schema(stream: Any, options: dict[str, str] | None = None) -> pa.Schema:
    """The types of the keys on the start of a file (whole lines), a key only NULL there
    still of type null: the schema of one file of several (``merge_samples``)."""
    if JsonOptions.of(options).unstructured:
        return pa.schema([(VALUE, pa.string())])
    data = lines.first_rows(stream, lines.last_newline, INFER_BYTES)
    if lines.is_blank(data):  # an empty file of several: no keys (merge_samples)
        return pa.schema([])
    try:
        table = pj.read_json(lines.buffer_reader(data),
                             read_options=pj.ReadOptions(block_size=len(data) + 1))
    except pa.ArrowInvalid as error:
        raise _inference_error(data, error, options) from None
    return normalize_schema(table.schema)


def merge_samples(samples: list[tuple[str, pa.Schema]]) -> pa.Schema:
    """The schemas of several files' starts (``where``, schema) as one, as DuckDB's
    read_json samples several files: every key of any, integers and doubles DOUBLE, objects
    with the keys of all; a key only NULL is TEXT. A key of types that do not merge (a
    number in one file, text in another) is a DataError naming both files."""
    merged = samples[0][1]
    found = {f.name: samples[0][0] for f in merged}
    for where, schema in samples[1:]:
        try:
            merged = pa.unify_schemas([merged, schema], promote_options="permissive")
        except (pa.ArrowTypeError, pa.ArrowInvalid):
            for f in schema:
                if f.name in found and f.name in merged.names:
                    try:
                        pa.unify_schemas([pa.schema([merged.field(f.name)]), pa.schema([f])],
                                         promote_options="permissive")
                    except (pa.ArrowTypeError, pa.ArrowInvalid):
                        raise DataError(
                            f"key {f.name!r} is {sql_name(merged.field(f.name).type)} in "
                            f"{found[f.name]} but {sql_name(f.type)} in {where}",
                            hint="declare the columns in CREATE TABLE; a column declared "
                                 "JSON takes any value") from None
            raise
        for f in schema:
            found.setdefault(f.name, where)
    if not merged.names:
        raise DataError(f"{samples[0][0] + ' ' if samples[0][0] else ''}holds no JSON lines "
                        "to take the columns from", hint="declare the columns in CREATE TABLE")
    return pa.schema([pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f
                      for f in merged])


def _inference_error(data: bytes, error: pa.ArrowInvalid,
                     options: dict[str, str] | None) -> DataError:
    """Arrow's inference error as one line naming the line and what is wrong. Arrow counts
    rows from 0 without blank lines, and not always exactly for a line that is not JSON, so
    the line is looked for from there (error path: Python's json on a few lines)."""
    message = str(error).splitlines()[0]
    rows = lines.split_lines(data, 1)
    at = re.search(r" in row (\d+)$", message)
    n = min(int(at.group(1)), len(rows) - 1) if at and rows else 0
    changed = re.search(r"Column\(/(.*)\) changed from (\w+) to (\w+)", message)
    hint = "declare the columns in CREATE TABLE; a column declared JSON takes any value"
    if changed and rows:
        key, before, after = changed.groups()
        return DataError(f"line {rows[n][0]}: key {key.replace('/', '.')!r} holds "
                         f"{_a(after)} here, {_a(before)} on an earlier line", hint=hint)
    explain = Decoder(pa.schema([]), options).explain
    for line, row in rows[max(n - 1, 0):]:
        try:
            value = json.loads(row)
        except ValueError:
            return DataError(f"line {line}: {explain(row, error)}", hint=hint)
        if not isinstance(value, dict):
            return DataError(f"line {line}: {explain(row, error)}", hint=hint)
    return DataError(re.sub(r"^JSON parse error: ", "", message), hint=hint)


def _a(kind: str) -> str:
    """Arrow's JSON kind (number, string, object, array, boolean) with its article."""
    return f"an {kind}" if kind[:1] in "aeiou" else f"a {kind}"


class Decoder:
    """Turns blocks of JSON lines into tables of exactly ``schema``."""

    def __init__(self, schema: pa.Schema,
                 options: dict[str, str] | JsonOptions | None = None):
        self.schema = schema
        self.options = JsonOptions.of(options)
        self.numeric = self.options.timestamp_format == "unix_millis"
        if self.options.unstructured:
            check_options({"json.unstructured": "true"}, schema)
        #: time columns read the other way (text vs epoch numbers) than ``numeric`` says,
        #: learned from the data: Arrow names the column that changed between the two
        self.flipped: frozenset[str] = frozenset()
        self.time_paths = _time_paths(schema)
        self.parse_schema = self._parse_schema(self.flipped)
        #: where a REAL or DOUBLE's NaN and infinities may come as strings
        self.special_floats = _special_float_pattern(schema)

    def _parse_schema(self, flipped: frozenset[str]) -> pa.Schema:
        """What Arrow parses: every column but those declared JSON (taken raw, ``_raw``)."""
        return pa.schema([pa.field(f.name, _parse_type(f, self.numeric, flipped))
                          for f in self.schema if not is_json(f)])

    def decode(self, data: bytes, newlines: int | None = None, objects: bool = False
               ) -> pa.Table:
        """The rows of ``data``. ``newlines``: how many line breaks it holds, when the caller
        already knows (message values joined into lines, the last one ended too): then the
        block is not counted again and is parsed as one piece (a polled batch of messages is
        one unit of work; Arrow's smaller pieces cost ~10 % more CPU to parse and combine).
        ``objects``: the caller checked that every line starts with ``{`` (the Kafka source
        knows where its lines start), so the block is not searched for lines that do not
        (~0.4 µs a 260-byte line)."""
        if lines.is_blank(data):
            return self.schema.empty_table()
        if self.options.unstructured:
            return self._whole_lines(data)
        tried = {self.flipped}
        while True:
            try:
                return self._decode(data, self.parse_schema, newlines, objects)
            except pa.ArrowInvalid as error:
                bare = self._bare_specials(data, error)
                if bare is not None:
                    data = bare
                    continue
                found = _CHANGED.search(str(error))
                if found is None or found.group(1) not in self.time_paths:
                    raise
                flipped = self.flipped ^ {found.group(1)}
                if flipped in tried:  # numbers and text mixed in one column of a block
                    raise
                tried.add(flipped)
                self.flipped, self.parse_schema = flipped, self._parse_schema(flipped)

    def _bare_specials(self, data: bytes, error: pa.ArrowInvalid) -> bytes | None:
        """``data`` with ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` as the bare tokens
        Arrow's parser reads into REAL and DOUBLE, when a float column met them as strings
        (what caudal's JSON sinks write, as Flink's do; DuckDB's read_json takes them too);
        else None. Only on that error, and only as the value of a key that names a float
        field (or an element of an array, when no array holds text): a TEXT value "NaN"
        stays text."""
        if self.special_floats is None or "changed from number to string" not in str(error):
            return None
        bare = self.special_floats.sub(_unquoted, data)
        return None if bare == data else bare

    def _whole_lines(self, data: bytes) -> pa.Table:
        """json.unstructured: each non-blank line is one ``value`` (it must be JSON)."""
        text_ = pa.array([_text(data)]) if data else pa.array([""])
        rows = pc.list_flatten(pc.split_pattern(text_, "\n"))
        rows = pc.utf8_rtrim(rows, "\r")
        rows = pc.filter(rows, pc.invert(pc.match_substring_regex(rows, r"^[ \t]*$")))
        if len(rows):
            from caudal.plan.functions.kernels import duckdb_eval

            valid = duckdb_eval("json_valid(c0)", [rows], pa.bool_(), "json")
            if not pc.all(valid).as_py():
                raise pa.ArrowInvalid("a line is not valid JSON")
        return pa.Table.from_arrays([rows.cast(self.schema.field(0).type)],
                                    schema=self.schema)

    def _decode(self, data: bytes, parse_schema: pa.Schema,
                newlines: int | None = None, objects: bool = False) -> pa.Table:
        # a line must hold one object; Arrow's reader reads a line that is `null` as a row
        if not objects and (not _FIRST_OBJECT.match(data) or _NOT_OBJECT.search(data)):
            raise pa.ArrowInvalid("a line is not a JSON object")
        parse = pj.ParseOptions(explicit_schema=parse_schema,
                                unexpected_field_behavior="ignore")
        whole = newlines is not None
        if newlines is None:
            newlines = data.count(b"\n")
        # one piece (a small block, or a batch of messages) parses on this thread: handing
        # a small one to Arrow's pool costs more than parsing it (a single event: 170 µs of
        # CPU instead of 120)
        threads = len(data) > lines.PARSE_BLOCK and not whole
        try:
            table = pj.read_json(lines.buffer_reader(data), parse_options=parse,
                                 read_options=pj.ReadOptions(
                                     use_threads=threads,
                                     block_size=len(data) + 1 if whole
                                     else lines.parse_block_size(data)))
        except pa.ArrowInvalid as error:
            if "straddl" not in str(error).lower():
                raise
            table = pj.read_json(lines.buffer_reader(data), parse_options=parse,
                                 read_options=pj.ReadOptions(
                                     block_size=lines.parse_block_size(data, error)))
        if table.num_rows != newlines + (not data.endswith(b"\n")) and \
                table.num_rows != sum(1 for line in data.split(b"\n") if line.strip()):
            raise pa.ArrowInvalid("a line holds more than one JSON value")
        # Arrow's JSON reader takes text that is not UTF-8 as it is, into string columns
        # that fail later (printing, kernels, sinks) with no line named; checking here
        # costs ~2 % of the parse and sends such lines to bad_data
        table.validate(full=True)
        if parse_schema.equals(self.schema):
            return table
        raw = _raw(data, [f.name for f in self.schema if is_json(f)])
        columns = []
        for field in self.schema:
            if field.name in raw:
                columns.append(raw[field.name].cast(field.type))
                continue
            parsed = table.column(field.name)
            if not parsed.type.equals(field.type):
                parsed = pa.chunked_array([_convert(c, field, self.options)
                                           for c in parsed.chunks], field.type)
            columns.append(parsed)
        return pa.Table.from_arrays(columns, schema=self.schema)

    def explain(self, row: bytes, error: Exception) -> str:
        """What is wrong with one line (error path: Python's json and one-field decodes)."""
        wrong = lines.not_utf8(row)
        if wrong:
            return wrong
        twice = re.search(r"Column\(/(.*)\) was specified twice", str(error))
        if twice:  # Python's json would take the last one; Arrow's reader refuses
            return f"key {twice.group(1)!r} appears twice in the object"
        try:
            # without its line break: a line cut short is "at column <its end>", not 1 of a
            # line 2 that does not exist
            value = json.loads(row.rstrip(b"\r\n"))
        except ValueError as e:
            msg = getattr(e, "msg", str(e))
            col = getattr(e, "colno", None)
            return f"not valid JSON ({msg}" + (f" at column {col})" if col else ")")
        if not isinstance(value, dict):
            return f"expected a JSON object, got {_short(row)}"
        if self.options.unstructured:
            return re.sub(r" in row \d+$", "", str(error).splitlines()[0])
        for field in self.schema:
            if field.name in value:
                one = Decoder(pa.schema([field]), self.options)
                try:
                    one.decode(json.dumps({field.name: value[field.name]}).encode() + b"\n")
                except pa.ArrowInvalid as e:
                    if "epoch number" in str(e):
                        return str(e).splitlines()[0]
                    trouble = text.timestamp_text_trouble(value[field.name]) \
                        if pa.types.is_timestamp(field.type) else ""
                    return (f"column {field.name!r} expects {sql_name(field.type)}, got "
                            f"{_short(json.dumps(value[field.name]).encode())}{trouble}")
        return re.sub(r" in row \d+$", "", str(error).splitlines()[0])


def _raw(data: bytes, names: list[str]) -> dict[str, pa.Array]:
    """Columns declared JSON (Arroyo's type): each row's value of the key as JSON text (an
    object or array as written, a string with its quotes), NULL when missing or null."""
    if not names:
        return {}
    from caudal.plan.functions.json import json_path
    from caudal.plan.functions.kernels import duckdb_eval

    rows = pc.list_flatten(pc.split_pattern(pa.array([_text(data)]), "\n"))
    rows = pc.filter(rows, pc.invert(pc.match_substring_regex(rows, r"^[ \t\r]*$")))
    sql = ("CASE WHEN json_type(json_extract(c0, ?)) <> 'NULL' "
           "THEN CAST(json_extract(c0, ?) AS VARCHAR) END")
    return {n: duckdb_eval(sql, [rows], pa.string(), "json",
                           [json_path([n]), json_path([n])]) for n in names}


def _text(data: bytes) -> str:
    """A block as text; bytes that are not UTF-8 fail the block as Arrow's parsers do, so
    bad_data finds the line (not a UnicodeDecodeError that names nothing)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise pa.ArrowInvalid("not valid UTF-8") from None


def _short(raw: bytes, limit: int = 60) -> str:
    shown = raw.decode("utf-8", "replace").strip()
    return shown if len(shown) <= limit else shown[:limit] + "…"


def read(stream: Any, schema: pa.Schema, policy: bad_data.BadDataPolicy,
         block_size: int = lines.BLOCK_SIZE,
         options: dict[str, str] | JsonOptions | None = None) -> Iterator[pa.Table]:
    """Tables of ``schema`` from a stream of JSON lines, applying ``policy`` to bad lines."""
    decoder = Decoder(schema, options)
    for first_line, data in lines.read_blocks(stream, lines.last_newline, block_size):
        try:
            yield decoder.decode(data)
        except pa.ArrowInvalid:
            rows = lines.split_lines(data, first_line)
            yield from bad_data.decode_rows(rows, decoder.decode, decoder.explain, policy)


def writable(column: pa.Array, options: JsonOptions = JsonOptions(),
             zoned: bool = False) -> pa.Array:
    """A column as Polars should encode it: timestamps as text (``Z`` only when ``zoned``) or
    epoch milliseconds, dates as text or milliseconds, bytes as hex text, NaN and infinities
    as text (``_special_floats``: the output then goes through ``unmark_numbers``)."""
    t = column.type
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_dictionary(t):
        return writable(column.dictionary_decode(), options, zoned)
    millis = options.timestamp_format == "unix_millis"
    if pa.types.is_timestamp(t):
        if millis:  # floored: 1969-12-31 23:59:59.9995 is -1 (1969), as CAST(… AS
            # TIMESTAMP(3)) cuts it; a division truncates toward 0 (1970)
            micros = column.cast(pa.timestamp("us"), safe=False)
            return pc.divide(pc.floor_temporal(micros, unit="millisecond").cast(pa.int64()),
                             1_000)
        return text.rfc3339(column, options.separator, zone=zoned)
    if pa.types.is_date(t) and millis:
        return pc.multiply(column.cast(pa.date32()).cast(pa.int32()).cast(pa.int64()), _DAY_MS)
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or \
            pa.types.is_binary_view(t) or pa.types.is_fixed_size_binary(t):
        return text.to_text(column)
    if pa.types.is_struct(t) and _has_special(t):  # nested values written the same way
        children = [writable(c, options) for c in column.flatten()]
        return pa.StructArray.from_arrays(children, names=[f.name for f in t],
                                          mask=column.is_null() if column.null_count else None)
    if (pa.types.is_list(t) or pa.types.is_large_list(t)) and _has_special(t):
        offsets = pc.subtract(column.offsets, column.offsets[0])
        return type(column).from_arrays(offsets, writable(column.flatten(), options),
                                        mask=column.is_null() if column.null_count else None)
    if pa.types.is_map(t) and _has_special(t):
        offsets = pc.subtract(column.offsets, column.offsets[0])
        keys, items = writable(column.keys, options), writable(column.items, options)
        return pa.MapArray.from_arrays(offsets, keys, items,
                                       type=pa.map_(keys.type, items.type),
                                       mask=column.is_null() if column.null_count else None)
    if pa.types.is_floating(t):
        return _special_floats(column)
    if pa.types.is_decimal(t):  # a JSON number with every digit, as Flink writes it
        return _marked(pc.cast(column, pa.large_string()))
    return column


def _marked(numbers: pa.Array) -> pa.Array:
    """Number texts between the marks ``unmark_numbers`` removes with their quotes."""
    mark = pa.scalar(_NUMBER_MARK, pa.large_string())
    return pc.binary_join_element_wise(mark, numbers.cast(pa.large_string()), mark,
                                       pa.scalar("", pa.large_string()))


#: wraps a number's text in a column ``_special_floats`` made text; ``unmark_numbers``
#: drops it with the quotes around it, leaving the bare number. Random: no row's text holds it
_NUMBER_MARK = f"\x01caudal-number-{uuid.uuid4().hex}\x01"
#: the mark as JSON writes it inside a string (Polars's ``\u0001``), and its quoted ends
_NUMBER_MARK_JSON = json.dumps(_NUMBER_MARK)[1:-1].encode()
_NON_FINITE = {"NaN": np.nan, "Infinity": np.inf, "-Infinity": -np.inf}


def _special_floats(column: pa.Array) -> pa.Array:
    """A floating column holding NaN or an infinity (JSON numbers have none) as text:
    ``"NaN"``, ``"Infinity"``, ``"-Infinity"``, the strings Flink's JSON format (Jackson)
    writes and reads, as DuckDB's ``read_json`` reads them into a DOUBLE; its
    other values are their number text between marks that ``unmark_numbers`` removes with
    their quotes. A column without such values is returned as it is."""
    values = column.to_numpy(zero_copy_only=False)
    if column.null_count:
        values = np.where(column.is_null().to_numpy(zero_copy_only=False), 0.0, values)
    if np.isfinite(values).all():
        return column
    numbers = _double_text(column) if pa.types.is_float64(column.type) else None
    if numbers is None:
        import polars as pl  # only writers need it (loaded on first use)

        numbers = pl.from_arrow(column).cast(pl.String).to_arrow()
    out = _marked(numbers)
    for name, value in _NON_FINITE.items():
        hit = np.isnan(values) if np.isnan(value) else values == value
        if hit.any():
            out = pc.if_else(pa.array(hit), pa.scalar(name, pa.large_string()), out)
    return pc.if_else(column.is_null(), pa.scalar(None, pa.large_string()), out)


def unmark_numbers(data: bytes) -> bytes:
    """JSON text with the marked numbers of ``_special_floats`` bare again."""
    if _NUMBER_MARK_JSON not in data:
        return data
    return data.replace(b'"' + _NUMBER_MARK_JSON, b"").replace(_NUMBER_MARK_JSON + b'"', b"")


def _field_kinds(t: pa.DataType, floats: set[str], others: set[str], lists: list[bool]
                 ) -> None:
    """Collects the names of float and of other fields at any depth (``t`` a struct), and
    for each array whether its elements are floats."""
    for f in t:
        ft = f.type
        if pa.types.is_list(ft) or pa.types.is_large_list(ft):
            (floats if _holds_float(ft) else others).add(f.name)
            while pa.types.is_list(ft) or pa.types.is_large_list(ft):
                ft = ft.value_type
            lists.append(pa.types.is_floating(ft))
        else:
            (floats if pa.types.is_floating(ft) else others).add(f.name)
        if pa.types.is_struct(ft):
            _field_kinds(ft, floats, others, lists)


def _holds_float(t: pa.DataType) -> bool:
    while pa.types.is_list(t) or pa.types.is_large_list(t):
        t = t.value_type
    return pa.types.is_floating(t)


def _unquoted(match: re.Match[bytes]) -> bytes:
    """The match (ending with the quoted token) with the token's quotes removed."""
    whole = match.group(0)
    opening = whole.rindex(b'"', 0, len(whole) - 1)
    return whole[:opening] + whole[opening + 1:-1]


def _special_float_pattern(schema: pa.Schema) -> re.Pattern[bytes] | None:
    """What ``Decoder._bare_specials`` unquotes: ``"NaN"``/``"Infinity"``/``"-Infinity"``
    as the value of a key naming only float fields, and as an array element when every
    array holds floats; None without a float field."""
    floats: set[str] = set()
    others: set[str] = set()
    lists: list[bool] = []
    _field_kinds(pa.struct(list(schema)), floats, others, lists)
    names = sorted(floats - others)
    if not names:
        return None
    keys = b"|".join(re.escape(json.dumps(n).encode()) for n in names)
    value = rb"((?:" + keys + rb")[ \t]*:[ \t]*)" + _SPECIAL_TEXT
    if lists and all(lists):
        value += rb"|((?<=[\[,])[ \t]*)" + _SPECIAL_TEXT + rb"(?=[ \t]*[,\]])"
    return re.compile(value)


def _has_special(t: pa.DataType) -> bool:
    """True when a nested type holds a value ``writable`` converts (time, bytes, floats,
    decimals)."""
    if pa.types.is_struct(t):
        return any(_has_special(f.type) for f in t)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _has_special(t.value_type)
    if pa.types.is_map(t):
        return _has_special(t.key_type) or _has_special(t.item_type)
    return pa.types.is_timestamp(t) or pa.types.is_date(t) or pa.types.is_binary(t) or \
        pa.types.is_large_binary(t) or pa.types.is_binary_view(t) or \
        pa.types.is_fixed_size_binary(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def zoned_columns(schema: pa.Schema | None) -> set[str]:
    """Columns written with a zone suffix: those declared WITH [LOCAL] TIME ZONE."""
    return {f.name for f in schema if is_zoned(f)} if schema is not None else set()


#: characters JSON text must escape: their strings go through Polars's encoder
_ESCAPED = r'["\\\x00-\x1f]'
_NULL_TEXT = "null"


#: DOUBLEs of magnitude in [1e-5, 1e16) (and zeros) whose Arrow text is positional are
#: written so by Polars too, with the same shortest digits (``1`` as ``1.0``); outside it
#: Polars writes an exponent where Arrow may not, or the reverse
_POSITIONAL = (1e-5, 1e16)


def _double_text(column: pa.Array) -> pa.Array | None:
    """A DOUBLE column's JSON text as Polars writes it (NaN and infinities as null), by
    Arrow's kernels: None when a value is one whose text the two write differently (an
    exponent), so the batch goes to Polars. The common case (prices, medians) saves
    importing Polars (~0.15 s) and its encoding."""
    pieces = _double_pieces(column)
    return None if pieces is None else concat_texts(pieces, len(column))


#: the endings ``_double_pieces`` appends: none, a whole number's, a half's
_DOUBLE_ENDS = ("", ".0", ".5")


def _double_pieces(column: pa.Array) -> list[Piece] | None:
    """``_double_text`` as pieces for ``concat_texts``: each value's text, then its ending
    (``_DOUBLE_ENDS``). Arrow's cast writes a whole number without a point, Polars as
    ``1.0``: the ending adds it. A column of halves and whole numbers below 2^52 (what a
    median of integers is), none in (-1, -0.0], is written as the integer part by Arrow's
    integer cast (~3x faster than its shortest-double formatting) and ``.0`` or ``.5``:
    those are the shortest digits, as both write them."""
    values = column.to_numpy(zero_copy_only=False) if not column.null_count else \
        pc.fill_null(column, 0.0).to_numpy(zero_copy_only=False)
    finite = np.isfinite(values)
    size = np.abs(np.where(finite, values, 0.0))
    if ((size != 0) & ((size < _POSITIONAL[0]) | (size >= _POSITIONAL[1]))).any():
        return None
    with np.errstate(invalid="ignore"):
        twice = values * 2.0
        halves = finite & (twice == np.trunc(twice)) & (size < 2.0 ** 52) & \
            ~(np.signbit(values) & (values > -1.0))
        whole = finite & (values == np.trunc(values))
    ends = whole.astype(np.int64)   # 1: ".0"
    if halves.all():
        ends[~whole] = 2   # ".5"
        if column.null_count:
            ends[column.is_null().to_numpy(zero_copy_only=False)] = 0
        mask = column.is_null().to_numpy(zero_copy_only=False) if column.null_count else None
        texts = pc.cast(from_numpy(np.trunc(values).astype(np.int64), mask),
                        pa.large_string())
        return [texts, (pa.array(_DOUBLE_ENDS, pa.large_string()), ends)]
    if not finite.all():   # NaN, inf: null (JSON has none), as Polars writes them
        valid = finite if not column.null_count else \
            finite & pc.is_valid(column).to_numpy(zero_copy_only=False)
        column = from_numpy(values, ~valid)
    texts = pc.cast(column, pa.large_string())
    offsets = np.frombuffer(texts.buffers()[1], dtype=np.int64)[
        texts.offset:texts.offset + len(texts) + 1]
    data = np.frombuffer(texts.buffers()[2], dtype=np.uint8, count=int(offsets[-1]))
    if (data[int(offsets[0]):] == ord("e")).any():   # an exponent: not Polars's text
        return None
    if column.null_count:
        ends[column.is_null().to_numpy(zero_copy_only=False)] = 0
    return [texts, (pa.array(_DOUBLE_ENDS, pa.large_string()), ends)]


def _value_text(column: pa.Array) -> list[Piece] | None:
    """Each value's JSON text (NULL written null) as pieces for ``concat_texts``, by Arrow
    kernels, for the types whose text is Arrow's own cast: integers, booleans, DECIMALs
    (numbers), text without a character JSON escapes, and DOUBLEs in the range
    ``_double_pieces`` takes; None for any other column (other floats, dates, nested
    values), which Polars encodes."""
    t = column.type
    if pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_null(t):
        return [pc.cast(column, pa.large_string())]
    if pa.types.is_decimal(t):
        # a JSON number with every digit (Flink's JSON format writes DECIMAL so; Arrow's
        # text is Java's BigDecimal.toString: 1.2500000000, -1E-10): exact, no float
        return [pc.cast(column, pa.large_string())]
    if pa.types.is_float64(t):
        return _double_pieces(column)
    if is_text(t):
        text_ = column.cast(pa.large_string())
        if pc.any(pc.match_substring_regex(text_, _ESCAPED)).as_py():
            return None
        quote = pa.scalar('"', pa.large_string())
        return [pc.binary_join_element_wise(quote, text_, quote,
                                            pa.scalar("", pa.large_string()))]
    return None


def object_texts(columns: Sequence[pa.Array], names: Sequence[str],
                 around: tuple[list[str], list[str], np.ndarray] | None = None
                 ) -> pa.Array | None:
    """Each row as the text of one JSON object (``{"a":1,"b":"x"}``, NULL values as null),
    the bytes Polars's ``write_ndjson`` writes for the row, put together by Arrow: an
    encoder of plain integer and text rows without Polars (~0.2 s to import). ``around``
    (prefixes, suffixes, choice) writes ``prefixes[choice[i]]`` before row ``i``'s object
    and ``suffixes[choice[i]]`` after it (a line's envelope, its line break). None when a
    column needs Polars (see ``_value_text``)."""
    pieces: list[Piece] = []
    for i, (column, name) in enumerate(zip(columns, names)):
        value = _value_text(column)
        if value is None:
            return None
        pieces += [("{" if i == 0 else ",") + json.dumps(name, ensure_ascii=False) + ":",
                   *value]
    if not pieces:
        return None
    pieces.append("}")
    if around is not None:
        before, after, choice = around
        first, last = pieces[0], pieces[-1]
        assert isinstance(first, str) and isinstance(last, str)
        pieces[0] = (pa.array([p + first for p in before], pa.large_string()), choice)
        pieces[-1] = (pa.array([last + s for s in after], pa.large_string()), choice)
    return concat_texts(pieces, len(columns[0]))


Piece = str | pa.Array | tuple[pa.Array, np.ndarray]


def concat_texts(parts: Sequence[Piece], n: int) -> pa.Array:
    """Row by row, the concatenation of ``parts``: constant texts, string arrays of ``n``
    rows, or ``(texts, index)`` (row ``i`` takes ``texts[index[i]]``, none for -1); a NULL
    is written ``null``. All the pieces go in one array, taken in row order: the taken
    array's data buffer is then the rows' texts one after the other (one copy of the bytes,
    no join kernel per piece)."""
    constants = [p for p in parts if isinstance(p, str)] + [_NULL_TEXT]
    null = len(constants) - 1
    pool = [pa.array(constants, pa.large_string())]
    start = len(constants)
    index = np.empty((n, len(parts)), dtype=np.int64)
    k = 0
    for j, part in enumerate(parts):
        if isinstance(part, str):
            index[:, j] = k
            k += 1
            continue
        texts, rows = part if isinstance(part, tuple) else (part, None)
        if not texts.type.equals(pa.large_string()):
            texts = pc.cast(texts, pa.large_string())
        here = start + (np.arange(n, dtype=np.int64) if rows is None else rows)
        if rows is not None:
            here[rows < 0] = null
        if texts.null_count:
            missing = pc.is_null(texts).to_numpy(zero_copy_only=False)
            here[missing if rows is None else (rows >= 0) & missing[np.maximum(rows, 0)]] = \
                null
        index[:, j] = here
        pool.append(texts)
        start += len(texts)
    taken = pc.take(pa.concat_arrays(pool), pa.Array.from_buffers(
        pa.int64(), index.size, [None, pa.py_buffer(index.ravel())]))
    offsets = np.frombuffer(taken.buffers()[1], dtype=np.int64)[
        taken.offset:taken.offset + len(taken) + 1][::len(parts)]
    return pa.Array.from_buffers(pa.large_string(), n,
                                 [None, pa.py_buffer(np.ascontiguousarray(offsets)),
                                  taken.buffers()[2]])


def text_bytes(texts: pa.Array) -> bytes:
    """The bytes of a large string array's texts, one after the other."""
    return text_buffer(texts).to_pybytes()


def text_buffer(texts: pa.Array) -> pa.Buffer:
    """``text_bytes`` without the copy: a slice of the array's data buffer, which an Arrow
    output stream writes as it is (a changelog batch's lines are ~20 MB at 300 k rows)."""
    offsets = np.frombuffer(texts.buffers()[1], dtype=np.int64)[
        texts.offset:texts.offset + len(texts) + 1]
    start, end = int(offsets[0]), int(offsets[-1])
    return texts.buffers()[2][start:end] if end > start else pa.py_buffer(b"")


def joined_lines(texts: pa.Array) -> bytes:
    """The texts of a string array without NULLs, one per line."""
    return text_bytes(concat_texts([texts, "\n"], len(texts)))


def encode(batch: pa.RecordBatch, options: dict[str, str] | JsonOptions | None = None,
           schema: pa.Schema | None = None) -> bytes:
    """JSON lines for a batch: one object per row, NULL as null, NaN and infinities as
    ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (JSON numbers have none).
    ``schema`` is the table's declared one (it says which timestamps are zoned)."""
    data = encode_buffer(batch, options, schema)
    return data if isinstance(data, bytes) else data.to_pybytes()


def encode_buffer(batch: pa.RecordBatch, options: dict[str, str] | JsonOptions | None = None,
                  schema: pa.Schema | None = None) -> bytes | pa.Buffer:
    """``encode``, as an Arrow buffer (not copied) where Arrow put the lines together."""
    if batch.num_rows == 0:
        return b""
    if batch.num_columns == 0:
        return b"{}\n" * batch.num_rows
    opts = JsonOptions.of(options)
    zoned = zoned_columns(schema)
    raw = {f.name for f in schema if is_json(f)} if schema is not None else set()
    columns, embedded = [], []
    for column, name in zip(batch.columns, batch.schema.names):
        if name in raw and is_text(column.type):
            # a JSON column's text goes in as a value: a marker now, the text spliced in below
            marker = f"\x01caudal-json-{uuid.uuid4().hex}\x01"  # text no row holds
            embedded.append((marker, _valid_json(column, name)))
            column = pc.if_else(pc.is_valid(column), marker, pa.scalar(None, pa.string()))
        # (a DECIMAL stays one for the Arrow encoder: ``_value_text``)
        columns.append(column if pa.types.is_decimal(column.type) else
                       writable(column, opts, name in zoned))
    if not embedded:
        texts = object_texts(columns, batch.schema.names,
                             ([""], ["\n"], np.zeros(batch.num_rows, dtype=np.int64)))
        if texts is not None:   # (no marked numbers: marked text goes to Polars)
            return text_buffer(texts)
    # Polars writes a DECIMAL as text: its digits between number marks instead (bare again
    # in unmark_numbers)
    columns = [writable(c, opts) if pa.types.is_decimal(c.type) else c for c in columns]
    table = pa.Table.from_arrays(columns, names=batch.schema.names)
    import polars as pl  # only writers need it (loaded on first use)

    out = io.BytesIO()
    pl.from_arrow(table).write_ndjson(out)
    data = unmark_numbers(out.getvalue())
    return _splice(data, embedded) if embedded else data


def _valid_json(column: pa.Array, name: str) -> pa.Array:
    """The column's text, which must be JSON (a sink column declared JSON), on one line."""
    from caudal.plan.functions.kernels import duckdb_eval

    text_ = column.cast(pa.string())
    valid = duckdb_eval("json_valid(c0)", [text_], pa.bool_(), "json")
    if not pc.all(pc.or_kleene(valid, pc.is_null(text_))).as_py():
        bad = pc.filter(text_, pc.invert(pc.fill_null(valid, True)))[0].as_py()
        raise RuntimeFailure(f"column {name!r} is declared JSON but a row holds text that is "
                             f"not JSON: {bad[:60]!r}",
                             hint="declare the column TEXT to write it as a JSON string")
    # a raw line break in valid JSON is only whitespace: one line per row stays one line
    return pc.replace_substring_regex(text_, "[\r\n]", " ")


def _splice(data: bytes, embedded: list[tuple[str, pa.Array]]) -> bytes:
    """Put each JSON column's text where its marker string is, row by row (vectorized)."""
    lines = pc.split_pattern(pa.array([data.decode("utf-8")], pa.large_string()), "\n")
    lines = pc.list_flatten(lines)[:-1]  # the text ends with a newline
    for marker, values in embedded:
        quoted = json.dumps(marker)  # how Polars wrote it: "\u0001caudal-json-0\u0001"
        parts = pc.split_pattern(lines, quoted, max_splits=1)
        has = pc.equal(pc.list_value_length(parts), 2)
        joined = pc.binary_join_element_wise(
            pc.list_element(parts, 0), values.cast(pa.large_string()),
            pc.list_element(pc.if_else(has, parts, pa.scalar(["", ""], parts.type)), 1),
            pa.scalar("", pa.large_string()))
        lines = pc.if_else(pc.fill_null(has, False), joined, lines)
    return joined_lines(lines)


class Writer:
    """Appends JSON lines to an output stream (closed by ``close``)."""

    def __init__(self, stream: Any, schema: pa.Schema,
                 options: dict[str, str] | JsonOptions | None = None):
        self.stream = stream
        self.schema = schema
        self.options = JsonOptions.of(options)
        if self.options.unstructured:
            raise ConfigError("json.unstructured is for reading; a sink writes its columns "
                              "as one JSON object per line", hint="remove json.unstructured")

    def write(self, batch: pa.RecordBatch) -> None:
        self.stream.write(encode_buffer(batch, self.options, self.schema))

    def close(self) -> None:
        self.stream.close()
