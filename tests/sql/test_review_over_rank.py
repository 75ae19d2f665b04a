"""OVER aggregates, Top-N and deduplication reviewed from outside, with the queries of Flink's
planner IT cases (OverAggregateITCase, RankITCase, DeduplicateITCase, WindowRankITCase,
WindowDeduplicateITCase; stream), their text kept, their tables Parquet files. Compared with
Flink's expected rows where DuckDB cannot say (processing time), at parallelism 1 and 2.

Found wrong before: deduplication keeping the last row on processing time (``ORDER BY
proctime DESC``, DeduplicateITCase.testLastRowOnProctime) kept the first row of the last
batch, not the last row: PROCTIME() is read once per batch, so the rows of a batch tie, and
ties went to the earlier row; the same per window (a TUMBLE on processing time, then
``ORDER BY proc DESC`` per window, WindowDeduplicateITCase's query on processing time), and
for ``ORDER BY proc DESC LIMIT n`` (the first rows of the last batch, not its last rows).

Refused unclearly before: ``LISTAGG(DISTINCT c, '|')`` (OverAggregateITCase, also in a GROUP
BY) named a CASE expression the parser had made of it, not the DISTINCT; ``LAG(b) OVER``
(testLagFunction), LEAD, NTILE, PERCENT_RANK, CUME_DIST were refused as unknown aggregates,
with a hint listing GROUP BY's aggregates (first_value among them, refused in OVER too);
PERCENTILE and COLLECT in OVER got a hint for top-N per window only; a top-N over a
changelog bounded by a column (RankITCase.testTopNWithVariableTopSize: ``rank_num <=
topSize``) or not bounded at all was refused for want of a constant bound, though a changelog's
rows are all kept anyway; so was a bound written as a constant expression or a decimal
(``rank_num < 2 + 1``, ``rank_num <= 2.5``), over an append-only input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from caudal.errors import PlanError
from caudal.job import compile_sql
from tests.changelog_helpers import run_folded
from tests.helpers import duckdb_rows, normalized_rows, run_to_table

# ---- DeduplicateITCase: first and last row on processing time -----------------------------

_TUPLE_DATA3 = [(1, 1, "Hi"), (2, 2, "Hello"), (3, 2, "Hello world"),
                (4, 3, "Hello world, how are you?"), (5, 3, "I am fine."),
                (6, 3, "Luke Skywalker"), (7, 4, "Comment#1"), (8, 4, "Comment#2"),
                (9, 4, "Comment#3"), (10, 4, "Comment#4"), (11, 5, "Comment#5"),
                (12, 5, "Comment#6"), (13, 5, "Comment#7"), (14, 5, "Comment#8"),
                (15, 5, "Comment#9"), (16, 6, "Comment#10"), (17, 6, "Comment#11"),
                (18, 6, "Comment#12"), (19, 6, "Comment#13"), (20, 6, "Comment#14"),
                (21, 6, "Comment#15")]


def _tuple_data3(key_type: str) -> pa.Table:
    a, b, c = zip(*_TUPLE_DATA3)
    keys = pa.array(b, pa.int64()) if key_type == "BIGINT" else pa.array([str(x) for x in b])
    return pa.table({"a": pa.array(a, pa.int32()), "b": keys, "c": pa.array(c)})


_DEDUP = """
SELECT a, b, c
FROM (
  SELECT *,
    ROW_NUMBER() OVER (PARTITION BY b ORDER BY {order}) as rowNum
  FROM T
)
WHERE rowNum = 1"""


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("key_type", ["BIGINT", "STRING"])   # the top-1 slots; the sort
@pytest.mark.parametrize("order,rows", [
    ("proctime", [1, 2, 4, 7, 11, 16]),            # testFirstRowOnProctime
    ("proctime()", [1, 2, 4, 7, 11, 16]),          # testFirstRowOnBuiltinProctime
    ("proctime DESC", [1, 3, 6, 10, 15, 21]),      # testLastRowOnProctime
    ("proctime() DESC", [1, 3, 6, 10, 15, 21]),    # testLastRowOnBuiltinProctime
])
def test_dedup_on_processing_time_keeps_the_first_or_last_row(tmp_path, order, rows,
                                                              key_type, parallelism):
    """Rows read in one batch share their PROCTIME(): the last row is the last one read."""
    got = run_folded(tmp_path, {"T": _tuple_data3(key_type)}, _DEDUP.format(order=order),
                     parallelism, {"T": f"a INT, b {key_type}, c STRING, proctime AS PROCTIME()"},
                     row_group_rows=None)   # one reader: the rows arrive in file order
    expected = [r for r in _TUPLE_DATA3 if r[0] in rows]
    if key_type == "STRING":
        expected = [(a, str(b), c) for a, b, c in expected]
    assert got == normalized_rows(pa.table(dict(zip("abc", map(list, zip(*expected))))))


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("order,rows", [("proc", [1, 2, 4, 7, 11, 16]),
                                        ("proc DESC", [1, 3, 6, 10, 15, 21])])
def test_window_dedup_on_processing_time_keeps_the_first_or_last_row(tmp_path, order, rows,
                                                                     parallelism):
    query = ("SELECT a, b, c FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, "
             f"window_end, b ORDER BY {order}) AS rownum FROM TABLE(TUMBLE(TABLE T, "
             "DESCRIPTOR(proc), INTERVAL '1' HOUR))) WHERE rownum <= 1")
    got = run_to_table(f"CREATE TABLE T (a INT, b BIGINT, c STRING, proc AS PROCTIME()) WITH "
                       f"('connector' = 'filesystem', 'path' = "
                       f"'{_parquet(tmp_path, _tuple_data3('BIGINT'))}');", query,
                       tmp_path / "out", parallelism, batch_rows=4)
    assert normalized_rows(got) == [r for r in _TUPLE_DATA3 if r[0] in rows]


# ---- RankITCase: a top-N over a changelog bounded by a column, or not at all --------------

_VARIABLE_DATA = [("book", 1, 1001, 4), ("book", 2, 1002, 4), ("book", 4, 1003, 4),
                  ("book", 1, 1004, 4), ("book", 1, 1005, 4), ("book", 3, 1006, 4),
                  ("book", 2, 1007, 4), ("book", 4, 1008, 4), ("book", 1, 1009, 4),
                  ("book", 4, 1010, 4), ("book", 4, 1012, 4), ("book", 4, 1012, 4),
                  ("fruit", 4, 1013, 2), ("fruit", 5, 1014, 2), ("fruit", 3, 1015, 2),
                  ("fruit", 4, 1017, 2), ("fruit", 5, 1018, 2), ("fruit", 5, 1016, 2)]


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("query", [
    # testTopNWithVariableTopSize
    """
