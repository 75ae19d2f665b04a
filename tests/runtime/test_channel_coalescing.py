"""A subtask takes the batches queued at the head of its other channels along with the one it
got (InputGate.more_batches), so an operator is called once for several upstream pieces:
each channel's order is kept, control messages are never passed over, channels blocked for
checkpoint alignment are left alone, the row bound holds, and the Ray gate counts what was
taken as consumed (credits)."""

from __future__ import annotations

import threading

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caudal.runtime.channels import InputGate
from caudal.runtime.messages import Barrier, EndOfData, Watermark
from caudal.runtime.ray.channels import CountingGate
from caudal.runtime.subtask import coalesced

_ITEM = st.one_of(st.integers(1, 40).map(lambda n: ("batch", n)),
                  st.integers(0, 100).map(lambda t: ("watermark", t)))


def _items(channel: int, spec: list[tuple[str, int]]) -> list:
    out, serial = [], 0
    for kind, n in spec:
        if kind == "batch":
            out.append(pa.record_batch({"ch": [channel] * n, "i": list(range(serial,
                                                                             serial + n))}))
            serial += n
        else:
            out.append(Watermark(n))
    return out + [EndOfData()]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(_ITEM, max_size=8), min_size=1, max_size=4), st.integers(1, 64))
def test_each_channel_is_read_in_order_and_markers_are_never_passed(specs, limit):
    gate = InputGate(len(specs), 1000, threading.Event())
    sent = [_items(ch, spec) for ch, spec in enumerate(specs)]
    for ch, items in enumerate(sent):
        for item in items:
            gate.put(ch, item)
    seen: list[list] = [[] for _ in specs]
    channels = list(range(len(specs)))
    while any(len(s) < len(items) for s, items in zip(seen, sent)):
        got = gate.get(0.01)
        assert got is not None
        channel, item = got
        seen[channel].append(item)
        if isinstance(item, pa.RecordBatch):
            more = gate.more_batches(channels, limit)
            assert sum(b.num_rows for _, b in more) <= limit
            for ch, batch in more:
                assert isinstance(batch, pa.RecordBatch)
                seen[ch].append(batch)
    assert seen == sent


def test_blocked_channels_are_left_alone():
    gate = InputGate(2, 8, threading.Event())
    a, b = pa.record_batch({"x": [1]}), pa.record_batch({"x": [2, 3]})
    gate.put(0, a)
    gate.put(1, Barrier(1))
    gate.put(1, b)
    gate.put(0, b)
    assert gate.get(0.01) == (0, a)
    gate.block(1)
    assert gate.more_batches([0, 1], 10) == [(0, b)]
    gate.unblock_all()
    assert gate.get(0.01) == (1, Barrier(1))
    assert gate.more_batches([1], 1) == []      # over the row bound
    assert gate.more_batches([1], 2) == [(1, b)]


def test_the_ray_gate_counts_batches_taken_along_as_consumed():
    gate = CountingGate(2, 8, threading.Event())
    for seq in range(3):
        gate.push(0, seq, pa.record_batch({"x": [seq]}))
    gate.push(1, 0, pa.record_batch({"x": [9]}))
    assert gate.get(0.01)[0] == 0
    assert len(gate.more_batches([0, 1], 100)) == 3
    assert gate.wait_consumed(0, 3) == 3
    assert gate.wait_consumed(1, 1) == 1


def test_coalesced_joins_runs_of_one_schema_in_order():
    a = pa.record_batch({"x": [1, 2]})
    b = pa.record_batch({"x": [3]})
    c = pa.record_batch({"y": ["z"]})
    out = coalesced([a, b, c, a])
    assert [o.to_pydict() for o in out] == [{"x": [1, 2, 3]}, {"y": ["z"]}, {"x": [1, 2]}]
    assert coalesced([a]) == [a]
    empty = pa.record_batch({"x": [1, 2, 3]}).select([])
    assert coalesced([empty, empty])[0].num_rows == 6
