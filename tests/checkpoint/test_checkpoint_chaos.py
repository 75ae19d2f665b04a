"""Exactly-once through crashes: a job killed with SIGKILL at random moments (at least 10
times) and resumed each time with the same command writes exactly the rows of a run that was
never killed -- none lost, none duplicated. Also across a change of parallelism.

To cover another kind of query, add it to QUERIES: a SELECT over ``bids`` and the format of
the filesystem sink it writes (``debezium_json`` for an updating query, whose changelog is
compared by its net effect: every row's inserts minus retractions must be exactly 1 or 0).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from caudal.checkpoint.manifest import completed_epochs
from caudal.checkpoint.storage import CheckpointStorage
from caudal.job import run_sql
from tests.helpers import read_committed

pytestmark = pytest.mark.timeout(150)



@dataclass(frozen=True)
class Query:
    #: a SELECT over ``bids`` (nexmark bids: auction, bidder, price, date_time, ...)
    select: str
    #: the format of the filesystem sink
    format: str = "parquet"


QUERIES: dict[str, Query] = {
    "stateless": Query("SELECT auction, bidder, price, date_time FROM bids WHERE price > 1000"),
    "tumbling": Query("SELECT auction, count(*) AS num, sum(price) AS total, "
                      "tumble(INTERVAL '100' MILLISECOND) AS window FROM bids "
                      "GROUP BY auction, window"),
    "updating": Query("SELECT auction, count(*) AS num, sum(price) AS total FROM bids "
                      "GROUP BY auction", "debezium_json"),
}

#: 3M events (~2.8M bids) handed out at 500k events/s: 6 s of input, so that 10 runs killed
#: at most ~1 s after their start cannot finish it
EVENTS = 3_000_000
RATE = 500_000
KILLS = 10


def _script(ddl: str, select: str, out: Path, fmt: str = "parquet") -> str:
    return (f"{ddl}\nCREATE TABLE out WITH (connector = 'filesystem', path = '{out}', "
            f"format = '{fmt}');\nINSERT INTO out {select};\n")


def _nexmark(pace: bool) -> str:
    return (f"CREATE TABLE bids WITH (connector = 'nexmark', table = 'bid', events = "
            f"'{EVENTS}', event_rate = '{RATE}', pace = '{str(pace).lower()}');")


def normalized(table: pa.Table | None) -> pa.Table:
    """The rows in a canonical order (structs flattened, timestamps as integers)."""
    assert table is not None, "the sink committed nothing"
    table = table.flatten()
    cols = {}
    for name, col in zip(table.column_names, table.columns):
        cols[name] = col.cast(pa.int64()) if pa.types.is_timestamp(col.type) else col
    table = pa.table(cols)
    return table.sort_by([(n, "ascending") for n in table.column_names]).combine_chunks()


def net_changelog(out: Path) -> pa.Table:
    """The rows a Debezium changelog leaves standing: each ``after`` counts +1, each
    ``before`` -1. A lost or duplicated change leaves a count other than 0 or 1."""
    rows: list[dict] = []
    weights: list[int] = []
    for f in sorted(p for p in out.iterdir() if p.suffix == ".json" and p.name[0] != "."):
        for line in f.read_text().splitlines():
            change = json.loads(line)
            for side, weight in (("after", 1), ("before", -1)):
                if change.get(side) is not None:
                    rows.append(change[side])
                    weights.append(weight)
    changes = pa.Table.from_pylist(rows).append_column("_w", pa.array(weights, pa.int64()))
    keys = [n for n in changes.column_names if n != "_w"]
    net = changes.group_by(keys).aggregate([("_w", "sum")])
    counts = net.column("_w_sum")
    assert pc.all(pc.is_in(counts, pa.array([0, 1]))).as_py(), "a change was lost or repeated"
    return net.filter(pc.equal(counts, 1)).select(keys)


def committed(out: Path, query: Query) -> pa.Table:
    return net_changelog(out) if query.format == "debezium_json" else read_committed(out)


def _cli(script: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "caudal.cli", "run", str(script), *args]


def chaos(command: list[str], kills: int, rng: random.Random, cwd: Path,
          window: tuple[float, float] = (0.25, 1.0)) -> tuple[int, str]:
    """Start ``command``, SIGKILL it after a random time, ``kills`` times; then let it run to
    the end. Returns (kills done, stderr of the last run)."""
    done = 0
    env = {k: v for k, v in os.environ.items() if k != "CAUDAL_DEBUG"}
    env["PYTHONFAULTHANDLER"] = "1"
    while True:
        proc = subprocess.Popen(command, cwd=cwd, stderr=subprocess.PIPE, text=True, env=env)
        try:
            if done < kills:
                try:
                    proc.wait(rng.uniform(*window))
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
                    proc.stderr.close()
                    done += 1
                    continue
            try:
                _, err = proc.communicate(timeout=100)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGABRT)    # faulthandler prints every thread
                _, err = proc.communicate(timeout=10)
                raise AssertionError(f"the resumed run did not end:\n{err}") from None
        finally:
            if proc.poll() is None:   # the test failed: leave no process behind
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, err
        return done, err


# one query's kill runs in make test, the others' (~7-10 CPU s each) in make test-all
@pytest.mark.parametrize("name", [n if n == "tumbling" else pytest.param(n, marks=pytest.mark.slow)
                                  for n in sorted(QUERIES)])
def test_killed_runs_write_exactly_the_uninterrupted_output(name, tmp_path):
    query = QUERIES[name]
    reference = tmp_path / "reference"
    run_sql(_script(_nexmark(pace=False), query.select, reference, query.format),
            parallelism=2)
    out = tmp_path / "out"
    script = tmp_path / "job.sql"
    script.write_text(_script(_nexmark(pace=True), query.select, out, query.format))
    kills, err = chaos(_cli(script, "-p", "2", "--checkpoint-dir", str(tmp_path / "ck"),
                            "--checkpoint-interval", "200ms"),
                       KILLS, random.Random(name), tmp_path)
    assert kills >= KILLS
    expected = normalized(committed(reference, query))
    got = normalized(committed(out, query))
    assert got.num_rows == expected.num_rows
    assert got.equals(expected)
    # files the killed runs left half-written were removed by the recoveries after them
    assert [p.name for p in out.iterdir() if p.name.endswith(".inprogress")] == []


# ---- rescaling ------------------------------------------------------------------------------

def _bids_file(path: Path, n: int) -> None:
    """``n`` bids in event-time order, in row groups of 40k rows (the source's partitions)."""
    rng = np.random.default_rng(7)
    base = np.datetime64("2026-01-01T00:00:00", "us").astype(np.int64)
    table = pa.table({
        "auction": pa.array(rng.integers(1000, 3000, n)),
        "bidder": pa.array(rng.integers(1, 50_000, n)),
        "price": pa.array(rng.integers(1, 100_000, n)),
        "date_time": pa.array(base + np.arange(n, dtype=np.int64) * 50,
                              pa.timestamp("us", tz="UTC")),
    })
    pq.write_table(table, path, row_group_size=40_000)


def _wait_for_checkpoint(ck: Path, after: int, proc: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if ck.exists() and [e for e in completed_epochs(CheckpointStorage(str(ck))) if e > after]:
            return True
        time.sleep(0.01)
    return False


def test_restore_at_another_parallelism(tmp_path):
    """Keyed window state and source offsets move between subtasks by key group and
    partition: 2 subtasks, killed, resumed with 3, killed, resumed with 1 to the end."""
    bids = tmp_path / "bids.parquet"
    _bids_file(bids, 2_000_000)
    ddl = (f"CREATE TABLE bids (auction BIGINT, bidder BIGINT, price BIGINT, date_time "
           f"TIMESTAMP, WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND) WITH "
           f"(connector = 'filesystem', path = '{bids}');")
    select = QUERIES["tumbling"].select.replace("100' MILLISECOND", "1' SECOND")
    reference = tmp_path / "reference"
    run_sql(_script(ddl, select, reference), parallelism=2)
    out, ck = tmp_path / "out", tmp_path / "ck"
    script = tmp_path / "job.sql"
    script.write_text(_script(ddl, select, out))
    env = {k: v for k, v in os.environ.items() if k != "CAUDAL_DEBUG"}
    last = 0
    for parallelism in (2, 3):
        proc = subprocess.Popen(_cli(script, "-p", str(parallelism), "--checkpoint-dir",
                                     str(ck), "--checkpoint-interval", "50ms",
                                     "--batch-rows", "8192"),
                                cwd=tmp_path, stderr=subprocess.PIPE, text=True, env=env)
        try:
            killed = _wait_for_checkpoint(ck, last, proc, 60)
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
        assert killed, f"no checkpoint before the run ended: {err}"
        last = max(completed_epochs(CheckpointStorage(str(ck))))
    final = subprocess.run(_cli(script, "-p", "1", "--checkpoint-dir", str(ck)), cwd=tmp_path,
                           capture_output=True, text=True, env=env, timeout=100)
    assert final.returncode == 0, final.stderr
    assert normalized(read_committed(out)).equals(normalized(read_committed(reference)))
