"""Windows from outside, as a Flink SQL user writes them: the queries of Flink's planner IT
cases (WindowAggregateITCase, WindowJoinITCase) kept as written, over their test data
(TestData.windowDataWithTimestamp, read in its order a row at a time, so its late row is
late), checked against the results those IT cases expect, at parallelism 1 and 2."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from tests.helpers import run_to_table

#: TestData.windowDataWithTimestamp (and windowData2WithTimestamp: name 'a' is 'a1'), in order
ROWS = [
    ("2020-10-10 00:00:01", 1, 1.0, 1.0, "1.11", "Hi", "a"),
    ("2020-10-10 00:00:02", 2, 2.0, 2.0, "2.22", "Comment#1", "a"),
    ("2020-10-10 00:00:03", 2, 2.0, 2.0, "2.22", "Comment#1", "a"),
    ("2020-10-10 00:00:04", 5, 5.0, 5.0, "5.55", None, "a"),
    ("2020-10-10 00:00:07", 3, 3.0, 3.0, None, "Hello", "b"),
    ("2020-10-10 00:00:06", 6, 6.0, 6.0, "6.66", "Hi", "b"),   # out of order
    ("2020-10-10 00:00:08", 3, None, 3.0, "3.33", "Comment#2", "a"),
    ("2020-10-10 00:00:04", 5, 5.0, None, "5.55", "Hi", "a"),  # late: watermark 7 s
    ("2020-10-10 00:00:16", 4, 4.0, 4.0, "4.44", "Hi", "b"),
    ("2020-10-10 00:00:32", 7, 7.0, 7.0, "7.77", None, None),
    ("2020-10-10 00:00:34", 1, 3.0, 3.0, "3.33", "Comment#3", "b"),
]
COLUMNS = ["ts", "int", "double", "float", "bigdec", "string", "name"]


def _table(tmp_path: Path, name: str, rename_a: str = "a") -> str:
    path = tmp_path / f"{name}.json"
    with open(path, "w") as f:
        for row in ROWS:
            record = dict(zip(COLUMNS, row))
            if record["name"] == "a":
                record["name"] = rename_a
            f.write(json.dumps(record) + "\n")
    return f"""CREATE TABLE {name} (
 `ts` STRING, `int` INT, `double` DOUBLE, `float` FLOAT, `bigdec` DECIMAL(10, 2),
 `string` STRING, `name` STRING,
 `rowtime` AS TO_TIMESTAMP(`ts`),
 WATERMARK for `rowtime` AS `rowtime` - INTERVAL '1' SECOND
) WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json');
"""


def _flink_text(value) -> str:
    """A value as Flink's test sinks print it (LocalDateTime.toString, null)."""
    if value is None:
        return "null"
    if isinstance(value, dt.datetime):
        value = value.replace(tzinfo=None)
        text = value.strftime("%Y-%m-%dT%H:%M")
        if value.second or value.microsecond:
            text += value.strftime(":%S")
        if value.microsecond:
            text += f".{value.microsecond:06d}"[:4]
        return text
    return str(value)


def _run(tmp_path: Path, ddl: str, query: str, parallelism: int) -> list[str]:
    out = run_to_table(ddl, query, tmp_path / f"out{parallelism}", parallelism,
                       batch_rows=1)
    rows = [] if out is None else out.to_pylist()
    return sorted(",".join(_flink_text(v) for v in row.values()) for row in rows)


def _uv(table: str, alias: str) -> str:
    return f"""SELECT
    `name`,
    window_start,
    window_end,
    COUNT(DISTINCT `string`) as {alias}
    FROM TABLE(
      TUMBLE(TABLE {table}, DESCRIPTOR(rowtime), INTERVAL '5' SECOND))
    GROUP BY `name`, window_start, window_end"""


