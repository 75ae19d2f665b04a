"""From the outside: a two-phase aggregate whose local stage holds partials across batches
still gives results when rows trickle in (a paced source, 20 rows a second, never near the
row count that releases a hold): the hold ends by processing time, so an updating GROUP BY
and a tumbling window at parallelism 2 print their first results within a few seconds, and
every row printed by then is counted."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)


def _lines_within(script: Path, seconds: float, until) -> list[dict]:
    """The JSON lines ``caudal run script -p 2`` prints within ``seconds`` (or until
    ``until(lines)`` holds); the process is killed after."""
    env = {k: v for k, v in os.environ.items() if k != "CAUDAL_DEBUG"}
    proc = subprocess.Popen([sys.executable, "-m", "caudal.cli", "run", str(script), "-p", "2"],
                            cwd=script.parent, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    got: list[dict] = []
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline and not until(got):
            try:
                got.append(json.loads(lines.get(timeout=0.1)))
            except queue.Empty:
                pass
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    return got


def test_updating_aggregate_on_a_trickle_prints_within_seconds(tmp_path):
    script = tmp_path / "job.sql"
    script.write_text(
        "SET updating_flush = '200ms';\nCREATE TABLE imp WITH (connector = 'impulse', "
        "event_rate = '20');\nCREATE TABLE out WITH (connector = 'stdout', format = 'json');\n"
        "INSERT INTO out SELECT counter % 4 AS k, count(*) AS c, max(counter) AS m FROM imp "
        "GROUP BY counter % 4;\n")
    # the newest count of every key once counters up to 20 were folded in (a second of rows)
    got = _lines_within(script, 20, lambda rows: sum(
        1 for r in rows if r["op"] in ("+I", "+U") and r["m"] >= 20) >= 1)
    latest = {}
    for r in got:
        if r["op"] in ("+I", "+U"):
            latest[r["k"]] = r
    assert latest and max(r["m"] for r in latest.values()) >= 20, got[-5:]
    for r in latest.values():   # counters k, k+4, ...: every row up to the max counted
        assert r["c"] == r["m"] // 4 + 1, r


def test_tumbling_window_on_a_trickle_prints_within_seconds(tmp_path):
    script = tmp_path / "job.sql"
    script.write_text(
        "CREATE TABLE imp WITH (connector = 'impulse', event_rate = '20');\n"
        "CREATE TABLE out WITH (connector = 'stdout', format = 'json');\n"
        "INSERT INTO out SELECT window_start, counter % 3 AS k, count(*) AS c FROM "
        "TABLE(TUMBLE(TABLE imp, DESCRIPTOR(timestamp), INTERVAL '1' SECOND)) "
        "GROUP BY window_start, window_end, counter % 3;\n")
    got = _lines_within(script, 20, lambda rows: len({r["window_start"] for r in rows}) >= 3)
    windows = sorted({r["window_start"] for r in got})
    assert len(windows) >= 3, got
    # a whole window (not the first, which began before the job): about 20 rows in all
    middle = sum(r["c"] for r in got if r["window_start"] == windows[1])
    assert 10 <= middle <= 30, got
