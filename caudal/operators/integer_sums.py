"""Exact sums of integers: a sum never wraps, it is exact or it fails in one line.

caudal's ``sum`` of an integer column is a BIGINT (as Flink's, whose users' sinks expect
it), where DuckDB sums into a 128-bit HUGEINT. Arrow's and NumPy's int64 sums wrap silently
past 2^63, so every integer sum and average (the aggregate kernels' partial and merge steps,
DISTINCT, OVER frames) goes through here:

* ``may_overflow`` bounds a column with one min/max pass: when ``max|x| * n < 2^63`` no sum
  of any subset of its values can leave int64, so the plain (wrapping) kernels are exact.
  That is the fast path, and its bound is the only cost on ordinary data.
* otherwise the values are split into 32-bit halves, ``x = hi * 2^32 + lo`` with ``lo`` in
  [0, 2^32): sums of halves cannot overflow int64 (fewer than 2^31 rows), so a group's sum is
  exact as a ``(hi, lo)`` pair, which ``to_bigint`` turns into int64 or refuses, and ``mean``
  divides as DuckDB does (an exact sum, then one division in long double).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from caudal import compute as pc
from caudal.errors import RuntimeFailure

_LIMIT = 1 << 63
_HALF = 32
_LOW = np.int64((1 << _HALF) - 1)
#: a pair (hi, lo) is a BIGINT when hi is within int32
_HI_MIN, _HI_MAX = -(1 << 31), (1 << 31) - 1


def overflow_error(call: object, target: str = "BIGINT") -> RuntimeFailure:
    """The one-line error of an integer sum past the range of its result type."""
    return RuntimeFailure(
        f"{call} overflowed {target} in a group",
        hint="cast its argument to DECIMAL(38, 0) for an exact sum, or to DOUBLE")


def may_overflow(values: pa.Array | pa.ChunkedArray) -> bool:
    """Whether some sum of a subset of ``values`` (integers) may leave int64: False
    guarantees int64 sums of them are exact."""
    n = len(values) - values.null_count
    if n == 0:
        return False
    extremes = pc.min_max(values)
    lo, hi = extremes["min"].as_py(), extremes["max"].as_py()
    return max(-lo, hi) * n >= _LIMIT


def _numpy(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if values.null_count:
        values = pc.fill_null(values, 0)
    return values.to_numpy(zero_copy_only=False)


def halves(values: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """``(hi, lo)`` int64 arrays with ``x = hi * 2^32 + lo``, ``lo`` in [0, 2^32); NULL is 0."""
    x = _numpy(values)
    if x.dtype == np.uint64:
        return (x >> np.uint64(_HALF)).astype(np.int64), (x & np.uint64(_LOW)).astype(np.int64)
    x = x.astype(np.int64, copy=False)
    return x >> _HALF, x & _LOW


def carry(hi: np.ndarray, lo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same pairs with ``lo`` back in [0, 2^32) (sums of ``lo`` grow past it)."""
    return hi + (lo >> _HALF), lo & _LOW


def group_halves(values: pa.Array | pa.ChunkedArray, gid: np.ndarray, n_groups: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The exact sum of ``values`` per group ``gid`` (< ``n_groups``) as carried pairs."""
    hi, lo = halves(values)
    out_hi = np.zeros(n_groups, dtype=np.int64)
    out_lo = np.zeros(n_groups, dtype=np.int64)
    np.add.at(out_hi, gid, hi)
    np.add.at(out_lo, gid, lo)
    return carry(out_hi, out_lo)


def split(sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact int64 (or uint64 below 2^63) sums as carried pairs."""
    s = sums.astype(np.int64, copy=False)
    return s >> _HALF, s & _LOW


def to_bigint(hi: np.ndarray, lo: np.ndarray, call: object) -> np.ndarray:
    """Carried pairs as int64 values; an overflow error naming ``call`` when one is not."""
    if len(hi) and (hi.min() < _HI_MIN or hi.max() > _HI_MAX):
        raise overflow_error(call)
    return (hi << _HALF) | lo


def mean(hi: np.ndarray, lo: np.ndarray, n: np.ndarray) -> np.ndarray:
    """``(hi * 2^32 + lo) / n`` as DuckDB's avg of integers finishes: the exact sum in long
    double, divided there, then rounded to double (0 where ``n`` is 0)."""
    total = hi.astype(np.longdouble) * np.longdouble(1 << _HALF) + lo.astype(np.longdouble)
    count = np.maximum(n, 1).astype(np.longdouble)
    return (total / count).astype(np.float64)


def as_double(values: pa.Array) -> pa.Array:
    """Numbers as float64, integers to the nearest double as DuckDB casts them (Arrow's safe
    cast refuses an integer past 2^53, the range where every integer is a double)."""
    if pa.types.is_integer(values.type):
        return pc.cast(values, options=pc.CastOptions(pa.float64(), allow_float_truncate=True))
    return values.cast(pa.float64())


def check_unsigned(values: pa.Array | pa.ChunkedArray, call: object) -> None:
    """A UBIGINT value past 2^63 makes any sum of non-negative values leave BIGINT."""
    if pa.types.is_uint64(values.type) and len(values) - values.null_count:
        top = pc.max(values).as_py()
        if top is not None and top >= _LIMIT:
            raise overflow_error(call)
