"""Failures on Ray: a worker actor's process SIGKILLed, a node removed, the driver killed. The
job restarts from its last complete checkpoint (on the nodes that are left; the driver's by
running the same command again), and the exactly-once Parquet sink holds exactly what an
uninterrupted run on the local runtime writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import run_cli
from tests.helpers import normalized_rows, read_committed

#: paced: 2000 events per second, so the job runs ~6 s and takes checkpoints meanwhile
JOB = """
CREATE TABLE bid WITH (connector = 'nexmark', table = 'bid', events = '12000',
                       event_rate = '2000', event_time_field = 'date_time');
CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', format = 'parquet');
INSERT INTO out
SELECT auction, count(*) AS n, max(price) AS mx, window_start AS ws
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '1' SECOND))
GROUP BY auction, window_start, window_end;
"""


def _job(tmp: Path, name: str) -> tuple[Path, Path]:
    out = tmp / f"out-{name}"
    out.mkdir()
    path = tmp / f"{name}.sql"
    path.write_text(JOB.format(out=out))
    return path, out


@pytest.fixture(scope="module")
def expected(tmp_path_factory):
    """What an uninterrupted run writes (the local runtime)."""
    tmp = tmp_path_factory.mktemp("reference")
    path, out = _job(tmp, "reference")
    done = run_cli("run", str(path), "-p", "2", timeout=240)
    assert done.returncode == 0, done.stderr
    return normalized_rows(read_committed(out))


def _start(ray_cluster, path: Path, ck: Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("CAUDAL_DEBUG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "caudal.cli", "run", str(path), "--runtime", "ray",
         "--address", ray_cluster.address, "-p", "2", "--checkpoint-dir", str(ck),
         "--checkpoint-interval", "500ms", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_for_checkpoint(ck: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(ck.glob("*/_manifest.json")):
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError("no checkpoint completed")


def _worker_pids() -> list[int]:
    pids = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "WorkerActor" in cmd:
            pids.append(p.info["pid"])
    return pids


@pytest.mark.slow
def test_actor_killed_restarts_from_checkpoint(ray_cluster, tmp_path, expected):
    path, out = _job(tmp_path, "kill")
    ck = tmp_path / "ck"
    proc = _start(ray_cluster, path, ck)
    _wait_for_checkpoint(ck, proc)
    pids = _worker_pids()
    assert pids
    os.kill(pids[0], signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr
    assert "restarting from checkpoint" in stderr
    assert normalized_rows(read_committed(out)) == expected


@pytest.mark.slow
def test_node_removed_restarts_on_what_is_left(ray_cluster, tmp_path, expected):
    path, out = _job(tmp_path, "node")
    ck = tmp_path / "ck"
    proc = _start(ray_cluster, path, ck)
    _wait_for_checkpoint(ck, proc)
    worker_nodes = [n for n in ray_cluster.worker_nodes]
    victim = worker_nodes[-1]
    try:
        ray_cluster.remove_node(victim)
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        ray_cluster.add_node(num_cpus=1, object_store_memory=100 * 2**20)
    assert proc.returncode == 0, stderr
    assert normalized_rows(read_committed(out)) == expected


@pytest.mark.slow
@pytest.mark.parametrize("resume_parallelism", ["2", "3"])
def test_driver_killed_resumes_with_the_same_command(ray_cluster, tmp_path,
                                                      expected, resume_parallelism):
    """Killed at parallelism 2, resumed at 2 (the same command) or 3 (rescaled by key
    group)."""
    path, out = _job(tmp_path, "driver")
    ck = tmp_path / "ck"
    proc = _start(ray_cluster, path, ck)
    _wait_for_checkpoint(ck, proc)
    proc.kill()
    proc.communicate()
    again = _start(ray_cluster, path, ck, "-p", resume_parallelism)
    stdout, stderr = again.communicate(timeout=240)
    assert again.returncode == 0, stderr
    assert "resuming from checkpoint" in stderr
    assert normalized_rows(read_committed(out)) == expected
