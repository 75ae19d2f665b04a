"""sum() and avg() of integers near and past the range of BIGINT, against DuckDB.

DuckDB sums BIGINT and UBIGINT into a 128-bit HUGEINT and answers exactly. caudal's sum of
an integer column stays a BIGINT (as Flink's): it equals DuckDB's whenever the group's sum
fits, and fails the job in one line naming the aggregate when it does not (it wrapped to a
negative number before, and UBIGINT values past 2^63 failed with an internal error). avg
sums exactly (two int64 halves) and so equals DuckDB's and never fails. Every path that
sums: GROUP BY (updating), windows (tumble, hop, session; two-phase at parallelism 2),
DISTINCT, OVER frames, a checkpoint restore, the CLI's one-line error."""

from __future__ import annotations

import datetime as dt

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import caudal as cd
from caudal.errors import PlanError, RuntimeFailure
from caudal.operators import integer_sums
from tests.conftest import run_cli

TABLE = pa.table({"k": [1, 1, 2], "i": pa.array([2**62, 2**62, 1], pa.int64()),
                  "u": pa.array([2**64 - 1, 2**63, 5], pa.uint64())})
I64_MIN, I64_MAX = -2**63, 2**63 - 1
BASE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
TS = pa.timestamp("us", tz="UTC")


def _answer(sql: str, table: pa.Table = TABLE, parallelism: int = 1, batch_rows: int = 1,
            event_time: str | None = None) -> list[tuple]:
    got = cd.sql(sql, t=cd.from_arrow(table, event_time=event_time)).collect(
        batch_rows=batch_rows, parallelism=parallelism)
    return sorted(tuple(r.values()) for r in got.to_pylist())


def _duck(sql: str, table: pa.Table = TABLE) -> list[tuple]:
    t = table  # noqa: F841 - read by DuckDB's replacement scan
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return sorted(tuple(int(v) if isinstance(v, int) else v for v in row)
                  for row in con.sql(sql).fetchall())


def _overflow(sql: str, table: pa.Table = TABLE, **kw) -> str:
    with pytest.raises(RuntimeFailure) as error:
        _answer(sql, table, **kw)
    message = str(error.value)
    assert "overflowed BIGINT" in message and "DECIMAL(38, 0)" in message, message
    assert "\n" not in message
    return message


@pytest.mark.parametrize("parallelism", [1, 2])
def test_bigint_sum_past_2_63_is_exact_or_refused(parallelism):
    """Group 1 sums to 2^63 (DuckDB: a HUGEINT): refused in one line naming the aggregate;
    the workaround the message gives equals DuckDB."""
    message = _overflow("SELECT k, sum(i) AS s FROM t GROUP BY k", parallelism=parallelism)
    assert message.upper().startswith("SUM(I) OVERFLOWED BIGINT")
    for cast in ("DECIMAL(38, 0)", "DOUBLE"):
        sql = f"SELECT k, sum(CAST(i AS {cast})) AS s FROM t GROUP BY k"
        assert _answer(sql, parallelism=parallelism) == _duck(sql)


@pytest.mark.parametrize("parallelism", [1, 2])
def test_ubigint_sum_past_2_63_is_exact(parallelism):
    """A UBIGINT value past 2^63 leaves BIGINT: refused in one line (not an internal
    error); sums that fit and every avg are exact; DECIMAL(38, 0) sums them all."""
    _overflow("SELECT k, sum(u) AS s FROM t GROUP BY k", parallelism=parallelism)
    for sql in ("SELECT k, avg(u) AS s FROM t GROUP BY k",
                "SELECT k, sum(CAST(u AS DECIMAL(38, 0))) AS s FROM t GROUP BY k"):
        assert _answer(sql, parallelism=parallelism) == _duck(sql), sql
    below = pa.table({"k": [1, 1, 2], "u": pa.array([2**62, 2**62 - 1, 5], pa.uint64())})
    sql = "SELECT k, sum(u) AS s, avg(u) AS a FROM t GROUP BY k"
    assert _answer(sql, below, parallelism) == _duck(sql, below)