SELECT category, rank_num, sells, shopId
FROM (
  SELECT category, shopId, sells, topSize,
      ROW_NUMBER() OVER (PARTITION BY category ORDER BY sells DESC) as rank_num
  FROM (
     SELECT category, shopId, count(sellId) as sells, max(topSize) as topSize
     FROM T
     GROUP BY category, shopId
  ))
WHERE rank_num <= topSize""",
    # every rank, and every rank but the first (ties cannot change RANK)
    "SELECT category, shopId, r FROM (SELECT category, shopId, RANK() OVER (PARTITION BY "
    "category ORDER BY sells DESC) AS r FROM (SELECT category, shopId, count(*) AS sells FROM "
    "T GROUP BY category, shopId))",
    "SELECT category, shopId, r FROM (SELECT category, shopId, DENSE_RANK() OVER (PARTITION BY "
    "category ORDER BY sells) AS r FROM (SELECT category, shopId, count(*) AS sells FROM T "
    "GROUP BY category, shopId)) WHERE r > 1",
])
def test_top_n_of_a_changelog_without_a_constant_bound_equals_duckdb(tmp_path, query,
                                                                     parallelism):
    table = pa.table(dict(zip(["category", "shopId", "sellId", "topSize"],
                              map(list, zip(*_VARIABLE_DATA)))))
    got = run_folded(tmp_path, {"T": table}, query, parallelism)
    assert got == duckdb_rows({"T": table}, query)


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("where", ["rank_num < 2 + 1", "rank_num <= 2.5", "2.9 >= rank_num",
                                   "rank_num <= CAST('2' AS INT)", "rank_num < 2.0 + 1"])
def test_top_n_bound_by_a_constant_expression_equals_duckdb(tmp_path, where, parallelism):
    """RankITCase.testTopN with its bound written otherwise."""
    table = pa.table({"category": ["book", "book", "book", "fruit", "fruit", "fruit"],
                      "shopId": [1, 2, 4, 4, 3, 5], "num": [12, 19, 11, 33, 44, 22]})
    query = ("SELECT * FROM (SELECT category, shopId, num, ROW_NUMBER() OVER (PARTITION BY "
             f"category ORDER BY num DESC) as rank_num FROM T) WHERE {where}")
    assert run_folded(tmp_path, {"T": table}, query, parallelism) == \
        duckdb_rows({"T": table}, query)
    assert "keep <= 2" in compile_sql(
        f"CREATE TABLE T WITH (connector = 'filesystem', path = '{tmp_path / 'T.parquet'}');\n"
        f"{query};").explain()


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("rows,batch", [(21, 4), (70_000, 20_000)])   # the second compacts
def test_order_by_processing_time_desc_limit_keeps_the_last_rows(tmp_path, rows, batch,
                                                                 parallelism):
    table = pa.table({"a": pa.array(np.arange(1, rows + 1, dtype=np.int32))})
    query = "SELECT a FROM T ORDER BY proc DESC LIMIT 3"
    got = run_to_table(f"CREATE TABLE T (a INT, proc AS PROCTIME()) WITH ('connector' = "
                       f"'filesystem', 'path' = '{_parquet(tmp_path, table)}');", query,
                       tmp_path / "out", parallelism, batch_rows=batch)
    assert normalized_rows(got) == [(rows - 2,), (rows - 1,), (rows,)]
    # the same over an unbounded input: a top-N, ties to the later row
    text = compile_sql("CREATE TABLE g (counter BIGINT, proc AS PROCTIME()) WITH "
                       "('connector' = 'impulse');\nSELECT * FROM g ORDER BY proc DESC "
                       "LIMIT 3;").explain()
    assert "ORDER BY proc DESC (ties: the later row) keep <= 3" in text


# ---- OverAggregateITCase: first_value / last_value --------------------------------------

_FIRST_LAST = ("SELECT c, b, first_value(b) {w} AS f, last_value(b) {w} AS l, "
               "first_value(c) {w} AS fc, count(a) {w} AS n, sum(a) {w} AS s FROM T1")


def _over_rows(n: int, seed: int) -> pa.Table:
    """Distinct event times (a ROWS frame has one answer), NULLs in every column."""
    rng = np.random.default_rng(seed)
    times = np.sort(rng.choice(40_000, n, replace=False)).astype("datetime64[ms]")
    return pa.table({
        "a": pa.array(rng.integers(0, 9, n), mask=rng.random(n) < 0.2),
        "b": pa.array(rng.integers(-5, 50, n).astype(np.int32), mask=rng.random(n) < 0.3),
        "c": pa.array(rng.choice(["Hello", "Hello World", "Hi"], n), mask=rng.random(n) < 0.2),
        "rowtime": pa.array(times, pa.timestamp("ms"))})


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("window", [
    # testProcTimeUnboundedPartitionedRangeOver's, on event time
    "OVER (PARTITION BY c ORDER BY rowtime RANGE UNBOUNDED preceding)",
    "OVER (PARTITION BY c ORDER BY rowtime ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)",
    # testProcTimeBoundedNonPartitionedRowsOver's, on event time
    "OVER (ORDER BY rowtime ROWS BETWEEN 10 PRECEDING AND CURRENT ROW)",
    "OVER (PARTITION BY a ORDER BY rowtime RANGE BETWEEN INTERVAL '2' SECOND PRECEDING AND "
    "CURRENT ROW)",
])
def test_first_and_last_value_over_event_time_equal_duckdb(tmp_path, window, parallelism):
    """The value of the frame's first and last row, NULL included (DuckDB's default), also
    once the rows before the frame were released in earlier batches."""
    table = _over_rows(300, 3)
    query = _FIRST_LAST.format(w=window)
    got = run_to_table(f"CREATE TABLE T1 (a BIGINT, b INT, c STRING, rowtime TIMESTAMP(3), "
                       f"WATERMARK FOR rowtime AS rowtime) WITH ('connector' = 'filesystem', "
                       f"'path' = '{_parquet(tmp_path, table)}');", query, tmp_path / "out",
                       parallelism, batch_rows=7)
    assert normalized_rows(got) == duckdb_rows({"T1": table}, query)


def test_first_and_last_value_over_a_changelog_equal_duckdb(tmp_path):
    table = _over_rows(200, 4)
    query = ("SELECT c, n, first_value(n) OVER (PARTITION BY c ORDER BY n, a) AS f, "
             "last_value(a) OVER (PARTITION BY c ORDER BY n, a ROWS BETWEEN 2 PRECEDING AND "
             "CURRENT ROW) AS l FROM (SELECT a, c, count(b) AS n FROM T1 GROUP BY a, c)")
    for parallelism in (1, 2):
        got = run_folded(tmp_path, {"T1": table}, query, parallelism)
        assert got == duckdb_rows({"T1": table}, query)


def test_first_value_with_filter_is_refused(tmp_path):
    """FILTER would make it the first row's value or NULL (a CASE), not the first of the
    filtered rows."""
    with pytest.raises(PlanError, match=r"first_value\(x\) FILTER \(WHERE …\) OVER"):
        compile_sql(_T1.format(path=_parquet(tmp_path, _over_rows(3, 0))) +
                    "SELECT first_value(b) FILTER (WHERE a > 1) OVER (ORDER BY rowtime) "
                    "FROM T1;")


def _parquet(tmp: Path, table: pa.Table) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "t1.parquet"
    pq.write_table(table, path)
    return path


# ---- OverAggregateITCase: what is refused says what OVER accepts -------------------------

_T1 = ("CREATE TABLE T1 (a BIGINT, b INT, c STRING, rowtime TIMESTAMP(3), WATERMARK FOR "
       "rowtime AS rowtime) WITH ('connector' = 'filesystem', 'path' = '{path}', "
       "'format' = 'parquet');\n")
_OVER_ACCEPTS = "OVER aggregates: count, sum, avg, min, max"


@pytest.mark.parametrize("query,message,col,hint", [
    ("SELECT a, b, c,   LAG(b) OVER(PARTITION BY a ORDER BY rowtime) FROM T1",
     "lag() OVER (…) is not supported", 19, _OVER_ACCEPTS),
    ("SELECT LEAD(b, 2, CAST(10086 AS BIGINT)) OVER(PARTITION BY a ORDER BY rowtime) FROM T1",
     "lead() OVER (…) is not supported", 8, _OVER_ACCEPTS),
    ("SELECT a, ntile(2) OVER (PARTITION BY a ORDER BY rowtime) FROM T1",
     "ntile() OVER (…) is not supported", 11, _OVER_ACCEPTS),
    ("SELECT listagg(distinct c, '|')   OVER (ORDER BY rowtime ROWS BETWEEN UNBOUNDED "
     "preceding AND CURRENT ROW), count(a)   OVER (ORDER BY rowtime ROWS BETWEEN UNBOUNDED "
     "preceding AND CURRENT ROW) from T1", "string_agg(DISTINCT …) is not supported", 8,
     "DISTINCT is accepted in count, sum and avg"),
    ("SELECT c, listagg(DISTINCT c, '|') FROM T1 GROUP BY c",
     "string_agg(DISTINCT …) is not supported", 11,
     "DISTINCT is accepted in count, sum and avg"),
    ("SELECT PERCENTILE(b, 0.5) OVER (ORDER BY rowtime ROWS BETWEEN 3 PRECEDING AND CURRENT "
     "ROW) AS swo FROM T1", "OVER (…) is not supported", 8, _OVER_ACCEPTS),
])
def test_refused_window_functions_say_what_over_accepts(tmp_path, query, message, col, hint):
    with pytest.raises(PlanError) as err:
        compile_sql(_T1.format(path=_parquet(tmp_path, _over_rows(3, 0))) + query + ";")
    assert message in str(err.value) and hint in str(err.value.hint)
    assert (err.value.line, err.value.col) == (2, col)
