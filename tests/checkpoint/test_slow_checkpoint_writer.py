"""The checkpoint writer is slow (a disk, an object store) and the job goes on meanwhile: what
it writes must still be the state at the barrier (issue 10, bug 4). The coordinator's writes
are delayed, each subtask's payload is copied the moment it is acknowledged, and every value
the writer finally writes is compared with that copy. The job is an updating join of two
changelogs, whose counters change in place with every batch after the barrier."""

from __future__ import annotations

import threading
import time

import pyarrow.parquet as pq
import pytest

from caudal.checkpoint.coordinator import CheckpointCoordinator
from caudal.checkpoint.writer import StateWriter
from caudal.job import compile_sql
from caudal.runtime.local import LocalRuntime
from caudal.runtime.supervisor import CheckpointedRuntime, CheckpointSettings
from tests.conftest import make_bids
from tests.operators.test_snapshot_isolation import _frozen

pytestmark = pytest.mark.timeout(120)

COUNTS = "(SELECT auction, count(*) AS n FROM bids GROUP BY auction)"
SCRIPT = """
SET updating_flush = '0';
CREATE TABLE bids WITH (connector = 'filesystem', path = '{path}');
CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', format = 'debezium_json');
INSERT INTO out SELECT a.auction, a.n, b.m FROM {counts} a JOIN
  (SELECT auction, max(price) AS m FROM bids GROUP BY auction) b ON a.auction = b.auction;
"""


def test_a_slow_writer_writes_the_state_of_the_barrier(tmp_path, monkeypatch):
    path = tmp_path / "bids.parquet"
    pq.write_table(make_bids(6000, seed=9), path, row_group_size=6000)
    graph = compile_sql(SCRIPT.format(path=path, out=tmp_path / "out", counts=COUNTS)).graph

    at_barrier: dict[tuple, bytes] = {}
    checked: list[tuple] = []
    changed: list[tuple] = []
    lock = threading.Lock()
    acknowledge = CheckpointCoordinator.acknowledge
    write_value = StateWriter.write_value

    def copying_acknowledge(self, vertex, subtask, epoch, state):
        with lock:
            for index, op_state in enumerate(state.get("operators", [])):
                for name, value in (op_state or {}).items():
                    at_barrier[(epoch, vertex, subtask, index, name)] = _frozen(value)
        return acknowledge(self, vertex, subtask, epoch, state)

    def slow_write_value(self, epoch, ckey, value):
        time.sleep(0.05)   # the subtask processes more batches meanwhile
        with lock:
            before = at_barrier.get((epoch, *ckey))
        if before is not None:  # (an assert here would only fail the checkpoint)
            checked.append((epoch, *ckey))
            if _frozen(value) != before:
                changed.append((epoch, *ckey))
        return write_value(self, epoch, ckey, value)

    monkeypatch.setattr(CheckpointCoordinator, "acknowledge", copying_acknowledge)
    monkeypatch.setattr(StateWriter, "write_value", slow_write_value)

    def factory() -> LocalRuntime:
        return LocalRuntime(batch_rows=40)

    runtime = CheckpointedRuntime(factory(), factory, CheckpointSettings(
        uri=str(tmp_path / "ck"), interval_s=0.02, max_restarts=0, sync=False),
        log=lambda _: None)
    runtime.deploy(graph)
    runtime.run()
    assert not changed, f"written after the barrier's state changed: {changed}"
    joins = {c for c in checked if c[-1] in ("left", "right")}
    assert len({c[0] for c in joins}) >= 2, f"too few checkpoints of the join: {checked}"
