"""Two-phase window aggregation: local partial states before the shuffle, merged by the
window operator, give the same windows and count the same late rows as one phase, for any
split of the input over upstream subtasks and any disorder (also beyond the watermark). The
planner splits only mergeable aggregates, only at parallelism > 1, and shows it in EXPLAIN."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caudal.job import explain_sql
from caudal.operators.base import OperatorContext
from caudal.operators.local_window_partials import LocalWindowPartials, splittable
from caudal.operators.window_aggregate import WindowAggregate
from caudal.plan.aggregates import AggCall
from caudal.plan.windows import WindowSpec
from caudal.types import TIMESTAMP
from caudal.watermark import WATERMARK_MAX

S = 1_000_000
INPUT = pa.schema([("ts", TIMESTAMP), ("k", pa.int64()), ("x", pa.int64()),
                   ("f", pa.bool_())])
CALLS = [AggCall("count", (), pa.int64()), AggCall("count", ("x",), pa.int64()),
         AggCall("sum", ("x",), pa.int64()), AggCall("avg", ("x",), pa.float64()),
         AggCall("min", ("x",), pa.int64()), AggCall("max", ("x",), pa.int64()),
         AggCall("stddev_samp", ("x",), pa.float64()),
         AggCall("count", (), pa.int64(), filter="f")]
OUTPUT = pa.schema([("window_start", TIMESTAMP), ("window_end", TIMESTAMP), ("k", pa.int64()),
                    ("c", pa.int64()), ("cx", pa.int64()), ("s", pa.int64()),
                    ("a", pa.float64()), ("lo", pa.int64()), ("hi", pa.int64()),
                    ("sd", pa.float64()), ("cf", pa.int64())])
WINDOWS = [WindowSpec("tumble", 10 * S), WindowSpec("hop", 10 * S, 2 * S),
           WindowSpec("cumulate", 10 * S, 2 * S)]


#: count/min/max of integers by one integer key: a holding local stage folds them across
#: batches (DensePartials)
DENSE_CALLS = [AggCall("count", (), pa.int64()), AggCall("count", ("x",), pa.int64()),
               AggCall("min", ("x",), pa.int64()), AggCall("max", ("x",), pa.int64())]
DENSE_OUTPUT = pa.schema([("window_start", TIMESTAMP), ("window_end", TIMESTAMP),
                          ("k", pa.int64()), ("c", pa.int64()), ("cx", pa.int64()),
                          ("lo", pa.int64()), ("hi", pa.int64())])


def window_op(window: WindowSpec, keys: list[str], partial: bool,
              calls: list[AggCall] = CALLS, output: pa.Schema = OUTPUT) -> WindowAggregate:
    op = WindowAggregate(window, keys, calls, "ts", INPUT, output.remove(2) if not keys
                         else output, partial_input=partial)
    op.open(OperatorContext())
    return op


def local_op(window: WindowSpec, keys: list[str], subtask: int, calls: list[AggCall] = CALLS,
             hold_us: int = 0) -> LocalWindowPartials:
    op = LocalWindowPartials(window, keys, calls, "ts", INPUT, hold_us=hold_us)
    op.open(OperatorContext(subtask=subtask, parallelism=2))
    return op


def as_rows(batches) -> list[tuple]:
    if not batches:
        return []
    table = pa.Table.from_batches(list(batches))
    cols = [c.cast(pa.int64()) if pa.types.is_timestamp(c.type) else c for c in table.columns]
    rows = [tuple(round(v, 6) if isinstance(v, float) else v for v in r)
            for r in zip(*[c.to_pylist() for c in cols])]
    return sorted(rows, key=lambda r: tuple((v is None, v or 0) for v in r))


def run(table: pa.Table, window: WindowSpec, keys: list[str], upstreams: int, batch: int,
        delay: int, local: bool, calls: list[AggCall] = CALLS, output: pa.Schema = OUTPUT,
        hold_us: int = 0, releases: frozenset[int] = frozenset()) -> tuple[list[tuple], int]:
    """Feed batches round-robin from ``upstreams`` sources, each with its own watermark
    (max event time seen - delay); the window operator's watermark is their minimum. After
    the batches numbered in ``releases`` the local stage lets go of what it holds (as
    before a barrier)."""
    op = window_op(window, keys, local, calls, output)
    locals_ = [local_op(window, keys, i, calls, hold_us) for i in range(upstreams)]
    marks = [None] * upstreams
    out = []

    def deliver(u: int, partials) -> None:
        nonlocal out
        for p in partials:
            assert p.schema.equals(locals_[u].output_schema)
            out += op.process(p)

    for i, b in enumerate(table.to_batches(max_chunksize=batch)):
        u = i % upstreams
        if local:
            deliver(u, locals_[u].process(b))
            if i in releases:
                deliver(u, locals_[u].release_held())
        else:
            out += op.process(b)
        top = int(np.max(b.column("ts").view(pa.int64()).to_numpy())) - delay
        marks[u] = top if marks[u] is None else max(marks[u], top)
        deliver(u, locals_[u].on_watermark(marks[u]))
        if all(m is not None for m in marks):
            out += op.on_watermark(min(marks))
    if local:
        for u in range(upstreams):
            deliver(u, locals_[u].on_watermark(WATERMARK_MAX))
            deliver(u, locals_[u].on_end())
    out += op.on_watermark(WATERMARK_MAX)
    assert op.state_rows() == 0
    return as_rows(out), op.ctx.metrics["late_rows"]


@pytest.mark.parametrize("window", WINDOWS, ids=str)
@pytest.mark.parametrize("keys", [["k"], []], ids=["keyed", "global"])
@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(0, 300), batch=st.integers(3, 64),
       upstreams=st.integers(1, 4), disorder=st.integers(0, 6), delay=st.integers(0, 3))
def test_two_phase_equals_one_phase_also_with_late_rows(window, keys, seed, n, batch,
                                                        upstreams, disorder, delay):
    rng = np.random.default_rng(seed)
    base = np.sort(rng.integers(-30 * S, 30 * S, n))  # before and after 1970
    ts = base - (rng.integers(0, disorder * S, n) if disorder else 0)
    table = pa.table({"ts": pa.array(ts).view(TIMESTAMP),
                      "k": pa.array(rng.integers(0, 4, n), mask=rng.random(n) < 0.1),
                      "x": pa.array(rng.integers(0, 5, n), mask=rng.random(n) < 0.2),
                      "f": pa.array(rng.random(n) < 0.5)})
    one, late_one = run(table, window, keys, upstreams, batch, delay * S, local=False)
    two, late_two = run(table, window, keys, upstreams, batch, delay * S, local=True)
    assert late_two == late_one
    assert two == one


@pytest.mark.parametrize("window", WINDOWS, ids=str)
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(0, 400), batch=st.integers(3, 64),
       upstreams=st.integers(1, 3), disorder=st.integers(0, 6), delay=st.integers(0, 3),
       nulls=st.sampled_from([0.0, 0.0, 0.05]), spread=st.sampled_from([4, 4, 10**9]),
       releases=st.frozensets(st.integers(0, 40), max_size=6))
def test_held_two_phase_equals_one_phase(window, seed, n, batch, upstreams, disorder, delay,
                                         nulls, spread, releases):
    """A local stage that holds a pane's count/min/max per key across batches (released by
    another pane, a late row, the watermark reaching the pane's first window end, a
    barrier, the end) gives the windows and late rows of one phase."""
    rng = np.random.default_rng(seed)
    base = np.sort(rng.integers(-30 * S, 30 * S, n))
    ts = base - (rng.integers(0, disorder * S, n) if disorder else 0)
    table = pa.table({"ts": pa.array(ts).view(TIMESTAMP),
                      "k": pa.array(rng.integers(0, spread, n), mask=rng.random(n) < nulls),
                      "x": pa.array(rng.integers(-5, 5, n), mask=rng.random(n) < nulls),
                      "f": pa.array(rng.random(n) < 0.5)})
    args = (window, ["k"], upstreams, batch, delay * S)
    one, late_one = run(table, *args, local=False, calls=DENSE_CALLS, output=DENSE_OUTPUT)
    two, late_two = run(table, *args, local=True, calls=DENSE_CALLS, output=DENSE_OUTPUT,
                        hold_us=10**9, releases=releases)
    assert late_two == late_one
    assert two == one


def test_a_held_pane_is_released_before_the_watermark_that_fires_it():
    window = WindowSpec("tumble", 10 * S)
    local = local_op(window, ["k"], 0, DENSE_CALLS, hold_us=10**9)
    ts = pa.array([1 * S, 2 * S]).view(TIMESTAMP)
    batch = pa.RecordBatch.from_arrays(
        [ts, pa.array([1, 1]), pa.array([1, 2]), pa.array([True] * 2)], schema=INPUT)
    assert local.process(batch) == []   # held
    assert local.on_watermark(9 * S) == ()
    out = pa.Table.from_batches(local.on_watermark(10 * S))
    assert out.to_pylist() == [{"_pane": 0, "k": 1, "_s0_n": 2, "_s1_n": 2, "_s2_v": 1,
                                "_s3_v": 2, "_ts": None}]
    assert local.held_pane is None


def test_rows_below_the_local_watermark_are_checked_downstream():
    window = WindowSpec("tumble", 10 * S)
    local = local_op(window, ["k"], 0)
    op = window_op(window, ["k"], True)
    local.on_watermark(12 * S)
    op.on_watermark(12 * S)
    stamps, out = _through(local, op, [3, 11, 13, 14])
    # 13 and 14 are pre-aggregated; 3 and 11 travel one row each with their event time:
    # 3 is late downstream (its window [0 s, 10 s) fired), 11 counts in the open [10 s, 20 s)
    assert stamps == [None, 3 * S, 11 * S]
    assert op.ctx.metrics["late_rows"] == 1
    assert [r[:6] for r in out] == [(10 * S, 20 * S, 1, 3, 3, 9)]


def _through(local: LocalWindowPartials, op: WindowAggregate, seconds: list[int]
             ) -> tuple[list, list[tuple]]:
    """Rows of key 1 at ``seconds`` (x = 1, 2, …) through the local stage and ``op``: the
    ``_ts`` of the partials, and ``op``'s windows at the end."""
    ts = pa.array([s * S for s in seconds]).view(TIMESTAMP)
    n = len(seconds)
    batch = pa.RecordBatch.from_arrays(
        [ts, pa.array([1] * n), pa.array(range(1, n + 1)), pa.array([True] * n)],
        schema=INPUT)
    partial = pa.Table.from_batches(local.process(batch))
    for b in partial.to_batches():
        op.process(b)
    stamps = sorted(partial.column("_ts").to_pylist(), key=lambda v: v or 0)
    return stamps, as_rows(op.on_watermark(WATERMARK_MAX))


