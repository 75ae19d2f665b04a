"""The filesystem connector: a file or a directory of Parquet, JSON-lines or CSV files.

As a source, a Parquet file splits into one partition per row group and a text file is one
partition; offsets count the rows consumed per partition, so a job resumes mid-file. As a
sink, each subtask appends to hidden in-progress files that ``commit`` renames into place:
exactly once, and readers of the directory never see a partial file. Paths go through
pyarrow.fs, so a URL (``s3://bucket/dir``) works like a local path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import unquote

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from caudal import compute as pc
from caudal import formats
from caudal.connectors.base import Sink, Source
from caudal.connectors.registry import table_is_changelog
from caudal.errors import CaudalError, ConfigError, DataError, RuntimeFailure
from caudal.formats import text
from caudal.formats.bad_data import BadDataPolicy
from caudal.plan.changelog import OP, OP_TYPE
from caudal.plan.pruning import cannot_match
from caudal.plan.tables import LOCATOR_SCHEMA, TableSpec
from caudal.types import conform_batch


def resolve(path: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and path for a local path or a URL (``s3://…``, ``file://…``)."""
    if "://" in path:
        try:
            return pafs.FileSystem.from_uri(path)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as e:
            raise ConfigError(f"cannot open path {path!r}: {str(e).splitlines()[0]}",
                              hint="a local path, or a URL such as s3://bucket/dir") from None
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(path))


def _exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def _is_hidden(relative: str) -> bool:
    return any(part.startswith((".", "_")) for part in relative.split("/"))


@dataclass
class InputFiles:
    """The files a source table reads, sorted by their path relative to ``root``."""

    fs: pafs.FileSystem
    root: str
    names: list[str]
    format: str

    def full(self, name: str) -> str:
        return f"{self.root}/{name}"


def locate(table: TableSpec) -> InputFiles:
    """Find a source table's files and format; ConfigError naming the table otherwise."""
    path = table.option("path")
    if not path:
        raise ConfigError(f"table {table.name!r} has no 'path' option", line=table.line,
                          hint="path = 'data/bids.parquet' or a directory of files")
    chosen = table.option("format")
    if chosen is not None:
        formats.get(chosen)
    fs, where = resolve(path)
    info = fs.get_file_info(where)
    if info.type == pafs.FileType.NotFound:
        raise ConfigError(f"table {table.name!r}: path {path!r} does not exist",
                          line=table.line, hint="a file, or a directory of files")
    if info.type != pafs.FileType.Directory:
        root, name = where.rsplit("/", 1) if "/" in where else ("", where)
        fmt = chosen or formats.from_file_name(name)
        if fmt is None:
            raise ConfigError(f"cannot tell the format of {path!r} in table {table.name!r}",
                              line=table.line, hint="set format = 'parquet', 'json' or 'csv'")
        return InputFiles(fs, root, [name], fmt)
    root = where.rstrip("/")
    entries = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    names = sorted(e.path[len(root):].lstrip("/") for e in entries
                   if e.type == pafs.FileType.File)
    names = [n for n in names if not _is_hidden(n)]
    fmt = chosen
    if fmt is None:
        found = {formats.from_file_name(n) for n in names} - {None}
        if len(found) != 1:
            seen = ", ".join(sorted(found)) or "no known extension"
            raise ConfigError(f"cannot tell the format of directory {path!r} in table "
                              f"{table.name!r} ({seen})", line=table.line,
                              hint="set format = 'parquet', 'json' or 'csv'")
        fmt = found.pop()
    endings = formats.extensions(fmt)
    # files of another data format: their rows would silently not be read (files of no
    # known extension, a README or notes.txt, are skipped)
    others = [n for n in names if not n.lower().endswith(endings)
              and formats.from_file_name(n) is not None]
    if others:
        listed = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3
                                          else "")
        raise ConfigError(f"directory {path!r} of table {table.name!r} holds files that are "
                          f"not {fmt} ({', '.join(endings[:3])}…): {listed}",
                          line=table.line,
                          hint="move them out, or start their names with '.' or '_': "
                               "such files are skipped")
    return InputFiles(fs, root, [n for n in names if n.lower().endswith(endings)], fmt)


#: how many files of a JSON directory schema inference looks at (DuckDB's read_json: 32)
JSON_SAMPLE_FILES = 32


def _batches(table: pa.Table) -> Iterator[pa.RecordBatch]:
    """A table's rows as record batches, without copying (and without empty batches)."""
    if table.num_columns == 0:
        if table.num_rows:
            yield formats.empty_rows(table.num_rows)
        return
    for batch in table.to_batches():
        if batch.num_rows:
            yield batch


def csv_header(table: TableSpec) -> bool:
    """The ``csv.header`` option: whether csv files start with a header line."""
    raw = str(table.options.get("csv.header", "true")).strip().lower()
    if raw not in ("true", "false"):
        raise ConfigError(f"option csv.header = {raw!r} of table {table.name!r} is not a "
                          "boolean", line=table.line, hint="accepted: true, false")
    return raw == "true"


