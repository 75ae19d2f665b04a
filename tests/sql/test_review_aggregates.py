"""Aggregates as an outside user meets them, compared with DuckDB at parallelism 1 and 2:
every documented spelling, every aggregate over each column type (NULLs, all-NULL and empty
groups), over updating inputs (an aggregate of an aggregate, a LEFT JOIN's changelog, a
top-N, a debezium changelog with updates and deletes), and queries published in Apache
Flink's AggregateITCase (flink-table-planner, runtime/stream/sql) with their data, the SQL
text unchanged."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import caudal as cd
from tests.changelog_helpers import fold, run_changelog


def _norm(v):
    if isinstance(v, float):
        return "nan" if math.isnan(v) else (0.0 if v == 0 else v)
    if isinstance(v, dt.datetime) and v.tzinfo is not None:
        return v.astimezone(dt.UTC).replace(tzinfo=None)
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, list):
        return tuple(_norm(x) for x in v)
    return v


def _rows(table: pa.Table | None) -> list[tuple]:
    if table is None:
        return []
    rows = [tuple(_norm(v) for v in r.values()) for r in table.to_pylist()]
    return sorted(rows, key=lambda r: repr(tuple(float(f"{v:.6g}") if isinstance(v, float)
                                                 else v for v in r)))


def _close(a, b) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12)
    return a == b


def assert_same_rows(got: pa.Table | None, expected: pa.Table) -> None:
    g, e = _rows(got), _rows(expected)
    assert len(g) == len(e) and all(_close(x, y) for x, y in zip(g, e)), f"{g} != {e}"


def _duck() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    # caudal sorts NULLs as PostgreSQL does (docs/sql-queries.md)
    con.execute("SET default_null_order = 'nulls_last_on_asc_first_on_desc'")
    return con


def check(tables: dict[str, str], query: str, duck_query: str | None = None,
          batch_rows: int = 3) -> None:
    """``tables``: name -> DuckDB SQL making its rows. The query runs through caudal (in
    batches of ``batch_rows``, so updating inputs retract between batches) at parallelism 1
    and 2; its folded result equals DuckDB's."""
    con = _duck()
    frames = {}
    for name, sql in tables.items():
        con.execute(f"CREATE TABLE {name} AS {sql}")
        frames[name] = cd.from_arrow(con.sql(f"SELECT * FROM {name}").to_arrow_table())
    expected = con.sql(duck_query or query).to_arrow_table()
    for parallelism in (1, 2):
        got = cd.sql(query, **frames).collect(parallelism=parallelism, batch_rows=batch_rows)
        assert_same_rows(got, expected)


def changelog_ddl(name: str, columns: list[tuple[str, str]], changes: list[tuple],
                  directory: Path, con: duckdb.DuckDBPyConnection) -> str:
    """A debezium_json changelog of ``changes`` ((op, row): +I, -D, or -U followed by +U);
    DuckDB's table ``name`` gets the rows it leaves. Returns caudal's CREATE TABLE."""
    names = [c.strip('"') for c, _ in columns]
    lines, final, before = [], [], None
    for op, row in changes:
        record = dict(zip(names, row))
        if op == "+I":
            lines.append({"before": None, "after": record, "op": "c"})
            final.append(tuple(row))
        elif op == "-D":
            lines.append({"before": record, "after": None, "op": "d"})
            final.remove(tuple(row))
        elif op == "-U":
            before = (record, tuple(row))
        else:  # +U
            lines.append({"before": before[0], "after": record, "op": "u"})
            final.remove(before[1])
            final.append(tuple(row))
    path = directory / f"{name}.json"
    path.write_text("".join(json.dumps(line, default=str) + "\n" for line in lines))
    declared = ", ".join(f"{c} {t}" for c, t in columns)
    con.execute(f"CREATE TABLE {name} ({declared})")
    if final:
        con.executemany(f"INSERT INTO {name} VALUES ({', '.join('?' for _ in names)})", final)
    return (f"CREATE TABLE {name} ({declared}) WITH (connector = 'filesystem', "
            f"path = '{path}', format = 'debezium_json');")