NEAR = pa.table({
    "k": [1, 1, 1, 2, 2, 2, 3, 3],
    "i": pa.array([2**62, 2**62 - 1, -7, I64_MIN + 5, -5, 3, I64_MAX, I64_MIN], pa.int64()),
    "s": pa.array([2**14, 2**14, -7, -2**15, -5, 3, 2**15 - 1, -2**15], pa.int16()),
    "ts": pa.array([BASE + dt.timedelta(milliseconds=m) for m in range(8)], TS)})

FITTING = [
    # group sums within BIGINT though the values are near it: exact (the halves' path)
    "SELECT k, sum(i) AS s, avg(i) AS a, count(*) AS n FROM t GROUP BY k",
    "SELECT k, sum(s) AS s, avg(s) AS a, sum(DISTINCT i) AS d, avg(DISTINCT i) AS ad "
    "FROM t GROUP BY k",
    "SELECT k, sum(i) FILTER (WHERE i > 0) AS s, avg(i) FILTER (WHERE i < 0) AS a FROM t "
    "GROUP BY k",
]


@pytest.mark.parametrize("batch_rows", [1, 3, 100])
@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("sql", FITTING)
def test_sums_near_the_bounds_equal_duckdb(sql, parallelism, batch_rows):
    table = NEAR.drop_columns(["ts"])
    assert _answer(sql, table, parallelism, batch_rows) == _duck(sql, table)


WINDOWS = [
    ("SELECT k, window_start, sum(i) AS s, avg(i) AS a FROM TABLE(TUMBLE(TABLE t, "
     "DESCRIPTOR(ts), INTERVAL '1' SECOND)) GROUP BY k, window_start, window_end",
     "SELECT k, time_bucket(INTERVAL 1 SECOND, ts) AS window_start, sum(i) AS s, "
     "avg(i) AS a FROM t GROUP BY ALL"),
    # every hop window of one second holds all the rows (they fall in one 100 ms slide)
    ("SELECT k, sum(i) AS s, avg(i) AS a, count(*) AS n FROM t GROUP BY k, "
     "hop(INTERVAL '100' MILLISECOND, INTERVAL '1' SECOND)",
     "SELECT k, sum(i) AS s, avg(i) AS a, count(*) AS n FROM t, range(10) GROUP BY k, range"),
    ("SELECT k, sum(i) AS s, avg(i) AS a FROM t GROUP BY k, session(INTERVAL '1' SECOND)",
     "SELECT k, sum(i) AS s, avg(i) AS a FROM t GROUP BY k"),
]


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("sql,duck_sql", WINDOWS)
def test_window_sums_near_the_bounds_equal_duckdb(sql, duck_sql, parallelism):
    for batch_rows in (1, 100):
        got = _answer(sql, NEAR, parallelism, batch_rows, event_time="ts")
        want = _duck(duck_sql, NEAR)
        assert [tuple(v for v in r if not isinstance(v, dt.datetime)) for r in got] == \
            [tuple(v for v in r if not isinstance(v, dt.datetime)) for r in want]


OVER = "SELECT k, ts, {agg}(i) OVER (PARTITION BY k ORDER BY ts {frame}) AS v FROM t"
FRAMES = ["ROWS BETWEEN 1 PRECEDING AND CURRENT ROW",
          "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW",
          "ROWS BETWEEN 40 PRECEDING AND CURRENT ROW"]


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("frame", FRAMES)
def test_over_frames_near_the_bounds_equal_duckdb(frame, parallelism):
    """avg over frames equals DuckDB's; sum too where every frame's sum fits BIGINT, and is
    refused in one line where one does not (group 1: 2^62 + 2^62 - 1 fits, the next does
    not with a third value of 2^62)."""
    for batch_rows in (1, 100):
        sql = OVER.format(agg="avg", frame=frame)
        got = _answer(sql, NEAR, parallelism, batch_rows, event_time="ts")
        assert [r[::2] for r in got] == [r[::2] for r in _duck(sql, NEAR)]
        sql = OVER.format(agg="sum", frame=frame)
        assert [r[::2] for r in _answer(sql, NEAR, parallelism, batch_rows, "ts")] == \
            [r[::2] for r in _duck(sql, NEAR)]
    past = NEAR.set_column(1, "i", pa.array([2**62] * 3 + [1] * 5, pa.int64()))
    _overflow(OVER.format(agg="sum", frame=FRAMES[0]), past, parallelism=parallelism,
              event_time="ts")