class FileSystemSource(Source):
    """Reads a file or a directory of files, bounded; resumable per partition."""

    finite = True

    METADATA_KEYS = {
        "file.path": "the full path of the file a row was read from (TEXT)",
        "file.name": "the name of that file, without its directory (TEXT)",
    }
    OPTIONS = {
        "path": "a file or a directory of files (local path or URL such as s3://bucket/dir)",
        "format": "parquet, json (JSON lines), csv or debezium_json (a changelog); default: "
                  "from the file extension",
        "csv.header": "true (default): a csv file starts with a header line naming its "
                      "columns; false: no header, the fields are the declared columns in order",
        "partitioned_by": "PARTITIONED BY (col, …) of CREATE TABLE: the values of these "
                          "columns come from the files' col=value/… directories",
    }

    @classmethod
    def validate(cls, table: TableSpec) -> None:
        files = locate(table)
        if not csv_header(table) and table.schema is None:
            raise ConfigError(f"table {table.name!r} has csv.header = 'false' but declares "
                              "no columns", line=table.line,
                              hint="declare the columns, in the order of the file's fields")
        fmt = formats.get(files.format)
        if hasattr(fmt, "check_options"):
            try:
                fmt.check_options(table.options, table.schema)
            except CaudalError as e:
                raise e.with_position(table.line, None) from None
        if table.schema is None or not files.names:
            return
        first = files.full(files.names[0])
        where = f"file {first}"
        try:
            if files.format == "parquet":
                fmt.check_columns(files.fs, first, _files_schema(table), where)
            elif files.format == "csv" and not csv_header(table):
                fmt.Decoder(_files_schema(table).names, _files_schema(table), where,
                            fmt.delimiter(table.options))
            elif files.format == "csv":
                sep = fmt.delimiter(table.options)
                with files.fs.open_input_stream(first, compression="detect") as stream:
                    header = fmt.read_header(stream, where, sep)
                if header:
                    formats.match_columns(header, _files_schema(table), where, ConfigError)
                    fmt.Decoder(header, _files_schema(table), where, sep)
            elif hasattr(fmt, "Decoder"):
                fmt.Decoder(_files_schema(table), **formats.with_options(fmt, table.options))
        except CaudalError as e:
            raise e.with_position(table.line, None) from None
        except OSError as e:  # a compressed file cut short: its header cannot be read
            raise DataError(f"{where} cannot be read: {str(e).splitlines()[0]}",
                            line=table.line,
                            hint="the file is cut short or damaged: replace or remove it"
                            ) from None

    @classmethod
    def infer_schema(cls, table: TableSpec) -> pa.Schema | None:
        if not csv_header(table):
            raise ConfigError(f"table {table.name!r} has csv.header = 'false' but declares "
                              "no columns", line=table.line,
                              hint="declare the columns, in the order of the file's fields")
        files = locate(table)
        if not files.names:
            raise ConfigError(f"table {table.name!r}: no {files.format} files in "
                              f"{table.option('path')!r} to take the columns from",
                              line=table.line, hint="declare the columns in CREATE TABLE")
        first = files.full(files.names[0])
        fmt = formats.get(files.format)
        try:
            if files.format == "parquet":
                return fmt.infer_schema(files.fs, first)
            if files.format == "json":  # several files' starts, as DuckDB's read_json
                samples, seen = [], 0
                for name in files.names[:JSON_SAMPLE_FILES]:
                    first = files.full(name)
                    with files.fs.open_input_stream(first, compression="detect") as stream:
                        samples.append((f"file {first}", fmt.sample_schema(
                            stream, **formats.with_options(fmt, table.options))))
                    seen += files.fs.get_file_info(first).size or 0
                    if seen >= fmt.INFER_BYTES:
                        break
            else:
                with files.fs.open_input_stream(first, compression="detect") as stream:
                    return fmt.infer_schema(stream, **formats.with_options(fmt, table.options))
        except DataError as e:  # a CSV header that is not text, a file that is not Parquet
            if first not in e.message:
                e.message = f"file {first} {e.message}"
            raise e.with_position(table.line, None) from None
        except (pa.ArrowInvalid, OSError) as e:
            raise ConfigError(f"cannot read the columns of {first} (table {table.name!r}): "
                              f"{str(e).splitlines()[0]}", line=table.line,
                              hint="declare the columns in CREATE TABLE") from None
        try:  # (a key of types that do not merge: the error names both files)
            return fmt.merge_samples(samples)
        except DataError as e:
            raise e.with_position(table.line, None) from None

    @classmethod
    def locates_rows(cls, table: TableSpec) -> bool:
        """Plain Parquet files (no metadata or partition columns, not a changelog): a row
        is (file key, row in file), and ``RowFetcher`` reads columns back by it."""
        return not table.metadata and not table.changelog and \
            not table.option("partitioned_by") and locate(table).format == "parquet"

    def __init__(self, table: TableSpec):
        super().__init__(table)
        self._changelog = table_is_changelog(table)
        if self._changelog:  # rows carry their change kind (plan.changelog)
            self.schema = self.schema.append(pa.field(OP, OP_TYPE))
        #: what the files hold: the columns without the metadata ones (``METADATA_KEYS``)
        self._partitions = partition_columns(table)
        self._decoded = pa.schema([f for f in self.schema if f.name not in table.metadata
                                   and f.name not in self._partitions
                                   and not (table.late_columns and f.name in LOCATOR_SCHEMA.names)])
        #: emit row locators (TableSpec.late_columns): per file, its key
        self._locators = bool(table.late_columns)
        self._reader_key = 0
        self._files: InputFiles | None = None
        self._queue: deque[str] = deque()
        self._consumed: dict[str, int] = {}
        self._part: str | None = None
        self._batches: Iterator[pa.RecordBatch] | None = None
        self._buffer: pa.RecordBatch | None = None
        self._reader: tuple[str, Any] | None = None
        #: Parquet row groups being read ahead, by partition
        self._prefetched: dict[str, Future] = {}
        self._pool: ThreadPoolExecutor | None = None
        #: row groups whose statistics showed the pushed-down filter rejects every row
        self.row_groups_skipped = 0
        #: the event time column when the plan reads it for the watermark only: Parquet row
        #: groups then leave it NULL and the watermark comes from their statistics (the
        #: largest event time of each row group read to its end), which saves decoding it
        self._stats_time = table.event_time if table.event_time_unread and \
            table.event_time in self._decoded.names else None
        self._time_mark: int | None = None   # over the row groups read to their end
        self._part_time: int | None = None   # of the row group being read

    @property
    def files(self) -> InputFiles:
        if self._files is None:
            self._files = locate(self.table)
        return self._files

    def _with_metadata(self, table: pa.Table, part: str) -> pa.Table:
        """The decoded rows with the metadata columns (the file's path and name) in their
        declared places."""
        if not self.table.metadata and not self._partitions:
            return table
        name = part.rsplit("#", 1)[0] if self.files.format == "parquet" else part
        values = {"file.path": self.files.full(name), "file.name": name.rsplit("/", 1)[-1]}
        directories = _partition_values(name) if self._partitions else {}
        columns = []
        for field in self.schema:
            key = self.table.metadata.get(field.name)
            if field.name in self._partitions:
                value = directories.get(field.name.lower())
                if field.name.lower() not in directories:
                    raise DataError(f"file {self.files.full(name)} is not under a "
                                    f"{field.name}=<value> directory of table "
                                    f"{self.table.name!r} (PARTITIONED BY)")
                columns.append(pa.repeat(pa.scalar(value, pa.string()), table.num_rows)
                               .cast(field.type))
            elif key is None:
                columns.append(table.column(field.name))
            else:
                columns.append(pa.repeat(pa.scalar(values[key]), table.num_rows)
                               .cast(field.type))
        return pa.Table.from_arrays(columns, schema=self.schema)

    def partitions(self, parallelism: int) -> list[str]:
        """``"<file>#<row group>"`` for Parquet, ``"<file>"`` for text formats."""
        files = self.files
        if files.format != "parquet":
            return list(files.names)
        fmt = formats.get("parquet")
        names = []
        for name in files.names:
            groups = fmt.open_file(files.fs, files.full(name)).metadata.num_row_groups
            names.extend(f"{name}#{i}" for i in range(groups))
        return names

    def assign(self, partitions: list[str], index: int, parallelism: int) -> list[str]:
        """A changelog's files are one sequence of changes (a row's update in a later file
        than its insert): subtask 0 reads them all, in path order. Dealt to several
        subtasks, a delete could overtake its insert and be lost."""
        if self._changelog:
            return partitions if index == 0 else []
        return super().assign(partitions, index, parallelism)

    def open(self, assigned: list[str], offsets: dict[str, Any] | None = None) -> None:
        offsets = offsets or {}
        self._stop_prefetch()
        self._queue = deque(assigned)
        self._consumed = {p: int(offsets.get(p) or 0) for p in assigned}
        self._part, self._batches, self._buffer = None, None, None
        self._part_time = None

    def poll(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        pieces = []
        need = max_rows
        while need > 0:
            piece = self._take(need)
            if piece is None:
                break
            pieces.append(piece)
            need -= piece.num_rows
        if not pieces:
            return None
        batch = pieces[0] if len(pieces) == 1 else pa.concat_batches(pieces)
        self.metrics.rows_read += batch.num_rows
        return batch

    def _take(self, limit: int) -> pa.RecordBatch | None:
        """Up to ``limit`` rows of the current partition (moving to the next when it ends),
        sliced from the decoded batch without a copy; None when every partition is done."""
        while True:
            if self._buffer is not None:
                buffer, self._buffer = self._buffer, None
                if buffer.num_rows > limit:
                    self._buffer = buffer.slice(limit)
                    buffer = buffer.slice(0, limit)
                self._consumed[self._part] += buffer.num_rows
                return buffer
            if self._batches is not None:
                self._buffer = next(self._batches, None)
                if self._buffer is not None:
                    continue
                self._batches = None
                if self._part_time is not None:  # the row group has been read to its end
                    self._time_mark = self._part_time if self._time_mark is None else \
                        max(self._time_mark, self._part_time)
                    self._part_time = None
            if not self._queue:
                self._stop_prefetch()
                return None
            self._part = self._queue.popleft()
            self._batches = self._skip(self._read(self._part, self._consumed[self._part]),
                                       self._consumed[self._part])

    @staticmethod
    def _skip(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
        """Drop the first ``rows`` rows (already consumed before a restart)."""
        for batch in batches:
            if rows >= batch.num_rows:
                rows -= batch.num_rows
                continue
            yield batch.slice(rows) if rows else batch
            rows = 0

    def _read(self, part: str, consumed: int) -> Iterator[pa.RecordBatch]:
        files = self.files
        if files.format == "parquet":
            future = self._prefetched.pop(part, None) or self._submit(part)
            if self._queue and self._queue[0] not in self._prefetched:
                # decode the next row group while this one flows downstream
                self._prefetched[self._queue[0]] = self._submit(self._queue[0])
            try:
                table, self._part_time = future.result()
            except DataError as e:  # a column of another type: no record's fault
                if self.table.bad_data == "drop":
                    e.hint = (f"{e.hint}; " if e.hint else "") + "bad_data = 'drop' skips " \
                        "malformed records of text files, not a Parquet column of another type"
                raise
            if table is not None:
                yield from _batches(self._with_metadata(table, part))
            return
        path = files.full(part)
        fmt = formats.get(files.format)
        policy = BadDataPolicy(self.table.bad_data, self.metrics, f"file {path}")
        options = formats.with_options(fmt, self.table.options)
        if files.format == "csv":
            options["header"] = csv_header(self.table)
        try:
            with files.fs.open_input_stream(path, compression="detect") as stream:
                for table in fmt.read(stream, self._decoded, policy, **options):
                    yield from _batches(self._with_metadata(table, part))
        except OSError as e:  # a compressed file cut short, a file gone or unreadable
            raise DataError(f"file {path} cannot be read: {str(e).splitlines()[0]}",
                            hint="the file is cut short or damaged: replace or remove it"
                            ) from None

    def _submit(self, part: str) -> Future:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="caudal-parquet")
        return self._pool.submit(self._load, part, self._consumed[part])

    def _load(self, part: str, consumed: int) -> tuple[pa.Table | None, int | None]:
        """Row group ``part`` (in the prefetch thread), or None if it was consumed already,
        and its largest event time when the source reports the watermark."""
        name, index = part.rsplit("#", 1)
        reader = self._parquet(name)
        if consumed >= reader.row_groups[int(index)]:
            return None, None
        predicate = self.table.prune_filter
        if predicate is not None and cannot_match(
                predicate, reader.statistics(int(index), predicate.columns())):
            self.row_groups_skipped += 1
            return None, None
        time = self._stats_time
        latest = None if time is None else reader.max_time(int(index), time)
        table = reader.read(int(index), unread=time if latest is not None else None)
        if time is not None and latest is None and table.num_rows:
            # no statistics: from the decoded column
            top = pc.max(table.column(time))
            latest = pc.cast(top, pa.int64()).as_py() if top.is_valid else None
        if self._locators:
            table = _add_locators(table, self._reader_key, sum(reader.row_groups[:int(index)]))
        return table, latest

    def _parquet(self, name: str) -> Any:
        """The open reader of file ``name`` (consecutive row groups share it)."""
        if self._reader is None or self._reader[0] != name:
            self._close_reader()
            path = self.files.full(name)
            reader = formats.get("parquet").FileReader(self.files.fs, path, self._decoded,
                                                       f"file {path}")
            self._reader = (name, reader)
            if self._locators:
                self._reader_key = file_key(self.files.fs, path)
        return self._reader[1]

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader[1].close()
            self._reader = None

    def finished(self) -> bool:
        return not self._queue and self._batches is None and self._buffer is None

    def watermark(self) -> int | None:
        if self._stats_time is None or self._time_mark is None:
            return None
        return self._time_mark - self.table.watermark_delay_us

    def offsets(self) -> dict[str, Any]:
        """Rows consumed per assigned partition."""
        return dict(self._consumed)

    def _stop_prefetch(self) -> None:
        if self._pool is not None:
            for future in self._prefetched.values():
                future.cancel()
            self._pool.shutdown(wait=True)
            self._pool = None
        self._prefetched = {}
        self._close_reader()

    def close(self) -> None:
        if self._batches is not None and hasattr(self._batches, "close"):
            self._batches.close()
        self._batches = None
        self._stop_prefetch()


def file_key(fs: pafs.FileSystem, path: str) -> int:
    """A file's key in row locators: its path, size and modification time hashed to 64
    bits, so a locator never names a file that was replaced (RowFetcher refuses it)."""
    info = fs.get_file_info(path)
    text = f"{path}\0{info.size}\0{info.mtime_ns}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little", signed=True)


