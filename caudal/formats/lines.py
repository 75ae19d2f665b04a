"""Text files cut into blocks of whole rows, so Arrow's parsers decode many rows per call.

A block ends at a row boundary that the format chooses (a newline for JSON lines, a newline
outside quotes for CSV), and carries the line number of its first line so that errors about a
record can name its line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

#: bytes read from a file per block (each block is parsed by Arrow in parallel pieces)
BLOCK_SIZE = 8 << 20
#: the piece size Arrow's parsers work on (rows longer than this are retried whole)
PARSE_BLOCK = 1 << 20

#: the UTF-8 byte order mark some tools put first in a text file
BOM = b"\xef\xbb\xbf"


def not_utf8(row: bytes) -> str | None:
    """What is wrong with a row that is not UTF-8 text (None when it is): Arrow's parsers
    say "invalid UTF8 data" without where; this names the byte and its column."""
    try:
        row.decode("utf-8")
    except UnicodeDecodeError as error:
        return (f"not valid UTF-8 (byte 0x{row[error.start]:02x} at column "
                f"{error.start + 1}; the file must be UTF-8 text)")
    return None


def read_blocks(stream: Any, cut: Callable[[bytes], int],
                block_size: int = BLOCK_SIZE) -> Iterator[tuple[int, bytes]]:
    """Yield ``(first line number, bytes of whole rows)`` from a binary stream.

    ``cut(data)`` returns the end of the last complete row in ``data`` (0 if there is none).
    The last row of a file needs no final newline.
    """
    line = 1
    carry = b""
    first = True
    while True:
        chunk = stream.read(block_size)
        if first:
            first = False
            if chunk.startswith(BOM):
                chunk = chunk[len(BOM):]
        if not chunk:
            if carry.strip():
                yield line, carry if carry.endswith(b"\n") else carry + b"\n"
            return
        data = carry + chunk if carry else chunk
        end = cut(data)
        if end == 0:
            carry = data
            continue
        yield line, data[:end]
        line += data.count(b"\n", 0, end)
        carry = data[end:]


def first_rows(stream: Any, cut: Callable[[bytes], int], size: int) -> bytes:
    """The whole rows of a file's first ``size`` bytes, without a BOM: what schema inference
    reads. A first row longer than ``size`` is read to its end (cut there, the window would
    hold no row); a file shorter than ``size`` is taken whole (its last row needs no
    newline). ``cut`` is ``read_blocks``'s."""
    data = stream.read(size)
    full = len(data) == size  # before the BOM goes: 3 bytes short is not the file's end
    data = data.removeprefix(BOM)
    while full:
        end = cut(data)
        if end:
            return data[:end]
        more = stream.read(size)
        full = len(more) == size
        data += more
    return data


_VISIBLE = re.compile(rb"[^ \t\r\n]")


def is_blank(data: bytes) -> bool:
    """True if ``data`` holds only whitespace (without copying it, unlike ``strip``)."""
    return _VISIBLE.search(data) is None


def last_newline(data: bytes) -> int:
    """``cut`` for formats whose rows never contain a raw newline (JSON lines)."""
    return data.rfind(b"\n") + 1


def split_lines(data: bytes, first_line: int) -> list[tuple[int, bytes]]:
    """The non-blank lines of a block with their line numbers (error path only)."""
    rows = []
    for i, text in enumerate(data.split(b"\n")):
        if text.strip():
            rows.append((first_line + i, text + b"\n"))
    return rows


def buffer_reader(data: bytes) -> pa.BufferReader:
    """A zero-copy Arrow stream over ``data``."""
    return pa.BufferReader(pa.py_buffer(data))


def parse_block_size(data: bytes, error: Exception | None = None) -> int:
    """Arrow's piece size for ``data``: small pieces parse in parallel; after a 'straddling'
    error (a row longer than a piece) the whole block is one piece."""
    if error is not None and "straddl" in str(error).lower():
        return len(data) + 1
    return PARSE_BLOCK if len(data) > PARSE_BLOCK else len(data) + 1
