"""A source subtask idle for ``idle_timeout`` stops holding the watermark back; when it resumes,
rows behind the downstream watermark are late and must be dropped *and counted* (docs/
sql-windows.md), at every parallelism.

At parallelism 2 the local pre-aggregation (operators/local_window_partials.py) vouched for
rows at or above its *own* watermark as surely on time, assuming the downstream watermark is
never above it; an idle input breaks that assumption (the downstream left it out of its
minimum). The resumed rows were filed as partial states into a pane whose window had
fired: never emitted, never counted as late (0 late rows here, 3 at parallelism 1). Since
then a local stage whose source was idle sends each row with its event time.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytest.importorskip("confluent_kafka")

from confluent_kafka import Producer  # noqa: E402

from caudal.connectors.kafka_mock import cluster  # noqa: E402

pytestmark = pytest.mark.slow


def _windows(out: Path) -> list[tuple[str, int]]:
    files = [p for p in out.glob("*.parquet") if not p.name.startswith((".", "_"))] \
        if out.exists() else []
    return sorted((r["ws"], r["n"]) for f in files for r in pq.read_table(f).to_pylist())


def _wait_for(out: Path, window: str, proc: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        if any(ws == window for ws, _ in _windows(out)):
            return
        time.sleep(0.1)
    raise AssertionError(f"window {window} never came: {_windows(out)}")


def _run(tmp_path: Path, parallelism: int) -> tuple[list[tuple[str, int]], int]:
    with cluster() as kafka:
        topic = "idle-" + uuid.uuid4().hex[:8]
        producer = Producer({"bootstrap.servers": kafka, "linger.ms": 1})

        def send(partition: int, seconds, copies: int = 1) -> None:
            for s in seconds:
                for _ in range(copies):
                    producer.produce(topic, json.dumps(
                        {"ts": f"2026-01-01T00:00:{s:02d}"}).encode(), partition=partition)
            assert producer.flush(10) == 0

        send(0, [0])
        send(1, [0])
        out = tmp_path / "out"
        job = tmp_path / "job.sql"
        job.write_text(f"""CREATE TABLE ev (ts TIMESTAMP, WATERMARK FOR ts AS ts) WITH (
  connector = 'kafka', bootstrap_servers = '{kafka}', topic = '{topic}',
  'source.offset' = 'earliest', idle_timeout = '500ms');
CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', format = 'parquet');
INSERT INTO out SELECT CAST(window_start AS TEXT) AS ws, count(*) AS n
FROM TABLE(TUMBLE(TABLE ev, DESCRIPTOR(ts), INTERVAL '2' SECOND))
GROUP BY window_start, window_end;
""")
        env = {k: v for k, v in os.environ.items() if k != "CAUDAL_DEBUG"}
        proc = subprocess.Popen([sys.executable, "-m", "caudal.cli", "run", str(job), "-p",
                                 str(parallelism), "--checkpoint-dir", str(tmp_path / "ck"),
                                 "--checkpoint-interval", "200ms"],
                                stderr=subprocess.PIPE, text=True, env=env)
        try:
            time.sleep(2)
            send(0, range(1, 21))          # partition 1 (subtask 1 at p=2) is idle meanwhile
            _wait_for(out, "2026-01-01 00:00:18", proc)
            send(1, [5], copies=3)         # it resumes behind the downstream watermark (20 s)
            time.sleep(1.5)
            send(0, [40])
            send(1, [40])
            _wait_for(out, "2026-01-01 00:00:20", proc)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    late = re.search(r"([\d,]+) late rows dropped", err)
    return _windows(out), int(late.group(1)) if late else 0


EXPECTED = [("2026-01-01 00:00:00", 3)] + [
    (f"2026-01-01 00:00:{s:02d}", 2) for s in range(2, 20, 2)] + [("2026-01-01 00:00:20", 1)]


@pytest.mark.parametrize("parallelism", [1, 2])
def test_rows_behind_the_watermark_after_idleness_are_counted_late(tmp_path, parallelism):
    windows, late = _run(tmp_path, parallelism)
    assert windows == EXPECTED
    assert late == 3
