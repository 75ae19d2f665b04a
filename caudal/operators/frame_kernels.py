"""OVER aggregates over window frames of sorted rows, vectorized.

The rows are sorted by partition, then by the ORDER BY keys. A frame is a contiguous run of
a partition's rows, so each row's frame is a pair of indices ``[start, end]`` (inclusive):

* ``ROWS n PRECEDING``: ``[max(first of partition, i - n), i]``;
* ``ROWS UNBOUNDED PRECEDING``: ``[first of partition, i]``;
* ``RANGE r PRECEDING``: from the first row whose value is ``>= v[i] - r`` to the last row
  equal to ``v[i]`` (its last *peer*, as SQL says);
* no ORDER BY: the whole partition.

Aggregates are computed from *contributions*, so one kernel serves a raw row and a row that
stands for many (the running totals an event-time operator keeps for rows it has dropped):
a sum contribution ``s`` (the value, 0 for NULL), a count contribution ``c`` (1 if it counts)
and a min/max contribution ``m`` (the value, NULL if none). Sums and counts over short frames
add shifted columns (as many passes as the frame is long, so float sums are added in order);
over long frames they subtract prefix sums restarted per partition. Minima and maxima over
long frames use running extrema (unbounded frames) or a sparse table (bounded ones): never a
loop per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from caudal import compute as pc
from caudal.operators import integer_sums

#: frames at most this long are summed by shifted additions
_SHORT_FRAME = 32
_I64_MAX = np.iinfo(np.int64).max
_I64_MIN = np.iinfo(np.int64).min


@dataclass
class Bounds:
    """Each sorted row's frame ``[start, end]``, and where its partition starts."""

    start: np.ndarray
    end: np.ndarray
    group_start: np.ndarray
    #: every frame starts at its partition's first row (running totals suffice)
    unbounded: bool


def group_heads(gid: np.ndarray) -> np.ndarray:
    """True at the first row of each partition of rows sorted by partition id."""
    heads = np.ones(len(gid), dtype=bool)
    if len(gid) > 1:
        heads[1:] = gid[1:] != gid[:-1]
    return heads


def _run_last(run_start: np.ndarray) -> np.ndarray:
    """For each row, the index of the last row of its run (runs start where True)."""
    n = len(run_start)
    starts = np.flatnonzero(run_start)
    index = np.cumsum(run_start) - 1
    return np.append(starts[1:], n)[index] - 1


def frame_bounds(heads: np.ndarray, kind: str, preceding: int | None,
                 values: np.ndarray | None = None,
                 peer_start: np.ndarray | None = None) -> Bounds:
    """The frame of each row of rows sorted by partition (``heads``) then ORDER BY.

    ``values``: the int64 ORDER BY value (RANGE with an offset); ``peer_start``: True where
    a run of equal ORDER BY values starts (RANGE frames end at the last peer).
    """
    n = len(heads)
    pos = np.arange(n, dtype=np.int64)
    group_start = np.maximum.accumulate(np.where(heads, pos, 0)) if n else pos
    if kind == "partition":
        return Bounds(group_start, _run_last(heads) if n else pos, group_start, True)
    if kind == "rows":
        if preceding is None:
            return Bounds(group_start, pos, group_start, True)
        return Bounds(np.maximum(group_start, pos - preceding), pos, group_start, False)
    if peer_start is None:
        peer_start = heads.copy()
        if values is not None and n > 1:
            peer_start[1:] |= values[1:] != values[:-1]
    runs = peer_start
    end = _run_last(runs | heads) if n else pos
    if preceding is None:
        return Bounds(group_start, end, group_start, True)
    assert values is not None
    return Bounds(_range_start(heads, values, preceding), end, group_start, False)


def _range_start(heads: np.ndarray, values: np.ndarray, preceding: int) -> np.ndarray:
    """The first row of each row's partition with ``value >= value[i] - preceding`` (rows
    sorted by partition, then value): one ``searchsorted`` over (partition, value) packed in
    one int64 key when it fits, else a Polars as-of join by partition."""
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    gid = np.cumsum(heads) - 1
    low = int(values.min()) - preceding
    span = int(values.max()) - low + 1
    if span * (int(gid[-1]) + 1) < 2**62:
        key = gid * span + (values - low)
        return np.searchsorted(key, key - preceding, side="left").astype(np.int64)
    frame = pl.DataFrame({"g": gid, "v": values, "i": np.arange(n)})
    probe = pl.DataFrame({"g": gid, "v": values - preceding})
    found = probe.join_asof(frame, on="v", by="g", strategy="forward")
    return found["i"].to_numpy().astype(np.int64)


