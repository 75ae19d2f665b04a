"""Aggregate functions in three vectorized steps, so a window never re-reads raw rows:

* ``partial``: raw rows of a batch -> one *state* row per group (Acero hash aggregate);
* ``merge``: many state rows of a group (from several batches, panes or operators) -> one;
* ``final``: state -> the SQL value.

States are Arrow columns named after the aggregate (``_s{i}_…``), so a pane's state is an
Arrow table that can be concatenated, merged with ``group_by`` and snapshotted as Parquet.
Most functions are plain Acero aggregations (count, sum, min, max, all, any, distinct). The
few that Acero cannot merge (variance, first/last by event time, string_agg, DISTINCT sets)
get a ``GroupIndex`` — the group of each input row — and finish with NumPy.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from caudal import compute as pc
from caudal import float_order
from caudal.compute import from_numpy
from caudal.operators import integer_sums
from caudal.operators.keyed_tables import as_array as _as_array
from caudal.plan.aggregates import AggCall
from caudal.types import TIMESTAMP

PARTIAL, MERGE = "partial", "merge"
_SKIP = pc.ScalarAggregateOptions(skip_nulls=True, min_count=1)
_VALID = pc.CountOptions(mode="only_valid")


class GroupIndex:
    """Which output group each input row of a ``group_by`` fell in (from a ``list``
    aggregation of row numbers, which keeps the groups aligned with the other outputs)."""

    def __init__(self, rows: pa.ChunkedArray | pa.Array, n_rows: int):
        if isinstance(rows, pa.ChunkedArray):
            rows = rows.combine_chunks()
        self.groups = len(rows)
        flat = pc.list_flatten(rows).to_numpy(zero_copy_only=False)
        parents = pc.list_parent_indices(rows).to_numpy(zero_copy_only=False)
        self.gid = np.empty(n_rows, dtype=np.int64)
        self.gid[flat] = parents

    def order(self) -> np.ndarray:
        """The stable order of every row by group (``group_order``), computed once for all
        the kernels of a call that read it."""
        cached = getattr(self, "_order", None)
        if cached is None:
            cached = self._order = group_order(self.gid, self.groups)
        return cached

    @classmethod
    def encode(cls, table: pa.Table, keys: list[str]) -> tuple[GroupIndex, np.ndarray] | None:
        """Group ids by dictionary-encoding the keys (groups in order of first appearance,
        NULL a key like any other) without a hash aggregation, and the first row of each
        group; None for key types Arrow cannot dictionary-encode."""
        n = table.num_rows
        code: np.ndarray | None = None
        try:
            for key in keys:
                column = table[key].combine_chunks()
                encoded = pc.dictionary_encode(column, null_encoding="encode")
                idx = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
                if code is not None:  # (previous group, this key) -> a dense id again
                    idx = pc.dictionary_encode(pa.array(code * len(encoded.dictionary) + idx)
                                               ).indices.to_numpy().astype(np.int64)
                code = idx
        except (pa.ArrowNotImplementedError, pa.ArrowTypeError):
            return None
        if code is None:  # no keys: one group of every row
            code = np.zeros(n, dtype=np.int64)
        groups = cls.__new__(cls)
        groups.gid = code
        groups.groups = int(code.max()) + 1 if n else 0
        first = np.empty(groups.groups, dtype=np.int64)
        first[code[::-1]] = np.arange(n - 1, -1, -1, dtype=np.int64)  # the earliest wins
        return groups, first


def _np(a: pa.Array | pa.ChunkedArray, fill=0, dtype=None) -> np.ndarray:
    if isinstance(a, pa.ChunkedArray):
        a = a.combine_chunks()
    if a.null_count:
        a = pc.fill_null(a, fill)
    out = a.to_numpy(zero_copy_only=False)
    return out.astype(dtype) if dtype is not None and out.dtype != dtype else out


def _sums(gid: np.ndarray, weights: np.ndarray, groups: int) -> np.ndarray:
    """Per-group sums of float ``weights``, as float64 even over no rows (NumPy's
    ``bincount`` of no rows is an integer array, which would type a state column BIGINT)."""
    return np.bincount(gid, weights=weights, minlength=groups).astype(np.float64, copy=False)


def _merged_mean(gid: np.ndarray, groups: int, n: np.ndarray, mean: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge the means of states of ``n`` values (Chan's parallel formula): each group's
    count, mean, and each state's deviation from its group's mean (0 where ``n`` is 0).
    The mean is taken relative to a finite state mean of its group, so it is exact for a
    constant group (sum / n may miss the value by an ulp) and its deviations exactly 0;
    where that overflows (or the group has no finite mean) it is sum / n."""
    has = n > 0
    finite = has & np.isfinite(mean)
    ref = np.zeros(groups)
    ref[gid[finite]] = mean[finite]
    total = _sums(gid, n, groups)
    safe = np.where(total > 0, total, 1)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # inf, NaN
        shift = np.where(has, mean - ref[gid], 0.0)
        by_ref = ref + _sums(gid, n * shift, groups) / safe
        plain = _sums(gid, np.where(has, n * mean, 0.0), groups) / safe
        merged = np.where(total > 0, np.where(np.isfinite(by_ref), by_ref, plain), 0.0)
        dev = np.where(has, mean - merged[gid], 0.0)
    return total, merged, dev