def check_changelog(tmp_path: Path, columns, changes, query: str) -> None:
    con = _duck()
    ddl = changelog_ddl("t", columns, changes, tmp_path, con)
    expected = con.sql(query).to_arrow_table()
    for parallelism in (1, 2):
        got = run_changelog(ddl, query, tmp_path / f"out{parallelism}",
                            parallelism=parallelism, batch_rows=2)
        assert_same_rows(fold(got) if got is not None else None, expected)


def values(rows: list[tuple], names: str) -> str:
    def literal(v):
        return "NULL" if v is None else repr(v)
    body = ", ".join("(" + ", ".join(literal(v) for v in r) + ")" for r in rows)
    return f"SELECT * FROM (VALUES {body}) v({names})"


# ---- documented spellings ------------------------------------------------------------------

WORDS = values([(1, 1, "A"), (2, 2, "B"), (3, 2, "B"), (4, 3, "C"), (5, 3, "C"), (6, 3, "A"),
                (7, 4, "EF"), (8, 4, None)], "a, b, c")


@pytest.mark.parametrize("query", [
    # docs/sql.md lists mean (avg) and listagg (string_agg); both were "unknown function"
    "SELECT b, mean(a) AS m FROM t GROUP BY b",
    "SELECT b, listagg(c, '#') AS l FROM t WHERE a < 7 GROUP BY b",
    # without a separator: ',' as in DuckDB and Flink (caudal asked for a separator)
    "SELECT b, listagg(c) AS l FROM t WHERE a < 7 GROUP BY b",
    "SELECT b, string_agg(c) AS l FROM t WHERE a < 7 GROUP BY b",
])
def test_documented_spellings_equal_duckdb(query):
    check({"t": WORDS}, query, batch_rows=100)


# ---- Flink's AggregateITCase: LISTAGG ------------------------------------------------------

FLINK_LISTAGG = [
    # testListAggWithNullData, testListAggWithoutDelimiterTreatNull
    ({"T": values([(1, 1, None), (2, 1, None), (3, 1, None)], "id, len, content")},
     "SELECT len, listagg(content, '#') FROM T GROUP BY len"),
    ({"T": values([(1, 1, None), (2, 1, None), (3, 1, None)], "id, len, content")},
     "SELECT len, listagg(content) FROM T GROUP BY len"),
    # testListAgg (without its retracting UDAFs): ten rows of one group
    ({"MyTable": "SELECT i AS a, 1::BIGINT AS b, 'Hi' AS c FROM range(10) r(i)"},
     "SELECT listagg(c), listagg(c, '-') FROM MyTable GROUP BY c"),
    # testMinMaxWithBinaryString: min/max over an updating aggregate of listagg
    ({"T": values([(1, 1, "A"), (2, 2, "B"), (3, 2, "BC"), (4, 3, "C"), (5, 3, "CD"),
                   (6, 3, "DE"), (7, 4, "EF"), (8, 4, "FG"), (9, 4, "HI"), (10, 4, "IJ")],
                  "a, b, c")},
     "SELECT b, min(c), max(c) FROM ( SELECT a, b, listagg(c) as c FROM T GROUP BY a, b) "
     "GROUP BY b"),
]


@pytest.mark.parametrize("tables,query", FLINK_LISTAGG)
def test_flink_listagg_queries_equal_duckdb(tables, query):
    check(tables, query)


# ---- statistics of two columns at parallelism 2 --------------------------------------------

PAIRS = ("SELECT * FROM (VALUES (1, 0.1, 1.0), (1, 0.2, 2.5), (1, 0.7, 3.0), (2, 1.0, 4.0), "
         "(2, 1.5, 4.25), (3, 9.5, 1.0), (3, 2.0, 3.0)) v(g, x, y)")


@pytest.mark.parametrize("agg", ["corr(y, x)", "covar_pop(y, x)", "covar_samp(y, x)",
                                 "regr_slope(y, x)", "regr_sxx(y, x)", "regr_sxy(y, x)",
                                 "regr_count(y, x)", "regr_avgx(y, x)"])
def test_pair_statistics_merge_fractional_moments(agg):
    """The local (two-phase) stage at parallelism 2 declared the co-moments BIGINT (NumPy's
    bincount of no rows is an integer array), so a batch whose group had two rows failed:
    'ArrowInvalid: Float value 0.206667 was truncated converting to int64'."""
    check({"t": f"SELECT g, x::DOUBLE AS x, y::DOUBLE AS y FROM ({PAIRS})"},
          f"SELECT g, {agg} AS r FROM t GROUP BY g", batch_rows=100)


