"""The updating aggregate's store for percentiles of integers (``_Percentiles``): every
flush emits exactly what the general store (``_Merged``, the reference) emits, changelog row
for row, whatever the batches, flushes, NULLs and FILTERs; a snapshot restores at another
parallelism, from and into either store, never sharing memory with the live state; and the
answer equals DuckDB's with a flush after every batch, at parallelism 1 and 2."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caudal.operators import updating_aggregate as ua
from caudal.operators.base import OperatorContext
from caudal.operators.key_index import SlotTable
from caudal.plan.aggregates import AggCall
from caudal.plan.changelog import OP
from caudal.state.key_groups import split_by_subtask
from caudal.state.rescale import concat_states
from tests.changelog_helpers import fold, run_changelog

IN = pa.schema([("k", pa.int64()), ("x", pa.int64()), ("f", pa.bool_())])
CALLS = [AggCall("percentile_cont", ("x",), pa.float64(), options={"fraction": 0.5}),
         AggCall("percentile_cont", ("x",), pa.float64(),
                 options={"fraction": 0.9, "descending": True}),
         AggCall("percentile_disc", ("x",), pa.int64(), options={"fraction": 0.07}),
         AggCall("percentile_cont", ("x",), pa.float64(), filter="f",
                 options={"fraction": 0.25})]
OUT = pa.schema([("k", pa.int64()), ("med", pa.float64()), ("p90", pa.float64()),
                 ("d07", pa.int64()), ("fq", pa.float64())])


def _operator(generic: bool, monkeypatch: pytest.MonkeyPatch | None = None,
              flush_us: int = 0) -> ua.UpdatingAggregate:
    if generic:
        assert monkeypatch is not None
        with monkeypatch.context() as m:
            m.setattr(ua._Percentiles, "applies", staticmethod(lambda *a: False))
            op = ua.UpdatingAggregate(["k"], CALLS, IN, OUT, flush_us=flush_us)
        assert type(op.state) is ua._Merged
        op.state.remember = False   # the reference recomputes its retractions' values
    else:
        op = ua.UpdatingAggregate(["k"], CALLS, IN, OUT, flush_us=flush_us)
        assert type(op.state) is ua._Percentiles
    return op


def _rows(batches: list[pa.RecordBatch]) -> list[tuple]:
    """The changes of a flush as a multiset (exact values, NaN-free here)."""
    rows = [tuple(r.values()) for b in batches for r in b.to_pylist()]
    return sorted(rows, key=repr)


@st.composite
def streams(draw) -> list[pa.RecordBatch]:
    keys = draw(st.integers(1, 12))
    big = draw(st.booleans())
    bound = 2**61 if big else 1000
    batches = []
    for _ in range(draw(st.integers(1, 8))):
        n = draw(st.integers(1, 30))
        rows = draw(st.lists(st.tuples(st.integers(0, keys - 1),
                                       st.one_of(st.none(), st.integers(-bound, bound)),
                                       st.booleans()), min_size=n, max_size=n))
        batches.append(pa.record_batch([pa.array([r[0] for r in rows], pa.int64()),
                                        pa.array([r[1] for r in rows], pa.int64()),
                                        pa.array([r[2] for r in rows])], schema=IN))
    return batches


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=streams(), flush_every=st.integers(1, 3), piece=st.sampled_from([1 << 19, 2, 7]))
def test_flushes_equal_the_general_store(monkeypatch, batches, flush_every, piece):
    monkeypatch.setattr(ua, "_PIECE", piece)   # (small: a flush sorts in several pieces)
    fast, ref = _operator(False), _operator(True, monkeypatch)
    for op in (fast, ref):
        op.flush_us = 10**12
        op.open(OperatorContext())
    for i, batch in enumerate(batches):
        got = list(fast.process(batch))
        want = list(ref.process(batch))
        if (i + 1) % flush_every == 0:
            got, want = got + fast.flush(), want + ref.flush()
        assert _rows(got) == _rows(want)
    assert _rows(fast.on_end()) == _rows(ref.on_end())


def _feed(ops, batches, emitted):
    for batch in batches:
        for target, part in split_by_subtask(batch, ["k"], len(ops)):
            emitted.extend(ops[target].process(part))


def _opened(factory, p):
    ops = []
    for i in range(p):
        op = factory()
        op.open(OperatorContext(subtask=i, parallelism=p))
        ops.append(op)
    return ops


def _restored_run(old, new, batches, split, old_p, new_p):
    """Feed ``batches[:split]`` to ``old_p`` subtasks of ``old``, snapshot, restore into
    ``new_p`` subtasks of ``new``, feed the rest: the folded output."""
    emitted: list[pa.RecordBatch] = []
    before = _opened(old, old_p)
    _feed(before, batches[:split], emitted)
    snaps = [op.snapshot(1) for op in before]
    copies = [{n: t.to_pylist() if isinstance(t, pa.Table) else None for n, t in s.items()}
              for s in snaps]
    _feed(before, batches[split:], [])   # the live state moves on …
    for op in before:
        op.on_end()
    for snap, copy in zip(snaps, copies):   # … and the snapshot does not
        assert {n: t.to_pylist() if isinstance(t, pa.Table) else None
                for n, t in snap.items()} == copy
    names = {n for s in snaps for n in s}
    state = {n: concat_states([s[n] for s in snaps if n in s]) for n in names}
    after = _opened(new, new_p)
    for op in after:
        op.restore(state)
    _feed(after, batches[split:], emitted)
    for op in after:
        emitted.extend(op.on_end())
    return fold(pa.concat_tables([pa.Table.from_batches([b]) for b in emitted if b.num_rows]))


def _exact(table: pa.Table) -> list[tuple]:
    return sorted((tuple(r.values()) for r in table.drop_columns(
        [c for c in table.column_names if c == OP]).to_pylist()), key=repr)


@pytest.mark.parametrize("old_p,new_p", [(1, 1), (1, 2), (2, 3), (3, 1)])
@pytest.mark.parametrize("stores", ["fast", "general-to-fast", "fast-to-general"])
def test_restores_and_rescales(monkeypatch, old_p, new_p, stores):
    rng = np.random.default_rng(old_p * 10 + new_p)
    batches = []
    for _ in range(30):
        n = 40
        x = rng.integers(-50, 50, n)
        batches.append(pa.record_batch(
            [pa.array(rng.integers(0, 25, n)), pa.array(x, mask=rng.random(n) < 0.1),
             pa.array(rng.random(n) < 0.5)], schema=IN))

    def fast():
        return _operator(False)

    def general():
        return _operator(True, monkeypatch)

    reference = _restored_run(general, general, batches, len(batches), 1, 1)
    old, new = {"fast": (fast, fast), "general-to-fast": (general, fast),
                "fast-to-general": (fast, general)}[stores]
    got = _restored_run(old, new, batches, 13, old_p, new_p)
    assert _exact(got) == _exact(reference)
    assert reference.num_rows == 25


def test_pending_rows_survive_a_snapshot(monkeypatch):
    """Rows not yet flushed are snapshotted as _Merged keeps them (lists per key) and come
    back as rows: a key whose values are all NULL is still a group."""
    batch = pa.record_batch([pa.array([1, 2, 2, 3]), pa.array([5, None, None, 7]),
                             pa.array([True, False, True, True])], schema=IN)
    op = _operator(False, flush_us=10**12)
    op.open(OperatorContext())
    op.process(batch)
    snap = op.snapshot(1)
    assert "pending" in snap and "table" not in snap
    for factory in (lambda: _operator(False), lambda: _operator(True, monkeypatch)):
        restored = factory()
        restored.open(OperatorContext())
        restored.restore(snap)
        out = _exact(fold(pa.Table.from_batches(restored.on_end())))
        assert out == [(1, 5.0, 5.0, 5, 5.0), (2, None, None, None, None),
                       (3, 7.0, 7.0, 7, 7.0)]


def test_one_list_kept_per_argument():
    """median(x) and percentile_cont(0.9) ... (ORDER BY x) keep one list: the second
    column of the store shares the first's."""
    op = _operator(False)
    op.open(OperatorContext())
    op.process(pa.record_batch([pa.array([1, 1]), pa.array([3, 4]), pa.array([True] * 2)],
                               schema=IN))
    store = op.state.store
    assert isinstance(store, SlotTable)
    names = [f"{k.p}_v" for k in op.state.aggregator.kernels]
    assert store.lists(names[0]) is store.lists(names[1]) is store.lists(names[2])
    assert store.lists(names[3]) is not store.lists(names[0])   # the FILTERed one
    table = store.table()
    assert table.column(names[1]).to_pylist() == table.column(names[0]).to_pylist() == [[3, 4]]


