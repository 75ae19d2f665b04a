"""Snapshots of the updating aggregate and the joins: a job snapshotted mid-stream and
restored — at the same or another parallelism, each new subtask keeping its own key groups
from the concatenated old tables — emits exactly what an uninterrupted run emits."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from caudal.operators.base import OperatorContext
from caudal.operators.interval_join import IntervalJoin
from caudal.operators.updating_aggregate import UpdatingAggregate
from caudal.operators.updating_join import UpdatingJoin
from caudal.operators.window_join import WindowJoin
from caudal.plan.aggregates import AggCall
from caudal.plan.changelog import OP, OP_TYPE
from caudal.plan.expressions import Call, Column
from caudal.state.key_groups import split_by_subtask
from caudal.state.rescale import concat_states
from tests.changelog_helpers import fold
from tests.helpers import normalized_rows

TS = pa.timestamp("us", tz="UTC")


def _run(factory, batches, keys, split: int, old_p: int, new_p: int) -> pa.Table:
    """Feed ``batches`` (input, batch) to ``old_p`` subtasks, snapshot after ``split``,
    restore into ``new_p`` subtasks and feed the rest; the folded output."""
    emitted: list[pa.RecordBatch] = []

    def route(ops, items, p):
        for side, batch in items:
            for target, part in split_by_subtask(batch, keys[side], p):
                emitted.extend(ops[target].process(part, side))

    def finish(ops):
        for op in ops:
            emitted.extend(op.on_watermark(2**62))
            emitted.extend(op.on_end())

    old = []
    for i in range(old_p):
        op = factory()
        op.open(OperatorContext(subtask=i, parallelism=old_p))
        old.append(op)
    route(old, batches[:split], old_p)
    snaps = [op.snapshot(1) for op in old]
    names = {n for s in snaps for n in s}
    state = {n: concat_states([s[n] for s in snaps if n in s]) for n in names}
    new = []
    for i in range(new_p):
        op = factory()
        op.open(OperatorContext(subtask=i, parallelism=new_p))
        op.restore(state)
        new.append(op)
    route(new, batches[split:], new_p)
    finish(new)
    tables = [pa.Table.from_batches([b]) for b in emitted if b.num_rows]
    if OP not in tables[0].column_names:
        return pa.concat_tables(tables)
    return fold(pa.concat_tables(tables))


def _changelog(rng, n: int, keys: int) -> list[pa.RecordBatch]:
    k = rng.integers(0, keys, n)
    x = rng.integers(0, 50, n)
    ops = np.ones(n, dtype=np.int8)
    batches = []
    for start in range(0, n, 50):
        sl = slice(start, start + 50)
        batches.append(pa.record_batch([pa.array(k[sl]), pa.array(x[sl]),
                                        pa.array(ops[sl], OP_TYPE)], names=["k", "x", OP]))
    # retract the first batch again at the end
    first = batches[0]
    batches.append(first.set_column(2, OP, pa.array(np.full(first.num_rows, -1, np.int8),
                                                    OP_TYPE)))
    return batches


AGG_IN = pa.schema([("k", pa.int64()), ("x", pa.int64())])
AGG_OUT = pa.schema([("k", pa.int64()), ("n", pa.int64()), ("mx", pa.int64()),
                     ("d", pa.int64())])
CALLS = [AggCall("count", (), pa.int64()), AggCall("max", ("x",), pa.int64()),
         AggCall("count", ("x",), pa.int64(), distinct=True)]


@pytest.mark.parametrize("updating", [False, True])
@pytest.mark.parametrize("old_p,new_p", [(1, 1), (2, 3), (3, 1)])
def test_updating_aggregate_restores_and_rescales(updating, old_p, new_p):
    rng = np.random.default_rng(5)
    batches = _changelog(rng, 800, 40)
    if not updating:
        batches = [b.drop_columns([OP]) for b in batches[:-1]]
    items = [(0, b) for b in batches]

    def factory():
        return UpdatingAggregate(["k"], CALLS, AGG_IN, AGG_OUT, updating_input=updating,
                                 flush_us=10**12 if old_p == 1 else 0)

    reference = _run(factory, items, [["k"]], len(items), 1, 1)
    got = _run(factory, items, [["k"]], len(items) // 2, old_p, new_p)
    assert normalized_rows(got) == normalized_rows(reference)
    assert reference.num_rows == 40


LEFT = pa.schema([("k", pa.int64()), ("x", pa.int64()), ("t", TS)])
RIGHT = pa.schema([("k", pa.int64()), ("y", pa.int64()), ("u", TS)])
OUT = pa.schema([("k", pa.int64()), ("x", pa.int64()), ("t", TS), ("k_r", pa.int64()),
                 ("y", pa.int64()), ("u", TS)])
RENAME = {"k": "k_r"}


def _sides(rng, n: int) -> list[tuple[int, pa.RecordBatch]]:
    items = []
    for start in range(0, n, 40):
        t = np.sort(rng.integers(start * 1000, (start + 40) * 1000, 40))
        for side, schema in ((0, LEFT), (1, RIGHT)):
            items.append((side, pa.record_batch(
                [pa.array(rng.integers(0, 25, 40)), pa.array(rng.integers(0, 9, 40)),
                 pa.array(t + side * 7, TS)], schema=schema)))
    return items


@pytest.mark.parametrize("kind", ["inner", "left", "full"])
@pytest.mark.parametrize("old_p,new_p", [(2, 3), (3, 2)])
def test_joins_restore_and_rescale(kind, old_p, new_p):
    rng = np.random.default_rng(9)
    items = _sides(rng, 600)
    keys = [["k"], ["k"]]
    residual = Call(pa.bool_(), "and", (
        Call(pa.bool_(), "gte", (Column(TS, "u"), Column(TS, "t"))),
        Call(pa.bool_(), "lte", (Column(TS, "u"), Call(TS, "add", (
            Column(TS, "t"), _micros(30_000)))))))

    def updating():
        return UpdatingJoin(kind, LEFT, RIGHT, ["k"], ["k"], RENAME, OUT, residual,
                            updating_output=kind != "inner")

    def interval():
        return IntervalJoin(kind, LEFT, RIGHT, ["k"], ["k"], RENAME, OUT, residual,
                            retention=[[("t", 30_000)], [("u", 0)]],
                            late_checks=[[("t", 0)], [("u", 0)]])

    for factory in (updating, interval):
        reference = _run(factory, items, keys, len(items), 1, 1)
        got = _run(factory, items, keys, len(items) // 2, old_p, new_p)
        assert normalized_rows(got) == normalized_rows(reference)
        assert reference.num_rows > 100


def test_window_join_restores_and_rescales():
    rng = np.random.default_rng(3)
    items = _sides(rng, 600)

    def factory():
        return WindowJoin("left", LEFT, RIGHT, ["k"], ["k"], RENAME, OUT, None,
                          window_end=[("t", 0), ("u", 0)])

    # windows here are the exact instants (tiny windows): rows join on equal key only
    reference = _run(factory, items, [["k"], ["k"]], len(items), 1, 1)
    got = _run(factory, items, [["k"], ["k"]], len(items) // 2, 2, 3)
    assert normalized_rows(got) == normalized_rows(reference)


def _micros(us: int):
    from caudal.plan.expressions import Literal

    return Literal(pa.duration("us"), us)