#: (y, x) pairs per group: one pair, a constant x or y, NaN, infinities, NULLs, -0.0
DEGENERATE = {
    1: [(1.0, 2.0)], 2: [(1.0, 2.0), (3.0, 2.0)], 3: [(2.0, 1.0), (2.0, 3.0)],
    4: [(5.0, 5.0), (5.0, 5.0)], 5: [("nan", 1.0)], 6: [(1.0, "nan")], 7: [("inf", 1.0)],
    8: [(1.0, "inf")], 9: [("nan", 1.0), (2.0, 3.0)], 10: [("inf", 1.0), (2.0, 3.0)],
    11: [(1.0, 2.0), (2.0, 4.5), (3.0, 5.0)], 12: [(None, 1.0), (2.0, None)],
    13: [(1e300, 1.0), (-1e300, 2.0)], 14: [(1.0, "-inf"), (2.0, "inf")],
    16: [(1.0, 1.0), (2.0, 1.0), (3.0, 1.0)], 19: [("inf", "inf"), ("inf", "inf")],
    20: [("-0.0", "0.0"), ("0.0", "-0.0")]}
STATISTICS = ["var_pop(y)", "var_samp(y)", "stddev_pop(y)", "stddev_samp(y)", "corr(y, x)",
              "covar_pop(y, x)", "covar_samp(y, x)", "regr_slope(y, x)",
              "regr_intercept(y, x)", "regr_r2(y, x)", "regr_sxx(y, x)", "regr_syy(y, x)",
              "regr_sxy(y, x)", "regr_avgx(y, x)", "regr_avgy(y, x)", "regr_count(y, x)"]


def _degenerate_table() -> str:
    def num(v):
        return "NULL" if v is None else f"'{v}'::DOUBLE"
    pairs = [(g, y, x) for g, ps in DEGENERATE.items() for y, x in ps]
    rows = [f"({i}, {g}, {num(y)}, {num(x)})" for i, (g, y, x) in enumerate(pairs)]
    return f"SELECT * FROM (VALUES {', '.join(rows)}) v(id, g, y, x)"


@pytest.mark.parametrize("agg", STATISTICS)
def test_statistics_of_degenerate_groups_equal_duckdb(agg):
    """A single value, a constant column, NaN and infinities, as DuckDB answers them:
    caudal gave NULL for corr and regr_slope where x or y is constant (DuckDB: NaN, the
    0/0 of their definitions, e.g. corr of a one-row group), NaN for var_pop, stddev_pop,
    regr_sxx/syy of one NaN or infinite value (DuckDB: 0, one value has no deviation), 1
    for regr_r2 where y holds a NaN (DuckDB: NaN), NULL where x does (NaN)."""
    check({"t": _degenerate_table()}, f"SELECT g, {agg} AS r FROM t GROUP BY g",
          batch_rows=100)


def test_statistics_of_degenerate_groups_over_a_changelog():
    query = (f"SELECT g, {', '.join(f'{a} AS r{i}' for i, a in enumerate(STATISTICS))} "
             "FROM (SELECT id, g, max(y) AS y, max(x) AS x FROM t GROUP BY id, g) GROUP BY g")
    check({"t": _degenerate_table()}, query, batch_rows=4)


CONSTANT = ("SELECT i % 3 AS g, ([0.1, 0.7, 1e-3])[1 + i % 3]::DOUBLE AS x, i::DOUBLE AS y "
            "FROM range(30) r(i)")


@pytest.mark.parametrize("query", [
    "SELECT g, var_pop(x) AS v, var_samp(x) AS vs, stddev_pop(x) AS s, stddev_samp(x) AS ss, "
    "regr_sxx(y, x) AS sxx, covar_pop(x, x) AS c, corr(y, x) AS r, regr_slope(y, x) AS sl "
    "FROM t GROUP BY g",
    "SELECT g, count(*) AS n FROM t GROUP BY g HAVING stddev_samp(x) = 0",
    # over a changelog (the multiset of rows is aggregated again on every change)
    "SELECT g, stddev_pop(x) AS s, corr(y, x) AS r FROM (SELECT y, max(g) AS g, max(x) AS x "
    "FROM t GROUP BY y) GROUP BY g",
])
@pytest.mark.parametrize("batch_rows", [1, 7, 100])
def test_a_constant_group_has_no_deviation(query, batch_rows):
    """Ten 0.1s: DuckDB's variance is 0, caudal's was 1.9e-34 (stddev 1.4e-17, so HAVING
    stddev_samp(x) = 0 lost the group; corr(y, x) was a number, DuckDB's NaN): the mean,
    sum / n, missed 0.1 by an ulp, in Arrow's variance and in the merge of partial states."""
    check({"t": CONSTANT}, query, batch_rows=batch_rows)


