"""Nanosecond timestamps, times and intervals (Parquet files, Arrow tables, TIMESTAMP(9) epoch
numbers) are read exactly when they are whole microseconds, and refused in one line when a
value has sub-microsecond digits: TIMESTAMP holds microseconds, and truncating merged distinct
values silently (``SELECT DISTINCT ts`` gave 2 rows where DuckDB's TIMESTAMP_NS gives 5)."""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import caudal as cd
from caudal.errors import DataError
from tests.conftest import run_cli
from tests.helpers import normalized_rows, run_to_table

BASE = 1_700_000_000_000_000_000   # 2023-11-14 22:13:20 UTC in nanoseconds


def _fine_file(directory):
    directory.mkdir()
    ts = pa.array([BASE + 1, BASE + 2, BASE + 3, BASE + 1000, BASE + 1001], pa.timestamp("ns"))
    pq.write_table(pa.table({"k": [1, 2, 3, 4, 5], "ts": ts}), directory / "a.parquet")
    return directory


@pytest.mark.parametrize("parallelism", [1, 2])
def test_sub_microsecond_parquet_timestamps_are_refused(tmp_path, parallelism):
    path = _fine_file(tmp_path / "in")
    with pytest.raises(DataError, match=r"column 'ts' holds 2023-11-14 22:13:20\.000000001 "
                                        r"with digits finer than a microsecond"):
        run_to_table(f"CREATE TABLE t WITH (connector = 'filesystem', path = '{path}');",
                     "SELECT DISTINCT ts FROM t", tmp_path / "out", parallelism)


def test_the_refusal_is_one_line_from_the_command(tmp_path):
    path = _fine_file(tmp_path / "in")
    (tmp_path / "job.sql").write_text(
        f"CREATE TABLE t WITH (connector = 'filesystem', path = '{path}');\n"
        f"CREATE TABLE o WITH (connector = 'filesystem', path = '{tmp_path / 'out'}', "
        "format = 'parquet');\nINSERT INTO o SELECT k, ts FROM t;\n")
    done = run_cli("run", "job.sql", cwd=tmp_path)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "finer than a microsecond" in lines[0], done.stderr


def test_nanoseconds_read_as_bigint_match_duckdb(tmp_path, duck):
    path = _fine_file(tmp_path / "in")
    got = run_to_table(f"CREATE TABLE t (k BIGINT, ts BIGINT) WITH (connector = "
                       f"'filesystem', path = '{path}');", "SELECT k, ts FROM t",
                       tmp_path / "out", 2)
    want = duck.sql(f"SELECT k, epoch_ns(ts) AS ts FROM '{path}/a.parquet'").to_arrow_table()
    assert normalized_rows(got) == normalized_rows(want)


@pytest.mark.parametrize("parallelism", [1, 2, 3])
def test_whole_microsecond_nanosecond_files_match_duckdb(tmp_path, duck, parallelism):
    """What pandas writes (nanosecond units, microsecond values): read exactly, also as
    window event time and as TIME / INTERVAL columns."""
    directory = tmp_path / "in"
    directory.mkdir()
    n = 3000
    micros = [BASE // 1000 + i * 997_003 for i in range(n)]
    for part in range(3):
        rows = slice(part * n // 3, (part + 1) * n // 3)
        pq.write_table(pa.table({
            "k": pa.array([i % 7 for i in range(n)][rows], pa.int64()),
            "ts": pa.array([m * 1000 for m in micros][rows], pa.timestamp("ns")),
            "t": pa.array([(m % 86_400_000_000) * 1000 for m in micros][rows],
                          pa.time64("ns")),
            "d": pa.array([(m % 5_000_000) * 1000 for m in micros][rows], pa.duration("ns")),
        }), directory / f"p{part}.parquet", row_group_size=211)
    ddl = (f"CREATE TABLE t (k BIGINT, ts TIMESTAMP, t TIME, d INTERVAL, WATERMARK FOR ts AS "
           f"ts - INTERVAL '1' SECOND) WITH (connector = 'filesystem', path = '{directory}');")
    query = ("SELECT window_start AS ws, k, count(DISTINCT ts) AS n, max(t) AS mt, "
             "max(d) AS sd FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) "
             "GROUP BY window_start, window_end, k")
    got = run_to_table(ddl, query, tmp_path / "out", parallelism)
    want = duck.sql(f"SELECT time_bucket(INTERVAL '1' MINUTE, ts::TIMESTAMP) AS ws, k, "
                    f"count(DISTINCT ts) AS n, max(t) AS mt, max(d) // 1000 AS sd FROM "
                    f"'{directory}/*.parquet' GROUP BY ALL").to_arrow_table()
    # DuckDB reads a Parquet duration as its integer (nanoseconds)
    ours = [(*r[:3], str(r[3]), r[4] // timedelta(microseconds=1))
            for r in normalized_rows(got)]
    theirs = [(*r[:3], str(r[3]), r[4]) for r in normalized_rows(want)]
    assert ours == theirs


def test_arrow_tables_refuse_sub_microsecond_values():
    fine = pa.table({"ts": pa.array([BASE + 1000, BASE + 2000, BASE + 1001],
                                    pa.timestamp("ns"))})
    frame = cd.sql("SELECT DISTINCT ts FROM b", b=cd.from_arrow(fine.slice(0, 2)))
    assert frame.collect().num_rows == 2
    with pytest.raises(DataError, match=r"22:13:20\.000001001 with digits finer"):
        cd.from_arrow(fine)


def test_epoch_nanoseconds_finer_than_a_microsecond_are_bad_records(tmp_path):
    (tmp_path / "a.json").write_text('{"k": 1, "ts": 1700000000000000001}\n'
                                     '{"k": 2, "ts": 1700000000000002000}\n')
    ddl = (f"CREATE TABLE t (k BIGINT, ts TIMESTAMP(9)) WITH (connector = 'filesystem', "
           f"path = '{tmp_path / 'a.json'}', format = 'json'{{}});")
    with pytest.raises(DataError, match="malformed record"):
        run_to_table(ddl.format(""), "SELECT k, ts FROM t", tmp_path / "out")
    got = run_to_table(ddl.format(", bad_data = 'drop'"), "SELECT k, ts FROM t",
                       tmp_path / "out2")
    assert got.column("ts").cast(pa.int64()).to_pylist() == [1_700_000_000_000_002]