@pytest.mark.parametrize("parallelism", [1, 2])
def test_flush_after_every_batch_equals_duckdb(tmp_path, parallelism):
    rng = np.random.default_rng(parallelism)
    n = 3000
    table = pa.table({"k": rng.integers(0, 40, n), "v": pa.array(
        rng.integers(-10**6, 10**6, n), mask=rng.random(n) < 0.05)})
    src = tmp_path / "in"
    src.mkdir()
    pq.write_table(table, src / "a.parquet", row_group_size=100)
    aggs = ("median(v) AS med, percentile_cont(0.9) WITHIN GROUP (ORDER BY v) AS p90, "
            "percentile_cont(0.33) WITHIN GROUP (ORDER BY v DESC) AS c33, "
            "percentile_disc(0.07) WITHIN GROUP (ORDER BY v) AS d07, "
            "median(v) FILTER (WHERE k % 3 = 0) AS fm")
    got = run_changelog(
        f"CREATE TABLE t (k BIGINT, v BIGINT) WITH (connector = 'filesystem', path = "
        f"'{src}', format = 'parquet');", f"SELECT k, {aggs} FROM t GROUP BY k",
        tmp_path / "out", parallelism=parallelism, settings="SET updating_flush = '0';",
        batch_rows=100)
    con = duckdb.connect()
    con.register("t", table)
    want = con.sql(f"SELECT k, {aggs} FROM t GROUP BY k").to_arrow_table()
    assert _exact(fold(got)) == _exact(want)