# ---- Flink's GroupingSetsITCase (batch/sql/agg) and SELECT DISTINCT over a GROUP BY ------

EMP = values([("Adam", 50, "M"), ("Alice", 30, "F"), ("Bob", 10, "M"), ("Eric", 20, "M"),
              ("Eve", 50, "F"), ("Grace", 60, "F"), ("Jane", 10, "F"), ("Susan", 30, "F"),
              ("Wilma", None, "F")], "ename, deptno, gender")


@pytest.mark.parametrize("query", [
    # testCubeAndDistinct: caudal ignored DISTINCT after a GROUP BY (ten rows of 1)
    "select distinct count(*) from emp group by cube(deptno, gender)",
    "select distinct count(*) AS c from emp group by deptno",
    "select distinct gender, count(*) > 1 AS many from emp group by gender, deptno",
    "select distinct count(*) AS c from emp group by deptno order by c desc",
    "select distinct max(deptno) % 20 AS m from emp group by gender, deptno having count(*) < 3",
])
def test_select_distinct_over_a_group_by_equals_duckdb(query):
    check({"emp": EMP}, query)


EMPS = values([(100, "Fred", 10, None, None, 25, True, False),
               (110, "Eric", 20, "M", "San Francisco", 80, None, False),
               (110, "John", 40, "M", "Vancouver", None, False, True),
               (120, "Wilma", 20, "F", None, 5, None, True),
               (130, "Alice", 40, "F", "Vancouver", None, False, True)],
              "empno, name, deptno, gender, city, age, slacker, manager")


@pytest.mark.parametrize("query", [
    # testCoalesceOnGroupingSets: the item named as the input column it reads; GROUP BY
    # deptno is the input column (as in PostgreSQL and DuckDB), caudal took the SELECT
    # alias and made the whole coalesce NULL where deptno is left out (-1 expected)
    "select gender, city, coalesce(deptno, -1) as deptno, count(*) as cnt from emps "
    "group by grouping sets ((gender, city), (gender, city, deptno))",
    "select coalesce(gender, 'all') as gender, count(*) as c from emps group by rollup(gender)",
    # an alias that is not an input column still stands for its expression
    "select deptno + 1 as d1, count(*) as c from emps group by rollup(d1)",
])
def test_grouping_sets_name_an_input_column_before_an_alias(query):
    check({"emps": EMPS}, query)


@pytest.mark.parametrize("query", [
    # testGroupingInSelectClauseOfGroupByQuery: GROUPING() of a plain GROUP BY is 0
    # (caudal: "aggregate grouping() is not supported")
    "select count(*) as c, grouping(deptno) as g from emp group by deptno",
    "select gender, grouping_id(gender, deptno) as gi, count(*) as c from emp "
    "group by gender, deptno having grouping(gender) = 0",
])
def test_grouping_of_a_plain_group_by_equals_duckdb(query):
    check({"emp": EMP}, query)


DEPT = values([(10, "Sales"), (20, "Marketing"), (30, "Engineering"), (40, "Empty")],
              "deptno, dname")


@pytest.mark.parametrize("query", [
    # testCubeAndJoin: HAVING names gender, GROUP BY e.gender (caudal: "column 'gender'
    # must appear in GROUP BY")
    "select e.deptno, e.gender, min(e.ename) as min_name from emp as e join dept as d "
    "using (deptno) group by cube(e.deptno, d.deptno, e.gender) "
    "having count(*) > 2 or gender = 'M' and e.deptno = 10",
    "select gender, count(*) as c from emp as e group by rollup(e.gender)",
    "select e.gender, count(*) as c from emp as e group by rollup(gender)",
])
def test_grouping_sets_match_a_column_however_it_is_qualified(query):
    check({"emp": EMP, "dept": DEPT}, query)


