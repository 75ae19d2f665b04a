"""Parquet: typed columns, read one row group at a time and only the columns a query uses.

A row group is the unit a source can hand to a subtask and resume inside; reading it with
Arrow's multi-threaded decoder (memory-mapped when local) keeps reading close to a batch
engine's speed. Written files get row groups of about a million rows and, like pyarrow's,
Spark's and Flink's writers, Parquet v1 encodings unless ``parquet.integer_encoding = 'delta'``
asks for integer and time columns delta-encoded.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from caudal.errors import ConfigError, DataError
from caudal.formats import empty_rows, match_columns
from caudal.plan.pruning import ColumnStats
from caudal.types import cast_exactly, normalize_schema, normalize_type, sql_name

NAME = "parquet"
EXTENSIONS = (".parquet", ".parq")
OPTIONS = {
    "parquet.integer_encoding": "plain (default: integer columns written as pyarrow, Spark and "
                                "Flink write them, readable by any Parquet reader) or delta "
                                "(integer, date, time and timestamp columns "
                                "DELTA_BINARY_PACKED: smaller files, ~30 % less sink CPU, "
                                "a Parquet v2 encoding that e.g. Spark before 3.3 cannot "
                                "read); for writing",
}
#: the accepted values, the default first: plain, since a file a job writes is read by other
#: tools, and every reference writer (pyarrow, Spark, Flink, Arroyo) writes v1 encodings
INTEGER_ENCODINGS = ("plain", "delta")


def open_file(fs: pafs.FileSystem, path: str) -> pq.ParquetFile:
    """The file's reader; a file that is not Parquet (or is cut short) is a DataError naming
    it, not Arrow's ArrowInvalid."""
    try:
        if isinstance(fs, pafs.LocalFileSystem):
            return pq.ParquetFile(path, memory_map=True)
        return pq.ParquetFile(fs.open_input_file(path), pre_buffer=True)
    except pa.ArrowInvalid as error:
        raise DataError(f"file {path} is not a Parquet file, or is cut short "
                        f"({str(error).splitlines()[0].split('. ')[0]})",
                        hint="remove it from the table's path, or set format to the file's"
                        ) from None


def infer_schema(fs: pafs.FileSystem, path: str) -> pa.Schema:
    schema = normalize_schema(open_file(fs, path).schema_arrow)
    return pa.schema([pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f
                      for f in schema])


def check_columns(fs: pafs.FileSystem, path: str, schema: pa.Schema, where: str) -> None:
    """Planning-time check that declared columns exist in a file and can be converted."""
    file_schema = open_file(fs, path).schema_arrow
    names = match_columns(file_schema.names, schema, where, ConfigError)
    for name, field in zip(names, schema):
        have = file_schema.field(name).type
        try:
            _conform(pa.chunked_array([], have), field.type)
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
            raise ConfigError(f"column {field.name!r} is {sql_name(have)} in {where}, which "
                              f"cannot be read as {sql_name(field.type)}",
                              hint=f"declare it as {sql_name(normalize_type(have))}") from None


def _conform(column: pa.ChunkedArray, target: pa.DataType, name: str = "") -> pa.ChunkedArray:
    """Cast a column read from a file to its declared type; zone-less timestamps are UTC.
    Nanosecond timestamps, times and intervals become microseconds (what TIMESTAMP, TIME and
    INTERVAL hold) only when that is exact: a value with sub-microsecond digits is refused,
    since truncating it would silently merge distinct values (DuckDB keeps them apart)."""
    have = column.type
    if have.equals(target):
        return column
    if pa.types.is_timestamp(have) and pa.types.is_timestamp(target):
        if have.unit != target.unit:
            column = cast_exactly(column, pa.timestamp(target.unit, have.tz), name)
        if column.type.tz is None and target.tz is not None:
            return column.cast(pa.timestamp(target.unit)).cast(target)
        return column.cast(target)
    if (pa.types.is_time64(have) and pa.types.is_time64(target)) or (
            pa.types.is_duration(have) and pa.types.is_duration(target)):
        return cast_exactly(column, target, name)
    return column.cast(target)