def test_updating_sum_revisions_past_the_bounds_are_refused():
    """Without a window every revision of a group is emitted: one past BIGINT fails."""
    past = pa.table({"k": [1, 1, 1], "i": pa.array([2**62, 2**62, 2**62], pa.int64())})
    _overflow("SELECT k, sum(i) AS s FROM t GROUP BY k", past)
    assert _answer("SELECT k, avg(i) AS a FROM t GROUP BY k", past) == \
        _duck("SELECT k, avg(i) AS a FROM t GROUP BY k", past)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.tuples(st.integers(0, 3),
                               st.one_of(st.integers(-2**62, 2**62),
                                         st.integers(I64_MIN, I64_MAX),
                                         st.integers(-1000, 1000))),
                     min_size=1, max_size=40),
       parallelism=st.sampled_from([1, 2]), batch_rows=st.sampled_from([1, 7, 100]))
def test_random_large_sums(rows, parallelism, batch_rows):
    """avg always equals DuckDB's; sum equals it when no subset of a group's values can
    leave BIGINT, fails in one line when a group's sum does, and does one or the other in
    between (a partial sum may leave BIGINT and come back)."""
    table = pa.table({"k": [r[0] for r in rows], "i": pa.array([r[1] for r in rows],
                                                               pa.int64())})
    avg = "SELECT k, avg(i) AS a, count(*) AS n FROM t GROUP BY k"
    assert _answer(avg, table, parallelism, batch_rows) == _duck(avg, table)
    groups: dict[int, list[int]] = {}
    for k, v in rows:
        groups.setdefault(k, []).append(v)
    outside = any(not I64_MIN <= sum(vs) <= I64_MAX for vs in groups.values())
    safe = all(sum(v for v in vs if v > 0) <= I64_MAX and sum(v for v in vs if v < 0)
               >= I64_MIN for vs in groups.values())
    sql = "SELECT k, sum(i) AS s FROM t GROUP BY k"
    if outside:
        _overflow(sql, table, parallelism=parallelism, batch_rows=batch_rows)
    elif safe:
        assert _answer(sql, table, parallelism, batch_rows) == _duck(sql, table)
    else:
        try:
            assert _answer(sql, table, parallelism, batch_rows) == _duck(sql, table)
        except RuntimeFailure as e:
            assert "overflowed BIGINT" in str(e)


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.integers(I64_MIN, I64_MAX), min_size=1, max_size=30),
       gid=st.lists(st.integers(0, 3), min_size=30, max_size=30))
def test_group_halves_are_exact(values, gid):
    groups = [g for g, _ in zip(gid, values)]
    hi, lo = integer_sums.group_halves(pa.array(values, pa.int64()),
                                       __import__("numpy").array(groups), 4)
    for g in range(4):
        assert int(hi[g]) * 2**32 + int(lo[g]) == sum(v for v, h in zip(values, groups)
                                                      if h == g)


@pytest.mark.parametrize("parallelism", [1, 2])
def test_avg_rounds_as_duckdb(parallelism):
    """DuckDB divides the exact sum, rounded to a double, by the count: 2100857 / 2051 is
    within 2^-64 of a midpoint between doubles (one long double division, then a rounding
    to double, would give the other neighbour); a sum past 2^64 is rounded once."""
    vals = [1024] * 2051
    for i in range(2100857 - 1024 * 2051):
        vals[i] += 1
    big = [2**62 + 12345, 2**62 + 1, 2**62 - 7, 2**62 + 999, 2**62 + 3]
    table = pa.table({"k": [1] * len(vals) + [2] * len(big) + [3] * 2,
                      "i": pa.array(vals + big + [2**62 + 3, -2**62], pa.int64())})
    sql = "SELECT k, avg(i) AS a FROM t GROUP BY k"
    assert _answer(sql, table, parallelism, 500) == _duck(sql, table)
    small = pa.table({"k": [1] * len(vals), "i": pa.array(vals, pa.int16())})
    assert _answer(sql, small, parallelism, 500) == _duck(sql, small)


