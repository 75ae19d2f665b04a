"""The updating aggregate's NumPy partials (count, min and max of integers and timestamps)
grouped by an integer key with companion GROUP BY columns (``GROUP BY A.id, A.category``: one category per auction) against DuckDB's GROUP BY:
where a key comes with several companion values (in one batch, or across batches before a
flush) those are separate groups, never merged into one slot; NULLs anywhere; flushes and a
snapshot/restore at random points."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from caudal.operators.base import OperatorContext
from caudal.operators.updating_aggregate import UpdatingAggregate
from caudal.plan.aggregates import AggCall
from tests.changelog_helpers import fold
from tests.helpers import normalized_rows

TS = pa.timestamp("us", tz="UTC")
IN = pa.schema([("k", pa.int64()), ("c", pa.int32()), ("x", pa.int64()), ("t", TS)])
OUT = pa.schema([("k", pa.int64()), ("c", pa.int32()), ("n", pa.int64()), ("mx", pa.int64()),
                 ("mn", pa.int64()), ("nx", pa.int64()), ("mt", TS), ("lt", TS)])
CALLS = [AggCall("count", (), pa.int64()), AggCall("max", ("x",), pa.int64()),
         AggCall("min", ("x",), pa.int64()), AggCall("count", ("x",), pa.int64()),
         AggCall("max", ("t",), TS), AggCall("min", ("t",), TS)]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 600), keys=st.integers(1, 200), rows=st.integers(1, 150),
       mixed=st.sampled_from([0.0, 0.0, 0.01, 0.3]), nulls=st.sampled_from([0.0, 0.02]),
       seed=st.integers(0, 2**32 - 1))
def test_companion_keys_match_duckdb(n, keys, rows, mixed, nulls, seed):
    rng = np.random.default_rng(seed)
    k = rng.integers(1000, 1000 + keys, n)
    c = (k * 7) % 5 + 10   # a function of the key ...
    c = np.where(rng.random(n) < mixed, rng.integers(0, 3, n), c)   # ... mostly
    table = pa.table({"k": pa.array(k, mask=rng.random(n) < nulls),
                      "c": pa.array(c, pa.int32(), mask=rng.random(n) < nulls),
                      "x": pa.array(rng.integers(-50, 50, n), mask=rng.random(n) < nulls),
                      "t": pa.array(rng.integers(-10**12, 10**12, n),
                                    mask=rng.random(n) < nulls).cast(TS)})

    def make():
        op = UpdatingAggregate(["k", "c"], CALLS, IN, OUT, flush_us=10**12)
        op.open(OperatorContext())
        return op

    op = make()
    emitted = []
    for i, batch in enumerate(table.to_batches(max_chunksize=rows)):
        emitted.extend(op.process(batch))
        if rng.random() < 0.2:
            emitted.extend(op.flush())
        if i == 1:
            state = op.snapshot(1)
            op = make()
            op.restore(state)
    emitted.extend(op.on_end())
    got = fold(pa.Table.from_batches([b for b in emitted if b.num_rows]))
    con = duckdb.connect()
    con.register("t", table)
    con.execute("SET TimeZone = 'UTC'")
    want = con.sql("SELECT k, c, count(*) AS n, max(x) AS mx, min(x) AS mn, count(x) AS nx, "
                   "max(t) AS mt, min(t) AS lt FROM t GROUP BY k, c").to_arrow_table()
    assert normalized_rows(got, OUT.names) == normalized_rows(want)