# ---- sums and counts ----------------------------------------------------------------------


def frame_sum(x: np.ndarray, bounds: Bounds, gid: np.ndarray) -> np.ndarray:
    """The sum of ``x`` over each row's frame (int64 sums wrap: FrameAggregates sums the
    halves of values that may overflow, operators.integer_sums)."""
    n = len(x)
    if n == 0:
        return x.copy()
    start, end = bounds.start, bounds.end
    longest = int((end - start).max()) + 1
    if longest <= _SHORT_FRAME:
        acc = np.zeros(n, dtype=x.dtype)
        for k in range(longest):
            idx = start + k
            ok = idx <= end
            acc += np.where(ok, x[np.minimum(idx, n - 1)], 0)
        return acc
    if x.dtype.kind in "iu":
        prefix = np.concatenate([[0], np.cumsum(x, dtype=np.int64)])
        return prefix[end + 1] - prefix[start]
    # floats: prefix sums restarted per partition keep the rounding error to the partition
    running = pl.DataFrame({"g": gid, "x": x}).select(
        pl.col("x").cum_sum().over("g"))["x"].to_numpy()
    before = np.where(start > bounds.group_start, running[np.maximum(start - 1, 0)], 0.0)
    return running[end] - before


# ---- minima and maxima --------------------------------------------------------------------


def _short_extreme(keys: np.ndarray, bounds: Bounds, longest: int, largest: bool) -> np.ndarray:
    n = len(keys)
    pick = np.maximum if largest else np.minimum
    acc = keys[bounds.start].copy()
    for k in range(1, longest):
        idx = bounds.start + k
        ok = idx <= bounds.end
        acc = np.where(ok, pick(acc, keys[np.minimum(idx, n - 1)]), acc)
    return acc


def _sparse_extreme(keys: np.ndarray, bounds: Bounds, longest: int,
                    largest: bool) -> np.ndarray:
    """Range extrema by a sparse table: level j holds the extreme of 2**j rows from each
    row, and any frame is covered by two (overlapping) blocks of one level."""
    pick = np.maximum if largest else np.minimum
    start, end = bounds.start, bounds.end
    length = end - start + 1
    level = np.zeros(len(keys), dtype=np.int64)
    while True:  # floor(log2(length)) without floating point
        grow = (np.int64(2) << level) <= length
        if not grow.any():
            break
        level += grow
    out = np.empty_like(keys)
    table = keys
    j = 0
    while True:
        rows = np.flatnonzero(level == j)
        if len(rows):
            width = 1 << j
            out[rows] = pick(table[start[rows]], table[end[rows] - width + 1])
        if (2 << j) > longest:
            break
        half = 1 << j
        table = pick(table[:-half], table[half:]) if half < len(table) else table[:0]
        j += 1
    return out


def frame_extreme(keys: np.ndarray, bounds: Bounds, gid: np.ndarray,
                  largest: bool) -> np.ndarray:
    """The min (or max, ``largest``) of ``keys`` over each row's frame; NULLs must have
    been replaced by a value that never wins."""
    n = len(keys)
    if n == 0:
        return keys.copy()
    longest = int((bounds.end - bounds.start).max()) + 1
    if longest <= _SHORT_FRAME:
        return _short_extreme(keys, bounds, longest, largest)
    if bounds.unbounded:
        expr = pl.col("k").cum_max() if largest else pl.col("k").cum_min()
        running = pl.DataFrame({"g": gid, "k": keys}).select(expr.over("g"))["k"].to_numpy()
        return running[bounds.end]
    return _sparse_extreme(keys, bounds, longest, largest)