def test_the_local_watermark_survives_a_restore():
    window = WindowSpec("tumble", 10 * S)
    a, b = local_op(window, ["k"], 0), local_op(window, ["k"], 1)
    a.on_watermark(5 * S)
    b.on_watermark(7 * S)
    restored = local_op(window, ["k"], 0)
    restored.restore({"meta": pa.concat_tables([a.snapshot(1)["meta"],
                                                 b.snapshot(1)["meta"]])})
    assert restored.watermark == 5 * S


def test_after_its_source_was_idle_every_row_is_checked_downstream():
    """The downstream passed this subtask's watermark (12 s) while it was idle (to 25 s):
    rows at 13 and 14 s are late there, and must reach it with their event time."""
    window = WindowSpec("tumble", 10 * S)
    local = local_op(window, ["k"], 0)
    op = window_op(window, ["k"], True)
    local.on_watermark(12 * S)
    local.on_idle()
    op.on_watermark(25 * S)
    stamps, out = _through(local, op, [13, 14, 26])
    assert stamps == [13 * S, 14 * S, 26 * S]
    assert op.ctx.metrics["late_rows"] == 2
    assert [r[:6] for r in out] == [(20 * S, 30 * S, 1, 1, 1, 3)]


def test_a_restore_vouches_only_from_a_bound_of_the_downstream_watermark():
    window = WindowSpec("tumble", 10 * S)
    a, b, c = (local_op(window, ["k"], i) for i in range(3))
    a.on_watermark(5 * S)
    b.on_watermark(30 * S)
    b.on_idle()
    c.on_watermark(7 * S)
    c.on_idle()
    snaps = [x.snapshot(1) for x in (a, b, c)]
    restored = local_op(window, ["k"], 0)
    # never-idle subtasks bound the downstream's watermark: their minimum
    restored.restore({"meta": snaps[0]["meta"],
                      "idle_meta": pa.concat_tables([snaps[1]["idle_meta"],
                                                     snaps[2]["idle_meta"]])})
    assert restored.watermark == 5 * S and restored.vouching
    # only subtasks that had been idle (its own snapshot at the same parallelism): no bound
    restored = local_op(window, ["k"], 0)
    restored.restore({"idle_meta": snaps[1]["idle_meta"]})
    assert not restored.vouching


