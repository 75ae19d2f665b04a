"""avg() of DECIMALs against DuckDB, bit for bit.

DuckDB sums a DECIMAL's unscaled integers exactly (HUGEINT) and finishes with the double
nearest the decimal sum, divided by the count in double (checked on thousands of constructed
sums, precisions 2 to 38). caudal summed the values as DOUBLE, so the last digit differed
(33333.34666666667 vs 33333.346666666665). avg of a DECIMAL of up to 18 digits now sums its
unscaled int64 values exactly (operators.integer_sums), on every path: GROUP BY (updating),
windows (tumble, hop, session; two-phase at parallelism 2), DISTINCT, OVER frames, the
frame API's mean()."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, localcontext

import duckdb
import numpy as np
import pyarrow as pa
import pytest

import caudal as cd
from caudal.operators import integer_sums

BASE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
TS = pa.timestamp("us", tz="UTC")
TYPES = [(4, 2), (7, 2), (9, 4), (18, 2), (18, 9), (18, 0)]


def _values(p: int, s: int, n: int, seed: int) -> list[int]:
    """Unscaled values: random over the whole range, small ones, the extremes (sums past
    2^53 and past 2^63 for 18 digits), negatives."""
    rng = np.random.default_rng(seed)
    top = 10 ** p - 1
    out = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            out.append(int(rng.integers(-top, top, endpoint=True)))
        elif kind == 1:
            out.append(int(rng.integers(-10, 10, endpoint=True)))
        elif kind == 2:
            out.append(top if rng.random() < 0.8 else -top)
        else:
            out.append(int(rng.integers(0, top, endpoint=True)))
    return out


def _table(p: int, s: int, n: int = 64, seed: int = 0) -> pa.Table:
    with localcontext() as ctx:
        ctx.prec = 60
        values = [Decimal(v).scaleb(-s) for v in _values(p, s, n, seed)]
    values[5] = None
    return pa.table({"k": [i % 3 for i in range(n)],
                     "m": pa.array(values, pa.decimal128(p, s)),
                     "ts": pa.array([BASE + dt.timedelta(milliseconds=10 * i)
                                     for i in range(n)], TS)})


def _answer(sql: str, table: pa.Table, parallelism: int, batch_rows: int = 7,
            event_time: str | None = None) -> list[tuple]:
    got = cd.sql(sql, t=cd.from_arrow(table, event_time=event_time)).collect(
        batch_rows=batch_rows, parallelism=parallelism)
    return sorted(tuple(r.values()) for r in got.to_pylist())


def _duck(sql: str, table: pa.Table) -> list[tuple]:
    t = table  # noqa: F841 - read by DuckDB's replacement scan
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return sorted(tuple(row) for row in con.sql(sql).fetchall())


def _no_times(rows: list[tuple]) -> list[tuple]:
    return [tuple(v for v in r if not isinstance(v, dt.datetime)) for r in rows]


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("p,s", TYPES)
def test_group_by_and_distinct(p, s, parallelism):
    table = _table(p, s)
    sql = ("SELECT k, avg(m) AS a, avg(DISTINCT m) AS d, avg(m) FILTER (WHERE m > 0) AS f "
           "FROM t GROUP BY k")
    for batch_rows in (1, 7, 100):
        assert _answer(sql, table, parallelism, batch_rows) == _duck(sql, table)


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("p,s", TYPES)
def test_without_group_by(p, s, parallelism):
    """DuckDB's avg of a DECIMAL without GROUP BY is the double nearest the exact sum,
    divided by the count: the last bit can differ from its grouped answer."""
    for seed in range(4):
        table = _table(p, s, 64, seed)
        for sql in ("SELECT avg(m) AS a FROM t", "SELECT avg(DISTINCT m) AS a FROM t",
                    "SELECT avg(m) AS a FROM t WHERE m > 0"):
            assert _answer(sql, table, parallelism, 9) == _duck(sql, table), sql


@pytest.mark.parametrize("parallelism", [1, 2])
def test_updating_revisions_and_retractions(parallelism):
    """avg over an updating aggregate's changelog: each new max(m) of a key retracts the
    previous one from the outer average, which must equal DuckDB's over the final rows."""
    for p, s in ((4, 2), (18, 9), (18, 2)):
        table = _table(p, s, 96, seed=p)
        sql = ("SELECT c % 2 AS g, avg(x) AS a, count(*) AS n FROM (SELECT k, "
               "max(m) AS x, count(*) AS c FROM t GROUP BY k) GROUP BY c % 2")
        for batch_rows in (1, 5):
            assert _answer(sql, table, parallelism, batch_rows) == _duck(sql, table)


WINDOWS = [
    ("SELECT k, window_start, avg(m) AS a FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), "
     "INTERVAL '100' MILLISECOND)) GROUP BY k, window_start, window_end",
     "SELECT k, time_bucket(INTERVAL 100 MILLISECOND, ts) AS window_start, avg(m) AS a "
     "FROM t GROUP BY ALL"),
    ("SELECT k, avg(m) AS a, count(*) AS n FROM t GROUP BY k, "
     "hop(INTERVAL '1' SECOND, INTERVAL '10' SECOND)",
     "SELECT k, avg(m) AS a, count(*) AS n FROM t, range(10) GROUP BY k, range"),
    ("SELECT k, avg(m) AS a FROM t GROUP BY k, session(INTERVAL '1' SECOND)",
     "SELECT k, avg(m) AS a FROM t GROUP BY k"),
]


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("sql,duck_sql", WINDOWS)
@pytest.mark.parametrize("p,s", [(4, 2), (18, 9), (18, 0)])
def test_windows(sql, duck_sql, p, s, parallelism):
    table = _table(p, s)
    for batch_rows in (1, 100):
        got = _answer(sql, table, parallelism, batch_rows, event_time="ts")
        assert _no_times(got) == _no_times(_duck(duck_sql, table))


