"""A subtask takes the batches queued at the head of its other channels along with the one it
got (InputGate.more_batches), so an operator is called once for several upstream pieces:
each channel's order is kept, control messages are never passed over, channels blocked for
checkpoint alignment are left alone, the row bound holds, and the Ray gate counts what was
taken as consumed (credits)."""

from __future__ import annotations

import threading

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caudal.operators.base import Operator
from caudal.operators.updating_aggregate import UpdatingAggregate
from caudal.operators.updating_join import UpdatingJoin
from caudal.operators.window_aggregate import WindowAggregate
from caudal.plan.physical import OperatorSpec, Vertex
from caudal.runtime import subtask
from caudal.runtime.base import SubtaskStats
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


class _Recorder(Operator):
    def __init__(self, merges: bool):
        self.accepts_merged_batches = merges
        self.calls: list[list[int]] = []

    def process(self, batch, input=0):
        self.calls.append(batch.column("v").to_pylist())
        return ()


@pytest.mark.parametrize("merges", [True, False])
def test_a_subtask_merges_queued_batches_only_for_operators_that_accept_them(monkeypatch,
                                                                             merges):
    recorder = _Recorder(merges)
    monkeypatch.setattr(subtask, "create", lambda spec: recorder)
    job = subtask.JobContext(batch_rows=100)
    gate = InputGate(2, 8, job.cancel)
    batches = [pa.record_batch({"v": [i, i + 1]}) for i in (0, 2, 4)]
    for channel, item in ((0, batches[0]), (0, batches[1]), (1, batches[2]), (0, EndOfData()),
                          (1, EndOfData())):
        gate.put(channel, item)
    vertex = Vertex(0, "v", [OperatorSpec("recorder", {}, "recorder")], 1)
    runner = subtask.SubtaskRunner(job, vertex, 0, gate, [0, 0], [], SubtaskStats(0, 0))
    runner.run()
    assert not job.errors
    if merges:
        assert recorder.calls == [[0, 1, 2, 3, 4, 5]]
    else:
        assert sorted(recorder.calls) == [[0, 1], [2, 3], [4, 5]]
    assert runner.stats.rows_in == 6 and runner.stats.batches_in == 3


def test_partial_states_are_never_merged():
    """A two-phase window aggregate's input has one row per (pane, key) per batch: merging
    two would count a group twice (Nexmark q8 at parallelism 2 emitted rows twice)."""
    from caudal.plan.aggregates import AggCall
    from caudal.plan.windows import WindowSpec
    from caudal.types import TIMESTAMP

    schema = pa.schema([("ts", TIMESTAMP), ("k", pa.int64())])
    output = pa.schema([("window_start", TIMESTAMP), ("window_end", TIMESTAMP),
                        ("k", pa.int64()), ("c", pa.int64())])

    def window(partial: bool) -> WindowAggregate:
        return WindowAggregate(WindowSpec("tumble", 10_000_000), ["k"],
                               [AggCall("count", (), pa.int64())], "ts", schema, output,
                               partial_input=partial)

    assert window(False).accepts_merged_batches and not window(True).accepts_merged_batches
    assert UpdatingJoin.accepts_merged_batches and UpdatingAggregate.accepts_merged_batches
    assert not Operator.accepts_merged_batches
