"""The pane-based window aggregate on batches: windows close exactly when the watermark
passes their end, state is freed with them, late rows are dropped and counted, and state
survives snapshot / restore, also into more or fewer subtasks (rescaling)."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caudal.operators.base import OperatorContext
from caudal.operators.event_time import LateOutput
from caudal.operators.side_output import tag_of
from caudal.operators.window_aggregate import WindowAggregate
from caudal.plan.aggregates import AggCall
from caudal.plan.windows import WindowSpec
from caudal.state.key_groups import split_by_subtask
from caudal.types import TIMESTAMP
from caudal.watermark import WATERMARK_MAX

S = 1_000_000
INPUT = pa.schema([("ts", TIMESTAMP), ("k", pa.int64()), ("x", pa.int64())])
CALLS = [AggCall("count", (), pa.int64()), AggCall("sum", ("x",), pa.int64()),
         AggCall("count", ("x",), pa.int64(), distinct=True),
         AggCall("avg", ("x",), pa.float64())]
OUTPUT = pa.schema([("window_start", TIMESTAMP), ("window_end", TIMESTAMP), ("k", pa.int64()),
                    ("c", pa.int64()), ("s", pa.int64()), ("d", pa.int64()),
                    ("a", pa.float64())])
WINDOWS = [WindowSpec("tumble", 10 * S), WindowSpec("hop", 10 * S, 2 * S),
           WindowSpec("hop", 10 * S, 4 * S), WindowSpec("cumulate", 10 * S, 2 * S)]


def rows(ts_seconds, keys, values) -> pa.RecordBatch:
    ts = (np.asarray(ts_seconds, dtype=np.float64) * S).astype(np.int64)
    return pa.RecordBatch.from_arrays(
        [pa.array(ts).view(TIMESTAMP), pa.array(keys, pa.int64()), pa.array(values, pa.int64())],
        schema=INPUT)


def make(window: WindowSpec, subtask: int = 0, parallelism: int = 1, **kw) -> WindowAggregate:
    op = WindowAggregate(window, ["k"], CALLS, "ts", INPUT, OUTPUT, **kw)
    op.open(OperatorContext(subtask=subtask, parallelism=parallelism))
    return op


def as_rows(batches) -> list[tuple]:
    if not batches:
        return []
    table = pa.Table.from_batches(list(batches))
    cols = [c.cast(pa.int64()) if pa.types.is_timestamp(c.type) else c for c in table.columns]
    return sorted(zip(*[c.to_pylist() for c in cols]),
                  key=lambda r: tuple((v is None, v or 0) for v in r))


def reference(table: pa.Table, window: WindowSpec) -> list[tuple]:
    w, s = window.size_us, window.slide_us
    us = "epoch_us(ts)"

    def floor(size):  # windows align to the epoch: floor, also before 1970
        return f"(floor({us} / {size})::BIGINT * {size})"

    if window.kind == "tumble":
        src = f"SELECT *, {floor(w)} AS ws, {floor(w)} + {w} AS we FROM t"
    else:
        if window.kind == "hop":  # starts k * slide, each lasting w (Flink's sliding windows)
            start = f"({floor(s)} - j*{s})"
            end = f"({start} + {w})"
            cond = f"WHERE {end} > {us}"  # a slide that does not divide: fewer windows
        else:
            end = f"({floor(s)} + {s} + j*{s})"
            start = floor(w)
            cond = f"WHERE {end} <= {floor(w)} + {w}"
        src = f"SELECT *, {start} AS ws, {end} AS we FROM t, range({-(-w // s)}) r(j) {cond}"
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("t", table)
    out = con.sql(f"SELECT ws, we, k, count(*), sum(x), count(DISTINCT x), avg(x) "
                  f"FROM ({src}) GROUP BY ALL").fetchall()
    return sorted(out, key=lambda r: tuple((v is None, v or 0) for v in r))


@pytest.mark.parametrize("window", WINDOWS, ids=str)
def test_windows_close_exactly_at_their_end(window):
    op = make(window)
    assert op.process(rows([0, 9.999999, 10, 11], [1, 1, 1, 2], [1, 2, 3, 4])) == []
    fired = as_rows(op.on_watermark(10 * S - 1))
    assert all(r[1] <= 10 * S - 1 for r in fired)
    fired = as_rows(op.on_watermark(10 * S))
    ends = {r[1] for r in fired}
    assert ends == {10 * S}
    if window.kind == "tumble":
        # [0, 10) holds the rows at 0 and 9.999999, not the one at 10
        assert fired == [(0, 10 * S, 1, 2, 3, 2, 1.5)]
    rest = as_rows(op.on_watermark(WATERMARK_MAX))
    assert all(r[1] > 10 * S for r in rest)
    assert op.state_rows() == 0


@pytest.mark.parametrize("window", WINDOWS, ids=str)
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(0, 200), batch=st.integers(3, 64),
       delay=st.integers(0, 3))
def test_matches_batch_sql_with_disorder_below_the_delay(window, seed, n, batch, delay):
    rng = np.random.default_rng(seed)
    base = np.sort(rng.integers(-40 * S, 40 * S, n))  # before and after 1970
    ts = base + (rng.integers(0, delay * S, n) if delay else 0)
    table = pa.table({"ts": pa.array(ts).view(TIMESTAMP),
                      "k": pa.array(rng.integers(0, 4, n), mask=rng.random(n) < 0.1),
                      "x": pa.array(rng.integers(0, 5, n), mask=rng.random(n) < 0.2)})
    op = make(window)
    out, high = [], None
    for b in table.to_batches(max_chunksize=batch):
        out += op.process(b)
        top = int(np.max(b.column("ts").view(pa.int64()).to_numpy()))
        high = top if high is None else max(high, top)
        out += op.on_watermark(high - delay * S)
    out += op.on_watermark(WATERMARK_MAX)
    assert op.ctx.metrics["late_rows"] == 0
    assert op.state_rows() == 0
    got = as_rows(out)
    want = reference(table, window)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g[:6] == w[:6]
        assert (g[6] is None and w[6] is None) or abs(g[6] - w[6]) < 1e-9


def test_state_is_freed_as_windows_close():
    op = make(WindowSpec("hop", 10 * S, 2 * S))
    for t in range(0, 100):
        op.process(rows([t], [t % 3], [t]))
        op.on_watermark(t * S)
        # panes of windows not yet closed: at most width / slide + 1 of them
        assert len(op.panes) <= 6
    op.on_watermark(WATERMARK_MAX)
    assert op.panes == {}


def test_late_rows_are_dropped_counted_and_sent_to_the_side_output():
    late = LateOutput(columns=["x", "ts"], names=["value", "time"])
    op = make(WindowSpec("tumble", 10 * S), late_output=late)
    op.process(rows([1, 2], [1, 1], [10, 20]))
    assert as_rows(op.on_watermark(12 * S)) == [(0, 10 * S, 1, 2, 30, 2, 15.0)]
    # 3 s arrives after its window [0 s, 10 s) fired; 11 s is behind the watermark (12 s)
    # but its window [10 s, 20 s) is open: it counts there (as in Flink and the batch answer)
    side = op.process(rows([3, 11, 15], [1, 1, 1], [30, 40, 50]))
    assert op.ctx.metrics["late_rows"] == 1
    assert len(side) == 1 and tag_of(side[0]) == "late"
    assert side[0].schema.names == ["value", "time"]
    assert side[0].column("value").to_pylist() == [30]
    assert as_rows(op.on_watermark(WATERMARK_MAX)) == [(10 * S, 20 * S, 1, 2, 90, 2, 45.0)]


def test_rows_without_event_time_are_dropped():
    op = make(WindowSpec("tumble", 10 * S))
    batch = pa.RecordBatch.from_arrays(
        [pa.array([None, 1 * S], pa.int64()).cast(TIMESTAMP), pa.array([1, 1]),
         pa.array([5, 6])], schema=INPUT)
    op.process(batch)
    assert as_rows(op.on_watermark(WATERMARK_MAX)) == [(0, 10 * S, 1, 1, 6, 1, 6.0)]
    assert op.ctx.metrics["null_time_rows"] == 1


def _random_input(seed: int, n: int, keys: int) -> tuple[np.ndarray, pa.Table]:
    """``n`` rows over a minute in time order, ``keys`` keys: their times and the table."""
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(0, 60 * S, n))
    return ts, pa.table({"ts": pa.array(ts).view(TIMESTAMP),
                         "k": pa.array(rng.integers(0, keys, n)),
                         "x": pa.array(rng.integers(0, 9, n))})


@pytest.mark.parametrize("old,new", [(1, 1), (2, 3), (4, 1)])
def test_snapshot_restores_into_other_parallelism(old, new):
    """Run half the input on ``old`` subtasks, snapshot, restore into ``new`` subtasks
    from the concatenated snapshots, finish: the same windows as one uninterrupted run."""
    window = WindowSpec("hop", 10 * S, 5 * S)
    ts, table = _random_input(7, 400, 40)
    first, second = table.slice(0, 200), table.slice(200)
    mark = int(ts[199]) - 3 * S

    def feed(ops, part):
        out = []
        for b in part.to_batches(max_chunksize=50):
            for subtask, piece in split_by_subtask(b, ["k"], len(ops)):
                out += ops[subtask].process(piece)
        return out

    ops = [make(window, i, old) for i in range(old)]
    out = feed(ops, first)
    for op in ops:
        out += op.on_watermark(mark)
    snaps = [op.snapshot(1) for op in ops]
    state = {name: pa.concat_tables([s[name] for s in snaps if name in s])
             for name in ("panes", "meta")}
    assert "_key_group" in state["panes"].column_names
    restored = [make(window, i, new) for i in range(new)]
    for op in restored:
        op.restore(state)
    out += feed(restored, second)
    for op in restored:
        out += op.on_watermark(WATERMARK_MAX)
    assert as_rows(out) == [tuple(r[:6]) + (pytest.approx(r[6]),) for r in
                            reference(table, window)]


def test_processing_time_windows_fire_on_the_clock():
    op = WindowAggregate(WindowSpec("tumble", 1 * S), ["k"], CALLS[:1], None, INPUT,
                         OUTPUT.remove(6).remove(5).remove(4))
    op.open(OperatorContext())
    op.process(rows([0, 0, 0], [1, 1, 2], [1, 2, 3]))
    assert op.on_watermark(10**18) == ()  # event-time watermarks do not close them
    import time

    fired = as_rows(op.on_processing_time(time.time_ns() // 1000 + 2 * S))
    assert sorted((r[2], r[3]) for r in fired) == [(1, 2), (2, 1)]
    assert op.state_rows() == 0


def test_state_of_every_kind_survives_a_parquet_round_trip():
    """Snapshots are written as Parquet: list states (DISTINCT), strings, event times."""
    import io

    import pyarrow.parquet as pq

    calls = [AggCall("count", ("x",), pa.int64(), distinct=True),
             AggCall("string_agg", ("s",), pa.string(), options={"separator": ","}),
             AggCall("first_value", ("x",), pa.int64()),
             AggCall("stddev_samp", ("x",), pa.float64())]
    schema = INPUT.append(pa.field("s", pa.string()))
    out_schema = pa.schema(list(OUTPUT)[:3] + [pa.field(n, c.dtype)
                                               for n, c in zip("dsfv", calls)])

    def batch(ts, xs):
        b = rows(ts, [1] * len(ts), xs)
        return pa.RecordBatch.from_arrays(b.columns + [pa.array([str(x) for x in xs])],
                                          schema=schema)

    def run(restart: bool):
        op = WindowAggregate(WindowSpec("hop", 10 * S, 5 * S), ["k"], calls, "ts", schema,
                             out_schema)
        op.open(OperatorContext())
        out = list(op.process(batch([1, 2, 6], [5, 5, 7])))
        if restart:
            state = {}
            for name, table in op.snapshot(1).items():
                sink = io.BytesIO()
                pq.write_table(table, sink)
                state[name] = pq.read_table(io.BytesIO(sink.getvalue()))
            op = WindowAggregate(WindowSpec("hop", 10 * S, 5 * S), ["k"], calls, "ts", schema,
                                 out_schema)
            op.open(OperatorContext())
            op.restore(state)
        out += op.process(batch([3, 8, 12], [6, 5, 9]))
        out += op.on_watermark(WATERMARK_MAX)
        table = pa.Table.from_batches(out).sort_by("window_start")
        s = [",".join(sorted(v.split(","))) for v in table["s"].to_pylist()]
        return table.drop_columns(["s"]).to_pylist(), s

    assert run(restart=True) == run(restart=False)


def test_hopping_windows_share_panes_instead_of_reaggregating_rows(monkeypatch):
    """Each row is aggregated once (into its 2 s pane), and a 10 s window merges its five
    panes' partial states: work per window is per pane and key, not per row."""
    from caudal.operators.aggregator import Aggregator

    seen = {"partial_rows": 0, "merged_rows": 0}
    partial, merge = Aggregator.partial, Aggregator.merge

    def count_partial(self, table, keys):
        seen["partial_rows"] += table.num_rows
        return partial(self, table, keys)

    def count_merge(self, table, keys):
        seen["merged_rows"] += table.num_rows
        return merge(self, table, keys)

    monkeypatch.setattr(Aggregator, "partial", count_partial)
    monkeypatch.setattr(Aggregator, "merge", count_merge)
    op = make(WindowSpec("hop", 10 * S, 2 * S))
    n = 2000  # 1000 rows per second for 2 s: one pane, two keys
    op.process(rows(np.linspace(0, 1.999, n), [1, 2] * (n // 2), range(n)))
    out = as_rows(op.on_watermark(WATERMARK_MAX))
    assert seen["partial_rows"] == n  # the raw rows, once
    assert len(out) == 5 * 2  # the pane is in 5 windows, for 2 keys
    assert seen["merged_rows"] <= 5 * 2  # those windows merged 2 pane rows each
    assert all(r[3] == n // 2 for r in out)


@pytest.mark.parametrize("window", [WindowSpec("tumble", 10 * S), WindowSpec("hop", 10 * S, 5 * S)])
def test_restore_from_an_unfolded_chain(window):
    """Incremental snapshots (a whole table, then deltas that upsert and expire panes)
    restored unfolded (the whole table as Parquet bytes, filed apart from the deltas' rows)
    and restored folded finish with the same windows as one uninterrupted run."""
    import pyarrow.parquet as pq

    from caudal.state.incremental import StateDelta, fold_chain, unfold_chain

    ts, table = _random_input(11, 600, 30)
    op, out = make(window), []
    for b in table.slice(0, 100).to_batches(max_chunksize=50):
        out += op.process(b)
    full = op.snapshot(1)["panes"]
    sink = pa.BufferOutputStream()
    pq.write_table(full, sink, row_group_size=40)
    parts = [(sink.getvalue(), "full", (), None)]
    folded = [(full, "full", (), None)]
    for epoch, (a, b) in enumerate([(100, 250), (250, 400)], start=2):
        for batch in table.slice(a, b - a).to_batches(max_chunksize=50):
            out += op.process(batch)
        out += op.on_watermark(int(ts[b - 1]) - 12 * S)
        delta = op.snapshot(epoch)["panes"]
        assert isinstance(delta, StateDelta)
        part = (delta.encode(), "delta", tuple(delta.key), delta.expire)
        parts.append(part)
        folded.append(part)
    meta = op.snapshot(9)["meta"]
    rest = table.slice(400)
    results = []
    for state in (unfold_chain(parts), fold_chain(folded)):
        restored = make(window)
        restored.restore({"panes": state, "meta": meta})
        got = list(out)
        for b in rest.to_batches(max_chunksize=50):
            got += restored.process(b)
        got += restored.on_watermark(WATERMARK_MAX)
        results.append(as_rows(got))
    assert results[0] == results[1] == [tuple(r[:6]) + (pytest.approx(r[6]),) for r in
                                        reference(table, window)]
