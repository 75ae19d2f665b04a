"""The live preview's side channel (runtime.taps, server.tap_socket): a tap keeps a bounded
number of rows and counts the rest; a reader that never reads blocks nothing."""

from __future__ import annotations

import json
import socket
import time

import pyarrow as pa

from caudal.runtime.taps import Tap, TapPoint, Taps
from caudal.server.tap_socket import TapServer


def batch(n: int, start: int = 0, width: int = 8) -> pa.RecordBatch:
    return pa.record_batch({"a": pa.array(range(start, start + n)),
                            "s": pa.array(["x" * width] * n)})


def test_a_tap_keeps_a_bounded_prefix_and_counts_what_it_drops():
    tap = Tap(capacity_rows=250)
    for i in range(10):
        tap.offer(batch(100, 100 * i))
    batches, dropped = tap.take()
    assert [b.num_rows for b in batches] == [100, 100, 50] and dropped == 750
    assert pa.Table.from_batches(batches)["a"].to_pylist() == list(range(250))
    assert tap.take() == ([], 0)
    tap.offer(batch(3, 7))
    assert tap.take()[0][0]["a"].to_pylist() == [7, 8, 9]


def test_tap_point_passes_batches_through_and_feeds_only_its_vertex():
    taps = Taps()
    point, other = TapPoint(taps, 1), TapPoint(taps, 2)
    b = batch(5)
    assert point.process(b) == (b,)  # no reader: nothing kept
    changes = []
    taps.listener = lambda v, on: changes.append((v, on))
    first, second = taps.subscribe(1), taps.subscribe(1)
    assert point.process(b)[0] is b
    other.process(batch(4))
    assert first.take()[0][0].equals(b) and second.take()[0][0].equals(b)
    taps.unsubscribe(1, first)
    taps.unsubscribe(1, second)
    assert changes == [(1, True), (1, False)] and taps.active == {}


def test_a_reader_that_never_reads_does_not_slow_the_writer(tmp_path):
    taps = Taps()
    server = TapServer(taps, {0: "[0] source t"}, str(tmp_path / "t.sock"))
    try:
        slow = socket.socket(socket.AF_UNIX)
        slow.connect(str(tmp_path / "t.sock"))
        slow.sendall(b'{"vertex": 0}\n')
        while 0 not in taps.active:
            time.sleep(0.01)
        wide = batch(1000, width=2000)  # 2 MB a batch: the socket's buffer fills at once
        worst = 0.0
        for _ in range(60):  # over several of the sender's half-second turns
            t0 = time.perf_counter()
            taps.offer(0, wide)
            worst = max(worst, time.perf_counter() - t0)
            time.sleep(0.025)
        assert worst < 0.05, worst
        # the reader catches up: it is told how many rows it missed
        f = slow.makefile("rb")
        assert json.loads(f.readline()) == {"node": 0, "name": "[0] source t"}
        dropped = 0
        for _ in range(12):
            dropped += json.loads(f.readline())["dropped"]
            if dropped > 10_000:
                break
        assert dropped > 10_000
        f.close()
        slow.close()
        deadline = time.monotonic() + 5
        while taps.active and time.monotonic() < deadline:
            taps.offer(0, batch(1))  # the sender notices the reader is gone when it writes
            time.sleep(0.05)
        assert taps.active == {}
    finally:
        server.close()


def test_unknown_vertex_is_refused(tmp_path):
    server = TapServer(Taps(), {0: "[0] source t", 1: "[1] sink out"}, str(tmp_path / "t.sock"))
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(tmp_path / "t.sock"))
            s.sendall(b'{"vertex": 7}\n')
            answer = json.loads(s.makefile().readline())
        assert answer == {"error": "no node 7 in this job (nodes: [0] source t, [1] sink out)"}
    finally:
        server.close()
    assert not (tmp_path / "t.sock").exists()


def test_non_finite_floats_reach_the_reader_as_names(tmp_path):
    taps = Taps()
    server = TapServer(taps, {0: "[0] source t"}, str(tmp_path / "t.sock"))
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(tmp_path / "t.sock"))
            s.sendall(b'{"vertex": 0}\n')
            f = s.makefile()
            f.readline()
            taps.offer(0, pa.record_batch({"x": pa.array([1.5, float("nan"), float("-inf")])}))
            while not (rows := json.loads(f.readline())["rows"]):
                pass
        assert rows == [{"x": 1.5}, {"x": "NaN"}, {"x": "-Infinity"}]
    finally:
        server.close()
