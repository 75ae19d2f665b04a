"""Which kernel computes each aggregate call (a built-in of ``aggregate_kernels`` or a Python
UDAF's of ``udaf_kernel``), and the ``Aggregator`` that runs a query's calls together: the
one place the operators (window, session, updating and local pre-aggregation) get kernels
from, so that the kernel modules need not know each other."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

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
    Percentile,
    Simple,
    StringAgg,
    Variance,
)
from caudal.operators.keyed_tables import as_array
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
        specs: list[tuple] = []
        seen: set[str] = set()
        for k in self.kernels:
            for spec in k.specs(phase):
                name = "count_all" if spec[1] == "count_all" else f"{spec[0]}_{spec[1]}"
                if name not in seen:
                    seen.add(name)
                    specs.append(spec)
        need = any(k.needs_groups[0 if phase == PARTIAL else 1] for k in self.kernels)
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
        count(*), count, min and max (and the merge of counts) over integers without NULLs:
        a group is a slot of the range, so one ``bincount`` or ``maximum.at`` per aggregate
        replaces a hash table built per call. The groups come out in key order."""
        if len(keys) != 1 or not all(isinstance(k, (CountStar, Count)) or (
                isinstance(k, Simple) and k.call.func in ("min", "max")) for k in self.kernels):
            return None
        if any(isinstance(k, CountStar) and k.call.filter is not None for k in self.kernels):
            return None
        n = table.num_rows
        key = as_array(table.column(keys[0]))
        if n == 0 or not pa.types.is_integer(key.type) or key.null_count:
            return None
        inputs = [table.column(c) for c, *_ in specs if c != []]
        if any(not pa.types.is_integer(c.type) or c.null_count for c in inputs):
            return None
        k = key.to_numpy().astype(np.int64, copy=False)
        lo, hi = int(k.min()), int(k.max())
        if hi - lo > 4 * n + 1024:
            return None
        slot = k - lo
        counts = np.bincount(slot, minlength=hi - lo + 1)
        used = np.flatnonzero(counts)
        out: dict[str, pa.Array] = {keys[0]: pa.array(used + lo).cast(key.type)}
        for spec in specs:
            column, func = spec[0], spec[1]
            if func == "count_all" or func == "count":
                name = "count_all" if func == "count_all" else f"{column}_count"
                out[name] = pa.array(counts[used], pa.int64())
                continue
            col = as_array(table.column(column))
            values = col.to_numpy().astype(np.int64, copy=False)
            if func == "sum":
                total = np.zeros(hi - lo + 1, dtype=np.int64)  # of counts: no overflow
                np.add.at(total, slot, values)
                out[f"{column}_sum"] = pa.array(total[used], pa.int64())
                continue
            ufunc, start = ((np.maximum, np.iinfo(np.int64).min) if func == "max"
                            else (np.minimum, np.iinfo(np.int64).max))
            acc = np.full(hi - lo + 1, start, dtype=np.int64)
            ufunc.at(acc, slot, values)
            out[f"{column}_{func}"] = pa.array(acc[used]).cast(col.type)
        return pa.table(out)

    def partial(self, table: pa.Table, keys: list[str]) -> pa.Table:
        """``table`` holds the keys and the columns of ``prepare``."""
        return self._run(PARTIAL, table, keys)

    def merge(self, states: pa.Table, keys: list[str]) -> pa.Table:
        """Merge state rows that share keys into one row per key."""
        return self._run(MERGE, states, keys)

    def final(self, states: pa.Table) -> list[pa.Array]:
        return [as_array(k.final(states)) for k in self.kernels]