@pytest.mark.parametrize("parallelism", [1, 2])
def test_window_anti_join_not_in(tmp_path, parallelism):
    """WindowJoinITCase.testAntiJoinNotIN: NOT IN correlated on both window bounds is a
    window anti join, as NOT EXISTS is. Its NULL check (against the distinct (bounds,
    name IS NULL) of the subquery) made the query updating, refused by an append-only sink
    ("the query's result is updating")."""
    ddl = _table(tmp_path, "T1") + _table(tmp_path, "T2", rename_a="a1")
    query = f"""SELECT * FROM (
{_uv('T1', 'uv1')}
) L WHERE L.`name` NOT IN (
SELECT `name` FROM(
{_uv('T2', 'uv2')}
) R
  WHERE L.window_start = R.window_start AND L.window_end = R.window_end)"""
    # [30 s, 35 s) has a NULL name on both sides: NOT IN is NULL there for every row
    assert _run(tmp_path, ddl, query, parallelism) == [
        "a,2020-10-10T00:00,2020-10-10T00:00:05,2",
        "a,2020-10-10T00:00:05,2020-10-10T00:00:10,1"]


AGGREGATES = """  COUNT(*),
  SUM(`bigdec`),
  MAX(`double`),
  MIN(`float`),
  COUNT(DISTINCT `string`)"""

#: WindowAggregateITCase: the window table function, and the rows its test expects (without
#: the concat_distinct_agg column, a UDF of the test)
LATE_ROW_CASES = {
    "testEventTimeHopWindow": (
        "HOP(TABLE T1, DESCRIPTOR(rowtime), INTERVAL '5' SECOND, INTERVAL '10' SECOND)",
        ["a,2020-10-09T23:59:55,2020-10-10T00:00:05,4,11.10,5.0,1.0,2",
         "a,2020-10-10T00:00,2020-10-10T00:00:10,6,19.98,5.0,1.0,3",
         "a,2020-10-10T00:00:05,2020-10-10T00:00:15,1,3.33,null,3.0,1",
         "b,2020-10-10T00:00,2020-10-10T00:00:10,2,6.66,6.0,3.0,2",
         "b,2020-10-10T00:00:05,2020-10-10T00:00:15,2,6.66,6.0,3.0,2",
         "b,2020-10-10T00:00:10,2020-10-10T00:00:20,1,4.44,4.0,4.0,1",
         "b,2020-10-10T00:00:15,2020-10-10T00:00:25,1,4.44,4.0,4.0,1",
         "b,2020-10-10T00:00:25,2020-10-10T00:00:35,1,3.33,3.0,3.0,1",
         "b,2020-10-10T00:00:30,2020-10-10T00:00:40,1,3.33,3.0,3.0,1",
         "null,2020-10-10T00:00:25,2020-10-10T00:00:35,1,7.77,7.0,7.0,0",
         "null,2020-10-10T00:00:30,2020-10-10T00:00:40,1,7.77,7.0,7.0,0"]),
    "testEventTimeCumulateWindow": (
        "CUMULATE(\n     TABLE T1,\n     DESCRIPTOR(rowtime),\n     INTERVAL '5' SECOND,\n"
        "     INTERVAL '15' SECOND)",
        ["a,2020-10-10T00:00,2020-10-10T00:00:05,4,11.10,5.0,1.0,2",
         "a,2020-10-10T00:00,2020-10-10T00:00:10,6,19.98,5.0,1.0,3",
         "a,2020-10-10T00:00,2020-10-10T00:00:15,6,19.98,5.0,1.0,3",
         "b,2020-10-10T00:00,2020-10-10T00:00:10,2,6.66,6.0,3.0,2",
         "b,2020-10-10T00:00,2020-10-10T00:00:15,2,6.66,6.0,3.0,2",
         "b,2020-10-10T00:00:15,2020-10-10T00:00:20,1,4.44,4.0,4.0,1",
         "b,2020-10-10T00:00:15,2020-10-10T00:00:25,1,4.44,4.0,4.0,1",
         "b,2020-10-10T00:00:15,2020-10-10T00:00:30,1,4.44,4.0,4.0,1",
         "b,2020-10-10T00:00:30,2020-10-10T00:00:35,1,3.33,3.0,3.0,1",
         "b,2020-10-10T00:00:30,2020-10-10T00:00:40,1,3.33,3.0,3.0,1",
         "b,2020-10-10T00:00:30,2020-10-10T00:00:45,1,3.33,3.0,3.0,1",
         "null,2020-10-10T00:00:30,2020-10-10T00:00:35,1,7.77,7.0,7.0,0",
         "null,2020-10-10T00:00:30,2020-10-10T00:00:40,1,7.77,7.0,7.0,0",
         "null,2020-10-10T00:00:30,2020-10-10T00:00:45,1,7.77,7.0,7.0,0"]),
    "testEventTimeTumbleWindowWithOffset": (
        "TUMBLE(TABLE T1, DESCRIPTOR(rowtime), INTERVAL '1' DAY, INTERVAL '8' HOUR)",
        ["a,2020-10-09T08:00,2020-10-10T08:00,6,19.98,5.0,1.0,3",
         "b,2020-10-09T08:00,2020-10-10T08:00,4,14.43,6.0,3.0,3",
         "null,2020-10-09T08:00,2020-10-10T08:00,1,7.77,7.0,7.0,0"]),
}


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("case", sorted(LATE_ROW_CASES))
def test_a_row_behind_the_watermark_counts_in_its_open_windows(tmp_path, case, parallelism):
    """The row at 4 s arrives after the watermark reached 7 s: its windows that ended by
    then ([-5 s, 5 s), [0 s, 5 s)) were emitted without it, but it counts in those still
    open ([0 s, 10 s), the day from 08:00): Flink's expected 'a' rows have 6 (19.98), as the
    batch answer has. caudal dropped it from every window (5, 14.43): a row behind the
    watermark was late whatever its window."""
    tvf, expected = LATE_ROW_CASES[case]
    query = (f"SELECT\n  `name`,\n  window_start,\n  window_end,\n{AGGREGATES}\nFROM TABLE(\n"
             f"   {tvf})\nGROUP BY `name`, window_start, window_end")
    assert _run(tmp_path, _table(tmp_path, "T1"), query, parallelism) == sorted(expected)