class FileReader:
    """One Parquet file: its row groups' sizes, and reading one row group as ``schema``."""

    def __init__(self, fs: pafs.FileSystem, path: str, schema: pa.Schema, where: str):
        self.where = where
        self.schema = schema
        self.path = path
        self.file = open_file(fs, path)
        self.columns = match_columns(self.file.schema_arrow.names, schema, where)
        meta = self.file.metadata
        self.row_groups = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        #: text columns read as they are declared, candidates for reading as dictionaries
        #: (local files only: the page headers are read to choose)
        stored = self.file.schema_arrow
        leaves = {self.file.schema.column(i).path: self.file.schema.column(i)
                  for i in range(len(self.file.schema))}
        self._texts = [name for name, field in zip(self.columns, schema)
                       if isinstance(fs, pafs.LocalFileSystem)
                       and (pa.types.is_string(field.type) or pa.types.is_binary(field.type))
                       and stored.field(name).type.equals(field.type)
                       and name in leaves and leaves[name].max_definition_level <= 1]
        #: the cast back to text needs pyarrow.compute (~35 ms to import): worth it for the
        #: file alone from ~4 M rows (~10 ns saved a text value), else only once imported
        self._large = sum(self.row_groups) >= 4_000_000
        #: the file opened to read these columns as dictionaries, by column set
        self._as_dictionary: dict[frozenset[str], pq.ParquetFile] = {}
        self._map: pa.MemoryMappedFile | None = None

    def _dictionary_file(self, index: int, names: list[str]) -> pq.ParquetFile:
        """The file to read row group ``index`` from: text columns whose pages are all
        dictionary-encoded there are read as Arrow dictionaries (cast to text after), which
        costs less than Arrow's text decode: the bench's ``channel`` column, 18.4 M values,
        0.46 -> 0.28 CPU s. A column whose writer fell back to plain pages is read as text
        (building a dictionary from plain values would hash each one)."""
        from caudal.formats.parquet_pages import dictionary_only

        if self._map is None:
            self._map = pa.memory_map(self.path)
        mapped = self._map

        def read_at(offset: int, length: int) -> pa.Buffer:
            return mapped.read_at(length, offset)

        chosen = frozenset(n for n in self._texts if n in names and
                           dictionary_only(self.file, n, index, read_at))
        if not chosen:
            return self.file
        if chosen not in self._as_dictionary:
            self._as_dictionary[chosen] = pq.ParquetFile(self.path, memory_map=True,
                                                         read_dictionary=sorted(chosen))
        return self._as_dictionary[chosen]

    def read(self, index: int, unread: str | None = None) -> pa.Table:
        """Row group ``index`` with exactly ``schema`` (no copy when the types agree); the
        column ``unread`` (if any) is not decoded but NULL."""
        if not self.columns:
            return pa.Table.from_batches([empty_rows(self.row_groups[index])])
        names = self.columns
        if unread is not None:
            skip = self.columns[self.schema.get_field_index(unread)]
            names = [c for c in self.columns if c != skip]
        file = self._dictionary_file(index, names) if self._texts and (
            self._large or "pyarrow.compute" in sys.modules) else self.file
        table = file.read_row_group(index, columns=names, use_threads=True)
        if unread is not None:
            at = self.schema.get_field_index(unread)
            table = table.add_column(at, self.schema.field(unread).name,
                                     pa.nulls(table.num_rows, self.schema.field(unread).type))
        if table.schema.equals(self.schema):
            return table
        columns = []
        for c, f in zip(table.columns, self.schema):
            try:
                columns.append(_conform(c, f.type, f.name))
            except DataError as e:
                raise DataError(f"{self.where} row group {index}: {e.message}",
                                hint=e.hint) from None
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                # Arrow says "Failed to parse string: 'q' as a scalar of type int64"
                value = re.search(r"string: '(.*)' as a scalar", str(e))
                got = f", got {value.group(1)!r}" if value else ""
                raise DataError(
                    f"{self.where} row group {index}: column {f.name!r} is "
                    f"{sql_name(c.type)} in the file, not {sql_name(f.type)}{got}",
                    hint=f"declare it {sql_name(c.type)}, and TRY_CAST it in the query"
                ) from None
        return pa.Table.from_arrays(columns, schema=self.schema)

    def statistics(self, index: int, names: set[str]) -> dict[str, ColumnStats]:
        """Min, max and null count per column of row group ``index`` (those that have them),
        keyed by the table's column names, for skipping row groups a filter rejects."""
        group = self.file.metadata.row_group(index)
        by_path = {group.column(i).path_in_schema: i for i in range(group.num_columns)}
        out: dict[str, ColumnStats] = {}
        for field, file_name in zip(self.schema, self.columns):
            if field.name not in names or file_name not in by_path:
                continue
            stats = group.column(by_path[file_name]).statistics
            if stats is None:
                continue
            has = stats.has_min_max
            out[field.name] = ColumnStats(stats.min if has else None, stats.max if has else None,
                                          stats.null_count if stats.has_null_count else None,
                                          group.num_rows)
        return out

    def max_time(self, index: int, name: str) -> int | None:
        """The largest value of timestamp column ``name`` in row group ``index`` (as the
        column's integer, in its unit), from the row group's statistics (exact: the writer's
        maximum); None when the file has no such statistics or stores the column otherwise
        than as the declared type's 64-bit integers."""
        file_name = self.columns[self.schema.get_field_index(name)]
        stored = self.file.schema_arrow.field(file_name).type
        if not stored.equals(self.schema.field(name).type) or \
                not pa.types.is_timestamp(stored):
            return None
        group = self.file.metadata.row_group(index)
        for i in range(group.num_columns):
            column = group.column(i)
            if column.path_in_schema == file_name:
                stats = column.statistics
                if stats is None or not stats.has_min_max or column.physical_type != "INT64":
                    return None
                return int(stats.max_raw)
        return None

    def close(self) -> None:
        self.file.close()
        for file in self._as_dictionary.values():
            file.close()
        if self._map is not None:
            self._map.close()