def _add_locators(table: pa.Table, key: int, first_row: int) -> pa.Table:
    """The rows of a row group with their locators (the file's key, each row's index in
    the file; the row group starts at ``first_row``)."""
    n = table.num_rows
    rows = np.arange(first_row, first_row + n, dtype=np.int64)
    table = table.append_column(LOCATOR_SCHEMA.field(0), pa.array(np.full(n, key, np.int64)))
    return table.append_column(LOCATOR_SCHEMA.field(1), pa.array(rows))


def _read_at(handle: Any, offset: int, length: int) -> pa.Buffer:
    handle.seek(offset)
    return handle.read_buffer(length)


class RowFetcher:
    """Reads columns of a table's Parquet files back by row locator (TableSpec.late_columns)
    for the few rows a selective operator kept. pyarrow decodes whole column chunks, so the
    rows are read from the pages holding them (formats.parquet_pages: page headers walked,
    one page decompressed per row); a layout that reader refuses goes through DuckDB's
    Parquet reader (the file's row number is a filter it pushes into the scan; it
    decompresses the chunk's pages but builds no whole column) or, on a filesystem DuckDB
    cannot open, pyarrow's row groups. The files are listed once; a locator whose file key
    no longer matches a file (replaced, changed or removed since its row was read, e.g.
    before a restore) is an error, never a wrong row."""

    def __init__(self, table: TableSpec, columns: list[str]):
        self.table = table
        self.schema = pa.schema([table.schema.field(c) for c in columns])
        self._paths: dict[int, str] | None = None
        self._names: dict[str, list[str]] = {}
        self._open: dict[str, tuple[Any, np.ndarray, Any]] = {}
        self._con: Any = None

    def _path(self, key: int) -> str:
        if self._paths is None:
            files = locate(self.table)
            self._fs = files.fs
            self._paths = {file_key(files.fs, files.full(n)): files.full(n)
                           for n in files.names}
        path = self._paths.get(key)
        if path is None:
            raise DataError(f"a file of table {self.table.name!r} changed or disappeared "
                            "while the job read it (rows read from it earlier cannot be "
                            "completed)", hint="keep the files of a table unchanged until "
                            "its job finishes, or start it afresh")
        return path

    def fetch(self, keys: np.ndarray, rows: np.ndarray) -> list[pa.ChunkedArray]:
        """The columns of the rows at (``keys``, ``rows``), in that order."""
        n = len(keys)
        out: list[list[pa.Array]] = [[] for _ in self.schema]
        order: list[np.ndarray] = []
        for key in np.unique(keys).tolist():
            at = np.flatnonzero(keys == key)
            path = self._path(key)
            found = self._read(path, rows[at])
            for i, column in enumerate(found):
                out[i].append(column)
            order.append(at)
        if not n:
            return [pa.chunked_array([], f.type) for f in self.schema]
        back = np.argsort(np.concatenate(order), kind="stable")
        return [pa.chunked_array(parts, f.type).take(pa.array(back))
                for parts, f in zip(out, self.schema)]

    def _read(self, path: str, rows: np.ndarray) -> list[pa.Array]:
        wanted = np.unique(rows)
        names = self._names.get(path)
        if names is None:
            file = formats.get("parquet").open_file(self._fs, path)
            names = self._names[path] = formats.match_columns(
                file.schema_arrow.names, self.schema, f"file {path}")
        got = self._pages(path, names, wanted)
        if got is None and isinstance(self._fs, pafs.LocalFileSystem):
            got = self._duckdb(path, names, wanted)
        elif got is None:
            got = self._pyarrow(path, names, wanted)
        got_rows = got.column(0).to_numpy()
        place = np.searchsorted(got_rows, rows)
        if len(got_rows) != len(wanted) or not np.array_equal(got_rows[place], rows):
            raise DataError(f"file {path} of table {self.table.name!r} changed while the "
                            "job read it", hint="keep the files of a table unchanged until "
                            "its job finishes")
        index = pa.array(place)
        return [got.column(i + 1).take(index).cast(f.type)
                for i, f in enumerate(self.schema)]

    def _pages(self, path: str, names: list[str], wanted: np.ndarray) -> pa.Table | None:
        """The rows from the pages that hold them only (formats.parquet_pages); None when
        a column's layout is not one it decodes."""
        from caudal.formats.parquet_pages import read_rows

        opened = self._open.get(path)
        if opened is None:
            file = formats.get("parquet").open_file(self._fs, path)
            meta = file.metadata
            starts = np.cumsum([0] + [meta.row_group(i).num_rows
                                      for i in range(meta.num_row_groups)])
            opened = self._open[path] = (file, starts, self._fs.open_input_file(path))
        file, starts, handle = opened
        group = np.searchsorted(starts, wanted, side="right") - 1
        if len(wanted) and (group[0] < 0 or group[-1] >= len(starts) - 1):
            return None  # rows past the file's end: a changed file, reported by the caller
        columns: list[list[pa.Array]] = [[] for _ in names]
        for g in np.unique(group).tolist():
            mine = wanted[group == g] - starts[g]
            for i, (name, field) in enumerate(zip(names, self.schema)):
                got = read_rows(file, name, field.type, g, mine, partial(_read_at, handle))
                if got is None:
                    return None
                columns[i].append(got)
        return pa.Table.from_arrays(
            [pa.array(wanted, pa.int64())] + [pa.chunked_array(c, f.type)
                                              for c, f in zip(columns, self.schema)],
            names=["file_row_number", *names])

    def close(self) -> None:
        for _, _, handle in self._open.values():
            handle.close()
        self._open = {}
        if self._con is not None:
            self._con.close()
            self._con = None

    def _duckdb(self, path: str, names: list[str], wanted: np.ndarray) -> pa.Table:
        if self._con is None:
            import duckdb  # late: only a job with late columns needs it

            self._con = duckdb.connect(config={"threads": 1})
        columns = ", ".join('"' + n.replace('"', '""') + '"' for n in names)
        parts = []
        for start in range(0, len(wanted), 4096):
            listed = ", ".join(str(int(r)) for r in wanted[start:start + 4096])
            parts.append(self._con.sql(
                f"SELECT file_row_number, {columns} FROM read_parquet($path, "
                f"file_row_number = true) WHERE file_row_number IN ({listed}) "
                f"ORDER BY file_row_number", params={"path": path}).to_arrow_table())
        return pa.concat_tables(parts) if len(parts) > 1 else parts[0]

    def _pyarrow(self, path: str, names: list[str], wanted: np.ndarray) -> pa.Table:
        """The row groups holding the rows, decoded whole (a filesystem DuckDB cannot read)."""
        file = formats.get("parquet").open_file(self._fs, path)
        meta = file.metadata
        starts = np.cumsum([0] + [meta.row_group(i).num_rows
                                  for i in range(meta.num_row_groups)])
        group = np.searchsorted(starts, wanted, side="right") - 1
        parts = []
        for g in np.unique(group).tolist():
            mine = wanted[group == g]
            if g < 0 or g >= meta.num_row_groups:
                continue
            data = file.read_row_group(g, columns=names).take(pa.array(mine - starts[g]))
            parts.append(data.add_column(0, "file_row_number", pa.array(mine)))
        if not parts:
            return pa.table({"file_row_number": pa.array([], pa.int64()),
                             **{n: pa.array([], f.type) for n, f in zip(names, self.schema)}})
        return pa.concat_tables(parts)


