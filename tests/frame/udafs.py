"""UDFs and UDAFs the tests use, importable by a test and loadable by ``caudal run --udf``."""

from __future__ import annotations

import numpy as np

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