@pytest.mark.parametrize("parallelism", [1, 2])
def test_two_phase_window_aggregate_judges_late_rows_by_their_windows(tmp_path, parallelism):
    """COUNT and SUM only: at parallelism 2 the rows are pre-aggregated before the shuffle,
    and the late row travels alone with its time to be judged downstream (it was dropped
    there by its time alone)."""
    query = """SELECT `name`, window_start, window_end, COUNT(*), SUM(`bigdec`)
FROM TABLE(HOP(TABLE T1, DESCRIPTOR(rowtime), INTERVAL '5' SECOND, INTERVAL '10' SECOND))
WHERE `name` = 'a'
GROUP BY `name`, window_start, window_end"""
    assert _run(tmp_path, _table(tmp_path, "T1"), query, parallelism) == [
        "a,2020-10-09T23:59:55,2020-10-10T00:00:05,4,11.10",
        "a,2020-10-10T00:00,2020-10-10T00:00:10,6,19.98",
        "a,2020-10-10T00:00:05,2020-10-10T00:00:15,1,3.33"]


@pytest.mark.parametrize("parallelism", [1, 2])
def test_a_row_behind_the_watermark_joins_the_open_session_it_falls_in(tmp_path, parallelism):
    """WindowAggregateITCase.testEventTimeSessionWindow: the row at 4 s arrives at watermark
    7 s inside the still open session [1 s, 13 s) of 'a': it joins it (6 rows, 19.98), as in
    Flink and the batch answer. It was dropped as late (5, 14.43)."""
    query = f"""SELECT
  `name`,
  window_start,
  window_end,
{AGGREGATES}
FROM TABLE(
   SESSION(TABLE T1 PARTITION BY `name`, DESCRIPTOR(rowtime), INTERVAL '5' SECOND))
GROUP BY `name`, window_start, window_end"""
    assert _run(tmp_path, _table(tmp_path, "T1"), query, parallelism) == sorted([
        "a,2020-10-10T00:00:01,2020-10-10T00:00:13,6,19.98,5.0,1.0,3",
        "b,2020-10-10T00:00:06,2020-10-10T00:00:12,2,6.66,6.0,3.0,2",
        "b,2020-10-10T00:00:16,2020-10-10T00:00:21,1,4.44,4.0,4.0,1",
        "b,2020-10-10T00:00:34,2020-10-10T00:00:39,1,3.33,3.0,3.0,1",
        "null,2020-10-10T00:00:32,2020-10-10T00:00:37,1,7.77,7.0,7.0,0"])