# ---- Flink's AggregateITCase (stream/sql): queries and data as published -------------------

T3 = values([(1, 1, "A"), (2, 2, "B"), (3, 2, "B"), (4, 3, "C"), (5, 3, "C"), (6, 3, "C"),
             (7, 4, "B"), (8, 4, "A"), (9, 4, "D"), (10, 4, "E"), (11, 5, "A"), (12, 5, "B")],
            "a, b, c")
EMPS_GS = values([(100, "Fred", 10, None, None, 40, 25, True, False),
                  (110, "Eric", 20, "M", "San Francisco", 3, 80, None, False),
                  (110, "John", 40, "M", "Vancouver", 2, None, False, True),
                  (120, "Wilma", 20, "F", None, 1, 5, None, True),
                  (130, "Alice", 40, "F", "Vancouver", 2, None, False, True)],
                 "empno, name, deptno, gender, city, empid, age, slacker, manager")
FLINK_AGGREGATES = [
    ({"T": values([(1, 10), (1, 10), (2, 5), (1, 10)], "id, price")},
     "SELECT MAX(price) FROM( SELECT id, count(*) as c, price FROM T GROUP BY id, price) "
     "WHERE c > 0 and c < 3"),
    ({"T": values([(1, 5), (2, 6), (1, 5)], "id, price")},
     "SELECT MIN(price) FROM( SELECT id, count(*) as c, price FROM T GROUP BY id, price) "
     "WHERE c < 2"),
    ({"T": values([(1, 1), (2, 2), (3, 3)], "a, b")},
     "select sum(a), avg(a), min(a), count(a), count(1) from T where a > 9999 group by b"),
    ({"T": values([(1, 1), (2, 2), (3, 3)], "a, b")},
     "select sum(a), avg(a), min(a), count(a), count(1) from T where a > 9999"),
    ({"T": T3}, "SELECT count(distinct cnt), sum(distinct cnt), max(distinct cnt), "
                "min(distinct cnt), avg(distinct cnt), count(distinct max_a) FROM ( "
                "SELECT b, count(a) as cnt, max(a) as max_a FROM T GROUP BY b)"),
    ({"T": T3}, "SELECT sum(b), count(a), max(a), min(a), c FROM ( SELECT b, count(c) as c, "
                "sum(a) as a FROM T GROUP BY b) GROUP BY c"),
    ({"T": T3}, "select b ,count(1) ,count(if(c in ('A', 'B'), cast(null as integer), 1)) "
                "as cnt ,count(if(c not in ('A', 'B'), 1, cast(null as integer))) as cnt1 "
                "from T group by b"),
    ({"T": "SELECT CAST(d AS DECIMAL(7, 2)) AS d FROM (VALUES (1), (2), (2), (3)) v(d)"},
     "select c, sum(d) from ( select d, count(d) c from T group by d) group by c"),
    ({"T": "SELECT i % 10 AS a, i AS b, i::VARCHAR AS c FROM range(100) r(i)"},
     "SELECT a, min(b), max(c), min(c) FROM T GROUP BY a"),
    ({"T": values([(1, 5, "B", True), (1, 4, "C", False), (1, 2, "A", True), (2, 1, "A", True),
                   (2, 2, "B", False), (1, 6, "A", True), (2, 2, "B", False),
                   (3, 5, "B", True), (2, 3, "C", True), (2, 3, "D", True)], "a, b, c, d")},
     "SELECT a, sum(b) filter (where c = 'A'), count(distinct c) filter (where d is true), "
     "max(b) FROM T GROUP BY a"),
    ({"T": "SELECT CAST(a AS DECIMAL(7, 2)) AS a FROM (VALUES (1), (2), (2), (4), (3)) v(a)"},
     "select cnt, min(a), max(a) from ( select a, count(a) as cnt from T group by a) "
     "group by cnt"),
    ({"MyTable": "SELECT i::DOUBLE AS a, 1::BIGINT AS b, 'Hi' AS c FROM range(10) r(i)"},
     "SELECT STDDEV_SAMP(a), STDDEV_POP(a) FROM MyTable GROUP BY c"),
    ({"MyTable": values([(2900, 1, "Hi"), (2500, 1, "Hi"), (2600, 1, "Hi"), (3100, 1, "Hello"),
                         (11000, 1, "Hello")], "a, b, c")},
     "SELECT VAR_POP(a) FROM MyTable GROUP BY c"),
    ({"src": "SELECT '1' AS a, '1' AS b, (i % 50)::VARCHAR AS c, '1' AS d FROM range(100) r(i)"},
     "SELECT a, b, COUNT(distinct c) as uv FROM ( SELECT a, b, c, d FROM src where b <> '' "
     "UNION ALL SELECT a, 'ALL' as b, c, d FROM src where b <> '') t GROUP BY a, b"),
    ({"T": values([(1, 1, "Hi"), (2, 2, "Hello"), (3, 2, "Hello world")], "a, b, c")},
     "select a from (select b, max(a) as a, count(*), max(c) as c from T group by b) T1"),
    ({"MyTable": T3}, "select c, max(b) from (select b, c, true as f from MyTable) t "
                      "group by c, f"),
    ({"emps": EMPS_GS}, "select gender, city, manager, count(*) as cnt from emps group by "
                        "grouping sets ((city), (gender, city, manager))"),
]


