"""Read a few rows of one Parquet column chunk by decoding only the pages that hold them.

pyarrow decodes whole column chunks, and DuckDB decompresses every page of a chunk it
touches; to read back a handful of rows of a wide column (connectors.filesystem.RowFetcher,
late materialization) it is enough to walk the chunk's page headers (a few dozen small Thrift
structs), then decompress and decode the pages that hold the rows. Only the common layout is
read here: a flat column (no repetition), data pages v1 or v2, values PLAIN or dictionary
encoded (RLE_DICTIONARY / PLAIN_DICTIONARY with a PLAIN dictionary), BYTE_ARRAY, INT32,
INT64, FLOAT or DOUBLE stored as the same Arrow type (or text/bytes). ``read_rows`` returns
None for anything else, and the caller reads it another way.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pyarrow as pa

#: Parquet's codec names as pyarrow.decompress knows them
_CODECS = {"SNAPPY": "snappy", "ZSTD": "zstd", "GZIP": "gzip", "LZ4_RAW": "lz4_raw",
           "BROTLI": "brotli"}
_FIXED = {"INT32": ("<i4", pa.int32()), "INT64": ("<i8", pa.int64()),
          "FLOAT": ("<f4", pa.float32()), "DOUBLE": ("<f8", pa.float64())}
_PLAIN, _PLAIN_DICTIONARY, _RLE_DICTIONARY = 0, 2, 8
_DATA_PAGE, _DICTIONARY_PAGE, _DATA_PAGE_V2 = 0, 2, 3


class Unsupported(Exception):
    """A layout this reader does not decode (the caller falls back)."""


# ---- Thrift compact protocol (just what page headers need) --------------------------------

class _Thrift:
    def __init__(self, data: bytes | memoryview, pos: int):
        self.data, self.pos = data, pos

    def varint(self) -> int:
        out, shift = 0, 0
        while True:
            b = self.data[self.pos]
            self.pos += 1
            out |= (b & 0x7F) << shift
            if not b & 0x80:
                return out
            shift += 7

    def zigzag(self) -> int:
        v = self.varint()
        return (v >> 1) ^ -(v & 1)

    def struct(self) -> dict[int, Any]:
        """A struct as field id -> value (nested structs as dicts, others skipped)."""
        fields: dict[int, Any] = {}
        last = 0
        while True:
            head = self.data[self.pos]
            self.pos += 1
            if head == 0:
                return fields
            kind, delta = head & 0x0F, head >> 4
            last = last + delta if delta else self.zigzag()
            fields[last] = self.value(kind)

    def value(self, kind: int) -> Any:
        if kind in (1, 2):  # booleans carry their value in the type
            return kind == 1
        if kind == 3:  # byte
            self.pos += 1
            return self.data[self.pos - 1]
        if kind in (4, 5, 6):  # i16, i32, i64
            return self.zigzag()
        if kind == 7:  # double
            self.pos += 8
            return None
        if kind == 8:  # binary
            n = self.varint()
            self.pos += n
            return None
        if kind in (9, 10):  # list, set
            head = self.data[self.pos]
            self.pos += 1
            size, elem = head >> 4, head & 0x0F
            if size == 15:
                size = self.varint()
            if elem in (1, 2):  # booleans in a list take a byte each
                self.pos += size
                return None
            for _ in range(size):
                self.value(elem)
            return None
        if kind == 11:  # map
            size = self.varint()
            if size:
                kinds = self.data[self.pos]
                self.pos += 1
                for _ in range(size):
                    self.value(kinds >> 4)
                    self.value(kinds & 0x0F)
            return None
        if kind == 12:
            return self.struct()
        raise Unsupported(f"thrift type {kind}")


# ---- RLE / bit-packed hybrid ---------------------------------------------------------------

def _hybrid(data: memoryview, width: int, count: int) -> np.ndarray:
    """The first ``count`` values of an RLE / bit-packed hybrid run sequence."""
    out = np.empty(count, dtype=np.int64)
    filled, pos, nbytes = 0, 0, (width + 7) // 8
    while filled < count:
        if pos >= len(data):
            raise Unsupported("levels end early")
        head = _Thrift(data, pos)
        header = head.varint()
        pos = head.pos
        if header & 1:  # bit-packed groups of 8
            groups = header >> 1
            size = groups * width
            bits = np.unpackbits(np.frombuffer(data[pos:pos + size], dtype=np.uint8),
                                 bitorder="little")
            values = bits.reshape(-1, width) @ (1 << np.arange(width, dtype=np.int64)) \
                if width else np.zeros(groups * 8, dtype=np.int64)
            pos += size
        else:
            run = header >> 1
            value = int.from_bytes(bytes(data[pos:pos + nbytes]), "little") if nbytes else 0
            pos += nbytes
            values = np.full(run, value, dtype=np.int64)
        take = min(len(values), count - filled)
        out[filled:filled + take] = values[:take]
        filled += take
    return out


def _hybrid_at(data: memoryview, width: int, positions: list[int]) -> list[int]:
    """The values at the sorted ``positions`` of an RLE / bit-packed hybrid sequence,
    without unpacking the runs between them."""
    out: list[int] = []
    mask, nbytes = (1 << width) - 1, (width + 7) // 8
    pos, base, k = 0, 0, 0
    while k < len(positions):
        if pos >= len(data):
            raise Unsupported("indexes end early")
        head = _Thrift(data, pos)
        header = head.varint()
        pos = head.pos
        if header & 1:
            n, size = (header >> 1) * 8, (header >> 1) * width
            while k < len(positions) and positions[k] < base + n:
                bit = (positions[k] - base) * width
                at = pos + bit // 8
                word = int.from_bytes(bytes(data[at:at + nbytes + 1]), "little")
                out.append((word >> (bit % 8)) & mask)
                k += 1
            pos += size
        else:
            n = header >> 1
            value = int.from_bytes(bytes(data[pos:pos + nbytes]), "little") if nbytes else 0
            pos += nbytes
            while k < len(positions) and positions[k] < base + n:
                out.append(value)
                k += 1
        base += n
    return out


# ---- values --------------------------------------------------------------------------------

def _byte_arrays(data: memoryview, indexes: list[int]) -> list[bytes]:
    """The PLAIN byte arrays (each a 4-byte length and the bytes) at the sorted
    ``indexes``: the lengths before them are walked, only the wanted values copied."""
    out: list[bytes] = []
    unpack = struct.Struct("<i").unpack_from
    pos, i = 0, 0
    for target in indexes:
        while i < target:
            pos += 4 + unpack(data, pos)[0]
            i += 1
        n = unpack(data, pos)[0]
        out.append(bytes(data[pos + 4:pos + 4 + n]))
    return out


def _plain(data: memoryview, physical: str, indexes: np.ndarray) -> list[Any] | np.ndarray:
    """The PLAIN values at ``indexes`` (sorted, non-negative)."""
    if physical == "BYTE_ARRAY":
        return _byte_arrays(data, indexes.tolist())
    dtype = np.dtype(_FIXED[physical][0])
    return np.frombuffer(data, dtype=dtype, count=int(indexes[-1]) + 1 if len(indexes)
                         else 0)[indexes]


class _Chunk:
    """One column chunk of one row group: its page headers are read one by one and only
    the pages holding wanted rows (and the dictionary, when they need it) are read whole."""

    #: bytes read to parse a page header (more when its statistics are longer)
    HEADER = 1024

    def __init__(self, read: Any, start: int, length: int, physical: str, codec: str,
                 max_def: int):
        self.read_at, self.start, self.length = read, start, length
        self.physical, self.codec, self.max_def = physical, codec, max_def
        #: where the dictionary page is (body, size, stored), then its decompressed bytes
        self.dictionary: Any = None

    def _decompress(self, page: memoryview, size: int) -> memoryview:
        if self.codec == "UNCOMPRESSED":
            return page
        return memoryview(pa.decompress(page, size, codec=_CODECS[self.codec],
                                        asbytes=True))

    def _header(self, pos: int) -> tuple[dict[int, Any], int]:
        """The page header at ``pos`` of the chunk and where its page starts."""
        window = self.HEADER
        while True:
            size = min(window, self.length - pos)
            head = _Thrift(self.read_at(self.start + pos, size), 0)
            try:
                return head.struct(), pos + head.pos
            except IndexError:
                if size < window or window >= 1 << 24:
                    raise Unsupported("page header past the chunk") from None
                window *= 16

    def read(self, rows: np.ndarray) -> list[Any]:
        """The values (None for NULL) at the sorted row indexes ``rows`` of the chunk."""
        out: list[Any] = [None] * len(rows)
        pos, first, done = 0, 0, 0
        while done < len(rows):
            if pos >= self.length:
                raise Unsupported("rows past the chunk")
            header, body = self._header(pos)
            kind, size, stored = header.get(1), header.get(2), header.get(3)
            pos = body + stored
            if kind == _DICTIONARY_PAGE:
                encoding = header[7].get(2)
                if encoding not in (_PLAIN, _PLAIN_DICTIONARY):
                    raise Unsupported("dictionary encoding")
                self.dictionary = (body, size, stored)  # read when a page needs it
                continue
            if kind not in (_DATA_PAGE, _DATA_PAGE_V2):
                continue  # an index page
            info = header[5] if kind == _DATA_PAGE else header[8]
            count = info[1]
            end = first + count
            lo = done
            while done < len(rows) and rows[done] < end:
                done += 1
            if done > lo:
                page = self.read_at(self.start + body, stored)
                values = self._page(kind, info, page, size, count, rows[lo:done] - first)
                out[lo:done] = values
            first = end
        return out

    def dictionary_only(self) -> bool:
        """Whether every data page of the chunk is dictionary-encoded (a writer falls back
        to PLAIN pages when the dictionary grows too large; the chunk's metadata lists
        PLAIN for the dictionary page either way, so only the page headers tell)."""
        pos, seen = 0, False
        while pos < self.length:
            header, body = self._header(pos)
            kind = header.get(1)
            pos = body + header.get(3)
            if kind == _DICTIONARY_PAGE:
                seen = True
            elif kind in (_DATA_PAGE, _DATA_PAGE_V2):
                info = header[5] if kind == _DATA_PAGE else header[8]
                encoding = info.get(2) if kind == _DATA_PAGE else info.get(4)
                if encoding not in (_RLE_DICTIONARY, _PLAIN_DICTIONARY):
                    return False
        return seen

    def _entries(self) -> memoryview:
        """The dictionary page's values, decompressed once."""
        if self.dictionary is None:
            raise Unsupported("no dictionary page")
        if isinstance(self.dictionary, tuple):
            body, size, stored = self.dictionary
            self.dictionary = self._decompress(self.read_at(self.start + body, stored), size)
        return self.dictionary

    def _page(self, kind: int, info: dict, page: memoryview, size: int, count: int,
              wanted: np.ndarray) -> list[Any]:
        if kind == _DATA_PAGE:
            data = self._decompress(page, size)
            encoding = info[2]
            if self.max_def:
                if info.get(3) != 3:  # RLE levels
                    raise Unsupported("definition level encoding")
                n = struct.unpack_from("<i", data, 0)[0]
                levels = _hybrid(data[4:4 + n], self.max_def.bit_length(), count)
                data = data[4 + n:]
            else:
                levels = None
        else:
            encoding = info[4]
            def_len, rep_len = info[5], info[6]
            if rep_len:
                raise Unsupported("repetition levels")
            levels = _hybrid(page[:def_len], self.max_def.bit_length(), count) \
                if self.max_def else None
            rest = page[def_len:]
            data = self._decompress(rest, size - def_len) if info.get(7, True) else rest
        if levels is None:
            valid = np.ones(count, dtype=bool)
        else:
            valid = levels == self.max_def
        index = np.cumsum(valid) - 1  # each row's position among the values
        present = valid[wanted]
        at = index[wanted][present]
        if encoding == _PLAIN:
            got = _plain(data, self.physical, at)
        elif encoding in (_RLE_DICTIONARY, _PLAIN_DICTIONARY):
            width = data[0]
            ids = np.array(_hybrid_at(data[1:], width, at.tolist()), dtype=np.int64)
            order = np.argsort(ids, kind="stable")
            entries = _plain(self._entries(), self.physical, ids[order])
            got = [None] * len(ids)
            for i, value in zip(order.tolist(), list(entries)):
                got[i] = value
        else:
            raise Unsupported(f"encoding {encoding}")
        out: list[Any] = [None] * len(wanted)
        values = iter(got.tolist() if isinstance(got, np.ndarray) else got)
        for i, p in enumerate(present.tolist()):
            if p:
                out[i] = next(values)
        return out