def dictionary_columns(schema: pa.Schema) -> list[str] | bool:
    """The columns worth dictionary encoding: text and binary (and columns that are already
    dictionaries). Arrow's default tries a dictionary for every column and falls back to
    plain pages when it grows past its limit: for numbers and timestamps with many distinct
    values (ids, prices, times) that was a hash of every value for nothing. Writing the
    stateless benchmark's five columns (two ids, a price, a text, a time) took 228 ns a row
    that way and 130 without the numeric dictionaries, for a file 2 % smaller."""
    names = [f.name for f in schema
             if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
             or pa.types.is_string_view(f.type) or pa.types.is_binary(f.type)
             or pa.types.is_large_binary(f.type) or pa.types.is_binary_view(f.type)
             or pa.types.is_dictionary(f.type)]
    return names or False


def integer_encoding(options: dict[str, str]) -> str:
    """The ``parquet.integer_encoding`` option (ConfigError naming the accepted values)."""
    raw = str(options.get("parquet.integer_encoding", INTEGER_ENCODINGS[0])).strip().lower()
    if raw not in INTEGER_ENCODINGS:
        raise ConfigError(f"parquet.integer_encoding = {raw!r}",
                          hint="accepted: " + ", ".join(INTEGER_ENCODINGS))
    return raw


def check_options(options: dict[str, str], schema: pa.Schema | None,
                  sink: bool = False) -> None:
    """Planning-time check of a table's parquet options."""
    integer_encoding(options)


def delta_columns(schema: pa.Schema) -> dict[str, str]:
    """The columns to write DELTA_BINARY_PACKED: integers, dates, times and timestamps (the
    Parquet INT32/INT64 columns). Plain pages compressed with snappy cost the sink most of its
    CPU: writing the stateless benchmark's 13.4 M rows (two ids, a price and a time as
    BIGINT/TIMESTAMP, and a text) took 1.42-1.83 CPU s for 194 MB that way, and 1.03-1.19 s
    for 106 MB with these four delta-encoded (reading the file back: 1.4-1.8 -> 0.7-0.8 s).
    Delta encoding stores the differences of consecutive values bit-packed, so ids and times
    that move in small steps take a few bits a value; random 64-bit values cost as plain."""
    return {f.name: "DELTA_BINARY_PACKED" for f in schema
            if pa.types.is_integer(f.type) or pa.types.is_timestamp(f.type)
            or pa.types.is_date32(f.type) or pa.types.is_time(f.type)}


class Writer:
    """Writes batches as row groups of about ``ROW_GROUP_ROWS`` rows (closed by ``close``):
    each row group is the batches buffered until they reach that many rows or
    ``ROW_GROUP_BYTES``, so it may pass ``ROW_GROUP_ROWS`` by less than a batch."""

    ROW_GROUP_ROWS = 1 << 20
    ROW_GROUP_BYTES = 128 << 20

    def __init__(self, stream: Any, schema: pa.Schema, options: dict[str, str] | None = None):
        self.stream = stream
        delta = delta_columns(schema) if integer_encoding(options or {}) == "delta" else {}
        self._writer = pq.ParquetWriter(stream, schema, use_dictionary=dictionary_columns(schema),
                                        column_encoding=delta or None)
        self._batches: list[pa.RecordBatch] = []
        self._rows = 0
        self._bytes = 0

    def write(self, batch: pa.RecordBatch) -> None:
        self._batches.append(batch)
        self._rows += batch.num_rows
        self._bytes += batch.nbytes
        if self._rows >= self.ROW_GROUP_ROWS or self._bytes >= self.ROW_GROUP_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._batches:
            table = pa.Table.from_batches(self._batches)
            # the buffer as one row group: with row_group_size=ROW_GROUP_ROWS, the rows past
            # it (up to a batch) made a row group of their own, a tiny one after each large
            self._writer.write_table(table, row_group_size=table.num_rows)
        self._batches, self._rows, self._bytes = [], 0, 0

    def close(self) -> None:
        self._flush()
        self._writer.close()
        self.stream.close()