@pytest.mark.parametrize("tables,query", FLINK_AGGREGATES)
def test_flink_aggregate_queries_equal_duckdb(tables, query):
    check(tables, query)


@pytest.mark.parametrize("columns,changes,query", [
    # testPrecisionForSumWithRetractAggregationOnDecimal ('changelog-mode' = 'I,D')
    ([("a", "DECIMAL(32, 8)"), ("b", "DECIMAL(32, 20)"), ("c", "DECIMAL(32, 20)"),
      ("d", "VARCHAR")],
     [(op, (a, b, c, d)) for op, (a, b, c), d in [
         ("+I", ("1.03520274", "12345.035202748654", "12.345678901234567"), "a"),
         ("+I", ("1.03520274", "12345.035202748654", "12.345678901234567"), "b"),
         ("-D", ("1.03520274", "12345.035202748654", "12.345678901234567"), "b"),
         ("+I", ("2.13520275", "21245.542202748654", "242.78594201234567"), "a"),
         ("+I", ("1.11111111", "11111.111111111111", "111.11111111111111"), "b"),
         ("+I", ("1.11111111", "11111.111111111111", "111.11111111111111"), "a"),
         ("-D", ("1.11111111", "11111.111111111111", "111.11111111111111"), "b"),
         ("+I", ("2.13520275", "21245.542202748654", "242.78594201234567"), "a")]],
     "SELECT sum(a), sum(b), sum(c) FROM T GROUP BY d"),
    # testDifferentTypesSumWithRetract
    ([("a", "TINYINT"), ("b", "SMALLINT"), ("c", "INT"), ("d", "BIGINT"), ("e", "FLOAT"),
      ("f", "DOUBLE"), ("g", "VARCHAR")],
     [(op, (v, v, v, v, float(v), float(v), "a")) for op, v in [
         ("+I", 1), ("+I", 2), ("-D", 1), ("+I", 3), ("-D", 2), ("+I", 1), ("-D", 3),
         ("+I", 2), ("+I", 3)]],
     "SELECT sum(a), sum(b), sum(c), sum(d), sum(e), sum(f) FROM T GROUP BY g"),
    # testRetractMinMaxWithChar ('changelog-mode' = 'I,UA,UB,D')
    ([("id", "INT"), ('"char"', "CHAR(1)")],
     [("+I", (1, "a")), ("+I", (1, "b")), ("+I", (1, "c")), ("-D", (1, "c")), ("-D", (1, "a")),
      ("+I", (2, "a")), ("+I", (2, "b")), ("+I", (2, "c")), ("-U", (2, "b")), ("+U", (2, "d")),
      ("-U", (2, "a")), ("+U", (2, "b"))],
     # (Flink's backquotes as SQL's double quotes)
     'select "id", count(*), min("char"), max("char") from T group by "id"'),
])
def test_flink_changelog_aggregates_equal_duckdb(tmp_path, columns, changes, query):
    check_changelog(tmp_path, columns, changes, query.replace(" T ", " t "))


# ---- random changelogs (hypothesis): inserts, deletes, updates that move rows, duplicates --