def test_sum_of_smaller_integers_stays_bigint():
    """sum of TINYINT .. INTEGER is a BIGINT, as before (and as Flink's users expect)."""
    table = pa.table({"a": pa.array([127, 127], pa.int8()),
                      "b": pa.array([2**31 - 1, 2**31 - 1], pa.int32())})
    got = cd.sql("SELECT sum(a) AS a, sum(b) AS b FROM t", t=cd.from_arrow(table)).collect()
    assert got.schema.field("a").type == pa.int64() == got.schema.field("b").type
    assert got.to_pylist() == [{"a": 254, "b": 2**32 - 2}]


def test_projection_overflow_is_one_line_and_casts_to_double_round():
    with pytest.raises(RuntimeFailure, match="integer out of range in"):
        _answer("SELECT i * 1000000000000 AS s FROM t")
    sql = "SELECT CAST(i AS DOUBLE) AS d, CAST(u AS DOUBLE) AS e FROM t"
    assert _answer(sql) == _duck(sql)


def test_planning_does_not_refuse_integer_sums():
    try:
        cd.sql("SELECT sum(u) AS s, avg(u) AS a FROM t", t=cd.from_arrow(TABLE)).explain()
    except PlanError as e:  # pragma: no cover - a regression
        pytest.fail(str(e))


def test_cli_error_is_one_line(tmp_path):
    data = tmp_path / "t.parquet"
    import pyarrow.parquet as pq

    pq.write_table(TABLE, data)
    job = tmp_path / "job.sql"
    job.write_text(f"CREATE TABLE t WITH (connector = 'filesystem', path = '{data}');\n"
                   "SELECT k, sum(i) AS total FROM t GROUP BY k;")
    proc = run_cli("run", str(job))
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "SUM(i) overflowed BIGINT in a group" in lines[0]
    assert "DECIMAL(38, 0)" in lines[0] and "Traceback" not in proc.stderr


KILL_QUERY = ("SELECT window_start, auction, count(*) AS n, sum(price * 268435456) AS s, "
              "avg(price * 34359738368) AS a, avg(DISTINCT price * 34359738368) AS d "
              "FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '50' "
              "MILLISECOND)) GROUP BY window_start, window_end, auction")


def _kill_script(out, pace: bool) -> str:
    return (f"CREATE TABLE bid WITH (connector = 'nexmark', table = 'bid', events = '300000', "
            f"event_rate = '200000', pace = '{str(pace).lower()}');\n"
            f"CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', "
            f"format = 'parquet');\nINSERT INTO out {KILL_QUERY};\n")


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_killed_large_sums_resume_exactly(tmp_path):
    """Sums whose values trip the overflow bound (the halves' path) and averages whose
    states hold sums past 2^63, killed (SIGKILL) after checkpoints and resumed at another
    parallelism: the windows of a run never killed, each once."""
    from caudal.job import run_sql
    from tests.helpers import kill_after_checkpoints, normalized_rows, read_committed

    ref = tmp_path / "reference"
    run_sql(_kill_script(ref, False), parallelism=1)
    expected = normalized_rows(read_committed(ref))
    assert expected and max(r[4] for r in expected) > 2**63 / 8
    out, ck = tmp_path / "out", tmp_path / "ck"
    script = tmp_path / "job.sql"
    script.write_text(_kill_script(out, True))
    kill_after_checkpoints(script, ck, batch_rows=512, first=2, then=1, checkpoints=3)
    assert normalized_rows(read_committed(out)) == expected


@pytest.mark.parametrize("parallelism", [1, 2])
def test_frame_api_sum_and_mean(parallelism):
    """The Python frame API's sum and mean are the SQL aggregates: the same rule."""
    from caudal import col

    frame = cd.from_arrow(TABLE).group_by("k")
    got = frame.agg(col("i").mean().alias("m")).collect(parallelism=parallelism)
    assert sorted(tuple(r.values()) for r in got.to_pylist()) == \
        _duck("SELECT k, avg(i) AS m FROM t GROUP BY k")
    with pytest.raises(RuntimeFailure, match="overflowed BIGINT in a group"):
        frame.agg(col("i").sum().alias("s")).collect(parallelism=parallelism, batch_rows=1)
