"""The interval join (persistent key index, expired rows dropped lazily) against DuckDB's
answer for the same rows, by property: keys of several types (BIGINT, TEXT, two columns,
DOUBLE with 0.0 and -0.0) with NULLs, times with NULLs, rows arriving out of order within
the watermark's delay, both bounds of the BETWEEN, equal ones included, every join kind, at
parallelism 1 and 2 (rows routed by key, watermarks to every subtask), and a
snapshot/restore half-way. Nothing is late, so the answer is the batch join's; a row the
join dropped or joined twice, a partner found after it expired, or an outer row padded
twice shows here."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caudal.operators.base import OperatorContext
from caudal.operators.interval_join import IntervalJoin
from caudal.plan.expressions import Call, Column, Literal
from caudal.state.key_groups import split_by_subtask
from caudal.state.rescale import concat_states
from tests.helpers import normalized_rows

TS = pa.timestamp("us", tz="UTC")
KEY_TYPES = {"int": [("k", pa.int64())], "text": [("k", pa.string())],
             "two": [("k", pa.int64()), ("k2", pa.string())],
             "float": [("k", pa.float64())]}   # (not indexed: the hash join path)


def _keys(rng: np.random.Generator, kind: str, n: int, distinct: int) -> dict[str, pa.Array]:
    null = rng.random(n) < 0.1
    k = rng.integers(0, distinct, n)
    if kind == "int":
        return {"k": pa.array(k, pa.int64(), mask=null)}
    if kind == "float":
        zero = np.where(k % 2 == 1, -0.0, 0.0)
        return {"k": pa.array(np.where(k % 3 == 0, zero, k * 0.5 + 1), pa.float64(), mask=null)}
    if kind == "text":
        return {"k": pa.array([f"key-{v}" for v in k], pa.string(), mask=null)}
    k2 = rng.integers(0, 2, n)
    return {"k": pa.array(k, pa.int64(), mask=null),
            "k2": pa.array([("a", "bb")[v] for v in k2], pa.string(), mask=rng.random(n) < 0.05)}


def _side(rng, kind: str, n: int, distinct: int, time: str, value: str,
          span: int) -> pa.Table:
    t = rng.integers(0, span, n)
    cols = _keys(rng, kind, n, distinct)
    cols[value] = pa.array(rng.integers(0, 100, n), pa.int64())
    cols[time] = pa.array(t, pa.int64(), mask=rng.random(n) < 0.05).cast(TS)
    return pa.table(cols)


def _arrivals(rng, table: pa.Table, time: str, delay: int, rows: int) -> list[pa.Table]:
    """The rows in batches of about ``rows``, out of order by up to ``delay`` µs (each row
    sorted by its time plus a jitter below ``delay``); NULL times anywhere."""
    t = table.column(time).cast(pa.int64()).fill_null(-1).to_numpy()
    t = np.where(t < 0, rng.integers(0, t.max(initial=0) + 1, len(t)), t)
    order = np.argsort(t + rng.integers(0, delay, len(t)), kind="stable")
    shuffled = table.take(pa.array(order))
    return [shuffled.slice(i, rows) for i in range(0, shuffled.num_rows, rows)]


def _run(kind, key_kind, left, right, a, b, delay, rows, parallelism, seed,
         residual=None, retention=None) -> tuple:
    names = [n for n, _ in KEY_TYPES[key_kind]]
    rename = {n: f"{n}_r" for n in names}
    left_schema, right_schema = left.schema, right.schema
    out_schema = pa.schema(list(left_schema) + [pa.field(rename.get(f.name, f.name), f.type)
                                                for f in right_schema])
    lit = lambda us: Literal(pa.duration("us"), us)  # noqa: E731
    if residual is None:
        residual = Call(pa.bool_(), "and", (
            Call(pa.bool_(), "gte", (Column(TS, "u"), Call(TS, "add", (Column(TS, "t"),
                                                                        lit(a))))),
            Call(pa.bool_(), "lte", (Column(TS, "u"), Call(TS, "add", (Column(TS, "t"),
                                                                        lit(b)))))))
        # what the planner derives for ``u BETWEEN t + a AND t + b`` with no lateness
        retention = [[("t", b)], [("u", -a)]]

    def factory():
        return IntervalJoin(kind, left_schema, right_schema, names, names, rename, out_schema,
                            residual, retention=retention,
                            late_checks=[[("t", 0)], [("u", 0)]])

    rng = np.random.default_rng(seed)
    queues = [_arrivals(rng, left, "t", delay, rows), _arrivals(rng, right, "u", delay, rows)]
    # the two inputs interleave in any order, each in its own
    sides = np.array([0] * len(queues[0]) + [1] * len(queues[1]))
    rng.shuffle(sides)
    items = [(int(s), queues[s].pop(0)) for s in sides]
    emitted: list[pa.RecordBatch] = []
    seen = [-2**62, -2**62]

    def open_all(state=None):
        ops = []
        for i in range(parallelism):
            op = factory()
            op.open(OperatorContext(subtask=i, parallelism=parallelism))
            if state is not None:
                op.restore(state)
            ops.append(op)
        return ops

    ops = open_all()
    for step, (side, table) in enumerate(items):
        if step == len(items) // 2:   # a checkpoint and a restore half-way
            snaps = [op.snapshot(1) for op in ops]
            state = {n: concat_states([s[n] for s in snaps if n in s])
                     for n in {n for s in snaps for n in s}}
            ops = open_all(state)
        for batch in table.to_batches():
            for target, part in split_by_subtask(batch, names, parallelism):
                emitted.extend(ops[target].process(part, side))
        times = table.column(("t", "u")[side]).cast(pa.int64()).drop_null().to_numpy()
        if len(times):
            seen[side] = max(seen[side], int(times.max()))
        # every later row of a side is at most ``delay`` behind the latest one seen
        for op in ops:
            emitted.extend(op.on_watermark(min(seen) - delay))
    for op in ops:
        emitted.extend(op.on_watermark(2**62))
        emitted.extend(op.on_end())
        assert op.ctx.metrics["late_rows"] == 0
    got = pa.Table.from_batches([x for x in emitted if x.num_rows], schema=out_schema) \
        if any(x.num_rows for x in emitted) else out_schema.empty_table()
    return got, out_schema


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["inner", "left", "right", "full"]),
       key_kind=st.sampled_from(sorted(KEY_TYPES)),
       n_left=st.integers(0, 120), n_right=st.integers(0, 300),
       distinct=st.integers(1, 30), a=st.integers(-3000, 2000), width=st.sampled_from(
           [0, 0, 1, 500, 4000]), delay=st.sampled_from([1, 700, 5000]),
       rows=st.integers(1, 64), parallelism=st.sampled_from([1, 2]),
       seed=st.integers(0, 2**32 - 1))
def test_interval_join_matches_duckdb(kind, key_kind, n_left, n_right, distinct, a, width,
                                      delay, rows, parallelism, seed):
    rng = np.random.default_rng(seed)
    left = _side(rng, key_kind, n_left, distinct, "t", "x", 20_000)
    right = _side(rng, key_kind, n_right, distinct, "u", "y", 20_000)
    b = a + width   # width 0: equal bounds, u = t + a
    got, out_schema = _run(kind, key_kind, left, right, a, b, delay, rows, parallelism, seed)
    names = [n for n, _ in KEY_TYPES[key_kind]]
    on = " AND ".join(f"l.{n} = r.{n}" for n in names)
    select = ", ".join([f"l.{n}" for n in left.column_names] +
                       [f"r.{n} AS {n}_r" if n in names else f"r.{n}"
                        for n in right.column_names])
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("l", left)
    con.register("r", right)
    want = con.sql(f"SELECT {select} FROM l {kind.upper()} JOIN r ON {on} AND r.u BETWEEN "
                   f"l.t + to_microseconds({a}) AND l.t + to_microseconds({b})"
                   ).to_arrow_table()
    assert normalized_rows(got) == normalized_rows(want.rename_columns(out_schema.names))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["inner", "left", "right", "full"]),
       key_kind=st.sampled_from(["int", "text"]),
       n_left=st.integers(0, 120), n_right=st.integers(0, 300),
       distinct=st.integers(1, 30), width=st.sampled_from([0, 0, 1, 500, 4000]),
       lower=st.sampled_from(["gte", "gt"]), upper=st.sampled_from(["lte", "lt"]),
       delay=st.sampled_from([1, 700, 5000]), rows=st.integers(1, 64),
       parallelism=st.sampled_from([1, 2]), seed=st.integers(0, 2**32 - 1))
def test_interval_join_between_columns_matches_duckdb(kind, key_kind, n_left, n_right, distinct,
                                                      width, lower, upper, delay, rows,
                                                      parallelism, seed):
    """Nexmark q4's form, ``r.u BETWEEN l.t AND l.e`` (strict bounds too), with NULLs in
    every time column: a residual of column comparisons, checked on NumPy values."""
    from caudal.operators.join_rows import _integer_terms

    rng = np.random.default_rng(seed)

    def times(values: np.ndarray) -> pa.Array:
        """Times with NULLs over values that would match (a NULL must not)."""
        null = rng.random(len(values)) < 0.1
        bitmap = pa.py_buffer(np.packbits(~null, bitorder="little"))
        return pa.Array.from_buffers(TS, len(values), [bitmap, pa.py_buffer(
            values.astype(np.int64))], int(null.sum()))

    left = _side(rng, key_kind, n_left, distinct, "t", "x", 20_000)
    t = rng.integers(0, 20_000, n_left)
    left = left.set_column(left.schema.get_field_index("t"), "t", times(t))
    left = left.append_column("e", times(t + rng.integers(0, width + 1, n_left)))
    right = _side(rng, key_kind, n_right, distinct, "u", "y", 20_000)
    right = right.set_column(right.schema.get_field_index("u"), "u",
                             times(rng.integers(0, 20_000, n_right)))
    residual = Call(pa.bool_(), "and", (Call(pa.bool_(), lower, (Column(TS, "u"), Column(TS, "t"))),
                                        Call(pa.bool_(), upper, (Column(TS, "u"), Column(TS, "e")))))
    got, out_schema = _run(kind, key_kind, left, right, 0, 0, delay, rows, parallelism, seed,
                           residual, retention=[[("e", 0)], [("u", 0)]])
    assert _integer_terms(residual, pa.schema(list(out_schema))) is not None
    names = [n for n, _ in KEY_TYPES[key_kind]]
    on = " AND ".join(f"l.{n} = r.{n}" for n in names)
    select = ", ".join([f"l.{n}" for n in left.column_names] +
                       [f"r.{n} AS {n}_r" if n in names else f"r.{n}"
                        for n in right.column_names])
    ops = {"gte": ">=", "gt": ">", "lte": "<=", "lt": "<"}
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("l", left)
    con.register("r", right)
    want = con.sql(f"SELECT {select} FROM l {kind.upper()} JOIN r ON {on} AND r.u "
                   f"{ops[lower]} l.t AND r.u {ops[upper]} l.e").to_arrow_table()
    assert normalized_rows(got) == normalized_rows(want.rename_columns(out_schema.names))


def test_snapshot_of_the_earlier_form_restores():
    """A snapshot taken before the key index (whole tables, ``_matched`` as bool) restores:
    the stored row finds its partner, and the other one, never matched, is padded."""
    from caudal.operators.keyed_tables import tag_key_groups
    from caudal.state.rescale import watermark_table

    schema = pa.schema([("k", pa.int64()), ("x", pa.int64()), ("t", TS)])
    right = pa.schema([("k", pa.int64()), ("y", pa.int64()), ("u", TS)])
    out = pa.schema(list(schema) + [pa.field("k_r", pa.int64()), *list(right)[1:]])
    residual = Call(pa.bool_(), "gte", (Column(TS, "u"), Column(TS, "t")))
    op = IntervalJoin("left", schema, right, ["k"], ["k"], {"k": "k_r"}, out, residual,
                      retention=[[("t", 1000)], [("u", 0)]], late_checks=[[("t", 0)], [("u", 0)]])
    op.open(OperatorContext())
    old = pa.table({"k": [1, 2], "x": [10, 20], "t": pa.array([100, 200], TS),
                    "_deadline": [1100, 1200], "_matched": [False, False]})
    op.restore({"left": tag_key_groups(old, ["k"], 128),
                "right": tag_key_groups(pa.table({n: pa.array([], f.type) for n, f in zip(
                    right.names, right)} | {"_deadline": pa.array([], pa.int64())}), ["k"], 128),
                "meta": watermark_table(50)})
    got = op.process(pa.record_batch({"k": [1], "y": [7], "u": pa.array([150], TS)},
                                     schema=right), 1)
    got = list(got) + list(op.on_watermark(2000))
    rows = normalized_rows(pa.Table.from_batches(got))
    assert len(rows) == 2
    assert (1, 10, 100, 1, 7, 150) in rows and (2, 20, 200, None, None, None) in rows


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 3000), st.integers(0, 2000)),
                min_size=1, max_size=30), st.integers(0, 2**32 - 1))
def test_expired_rows_are_compacted_when_half_the_store(steps, seed):
    """An inner join's side skips watermarks that cannot have made half of its rows expired,
    and still drops them exactly when they are half: after every watermark the store holds
    what counting every deadline gives (rows appended with sooner deadlines included)."""
    names = ["k"]
    schema = pa.schema([("k", pa.int64()), ("t", TS)])
    right = pa.schema([("k", pa.int64()), ("u", TS)])
    out = pa.schema([("k", pa.int64()), ("t", TS), ("k_r", pa.int64()), ("u", TS)])
    residual = Call(pa.bool_(), "gte", (Column(TS, "u"), Column(TS, "t")))
    op = IntervalJoin("inner", schema, right, names, names, {"k": "k_r"}, out, residual,
                      retention=[[("t", 1000)], [("u", 0)]],
                      late_checks=[[("t", 0)], [("u", 0)]])
    op.open(OperatorContext(subtask=0, parallelism=1))
    rng = np.random.default_rng(seed)
    deadlines = np.zeros(0, dtype=np.int64)   # the model: every stored row's deadline
    watermark = 0
    for n, spread, advance in steps:
        t = watermark + rng.integers(0, spread + 1, n)
        op.process(pa.record_batch([pa.array(rng.integers(0, 5, n), pa.int64()),
                                    pa.array(t, pa.int64()).cast(TS)], schema=schema), 0)
        deadlines = np.concatenate([deadlines, t + 1000])
        watermark += advance
        op.on_watermark(watermark)
        expired = deadlines < watermark
        if 2 * int(expired.sum()) >= len(deadlines) and expired.any():
            deadlines = deadlines[~expired]
        assert op.sides[0].size == len(deadlines)
