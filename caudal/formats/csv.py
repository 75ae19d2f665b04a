"""CSV with a header line, read and written with Arrow's CSV kernels.

NULL is an empty unquoted field and ``""`` is the empty string (PostgreSQL's CSV rule), so
text round-trips exactly. Quoted fields may hold newlines. A TIMESTAMP without a zone is UTC.
A value that does not convert to its column's type, or a row with the wrong number of
fields, is a malformed record.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

from caudal import compute as pc
from caudal.errors import ConfigError, DataError
from caudal.formats import bad_data, lines, match_columns, text
from caudal.types import TIMESTAMP, normalize_schema, sql_name

NAME = "csv"
EXTENSIONS = (".csv",)
INFER_BYTES = 4 << 20

#: a time of day followed by a zone: such text is read as an instant, other text as UTC
_ZONED = r":\d{2}(?:\.\d*)?(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"
_CONVERT = dict(null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=False)


def _any_case(*words: str) -> list[str]:
    """Every spelling of ``words`` in upper and lower case letters (Arrow matches exactly)."""
    return sorted({"".join(p) for w in words
                   for p in itertools.product(*[{c.lower(), c.upper()} for c in w])})


#: BOOLEAN text as DuckDB's read_csv takes it in a column declared BOOLEAN, in any case
TRUE_TEXT, FALSE_TEXT = ("true", "t", "yes", "y", "1"), ("false", "f", "no", "n", "0")
_DECLARED = dict(_CONVERT, true_values=_any_case(*TRUE_TEXT),
                 false_values=_any_case(*FALSE_TEXT))
#: what its sniffer infers as BOOLEAN: not y/n (TEXT) nor 1/0 (integers)
_INFERRED = dict(_CONVERT, true_values=_any_case("true", "t", "yes"),
                 false_values=_any_case("false", "f", "no"))

#: the options this format reads (formats.with_options passes them)
OPTIONS = {
    "csv.field-delimiter": "the one character between fields (Flink's option; default ','): "
                           "';' as spreadsheets write in many countries, '\\t' for "
                           "tab-separated files",
}


def delimiter(options: dict[str, str] | None) -> str:
    """The ``csv.field-delimiter`` option: one character (``\\t`` is a tab, as in Flink)."""
    raw = (options or {}).get("csv.field-delimiter", ",")
    char = {"\\t": "\t", "\\u0009": "\t"}.get(raw, raw)
    if len(char) != 1 or char in '"\r\n':
        raise ConfigError(f"csv.field-delimiter = {raw!r} is not one character other than "
                          "a quote or a line break",
                          hint="accepted: one character, such as ',', ';', '|' or '\\t'")
    return char


def check_options(options: dict[str, str], schema: pa.Schema | None,
                  sink: bool = False) -> None:
    """Refuse a delimiter that is not one character before the job starts; a sink's, one
    that can be part of the values it writes unquoted (numbers, dates, booleans)."""
    char = delimiter(options)
    if sink and re.fullmatch(r"[0-9A-Za-z.+-]", char):
        raise ConfigError(f"csv.field-delimiter = {char!r} can be part of a number, date or "
                          "boolean, which the sink writes unquoted: the rows would not read "
                          "back", hint="accepted: a character such as ',', ';', '|' or '\\t'")


def _row_ends(data: bytes) -> np.ndarray:
    """Offsets just after each newline that ends a row (not one inside quotes)."""
    arr = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(arr == 10)
    if b'"' not in data:
        return newlines + 1
    # quote parity before each byte; "" escapes keep it, a uint8 sum wraps but keeps parity
    parity = np.cumsum(arr == 34, dtype=np.uint8) & 1
    return newlines[parity[newlines] == 0] + 1


def cut(data: bytes) -> int:
    """End of the last complete row of ``data`` (``lines.read_blocks``'s ``cut``)."""
    end = data.rfind(b"\n")
    if end < 0:
        return 0
    if data.count(b'"', 0, end) % 2 == 0:
        return end + 1
    ends = _row_ends(data)
    return int(ends[-1]) if len(ends) else 0


def split_rows(data: bytes, first_line: int) -> list[tuple[int, bytes]]:
    """The non-blank rows of a block with the line each starts on (error path only; the
    lines are counted once for the block, not from its start for every row)."""
    ends = _row_ends(data).tolist()
    if not data.endswith(b"\n"):
        ends.append(len(data))
    starts = [0] + ends[:-1]
    newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    lines_before = np.searchsorted(newlines, starts).tolist()
    rows = []
    for start, end, before in zip(starts, ends, lines_before):
        row = data[start:end]
        if not lines.is_blank(row):
            rows.append((first_line + before, row if row.endswith(b"\n") else row + b"\n"))
    return rows


def _header(row: bytes, where: str = "", delimiter: str = ",") -> list[str]:
    wrong = lines.not_utf8(row)
    if wrong:  # Arrow's reader would fail in Python with a UnicodeDecodeError naming nothing
        raise DataError(f"{where + ' ' if where else ''}line 1 (the header): {wrong}")
    table = pcsv.read_csv(lines.buffer_reader(row),
                          read_options=pcsv.ReadOptions(autogenerate_column_names=False),
                          parse_options=pcsv.ParseOptions(delimiter=delimiter))
    return _named(table.column_names)


def _named(header: list[str]) -> list[str]:
    """The header's names as DuckDB's sniffer makes them: an empty one (a trailing comma)
    ``column<i>``, a name seen before ``<name>_1``, ``_2``, … (Arrow's reader would raise
    a KeyError for a name given twice)."""
    names: list[str] = []
    for i, name in enumerate(header):
        name = name or f"column{i}"
        base, n = name, 0
        while name in names:
            n += 1
            name = f"{base}_{n}"
        names.append(name)
    return names


def read_header(stream: Any, where: str = "", delimiter: str = ",") -> list[str]:
    """The column names of a CSV file (empty for an empty file); ``where`` names the file in
    errors."""
    for _, data in lines.read_blocks(stream, cut, block_size=64 << 10):
        return _header(data[:cut_first(data)], where, delimiter)
    return []


def cut_first(data: bytes) -> int:
    """End of the first row of a block."""
    end = data.find(b"\n") + 1
    if end and data.count(b'"', 0, end) % 2 == 0:
        return end
    ends = _row_ends(data)
    return int(ends[0]) if len(ends) else len(data)


def infer_schema(stream: Any, options: dict[str, str] | None = None) -> pa.Schema:
    """Arrow's inference on the start of a file; a column that is only NULL there is TEXT,
    one of numbers written with leading zeros TEXT, one of integers past BIGINT
    DECIMAL(38, 0) (DuckDB's sniffer: TEXT, HUGEINT)."""
    data = lines.first_rows(stream, cut, INFER_BYTES)
    sep = delimiter(options)
    names = _header(data[:cut_first(data)], "", sep)
    table = _infer_read(data, pcsv.ConvertOptions(**_INFERRED), sep, names)
    schema = normalize_schema(table.schema)
    codes, wide = _numbers_as_written(data, [f.name for f in schema
                                             if pa.types.is_integer(f.type)
                                             or pa.types.is_floating(f.type)], sep, names)
    return pa.schema([pa.field(f.name, pa.string())
                      if pa.types.is_null(f.type) or f.name in codes else
                      pa.field(f.name, pa.decimal128(38, 0))
                      if f.name in wide and pa.types.is_floating(f.type) else f
                      for f in schema])


def _infer_read(data: bytes, convert: pcsv.ConvertOptions, delimiter: str,
                names: list[str]) -> pa.Table:
    """``data`` (a file's start, header ``names``) read whole for inference; a row with the
    wrong number of fields is a DataError naming its line, not Arrow's parse error."""
    parse = pcsv.ParseOptions(newlines_in_values=b'"' in data, delimiter=delimiter)
    # one block: a long field straddles none
    read = pcsv.ReadOptions(block_size=len(data) + 1, column_names=names, skip_rows=1)
    try:
        return pcsv.read_csv(lines.buffer_reader(data), parse_options=parse,
                             convert_options=convert, read_options=read)
    except pa.ArrowInvalid as error:
        rows = split_rows(data, 1)
        bad: list[Any] = []

        def first(row: Any) -> str:
            bad.append(row)
            return "skip"

        pcsv.read_csv(lines.buffer_reader(data), read_options=pcsv.ReadOptions(
            use_threads=False, block_size=len(data) + 1, column_names=names, skip_rows=1),
            convert_options=pcsv.ConvertOptions(
            column_types={}, **_CONVERT), parse_options=pcsv.ParseOptions(
            newlines_in_values=parse.newlines_in_values, delimiter=delimiter,
            invalid_row_handler=first))
        if not bad or not 0 < bad[0].number <= len(rows):
            raise DataError(str(error).splitlines()[0],
                            hint="declare the columns in CREATE TABLE") from None
        line = rows[bad[0].number - 1][0]
        raise DataError(f"line {line}: expected {bad[0].expected_columns} fields, got "
                        f"{bad[0].actual_columns}",
                        hint="fix the row, or declare the columns in CREATE TABLE: "
                             "bad_data = 'drop' then skips such rows") from None


def _numbers_as_written(data: bytes, numeric: list[str], delimiter: str,
                        names: list[str]) -> tuple[set[str], set[str]]:
    """The numeric-looking columns with a value such as ``007`` or ``01.5`` (codes: zip
    codes, ids, that a number would change, so TEXT, as DuckDB's sniffer decides), and the
    columns of integers one of which is past BIGINT (Arrow infers DOUBLE, which rounds
    ``12345678901234567891``; DuckDB HUGEINT): DECIMAL(38, 0) when they have 38 digits or
    fewer."""
    if not numeric:
        return set(), set()
    raw = _infer_read(data, pcsv.ConvertOptions(
        column_types={name: pa.string() for name in numeric}, include_columns=numeric,
        **_CONVERT), delimiter, names)
    codes, wide = set(), set()
    for name in numeric:
        column = raw.column(name)
        if pc.any(pc.match_substring_regex(column, r"^0[0-9]")).as_py():
            codes.add(name)
        elif pc.all(pc.match_substring_regex(column, r"^[+-]?[0-9]{1,38}$")).as_py() and \
                pc.max(pc.utf8_length(column)).as_py() > 18:
            wide.add(name)
    return codes, wide


def _parse_type(field: pa.Field) -> pa.DataType:
    t = field.type
    if pa.types.is_timestamp(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return pa.string()
    if pa.types.is_nested(t) or pa.types.is_duration(t) or pa.types.is_interval(t):
        # JSON input holds arrays and rows, not maps or intervals (json._unsupported)
        formats = "'parquet'" if pa.types.is_map(t) or not pa.types.is_nested(t) else \
            "'json' or 'parquet'"
        raise ConfigError(f"CSV input cannot hold {sql_name(t)} column {field.name!r}",
                          hint=f"use format = {formats}, or declare it as TEXT")
    return t


def parse_timestamps(arr: pa.Array) -> pa.Array:
    """RFC 3339 / ISO 8601 text to TIMESTAMP; text without a zone is UTC."""
    try:
        return arr.cast(TIMESTAMP)  # the usual case: every value has its zone
    except pa.ArrowInvalid:
        pass
    zoned = pc.match_substring_regex(arr, _ZONED)
    with_zone = pc.if_else(zoned, arr, pa.scalar(None, pa.string()))
    without = pc.if_else(zoned, pa.scalar(None, pa.string()), arr)
    return pc.coalesce(with_zone.cast(TIMESTAMP),
                       without.cast(pa.timestamp("us")).cast(TIMESTAMP))


class Decoder:
    """Turns blocks of CSV rows (no header) into tables of exactly ``schema``."""

    def __init__(self, header: list[str], schema: pa.Schema, where: str,
                 delimiter: str = ","):
        self.header = header
        self.delimiter = delimiter
        self.schema = schema
        self.columns = match_columns(header, schema, where)
        self.parse_types = {h: _parse_type(f) for h, f in zip(self.columns, schema)}
        # with no column wanted, read the first one to count rows (an empty list means all)
        self.include = self.columns or header[:1]

    def decode(self, data: bytes) -> pa.Table:
        if lines.is_blank(data):
            return self.schema.empty_table()
        convert = pcsv.ConvertOptions(column_types=self.parse_types,
                                      include_columns=self.include, **_DECLARED)
        parse = pcsv.ParseOptions(newlines_in_values=b'"' in data, delimiter=self.delimiter)
        try:
            table = pcsv.read_csv(lines.buffer_reader(data), parse_options=parse,
                                  convert_options=convert, read_options=pcsv.ReadOptions(
                                      column_names=self.header,
                                      block_size=lines.parse_block_size(data)))
        except pa.ArrowInvalid as error:
            if "straddl" not in str(error).lower():
                raise
            table = pcsv.read_csv(lines.buffer_reader(data), parse_options=parse,
                                  convert_options=convert, read_options=pcsv.ReadOptions(
                                      column_names=self.header,
                                      block_size=lines.parse_block_size(data, error)))
        columns = []
        for field, parsed in zip(self.schema, table.columns):
            if pa.types.is_timestamp(field.type):
                parsed = pa.chunked_array([parse_timestamps(c) for c in parsed.chunks],
                                          TIMESTAMP).cast(field.type)
            elif pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
                parsed = pa.chunked_array([text.parse_hex(c) for c in parsed.chunks],
                                          pa.binary()).cast(field.type)
            columns.append(parsed)
        if not columns:
            return table.select([])
        return pa.Table.from_arrays(columns, schema=self.schema)

    def explain(self, row: bytes, error: Exception) -> str:
        """What is wrong with one row (error path: one decode per column)."""
        wrong = lines.not_utf8(row)
        if wrong:
            return wrong
        message = str(error).splitlines()[0]
        fields = re.search(r"Expected (\d+) columns, got (\d+)", message)
        if fields:
            return f"expected {fields.group(1)} fields, got {fields.group(2)}"
        try:
            raw = pcsv.read_csv(lines.buffer_reader(row), read_options=pcsv.ReadOptions(
                column_names=self.header), parse_options=pcsv.ParseOptions(
                delimiter=self.delimiter), convert_options=pcsv.ConvertOptions(
                column_types={h: pa.string() for h in self.header}, **_CONVERT))
        except pa.ArrowInvalid:
            return message
        for name, field in zip(self.columns, self.schema):
            one = Decoder(self.header, pa.schema([field.with_name(name)]), "", self.delimiter)
            try:
                one.decode(row)
            except pa.ArrowInvalid:
                value = raw.column(name)[0].as_py()
                shown = "NULL" if value is None else repr(value[:60])
                trouble = text.timestamp_text_trouble(value) \
                    if pa.types.is_timestamp(field.type) else \
                    f" (BOOLEAN text: {'/'.join(TRUE_TEXT)} or {'/'.join(FALSE_TEXT)}, in " \
                    "any case)" if pa.types.is_boolean(field.type) else ""
                return (f"column {field.name!r} expects {sql_name(field.type)}, got "
                        f"{shown}{trouble}")
        return message


def read(stream: Any, schema: pa.Schema, policy: bad_data.BadDataPolicy,
         block_size: int = lines.BLOCK_SIZE, header: bool = True,
         options: dict[str, str] | None = None) -> Iterator[pa.Table]:
    """Tables of ``schema`` from a CSV stream (header first, unless ``header`` is False: then
    the fields are ``schema``'s columns in order), applying ``policy`` to bad rows."""
    sep = delimiter(options)
    decoder = None if header else Decoder(schema.names, schema, policy.where, sep)
    for first_line, data in lines.read_blocks(stream, cut, block_size):
        if decoder is None:
            head = cut_first(data)
            decoder = Decoder(_header(data[:head], policy.where, sep), schema, policy.where,
                              sep)
            first_line += data.count(b"\n", 0, head)
            data = data[head:]
        broken = _unclosed_quote(data, sep)
        if broken is not None:  # (only the file's last block can end inside quotes)
            data, rest = data[:broken], data[broken:]
        if data:
            try:
                yield decoder.decode(data)
            except pa.ArrowInvalid:
                rows = split_rows(data, first_line)
                yield from bad_data.decode_rows(rows, decoder.decode, decoder.explain, policy)
        if broken is not None:
            # Arrow's reader would take every line to the end of the file into that field
            # (rows silently gone); the row is malformed and the lines it swallowed are named
            line = first_line + data.count(b"\n")
            last = line + rest.rstrip(b"\r\n").count(b"\n")
            policy.reject(line, f"a quoted field opened on this row is not closed by the end "
                                f"of the file (lines {line}-{last} would be one field)")


def _unclosed_quote(data: bytes, delimiter: str = ",") -> int | None:
    """Where the row starts whose quoted field runs past the end of ``data`` (None if every
    quote is closed). A quote that does not start a field (``5"3``) opens nothing."""
    if data.count(b'"') % 2 == 0:
        return None
    ends = _row_ends(data)
    start = int(ends[-1]) if len(ends) else 0
    quote = data.find(b'"', start)
    if quote < 0 or (quote > start and data[quote - 1:quote] not in (delimiter.encode(), b"\n")):
        return None
    return start


def _writable(column: pa.Array) -> pa.Array:
    """A column as the CSV writer should get it: anything but plain values as caudal's text."""
    t = column.type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or \
            pa.types.is_string(t) or pa.types.is_date(t) or \
            (pa.types.is_decimal(t) and t.scale <= 6):   # to_text: no exponent otherwise
        return column
    return text.to_text(column)


class Writer:
    """Writes a header, then rows, to an output stream (closed by ``close``)."""

    def __init__(self, stream: Any, schema: pa.Schema, options: dict[str, str] | None = None):
        self.stream = stream
        self._options = pcsv.WriteOptions(delimiter=delimiter(options))
        self._writer: pcsv.CSVWriter | None = None

    def write(self, batch: pa.RecordBatch) -> None:
        out = pa.RecordBatch.from_arrays([_writable(c) for c in batch.columns],
                                         names=batch.schema.names)
        if self._writer is None:
            self._writer = pcsv.CSVWriter(self.stream, out.schema, write_options=self._options)
        self._writer.write_batch(out)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self.stream.close()