def test_ttl_forgets_idle_keys_as_the_general_store(monkeypatch):
    from caudal.testing import manual_clock

    def batch(ks, xs):
        return pa.record_batch([pa.array(ks, pa.int64()), pa.array(xs, pa.int64()),
                                pa.array([True] * len(ks))], schema=IN)

    with monkeypatch.context() as m:
        m.setattr(ua._Percentiles, "applies", staticmethod(lambda *a: False))
        ref = ua.UpdatingAggregate(["k"], CALLS, IN, OUT, flush_us=0, ttl_us=30_000)
    fast = ua.UpdatingAggregate(["k"], CALLS, IN, OUT, flush_us=0, ttl_us=30_000)
    assert type(fast.state) is ua._Percentiles and type(ref.state) is ua._Merged
    outs: dict[str, list] = {"fast": [], "ref": []}
    # processing time under the test's control: on a loaded machine a real sleep let one
    # operator's keys expire between the two operators' steps and not the other's
    with manual_clock() as clock:
        for op in (fast, ref):
            op.open(OperatorContext())
        for step in ([1, 2, 2], [10, 20, 40]), ([3], [5]), ([2, 3], [60, 6]), ([1], [7]):
            for name, op in (("fast", fast), ("ref", ref)):
                outs[name].append(_rows(list(op.process(batch(*step)))))
            clock.advance("1ms")
            if step[0] == [3]:
                clock.advance("50ms")   # every key is forgotten before the next flush
    assert outs["fast"] == outs["ref"]
    assert fast.state_rows() == ref.state_rows() == 3
    assert outs["fast"][2] == [(2, 60.0, 60.0, 60, 60.0, 1), (3, 6.0, 6.0, 6, 6.0, 1)]


TEXT_IN = pa.schema([("s", pa.string()), ("k", pa.int32()), ("x", pa.int32()),
                     ("f", pa.bool_())])
TEXT_CALLS = [AggCall("percentile_cont", ("x",), pa.float64(), options={"fraction": 0.5}),
              AggCall("percentile_disc", ("x",), pa.int32(), options={"fraction": 0.9})]


@pytest.mark.parametrize("keys", [["s"], ["s", "k"], []])
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.one_of(st.none(), st.sampled_from(["a", "b", "ü"])),
                               st.integers(-2, 2), st.one_of(st.none(), st.integers(-99, 99))),
                     min_size=1, max_size=80), cut=st.integers(1, 9))
def test_text_keys_several_keys_and_no_key_equal_the_general_store(monkeypatch, keys, rows,
                                                                    cut):
    out = pa.schema([*[TEXT_IN.field(k) for k in keys], ("med", pa.float64()),
                     ("d90", pa.int32())])
    ops = []
    for generic in (False, True):
        with monkeypatch.context() as m:
            if generic:
                m.setattr(ua._Percentiles, "applies", staticmethod(lambda *a: False))
            op = ua.UpdatingAggregate(keys, TEXT_CALLS, TEXT_IN, out, flush_us=0)
        assert (type(op.state) is ua._Merged) == generic
        op.open(OperatorContext())
        ops.append(op)
    table = pa.table({"s": pa.array([r[0] for r in rows], pa.string()),
                      "k": pa.array([r[1] for r in rows], pa.int32()),
                      "x": pa.array([r[2] for r in rows], pa.int32()),
                      "f": pa.array([True] * len(rows))}, schema=TEXT_IN)
    for batch in table.to_batches(max_chunksize=cut):
        assert _rows(list(ops[0].process(batch))) == _rows(list(ops[1].process(batch)))
    assert _rows(ops[0].on_end()) == _rows(ops[1].on_end())


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(st.tuples(st.integers(0, 30), st.integers(-2**40, 2**40)), max_size=200),
       piece=st.integers(1, 40), shift=st.sampled_from([0, 2**62, -2**62]))
def test_grouped_sorted_in_pieces_is_a_sort_by_group_then_value(rows, piece, shift):
    """One sort of (group, value) keys, and (values spread wider than an int64 key holds:
    the shift moves some of them) the sorts in pieces."""
    import unittest.mock

    parents = np.array([r[0] for r in rows], dtype=np.int64)
    flat = np.array([r[1] + (shift if r[1] % 3 == 0 else 0) for r in rows], dtype=np.int64)
    with unittest.mock.patch.object(ua, "_PIECE", piece):
        ordered, counts = ua._grouped_sorted(flat, parents, 31, pa.int64())
    order = np.lexsort((flat, parents))
    assert ordered.tolist() == flat[order].tolist()
    assert counts.tolist() == np.bincount(parents, minlength=31).tolist()
