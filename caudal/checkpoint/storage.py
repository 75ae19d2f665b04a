"""Where checkpoints live: a directory on any pyarrow filesystem (a local path, ``file://``,
``s3://``, ``gs://``, ``hdfs://``, ``abfs://``), or any fsspec URL when fsspec is installed.

Every file is written whole and then made visible at once (local: temp file, fsync, rename;
object stores: one PUT), so a crash never leaves a half-written file under its final name.
State files are Parquet; their size and CRC-32 are returned to be recorded in the manifest,
so that a truncated or corrupted file is detected on restore instead of restoring wrong state.
"""

from __future__ import annotations

import errno
import os
import posixpath
import uuid
import zlib
from collections.abc import Callable, Iterable
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from caudal.checkpoint.errors import CheckpointError, DamagedCheckpoint
from caudal.checkpoint.written_file import WrittenFile

#: Parquet compression of state files: lz4 costs little CPU, which keeps checkpoints cheap
STATE_COMPRESSION = "lz4"

#: what a state file's Parquet footer carries under ``caudal.state``: 2 since integer columns
#: are DELTA_BINARY_PACKED and floating point ones BYTE_STREAM_SPLIT (files without it are
#: plain and lz4). Parquet names every page's encoding, so a reader needs no flag to decode
#: either; the mark tells a person (and a test) which writer made a file
STATE_FORMAT = b"2"

#: what a file being written carries in its name until it is renamed into place; a process
#: killed mid-write leaves such a file behind
TEMP_MARK = ".tmp-"



