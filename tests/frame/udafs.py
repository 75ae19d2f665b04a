"""UDFs and UDAFs the tests use, importable by a test and loadable by ``caudal run --udf``."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

import caudal as cd


@cd.udaf(returns="DOUBLE", state={"total": "DOUBLE", "n": "BIGINT"})
class py_avg:
    """avg(x) over the non-NULL values, the vectorized way."""

    def accumulate(self, groups, n_groups, x):
        x = x.astype(np.float64, copy=False)
        nan = np.isnan(x)  # NULLs arrive as NaN
        if nan.any():
            groups, x = groups[~nan], x[~nan]
        return {"total": np.bincount(groups, x, minlength=n_groups),
                "n": np.bincount(groups, minlength=n_groups)}

    def merge(self, groups, n_groups, state):
        return {"total": np.bincount(groups, state["total"], minlength=n_groups),
                "n": np.bincount(groups, state["n"], minlength=n_groups)}

    def finish(self, state):
        n = state["n"]
        out = np.where(n > 0, state["total"] / np.maximum(n, 1), 0.0)
        import pyarrow as pa

        return pa.array(out, mask=n == 0)


@cd.udaf(returns="BIGINT", state={"top": "BIGINT"}, input="arrow")
class py_max:
    """max(x), on Arrow columns (pyarrow.compute)."""

    def accumulate(self, groups, n_groups, x):
        import pyarrow as pa

        t = pa.table({"g": groups, "x": x}).group_by("g").aggregate([("x", "max")])
        out = np.zeros(n_groups, dtype=np.int64)
        valid = np.zeros(n_groups, dtype=bool)
        g = t["g"].to_numpy()
        m = t["x_max"].combine_chunks()
        out[g] = m.fill_null(0).to_numpy()
        valid[g] = m.is_valid().to_numpy(zero_copy_only=False)
        return {"top": pa.array(out, mask=~valid)}

    def merge(self, groups, n_groups, state):
        return self.accumulate(groups, n_groups, state["top"])

    def finish(self, state):
        return state["top"]


@cd.udf(returns="BIGINT")
def py_double(x):
    """2 * x, a scalar UDF on a pyarrow column."""
    import pyarrow.compute as pc

    return pc.multiply(x, 2)


# group UDAFs: plain functions of each group's values (one pa.ListArray per argument)


def _flat(lists):
    """(group of each value, the values as float64, which are non-NULL) of a ListArray."""
    import pyarrow.compute as pc

    flat = pc.list_flatten(lists)
    parents = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
    ok = flat.is_valid().to_numpy(zero_copy_only=False)
    return parents, flat.cast("float64").fill_null(0).to_numpy(zero_copy_only=False), ok


@cd.udaf(returns="DOUBLE")
def py_median(values):
    """median(x) of the non-NULL values, for a whole batch of groups at once."""
    import pyarrow as pa

    parents, x, ok = _flat(values)
    parents, x = parents[ok], x[ok]
    n = np.bincount(parents, minlength=len(values))
    if not len(x):
        return pa.nulls(len(values), pa.float64())
    x = x[np.lexsort((x, parents))]
    starts = np.cumsum(n) - n
    low = np.clip(starts + (n - 1) // 2, 0, len(x) - 1)
    high = np.clip(starts + n // 2, 0, len(x) - 1)
    return pa.array((x[low] + x[high]) / 2, mask=n == 0)


@cd.udaf(returns="DOUBLE", per_group=True, input="numpy")
def py_median_each(values):
    """median(x), one group per call (NULLs arrive as NaN)."""
    values = values[~np.isnan(values)]
    return float(np.median(values)) if len(values) else None


@cd.udaf(returns="DOUBLE")
def py_product(values):
    """product(x) of the non-NULL values (NULL when there are none)."""
    import pyarrow as pa

    parents, x, ok = _flat(values)
    out = np.ones(len(values))
    np.multiply.at(out, parents[ok], x[ok])
    return pa.array(out, mask=np.bincount(parents[ok], minlength=len(values)) == 0)


@cd.udaf(returns="BIGINT")
def py_max_product(first, second):
    """max(first * second) over the rows where both are non-NULL: the lists of a group are
    aligned across arguments (their i-th values come from one row)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    parents = pc.list_parent_indices(first).to_numpy(zero_copy_only=False)
    product = pc.multiply(pc.list_flatten(first), pc.list_flatten(second))
    t = pa.table({"g": parents, "p": product}).group_by("g").aggregate([("p", "max")])
    out = np.full(len(first), -1, dtype=np.int64)
    out[t["g"].to_numpy()] = np.arange(t.num_rows)
    return t["p_max"].combine_chunks().take(pa.array(out, mask=out < 0))



def _max_by_group(groups, n_groups, secs):
    """max of int32 seconds per group, as time32[s] (NULL for a group without values)."""
    t = pa.table({"g": groups, "x": secs}).group_by("g").aggregate([("x", "max")])
    out = np.zeros(n_groups, dtype=np.int32)
    valid = np.zeros(n_groups, dtype=bool)
    g = t["g"].to_numpy()
    m = t["x_max"].combine_chunks()
    out[g] = m.fill_null(0).to_numpy()
    valid[g] = m.is_valid().to_numpy(zero_copy_only=False)
    return pa.array(out, mask=~valid).cast(pa.time32("s"))


@cd.udaf(returns="BIGINT", state={"top": pa.time32("s")}, input="arrow")
class py_max_time_of_day:
    """max(x mod 86400) kept as a time of day in seconds: its state column is declared as
    Arrow's time32[s], a type Parquet (so a checkpoint) cannot keep."""

    def accumulate(self, groups, n_groups, x):
        secs = pa.array(x.fill_null(0).to_numpy(zero_copy_only=False) % 86400, pa.int32(),
                        mask=x.is_null().to_numpy(zero_copy_only=False))
        return {"top": _max_by_group(groups, n_groups, secs)}

    def merge(self, groups, n_groups, state):
        # declared time32[s], handed back as TIME's engine type (time64[us]): as seconds
        secs = state["top"].cast(pa.time32("s")).cast(pa.int32())
        return {"top": _max_by_group(groups, n_groups, secs)}

    def finish(self, state):
        return state["top"].cast(pa.time32("s")).cast(pa.int32()).cast(pa.int64())
