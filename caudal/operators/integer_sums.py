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
  divides as DuckDB does.
"""

from __future__ import annotations

from fractions import Fraction

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
    guarantees int64 sums of them are exact. For a batch without NULLs or negative values
    (prices, counts) one vectorized OR of the values bounds them (all below 2^bits: a
    quarter of the cost of Arrow's min_max call on a batch of 8192 rows); otherwise their
    minimum and maximum."""
    if isinstance(values, pa.ChunkedArray) and values.num_chunks == 1:
        values = values.chunk(0)
    n = len(values) - values.null_count
    if n == 0:
        return False
    t = values.type
    if t.bit_width <= 32 and n < 1 << 31:
        return False  # |x| <= 2^32 each
    if isinstance(values, pa.Array) and not values.null_count:
        x = np.frombuffer(values.buffers()[1], count=len(values), offset=values.offset * 8,
                          dtype=np.uint64 if pa.types.is_uint64(t) else np.int64)
        bits = int(np.bitwise_or.reduce(x))
        if bits >= 0:  # every value in [0, 2^bits)
            return n << bits.bit_length() > _LIMIT
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


def to_bigint(hi: np.ndarray, lo: np.ndarray, call: object) -> np.ndarray:
    """Carried pairs as int64 values; an overflow error naming ``call`` when one is not."""
    if len(hi) and (hi.min() < _HI_MIN or hi.max() > _HI_MAX):
        raise overflow_error(call)
    return (hi << _HALF) | lo


#: DuckDB divides the sums of these types in double, of wider ones in long double
_DOUBLE_DIVIDED = (pa.int8(), pa.int16(), pa.uint8())
#: below these, one division in double equals one in long double rounded to double (an
#: exact quotient cannot fall within 2^-64 of a midpoint between doubles unless n > 2^11)
_EXACT_SUM, _FEW_ROWS = 1 << 53, 1 << 11


def divided_in_long_double(t: pa.DataType | None) -> bool:
    """Whether DuckDB's avg of integers of type ``t`` divides in long double (its GROUP BY
    and OVER do so for INTEGER, BIGINT and the unsigned types from USMALLINT up; TINYINT,
    SMALLINT and UTINYINT divide in double). Of a DECIMAL (``decimal_mean``): those of more
    than 4 digits (stored in more than 16 bits)."""
    if t is not None and pa.types.is_decimal(t):
        return t.precision > 4
    return not any(t is not None and t.equals(d) for d in _DOUBLE_DIVIDED)


def mean(hi: np.ndarray | None, lo: np.ndarray, n: np.ndarray, long_double: bool = True
         ) -> np.ndarray:
    """``(hi * 2^32 + lo) / n`` (``hi`` None: 0) as DuckDB's avg of integers finishes its
    exact sum: divided in long double and rounded to double (``long_double``), or rounded to
    a double and divided (0 where ``n`` is 0). Only groups of more than 2^11 rows or sums past 2^53 take
    the long double division (x87 arithmetic, several times slower)."""
    count = np.maximum(n, 1)
    if hi is not None and hi.any():
        hi, lo = carry(hi, lo)
        # hi * 2^32 and lo are doubles exactly: their sum rounds the exact sum once
        total = hi.astype(np.float64) * float(1 << _HALF) + lo.astype(np.float64)
    else:  # sums that fit int64 (the common case): one rounding
        total = lo.astype(np.float64)
    out = total / count
    if long_double and len(out) and (count.max() > _FEW_ROWS or
                                     max(total.max(), -total.min()) >= _EXACT_SUM):
        slow = np.flatnonzero((count > _FEW_ROWS) | (np.abs(total) >= _EXACT_SUM))
        if len(slow):
            exact = lo[slow].astype(np.longdouble)
            if hi is not None:
                exact += hi[slow].astype(np.longdouble) * np.longdouble(1 << _HALF)
            out[slow] = (exact / count[slow].astype(np.longdouble)).astype(np.float64)
    return out