def _pick(values: pa.Array, rows: np.ndarray, groups: np.ndarray, n_groups: int) -> pa.Array:
    """An array of ``n_groups`` holding ``values[rows[i]]`` at ``groups[i]``, null elsewhere."""
    index = np.full(n_groups, -1, dtype=np.int64)
    index[groups] = rows
    return pc.take(values, pa.array(index, mask=index < 0))


def dense_codes(key: pa.Array) -> tuple[pa.Array, np.ndarray] | None:
    """The distinct values of an integer column without NULLs (in order) and each row's
    rank among them, by direct addressing (a flag per value of the range: no hash table,
    ~5x faster than dictionary_encode); None where the range is much wider than the rows or
    the type is not such an integer (uint64: values above 2^63)."""
    n = len(key)
    if not n or key.null_count or not pa.types.is_integer(key.type) or \
            pa.types.is_uint64(key.type):
        return None
    slot = key.to_numpy(zero_copy_only=False).astype(np.int64)
    lo, hi = int(slot.min()), int(slot.max())
    if hi - lo > 4 * n + 1024:
        return None
    slot -= lo
    present = np.zeros(hi - lo + 1, dtype=bool)
    present[slot] = True
    rank = np.cumsum(present, dtype=np.int64)
    rank -= 1
    codes = rank[slot]
    used = np.flatnonzero(present)
    used += lo
    return pc.cast(from_numpy(used), key.type), codes


def group_order(g: np.ndarray, n_groups: int) -> np.ndarray:
    """The stable order of rows by group id ``g`` (< ``n_groups``): NumPy sorts 16-bit
    integers stably by radix, in linear time, so ids below 2^32 take two such passes (low
    half, then high half) instead of a comparison sort of int64s (~7x slower)."""
    if n_groups <= 1 << 16:
        return np.argsort(g.astype(np.uint16), kind="stable")
    if n_groups <= 1 << 32:
        low = np.argsort(g.astype(np.uint16), kind="stable")   # (the low 16 bits)
        high = (g >> 16).astype(np.uint16)[low]   # (gathered as 16-bit values)
        return low[np.argsort(high, kind="stable")]
    return np.argsort(g, kind="stable")


class Kernel:
    """One aggregate call. ``p`` prefixes its input and state columns."""

    #: the state columns (name suffix, type) after partial and merge
    needs_groups: tuple[bool, bool] = (False, False)
    #: whether the state is compact and merges the same whichever subtask built it, so a
    #: local stage may pre-aggregate before the shuffle (operators.local_window_partials)
    two_phase = True

    def __init__(self, call: AggCall, index: int, input_schema: pa.Schema,
                 time_column: str | None):
        self.call = call
        self.p = f"_s{index}"
        self.arg_type = input_schema.field(call.args[0]).type if call.args else None
        self.time_column = time_column

    # -- partial inputs -------------------------------------------------------------------

    def _mask(self, batch: pa.RecordBatch | pa.Table) -> pa.Array | None:
        if self.call.filter is None:
            return None
        return pc.fill_null(_as_array(batch.column(self.call.filter)), False)

    def _value(self, batch, cast: pa.DataType | None = None) -> pa.Array:
        value = _as_array(batch.column(self.call.args[0]))
        if pa.types.is_null(value.type):  # Acero has no kernels for the null type
            value = value.cast(self.call.dtype)
        if cast is not None and not value.type.equals(cast):
            value = integer_sums.as_double(value) if pa.types.is_float64(cast) else \
                value.cast(cast)
        if self.call.distinct:  # DISTINCT counts -0.0 and 0.0 once (caudal.float_order)
            value = float_order.normalize_key(value)
        mask = self._mask(batch)
        if mask is not None:
            value = pc.if_else(mask, value, pa.scalar(None, value.type))
        return value

    def prepare(self, batch) -> dict[str, pa.Array]:
        """Columns the partial step reads (arguments masked by FILTER)."""
        return {f"{self.p}_x": self._value(batch)}

    def derive(self, phase: str, table: pa.Table) -> dict[str, pa.Array]:
        """Columns computed from ``table`` (inputs in the partial step, states in the
        merge) that this kernel's ``specs`` read besides them; none for most kernels. Called
        first in each step, so it may also decide that step's ``specs`` and ``finish``."""
        return {}

    def wants_groups(self, phase: str, table: pa.Table) -> bool:
        """Whether ``finish`` needs the group of each row of ``table``: ``needs_groups``,
        or (integer sums) only when the values are large enough to overflow."""
        return self.needs_groups[0 if phase == PARTIAL else 1]

    def specs(self, phase: str) -> list[tuple]:
        raise NotImplementedError

    def finish(self, phase: str, result: pa.Table, source: pa.Table,
               groups: GroupIndex | None) -> dict[str, pa.Array]:
        raise NotImplementedError

    def final(self, state: pa.Table) -> pa.Array:
        raise NotImplementedError


class CountStar(Kernel):
    def prepare(self, batch):
        mask = self._mask(batch)
        if mask is None:
            return {}
        return {f"{self.p}_x": mask.cast(pa.int64())}

    def specs(self, phase):
        if phase == PARTIAL:
            if self.call.filter is None:
                return [([], "count_all")]
            return [(f"{self.p}_x", "sum")]
        return [(f"{self.p}_n", "sum")]

    def finish(self, phase, result, source, groups):
        if phase == PARTIAL:
            col = "count_all" if self.call.filter is None else f"{self.p}_x_sum"
        else:
            col = f"{self.p}_n_sum"
        return {f"{self.p}_n": pc.fill_null(result[col], 0)}

    def final(self, state):
        return state[f"{self.p}_n"]