FRAMES = ["ROWS BETWEEN 1 PRECEDING AND CURRENT ROW",
          "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW",
          "ROWS BETWEEN 40 PRECEDING AND CURRENT ROW"]


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("frame", FRAMES)
@pytest.mark.parametrize("p,s", [(4, 2), (7, 2), (18, 9), (18, 0)])
def test_over_frames(frame, p, s, parallelism):
    table = _table(p, s)
    sql = f"SELECT k, ts, avg(m) OVER (PARTITION BY k ORDER BY ts {frame}) AS v FROM t"
    for batch_rows in (1, 100):
        got = _answer(sql, table, parallelism, batch_rows, event_time="ts")
        assert _no_times(got) == _no_times(_duck(sql, table))


@pytest.mark.parametrize("parallelism", [1, 2])
def test_frame_api_mean(parallelism):
    from caudal import col

    table = _table(18, 2)
    got = cd.from_arrow(table.drop_columns(["ts"])).group_by("k").agg(
        col("m").mean().alias("a")).collect(parallelism=parallelism)
    assert sorted(tuple(r.values()) for r in got.to_pylist()) == \
        _duck("SELECT k, avg(m) AS a FROM t GROUP BY k", table)


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("p,s", [(4, 2), (9, 4), (18, 2), (18, 17)])
def test_sums_past_2_64_and_many_rows(p, s, parallelism):
    """Groups whose unscaled sums leave 2^53, 2^63 and 2^64 (DuckDB converts a HUGEINT of
    more than 64 bits to long double its own way, emulated), of either sign, and counts
    whose product with 10^scale leaves 2^64."""
    top = 10 ** p - 1
    rows = [(0, top)] * 40 + [(1, -top)] * 40 + [(2, top)] * 3 + [(2, -1)] * 2 + \
        [(3, -top)] * 2 + [(3, 7)] + [(4, top // 3)] * 25 + [(4, 0)] * 4000
    with localcontext() as ctx:
        ctx.prec = 60
        table = pa.table({"k": [k for k, _ in rows], "m": pa.array(
            [Decimal(v).scaleb(-s) for _, v in rows], pa.decimal128(p, s))})
    sql = "SELECT k, avg(m) AS a FROM t GROUP BY k"
    assert _answer(sql, table, parallelism, 500) == _duck(sql, table)


def test_unscaled_keeps_offsets_and_nulls():
    values = pa.array([Decimal("-1.5"), None, Decimal("99.99"), Decimal("-0.01")],
                      pa.decimal128(18, 2))
    got = integer_sums.unscaled(pa.chunked_array([values.slice(1), values.slice(0, 1)]))
    assert got.to_pylist() == [None, 9999, -1, -150]
    assert integer_sums.unscaled(values.slice(2, 2)).to_pylist() == [9999, -1]


KILL_QUERY = ("SELECT window_start, auction, count(*) AS n, "
              "avg(CAST(price AS DECIMAL(18, 2)) * 1000000) AS a, "
              "avg(CAST(price % 1000 AS DECIMAL(4, 1))) AS b FROM TABLE(TUMBLE(TABLE bid, "
              "DESCRIPTOR(date_time), INTERVAL '50' MILLISECOND)) "
              "GROUP BY window_start, window_end, auction")


def _kill_script(out, pace: bool) -> str:
    return (f"CREATE TABLE bid WITH (connector = 'nexmark', table = 'bid', events = '200000', "
            f"event_rate = '200000', pace = '{str(pace).lower()}');\n"
            f"CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', "
            f"format = 'parquet');\nINSERT INTO out {KILL_QUERY};\n")


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_killed_decimal_averages_resume_exactly(tmp_path):
    """The exact sums of DECIMAL averages in window state, killed (SIGKILL) after
    checkpoints and resumed at another parallelism: the windows of a run never killed."""
    from caudal.job import run_sql
    from tests.helpers import kill_after_checkpoints, normalized_rows, read_committed

    ref = tmp_path / "reference"
    run_sql(_kill_script(ref, False), parallelism=1)
    expected = normalized_rows(read_committed(ref))
    assert expected
    out, ck = tmp_path / "out", tmp_path / "ck"
    script = tmp_path / "job.sql"
    script.write_text(_kill_script(out, True))
    kill_after_checkpoints(script, ck, batch_rows=512, first=2, then=1, checkpoints=3)
    assert normalized_rows(read_committed(out)) == expected


@pytest.mark.xfail(strict=True, reason="DuckDB rewrites avg(x) beside sum(x) or count(x) of "
                   "the same argument (no FILTER, not DISTINCT) into the double nearest the "
                   "sum over the count; caudal finishes it as a lone avg (last bit differs)")
def test_avg_beside_sum_of_the_same_argument():
    """Found 2026-12-07: 'SELECT k, sum(m), avg(m) ... GROUP BY k' gives DuckDB's ungrouped
    finish (1.5395664043353035e19) where 'SELECT k, avg(m) ...' gives the grouped one
    (...33e19); integers too. Not yet followed: the finish would be marked at planning."""
    mismatched = 0
    for seed in range(6):
        table = _table(18, 2, 64, seed)
        sql = "SELECT k, sum(m) AS s, avg(m) AS a FROM t GROUP BY k"
        mismatched += _answer(sql, table, 1, 100) != _duck(sql, table)
    assert mismatched == 0