CHANGELOG_COLUMNS = [("id", "INT"), ("g", "INT"), ("i", "INT"), ("b", "BIGINT"),
                     ("d", "DOUBLE"), ("m", "DECIMAL(10, 2)"), ("s", "VARCHAR"),
                     ("ts", "TIMESTAMP"), ("dt", "DATE"), ("bo", "BOOLEAN")]
_VALUE = {
    "INT": st.integers(-5, 5), "BIGINT": st.integers(-10**12, 10**12),
    "DOUBLE": st.sampled_from([0.5, -1.25, 3.0, 2.75, 1e3]),
    "DECIMAL(10, 2)": st.integers(-999, 999).map(lambda v: str(decimal.Decimal(v) / 100)),
    "VARCHAR": st.sampled_from(["a", "b", "bb", ""]),
    "TIMESTAMP": st.integers(0, 20).map(lambda s: str(dt.datetime(2026, 1, 1) +
                                                      dt.timedelta(seconds=s))),
    "DATE": st.integers(0, 5).map(lambda d: str(dt.date(2026, 1, 1) + dt.timedelta(days=d))),
    "BOOLEAN": st.booleans()}
_ROW = st.tuples(st.integers(0, 3), *[st.none() | _VALUE[t] for _, t in CHANGELOG_COLUMNS[2:]])
_STEP = st.tuples(st.sampled_from(["insert", "insert", "delete", "update", "again"]),
                  st.integers(0, 1000), _ROW)


def _changes(steps) -> list[tuple]:
    live, changes = [], []
    for k, (kind, pick, row) in enumerate(steps):
        if live and kind == "delete":
            changes.append(("-D", live.pop(pick % len(live))))
        elif live and kind == "update":  # the row may move to another group
            old = live.pop(pick % len(live))
            new = (old[0], *row)
            changes += [("-U", old), ("+U", new)]
            live.append(new)
        elif live and kind == "again":  # an exact duplicate of a live row
            changes.append(("+I", live[pick % len(live)]))
            live.append(changes[-1][1])
        else:
            changes.append(("+I", (k, *row)))
            live.append(changes[-1][1])
    return changes


CHANGELOG_QUERY = (
    "SELECT g, count(*) AS n, count(s) AS cs, count(DISTINCT s) AS ds, min(s) AS mis, "
    "max(s) AS mas, min(ts) AS mit, max(ts) AS mat, min(dt) AS mid, max(dt) AS mad, "
    "bool_and(bo) AS ba, bool_or(bo) AS bor, sum(i) AS si, avg(i) AS ai, "
    "sum(DISTINCT i) AS sdi, max(b) AS mb, sum(b) AS sb, bit_xor(b) AS xb, sum(d) AS sd, "
    "avg(d) AS ad, min(d) AS mnd, stddev_samp(d) AS sdd, var_pop(m) AS vm, sum(m) AS sm, "
    "avg(m) AS am, max(m) AS mm, median(m) AS medm, "
    "percentile_disc(0.25) WITHIN GROUP (ORDER BY i) AS pi, "
    "array_agg(i ORDER BY id) AS ids, count(*) FILTER (WHERE bo) AS fb, "
    "max(i) FILTER (WHERE s <> 'a') AS fm FROM t GROUP BY g")


@settings(max_examples=3, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=st.lists(_STEP, min_size=1, max_size=30))
def test_random_changelogs_fold_to_duckdb(tmp_path_factory, steps):
    """Every aggregate over each column type, over a debezium changelog whose rows are
    deleted, updated (moving between groups) and duplicated: the folded result equals
    DuckDB's over the rows left, at parallelism 1 and 2."""
    check_changelog(tmp_path_factory.mktemp("log"), CHANGELOG_COLUMNS, _changes(steps),
                    CHANGELOG_QUERY)


@pytest.mark.parametrize("query", [
    # the empty grouping set without an aggregate is one row (caudal: "the empty grouping
    # set () needs an aggregate in the SELECT list")
    "select distinct gender from emp group by rollup(gender)",
    "select gender, deptno from emp group by grouping sets ((gender, deptno), ())",
    "select gender from emp where deptno > 100 group by rollup(gender)",
])
def test_an_empty_grouping_set_without_aggregates_is_one_row(query):
    check({"emp": EMP}, query)