class Count(Kernel):
    def specs(self, phase):
        if phase == PARTIAL:
            return [(f"{self.p}_x", "count", _VALID)]
        return [(f"{self.p}_n", "sum")]

    def finish(self, phase, result, source, groups):
        col = f"{self.p}_x_count" if phase == PARTIAL else f"{self.p}_n_sum"
        return {f"{self.p}_n": pc.fill_null(result[col], 0)}

    def final(self, state):
        return state[f"{self.p}_n"]


class Simple(Kernel):
    """sum, min, max, bool_and, bool_or: one Acero function for partial and merge alike.
    An integer sum is exact or fails (operators.integer_sums): Acero's int64 sum wraps, so
    where the values are large enough to overflow, the groups are summed exactly instead.
    A DECIMAL of more than 18 digits is summed as decimal256 (``wide``), exactly."""

    FUNCS = {"sum": "sum", "min": "min", "max": "max", "bool_and": "all", "bool_or": "any"}

    def __init__(self, call, index, input_schema, time_column):
        super().__init__(call, index, input_schema, time_column)
        self.int_sum = call.func == "sum" and pa.types.is_integer(call.dtype)
        #: a sum of a DECIMAL of 19 to 38 digits: kept as decimal256, exactly (Arrow's
        #: decimal128 sums wrap past 2^127), made DECIMAL(38, s) or an error at the end
        self.wide = call.func == "sum" and integer_sums.wide_decimal(self.arg_type)

    def prepare(self, batch):
        cast = None if self.call.func != "sum" else \
            integer_sums.wide_sum_type(self.arg_type) if self.wide else self.call.dtype
        if self.int_sum and self.arg_type is not None and pa.types.is_uint64(self.arg_type):
            value = self._value(batch)
            integer_sums.check_unsigned(value, self.call)
            value = value.cast(cast)
        else:
            value = self._value(batch, cast)
        if pa.types.is_duration(value.type):  # Acero's hash kernels take no durations
            value = value.cast(pa.int64())
        return {f"{self.p}_x": value}

    def _nan_max(self) -> bool:
        """max of REAL/DOUBLE: Acero's skips NaN, DuckDB's is NaN when a value is NaN (NaN
        sorts above every number; min needs nothing, Acero keeps NaN only over NULLs), so
        a step whose values hold a NaN also asks ``any`` of an ``is_nan`` column per group
        (``derive``; a step without NaN pays one ``is_nan`` pass)."""
        return self.call.func == "max" and float_order.is_float(self.call.dtype)

    #: whether the current step's values hold a NaN (set by ``derive``)
    _nan = False

    def _column(self, phase: str) -> str:
        return f"{self.p}_x" if phase == PARTIAL else f"{self.p}_v"

    def derive(self, phase: str, table: pa.Table) -> dict[str, pa.Array]:
        self._nan = False
        if not self._nan_max():
            return {}
        nan = pc.is_nan(table[self._column(phase)])
        if not pc.any(nan).as_py():
            return {}
        self._nan = True
        return {f"{self.p}_nan": nan}

    def wants_groups(self, phase, table):
        return self.int_sum and integer_sums.may_overflow(table[self._column(phase)])

    def specs(self, phase):
        specs = [(self._column(phase), self.FUNCS[self.call.func], _SKIP)]
        if self._nan:
            specs.append((f"{self.p}_nan", "any", _SKIP))
        return specs

    def finish(self, phase, result, source, groups):
        col = self._column(phase)
        value = result[f"{col}_{self.FUNCS[self.call.func]}"]
        if self._nan:
            nan = pc.fill_null(result[f"{self.p}_nan_any"], False)
            value = pc.if_else(nan, pa.scalar(float("nan"), value.type), value)
        if groups is not None and self.wants_groups(phase, source):
            exact = integer_sums.to_bigint(
                *integer_sums.group_halves(source[col], groups.gid, groups.groups), self.call)
            value = pa.array(exact, mask=_np(pc.is_null(value), True, bool))
        return {f"{self.p}_v": value}

    def final(self, state):
        value = state[f"{self.p}_v"]
        if self.wide:
            return integer_sums.wide_sum(value, self.call)
        if pa.types.is_duration(self.call.dtype):
            value = value.cast(self.call.dtype)
        return value


