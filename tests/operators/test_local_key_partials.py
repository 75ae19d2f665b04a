"""The local stage of a two-phase updating GROUP BY (``LocalKeyPartials``): whether it emits
each batch's partials at once or holds the rows of many batches in ``DensePartials`` arrays
(count/min/max per integer key) until a row count, a time, a barrier or the end, what it
emits merges to the partial states of all its rows, in the schema it announced, and
nothing is held after ``release_held`` or ``on_end`` (a checkpoint never misses rows)."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from caudal.operators import local_window_partials as lwp
from caudal.operators.aggregator import Aggregator
from caudal.operators.base import OperatorContext
from caudal.operators.local_window_partials import LocalKeyPartials
from caudal.plan.aggregates import AggCall

CALLS = [AggCall("count", (), pa.int64()), AggCall("count", ("v",), pa.int64()),
         AggCall("min", ("v",), pa.int64()), AggCall("max", ("v",), pa.int64())]
#: not DensePartials' (a sum): every batch's partials at once, whatever the hold
SUM_CALLS = [AggCall("sum", ("v",), pa.int64()), AggCall("max", ("v",), pa.int64())]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.lists(st.tuples(st.integers(-5, 60), st.integers(-2**40, 2**40)),
                                   max_size=80),
                          st.sampled_from([0, 50_000, 10**7, -(10**7)]),   # where keys are
                          st.sampled_from([1, 1, 1000]),                   # how far apart
                          st.sampled_from([None, None, None, "k", "v"]),   # a NULL in
                          st.sampled_from(["", "", "time", "barrier"])),   # then
                min_size=1, max_size=12),
       st.sampled_from([pa.int64(), pa.int32(), pa.int16()]),
       st.sampled_from([0, 1_000_000]), st.sampled_from([64, 1 << 20]), st.booleans())
def test_what_it_emits_merges_to_the_partials_of_all_rows(batches, key_type, hold_us,
                                                          hold_rows, dense_calls):
    schema = pa.schema([("k", key_type), ("v", pa.int64())])
    calls = CALLS if dense_calls else SUM_CALLS
    op = LocalKeyPartials(["k"], calls, None, schema, hold_us=hold_us)
    op.open(OperatorContext(subtask=0, parallelism=2))
    assert (op.dense is not None) == (dense_calls and hold_us > 0)
    low, high = (-(2**15), 2**15 - 1) if key_type == pa.int16() else (-(2**31), 2**31 - 1)
    tables, emitted = [], []
    saved = lwp.HOLD_ROWS
    lwp.HOLD_ROWS = hold_rows
    try:
        for rows, offset, scale, null, then in batches:
            keys: list = [min(max(k * scale + offset, low), high) for k, _ in rows]
            values: list = [v for _, v in rows]
            if rows and null is not None:
                (keys if null == "k" else values)[0] = None
            table = pa.table({"k": pa.array(keys, key_type), "v": pa.array(values, pa.int64())})
            tables.append(table)
            batch = table.combine_chunks().to_batches()[0] if rows else \
                pa.RecordBatch.from_pylist([], schema=schema)
            emitted += op.process(batch)
            if then == "time":   # the hold ran out while the source was idle
                if op.held_since is not None:
                    op.held_since -= 2.0
                emitted += op.on_processing_time(0)
                assert op.held_since is None
            elif then == "barrier":
                emitted += op.release_held()
                assert op.held_since is None and (op.dense is None or op.dense.rows == 0)
        emitted += op.on_end()
    finally:
        lwp.HOLD_ROWS = saved
    assert op.held_since is None and (op.dense is None or op.dense.rows == 0)
    for b in emitted:
        assert b.schema.equals(op.output_schema)
    everything = pa.concat_tables(tables)
    agg = Aggregator(calls, schema, None)
    expected = agg.partial(pa.table({"k": everything.column("k"), **agg.prepare(everything)}),
                           ["k"])
    got = agg.merge(pa.Table.from_batches(emitted, schema=op.output_schema), ["k"]) \
        if emitted else expected.slice(0, 0)
    assert got.sort_by("k").equals(expected.sort_by("k"))


def test_rows_are_held_until_the_hold_runs_out():
    """With a hold, a batch's partials are not emitted at once; after ``hold_us`` they are
    (``on_processing_time``, fired by the source loop even when no batch comes)."""
    schema = pa.schema([("k", pa.int64()), ("v", pa.int64())])
    op = LocalKeyPartials(["k"], CALLS, None, schema, hold_us=1_000_000)
    op.open(OperatorContext(subtask=0, parallelism=2))
    batch = pa.record_batch({"k": [1, 2, 1], "v": [5, 6, 7]})
    assert list(op.process(batch)) == []
    assert list(op.on_processing_time(0)) == []   # not yet
    op.held_since -= 2.0
    out = pa.Table.from_batches(op.on_processing_time(0)).sort_by("k")
    assert out.column("k").to_pylist() == [1, 2]
    assert out.num_rows == 2 and op.held_since is None


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.lists(st.tuples(st.integers(-5, 60), st.integers(-2**40, 2**40)),
                                   max_size=80),
                          st.sampled_from([0, 50_000, 10**7, -(10**7)]),   # where keys are
                          st.sampled_from([1, 1, 1000]),                   # how far apart
                          st.sampled_from([None, None, None, "k", "v"]),   # a NULL in
                          st.integers(0, 1),                               # which upstream
                          st.sampled_from(["", "", "", "release", "coalesce", "take"])),
                min_size=1, max_size=14),
       st.sampled_from([pa.int64(), pa.int32(), pa.int16()]), st.booleans())
def test_partials_folded_downstream_equal_the_partials_of_all_rows(batches, key_type,
                                                                  dense_calls):
    """Two upstream local stages' partials (held or per batch, with NULL states from
    batches with NULLs) merged by the operator downstream (``_Merged(partial_input=True)``,
    also a batch that coalesces several upstream batches, where keys repeat) give the
    partial states of all the rows."""
    from caudal.operators.updating_aggregate import _Merged

    schema = pa.schema([("k", key_type), ("v", pa.int64())])
    calls = CALLS if dense_calls else SUM_CALLS
    ups = [LocalKeyPartials(["k"], calls, None, schema, hold_us=1_000_000) for _ in range(2)]
    state = _Merged(["k"], calls, schema, None, partial_input=True)
    low, high = (-(2**15), 2**15 - 1) if key_type == pa.int16() else (-(2**31), 2**31 - 1)
    tables, taken, queued = [], [], []

    def deliver(out) -> None:
        for b in out:
            assert b.schema.equals(ups[0].output_schema)
            state.add({}, b, None)

    for rows, offset, scale, null, up, then in batches:
        keys: list = [min(max(k * scale + offset, low), high) for k, _ in rows]
        values: list = [v for _, v in rows]
        if rows and null is not None:
            (keys if null == "k" else values)[0] = None
        table = pa.table({"k": pa.array(keys, key_type), "v": pa.array(values, pa.int64())})
        tables.append(table)
        if rows:
            queued += ups[up].process(table.combine_chunks().to_batches()[0])
        if then == "release":
            queued += ups[up].release_held()
        elif then == "coalesce" and len(queued) > 1:   # the runtime merged queued batches
            queued = [pa.concat_batches(queued)]
        elif then == "take":
            deliver(queued)
            queued = []
            state._compact()
            taken.extend(state.pending)
            state.pending = []
    deliver(queued + ups[0].on_end() + ups[1].on_end())
    state._compact()
    taken.extend(state.pending)
    everything = pa.concat_tables(tables)
    agg = Aggregator(calls, schema, None)
    expected = agg.partial(pa.table({"k": everything.column("k"), **agg.prepare(everything)}),
                           ["k"])
    got = agg.merge(pa.concat_tables(taken), ["k"]) if taken else expected.slice(0, 0)
    assert got.sort_by("k").equals(expected.sort_by("k"))
