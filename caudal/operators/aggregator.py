"""Which kernel computes each aggregate call (a built-in of ``aggregate_kernels`` or a Python
UDAF's of ``udaf_kernel``), and the ``Aggregator`` that runs a query's calls together: the
one place the operators (window, session, updating and local pre-aggregation) get kernels
from, so that the kernel modules need not know each other."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from caudal import compute as pc
from caudal.operators.aggregate_kernels import (
    MERGE,
    PARTIAL,
    ArrayAgg,
    Avg,
    BitAgg,
    CoMoments,
    Count,
    CountStar,
    Distinct,
    FirstLast,
    GroupIndex,
    Kernel,
    Simple,
    StringAgg,
    Variance,
)
from caudal.operators.keyed_tables import as_array, from_numpy
from caudal.operators.percentile_kernel import Percentile
from caudal.operators.udaf_kernel import GroupUdafKernel, UdafKernel
from caudal.plan.aggregates import PAIR_STATISTICS, PERCENTILES, AggCall

#: the column of row numbers a group-by lists for kernels that read group ids (Python UDAFs)
_ROW = "__row"


def make_kernel(call: AggCall, index: int, input_schema: pa.Schema,
                time_column: str | None) -> Kernel:
    func = call.func
    if func == "udaf":  # a Python UDAF (plan.python_udaf)
        from caudal.plan.python_udaf import GroupUdaf

        kind = GroupUdafKernel if isinstance(call.options["udaf"], GroupUdaf) else UdafKernel
        return kind(call, index, input_schema, time_column)
    if call.distinct and func in ("count", "sum", "avg") or func == "approx_count_distinct":
        if not call.args:
            raise ValueError("DISTINCT needs an argument")
        return Distinct(call, index, input_schema, time_column)
    if func == "count":
        cls = Count if call.args else CountStar
    elif func in Simple.FUNCS:
        cls = Simple
    elif func == "avg":
        cls = Avg
    elif func in ("var_pop", "var_samp", "stddev_pop", "stddev_samp"):
        cls = Variance
    elif func in ("first_value", "last_value"):
        cls = FirstLast
    elif func == "string_agg":
        cls = StringAgg
    elif func == "array_agg":
        cls = ArrayAgg
    elif func in BitAgg._OPS:
        cls = BitAgg
    elif func in PAIR_STATISTICS:
        cls = CoMoments
    elif func in PERCENTILES:
        cls = Percentile
    else:
        raise ValueError(f"no kernel for aggregate {func}")
    return cls(call, index, input_schema, time_column)


class Aggregator:
    """Runs the partial and merge steps of a list of kernels over one ``group_by``."""

    def __init__(self, calls: Sequence[AggCall], input_schema: pa.Schema,
                 time_column: str | None):
        self.kernels = [make_kernel(c, i, input_schema, time_column)
                        for i, c in enumerate(calls)]

    def prepare(self, batch) -> dict[str, pa.Array]:
        cols: dict[str, pa.Array] = {}
        for k in self.kernels:
            cols.update(k.prepare(batch))
        return cols

    def _run(self, phase: str, table: pa.Table, keys: list[str]) -> pa.Table:
        for k in self.kernels:  # before specs: what a kernel derives may change its specs
            for name, column in k.derive(phase, table).items():
                table = table.append_column(name, column)
        specs: list[tuple] = []
        seen: set[str] = set()
        for k in self.kernels:
            for spec in k.specs(phase):
                name = "count_all" if spec[1] == "count_all" else f"{spec[0]}_{spec[1]}"
                if name not in seen:
                    seen.add(name)
                    specs.append(spec)
        need = any(k.wants_groups(phase, table) for k in self.kernels)
        if need and not specs:  # only kernels that read group ids (Python UDAFs)
            dense = GroupIndex.encode(table, keys)
            if dense is not None:
                groups, first = dense
                out = {key: table[key].take(pa.array(first)) for key in keys}
                for k in self.kernels:
                    out.update(k.finish(phase, None, table, groups))
                return pa.table(out)
        if not need:
            dense = self._dense_run(specs, table, keys)
            if dense is not None:
                out = {key: dense[key] for key in keys}
                for k in self.kernels:
                    out.update(k.finish(phase, dense, table, None))
                return pa.table(out)
        grouped = table
        if need:
            grouped = table.append_column(_ROW, pa.array(np.arange(table.num_rows)))
            specs.append((_ROW, "list"))
        result = grouped.group_by(keys, use_threads=False).aggregate(specs)
        groups = GroupIndex(result[f"{_ROW}_list"], table.num_rows) if need else None
        out = {key: result[key] for key in keys}
        for k in self.kernels:
            out.update(k.finish(phase, result, table, groups))
        return pa.table(out)

    def _dense_run(self, specs: list[tuple], table: pa.Table, keys: list[str]
                   ) -> pa.Table | None:
        """The ``group_by`` of ``specs`` in NumPy, or None where it does not apply. It
        applies to one integer key without NULLs whose values span a range not much wider
        than the batch (an auction id in a batch of bids, a pane, a row number), and to
        count(*), count, min and max (and the merge of counts) over integers without NULLs
        (not uint64: its values above 2^63 do not fit the int64 slots):
        a group is a slot of the range, so one ``bincount`` or ``maximum.at`` per aggregate
        replaces a hash table built per call. The groups come out in key order."""
        if len(keys) != 1 or not all(isinstance(k, (CountStar, Count)) or (
                isinstance(k, Simple) and k.call.func in ("min", "max")) for k in self.kernels):
            return None
        if any(isinstance(k, CountStar) and k.call.filter is not None for k in self.kernels):
            return None
        n = table.num_rows
        key = as_array(table.column(keys[0]))
        if n == 0 or not _dense_integer(key.type) or key.null_count:
            return None
        inputs = [table.column(c) for c, *_ in specs if c != []]
        if any(not _dense_integer(c.type) or c.null_count for c in inputs):
            return None
        k = key.to_numpy().astype(np.int64, copy=False)
        lo, hi = int(k.min()), int(k.max())
        if hi - lo > 4 * n + 1024:
            return None
        slot = k - lo
        counts = np.bincount(slot, minlength=hi - lo + 1)
        used = np.flatnonzero(counts)
        out: dict[str, pa.Array] = {keys[0]: pc.cast(from_numpy(used + lo), key.type)}
        for spec in specs:
            column, func = spec[0], spec[1]
            if func == "count_all" or func == "count":
                name = "count_all" if func == "count_all" else f"{column}_count"
                out[name] = from_numpy(counts[used].astype(np.int64, copy=False))
                continue
            col = as_array(table.column(column))
            values = col.to_numpy().astype(np.int64, copy=False)
            if func == "sum":
                total = np.zeros(hi - lo + 1, dtype=np.int64)  # of counts: no overflow
                np.add.at(total, slot, values)
                out[f"{column}_sum"] = from_numpy(total[used])
                continue
            ufunc, start = ((np.maximum, np.iinfo(np.int64).min) if func == "max"
                            else (np.minimum, np.iinfo(np.int64).max))
            acc = np.full(hi - lo + 1, start, dtype=np.int64)
            ufunc.at(acc, slot, values)
            out[f"{column}_{func}"] = pc.cast(from_numpy(acc[used]), col.type)
        return pa.table(out)

    def dense_partials(self, keys: list[str], input_schema: pa.Schema,
                       companions: bool = False) -> DensePartials | None:
        """A ``DensePartials`` for these kernels grouped by ``keys``, or None where it does
        not apply (see there). With ``companions``, keys after the first (integers too) may
        come along as its companions."""
        if not keys or (len(keys) > 1 and not companions) or any(
                k not in input_schema.names or not _dense_integer(input_schema.field(k).type)
                for k in keys):
            return None
        for k in self.kernels:
            if k.call.filter is not None:
                return None
            if isinstance(k, (CountStar, Count)):   # Count: of an argument without NULLs
                continue
            if not (isinstance(k, Simple) and k.call.func in ("min", "max")
                    and (_dense_integer(k.arg_type) or pa.types.is_timestamp(k.arg_type))):
                return None
        return DensePartials(self, keys[0], input_schema, keys[1:])

    def partial(self, table: pa.Table, keys: list[str]) -> pa.Table:
        """``table`` holds the keys and the columns of ``prepare``."""
        return self._run(PARTIAL, table, keys)

    def merge(self, states: pa.Table, keys: list[str]) -> pa.Table:
        """Merge state rows that share keys into one row per key."""
        return self._run(MERGE, states, keys)

    def final(self, states: pa.Table) -> list[pa.Array]:
        sorted_cache: list = []  # percentiles of one argument sort its values once
        return [as_array(k.final(states, sorted_cache) if isinstance(k, Percentile)
                         else k.final(states)) for k in self.kernels]


def _dense_integer(t: pa.DataType | None) -> bool:
    """Integers whose every value is an int64 (not uint64)."""
    return t is not None and pa.types.is_integer(t) and not pa.types.is_uint64(t)


#: a DensePartials' range of keys spans at most this many slots per row added (or fewer
#: than ``_DENSE_MIN_SLOTS``): its arrays stay smaller than the rows they summarize
_DENSE_SPAN = 4
_DENSE_MIN_SLOTS = 1 << 16


class DensePartials:
    """The partial states of count(*), count, min and max over integers (and min and max of
    timestamps, int64 inside) grouped by one
    integer key, accumulated across batches in NumPy arrays indexed by ``key - base``:
    adding a batch is a ``bincount`` over the batch's key range added into a slice and one
    ``maximum.at``/``minimum.at`` per min/max, with no Arrow table per batch and no merge
    of the batches' partials; ``take`` returns what ``Aggregator.partial`` of all the added
    rows would (one row per key, in key order) and empties the arrays for reuse. The
    arrays cover the keys seen since the last ``take``, which stay dense while keys are
    ids (auctions, persons); ``add`` refuses a batch with NULLs in the key or an argument,
    or whose keys would spread the range too wide (the caller takes what was added and
    falls back to the general path).

    ``companions``: further integer GROUP BY columns that come along with the key, as an
    auction's category with its id (``GROUP BY A.id, A.category``): each slot holds the one
    value of each companion its rows had. A batch in which a key comes with a companion
    value other than the one its slot holds (or two) is refused, so a slot is always one
    group, never two merged."""

    def __init__(self, aggregator: Aggregator, key: str, input_schema: pa.Schema,
                 companions: Sequence[str] = ()):
        self.key = key
        self.key_type = input_schema.field(key).type
        self.group = [key, *companions]
        #: each companion's value per slot (meaningful where the slot's count is not 0)
        self.companions = {c: (input_schema.field(c).type, np.zeros(0, dtype=np.int64))
                           for c in companions}
        #: (kernel, the name of its partial result column, argument column, function)
        self.outputs: list[tuple[Kernel, str, str | None, str]] = []
        #: one accumulator per (argument, min/max) pair
        self.acc: dict[tuple[str, str], np.ndarray] = {}
        for k in aggregator.kernels:
            if isinstance(k, CountStar):
                self.outputs.append((k, "count_all", None, "count"))
                continue
            column = k.call.args[0]
            func = "count" if isinstance(k, Count) else k.call.func
            self.outputs.append((k, f"{k.p}_x_{func}", column, func))
            if func != "count":
                self.acc[(column, func)] = np.zeros(0, dtype=np.int64)
        self.args = sorted({c for _, _, c, _ in self.outputs if c is not None})
        self.counts = np.zeros(0, dtype=np.int64)
        self.base = 0
        self.rows = 0
        self.lo = self.hi = 0   # the keys added since the last take (while rows > 0)

    @staticmethod
    def _start(func: str) -> int:
        info = np.iinfo(np.int64)
        return info.min if func == "max" else info.max

    def add(self, batch: pa.RecordBatch | pa.Table) -> bool:
        """Fold ``batch``'s rows in; False (nothing folded) when this batch cannot be."""
        n = batch.num_rows
        if n == 0:
            return True
        key = as_array(batch.column(self.key))
        if key.null_count:
            return False
        values = {}
        for name in self.args:
            column = as_array(batch.column(name))
            if column.null_count:
                return False
            values[name] = column
        comps = {}
        for name in self.companions:
            column = as_array(batch.column(name))
            if column.null_count:
                return False
            comps[name] = column.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        k = key.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        lo, hi = int(k.min()), int(k.max())
        if hi - lo > _DENSE_SPAN * n + 1024 or not self._cover(lo, hi, n):
            return False
        slot = k - lo
        at = lo - self.base
        if comps and not self._companions_agree(comps, slot, at, hi - lo + 1):
            return False
        self.counts[at:at + hi - lo + 1] += np.bincount(slot, minlength=hi - lo + 1)
        for (name, func), acc in self.acc.items():
            ufunc = np.maximum if func == "max" else np.minimum
            v = values[name].to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
            ufunc.at(acc[at:at + hi - lo + 1], slot, v)
        if self.rows:
            self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)
        else:
            self.lo, self.hi = lo, hi
        self.rows += n
        return True

    def _companions_agree(self, comps: dict[str, np.ndarray], slot: np.ndarray, at: int,
                          span: int) -> bool:
        """Whether every row's companions are its slot's (the slot's earlier rows', and
        the batch's other rows of the key); if so they are recorded for the slot."""
        held = self.counts[at:at + span][slot] > 0
        for name, values in comps.items():
            stored = self.companions[name][1][at:at + span]
            if held.any() and (stored[slot][held] != values[held]).any():
                return False
            trial = np.empty(span, dtype=np.int64)
            trial[slot] = values   # one of each key's values wins: all must be it
            if (trial[slot] != values).any():
                return False
        for name, values in comps.items():
            self.companions[name][1][at:at + span][slot] = values
        return True

    def _cover(self, lo: int, hi: int, n: int) -> bool:
        """Make the arrays cover keys ``lo``..``hi`` as well as those added; False when that
        range would be too wide for the rows it summarizes."""
        size = len(self.counts)
        if self.base <= lo and hi < self.base + size:
            return True
        if not self.rows:
            if hi - lo < size:   # empty arrays: they move to the new keys
                self.base = lo
                return True
            new_lo, new_hi = lo, hi
        else:
            new_lo, new_hi = min(lo, self.lo), max(hi, self.hi)
        span = new_hi - new_lo + 1
        if span > max(_DENSE_SPAN * (self.rows + n), _DENSE_MIN_SLOTS):
            return False
        # room on the side that grew: keys that are ids keep coming from there
        grown = max(2 * span, _DENSE_MIN_SLOTS)
        start = new_hi + 1 - grown if self.rows and lo < self.lo else new_lo
        counts = np.zeros(grown, dtype=np.int64)
        if self.rows:
            old, new = self.lo - self.base, self.lo - start
            width = self.hi - self.lo + 1
            counts[new:new + width] = self.counts[old:old + width]
        for name_func, acc in self.acc.items():
            fresh = np.full(grown, self._start(name_func[1]), dtype=np.int64)
            if self.rows:
                fresh[new:new + width] = acc[old:old + width]
            self.acc[name_func] = fresh
        for name, (t, values) in self.companions.items():
            fresh = np.zeros(grown, dtype=np.int64)
            if self.rows:
                fresh[new:new + width] = values[old:old + width]
            self.companions[name] = (t, fresh)
        self.counts, self.base = counts, start
        return True

    def take(self) -> pa.Table | None:
        """The partial states of the rows added since the last ``take`` (None if none),
        one row per key in key order, as ``Aggregator.partial`` makes them."""
        if not self.rows:
            return None
        a, b = self.lo - self.base, self.hi - self.base + 1
        counts = self.counts[a:b]
        used = np.flatnonzero(counts)
        result: dict[str, pa.Array] = {
            self.key: pc.cast(from_numpy(used + np.int64(self.lo)), self.key_type)}
        for name, (t, values) in self.companions.items():
            result[name] = pc.cast(from_numpy(values[a:b][used]), t)
        for k, name, column, func in self.outputs:
            if func == "count":
                result[name] = from_numpy(counts[used])
            else:
                result[name] = pc.cast(from_numpy(self.acc[(column, func)][a:b][used]),
                                       k.arg_type)
        counts[:] = 0
        for (_, func), acc in self.acc.items():
            acc[a:b] = self._start(func)
        self.rows = 0
        dense = pa.table(result)
        out = {name: dense[name] for name in self.group}
        for k, *_ in self.outputs:
            out.update(k.finish(PARTIAL, dense, dense, None))
        return pa.table(out)
