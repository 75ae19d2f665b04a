"""The coordinator driven directly, on real files: epochs complete only with every
acknowledgement, incremental chains grow and are compacted, retention keeps what kept
manifests need, and a failed write (a full disk) fails one checkpoint without losing the
changes it carried."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa
import pytest

from caudal.checkpoint.chains import MAX_DELTAS, TIER_FANOUT
from caudal.checkpoint.coordinator import CheckpointCoordinator
from caudal.checkpoint.manifest import completed_epochs, epoch_dir, read_manifest
from caudal.checkpoint.recovery import identify, load_state
from caudal.checkpoint.storage import CheckpointStorage
from caudal.job import compile_sql
from caudal.state.incremental import StateDelta

pytestmark = pytest.mark.timeout(60)

SQL = """
CREATE TABLE bids WITH (connector = 'nexmark', table = 'bid', events = '1000');
CREATE TABLE out WITH (connector = 'filesystem', path = '{out}');
INSERT INTO out SELECT auction, price FROM bids;
"""


@pytest.fixture
def setup(tmp_path):
    graph = compile_sql(SQL.format(out=tmp_path / "out"), parallelism=1).graph
    storage = CheckpointStorage(str(tmp_path / "ck"))
    ident = identify(graph)
    logs: list[str] = []
    coord = CheckpointCoordinator(storage, graph, ident.fingerprint, ident.vertices,
                                  interval_s=3600, first_epoch=1, keep=3, log=logs.append)
    yield graph, storage, coord, logs
    coord.close()


def _rows(d: dict[int, int]) -> pa.Table:
    return pa.table({"k": pa.array(list(d), pa.int64()), "v": pa.array(list(d.values()),
                                                                        pa.int64())})


def _checkpoint(coord: CheckpointCoordinator, state: object, offsets: int) -> int:
    epoch = coord.trigger()
    assert epoch is not None
    barrier = coord.barrier_due(0, 0)
    assert barrier is not None and barrier.epoch == epoch
    assert coord.barrier_due(0, 0) is None          # injected once
    coord.acknowledge(0, 0, epoch, {"operators": [{"agg": state}, {"sink": {}}],
                                    "offsets": {"p": offsets}, "watermark": 7})
    assert coord.wait_completed(epoch, threading.Event())
    return epoch


def test_incremental_chain_compaction_and_retention(setup):
    graph, storage, coord, logs = setup
    model = {i: i for i in range(100)}
    _checkpoint(coord, _rows(model), 0)
    chain_lengths = []
    for step in range(1, 2 * MAX_DELTAS + 2):
        upserts = {step: -step, 1000 + step: step}
        deletes = [step + 50]
        model.update(upserts)
        model.pop(step + 50, None)
        delta = StateDelta(["k"], upserts=_rows(upserts),
                           deletes=pa.table({"k": pa.array(deletes, pa.int64())}))
        epoch = _checkpoint(coord, delta, step)
        coord.chains.wait()     # compactions run in the background; here one at a time
        m = read_manifest(storage, epoch)
        chain_lengths.append(len(m.vertices[0].subtasks[0].operators[0]["agg"].files))
    # deltas merged in tiers in the background: the chain stays short
    assert max(chain_lengths) <= TIER_FANOUT + 3, chain_lengths
    assert coord.chains.compactions >= 3
    coord.close()  # retention runs after completion, in the background: let it finish
    assert completed_epochs(storage) == list(range(epoch - 2, epoch + 1))     # keep = 3
    root = Path(storage.root)
    needed = {f.file.path for e in completed_epochs(storage)
              for f in read_manifest(storage, e).files()}
    # and the newest compaction, which the next checkpoint would name
    needed.update(f.file.path for f in coord.chains.files((0, 0, 0, "agg")))
    assert {str(p.relative_to(root)) for p in root.rglob("*.parquet")} == needed
    restored = load_state(storage, read_manifest(storage, epoch), graph)
    payload = restored.payloads[(0, 0)]
    table = payload["operators"][0]["agg"]
    assert dict(zip(table.column("k").to_pylist(), table.column("v").to_pylist())) == model
    assert payload["offsets"] == {"p": epoch - 1} and payload["watermark"] == 7
    assert not logs


def test_failed_write_is_carried_by_the_next_checkpoint(setup, tmp_path):
    graph, storage, coord, logs = setup
    _checkpoint(coord, _rows({1: 1, 2: 2}), 0)
    # the next epoch's directory cannot be created: its writes fail like on a full disk
    blocker = tmp_path / "ck" / epoch_dir(2)
    blocker.write_text("not a directory")
    epoch = coord.trigger()
    coord.barrier_due(0, 0)
    coord.acknowledge(0, 0, epoch, {"operators": [
        {"agg": StateDelta(["k"], upserts=_rows({3: 3}))}, {"sink": {}}]})
    assert not coord.wait_completed(epoch, threading.Event())
    assert logs and "checkpoint 2 failed" in logs[0] and "the job goes on" in logs[0]
    assert completed_epochs(storage) == [1]
    blocker.unlink()
    epoch = _checkpoint(coord, StateDelta(["k"], deletes=pa.table({"k": pa.array([1])})), 9)
    restored = load_state(storage, read_manifest(storage, epoch), graph)
    table = restored.payloads[(0, 0)]["operators"][0]["agg"]
    assert sorted(table.column("k").to_pylist()) == [2, 3]
