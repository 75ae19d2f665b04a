"""Aggregate kernels: partial states of arbitrary slices, merged in arbitrary groupings, give
DuckDB's aggregate over all rows (merge is associative), with NULLs and FILTER."""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pyarrow as pa
from hypothesis import example, given, settings
from hypothesis import strategies as st

from caudal.operators.aggregator import Aggregator
from caudal.plan.aggregates import AggCall

# (AggCall, DuckDB expression)
CASES = [
    (AggCall("count", (), pa.int64()), "count(*)"),
    (AggCall("count", ("x",), pa.int64()), "count(x)"),
    (AggCall("count", (), pa.int64(), filter="f"), "count(*) FILTER (WHERE f)"),
    (AggCall("sum", ("i",), pa.int64()), "sum(i)"),
    (AggCall("sum", ("x",), pa.float64(), filter="f"), "sum(x) FILTER (WHERE f)"),
    (AggCall("avg", ("x",), pa.float64()), "avg(x)"),
    (AggCall("min", ("s",), pa.string()), "min(s)"),
    (AggCall("max", ("i",), pa.int64(), filter="f"), "max(i) FILTER (WHERE f)"),
    (AggCall("var_samp", ("x",), pa.float64()), "var_samp(x)"),
    (AggCall("var_pop", ("x",), pa.float64()), "var_pop(x)"),
    (AggCall("stddev_samp", ("x",), pa.float64()), "stddev_samp(x)"),
    (AggCall("stddev_pop", ("x",), pa.float64(), filter="f"), "stddev_pop(x) FILTER (WHERE f)"),
    (AggCall("bool_and", ("b",), pa.bool_()), "bool_and(b)"),
    (AggCall("bool_or", ("b",), pa.bool_()), "bool_or(b)"),
    (AggCall("first_value", ("i",), pa.int64()),
     "arg_min(i, ts) FILTER (WHERE i IS NOT NULL)"),
    (AggCall("last_value", ("s",), pa.string()),
     "arg_max(s, ts) FILTER (WHERE s IS NOT NULL)"),
    (AggCall("count", ("i",), pa.int64(), distinct=True), "count(DISTINCT i)"),
    (AggCall("count", ("x",), pa.int64(), distinct=True), "count(DISTINCT x)"),
    (AggCall("sum", ("i",), pa.int64(), distinct=True), "sum(DISTINCT i)"),
    (AggCall("avg", ("i",), pa.float64(), distinct=True, filter="f"),
     "avg(DISTINCT i) FILTER (WHERE f)"),
    (AggCall("approx_count_distinct", ("s",), pa.int64()), "count(DISTINCT s)"),
    (AggCall("string_agg", ("s",), pa.string(), options={"separator": ";"}),
     "string_agg(s, ';')"),
    (AggCall("bit_and", ("i",), pa.int64()), "bit_and(i)"),
    (AggCall("bit_or", ("i",), pa.int64(), filter="f"), "bit_or(i) FILTER (WHERE f)"),
    (AggCall("bit_xor", ("i",), pa.int64()), "bit_xor(i)"),
    # ts is distinct: the ORDER BY is a total order, NULL values kept
    (AggCall("array_agg", ("i", "ts"), pa.list_(pa.int64())), "array_agg(i ORDER BY ts)"),
    (AggCall("array_agg", ("s", "ts"), pa.list_(pa.string()), filter="f",
             options={"descending": True, "nulls_first": True}),
     "array_agg(s ORDER BY ts DESC) FILTER (WHERE f)"),
]


def data(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({
        "k": pa.array(rng.integers(0, 12, n), pa.int64(), mask=rng.random(n) < 0.05),
        "x": pa.array(rng.normal(1e6, 3, n), pa.float64(), mask=rng.random(n) < 0.1),
        "i": pa.array(rng.integers(0, 40, n), pa.int64(), mask=rng.random(n) < 0.1),
        "b": pa.array(rng.random(n) < 0.7, pa.bool_(), mask=rng.random(n) < 0.3),
        "s": pa.array([f"s{v}" for v in rng.integers(0, 25, n)], pa.string(),
                      mask=rng.random(n) < 0.2),
        "f": pa.array(rng.random(n) < 0.6, pa.bool_(), mask=rng.random(n) < 0.1),
        "ts": pa.array(rng.permutation(n).astype(np.int64)),  # distinct event times
    })


def close(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-7, abs_tol=1e-7)
    return a == b


@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 600), seed=st.integers(0, 10_000),
       cuts=st.lists(st.integers(1, 200), max_size=8), regroup=st.integers(1, 5))
