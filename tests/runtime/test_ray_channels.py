"""The receiving end of a Ray channel without Ray: items pushed out of order (a threaded
actor may run two calls of one caller in any order) reach the subtask in sequence order,
credits come back as the subtask consumes, and a batch without columns keeps its row count
through pickling."""

from __future__ import annotations

import pickle
import threading

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caudal.runtime.messages import EndOfData, Watermark
from caudal.runtime.ray.channels import CountingGate, outgoing


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.permutations(list(range(6))))
def test_items_reach_the_subtask_in_sequence_order(order):
    gate = CountingGate(2, 8, threading.Event())
    items = [pa.record_batch({"x": [i]}) for i in range(4)] + [Watermark(7), EndOfData()]
    for seq in order:
        gate.push(1, seq, items[seq])
    got = [gate.get(0.01) for _ in items]
    assert [channel for channel, _ in got] == [1] * len(items)
    assert [item for _, item in got] == items
    assert gate.wait_consumed(1, len(items)) == len(items)
    assert gate.wait_consumed(0, 0) == 0


def test_a_batch_without_columns_keeps_its_rows_through_pickling():
    batch = pa.record_batch({"x": [1, 2, 3]}).select([])
    assert pickle.loads(pickle.dumps(batch)).num_rows == 0   # what pyarrow does
    gate = CountingGate(1, 8, threading.Event())
    gate.push(0, 0, pickle.loads(pickle.dumps(outgoing(batch))))
    _, item = gate.get(0.01)
    assert isinstance(item, pa.RecordBatch) and item.num_rows == 3 and item.num_columns == 0
