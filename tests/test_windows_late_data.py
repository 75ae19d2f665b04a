"""Late rows end to end: dropped from window results, counted in the job result (and printed
by the CLI), and written to a side table with ``late_data = 'side:<table>'``. Also windows on
processing time for a table without event time."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from caudal.job import run_sql
from tests.conftest import run_cli
from tests.helpers import read_committed

BASE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
#: seconds; with a 1 s delay the rows at 3 and 4 arrive after the watermark passed them
ARRIVAL = [0, 1, 2, 15, 3, 16, 30, 4, 31]


def write_input(path: Path) -> None:
    table = pa.table({
        "k": pa.array([1] * len(ARRIVAL), pa.int64()),
        "v": pa.array(range(len(ARRIVAL)), pa.int64()),
        "ts": pa.array([BASE + dt.timedelta(seconds=s) for s in ARRIVAL],
                       pa.timestamp("us", tz="UTC")),
    })
    pq.write_table(table, path, row_group_size=1)


def script(tmp: Path, late_data: str) -> str:
    return f"""
CREATE TABLE src (k BIGINT, v BIGINT, ts TIMESTAMP,
                  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
  WITH (connector = 'filesystem', path = '{tmp}/in.parquet', late_data = '{late_data}');
CREATE TABLE late (v BIGINT, ts TIMESTAMP)
  WITH (connector = 'filesystem', path = '{tmp}/late', format = 'parquet');
CREATE TABLE out WITH (connector = 'filesystem', path = '{tmp}/out', format = 'parquet');
INSERT INTO out SELECT k, count(*) AS n, sum(v) AS s, tumble(INTERVAL '10' SECOND) AS w
FROM src GROUP BY k, w;
"""


def windows(tmp: Path) -> list[tuple]:
    out = read_committed(tmp / "out")
    starts = out.column("w").combine_chunks().field("start")
    seconds = [int((t - BASE).total_seconds()) for t in starts.to_pylist()]
    return sorted(zip(seconds, out["n"].to_pylist(), out["s"].to_pylist()))


def test_late_rows_go_to_the_side_table_and_are_counted(tmp_path):
    write_input(tmp_path / "in.parquet")
    result = run_sql(script(tmp_path, "side:late"), parallelism=1, batch_rows=1)
    assert result.late_rows == 2
    # window [0, 10) holds the on-time rows 0, 1, 2 only
    assert windows(tmp_path) == [(0, 3, 0 + 1 + 2), (10, 2, 3 + 5), (30, 2, 6 + 8)]
    late = read_committed(tmp_path / "late")
    assert late.schema.names == ["v", "ts"]
    assert sorted(late["v"].to_pylist()) == [4, 7]


def test_late_rows_are_dropped_by_default_and_reported_by_the_cli(tmp_path):
    write_input(tmp_path / "in.parquet")
    (tmp_path / "job.sql").write_text(script(tmp_path, "drop"))
    done = run_cli("run", str(tmp_path / "job.sql"), "--batch-rows", "1")
    assert done.returncode == 0, done.stderr
    assert "2 late rows" in done.stderr
    assert windows(tmp_path) == [(0, 3, 3), (10, 2, 8), (30, 2, 14)]
    assert not (tmp_path / "late").exists() or read_committed(tmp_path / "late") is None


def test_processing_time_windows_for_a_table_without_event_time(tmp_path):
    write_input(tmp_path / "in.parquet")
    before = dt.datetime.now(dt.UTC)
    run_sql(f"""
CREATE TABLE src (k BIGINT, v BIGINT, ts TIMESTAMP)
  WITH (connector = 'filesystem', path = '{tmp_path}/in.parquet');
CREATE TABLE out WITH (connector = 'filesystem', path = '{tmp_path}/out', format = 'parquet');
INSERT INTO out SELECT k, count(*) AS n, tumble(INTERVAL '1' MINUTE) AS w
FROM src GROUP BY k, w;""", parallelism=2)
    after = dt.datetime.now(dt.UTC)
    out = read_committed(tmp_path / "out")
    assert sum(out["n"].to_pylist()) == len(ARRIVAL)  # no row is late on arrival time
    window = out.column("w").combine_chunks()
    for start, end in zip(window.field("start").to_pylist(), window.field("end").to_pylist()):
        assert end - start == dt.timedelta(minutes=1)
        assert start <= after and end >= before.replace(second=0, microsecond=0)


def test_processing_time_windows_close_on_the_wall_clock_while_input_flows():
    """An unbounded source: windows on arrival time are emitted by the runtime's timer,
    not at the end of input (there is none)."""
    import time

    from caudal.job import compile_sql
    from caudal.runtime.local import LocalRuntime

    compiled = compile_sql("""
CREATE TABLE ticks (counter BIGINT) WITH (connector = 'impulse', event_rate = '2000');
CREATE TABLE out WITH (connector = 'blackhole');
INSERT INTO out SELECT count(*) AS n, tumble(INTERVAL '200' MILLISECOND) AS w
FROM ticks GROUP BY w;""", parallelism=1)
    runtime = LocalRuntime()
    runtime.deploy(compiled.graph)
    sink = next(op for r in runtime.runners for op in r.operators
                if op.__class__.__name__ == "SinkOperator")
    runtime.start()
    try:
        deadline = time.monotonic() + 10
        while sink.rows < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sink.rows >= 2  # two windows closed while the source runs on
    finally:
        runtime.stop()
        runtime.wait(5)