def test_partials_merged_in_any_grouping_match_duckdb(n, seed, cuts, regroup):
    table = data(n, seed)
    agg = Aggregator([c for c, _ in CASES], table.schema, "ts")
    # partial states of uneven slices
    parts, start = [], 0
    for size in cuts + [n]:
        piece = table.slice(start, size)
        start += piece.num_rows
        if piece.num_rows:
            parts.append(agg.partial(pa.table({"k": piece["k"], **agg.prepare(piece)}), ["k"]))
        if start >= n:
            break
    if not parts:
        return
    # merge in a tree of random groupings (associativity)
    while len(parts) > 1:
        merged = agg.merge(pa.concat_tables(parts[:regroup + 1]), ["k"])
        parts = [merged] + parts[regroup + 1:]
    state = agg.merge(parts[0], ["k"])
    got = dict(zip(state["k"].to_pylist(), zip(*[a.to_pylist() for a in agg.final(state)])))
    con = duckdb.connect()
    con.register("t", table)
    exprs = ", ".join(sql for _, sql in CASES)
    want = {r[0]: r[1:] for r in con.sql(f"SELECT k, {exprs} FROM t GROUP BY k").fetchall()}
    assert got.keys() == want.keys()
    for key in want:
        for (call, sql), a, b in zip(CASES, got[key], want[key]):
            if call.func == "string_agg" and a is not None and b is not None:
                a, b = sorted(a.split(";")), sorted(b.split(";"))
            assert close(a, b), (key, sql, a, b)


def test_distinct_pairs_of_every_value_kind():
    from caudal.operators.aggregate_kernels import _distinct_pairs
    from caudal.types import TIMESTAMP

    g = np.array([2, 0, 2, 1, 0, 2, 0])
    cases = [
        pa.array([5, 5, 6, -7, 5, 5, 2**62], pa.int64()),  # a span too wide: the fallback
        pa.array([5, 5, 6, -7, 5, 5, 9], pa.int32()),
        pa.array([5, 5, 6, -7, 5, 5, 9], pa.int64()).cast(TIMESTAMP),
        pa.array([0.5, 0.5, 1.5, -7.0, 0.5, 0.5, 9.0]),
        pa.array(["a", "a", "b", "c", "a", "a", "d"]),
    ]
    for values in cases:
        pg, out = _distinct_pairs(g, values)
        assert out.type == values.type
        got = sorted(zip(pg.tolist(), out.to_pylist()))
        assert got == sorted(set(zip(g.tolist(), values.to_pylist()))), values.type
        assert list(pg) == sorted(pg)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-3, 40), st.integers(-2**62, 2**62)), min_size=1,
                max_size=300),
       st.sampled_from([pa.int64(), pa.int32()]), st.booleans())
def test_dense_group_by_equals_acero(rows, key_type, wide):
    """count(*), count, min and max grouped by one integer key of small span run in NumPy
    (Aggregator._dense_run); partial and merge states equal Acero's group_by."""
    keys = [k * (10**6 if wide else 1) for k, _ in rows]
    table = pa.table({"k": pa.array(keys, key_type), "v": pa.array([v for _, v in rows])})
    calls = [AggCall("count", (), pa.int64()), AggCall("count", ("v",), pa.int64()),
             AggCall("min", ("v",), pa.int64()), AggCall("max", ("v",), pa.int64())]
    agg = Aggregator(calls, table.schema, None)
    columns = {"k": table.column("k"), **agg.prepare(table)}
    dense = agg.partial(pa.table(columns), ["k"]).sort_by("k")
    merged = agg.merge(pa.concat_tables([dense, dense]), ["k"]).sort_by("k")
    hashed = Aggregator(calls, table.schema, None)
    hashed._dense_run = lambda *a: None  # type: ignore[method-assign]
    expected = hashed.partial(pa.table(columns), ["k"]).sort_by("k")
    assert dense.equals(expected)
    assert merged.equals(hashed.merge(pa.concat_tables([expected, expected]), ["k"])
                         .sort_by("k"))


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.lists(st.tuples(st.integers(-5, 60), st.integers(-2**40, 2**40)),
                                   max_size=80),
                          st.sampled_from([0, 50_000, 10**7, -(10**7)]),   # where keys are
                          st.sampled_from([1, 1, 1000]),                   # how far apart
                          st.sampled_from([None, None, None, "k", "v"]),   # a NULL in
                          st.booleans()),                                  # taken after
                min_size=1, max_size=12),
       st.sampled_from([pa.int64(), pa.int32(), pa.uint32(), pa.int16()]))