def read_rows(file: Any, path_in_schema: str, target: pa.DataType, group: int,
              rows: np.ndarray, read_at: Any) -> pa.Array | None:
    """The values of column ``path_in_schema`` at the sorted row indexes ``rows`` of row
    group ``group`` of ``file`` (a pyarrow.parquet.ParquetFile), as ``target``; None when the
    layout is not one this reader decodes. ``read_at(offset, length)`` reads bytes of the
    file (a buffer)."""
    meta = file.metadata.row_group(group)
    index = next((i for i in range(meta.num_columns)
                  if meta.column(i).path_in_schema == path_in_schema), None)
    if index is None:
        return None
    column = meta.column(index)
    descr = file.schema.column(index)
    physical = column.physical_type
    stored = file.schema_arrow.field(file.schema_arrow.get_field_index(path_in_schema)).type \
        if path_in_schema in file.schema_arrow.names else None
    if descr.max_repetition_level or descr.max_definition_level > 1 or stored is None or \
            (column.compression != "UNCOMPRESSED" and column.compression not in _CODECS):
        return None
    if physical == "BYTE_ARRAY":
        if not (pa.types.is_string(stored) or pa.types.is_binary(stored)
                or pa.types.is_large_string(stored) or pa.types.is_large_binary(stored)):
            return None
        arrow = pa.binary()
    elif physical in _FIXED and stored.equals(_FIXED[physical][1]):
        arrow = _FIXED[physical][1]
    else:
        return None
    start = column.dictionary_page_offset if column.has_dictionary_page else \
        column.data_page_offset
    if start is None or start <= 0:
        return None
    def read(offset: int, length: int) -> memoryview:
        return memoryview(read_at(offset, length))

    try:
        values = _Chunk(read, start, column.total_compressed_size, physical,
                        column.compression, descr.max_definition_level).read(rows)
    except (Unsupported, IndexError, KeyError, struct.error, ValueError, pa.ArrowException):
        return None
    array = pa.array(values, arrow)
    if physical == "BYTE_ARRAY":
        array = array.cast(stored)  # text: checks UTF-8
    return array.cast(target) if not array.type.equals(target) else array


def dictionary_only(file: Any, path_in_schema: str, group: int, read_at: Any) -> bool:
    """Whether every data page of column ``path_in_schema`` in row group ``group`` of
    ``file`` is dictionary-encoded (False when it cannot tell). Such a text column decodes
    for less as Arrow dictionary indices and a cast to text than as text directly
    (formats.parquet.FileReader)."""
    meta = file.metadata.row_group(group)
    column = next((meta.column(i) for i in range(meta.num_columns)
                   if meta.column(i).path_in_schema == path_in_schema), None)
    if column is None or not column.has_dictionary_page or \
            not column.dictionary_page_offset or column.dictionary_page_offset <= 0:
        return False

    def read(offset: int, length: int) -> memoryview:
        return memoryview(read_at(offset, length))

    try:
        return _Chunk(read, column.dictionary_page_offset, column.total_compressed_size,
                      column.physical_type, column.compression, 1).dictionary_only()
    except (Unsupported, IndexError, KeyError, struct.error, ValueError, TypeError):
        return False
