"""JSON lines: one object per line. Read with Arrow's parser, written with Polars' encoder.

A missing key is NULL; a value of the wrong JSON type (``"3"`` for a BIGINT, ``1.5`` for an
INT) is a malformed record, never coerced. Timestamps are RFC 3339 text, DATE is
``YYYY-MM-DD``, DECIMAL is a number or its text, BYTEA is ``\\x``-hex text.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.json as pj

from caudal.errors import ConfigError
from caudal.formats import bad_data, lines, text
from caudal.types import normalize_schema, sql_name

NAME = "json"
EXTENSIONS = (".json", ".jsonl", ".ndjson")
#: bytes of the first file that schema inference looks at
INFER_BYTES = 4 << 20
_FIRST_OBJECT = re.compile(rb"[ \t\r\n]*\{")
_NOT_OBJECT = re.compile(rb"\n[ \t\r]*[^{ \t\r\n]")


def _parse_type(field: pa.Field) -> pa.DataType:
    """The type Arrow's JSON parser is asked for; some types are read as text, then cast."""
    t = field.type
    if pa.types.is_date(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return pa.string()
    if pa.types.is_time(t) or pa.types.is_duration(t) or pa.types.is_interval(t):
        raise ConfigError(f"JSON input cannot hold {sql_name(t)} column {field.name!r}",
                          hint="declare it as TEXT and convert it in the query")
    return t


def infer_schema(stream: Any) -> pa.Schema:
    """Arrow's inference on the start of a file; a column that is only NULL there is TEXT."""
    data = stream.read(INFER_BYTES).removeprefix(lines.BOM)
    if len(data) == INFER_BYTES:
        data = data[:lines.last_newline(data)]
    table = pj.read_json(lines.buffer_reader(data),
                         read_options=pj.ReadOptions(block_size=len(data) + 1))
    schema = normalize_schema(table.schema)
    return pa.schema([pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f
                      for f in schema])


class Decoder:
    """Turns blocks of JSON lines into tables of exactly ``schema``."""

    def __init__(self, schema: pa.Schema):
        self.schema = schema
        self.parse_schema = pa.schema([pa.field(f.name, _parse_type(f)) for f in schema])

    def decode(self, data: bytes) -> pa.Table:
        if lines.is_blank(data):
            return self.schema.empty_table()
        # a line must hold one object; Arrow's reader also crashes on a line that is `null`
        if not _FIRST_OBJECT.match(data) or _NOT_OBJECT.search(data):
            raise pa.ArrowInvalid("a line is not a JSON object")
        parse = pj.ParseOptions(explicit_schema=self.parse_schema,
                                unexpected_field_behavior="ignore")
        try:
            table = pj.read_json(lines.buffer_reader(data), parse_options=parse,
                                 read_options=pj.ReadOptions(
                                     block_size=lines.parse_block_size(data)))
        except pa.ArrowInvalid as error:
            if "straddl" not in str(error).lower():
                raise
            table = pj.read_json(lines.buffer_reader(data), parse_options=parse,
                                 read_options=pj.ReadOptions(
                                     block_size=lines.parse_block_size(data, error)))
        if table.num_rows != data.count(b"\n") + (not data.endswith(b"\n")) and \
                table.num_rows != sum(1 for line in data.split(b"\n") if line.strip()):
            raise pa.ArrowInvalid("a line holds more than one JSON value")
        if self.parse_schema.equals(self.schema):
            return table
        columns = []
        for field, parsed in zip(self.schema, table.columns):
            if not parsed.type.equals(field.type):
                if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
                    parsed = pa.chunked_array([text.parse_hex(c) for c in parsed.chunks],
                                              pa.binary()).cast(field.type)
                else:
                    parsed = parsed.cast(field.type)
            columns.append(parsed)
        return pa.Table.from_arrays(columns, schema=self.schema)

    def explain(self, row: bytes, error: Exception) -> str:
        """What is wrong with one line (error path: Python's json and one-field decodes)."""
        try:
            value = json.loads(row)
        except ValueError as e:
            msg = getattr(e, "msg", str(e))
            col = getattr(e, "colno", None)
            return f"not valid JSON ({msg}" + (f" at column {col})" if col else ")")
        if not isinstance(value, dict):
            return f"expected a JSON object, got {_short(row)}"
        for field in self.schema:
            if field.name in value:
                one = Decoder(pa.schema([field]))
                try:
                    one.decode(json.dumps({field.name: value[field.name]}).encode() + b"\n")
                except pa.ArrowInvalid:
                    return (f"column {field.name!r} expects {sql_name(field.type)}, got "
                            f"{_short(json.dumps(value[field.name]).encode())}")
        return re.sub(r" in row \d+$", "", str(error).splitlines()[0])


def _short(raw: bytes, limit: int = 60) -> str:
    shown = raw.decode("utf-8", "replace").strip()
    return shown if len(shown) <= limit else shown[:limit] + "…"


def read(stream: Any, schema: pa.Schema, policy: bad_data.BadDataPolicy,
         block_size: int = lines.BLOCK_SIZE) -> Iterator[pa.Table]:
    """Tables of ``schema`` from a stream of JSON lines, applying ``policy`` to bad lines."""
    decoder = Decoder(schema)
    for first_line, data in lines.read_blocks(stream, lines.last_newline, block_size):
        try:
            yield decoder.decode(data)
        except pa.ArrowInvalid:
            rows = lines.split_lines(data, first_line)
            yield from bad_data.decode_rows(rows, decoder.decode, decoder.explain, policy)


def _writable(column: pa.Array) -> pa.Array:
    """A column as Polars should encode it: timestamps and bytes as caudal's text."""
    t = column.type
    if pa.types.is_dictionary(t):
        return _writable(column.dictionary_decode())
    if pa.types.is_timestamp(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t) or \
            pa.types.is_binary_view(t) or pa.types.is_fixed_size_binary(t):
        return text.to_text(column)
    return column


def encode(batch: pa.RecordBatch) -> bytes:
    """JSON lines for a batch: one object per row, NULL as null (NaN too: JSON has none)."""
    if batch.num_rows == 0:
        return b""
    if batch.num_columns == 0:
        return b"{}\n" * batch.num_rows
    table = pa.Table.from_arrays([_writable(c) for c in batch.columns], names=batch.schema.names)
    import polars as pl  # only writers need it (loaded on first use)

    out = io.BytesIO()
    pl.from_arrow(table).write_ndjson(out)
    return out.getvalue()


class Writer:
    """Appends JSON lines to an output stream (closed by ``close``)."""

    def __init__(self, stream: Any, schema: pa.Schema):
        self.stream = stream
        self.schema = schema

    def write(self, batch: pa.RecordBatch) -> None:
        self.stream.write(encode(batch))

    def close(self) -> None:
        self.stream.close()
