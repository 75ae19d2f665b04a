"""Arroyo's test UDFs (crates/arroyo-sql-testing/src/udfs.rs) as caudal Python UDFs, for the
smoke tests' ``--udf`` option: the same results, vectorized."""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import caudal


@caudal.udf(returns="BIGINT")
def double_negative(x: pa.Array) -> pa.Array:
    return pc.multiply(x.cast(pa.int64()), -2)



# Arroyo's UDAFs take each group's values (Rust ``Vec<T>``); caudal's group UDAFs take them as
# one pa.ListArray per argument for a whole batch of groups (one list per group).


def _group_rows(values: pa.ListArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(group of each value, the values as int64 with NULLs dropped, their group) of lists."""
    flat = pc.list_flatten(values)
    parents = pc.list_parent_indices(values).to_numpy(zero_copy_only=False)
    ok = flat.is_valid().to_numpy(zero_copy_only=False)
    return parents, flat.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64), ok


@caudal.udaf(returns="DOUBLE")
def my_median(values: pa.ListArray) -> pa.Array:
    """The median of each group's values (the mean of the two middle ones of an even count)."""
    parents, x, ok = _group_rows(values)
    parents, x = parents[ok], x[ok]
    n = np.bincount(parents, minlength=len(values))
    if not len(x):
        return pa.nulls(len(values), pa.float64())
    x = x[np.lexsort((x, parents))].astype(np.float64)
    starts = np.cumsum(n) - n
    low = np.clip(starts + (n - 1) // 2, 0, len(x) - 1)
    high = np.clip(starts + n // 2, 0, len(x) - 1)
    return pa.array((x[low] + x[high]) / 2, mask=n == 0)


@caudal.udaf(returns="DOUBLE")
def none_udf(values: pa.ListArray) -> pa.Array:
    """NULL for every group."""
    return pa.nulls(len(values), pa.float64())


@caudal.udaf(returns="BIGINT UNSIGNED")
def max_product(first: pa.ListArray, second: pa.ListArray) -> pa.Array:
    """The largest product of the two arguments' values of one row, per group."""
    parents, a, ok_a = _group_rows(first)
    _, b, ok_b = _group_rows(second)
    ok = ok_a & ok_b
    best = np.zeros(len(first), dtype=np.uint64)
    seen = np.zeros(len(first), dtype=bool)
    np.maximum.at(best, parents[ok], (a[ok].astype(np.uint64) * b[ok].astype(np.uint64)))
    seen[parents[ok]] = True
    return pa.array(best, mask=~seen)