@pytest.mark.parametrize("parallelism", [1, 2])
def test_a_filter_on_window_bounds_before_the_aggregate(tmp_path, duck, parallelism):
    """WindowAggregateITCase.testEventTimeSessionWindowWithTVFNotPullUpIntoWindowAgg filters
    the SESSION table function on window_start before grouping: it was refused ('a filter on
    window_start before a window aggregate is not supported'). A condition on the window
    columns alone holds for all rows of a window or none, so it filters the windows; the
    other conditions still filter rows."""
    ddl = _table(tmp_path, "T1")
    flink = f"""SELECT
  `name`,
  window_start,
  window_end,
{AGGREGATES}
FROM (
 SELECT * FROM TABLE(
   SESSION(TABLE T1 PARTITION BY `name`, DESCRIPTOR(rowtime), INTERVAL '5' SECOND))
   WHERE window_start > TIMESTAMP '2000-01-01 10:10:00.000'
)
GROUP BY `name`, window_start, window_end"""
    assert len(_run(tmp_path, ddl, flink, parallelism)) == 5
    query = """SELECT `name`, window_start, window_end, COUNT(*), SUM(`int`) FROM (
 SELECT * FROM TABLE(TUMBLE(TABLE T1, DESCRIPTOR(rowtime), INTERVAL '5' SECOND))
 WHERE window_start > TIMESTAMP '2020-10-10 00:00:04' AND `int` > 1
) GROUP BY `name`, window_start, window_end"""
    got = _run(tmp_path / "q", ddl, query, parallelism)
    duck.execute("CREATE TABLE t (ts TIMESTAMP, i INT, name TEXT)")
    duck.executemany("INSERT INTO t VALUES (?, ?, ?)", [(r[0], r[1], r[6]) for r in ROWS])
    want = duck.sql("""SELECT name, ws, ws + INTERVAL 5 SECOND AS we, count(*) AS n, sum(i) AS s
        FROM (SELECT *, time_bucket(INTERVAL 5 SECOND, ts) AS ws FROM t WHERE i > 1)
        WHERE ws > TIMESTAMP '2020-10-10 00:00:04' GROUP BY name, ws""").fetchall()
    assert got == sorted(",".join(_flink_text(v) for v in row) for row in want)


@pytest.mark.parametrize("parallelism", [1, 2])
def test_window_top_n_ranks_a_row_behind_the_watermark_in_its_open_window(tmp_path,
                                                                          parallelism):
    """WindowRankITCase.testTumbleWindowTVFWithNegativeOffset (its columns as in
    testTumbleWindowTVFWithCalc): the row at 4 s (int 5) arrives at watermark 7 s, its window
    [4 s, 9 s) still open: Flink ranks it among the top 2 of 'a' there."""
    query = """SELECT
  `int`,
  `string`,
  `name`,
  window_start,
  window_end,
  window_time
FROM (
  SELECT *,
    ROW_NUMBER() OVER(
      PARTITION BY window_start, window_end, `name` ORDER BY `int` DESC) as rownum
  FROM TABLE(
      TUMBLE(TABLE T1, DESCRIPTOR(rowtime), INTERVAL '5' SECOND, INTERVAL '-1' SECOND))
)
WHERE rownum <= 2"""
    assert _run(tmp_path, _table(tmp_path, "T1"), query, parallelism) == sorted([
        "2,Comment#1,a,2020-10-09T23:59:59,2020-10-10T00:00:04,2020-10-10T00:00:03.999",
        "2,Comment#1,a,2020-10-09T23:59:59,2020-10-10T00:00:04,2020-10-10T00:00:03.999",
        "5,null,a,2020-10-10T00:00:04,2020-10-10T00:00:09,2020-10-10T00:00:08.999",
        "5,Hi,a,2020-10-10T00:00:04,2020-10-10T00:00:09,2020-10-10T00:00:08.999",
        "6,Hi,b,2020-10-10T00:00:04,2020-10-10T00:00:09,2020-10-10T00:00:08.999",
        "3,Hello,b,2020-10-10T00:00:04,2020-10-10T00:00:09,2020-10-10T00:00:08.999",
        "4,Hi,b,2020-10-10T00:00:14,2020-10-10T00:00:19,2020-10-10T00:00:18.999",
        "7,null,null,2020-10-10T00:00:29,2020-10-10T00:00:34,2020-10-10T00:00:33.999",
        "1,Comment#3,b,2020-10-10T00:00:34,2020-10-10T00:00:39,2020-10-10T00:00:38.999"])