@example([([(1, 1), (2, 2)], 0, 1, None, False), ([(1, 5)], 10**7, 1, None, False),
          ([(3, 7), (-4, 1)], -(10**7), 1, None, False), ([(4, 1)], 50_000, 1, None, True),
          ([(0, 9)], 50_000, 1, None, False), ([(-5, 9)], 50_000, 1000, None, False),
          ([(2, 3)], 50_000, 1, None, False)], pa.int64())
def test_dense_partials_equal_the_partials_of_all_rows(batches, key_type):
    """``DensePartials`` (count(*), count, min, max per integer key, folded in NumPy across
    batches; batches with NULLs, keys that jump far or spread wide are refused and the
    updating aggregate falls back to the hash path) gives, over any sequence of batches
    and takes, the partial states ``Aggregator.partial`` gives for all the rows at once."""
    from caudal.operators.updating_aggregate import _Merged

    schema = pa.schema([("k", key_type), ("v", pa.int64())])
    calls = [AggCall("count", (), pa.int64()), AggCall("count", ("v",), pa.int64()),
             AggCall("min", ("v",), pa.int64()), AggCall("max", ("v",), pa.int64())]
    state = _Merged(["k"], calls, schema, None)
    assert state.dense is not None
    low, high = (0, 2**32 - 1) if key_type == pa.uint32() else \
        (-(2**15), 2**15 - 1) if key_type == pa.int16() else (-(2**31), 2**31 - 1)
    tables, taken = [], []
    for rows, offset, scale, null, take in batches:
        keys: list = [min(max(k * scale + offset, low), high) for k, _ in rows]
        values: list = [v for _, v in rows]
        if rows and null is not None:
            (keys if null == "k" else values)[0] = None
        table = pa.table({"k": pa.array(keys, key_type), "v": pa.array(values, pa.int64())})
        tables.append(table)
        state.add({"k": table.column("k")}, table.combine_chunks().to_batches()[0]
                  if rows else pa.RecordBatch.from_pylist([], schema=schema), None)
        if take:
            state._compact()
            taken.extend(state.pending)
            state.pending = []
    state._compact()
    taken.extend(state.pending)
    everything = pa.concat_tables(tables)
    agg = Aggregator(calls, schema, None)
    expected = agg.partial(pa.table({"k": everything.column("k"), **agg.prepare(everything)}),
                           ["k"])
    got = agg.merge(pa.concat_tables(taken), ["k"]) if taken else expected.slice(0, 0)
    assert got.sort_by("k").equals(expected.sort_by("k"))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-2**31, 2**31 - 1), min_size=1, max_size=60),
       st.sampled_from([pa.int64(), pa.int32()]), st.booleans())
def test_dense_codes_are_the_ranks_of_the_distinct_values(values, t, narrow):
    from caudal.operators.aggregate_kernels import dense_codes

    if narrow:   # a range the rows cover: direct addressing applies
        values = [v % 97 - 40 for v in values]
    got = dense_codes(pa.array(values, t))
    distinct, ranks = np.unique(np.array(values), return_inverse=True)
    if got is None:
        assert max(values) - min(values) > 4 * len(values) + 1024
        return
    assert got[0].type == t and got[0].to_pylist() == distinct.tolist()
    assert got[1].tolist() == ranks.tolist()


def test_dense_codes_refuse_nulls_and_other_types():
    from caudal.operators.aggregate_kernels import dense_codes

    assert dense_codes(pa.array([1, None, 2])) is None
    assert dense_codes(pa.array([1, 2], pa.uint64())) is None
    assert dense_codes(pa.array(["a", "b"])) is None