class FileSystemSink(Sink):
    """Writes a directory of files, exactly once: hidden until their epoch commits.

    Files are named ``part-<subtask>-<epoch>-<writer>-<n>.<ext>``: ``writer`` (Sink.writer)
    tells apart two INSERTs into the same table, whose subtasks commit the same epochs at
    once (checking which names exist cannot: neither has renamed its files yet when both
    choose). ``abort`` deletes an epoch's files; the runtime calls it only when those rows
    will be replayed (the job restarts), since a checkpoint that merely did not complete has
    its files committed with the next one.

    ``PARTITIONED BY (a, b)`` (Flink's and Hive's layout): each row goes to the directory
    ``a=<value>/b=<value>/`` of its partition columns' values (as text, with the characters
    a path cannot hold escaped as ``%XX``; NULL is ``__DEFAULT_PARTITION__``), and the files
    hold the other columns. Each partition has its own open file.
    """

    OPTIONS = {
        "path": "the directory to write into, created if missing (local path or URL)",
        "format": "parquet (default), json (JSON lines), csv or debezium_json (a changelog: "
                  "takes an updating query)",
        "rollover_rows": "start a new file after this many rows (default: one per checkpoint)",
        "partitioned_by": "PARTITIONED BY (col, …) of CREATE TABLE: a directory col=value/… "
                          "per partition",
        "sink.mode": "when the directory already holds files as a job starts from scratch: "
                     "error (default: refuse), append (write beside them) or overwrite "
                     "(delete them first); a job resuming from its checkpoint keeps its own",
    }

    @classmethod
    def validate(cls, table: TableSpec) -> None:
        partition_columns(table)
        path = table.option("path")
        if not path:
            raise ConfigError(f"table {table.name!r} has no 'path' option", line=table.line,
                              hint="path = 'out/dir', a directory to write files into")
        fmt = formats.get(table.option("format", "parquet"))
        if hasattr(fmt, "check_options"):
            try:
                fmt.check_options(table.options, table.schema, sink=True)
            except CaudalError as e:
                raise e.with_position(table.line, None) from None
        _rollover(table)
        _mode(table)
        fs, where = resolve(path)
        if fs.get_file_info(where).type == pafs.FileType.File:
            raise ConfigError(f"table {table.name!r}: path {path!r} is a file, not a directory",
                              line=table.line, hint="a directory to write files into")

    def open(self, schema: pa.Schema, restored: dict[str, Any] | None = None) -> None:
        super().open(schema, restored)
        self._fs, self._dir = resolve(self.table.option("path"))
        self._create_dir(self._dir)
        self._format = formats.get(self.table.option("format", "parquet"))
        self._ext = self._format.EXTENSIONS[0]
        self._rollover = _rollover(self.table)
        self._token = uuid.uuid4().hex[:8]
        self._seq = 0
        self._partitions = partition_columns(self.table)
        self._file_schema = pa.schema([f for f in self.schema
                                       if f.name not in self._partitions])
        #: partition directory ("" unpartitioned) -> [writer, hidden name, rows in it]
        self._open: dict[str, list[Any]] = {}
        #: hidden files closed since the last pre_commit
        self._closed: list[str] = []
        #: epoch -> [hidden name, final name] pairs not yet committed
        self._pending: dict[int, list[list[str]]] = {}
        self.rows = 0
        if restored and restored.get("pending"):
            self._pending[int(restored["epoch"])] = [list(p) for p in restored["pending"]]

    def _path(self, name: str) -> str:
        return f"{self._dir}/{name}"

    def _create_dir(self, where: str) -> None:
        try:
            self._fs.create_dir(where, recursive=True)
        except OSError as e:
            raise self._cannot_write(where, "create the directory", e) from None

    def _cannot_write(self, where: str, what: str, error: OSError) -> ConfigError:
        """A sink path the job cannot write (under a file, no permission, a read-only
        system): one line naming the table and the path, not Arrow's OSError."""
        reason = os.strerror(error.errno) if error.errno else str(error).splitlines()[0]
        return ConfigError(f"table {self.table.name!r}: cannot {what} {where!r} ({reason})",
                           line=self.table.line,
                           hint="give the table a path this user can write")

    @classmethod
    def prepare(cls, table: TableSpec, resuming: bool) -> None:
        """``sink.mode``: a job run again into the same directory would otherwise put a
        second copy of its output beside the first, and a reader of the directory would
        count every row twice. Only a job starting from scratch is checked (a resumed job
        appends its own epochs to what it committed before)."""
        mode = _mode(table)
        if resuming or mode == "append":
            return
        fs, where = resolve(table.option("path"))
        if fs.get_file_info(where).type != pafs.FileType.Directory:
            return
        visible = [info for info in fs.get_file_info(pafs.FileSelector(where))
                   if not _is_hidden(info.base_name)]
        if not visible:
            return
        if mode == "error":
            names = sorted(i.base_name for i in visible)
            raise ConfigError(
                f"sink {table.name!r} at {table.option('path')} already holds files "
                f"({', '.join(names[:3])}{', …' if len(names) > 3 else ''}); set "
                f"sink.mode = 'overwrite' or 'append'", line=table.line)
        for info in visible:
            if info.type == pafs.FileType.Directory:
                fs.delete_dir(info.path)
            else:
                fs.delete_file(info.path)

    @classmethod
    def discard_orphans(cls, table: TableSpec) -> None:
        """Delete in-progress files (``.part-….inprogress``) left by killed runs: recovery
        has committed every one a checkpoint listed, so the rest will never be committed."""
        fs, where = resolve(table.option("path"))
        if fs.get_file_info(where).type != pafs.FileType.Directory:
            return
        for info in fs.get_file_info(pafs.FileSelector(where, recursive=True)):
            name = info.base_name
            if name.startswith(".part-") and name.endswith(".inprogress"):
                fs.delete_file(info.path)

    @classmethod
    def takes_changelog(cls, table: TableSpec) -> bool:
        """A changelog format (debezium_json) takes an updating query."""
        return table_is_changelog(dataclasses.replace(
            table, options={**table.options, "format": table.option("format", "parquet")}))

    def write(self, batch: pa.RecordBatch) -> None:
        if OP in batch.schema.names:
            ops = batch.column(OP)
            batch = conform_batch(batch.drop_columns([OP]), self.schema)
            batch = batch.append_column(pa.field(OP, OP_TYPE), ops)
        else:
            batch = conform_batch(batch, self.schema)
        if not self._partitions:
            self._write_rows("", batch)
            return
        for directory, rows in _by_partition(batch, self._partitions):
            self._write_rows(directory, rows.drop_columns(self._partitions))

    def _write_rows(self, directory: str, batch: pa.RecordBatch) -> None:
        total = batch.num_rows
        done = 0
        while done < total:
            current = self._open.get(directory)
            if current is None:
                name = f".part-{self.subtask:03d}-{self._token}-{self._seq}{self._ext}.inprogress"
                name = f"{directory}/{name}" if directory else name
                self._seq += 1
                if directory:
                    self._create_dir(self._path(directory))
                try:
                    stream = self._fs.open_output_stream(self._path(name))
                except OSError as e:
                    raise self._cannot_write(self._path(name), "write the file", e) from None
                writer = self._format.Writer(
                    stream, self._file_schema,
                    **formats.with_options(self._format, self.table.options))
                current = self._open[directory] = [writer, name, 0]
            room = total - done
            if self._rollover:
                room = min(room, self._rollover - current[2])
            current[0].write(batch if room == total else batch.slice(done, room))
            current[2] += room
            self.rows += room
            done += room
            if self._rollover and current[2] >= self._rollover:
                self._close_file(directory)

    def _close_file(self, directory: str) -> None:
        writer, name, _ = self._open.pop(directory)
        writer.close()
        self._closed.append(name)

    def pre_commit(self, epoch: int) -> dict[str, Any]:
        """Close the open file and name the epoch's files; the state lists every file not yet
        committed (earlier epochs too), so a restore can finish their commit."""
        for directory in list(self._open):
            self._close_file(directory)
        pairs = self._pending.setdefault(epoch, [])
        n = len(pairs)
        for hidden in self._closed:
            directory = hidden.rpartition("/")[0]
            while True:
                final = f"part-{self.subtask:03d}-{epoch:06d}-{self.writer}-{n}{self._ext}"
                final = f"{directory}/{final}" if directory else final
                n += 1
                if not _exists(self._fs, self._path(final)):
                    break
            pairs.append([hidden, final])
        self._closed = []
        if not pairs:
            del self._pending[epoch]
        # copies: the state is written later, beside this sink's own bookkeeping
        everything = [list(p) for e in sorted(self._pending) for p in self._pending[e]]
        return {"epoch": epoch, "pending": everything}

    def commit(self, epoch: int) -> None:
        """Rename the hidden files of ``epoch`` and earlier into place; safe to repeat."""
        for e in sorted(k for k in self._pending if k <= epoch):
            for hidden, final in self._pending[e]:
                source, target = self._path(hidden), self._path(final)
                if _exists(self._fs, source):
                    if _exists(self._fs, target):  # a rename would drop that file's rows
                        raise RuntimeFailure(
                            f"cannot commit {target}: a file of that name already exists",
                            hint="two jobs write into the same directory at once; give "
                                 "each its own path")
                    self._fs.move(source, target)
                elif not _exists(self._fs, target):
                    raise RuntimeFailure(
                        f"cannot commit {target}: its in-progress file {hidden} is gone",
                        hint="something removed files from the output directory")
            del self._pending[e]

    def abort(self, epoch: int) -> None:
        """Delete the hidden files of ``epoch``; safe to repeat."""
        for hidden, _ in self._pending.pop(epoch, []):
            if _exists(self._fs, self._path(hidden)):
                self._fs.delete_file(self._path(hidden))

    def close(self) -> None:
        for directory in list(self._open):
            self._close_file(directory)