def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and root path of a ``--checkpoint-dir`` value."""
    try:
        fs, root = pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, ValueError):
        if "://" not in uri:
            fs, root = pafs.LocalFileSystem(), os.path.abspath(uri)
        else:
            try:
                import fsspec  # type: ignore[import-not-found]
            except ImportError:
                raise CheckpointError(
                    f"--checkpoint-dir {uri}: pyarrow does not know this filesystem",
                    hint="install fsspec and the package for this URL scheme, or use a local "
                         "path, s3://, gs:// or hdfs://") from None
            spec_fs, root = fsspec.core.url_to_fs(uri)
            fs = pafs.PyFileSystem(pafs.FSSpecHandler(spec_fs))
    if isinstance(fs, pafs.LocalFileSystem):
        root = os.path.abspath(root)
    return fs, root.rstrip("/") or "/"


def state_encodings(schema: pa.Schema) -> tuple[dict[str, str], dict[str, str]]:
    """The Parquet encoding and compression of each top-level column of a state file.

    Integer (and time) columns: DELTA_BINARY_PACKED, uncompressed. Keys in slot order,
    counts, key groups and bounded sums pack into the bits their differences need, where
    lz4 over plain values finds little (12 M rows of an aggregate's state: the key column
    48 MB -> 0 MB, a sum of 20-bit values 57 -> 32 MB, the key group 23 -> 13 MB) and
    decoding is cheaper than lz4's. Floating point: BYTE_STREAM_SPLIT (the bytes of each
    position together: the sign and exponent bytes then compress) with lz4, 96 -> 84 MB a
    column of random doubles. Other columns: plain with lz4, as before. On the 0.86 GB
    state of ``bench.incremental_state``: 532 -> 362 MB, written in ~35 % less CPU."""
    encodings: dict[str, str] = {}
    compression: dict[str, str] = {}
    for field in schema:
        t = field.type
        compression[field.name] = STATE_COMPRESSION
        if "." in field.name:   # a Parquet column path would read it as nested
            continue
        if pa.types.is_integer(t) or pa.types.is_timestamp(t) or pa.types.is_date(t) or \
                pa.types.is_time(t) or pa.types.is_duration(t):
            encodings[field.name] = "DELTA_BINARY_PACKED"
            compression[field.name] = "none"
        elif pa.types.is_float32(t) or pa.types.is_float64(t):
            encodings[field.name] = "BYTE_STREAM_SPLIT"
    return encodings, compression


class _Counted:
    """A binary file being written, with the size and CRC-32 of what was written to it (what
    the manifest records of a state file), computed as the bytes go by."""

    closed = False

    def __init__(self, file: Any):
        self.file = file
        self.size = 0
        self.crc = 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.crc = zlib.crc32(view, self.crc)
        self.size += len(view)
        self.file.write(view)
        return len(view)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.file.flush()

    def writable(self) -> bool:
        return True


class CheckpointStorage:
    """Reads and writes the files of one checkpoint directory, by path relative to it."""

    def __init__(self, uri: str, sync: bool = True):
        self.uri = uri
        self.fs, self.root = resolve(uri)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        #: fsync files before they become visible (survives power loss, not only crashes)
        self.sync = sync
        self._lock_fd: int | None = None

    @property
    def location(self) -> str:
        """The URI of this directory as any process on any node resolves it alike (a local
        path made absolute: a Ray worker's working directory is not the driver's)."""
        return self.root if self.local and "://" not in self.uri else self.uri

    def full(self, rel: str) -> str:
        return posixpath.join(self.root, rel) if rel else self.root

    # ---- raw bytes ------------------------------------------------------------------------

    def write_bytes(self, rel: str, data: bytes | pa.Buffer) -> None:
        """Write a whole file atomically (it appears complete or not at all)."""
        self.write_stream(rel, lambda out: out.write(data))

    def write_stream(self, rel: str, produce: Callable[[_Counted], Any]) -> _Counted:
        """Write a file atomically as ``produce(out)`` writes it to ``out`` (a file object
        counting the bytes and their CRC-32 as they go): a state file is encoded straight
        to disk instead of into one buffer in memory first (a compaction's file of q20's
        bids at 10 M events: ~140 MB, in a buffer grown by doubling to 256 MB)."""
        path = self.full(rel)
        try:
            if self.local:
                return self._write_local(path, produce)
            self.fs.create_dir(posixpath.dirname(path), recursive=True)
            with self.fs.open_output_stream(path) as stream:
                out = _Counted(stream)
                produce(out)
            return out
        except OSError as e:
            raise CheckpointError(self._os_message(e, path)) from e

    def _write_local(self, path: str, produce: Callable[[_Counted], Any]) -> _Counted:
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        tmp = f"{path}{TEMP_MARK}{uuid.uuid4().hex[:12]}"
        try:
            with open(tmp, "wb") as f:
                out = _Counted(f)
                produce(out)
                if self.sync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        if self.sync:
            fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return out

    @staticmethod
    def _os_message(e: OSError, path: str) -> str:
        if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return (f"cannot write checkpoint file {path}: {e.strerror} (free space on the "
                    f"checkpoint filesystem, or point --checkpoint-dir elsewhere)")
        return f"cannot write checkpoint file {path}: {e.strerror or e}"

    def read_bytes(self, rel: str) -> bytes:
        path = self.full(rel)
        try:
            if self.local:
                with open(path, "rb") as f:
                    return f.read()
            with self.fs.open_input_stream(path) as f:
                return f.read()
        except FileNotFoundError:
            raise DamagedCheckpoint(f"checkpoint file {path} is missing") from None
        except OSError as e:
            raise DamagedCheckpoint(f"cannot read checkpoint file {path}: {e}") from e

    @staticmethod
    def _mapped(path: str) -> pa.Buffer | bytes:
        """A local file's bytes memory-mapped (read from the page cache: no copy into this
        process's heap, which for a 500 MB state file is 500 MB of fresh pages to fault
        in); an empty file as bytes (it cannot be mapped)."""
        try:
            if os.path.getsize(path) == 0:
                return b""
            return pa.memory_map(path, "r").read_buffer()
        except FileNotFoundError:
            raise DamagedCheckpoint(f"checkpoint file {path} is missing") from None
        except OSError as e:
            raise DamagedCheckpoint(f"cannot read checkpoint file {path}: {e}") from e

    # ---- state tables ---------------------------------------------------------------------

    def write_table(self, rel: str, table: pa.Table) -> WrittenFile:
        """Write a state table as Parquet; returns its size and checksum for the manifest."""
        return self.write_tables(rel, table.schema, [table])

    def write_tables(self, rel: str, schema: pa.Schema, tables: Iterable[pa.Table]
                     ) -> WrittenFile:
        """``write_table`` of the rows of ``tables`` (each of ``schema``), taken one at a
        time: a compaction folds a chain a row group of its full file at a time, so it never
        holds the whole state decoded (q20 at 10 M events: ~600 MB more at its peak)."""
        # no dictionary encoding: state columns are mostly distinct values (keys, sums),
        # where trying a dictionary first costs CPU on both ends for nothing (a 3 M-row
        # aggregate state: written in 0.40 CPU s instead of 0.93, read in 0.16 instead of
        # 0.31, and 4% smaller, since lz4 then finds the repeats). Integer and float
        # columns get the encodings that suit them (state_encodings). Columns that are
        # dictionary arrays already (text an operator keeps as codes, operators.compact_rows)
        # are written as Parquet dictionaries: their codes as they are, where decoding them
        # to write plain values costs more and takes more room (q20's bids at 10 M events:
        # 1.0 CPU s and 131 MB instead of 3.3 s and 887 MB)
        encodings, compression = state_encodings(schema)
        schema = schema.with_metadata({**(schema.metadata or {}),
                                       b"caudal.state": STATE_FORMAT})
        coded = [f.name for f in schema if pa.types.is_dictionary(f.type)]
        rows = 0

        def produce(out: _Counted) -> None:
            nonlocal rows
            with pq.ParquetWriter(out, schema, compression=compression,
                                  use_dictionary=coded or False, write_statistics=False,
                                  column_encoding=encodings or None) as writer:
                for table in tables:
                    writer.write_table(table.replace_schema_metadata(schema.metadata),
                                       row_group_size=1 << 20)
                    rows += table.num_rows

        out = self.write_stream(rel, produce)
        return WrittenFile(rel, out.size, out.crc, rows)

    def open_table(self, ref: WrittenFile) -> pq.ParquetFile:
        """A state file written by ``write_table``, refusing one whose size or checksum
        differs from what the manifest recorded; to read some of its columns or a row group
        at a time (``read_table``: all of it)."""
        data = self.read_verified(ref)
        try:
            return pq.ParquetFile(pa.BufferReader(data))
        except (pa.ArrowException, OSError) as e:
            raise self._not_parquet(ref, e) from e

    def read_table(self, ref: WrittenFile) -> pa.Table:
        """All of a state file written by ``write_table`` (checked as ``open_table`` does)."""
        parquet = self.open_table(ref)
        try:
            return parquet.read()
        except (pa.ArrowException, OSError) as e:
            raise self._not_parquet(ref, e) from e

    def _not_parquet(self, ref: WrittenFile, error: Exception) -> DamagedCheckpoint:
        return DamagedCheckpoint(f"checkpoint file {self.full(ref.path)} is not valid "
                                 f"Parquet: {error}")

    def read_verified(self, ref: WrittenFile) -> pa.Buffer | bytes:
        """A state file's bytes, after checking its size and checksum against the manifest.
        Files are written once and renamed into place, never changed in place, so a local
        one is memory-mapped."""
        data = self.read_sized(ref)
        self.verify(ref, data)
        return data

    def read_sized(self, ref: WrittenFile) -> pa.Buffer | bytes:
        """A state file's bytes, its size checked but not yet its checksum (``verify``,
        which must pass before anything is decoded from them)."""
        path = self.full(ref.path)
        data = self._mapped(path) if self.local else self.read_bytes(ref.path)
        if len(data) != ref.bytes:
            raise DamagedCheckpoint(f"checkpoint file {path} has {len(data)} bytes, the "
                                    f"manifest says {ref.bytes} (truncated or overwritten)")
        return data

    def prefetch(self, refs: list[WrittenFile],
                 first: dict[str, tuple[str, ...]] | None = None) -> None:
        """Ask the kernel to read local files into the page cache now, in this order
        (``posix_fadvise(WILLNEED)``: the reads are queued at once, deep and sequential,
        instead of one page fault's read-around at a time while a checksum or a decoder
        walks a memory map). ``first``: per file, columns whose chunks (in every row group)
        are asked for before all files, such as the key columns an index is built from
        while the rest is read. Best effort: other filesystems, and errors, are ignored.
        Queuing may block on a slow disk: call it on a thread of its own."""
        if not self.local or not hasattr(os, "posix_fadvise"):
            return
        early = [(ref, rng) for ref in refs
                 for rng in self._column_ranges(ref, (first or {}).get(ref.path, ()))]
        for ref, (offset, length) in [*early, *((ref, (0, 0)) for ref in refs)]:
            try:
                fd = os.open(self.full(ref.path), os.O_RDONLY)
            except OSError:
                continue   # reading it names what is wrong
            try:
                os.posix_fadvise(fd, offset, length, os.POSIX_FADV_WILLNEED)
            except OSError:
                pass
            finally:
                os.close(fd)

    def _column_ranges(self, ref: WrittenFile, columns: tuple[str, ...]
                       ) -> list[tuple[int, int]]:
        """The byte ranges of ``columns``' chunks in a local Parquet file (from its footer;
        none when it cannot be read: prefetching is best effort)."""
        if not columns:
            return []
        try:
            meta = pq.ParquetFile(self.full(ref.path)).metadata
        except (OSError, pa.ArrowException):
            return []
        wanted = set(columns)
        ranges = []
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            for c in range(group.num_columns):
                chunk = group.column(c)
                if chunk.path_in_schema in wanted:
                    start = chunk.dictionary_page_offset if chunk.has_dictionary_page \
                        else chunk.data_page_offset
                    ranges.append((start, chunk.total_compressed_size))
        return ranges

    def verify(self, ref: WrittenFile, data: pa.Buffer | bytes) -> None:
        """Refuse ``data`` unless its CRC-32 is the one the manifest recorded."""
        if zlib.crc32(data) != ref.crc32:
            raise DamagedCheckpoint(f"checkpoint file {self.full(ref.path)} is corrupt "
                                    f"(checksum mismatch)")

    # ---- directories ----------------------------------------------------------------------

    def list_dir(self, rel: str = "") -> list[str]:
        """Names (not paths) of the entries of a directory; empty if it does not exist."""
        path = self.full(rel)
        if self.local:
            try:
                return sorted(os.listdir(path))
            except (FileNotFoundError, NotADirectoryError):
                return []
        infos = self.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        return sorted(posixpath.basename(i.path) for i in infos)

    def exists(self, rel: str) -> bool:
        if self.local:
            return os.path.exists(self.full(rel))
        return self.fs.get_file_info(self.full(rel)).type != pafs.FileType.NotFound

    def size(self, rel: str) -> int | None:
        """Size in bytes of a file, or None if it does not exist."""
        if self.local:
            try:
                return os.stat(self.full(rel)).st_size
            except FileNotFoundError:
                return None
        info = self.fs.get_file_info(self.full(rel))
        return None if info.type == pafs.FileType.NotFound else info.size

    def delete_file(self, rel: str) -> None:
        """Delete a file if it exists (deletion is best effort: garbage, never state)."""
        try:
            if self.local:
                os.unlink(self.full(rel))
            else:
                self.fs.delete_file(self.full(rel))
        except (FileNotFoundError, OSError):
            pass

    def delete_dir(self, rel: str) -> None:
        try:
            self.fs.delete_dir(self.full(rel))
        except (FileNotFoundError, OSError):
            pass

    def remove_empty_dir(self, rel: str) -> None:
        if self.local:
            try:
                os.rmdir(self.full(rel))
            except OSError:
                pass
        elif not self.list_dir(rel):
            self.delete_dir(rel)

    # ---- exclusive use --------------------------------------------------------------------

    def lock(self) -> None:
        """Take the directory for this process, so two runs never write the same
        checkpoints. Local directories only (an flock, released by the kernel even on
        SIGKILL); object stores are not locked."""
        if not self.local or self._lock_fd is not None:
            return
        import fcntl

        try:
            os.makedirs(self.root, exist_ok=True)
        except OSError as e:
            raise CheckpointError(f"cannot create --checkpoint-dir {self.root}: "
                                  f"{e.strerror}") from e
        fd = os.open(self.full("_lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise CheckpointError(
                f"--checkpoint-dir {self.root} is in use by another caudal process (stop "
                f"it, or give this run another --checkpoint-dir)") from None
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
