"""Values as text, the way caudal shows them to people and writes them into JSON and CSV.

One vectorized conversion per column, so the same value always reads the same everywhere:
TIMESTAMP as RFC 3339 (``2026-01-01T00:00:00Z``, .fff or .ffffff only when present), BYTEA as
PostgreSQL hex (``\\x0a1b``), INTERVAL as ISO 8601 (``PT1S``), nested values as JSON.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa

from caudal import compute as pc
from caudal.types import TIMESTAMP

_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
#: byte -> its two lowercase hex digits
_TO_HEX = np.stack([_HEX_DIGITS[np.arange(256) >> 4], _HEX_DIGITS[np.arange(256) & 15]], axis=1)
#: ASCII code -> value of the hex digit, or 255 when the character is not one
_FROM_HEX = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _FROM_HEX[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _FROM_HEX[_c] = 10 + _i


def rfc3339(arr: pa.Array | pa.ChunkedArray, sep: str = "T", zone: bool = True) -> pa.Array:
    """Timestamps as ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` (UTC); zone-less ones are taken as UTC.
    Without ``zone`` the ``Z`` is left out (Flink's and Arroyo's text of a TIMESTAMP)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.type.tz is None:
        arr = arr.cast(pa.timestamp("us"), safe=False).cast(TIMESTAMP)
    elif not arr.type.equals(TIMESTAMP):
        arr = arr.cast(TIMESTAMP, safe=False)
    import polars as pl  # loaded on first use: readers of files never need it

    # chrono's %.f prints .fff or .ffffff, or nothing for a whole second
    suffix = "Z" if zone else ""
    text = pl.from_arrow(arr).dt.to_string(f"%Y-%m-%d{sep}%H:%M:%S%.f{suffix}").to_arrow()
    return text.cast(pa.string())


def _offsets(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (rebased to 0) and data bytes of a binary or string array."""
    width = np.int64 if arr.type in (pa.large_binary(), pa.large_string()) else np.int32
    buffers = arr.buffers()
    offsets = np.frombuffer(buffers[1], dtype=width)[arr.offset:arr.offset + len(arr) + 1]
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None \
        else np.zeros(0, np.uint8)
    start = int(offsets[0]) if len(offsets) else 0
    end = int(offsets[-1]) if len(offsets) else 0
    return (offsets - start).astype(np.int64), data[start:end]


def hex_text(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """BYTEA as PostgreSQL's hex text: ``\\x`` then two lowercase digits per byte."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.binary())
    n = len(arr)
    offsets, data = _offsets(arr)
    new_offsets = offsets * 2 + 2 * np.arange(n + 1, dtype=np.int64)
    out = np.empty(int(new_offsets[-1]) if n else 0, dtype=np.uint8)
    starts = new_offsets[:-1]
    out[starts] = ord("\\")
    out[starts + 1] = ord("x")
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(offsets))
    dest = 2 * np.arange(len(data), dtype=np.int64) + 2 * (rows + 1)
    digits = _TO_HEX[data]
    out[dest] = digits[:, 0]
    out[dest + 1] = digits[:, 1]
    text = pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(
        new_offsets.astype(np.int32)), pa.py_buffer(out)])
    return pc.if_else(arr.is_null(), pa.scalar(None, pa.string()), text)


def parse_hex(arr: pa.Array) -> pa.Array:
    """The inverse of ``hex_text``; raises ArrowInvalid if any value is not ``\\x`` + hex."""
    arr = arr.cast(pa.string())
    valid = arr.is_valid()
    prefixed = pc.starts_with(arr, "\\x")
    if not pc.all(pc.or_kleene(prefixed, pc.invert(valid))).as_py():
        raise pa.ArrowInvalid("BYTEA text must start with \\x")
    body = pc.utf8_slice_codeunits(arr, 2)
    offsets, data = _offsets(body)
    lengths = np.diff(offsets)
    values = _FROM_HEX[data]
    if (lengths % 2).any() or (values == 255).any():
        raise pa.ArrowInvalid("BYTEA text must have two hex digits per byte")
    raw = (values[0::2] << 4) | values[1::2]
    out = pa.Array.from_buffers(pa.binary(), len(body), [None, pa.py_buffer(
        (offsets // 2).astype(np.int32)), pa.py_buffer(raw.astype(np.uint8))])
    return pc.if_else(valid, out, pa.scalar(None, pa.binary()))


def json_text(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Each value as JSON text (polars' encoder), NULL staying NULL."""
    import polars as pl
    frame = pl.from_arrow(pa.table({"v": arr}))
    encoded = frame.select(pl.struct("v").struct.json_encode()).to_series().to_arrow()
    text = pc.utf8_slice_codeunits(encoded.cast(pa.string()), 5, -1)  # strip {"v": and }
    return pc.if_else(pc.is_valid(arr), text, pa.scalar(None, pa.string()))


def to_text(arr: pa.Array | pa.ChunkedArray, sep: str = "T", zone: bool = True) -> pa.Array:
    """Any column as strings (NULL stays NULL), for display and for text formats; ``sep``
    and ``zone`` shape top-level timestamps as ``rfc3339`` does."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = arr.type
    if pa.types.is_dictionary(t):
        return to_text(arr.dictionary_decode(), sep, zone)
    if pa.types.is_string(t):
        return arr
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pc.cast(arr, pa.string())
    if pa.types.is_timestamp(t):
        return rfc3339(arr, sep, zone)
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t) \
            or pa.types.is_fixed_size_binary(t):
        return hex_text(arr)
    if pa.types.is_null(t):
        return pa.nulls(len(arr), pa.string())
    if pa.types.is_nested(t) or pa.types.is_duration(t) or pa.types.is_time(t) \
            or pa.types.is_interval(t):
        return json_text(arr) if pa.types.is_nested(t) else \
            pc.utf8_slice_codeunits(json_text(arr), 1, -1)  # a JSON string: drop the quotes
    if pa.types.is_decimal(t) and t.scale > 6:
        # Arrow writes 0.0000001000 as 1.000E-7; Polars, DuckDB and PostgreSQL never use an
        # exponent (and Arrow does not for a scale of 6 or less)
        import polars as pl  # only writers of such decimals need it (loaded on first use)

        return pl.from_arrow(arr).cast(pl.String).to_arrow().cast(pa.string())
    return pc.cast(arr, pa.string())


def timestamp_text_trouble(value: object) -> str:
    """Why a timestamp's text that a file holds was not read, when it can be told: '' or
    ': <reason>' for the malformed-record message."""
    if isinstance(value, str) and re.search(r":\d\d\.\d{7,}", value):
        return (": more than 6 digits after the seconds (TIMESTAMP keeps microseconds; "
                "declare the column TEXT and CAST it, which cuts the rest off as DuckDB does)")
    return ""