#: the directory name of a NULL partition value (Flink's partition.default-name)
DEFAULT_PARTITION = "__DEFAULT_PARTITION__"
#: characters escaped in a partition directory name (Hive's and Flink's list)
_ESCAPED = set('"#%\'*/:=?\\{[]^\x7f') | {chr(c) for c in range(1, 32)}


def partition_columns(table: TableSpec) -> list[str]:
    """The PARTITIONED BY columns of a table (declared columns, not all of them)."""
    raw = table.option("partitioned_by")
    if raw is None:
        return []
    names = [n.strip().strip('`"') for n in raw.strip().strip("()").split(",") if n.strip()]
    if table.schema is None:
        raise ConfigError(f"table {table.name!r} is PARTITIONED BY but declares no columns",
                          line=table.line, hint="declare every column, the partition "
                                                "columns too")
    declared = {f.name.lower(): f.name for f in table.schema}
    out = []
    for name in names:
        if name.lower() not in declared:
            raise ConfigError(f"PARTITIONED BY names {name!r}, not a column of table "
                              f"{table.name!r}", line=table.line,
                              hint="columns: " + ", ".join(declared.values()))
        out.append(declared[name.lower()])
    if len(out) >= len(declared):
        raise ConfigError(f"table {table.name!r} is PARTITIONED BY all its columns",
                          line=table.line, hint="leave at least one column for the files")
    return out