class ExtremeKeys:
    """Values as NumPy keys whose order is SQL's: numbers as they are, other types (text,
    timestamps, decimals) as dense ranks; NULL as a key that never wins. ``decode`` turns
    the winning keys back into values of the column's type."""

    def __init__(self, values: pa.Array | pa.ChunkedArray, largest: bool):
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        self.values = values
        self.type = values.type
        valid = values.is_valid().to_numpy(zero_copy_only=False) if values.null_count \
            else None
        t = values.type
        # floats with a NaN are ranked too: NumPy's minimum would propagate NaN, which
        # DuckDB orders above every number (caudal.float_order); so are UBIGINT values,
        # which int64 keys cannot hold past 2^63
        self.ranked = not (pa.types.is_integer(t) or pa.types.is_floating(t)) or (
            pa.types.is_uint64(t)) or (
            pa.types.is_floating(t) and pc.any(pc.is_nan(values)).as_py() is True)
        if self.ranked:
            keys = pc.rank(values, sort_keys="ascending",
                           tiebreaker="dense").to_numpy().astype(np.int64)
            sentinel = _I64_MIN if largest else _I64_MAX
        elif pa.types.is_floating(t):
            keys = pc.fill_null(values.cast(pa.float64()), 0.0).to_numpy(
                zero_copy_only=False)
            sentinel = -np.inf if largest else np.inf
        else:
            keys = pc.fill_null(values.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
            sentinel = _I64_MIN if largest else _I64_MAX
        if valid is not None:
            keys = np.where(valid, keys, sentinel)
        self.keys = keys

    def decode(self, winners: np.ndarray, present: np.ndarray) -> pa.Array:
        """Values for the winning keys; NULL where ``present`` is False."""
        mask = ~present
        if not self.ranked:
            base = pa.int64() if self.keys.dtype.kind == "i" else pa.float64()
            safe = np.where(present, winners, 0).astype(self.keys.dtype)
            return pa.array(safe, base, mask=mask).cast(self.type)
        ok = (self.keys > 0) & (self.keys < _I64_MAX)
        rep = np.zeros(int(self.keys[ok].max(initial=0)) + 2, dtype=np.int64)
        rep[self.keys[ok]] = np.flatnonzero(ok)
        index = rep[np.clip(np.where(present, winners, 0), 0, len(rep) - 1)]
        taken = self.values.take(pa.array(index))
        if mask.any():
            taken = pc.if_else(pa.array(mask), pa.nulls(len(taken), self.type), taken)
        return taken


# ---- SQL aggregates over frames -----------------------------------------------------------

#: the aggregates an OVER clause computes
OVER_FUNCTIONS = ("count", "sum", "avg", "min", "max", "first_value", "last_value")
#: the value of the frame's first / last row (NULL included, as DuckDB's and SQL's default
#: RESPECT NULLS): a row standing for dropped rows carries its frame's first value
_ENDS = {"first_value": "start", "last_value": "end"}


class FrameAggregates:
    """count / sum / avg / min / max / first_value / last_value calls over frames, through
    contributions.

    ``contributions`` turns raw rows into contribution columns (``_s{i}``, ``_c{i}``,
    ``_m{i}``, ``_v{i}``: the value itself, for first_value / last_value); rows standing for many (running totals) carry the same columns with their
    totals. ``accumulate`` sums / extremes them over each row's frame, ``finalize`` makes SQL
    values of the accumulations, and ``totals`` turns accumulations into contribution rows
    again (the running totals of an unbounded frame)."""

    def __init__(self, calls: list):
        for call in calls:
            assert call.func in OVER_FUNCTIONS, call.func
        self.calls = list(calls)
        #: per call, whether an integer avg divides in long double, as DuckDB's (from the
        #: argument's type, seen by ``contributions``)
        self.long_double = [True] * len(self.calls)
        #: per call, the scale of an avg's DECIMAL argument of at most 18 digits (its
        #: unscaled integers summed exactly, operators.integer_sums.decimal_mean)
        self.scales: list[int | None] = [None] * len(self.calls)

    def contributions(self, table: pa.Table) -> dict[str, pa.Array]:
        out: dict[str, pa.Array] = {}
        n = table.num_rows
        for i, call in enumerate(self.calls):
            if not call.args:  # count(*)
                out[f"_c{i}"] = pa.array(np.ones(n, dtype=np.int64))
                continue
            x = table.column(call.args[0])
            if isinstance(x, pa.ChunkedArray):
                x = x.combine_chunks()
            out[f"_c{i}"] = pc.is_valid(x).cast(pa.int64())
            if call.func in ("sum", "avg"):
                wide = pa.int64() if pa.types.is_integer(x.type) else pa.float64()
                self.long_double[i] = integer_sums.divided_in_long_double(x.type)
                if pa.types.is_uint64(x.type):  # past 2^63: no BIGINT frame sum holds it
                    integer_sums.check_unsigned(x, call)
                scale = integer_sums.decimal_scale(x.type) if call.func == "avg" else None
                if scale is not None:
                    self.scales[i] = scale
                    x, wide = integer_sums.unscaled(x), pa.int64()
                out[f"_s{i}"] = pc.fill_null(x.cast(wide), 0)
            elif call.func in ("min", "max"):
                out[f"_m{i}"] = x
            elif call.func in _ENDS:
                out[f"_v{i}"] = x
        return out

    def accumulate(self, contrib: pa.Table, bounds: Bounds, gid: np.ndarray
                   ) -> list[dict[str, Any]]:
        """Per call: ``c`` (counts), ``s`` (sums) and ``m`` (extremes, as values) of every
        row's frame; ``contrib`` in the sorted order of ``bounds``."""
        out = []
        for i, call in enumerate(self.calls):
            acc: dict[str, Any] = {}
            c = _numpy(contrib.column(f"_c{i}"))
            acc["c"] = frame_sum(c, bounds, gid)
            if f"_s{i}" in contrib.column_names:
                column = contrib.column(f"_s{i}")
                if pa.types.is_integer(column.type) and integer_sums.may_overflow(column):
                    # int64 prefix sums wrap: frames of the two halves, exact (integer_sums)
                    hi, lo = integer_sums.halves(column)
                    acc["h"], acc["l"] = integer_sums.carry(frame_sum(hi, bounds, gid),
                                                            frame_sum(lo, bounds, gid))
                    acc["s"] = (acc["h"] << 32) | acc["l"]  # exact while within BIGINT
                    if call.func == "sum":
                        integer_sums.to_bigint(acc["h"], acc["l"], call)
                else:
                    acc["s"] = frame_sum(_numpy(column), bounds, gid)
            if f"_m{i}" in contrib.column_names:
                largest = call.func == "max"
                keys = ExtremeKeys(contrib.column(f"_m{i}"), largest)
                winners = frame_extreme(keys.keys, bounds, gid, largest)
                acc["m"] = keys.decode(winners, acc["c"] > 0)
            if f"_v{i}" in contrib.column_names:
                row = getattr(bounds, _ENDS[call.func])
                acc["v"] = contrib.column(f"_v{i}").take(pa.array(row))
            out.append(acc)
        return out

    def finalize(self, accs: list[dict[str, Any]]) -> list[pa.Array]:
        values = []
        for i, (call, acc) in enumerate(zip(self.calls, accs)):
            c = acc["c"]
            empty = c == 0
            if call.func == "count":
                v = pa.array(c, pa.int64())
            elif call.func == "sum":
                s = acc["s"]
                v = pa.array(np.where(empty, 0, s), pa.int64() if s.dtype.kind in "iu"
                             else pa.float64(), mask=empty)
            elif call.func == "avg":
                s = acc["s"]
                if self.scales[i] is not None:  # exact sums of a DECIMAL's unscaled values
                    hi, lo = (acc["h"], acc["l"]) if "h" in acc else (np.zeros_like(s), s)
                    mean = integer_sums.decimal_mean(hi, lo, c, self.scales[i],
                                                     self.long_double[i])
                elif "h" in acc:  # exact sums of integers: divided as DuckDB does
                    mean = integer_sums.mean(acc["h"], acc["l"], c, self.long_double[i])
                elif s.dtype.kind in "iu":
                    mean = integer_sums.mean(None, s, c, self.long_double[i])
                else:
                    mean = s.astype(np.float64) / np.maximum(c, 1)
                v = pa.array(mean, pa.float64(), mask=empty)
            elif call.func in _ENDS:
                v = acc["v"]
            else:
                v = acc["m"]
            values.append(v if v.type.equals(call.dtype) else v.cast(call.dtype))
        return values

    def totals(self, accs: list[dict[str, Any]], index: np.ndarray) -> dict[str, pa.Array]:
        """Contribution columns standing for the frames of the rows at ``index``."""
        out: dict[str, pa.Array] = {}
        take = pa.array(index)
        for i, acc in enumerate(accs):
            out[f"_c{i}"] = pa.array(acc["c"][index], pa.int64())
            if "s" in acc:
                if "h" in acc:  # a running total carried on must be a BIGINT
                    integer_sums.to_bigint(acc["h"][index], acc["l"][index], self.calls[i])
                out[f"_s{i}"] = pa.array(acc["s"][index])
            if "m" in acc:
                out[f"_m{i}"] = acc["m"].take(take)
            if "v" in acc:
                out[f"_v{i}"] = acc["v"].take(take)
        return out


def _numpy(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return column.to_numpy(zero_copy_only=False)