class Avg(Kernel):
    """avg: the state is a sum and a count. Of integers, the sum is exact (DuckDB sums them
    into a HUGEINT, then divides): two int64 halves ``_h * 2^32 + _l`` (operators.
    integer_sums), so an average never fails however large its sum grows. Of a DECIMAL of
    more than 18 digits, ``_s`` is its exact sum as a wide decimal (integer_sums.wide_sum)."""

    def __init__(self, call, index, input_schema, time_column):
        super().__init__(call, index, input_schema, time_column)
        #: the scale of a DECIMAL argument of at most 18 digits, whose unscaled integers
        #: are summed exactly (as DuckDB sums a DECIMAL's), then divided as DuckDB does
        self.scale = integer_sums.decimal_scale(self.arg_type)
        self.exact = self.arg_type is not None and pa.types.is_integer(self.arg_type) or \
            self.scale is not None
        #: a DECIMAL of 19 to 38 digits: summed exactly as decimal256 (integer_sums)
        self.wide = integer_sums.wide_decimal(self.arg_type)

    #: whether the current merge's high halves are all 0 (set by ``derive``): the common
    #: case (sums within int64), whose merge sums two columns, not three
    _low_only = False

    def prepare(self, batch):
        if self.scale is not None:
            return {f"{self.p}_x": integer_sums.unscaled(self._value(batch))}
        if self.wide:
            return {f"{self.p}_x": self._value(batch, integer_sums.wide_sum_type(self.arg_type))}
        return {f"{self.p}_x": self._value(batch, None if self.exact else pa.float64())}

    def derive(self, phase, table):
        if self.exact and phase == MERGE:
            high = table[f"{self.p}_h"]
            extremes = pc.min_max(high)
            self._low_only = not high.null_count and extremes["min"].as_py() == 0 and \
                extremes["max"].as_py() == 0
        return {}

    def wants_groups(self, phase, table):
        if not self.exact:
            return False
        if phase == PARTIAL:
            return integer_sums.may_overflow(table[f"{self.p}_x"])
        return not self._low_only and integer_sums.may_overflow(table[f"{self.p}_h"]) or \
            integer_sums.may_overflow(table[f"{self.p}_l"])

    def specs(self, phase):
        p = self.p
        if phase == PARTIAL:
            return [(f"{p}_x", "sum", _SKIP), (f"{p}_x", "count", _VALID)]
        if self.exact:
            low = [(f"{p}_l", "sum", _SKIP), (f"{p}_n", "sum")]
            return low if self._low_only else [(f"{p}_h", "sum", _SKIP)] + low
        return [(f"{p}_s", "sum", _SKIP), (f"{p}_n", "sum")]

    def finish(self, phase, result, source, groups):
        p = self.p
        if phase == PARTIAL:
            n = pc.fill_null(result[f"{p}_x_count"], 0)
            if not self.exact:
                return {f"{p}_s": result[f"{p}_x_sum"], f"{p}_n": n}
            if groups is not None and self.wants_groups(phase, source):
                hi, lo = integer_sums.group_halves(source[f"{p}_x"], groups.gid, groups.groups)
                return {f"{p}_h": pa.array(hi), f"{p}_l": pa.array(lo), f"{p}_n": n}
            # exact int64 sums: the pair (0, sum) (``lo`` need not be within 2^32: the
            # merge's bound sees large ones and sums their halves)
            total = result[f"{p}_x_sum"]
            if total.null_count:
                total = pc.fill_null(total, 0)
            if not total.type.equals(pa.int64()):  # sums of uint64 (below 2^63 here)
                total = pc.cast(total, pa.int64())
            return {f"{p}_h": pa.array(np.zeros(len(total), np.int64)), f"{p}_l": total,
                    f"{p}_n": n}
        n = pc.fill_null(result[f"{p}_n_sum"], 0)
        if not self.exact:
            return {f"{p}_s": result[f"{p}_s_sum"], f"{p}_n": n}
        if groups is not None and self.wants_groups(phase, source):
            # sums of the halves of both: the high one leaves BIGINT past 2^95 only
            hi = integer_sums.to_bigint(*integer_sums.group_halves(
                source[f"{p}_h"], groups.gid, groups.groups), self.call)
            lo_hi, lo = integer_sums.group_halves(source[f"{p}_l"], groups.gid, groups.groups)
            hi, lo = integer_sums.carry(hi + lo_hi, lo)
            return {f"{p}_h": pa.array(hi), f"{p}_l": pa.array(lo), f"{p}_n": n}
        # exact int64 sums of both (the bound held): ``lo`` may grow past 2^32, until the
        # bound sees it large enough to overflow and the halves' path carries it
        lo = result[f"{p}_l_sum"]
        hi = pa.array(np.zeros(len(lo), np.int64)) if self._low_only else result[f"{p}_h_sum"]
        return {f"{p}_h": hi, f"{p}_l": lo, f"{p}_n": n}

    def final(self, state):
        n = state[f"{self.p}_n"]
        if self.scale is not None:
            count = _np(n, 0, np.int64)
            value = integer_sums.decimal_mean(_np(state[f"{self.p}_h"], 0, np.int64),
                                              _np(state[f"{self.p}_l"], 0, np.int64), count,
                                              self.scale,
                                              integer_sums.divided_in_long_double(self.arg_type),
                                              self.call.options.get("finish") == "ungrouped")
            return pa.array(value, mask=count == 0)
        if self.wide:
            count = _np(n, 0, np.int64)
            value = integer_sums.wide_mean(state[f"{self.p}_s"], count, self.call,
                                           self.call.options.get("finish") == "ungrouped")
            return pa.array(value, mask=count == 0)
        if self.exact:
            long_double = integer_sums.divided_in_long_double(self.arg_type)
            hi, lo = state[f"{self.p}_h"], state[f"{self.p}_l"]
            quick = integer_sums.quick_mean(hi, lo, n, long_double)
            if quick is not None:
                return quick
            count = _np(n, 0, np.int64)
            value = integer_sums.mean(_np(hi, 0, np.int64), _np(lo, 0, np.int64), count,
                                      long_double)
            return pa.array(value, mask=count == 0)
        return pc.if_else(pc.greater(n, 0), pc.divide(state[f"{self.p}_s"], n.cast(pa.float64())),
                          pa.scalar(None, pa.float64()))


