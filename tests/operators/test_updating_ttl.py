"""State TTL (``SET updating_ttl``): keys and join rows unchanged for longer are forgotten,
without output (as in Flink); a later row of the key starts afresh."""

from __future__ import annotations

import time

import pyarrow as pa

from caudal.operators.base import OperatorContext
from caudal.operators.updating_aggregate import UpdatingAggregate
from caudal.operators.updating_join import UpdatingJoin
from caudal.plan.aggregates import AggCall

IN = pa.schema([("k", pa.int64()), ("x", pa.int64())])
OUT = pa.schema([("k", pa.int64()), ("n", pa.int64())])


def _batch(ks, xs):
    return pa.record_batch([pa.array(ks, pa.int64()), pa.array(xs, pa.int64())], schema=IN)


def test_aggregate_forgets_idle_keys():
    op = UpdatingAggregate(["k"], [AggCall("count", (), pa.int64())], IN, OUT, flush_us=0,
                           ttl_us=30_000)
    op.open(OperatorContext())
    first = op.process(_batch([1, 2], [0, 0]))
    assert sorted(first[0].column("k").to_pylist()) == [1, 2]
    time.sleep(0.05)
    op.process(_batch([2], [0]))  # key 2 is touched again and lives on; key 1 expires
    assert op.state_rows() == 1
    again = op.process(_batch([1], [0]))
    assert again[0].to_pydict() == {"k": [1], "n": [1], "_op": [1]}


def test_join_forgets_idle_rows():
    right = pa.schema([("k", pa.int64()), ("y", pa.int64())])
    out = pa.schema([("k", pa.int64()), ("x", pa.int64()), ("k_r", pa.int64()),
                     ("y", pa.int64())])
    op = UpdatingJoin("inner", IN, right, ["k"], ["k"], {"k": "k_r"}, out, ttl_us=30_000,
                      updating_output=False)
    op.open(OperatorContext())
    op.process(_batch([1], [10]), 0)
    assert op.state_rows() == 1
    time.sleep(0.05)
    op.on_processing_time(time.time_ns() // 1000)
    assert op.state_rows() == 0
    assert op.process(pa.record_batch([pa.array([1]), pa.array([5])], schema=right), 1) in ((), [])


def test_incremental_snapshots_carry_expired_keys():
    """A key the TTL forgets is a deletion in the next delta, a key forgotten and seen again
    in the same interval an upsert: the whole snapshot, with the deltas folded onto it, is
    the operator's state at each later snapshot."""
    from caudal.state.incremental import StateDelta, fold_chain

    op = UpdatingAggregate(["k"], [AggCall("count", (), pa.int64())], IN, OUT, flush_us=0,
                           ttl_us=30_000)
    op.open(OperatorContext())
    op.process(_batch([1, 2, 3, 4], [0, 0, 0, 0]))
    chain = [(op.snapshot(1)["table"], "full", (), None)]
    time.sleep(0.05)
    op.process(_batch([2, 5], [0, 0]))   # 1, 3, 4 expire; 2 lives on; 5 is new
    op.process(_batch([3], [0]))         # 3 is back (expired just before: deleted, inserted)
    for step in range(2):
        delta = op.snapshot(2 + step)["table"]
        assert isinstance(delta, StateDelta)
        chain.append((delta.encode(), "delta", delta.key, delta.expire))
        op.state.changes.baseline = False
        whole = op.snapshot(9)["table"]
        op.state.changes.baseline = True
        folded = fold_chain(chain)
        assert sorted(folded.column("k").to_pylist()) == sorted(whole.column("k").to_pylist())
        assert folded.sort_by("k").select(whole.column_names).drop_columns(["_seen"]).equals(
            whole.sort_by("k").drop_columns(["_seen"]))
        time.sleep(0.05)
        op.process(_batch([6], [0]))     # everything else expires
