"""Checkpoints on Ray are written by the workers: the driver (its coordinator) receives only
what each worker wrote (paths, sizes, offsets) and writes the manifest. The checkpoint's
format is the local runtime's: a Ray job stopped with a savepoint resumes on the local
runtime at another parallelism and writes exactly what an uninterrupted run writes."""

from __future__ import annotations

import pickle
import threading
import time

import pytest

from caudal.checkpoint.coordinator import CheckpointCoordinator
from caudal.checkpoint.manifest import SubtaskState, completed_epochs, read_manifest
from caudal.checkpoint.messages import Acknowledge, FinalWritten
from caudal.checkpoint.storage import CheckpointStorage
from caudal.checkpoint.writer import StateWriter
from caudal.job import compile_sql
from caudal.runtime.ray.executor import RayRuntime
from caudal.runtime.supervisor import CheckpointedRuntime, CheckpointSettings
from tests.conftest import run_cli
from tests.helpers import normalized_rows, read_committed

pytestmark = pytest.mark.timeout(300)

#: paced (4000 events a second): checkpoints complete while it runs
JOB = """
CREATE TABLE bid WITH (connector = 'nexmark', table = 'bid', events = '16000',
                       event_rate = '4000', event_time_field = 'date_time');
CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', format = 'parquet');
INSERT INTO out
SELECT auction, count(*) AS n, max(price) AS mx, window_start AS ws
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '1' SECOND))
GROUP BY auction, window_start, window_end;
"""


@pytest.mark.slow
def test_workers_write_state_and_local_runtime_resumes(ray_cluster, tmp_path, monkeypatch):
    reference = tmp_path / "reference"
    reference.mkdir()
    (tmp_path / "reference.sql").write_text(JOB.format(out=reference))
    done = run_cli("run", str(tmp_path / "reference.sql"), "-p", "2", timeout=240)
    assert done.returncode == 0, done.stderr

    out = tmp_path / "out"
    out.mkdir()
    ck = tmp_path / "ck"
    written_here: list[tuple] = []
    received: list[object] = []
    write_state = StateWriter.write_state
    receive = CheckpointCoordinator.receive

    def recording_write(self, epoch, key, payload, final):
        written_here.append((epoch, key))
        return write_state(self, epoch, key, payload, final)

    def recording_receive(self, message):
        received.append(message)
        return receive(self, message)

    monkeypatch.setattr(StateWriter, "write_state", recording_write)
    monkeypatch.setattr(CheckpointCoordinator, "receive", recording_receive)

    graph = compile_sql(JOB.format(out=out), 2).graph
    first = RayRuntime(batch_rows=500)
    runtime = CheckpointedRuntime(first, first.fresh, CheckpointSettings(
        uri=str(ck), interval_s=0.2, max_restarts=0), log=lambda _: None)
    runtime.deploy(graph)

    def stop_after_two() -> None:
        while runtime.coordinator is None or runtime.coordinator.committed_epoch() < 2:
            time.sleep(0.05)
        runtime.stop(savepoint=True)

    threading.Thread(target=stop_after_two, daemon=True).start()
    runtime.run()

    assert not written_here, "the driver wrote state that a worker should have"
    acks = [m for m in received if isinstance(m, Acknowledge | FinalWritten)]
    assert acks and all(isinstance(m.state, SubtaskState) for m in acks), acks[:3]
    assert max(len(pickle.dumps(m)) for m in acks) < 8192   # handles, not state
    storage = CheckpointStorage(str(ck))
    newest = read_manifest(storage, completed_epochs(storage)[-1])
    assert newest.savepoint and any(f.file.rows for f in newest.files())

    (tmp_path / "job.sql").write_text(JOB.format(out=out))
    resumed = run_cli("run", str(tmp_path / "job.sql"), "-p", "3", "--checkpoint-dir",
                      str(ck), timeout=240)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from savepoint" in resumed.stderr
    assert normalized_rows(read_committed(out)) == normalized_rows(read_committed(reference))