def test_only_compact_mergeable_aggregates_are_split():
    assert splittable(CALLS, INPUT, "ts")
    for call in [AggCall("count", ("x",), pa.int64(), distinct=True),
                 AggCall("first_value", ("x",), pa.int64()),
                 AggCall("approx_count_distinct", ("x",), pa.int64())]:
        assert not splittable([*CALLS, call], INPUT, "ts")


DDL = """CREATE TABLE bids (auction BIGINT, price BIGINT, ts TIMESTAMP,
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
  WITH (connector = 'filesystem', path = '{dir}/bids.json', format = 'json');
"""
LOCAL = "local pre-aggregate"


@pytest.fixture
def ddl(tmp_path) -> str:
    (tmp_path / "bids.json").write_text("")
    return DDL.format(dir=tmp_path)


def test_explain_shows_the_local_stage_only_at_parallelism_above_one(ddl):
    sql = ddl + ("SELECT auction, count(*), avg(price), tumble(INTERVAL '1' SECOND) AS w "
                 "FROM bids GROUP BY auction, w;")
    two = explain_sql(sql, 2)
    assert LOCAL in two and "merge partial states of tumble(1s)" in two
    assert LOCAL not in explain_sql(sql, 1)


@pytest.mark.parametrize("select", [
    "count(DISTINCT price), tumble(INTERVAL '1' SECOND) AS w",
    "string_agg(CAST(price AS TEXT), ','), tumble(INTERVAL '1' SECOND) AS w",
    "count(*), session(INTERVAL '1' SECOND) AS w",
])
def test_unsplittable_aggregates_and_sessions_keep_one_phase(ddl, select):
    text = explain_sql(ddl + f"SELECT auction, {select} FROM bids GROUP BY auction, w;", 2)
    assert LOCAL not in text
