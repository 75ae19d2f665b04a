"""From the outside: operators the other kill tests leave out -- LEFT and FULL joins with NULL
keys, a LEFT interval join, SELECT DISTINCT, a top-N per key, a deduplication, DISTINCT
aggregates, session and hop windows -- in one job, SIGKILLed after checkpoints and resumed at
another parallelism: the outputs equal DuckDB's batch answer (the session windows: a run
never killed)."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from caudal.job import compile_sql, run_sql
from tests.changelog_helpers import fold, read_changes
from tests.helpers import kill_after_checkpoints, normalized_rows, read_committed

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

BASE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
QUERIES = {
    "left": "SELECT a.v, a.k, b.name FROM a LEFT JOIN b ON a.k = b.k",
    "full": "SELECT a.v, b.w, b.name FROM a FULL JOIN b ON a.k = b.k",
    "interval": ("SELECT a.v, a.k, b.w FROM a LEFT JOIN b ON a.k = b.k AND b.ts BETWEEN "
                 "a.ts - INTERVAL '40' MILLISECOND AND a.ts + INTERVAL '15' MILLISECOND"),
    "distinct": "SELECT DISTINCT s, k % 7 AS m FROM a",
    "aggs": ("SELECT k % 13 AS g, count(DISTINCT s) AS ds, sum(DISTINCT v % 10) AS sv, "
             "min(s) AS mn, max(s) AS mx, count(s) AS c FROM a GROUP BY k % 13"),
    # count/sum/avg over an updating aggregate's changelog: running totals per group
    # (operators.running_totals), groups emptying as their keys' maxima move
    "totals": ("SELECT g, count(*) AS n, count(m) AS c, sum(m) AS s, avg(m) AS av FROM "
               "(SELECT k, max(v) % 5 AS g, max(v) AS m FROM a GROUP BY k) GROUP BY g"),
    "topn": ("SELECT g, v, rn FROM (SELECT k % 5 AS g, v, ROW_NUMBER() OVER (PARTITION BY "
             "k % 5 ORDER BY v DESC) AS rn FROM a WHERE s IS NOT NULL) WHERE rn <= 3"),
    # a deduplication (operators.top_one): the latest row per (k, v % 3), NULL k included
    "dedup": ("SELECT k, v, s FROM (SELECT k, v, s, ROW_NUMBER() OVER (PARTITION BY k, v % 3 "
              "ORDER BY ts DESC NULLS LAST, v DESC) AS rn FROM a) WHERE rn = 1"),
}
WINDOWS = {
    "hop": ("SELECT window_start, k % 4 AS g, count(*) AS n, count(DISTINCT s) AS ds, "
            "max(v) AS mx FROM TABLE(HOP(TABLE a, DESCRIPTOR(ts), INTERVAL '1' SECOND, "
            "INTERVAL '3' SECOND)) GROUP BY window_start, window_end, k % 4"),
    "session": ("SELECT window_start, window_end, k, count(*) AS n, sum(v) AS sv FROM "
                "TABLE(SESSION(TABLE a PARTITION BY k, DESCRIPTOR(ts), INTERVAL '40' "
                "MILLISECOND)) GROUP BY window_start, window_end, k"),
}


def _tables(rng: random.Random, n: int) -> tuple[pa.Table, pa.Table]:
    words = ["x", "yy", "", None, "Zé", "a b"]
    ms, ts = 0, []
    for _ in range(n):
        ms += rng.choice([1, 1, 2, 30, 90])   # gaps that end sessions
        ts.append(BASE + dt.timedelta(milliseconds=ms - rng.randrange(300)))
    a = pa.table({
        "k": pa.array([None if rng.random() < .05 else rng.randrange(400) for _ in range(n)],
                      pa.int32()),
        "s": pa.array([rng.choice(words) for _ in range(n)]),
        "v": pa.array(range(n), pa.int64()),
        "ts": pa.array(ts, pa.timestamp("us", tz="UTC"))})
    m = 150
    b = pa.table({
        "k": pa.array([None if rng.random() < .1 else rng.randrange(500) for _ in range(m)],
                      pa.int32()),
        "name": pa.array([rng.choice(words) for _ in range(m)]),
        "w": pa.array(range(m), pa.int64()),
        "ts": pa.array([BASE + dt.timedelta(milliseconds=i) for i in range(m)],
                       pa.timestamp("us", tz="UTC"))})
    return a, b


def _script(data: Path, out: Path) -> str:
    lines = ["SET updating_flush = '20ms';"]
    for name in ("a", "b"):
        lines.append(f"CREATE TABLE {name} (WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) "
                     f"WITH (connector = 'filesystem', path = '{data / name}');")
    for name, query in {**QUERIES, **WINDOWS}.items():
        fmt = "parquet" if name in WINDOWS else "debezium_json"
        lines.append(f"CREATE TABLE o_{name} WITH (connector = 'filesystem', "
                     f"path = '{out / name}', format = '{fmt}');")
        lines.append(f"INSERT INTO o_{name} {query};")
    return "\n".join(lines) + "\n"


def _results(data: Path, out: Path) -> dict[str, list[tuple]]:
    outputs = compile_sql(_script(data, out)).job.outputs
    got = {}
    for i, name in enumerate([*QUERIES, *WINDOWS]):
        if name in WINDOWS:
            got[name] = normalized_rows(read_committed(out / name))
        else:
            schema = outputs[i].plan.table.schema
            got[name] = normalized_rows(fold(read_changes(out / name, schema)))
    return got


@pytest.mark.parametrize("first,then", [(2, 3), (3, 1)])
def test_joins_distinct_topn_and_windows_survive_kill_and_rescale(tmp_path, first, then):
    a, b = _tables(random.Random(first), 60_000)
    data = tmp_path / "data"
    for name, table in (("a", a), ("b", b)):
        (data / name).mkdir(parents=True)
        half = table.num_rows // 2
        pq.write_table(table.slice(0, half), data / name / "p0.parquet", row_group_size=1500)
        pq.write_table(table.slice(half), data / name / "p1.parquet", row_group_size=1500)
    ref = tmp_path / "ref"
    run_sql(_script(data, ref), parallelism=1)
    expected = _results(data, ref)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("a", a)
    con.register("b", b)
    hop = ("SELECT ws AS window_start, k % 4 AS g, count(*) AS n, count(DISTINCT s) AS ds, "
           "max(v) AS mx FROM (SELECT time_bucket(INTERVAL '1 second', ts) - to_seconds(o) "
           "AS ws, * FROM a, range(3) r(o)) GROUP BY ws, k % 4")
    for name, query in {**QUERIES, "hop": hop}.items():
        assert expected[name] == normalized_rows(con.sql(query).to_arrow_table()), name
    job = tmp_path / "job.sql"
    job.write_text(_script(data, tmp_path / "out"))
    kill_after_checkpoints(job, tmp_path / "ck", batch_rows=256, first=first, then=then,
                           checkpoints=3)
    got = _results(data, tmp_path / "out")
    for name in expected:
        assert got[name] == expected[name], name
