"""The receiving end of a Ray channel without Ray: items pushed out of order (a threaded
actor may run two calls of one caller in any order) reach the subtask in sequence order,
credits come back as the subtask consumes, a batch without columns keeps its row count
through pickling, a batch travels in one call with the markers that follow it, and a slice
travels as its own rows."""

from __future__ import annotations

import pickle
import threading

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caudal.runtime.messages import EndOfData, Watermark
from caudal.runtime.ray.channels import CountingGate, RemotePort, outgoing


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


class _Calls:
    """An actor handle's method as RemotePort uses it: ``.remote(...)`` records the call."""

    def __init__(self, log: list, name: str):
        self.log, self.name = log, name

    def remote(self, *args):
        self.log.append((self.name, args))


class _FakeActor:
    def __init__(self):
        self.log: list = []
        self.push = _Calls(self.log, "push")
        self.credit = _Calls(self.log, "credit")


def test_a_batch_travels_with_the_markers_that_follow_it():
    actor = _FakeActor()
    port = RemotePort(actor, (4, 1), threading.Event())
    b1, b2 = pa.record_batch({"x": [1]}), pa.record_batch({"x": [2]})
    port.put(0, b1)
    assert actor.log == []   # held until the next item or the end of the step
    port.put(0, Watermark(5))
    assert actor.log == [("push", ((4, 1), [(0, 0, b1), (0, 1, Watermark(5))]))]
    port.put(1, b1)
    port.put(1, b2)          # a second batch sends the first: at most one is held
    assert actor.log[1] == ("push", ((4, 1), [(1, 0, b1)]))
    port.flush()
    assert actor.log[2] == ("push", ((4, 1), [(1, 1, b2)]))
    port.flush()
    assert len(actor.log) == 3
    gate = CountingGate(2, 8, threading.Event())
    for _, (_, items) in reversed(actor.log):   # calls run in any order
        for channel, seq, item in items:
            gate.push(channel, seq, item)
    got = [gate.get(0.01) for _ in range(4)]
    assert [(c, i) for c, i in got if c == 0] == [(0, b1), (0, Watermark(5))]
    assert [(c, i) for c, i in got if c == 1] == [(1, b1), (1, b2)]


def test_a_slice_travels_as_its_own_rows():
    big = pa.record_batch({"n": list(range(100_000)), "s": [str(i) for i in range(100_000)]})
    piece = big.slice(50_000, 10)
    # pickling the slice itself would carry the parent's whole buffers (ARROW-10739)
    sent = outgoing(piece)
    assert sent.equals(piece)
    assert sent.get_total_buffer_size() < 1024 < piece.get_total_buffer_size()
    assert outgoing(big) is big
