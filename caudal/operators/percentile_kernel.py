"""Exact percentiles: median(x), percentile_cont(p) and percentile_disc(p) WITHIN GROUP
(ORDER BY x [DESC]), equal to DuckDB's to the last bit.

The state of a group is the list of its non-NULL values (as array_agg's, merged by
concatenation). Nothing is sorted per batch: when windows close, the values of every
group that finishes are sorted at once, by one NumPy sort of int64 keys (group, value),
and the ranks are picked by the groups' offsets, so no Python runs per group. DuckDB's
interpolation is copied as it computes it: RN = (n - 1) * p, lo * (1 - d) + hi * d with a
fused multiply-add (its build contracts the expression into one; NumPy has no FMA, so it
is emulated exactly), and percentile_disc's rank from the fraction's decimal digits.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pyarrow as pa

from caudal import compute as pc
from caudal.compute import from_numpy
from caudal.exact_float import two_product, two_sum
from caudal.operators.aggregate_kernels import (
    PARTIAL,
    GroupIndex,
    Kernel,
    _lists,
    _np,
    group_order,
)
from caudal.operators.keyed_tables import as_array as _as_array


def fused_multiply_add(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """a * b + c rounded once, as a hardware FMA computes it: the product split exactly,
    then the correctly rounded sum of three doubles (the two smallest parts added with
    rounding to odd; Boldo and Melquiond, IEEE TC 2008). Where a part overflows (values
    beyond ~1e300) or is not finite, the plain a * b + c."""
    with np.errstate(invalid="ignore", over="ignore"):
        uh, ul = two_product(a, b)
        sh, sl = two_sum(ul, c)
        th, tl = two_sum(uh, sh)
        r, e = two_sum(tl, sl)
        even = (r.view(np.int64) & 1) == 0
        odd = np.where((e != 0) & even, np.nextafter(r, np.where(e > 0, np.inf, -np.inf)), r)
        fused = th + odd
        plain = a * b + c
    return np.where(np.isfinite(fused) & np.isfinite(plain), fused, plain)


def _double_interpolation(lo: np.ndarray, hi: np.ndarray, d: np.ndarray,
                          same: np.ndarray) -> np.ndarray:
    """DuckDB's DOUBLE percentile_cont, ``lo`` where ``same`` (one rank), else
    fma(lo, 1 - d, hi * d). Where the product lo * (1 - d) is exact the plain sum is that
    fused result (one rounding either way): so at d = 0.5 (a median of an even count),
    unless halving ``lo`` underflows or the sum is a zero (whose sign the emulation
    decides); the exact emulation (~30 NumPy passes) runs only on the other rows."""
    with np.errstate(invalid="ignore", over="ignore"):
        c = hi * d
        a = lo * (1.0 - d)
        value = np.where(same, lo, a + c)
        rest = ~(same | ((d == 0.5) & (a * 2.0 == lo) & (value != 0.0)))
        if rest.any():
            value[rest] = fused_multiply_add(lo[rest], 1.0 - d[rest], c[rest])
    return value


def _unscaled(values: pa.Array) -> np.ndarray:
    """The unscaled integers of a DECIMAL of up to 18 digits (they fit an int64: the low
    word of each 128- or 256-bit little-endian value)."""
    words = values.type.byte_width // 8
    raw = np.frombuffer(values.buffers()[1], dtype=np.int64)
    return raw[values.offset * words:(values.offset + len(values)) * words:words].copy()


def _decimals(unscaled: np.ndarray, valid: np.ndarray, dtype: pa.DataType) -> pa.Array:
    """A DECIMAL array of ``dtype`` holding ``unscaled`` (int64) where ``valid``."""
    words = dtype.byte_width // 8
    raw = np.empty((len(unscaled), words), dtype=np.int64)
    raw[:, 0] = unscaled
    raw[:, 1:] = (unscaled >> 63)[:, None]  # the sign, extended
    bitmap = pa.array(valid).buffers()[1]  # 1 = valid
    return pa.Array.from_buffers(dtype, len(unscaled), [bitmap, pa.py_buffer(raw)],
                                 null_count=int((~valid).sum()))


def sorted_in_groups(flat: pa.Array, parents: np.ndarray
                     ) -> tuple[np.ndarray | None, np.ndarray]:
    """``flat``'s values sorted within each group (``parents``: non-decreasing group ids):
    (the order as indices of ``flat``, or None where the values are enough; the sorted
    values as NumPy). Integers become one int64 key per value, group * span + value, so
    one stable sort does it (Timsort finds the groups already in order; a span too wide
    for that takes NumPy's two-key sort, slower); other numbers
    (floats) are ranked by one sort and their (group, rank) keys sorted. NaN sorts last,
    as in DuckDB. A DECIMAL sorts as its unscaled integers, and comes back as them."""
    exact = pa.types.is_integer(flat.type) or pa.types.is_decimal(flat.type)
    if exact and len(flat):
        values = _unscaled(flat) if pa.types.is_decimal(flat.type) else \
            flat.to_numpy(zero_copy_only=False)
        low, high = int(values.min()), int(values.max())
        span = high - low + 1
        if span * (int(parents[-1]) + 1) < 1 << 62 and high < 1 << 63:  # (not big uint64)
            base = parents * np.int64(span)
            key = values.astype(np.int64)   # (a copy: two arrays the size of the values)
            key -= np.int64(low)
            key += base
            key.sort(kind="stable")
            key -= base
            key += np.int64(low)
            return None, key
    if exact:  # a span too wide for one key: sorted as integers
        values = _unscaled(flat) if pa.types.is_decimal(flat.type) else \
            flat.to_numpy(zero_copy_only=False)
        order = np.lexsort((values, parents))
        return order, values[order]
    values = _np(flat if pa.types.is_float64(flat.type) else flat.cast(pa.float64()), 0.0,
                 np.float64)
    by_value = np.argsort(values, kind="stable")
    rank = np.empty(len(values), dtype=np.int64)
    rank[by_value] = np.arange(len(values), dtype=np.int64)
    base = parents * np.int64(max(len(values), 1))
    key = base + rank
    key.sort(kind="stable")
    order = by_value[key - base]
    return order, values[order]


def disc_rank(fraction: float, n: np.ndarray) -> np.ndarray:
    """The 0-based rank percentile_disc(fraction) picks among ``n`` sorted values: the
    first whose cumulative share reaches the fraction, ceil(n * p) - 1 (at least 0). DuckDB
    computes it in integers from the literal's decimal digits (0.07 of 100 values is rank
    6, where 100 * 0.07 in doubles is 7.000000000000001), so the fraction is taken back to
    its shortest decimal and the ceiling computed exactly."""
    exact = Fraction(repr(fraction))
    num, den = exact.numerator, exact.denominator
    if den <= 1 << 20 and (not len(n) or int(n.max()) < (1 << 62) // max(num, 1)):
        rank = (n * num + den - 1) // den - 1
    else:
        rank = np.ceil(fraction * n).astype(np.int64) - 1
    return np.clip(rank, 0, np.maximum(n - 1, 0))


class Percentile(Kernel):
    """median, percentile_cont(p), percentile_disc(p): see the module."""

    needs_groups = (True, True)
    #: the state is as large as the input
    two_phase = False

    def prepare(self, batch):
        value = self._value(batch)
        if pa.types.is_null(value.type):
            value = value.cast(pa.float64())
        return {f"{self.p}_x": value}

    def specs(self, phase):
        return []

    def finish(self, phase: str, result, source: pa.Table, groups: GroupIndex | None):
        assert groups is not None
        if phase == PARTIAL:
            values = _as_array(source[f"{self.p}_x"])
            if not values.null_count:  # the order by group is the same for every kernel
                order = groups.order()
                return {f"{self.p}_v": _lists(values, order, groups.gid[order],
                                              groups.groups, pa.list_(values.type))}
            gid = groups.gid
        else:
            lists = _as_array(source[f"{self.p}_v"])
            values = pc.list_flatten(lists)
            if not values.null_count:  # whole lists moved: the rows sorted, not the values
                order = groups.order()
                lengths = _np(pc.list_value_length(lists), 0, np.int64)
                counts = np.bincount(groups.gid, weights=lengths, minlength=groups.groups)
                offsets = np.zeros(groups.groups + 1, dtype=np.int64)
                np.cumsum(counts, out=offsets[1:])
                moved = pc.list_flatten(pc.take(lists, pa.array(order)))
                empty = counts == 0
                return {f"{self.p}_v": pa.ListArray.from_arrays(
                    pa.array(offsets.astype(np.int32)), moved, type=pa.list_(values.type),
                    mask=pa.array(empty) if empty.any() else None)}
            gid = groups.gid[pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)]
        rows = None
        if values.null_count:
            rows = np.flatnonzero(_np(pc.is_valid(values), False, bool))
            gid = gid[rows]
        pos = group_order(gid, groups.groups)
        return {f"{self.p}_v": _lists(values, pos if rows is None else rows[pos], gid[pos],
                                      groups.groups, pa.list_(values.type))}

    def final(self, state: pa.Table, sorted_cache: list | None = None) -> pa.Array:
        """The percentile of each state row. ``sorted_cache``, shared by the calls of one
        ``Aggregator.final``, holds the groups sorted by an earlier call: median(x) and
        percentile_cont(0.9) ... (ORDER BY x) hold equal states (their arguments are
        columns of their own, so it is the values that are compared, in linear time)."""
        lists = _as_array(state[f"{self.p}_v"])
        n = _np(pc.list_value_length(lists), 0, np.int64)
        has = n > 0
        flat = pc.list_flatten(lists)
        if not len(flat):
            return pa.array(np.zeros(len(n)), mask=~has).cast(self.call.dtype)
        found = None
        if sorted_cache is not None:  # same type, same lengths, same values (a DECIMAL's
            # unscaled integers: its scale is in the type)
            values = _unscaled(flat) if pa.types.is_decimal(flat.type) else _np(flat)
            found = next((done for kind, lengths, seen, done in sorted_cache
                          if kind.equals(flat.type) and np.array_equal(lengths, n)
                          and np.array_equal(seen, values)), None)
        if found is None:
            parents = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
            found = sorted_in_groups(flat, parents.astype(np.int64, copy=False))
            if sorted_cache is not None:
                sorted_cache.append((flat.type, n, values, found))
        order, ordered = found
        starts = np.zeros(len(n), dtype=np.int64)
        np.cumsum(n[:-1], out=starts[1:])
        last = len(ordered) - 1
        fraction = self.call.options.get("fraction", 0.5)
        dtype = self.call.dtype
        if self.call.func == "percentile_disc":
            at = np.minimum(starts + disc_rank(fraction, n), last)
            if pa.types.is_decimal(dtype):
                return _decimals(np.where(has, ordered[at], 0), has, dtype)
            if order is None:
                return pa.array(np.where(has, ordered[at], 0), mask=~has,
                                type=self.call.dtype)
            return pc.take(flat, pa.array(np.where(has, order[at], 0), mask=~has))
        # DuckDB's: RN = (n - 1) * p; lo, hi the values at its floor and ceiling ranks
        # (counted from the largest value for DESC); lo * (1 - d) + hi * d, fused
        top = np.maximum(n - 1, 0)
        rn = top.astype(np.float64) * fraction
        floor, ceil = np.floor(rn), np.ceil(rn)
        d = rn - floor
        frn, crn = floor.astype(np.int64), ceil.astype(np.int64)
        if self.call.options.get("descending"):
            frn, crn = top - frn, top - crn
        lo_at = ordered[np.minimum(starts + frn, last)]
        hi_at = ordered[np.minimum(starts + crn, last)]
        lo, hi = lo_at.astype(np.float64), hi_at.astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            if pa.types.is_float64(dtype):  # DuckDB's for DOUBLE results
                value = _double_interpolation(lo, hi, d, frn == crn)
                return from_numpy(np.where(has, value, 0.0), mask=~has)
            # its generic one (FLOAT, DECIMAL as unscaled integers): lo + (hi - lo) * d in
            # doubles, fused, then cast (a DECIMAL truncated toward zero)
            value = fused_multiply_add(hi - lo, d, lo)
            if pa.types.is_decimal(dtype):
                unscaled = np.where(frn == crn, lo_at, np.trunc(np.where(has, value, 0.0))
                                    .astype(np.int64))
                return _decimals(np.where(has, unscaled, 0), has, dtype)
            value = np.where(frn == crn, lo, value)
        return from_numpy(np.where(has, value, 0.0).astype(np.float32), mask=~has)


__all__ = ["Percentile", "disc_rank", "fused_multiply_add", "sorted_in_groups"]