def _files_schema(table: TableSpec) -> pa.Schema:
    """What a source's files hold: the data columns but the partition ones."""
    partitions = partition_columns(table)
    return pa.schema([f for f in table.data_schema() if f.name not in partitions])


def _partition_values(name: str) -> dict[str, str | None]:
    """``col=value`` directories of a file's relative path, by lower-case column name
    (``%XX`` unescaped; ``__DEFAULT_PARTITION__`` is NULL)."""
    out: dict[str, str | None] = {}
    for part in name.split("/")[:-1]:
        key, eq, value = part.partition("=")
        if eq:
            value = unquote(value)
            out[key.lower()] = None if value == DEFAULT_PARTITION else value
    return out


def partition_path_name(value: str) -> str:
    """A partition value as a directory name: ``%XX`` for characters a path cannot hold."""
    return "".join(f"%{ord(c):02X}" if c in _ESCAPED else c for c in value)


def _by_partition(batch: pa.RecordBatch, columns: list[str]
                  ) -> list[tuple[str, pa.RecordBatch]]:
    """The rows of each partition and its directory (``a=1/b=x``), in first-seen order."""
    table = pa.Table.from_batches([batch])
    texts = [text.to_text(table.column(c).combine_chunks()) if not
             pa.types.is_string(table.column(c).type) else table.column(c).combine_chunks()
             for c in columns]
    keys = pa.table({f"k{i}": t for i, t in enumerate(texts)}).append_column(
        "row", pa.array(np.arange(table.num_rows)))
    groups = keys.group_by([f"k{i}" for i in range(len(columns))], use_threads=False) \
        .aggregate([("row", "list")])
    out = []
    for index in range(groups.num_rows):
        parts = []
        for i, c in enumerate(columns):
            value = groups.column(f"k{i}")[index].as_py()
            name = DEFAULT_PARTITION if value is None else partition_path_name(value)
            parts.append(f"{c}={name}")
        rows = groups.column("row_list")[index].values
        out.append(("/".join(parts), table.take(rows).combine_chunks().to_batches()[0]))
    return out


#: values of the ``sink.mode`` option (the first is the default)
SINK_MODES = ("error", "append", "overwrite")


def _mode(table: TableSpec) -> str:
    mode = (table.option("sink.mode") or SINK_MODES[0]).lower()
    if mode not in SINK_MODES:
        raise ConfigError(f"sink.mode = {table.option('sink.mode')!r} in table {table.name!r}",
                          line=table.line, hint="accepted: " + ", ".join(SINK_MODES))
    return mode


def _rollover(table: TableSpec) -> int | None:
    text = table.option("rollover_rows")
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigError(f"rollover_rows = {text!r} in table {table.name!r}", line=table.line,
                          hint="a positive number of rows")
    return value


SOURCE = FileSystemSource
ROW_FETCHER = RowFetcher
SINK = FileSystemSink