class Variance(Kernel):
    """var_pop, var_samp, stddev_pop, stddev_samp: state (n, mean, m2), merged with Chan's
    parallel formula (numerically stable, unlike sums of squares). A row is a state of
    n = 1, so the partial step is the merge of its rows (``_merged_mean``: a constant
    group's m2 is exactly 0, as DuckDB's; Arrow's variance gave 1e-34 for three 0.1s)."""

    needs_groups = (True, True)

    def prepare(self, batch):
        return {f"{self.p}_x": self._value(batch, pa.float64())}

    def specs(self, phase):
        return []

    def finish(self, phase, result, source, groups):
        p, gid, g = self.p, groups.gid, groups.groups
        if phase == PARTIAL:
            rows = np.flatnonzero(_np(pc.is_valid(source[f"{p}_x"]), False, bool))
            gid = gid[rows]
            mean = _np(source[f"{p}_x"], 0.0, np.float64)[rows]
            n, m2 = np.ones(len(rows)), np.zeros(len(rows))
        else:
            n = _np(source[f"{p}_n"], 0, np.float64)
            mean = _np(source[f"{p}_mean"], 0.0, np.float64)
            m2 = _np(source[f"{p}_m2"], 0.0, np.float64)
        total, merged_mean, dev = _merged_mean(gid, g, n, mean)
        with np.errstate(invalid="ignore", over="ignore"):  # inf, NaN
            merged_m2 = _sums(gid, np.where(n > 0, m2, 0.0) + n * dev * dev, g)
        return {f"{p}_n": pa.array(total.astype(np.int64)), f"{p}_mean": pa.array(merged_mean),
                f"{p}_m2": pa.array(merged_m2)}

    def final(self, state):
        n = _np(state[f"{self.p}_n"], 0, np.float64)
        m2 = _np(state[f"{self.p}_m2"], 0.0, np.float64)
        samp = self.call.func.endswith("_samp")
        denom = n - 1 if samp else n
        ok = denom > 0
        # one value has no deviation, as in DuckDB, even a NaN or an infinity
        m2 = np.where(n > 1, m2, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            var = np.where(ok, np.maximum(m2, 0.0) / np.where(ok, denom, 1), 0.0)
        if self.call.func.startswith("stddev"):
            var = np.sqrt(var)
        return pa.array(var, mask=~ok)


class FirstLast(Kernel):
    """first_value / last_value by event time (ties: first / last to arrive); nulls are
    skipped. State: the chosen value and its event time."""

    needs_groups = (True, True)
    #: ties are broken by arrival order, which a shuffle of partial states does not keep
    two_phase = False

    def prepare(self, batch):
        value = self._value(batch)
        ts = _as_array(batch.column(self.time_column))
        if ts.type != pa.int64():
            ts = ts.cast(pa.int64())
        ts = pc.if_else(pc.is_valid(value), ts, pa.scalar(None, pa.int64()))
        return {f"{self.p}_x": value, f"{self.p}_xt": ts}

    def specs(self, phase):
        fn = "min" if self.call.func == "first_value" else "max"
        t = f"{self.p}_xt" if phase == PARTIAL else f"{self.p}_t"
        return [(t, fn, _SKIP)]

    def finish(self, phase, result, source, groups):
        fn = "min" if self.call.func == "first_value" else "max"
        if phase == PARTIAL:
            v_col, t_col = f"{self.p}_x", f"{self.p}_xt"
        else:
            v_col, t_col = f"{self.p}_v", f"{self.p}_t"
        best = result[f"{t_col}_{fn}"]
        values = _as_array(source[v_col])
        ts_all = source[t_col]
        valid = _np(pc.is_valid(ts_all), False, bool)
        ts = _np(ts_all, 0, np.int64)
        best_np = _np(best, 0, np.int64)
        cand = np.nonzero(valid & (ts == best_np[groups.gid]))[0]
        g = groups.gid[cand]
        if self.call.func == "first_value":
            uniq, pos = np.unique(g, return_index=True)
        else:  # the last arrival among ties
            uniq, pos = np.unique(g[::-1], return_index=True)
            pos = len(g) - 1 - pos
        picked = _pick(values, cand[pos], uniq, groups.groups)
        return {f"{self.p}_v": picked, f"{self.p}_t": _as_array(best)}

    def final(self, state):
        return state[f"{self.p}_v"]


class StringAgg(Kernel):
    """string_agg(x, sep): non-null values joined in arrival order; partial states are
    joined the same way (so merge is associative)."""

    needs_groups = (True, True)
    #: the state grows with the input (and arrival order matters)
    two_phase = False

    def specs(self, phase):
        return []

    def finish(self, phase, result, source, groups):
        col = f"{self.p}_x" if phase == PARTIAL else f"{self.p}_v"
        values = _as_array(source[col])
        sep = self.call.options.get("separator", ",")
        valid = _np(pc.is_valid(values), False, bool)
        idx = np.nonzero(valid)[0]
        g = groups.gid[idx]
        order = idx[group_order(g, groups.groups)]
        counts = np.bincount(g, minlength=groups.groups)
        offsets = np.zeros(groups.groups + 1, dtype=np.int32)
        np.cumsum(counts, out=offsets[1:])
        lists = pa.ListArray.from_arrays(pa.array(offsets), pc.take(values, pa.array(order)))
        joined = pc.binary_join(lists, sep)
        joined = pc.if_else(pa.array(counts > 0), joined, pa.scalar(None, pa.string()))
        return {f"{self.p}_v": joined}

    def final(self, state):
        return state[f"{self.p}_v"]


def _lists(values: pa.Array, order: np.ndarray, groups_of_order: np.ndarray, n_groups: int,
           list_type: pa.DataType) -> pa.Array:
    """One list per group: ``values`` taken in ``order`` (sorted by group), cut at the group
    boundaries; a group with no value gets NULL."""
    counts = np.bincount(groups_of_order, minlength=n_groups)
    offsets = np.zeros(n_groups + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    empty = counts == 0
    # the validity as a mask, not an if_else over the lists (Arrow copies nested arrays)
    return pa.ListArray.from_arrays(pa.array(offsets), pc.take(values, pa.array(order)),
                                    type=list_type,
                                    mask=pa.array(empty) if empty.any() else None)


class ArrayAgg(Kernel):
    """array_agg(x [ORDER BY k]): every value, NULLs included, in arrival order or by the
    ORDER BY key (ties in arrival order); NULL when no row was aggregated. With ORDER BY
    the state keeps the keys beside the values, so states merge by re-sorting.

    A subclass may list several arguments at once (``listed``): their lists are cut with
    one order, so the j-th values of a group's lists come from the same input row (the
    state of a group UDAF, operators.udaf_kernel)."""

    needs_groups = (True, True)
    #: the state grows with the input (and arrival order matters)
    two_phase = False
    #: how many leading arguments are listed; an argument after them is the ORDER BY key
    listed = 1

    def _names(self, stem: str) -> list[str]:
        """The column of each listed argument (``_v`` for the first, as array_agg's)."""
        return [f"{self.p}_{stem}{j or ''}" for j in range(self.listed)]

    def list_type(self, values: pa.Array) -> pa.DataType:
        return self.call.dtype

    def prepare(self, batch):
        cols = {}
        for name, arg in zip(self._names("x"), self.call.args):
            value = _as_array(batch.column(arg))
            if pa.types.is_null(value.type) and pa.types.is_list(self.call.dtype):
                value = value.cast(self.call.dtype.value_type)
            cols[name] = value
        if len(self.call.args) > self.listed:
            cols[f"{self.p}_xk"] = _as_array(batch.column(self.call.args[self.listed]))
        mask = self._mask(batch)
        if mask is not None:
            cols[f"{self.p}_xf"] = mask
        return cols

    def specs(self, phase):
        return []

    def finish(self, phase, result, source, groups):
        p, ordered = self.p, len(self.call.args) > self.listed
        if phase == PARTIAL:
            columns = [_as_array(source[name]) for name in self._names("x")]
            keys = _as_array(source[f"{p}_xk"]) if ordered else None
            gid = groups.gid
            if f"{p}_xf" in source.column_names:
                rows = np.nonzero(_np(source[f"{p}_xf"], False, bool))[0]
            else:
                rows = np.arange(len(columns[0]))
        else:
            lists = [_as_array(source[name]) for name in self._names("v")]
            columns = [pc.list_flatten(a) for a in lists]
            keys = pc.list_flatten(_as_array(source[f"{p}_k"])) if ordered else None
            gid = groups.gid[pc.list_parent_indices(lists[0]).to_numpy(zero_copy_only=False)]
            rows = np.arange(len(columns[0]))
        g = gid[rows]
        if ordered:
            desc = self.call.options.get("descending", False)
            nulls_first = self.call.options.get("nulls_first", desc)
            k = keys.take(pa.array(rows))
            table = pa.table({"g": pa.array(g), "k": k, "i": pa.array(np.arange(len(rows)))})
            placed = "at_start" if nulls_first else "at_end"
            nan = float_order.sort_nan_key(k, desc)  # NaN above every number
            if nan is not None:
                table = table.append_column("n", nan[0])
            sorted_at = pc.sort_indices(table, sort_keys=[
                ("g", "ascending", "at_end"),
                *([("n", nan[1], placed)] if nan is not None else []),
                ("k", "descending" if desc else "ascending", placed),
                ("i", "ascending", "at_end")])
            pos = sorted_at.to_numpy(zero_copy_only=False)
        else:
            pos = group_order(g, groups.groups)
        order = rows[pos]
        out = {name: _lists(values, order, g[pos], groups.groups, self.list_type(values))
               for name, values in zip(self._names("v"), columns)}
        if ordered:
            out[f"{p}_k"] = _lists(keys, order, g[pos], groups.groups, pa.list_(keys.type))
        return out

    def final(self, state):
        return state[f"{self.p}_v"]


class BitAgg(Kernel):
    """bit_and, bit_or, bit_xor of the non-NULL integers of a group (NULL when there are
    none); the state is one integer, so partial states merge the same way."""

    needs_groups = (True, True)
    _OPS = {"bit_and": np.bitwise_and, "bit_or": np.bitwise_or, "bit_xor": np.bitwise_xor}

    def specs(self, phase):
        return []

    def finish(self, phase, result, source, groups):
        values = _as_array(source[f"{self.p}_x" if phase == PARTIAL else f"{self.p}_v"])
        valid = _np(pc.is_valid(values), False, bool)
        rows = np.nonzero(valid)[0]
        g = groups.gid[rows]
        pos = np.argsort(g, kind="stable")
        dtype = np.dtype(self.call.dtype.to_pandas_dtype())  # unsigned stays unsigned
        g, v = g[pos], _np(values.cast(self.call.dtype), 0, dtype)[rows[pos]]
        out = np.zeros(groups.groups, dtype=dtype)
        has = np.zeros(groups.groups, dtype=bool)
        if len(g):
            starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
            out[g[starts]] = self._OPS[self.call.func].reduceat(v, starts)
            has[g[starts]] = True
        return {f"{self.p}_v": pa.array(out, mask=~has, type=self.call.dtype)}

    def final(self, state):
        return state[f"{self.p}_v"]


def _distinct_pairs(g: np.ndarray, values: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """The distinct (group, value) pairs, sorted by group. Values are coded as integers
    (themselves, or dictionary codes) and each pair as one int64, so one sort of int64s does
    the work; a two-column ``group_by`` when the codes would overflow."""
    if len(values) == 0:
        return g[:0], values
    t = values.type
    if pa.types.is_integer(t) or pa.types.is_temporal(t):
        # the values' bits as a signed integer of their width (dates, times and unsigned
        # values past 2^63 have no cast to int64), widened: equal codes, equal values
        signed = pa.int32() if t.bit_width == 32 else pa.int64() if t.bit_width == 64 \
            else None
        raw = values.view(signed) if signed is not None and not signed.equals(t) else values
        codes = raw.cast(pa.int64()).to_numpy(zero_copy_only=False)
        low = int(codes.min())
        span = int(codes.max()) - low + 1
        dictionary = None
    else:
        encoded = pc.dictionary_encode(values)
        codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        low, span, dictionary = 0, len(encoded.dictionary), encoded.dictionary
    if span * (int(g.max()) + 1) < 2**62:
        pairs = np.sort(g * span + (codes - low))
        keep = np.ones(len(pairs), dtype=bool)
        keep[1:] = pairs[1:] != pairs[:-1]
        pairs = pairs[keep]
        pg, code = np.divmod(pairs, span)
        if dictionary is not None:
            return pg, dictionary.take(pa.array(code))
        out = pa.array(code + low, pa.int64()).cast(raw.type)
        return pg, (out.view(t) if not out.type.equals(t) else out)
    table = pa.table({"g": pa.array(g), "v": values}).group_by(
        ["g", "v"], use_threads=False).aggregate([])
    order = np.argsort(table["g"].to_numpy(), kind="stable")
    return table["g"].to_numpy()[order], table["v"].combine_chunks().take(pa.array(order))


class Distinct(Kernel):
    """count/sum/avg(DISTINCT x) and approx_count_distinct (computed exactly): the state is
    the list of distinct non-null values of the group."""

    needs_groups = (False, True)
    #: the state is as large as the distinct values: nothing saved by pre-aggregating
    two_phase = False

    def specs(self, phase):
        if phase == PARTIAL:
            return [(f"{self.p}_x", "distinct", _VALID)]
        return []

    def finish(self, phase, result, source, groups):
        if phase == PARTIAL:
            return {f"{self.p}_set": _as_array(result[f"{self.p}_x_distinct"])}
        lists = _as_array(source[f"{self.p}_set"])
        flat = pc.list_flatten(lists)
        parents = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
        pg, values = _distinct_pairs(groups.gid[parents], flat)
        counts = np.bincount(pg, minlength=groups.groups)
        offsets = np.zeros(groups.groups + 1, dtype=np.int32)
        np.cumsum(counts, out=offsets[1:])
        return {f"{self.p}_set": pa.ListArray.from_arrays(pa.array(offsets), values,
                                                          type=lists.type)}

    def final(self, state):
        lists = _as_array(state[f"{self.p}_set"])
        func = self.call.func
        if func in ("count", "approx_count_distinct"):
            return pc.list_value_length(lists).cast(pa.int64())
        parents = pc.list_parent_indices(lists)
        flat = pc.list_flatten(lists)
        if pa.types.is_integer(flat.type):  # exact, or an overflow error (integer_sums)
            return self._integer_final(lists, parents, flat)
        scale = integer_sums.decimal_scale(flat.type)
        if func == "avg" and scale is not None:  # exact, divided as DuckDB does
            n = _np(pc.list_value_length(lists), 0, np.int64)
            hi, lo = integer_sums.group_halves(integer_sums.unscaled(flat),
                                               parents.to_numpy(zero_copy_only=False),
                                               len(lists))
            return pa.array(integer_sums.decimal_mean(
                hi, lo, n, scale, integer_sums.divided_in_long_double(flat.type)), mask=n == 0)
        wide = integer_sums.wide_decimal(flat.type)  # summed exactly as decimal256
        target = integer_sums.wide_sum_type(flat.type) if wide else \
            pa.float64() if func == "avg" else self.call.dtype
        sums = pa.table({"g": parents, "v": flat.cast(target)}).group_by(
            "g", use_threads=False).aggregate([("v", "sum")])
        total = _pick(sums["v_sum"].combine_chunks(), np.arange(sums.num_rows),
                      sums["g"].to_numpy(), len(lists))
        if wide and func == "avg":
            n = _np(pc.list_value_length(lists), 0, np.int64)
            return pa.array(integer_sums.wide_mean(total, n, self.call), mask=n == 0)
        if func == "sum":
            return integer_sums.wide_sum(total, self.call) if wide else total
        n = pc.list_value_length(lists).cast(pa.float64())
        return pc.if_else(pc.greater(n, 0), pc.divide(total, n), pa.scalar(None, pa.float64()))

    def _integer_final(self, lists: pa.Array, parents: pa.Array, flat: pa.Array) -> pa.Array:
        """sum / avg of the distinct integers of each group, summed exactly."""
        n = _np(pc.list_value_length(lists), 0, np.int64)
        gid = parents.to_numpy(zero_copy_only=False)
        hi, lo = integer_sums.group_halves(flat, gid, len(lists))
        empty = n == 0
        if self.call.func == "avg":
            return pa.array(integer_sums.mean(
                hi, lo, n, integer_sums.divided_in_long_double(self.arg_type)), mask=empty)
        return pa.array(integer_sums.to_bigint(hi, lo, self.call), mask=empty)


class CoMoments(Kernel):
    """corr, covar_pop/samp and the regr_* aggregates of (y, x) over the rows where both
    are non-NULL. The state is (n, mean x, mean y, m2 x, m2 y, co-moment), merged with Chan's
    pairwise formulas, which stay accurate where sums of squares and products cancel (x a
    Unix time in seconds, y small): a row is a state of n = 1."""

    needs_groups = (True, True)
    STATE = ("n", "mx", "my", "sxx", "syy", "sxy")

    def prepare(self, batch):
        y = integer_sums.as_double(_as_array(batch.column(self.call.args[0])))
        x = integer_sums.as_double(_as_array(batch.column(self.call.args[1])))
        both = pc.and_(pc.is_valid(y), pc.is_valid(x))
        mask = self._mask(batch)
        if mask is not None:
            both = pc.and_(both, mask)
        return {f"{self.p}_y": y, f"{self.p}_x": x, f"{self.p}_ok": both}

    def specs(self, phase):
        return []

    def finish(self, phase, result, source, groups):
        p, gid, g = self.p, groups.gid, groups.groups
        if phase == PARTIAL:
            rows = np.flatnonzero(_np(source[f"{p}_ok"], False, bool))
            gid = gid[rows]
            n = np.ones(len(rows))
            mx, my = _np(source[f"{p}_x"], 0.0, np.float64)[rows], \
                _np(source[f"{p}_y"], 0.0, np.float64)[rows]
            sxx = syy = sxy = np.zeros(len(rows))
        else:
            n, mx, my, sxx, syy, sxy = (_np(source[f"{p}_{s}"], 0.0, np.float64)
                                        for s in self.STATE)
        total, mean_x, dx = _merged_mean(gid, g, n, mx)
        _, mean_y, dy = _merged_mean(gid, g, n, my)
        has = n > 0
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: NaN, as DuckDB's
            out = {"n": total.astype(np.int64), "mx": mean_x, "my": mean_y,
                   "sxx": _sums(gid, np.where(has, sxx, 0.0) + n * dx * dx, g),
                   "syy": _sums(gid, np.where(has, syy, 0.0) + n * dy * dy, g),
                   "sxy": _sums(gid, np.where(has, sxy, 0.0) + n * dx * dy, g)}
        return {f"{p}_{s}": pa.array(v) for s, v in out.items()}

    def final(self, state):
        p, func = self.p, self.call.func
        n = _np(state[f"{p}_n"], 0, np.float64)
        mx, my, sxx, syy, sxy = (_np(state[f"{p}_{s}"], 0.0, np.float64)
                                 for s in self.STATE[1:])
        if func == "regr_count":
            return pa.array(n.astype(np.int64))
        # DuckDB's definitions: one pair has no deviation (even a NaN or an infinity), the
        # population (co)variances divide by n, and a constant x or y divides by zero
        sxx, syy = np.where(n > 1, sxx, 0.0), np.where(n > 1, syy, 0.0)
        some = n > 0
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            cov, var_x, var_y = sxy / n, sxx / n, syy / n
            if func == "covar_pop":
                value, ok = cov, some
            elif func == "covar_samp":
                value, ok = sxy / (n - 1), n > 1
            elif func in ("corr", "regr_r2"):
                corr = cov / (np.sqrt(var_x) * np.sqrt(var_y))  # NaN where x or y is constant
                if func == "corr":
                    value, ok = corr, some
                else:  # NULL when x is constant, 1 when y is (x not)
                    value, ok = np.where(var_y == 0, 1.0, corr * corr), some & (var_x != 0)
            elif func == "regr_slope":
                value, ok = cov / var_x, some  # NaN where x is constant
            elif func == "regr_intercept":
                slope = cov / var_x
                value, ok = my - slope * mx, some & ~np.isnan(slope)
            else:  # regr_avgx, regr_avgy, regr_sxx, regr_syy, regr_sxy
                value = {"regr_avgx": mx, "regr_avgy": my, "regr_sxx": sxx,
                         "regr_syy": syy, "regr_sxy": sxy}[func]
                ok = some
        return pa.array(np.where(ok, value, 0.0), mask=~ok)


__all__ = ["GroupIndex", "Kernel", "PARTIAL", "MERGE", "TIMESTAMP", "group_order"]
