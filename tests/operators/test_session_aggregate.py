"""Session windows on batches: sessions are [first, last + gap) per key, merge when they
touch (as Flink's do), close when the watermark is past their end, and survive snapshot /
restore into another parallelism."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from caudal.operators.base import OperatorContext
from caudal.operators.session_aggregate import SessionAggregate
from caudal.plan.aggregates import AggCall
from caudal.plan.windows import WindowSpec
from caudal.state.key_groups import split_by_subtask
from caudal.types import TIMESTAMP
from caudal.watermark import WATERMARK_MAX

S = 1_000_000
INPUT = pa.schema([("ts", TIMESTAMP), ("k", pa.int64()), ("x", pa.int64())])
CALLS = [AggCall("count", (), pa.int64()), AggCall("sum", ("x",), pa.int64()),
         AggCall("string_agg", ("x",), pa.string(), options={"separator": ","})]
OUTPUT = pa.schema([("window_start", TIMESTAMP), ("window_end", TIMESTAMP), ("k", pa.int64()),
                    ("c", pa.int64()), ("s", pa.int64()), ("j", pa.string())])


def make(gap_s: float, subtask: int = 0, parallelism: int = 1) -> SessionAggregate:
    calls = [CALLS[0], CALLS[1],
             AggCall("string_agg", ("j",), pa.string(), options={"separator": ","})]
    schema = INPUT.append(pa.field("j", pa.string()))
    op = SessionAggregate(WindowSpec("session", int(gap_s * S)), ["k"], calls, "ts", schema,
                          OUTPUT)
    op.open(OperatorContext(subtask=subtask, parallelism=parallelism))
    return op


def rows(ts_seconds, keys, values) -> pa.RecordBatch:
    ts = (np.asarray(ts_seconds, dtype=np.float64) * S).astype(np.int64)
    values = pa.array(values, pa.int64())
    return pa.RecordBatch.from_arrays(
        [pa.array(ts).view(TIMESTAMP), pa.array(keys, pa.int64()), values,
         values.cast(pa.string())], names=["ts", "k", "x", "j"])


def as_rows(batches) -> list[tuple]:
    if not batches:
        return []
    table = pa.Table.from_batches(list(batches))
    cols = [c.cast(pa.int64()) if pa.types.is_timestamp(c.type) else c for c in table.columns]
    out = []
    for r in zip(*[c.to_pylist() for c in cols]):
        r = list(r)
        r[5] = None if r[5] is None else ",".join(sorted(r[5].split(",")))
        out.append(tuple(r))
    return sorted(out, key=lambda r: tuple((v is None, v or 0) for v in r))


def test_sessions_merge_when_they_touch_and_close_after_their_end():
    op = make(gap_s=2)
    # key 1: 0, 1 and 3 (3 - 1 == gap: touching windows merge) -> [0, 5); then 10 alone
    op.process(rows([0, 1, 10], [1, 1, 1], [1, 2, 4]))
    op.process(rows([3], [1], [3]))
    assert op.on_watermark(5 * S) == []  # a row at 5 could still join [0, 5)
    fired = as_rows(op.on_watermark(5 * S + 1))
    assert fired == [(0, 5 * S, 1, 3, 6, "1,2,3")]
    assert as_rows(op.on_watermark(WATERMARK_MAX)) == [(10 * S, 12 * S, 1, 1, 4, "4")]
    assert op.state_rows() == 0


def test_a_late_arriving_row_bridges_two_sessions():
    op = make(gap_s=3)
    op.process(rows([0, 5], [7, 7], [1, 2]))
    assert op.on_watermark(1 * S) == []
    op.process(rows([2.5], [7], [3]))  # within the gap of both: one session
    assert as_rows(op.on_watermark(WATERMARK_MAX)) == [(0, 8 * S, 7, 3, 6, "1,2,3")]


def reference(table: pa.Table, gap: int) -> list[tuple]:
    con = duckdb.connect()
    con.register("t", table)
    out = con.sql(f"""
        WITH r AS (SELECT *, epoch_us(ts) AS u, row_number() OVER (ORDER BY ts) AS n FROM t),
        s AS (SELECT *, CASE WHEN u - lag(u) OVER (PARTITION BY k ORDER BY u, n) <= {gap}
                             THEN 0 ELSE 1 END AS new FROM r),
        i AS (SELECT *, sum(new) OVER (PARTITION BY k ORDER BY u, n
                                       ROWS UNBOUNDED PRECEDING) AS sid FROM s)
        SELECT min(u), max(u) + {gap}, k, count(*), sum(x), string_agg(j, ',')
        FROM i GROUP BY k, sid""").fetchall()
    out = [tuple(r[:5]) + (None if r[5] is None else ",".join(sorted(r[5].split(","))),)
           for r in out]
    return sorted(out, key=lambda r: tuple((v is None, v or 0) for v in r))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(0, 300), batch=st.integers(3, 80),
       gap=st.sampled_from([1, 2, 5]), delay=st.integers(0, 3))
def test_matches_batch_sessions(seed, n, batch, gap, delay):
    rng = np.random.default_rng(seed)
    base = np.sort(rng.integers(0, 120, n)) * S  # whole seconds: many rows exactly gap apart
    ts = base + (rng.integers(0, delay + 1, n) * S if delay else 0)
    ts = ts.astype(np.int64)
    x = pa.array(rng.integers(0, 9, n), pa.int64(), mask=rng.random(n) < 0.2)
    table = pa.table({"ts": pa.array(ts).view(TIMESTAMP),
                      "k": pa.array(rng.integers(0, 5, n), mask=rng.random(n) < 0.1),
                      "x": x, "j": x.cast(pa.string())})
    op = make(gap)
    out, high = [], None
    for b in table.to_batches(max_chunksize=batch):
        out += op.process(b)
        top = int(np.max(b.column("ts").view(pa.int64()).to_numpy()))
        high = top if high is None else max(high, top)
        out += op.on_watermark(high - delay * S)
    out += op.on_watermark(WATERMARK_MAX)
    assert op.ctx.metrics["late_rows"] == 0
    assert as_rows(out) == reference(table, gap * S)


def test_snapshot_and_restore_into_two_subtasks():
    rng = np.random.default_rng(3)
    n = 300
    ts = np.sort(rng.integers(0, 100, n)) * S
    x = pa.array(rng.integers(0, 9, n), pa.int64())
    table = pa.table({"ts": pa.array(ts).view(TIMESTAMP), "k": pa.array(rng.integers(0, 20, n)),
                      "x": x, "j": x.cast(pa.string())})
    one = make(3)
    out = []
    for b in table.slice(0, 150).to_batches(max_chunksize=40):
        out += one.process(b)
    out += one.on_watermark(int(ts[149]))
    state = one.snapshot(1)
    two = [make(3, i, 2) for i in range(2)]
    for op in two:
        op.restore(state)
    for b in table.slice(150).to_batches(max_chunksize=40):
        for subtask, piece in split_by_subtask(b, ["k"], 2):
            out += two[subtask].process(piece)
    for op in two:
        out += op.on_watermark(WATERMARK_MAX)
    assert as_rows(out) == reference(table, 3 * S)
