"""Event-time edges from outside (docs/sql-windows.md, "Event time, watermarks"): disorder
within the watermark delay gives the batch answer (DuckDB) at every parallelism and batch
size, with duplicate timestamps; disorder beyond it makes rows late by how the input is
split (counted, never lost); a NULL event time puts a row in no window, counted and
reported (it was dropped silently)."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caudal.job import run_sql
from tests.conftest import run_cli
from tests.helpers import normalized_rows, read_committed, run_to_table

S = 1_000_000
BASE = 1_767_225_600 * S   # 2026-01-01 00:00:00 UTC in µs

WINDOWS = {
    "tumble": ("TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '2' SECOND)",
               "time_bucket(INTERVAL '2 seconds', ts)"),
    "hop": ("HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '3' SECOND)", None),
}


def _table(ts: list[int | None], keys: list[int]) -> pa.Table:
    return pa.table({"k": pa.array(keys, pa.int64()),
                     "v": pa.array(range(len(ts)), pa.int64()),
                     "ts": pa.array(ts, pa.timestamp("us", tz="UTC"))})


def _ddl(path, delay_ms: int) -> str:
    return (f"CREATE TABLE t (k BIGINT, v BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts - "
            f"INTERVAL '{delay_ms}' MILLISECOND) WITH (connector = 'filesystem', "
            f"path = '{path}');")


def _duck_hop(table: pa.Table) -> pa.Table:
    """HOP(1 s, 3 s) as a batch query: each row in the 3 windows that start at its second
    and the two before."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("t", table)
    return con.sql("""SELECT ws, k, count(*) AS n, sum(v) AS s, min(ts) AS lo FROM (
        SELECT time_bucket(INTERVAL '1 second', ts) - INTERVAL (o) SECOND AS ws, k, v, ts
        FROM t, range(3) r(o) WHERE ts IS NOT NULL) GROUP BY ws, k""").to_arrow_table()


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), parallelism=st.sampled_from([1, 2, 3]),
       batch_rows=st.sampled_from([1, 7, 64]), kind=st.sampled_from(sorted(WINDOWS)),
       files=st.integers(1, 3))
def test_disorder_within_the_delay_is_the_batch_answer(tmp_path_factory, data, parallelism,
                                                       batch_rows, kind, files):
    """Rows arrive up to ``delay`` behind the latest one read before them (in each file),
    with duplicate timestamps: none is late, at any parallelism or batch size."""
    delay_ms = 700
    n = data.draw(st.integers(1, 120))
    ts = []
    for i in range(n):   # row i at (150 i + step - back) ms, all rows before it <= 150 i + 150
        step = data.draw(st.sampled_from([0, 0, 50, 150]))   # 0: a duplicate timestamp
        back = data.draw(st.integers(0, delay_ms - 150))
        ts.append(BASE + (i * 150 + step - back) * 1000)
    keys = data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    table = _table(ts, keys)
    tmp = tmp_path_factory.mktemp("disorder")
    (tmp / "in").mkdir()
    for f in range(files):       # each file keeps its own arrival order
        part = table.slice(f * n // files, (f + 1) * n // files - f * n // files)
        pq.write_table(part, tmp / "in" / f"p{f}.parquet", row_group_size=13)
    tvf, bucket = WINDOWS[kind]
    got = run_to_table(_ddl(tmp / "in", delay_ms),
                       f"SELECT window_start AS ws, k, count(*) AS n, sum(v) AS s, "
                       f"min(ts) AS lo FROM TABLE({tvf}) GROUP BY window_start, window_end, k",
                       tmp / "out", parallelism, batch_rows=batch_rows)
    if bucket is None:
        want = _duck_hop(table)
    else:
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        con.register("t", table)
        want = con.sql(f"SELECT {bucket} AS ws, k, count(*) AS n, sum(v) AS s, min(ts) AS lo "
                       "FROM t GROUP BY ws, k").to_arrow_table()
    assert normalized_rows(got) == normalized_rows(want)


def test_row_groups_out_of_order_are_late_by_how_they_are_split(tmp_path):
    """One file, row groups at 0-9 s, 20-29 s, then 5-14 s: beyond the 1 s delay the third
    is late at parallelism 1; at 2 and 3 another subtask may read it, with its own
    watermark (documented). Every row is either in a window or counted late."""
    (tmp_path / "in").mkdir()
    seconds = list(range(0, 10)) + list(range(20, 30)) + list(range(5, 15))
    pq.write_table(_table([BASE + s * S for s in seconds], [0] * 30),
                   tmp_path / "in" / "a.parquet", row_group_size=10)
    late = {}
    for parallelism in (1, 2, 3):
        out = tmp_path / f"out{parallelism}"
        result = run_sql(_ddl(tmp_path / "in", 1000) + f"""
CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', format = 'parquet');
INSERT INTO out SELECT window_start, count(*) AS n FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts),
  INTERVAL '10' SECOND)) GROUP BY window_start, window_end;""", parallelism=parallelism,
                         batch_rows=5)
        kept = sum(read_committed(out)["n"].to_pylist())
        assert kept + result.late_rows == 30
        late[parallelism] = result.late_rows
    assert late[1] == 10


@pytest.mark.parametrize("parallelism", [1, 2])
def test_null_event_times_are_in_no_window_and_reported(tmp_path, parallelism, duck):
    seconds = [0, 1, None, 3, 3, 12, None, 15]
    table = _table([None if s is None else BASE + s * S for s in seconds], [1] * 8)
    (tmp_path / "in").mkdir()
    pq.write_table(table, tmp_path / "in" / "a.parquet", row_group_size=3)
    out = tmp_path / "out"
    (tmp_path / "job.sql").write_text(_ddl(tmp_path / "in", 1000) + f"""
CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', format = 'parquet');
INSERT INTO out SELECT window_start AS ws, count(*) AS n, sum(v) AS s
FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND))
GROUP BY window_start, window_end;""")
    done = run_cli("run", "job.sql", "-p", str(parallelism), "--batch-rows", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 rows with a NULL event time dropped" in done.stderr
    duck.register("t", table)
    want = duck.sql("SELECT time_bucket(INTERVAL '10 seconds', ts) AS ws, count(*) AS n, "
                    "sum(v) AS s FROM t WHERE ts IS NOT NULL GROUP BY ws").to_arrow_table()
    assert normalized_rows(read_committed(out)) == normalized_rows(want)