def quick_mean(hi: pa.ChunkedArray | pa.Array, lo: pa.ChunkedArray | pa.Array,
               n: pa.ChunkedArray | pa.Array, long_double: bool = True) -> pa.Array | None:
    """``mean``'s common case in Arrow's kernels (NULL where ``n`` is 0): every sum within
    int64 (``hi`` all 0) and, for ``long_double``, groups of at most 2^11 rows and sums
    below 2^53 (where one double division is exact enough). None otherwise. The NumPy
    version allocates several arrays per call, whose first touch costs more than the
    arithmetic (a final of 65,000 groups: 1.4 ms against 0.4 ms for this path)."""
    if hi.null_count or lo.null_count:
        return None
    extremes = pc.min_max(hi)
    if extremes["min"].as_py() != 0 or extremes["max"].as_py() != 0:
        return None
    if long_double and len(n):
        extremes = pc.min_max(lo)
        if pc.max(n).as_py() > _FEW_ROWS or \
                max(-extremes["min"].as_py(), extremes["max"].as_py()) >= _EXACT_SUM:
            return None
    return pc.if_else(pc.greater(n, 0), pc.divide(as_double(lo), as_double(n)),
                      pa.scalar(None, pa.float64()))


def as_double(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
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


# ---- avg of DECIMAL: the unscaled integers summed exactly ----------------------------------

#: a DECIMAL of at most this many digits has int64 unscaled values
DECIMAL_INT64_DIGITS = 18


def decimal_scale(t: pa.DataType | None) -> int | None:
    """The scale of ``t`` when it is a DECIMAL of at most 18 digits (avg sums its unscaled
    int64 values exactly, as integers); None for any other type."""
    if t is not None and pa.types.is_decimal(t) and t.precision <= DECIMAL_INT64_DIGITS:
        return t.scale
    return None


def unscaled(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A DECIMAL of at most 18 digits as its unscaled int64 values, NULLs kept: the low
    64 bits of each 128-bit value (one strided copy)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not pa.types.is_decimal128(values.type):
        values = values.cast(pa.decimal128(values.type.precision, values.type.scale))
    total = len(values) + values.offset
    words = np.frombuffer(values.buffers()[1], dtype=np.int64, count=2 * total)
    low = np.ascontiguousarray(words[0::2])
    return pa.Array.from_buffers(pa.int64(), len(values), [values.buffers()[0], pa.py_buffer(low)],
                                 values.null_count, offset=values.offset)


_TWO_64 = np.longdouble(2.0) ** 64


def huge_long_double(upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """128-bit integers ``upper * 2^64 + lower`` (int64 and uint64 arrays) in long double,
    rounded once, as DuckDB converts a HUGEINT (``upper * 2^64`` is exact)."""
    return lower.astype(np.longdouble) + upper.astype(np.longdouble) * _TWO_64


def _huge_mean(upper: np.ndarray, lower: np.ndarray, count: np.ndarray, scale: int,
               nearest: bool) -> np.ndarray:
    """``(upper * 2^64 + lower) / (count * 10^scale)`` as DuckDB's avg of a DECIMAL finishes
    its HUGEINT sum: in long double, divided by ``count * double(10^scale)`` (the scale is a
    double: 10^23 and up are not exact), rounded to double; ``nearest``: the double nearest
    the decimal sum, divided by ``count`` (its avg without GROUP BY)."""
    if nearest:  # one group (no GROUP BY): Python's exact rounding of the decimal sum
        sums = [float(Fraction((u << 64) + low, 10 ** scale))
                for u, low in zip(upper.tolist(), lower.tolist())]
        return np.array(sums, np.float64) / count.astype(np.float64)
    divisor = count.astype(np.longdouble) * np.longdouble(float(10 ** scale))
    return (huge_long_double(upper, lower) / divisor).astype(np.float64)


def decimal_mean(hi: np.ndarray, lo: np.ndarray, n: np.ndarray, scale: int,
                 long_double: bool = True, nearest: bool = False) -> np.ndarray:
    """``(hi * 2^32 + lo) / (n * 10^scale)`` as DuckDB's avg of a DECIMAL finishes its exact
    sum in GROUP BY, windows and OVER (checked against it on thousands of sums): for up to 4
    digits (``long_double`` False) the sum rounded to a double over ``n * 10^scale`` in
    double; for more, in long double (``_huge_mean``). 0 where ``n`` is 0. DuckDB's avg
    without GROUP BY (``nearest``: one group) rounds the decimal sum to the nearest double
    and divides that by ``n`` (it can differ in the last bit)."""
    count = np.maximum(n, 1)
    hi, lo = carry(hi, lo)
    if not long_double and not nearest:  # hi * 2^32, lo: doubles exactly, one rounding
        total = hi.astype(np.float64) * float(1 << _HALF) + lo.astype(np.float64)
        return total / (count.astype(np.float64) * float(10 ** scale))
    upper = hi >> _HALF  # the HUGEINT's halves: sum = upper * 2^64 + lower
    lower = ((hi & _LOW).astype(np.uint64) << np.uint64(_HALF)) | lo.astype(np.uint64)
    return _huge_mean(upper, lower, count, scale, nearest)


# ---- sums of DECIMALs of 19 to 38 digits ---------------------------------------------------
# Their unscaled values are up to 127 bits: Arrow's decimal128 sums wrap past 2^127 without
# a word, so their sums (and avg's) are kept as decimal256 of 76 digits, which no sum of
# fewer than 2^31 * 2^31 such values leaves, and checked against DECIMAL(38)'s range where a
# value is made: past it DuckDB fails ("Overflow in SUM of DECIMAL"), so does caudal.

#: state of a sum of a DECIMAL of more than 18 digits: no wrap, any order of additions
WIDE_DIGITS = 76


def wide_decimal(t: pa.DataType | None) -> bool:
    """Whether ``t`` is a DECIMAL of more than 18 digits (summed as ``wide_sum_type``)."""
    return t is not None and pa.types.is_decimal(t) and t.precision > DECIMAL_INT64_DIGITS


def wide_sum_type(t: pa.DataType) -> pa.DataType:
    """The type a sum of DECIMAL ``t`` (of more than 18 digits) is kept in."""
    return pa.decimal256(WIDE_DIGITS, t.scale)


def wide_sum(sums: pa.Array | pa.ChunkedArray, call: object) -> pa.Array:
    """Wide sums (``wide_sum_type``) as DECIMAL(38, s), the SQL type of sum; one line
    naming ``call`` when one leaves it (as DuckDB's sum and avg of a DECIMAL fail)."""
    if isinstance(sums, pa.ChunkedArray):
        sums = sums.combine_chunks()
    target = pa.decimal128(38, sums.type.scale)
    try:
        return sums.cast(target)
    except pa.ArrowInvalid:
        raise RuntimeFailure(f"{call} overflowed DECIMAL(38, {sums.type.scale}) in a group",
                             hint="cast its argument to DOUBLE for an approximate sum") \
            from None


def wide_mean(sums: pa.Array | pa.ChunkedArray, n: np.ndarray, call: object,
              nearest: bool = False) -> np.ndarray:
    """avg of a DECIMAL of more than 18 digits from its wide sums and counts ``n``, as
    DuckDB's (``_huge_mean``); 0 where ``n`` is 0, an error where a sum leaves DECIMAL(38)."""
    exact = wide_sum(sums, call)
    if exact.null_count:
        exact = pc.fill_null(exact, pa.scalar(0, exact.type))
    words = np.frombuffer(exact.buffers()[1], dtype=np.int64,
                          count=2 * (len(exact) + exact.offset))[2 * exact.offset:]
    lower, upper = words[0::2].view(np.uint64), words[1::2]
    return _huge_mean(upper, lower, np.maximum(n, 1), exact.type.scale, nearest)
