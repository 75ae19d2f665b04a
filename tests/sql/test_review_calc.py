"""Scalar expressions and stateless shapes as a Flink SQL user meets them: queries of Apache
Flink's planner IT cases (CalcITCase stream and batch, SetOperatorsITCase, SortITCase /
LimitITCase, ValuesITCase, UnnestITCase, CastFunctionITCase) with their data, the SQL text
unchanged, compared with DuckDB (or with Flink's expected rows where docs/sql.md follows
Flink) at parallelism 1 and 2. Each test failed before its fix."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pytest

import caudal as cd
from caudal import clock
from caudal.errors import PlanError
from tests.sql.test_review_aggregates import check, values


def test_current_timestamp_is_read_once_per_batch():
    """CalcITCase.testCurrentTimestamp: ``CURRENT_TIMESTAMP = CURRENT_TIMESTAMP`` was false:
    each call read the clock anew (Flink reads it once per record, DuckDB once per query)."""
    ticks = iter(range(1_700_000_000_000_000, 1_800_000_000_000_000))
    clock.set_source(lambda: next(ticks))  # a clock that moves on every read
    try:
        t = cd.from_arrow(pa.table({"a": [True, False, True]}))
        for parallelism in (1, 2):
            got = cd.sql("SELECT CURRENT_TIMESTAMP = CURRENT_TIMESTAMP AS s, now() = now() AS n, "
                         "CURRENT_DATE = CURRENT_DATE AS d FROM testTable WHERE a = TRUE",
                         testTable=t).collect(parallelism=parallelism)
            assert got.to_pylist() == [{"s": True, "n": True, "d": True}] * 2
    finally:
        clock.set_source(None)


_ROWS = pa.table({
    "f0": pa.array([{"r": {"i1": 12, "i2": 42, "i3": None}, "s": "Hello"}, None],
                   pa.struct([("r", pa.struct([("i1", pa.int32()), ("i2", pa.int32()),
                                               ("i3", pa.int32())])), ("s", pa.string())])),
    "f1": pa.array([{"a": 1, "b": "abc"}, {"a": 300, "b": "12:34:56"}],
                   pa.struct([("a", pa.int32()), ("b", pa.string())])),
    "l": pa.array([[0.5, 2.5, None], None], pa.list_(pa.float64()))})


@pytest.mark.parametrize("parallelism", [1, 2])
def test_row_cast_goes_by_position_with_sql_rules(parallelism):
    """CastFunctionMiscITCase: ``CAST(f0 AS ROW<r ROW<s STRING, b BOOLEAN, i INT>, s
    STRING>)`` gave r = (NULL, NULL, NULL): Arrow's cast matches fields by name and a name
    missing was NULL. Flink and PostgreSQL cast a ROW field by field in order (Flink:
    ((12, true, NULL), Hello)). Each field and each ARRAY element now takes SQL's rules:
    Arrow's element cast refused ``CAST(ARRAY[0.5, 2.5] AS INT[])`` (DuckDB: [0, 2]), and
    TRY_CAST gives NULL for each field or element that does not convert (as DuckDB)."""
    t = cd.from_arrow(_ROWS)
    got = cd.sql("SELECT CAST(f0 AS ROW<r ROW<s STRING NOT NULL, b BOOLEAN, i INT>, s STRING>) "
                 "AS c, TRY_CAST(f1 AS ROW(f0 TINYINT, f1 TIME)) AS t, CAST(l AS INT[]) AS i, "
                 "TRY_CAST(l AS DECIMAL(2, 1)[]) AS d FROM t", t=t).collect(
        parallelism=parallelism)
    assert sorted(got.to_pylist(), key=lambda r: r["c"] is None) == [
        {"c": {"r": {"s": "12", "b": True, "i": None}, "s": "Hello"},
         "t": {"f0": 1, "f1": None}, "i": [0, 2, None],
         "d": [Decimal("0.5"), Decimal("2.5"), None]},
        {"c": None, "t": {"f0": None, "f1": dt.time(12, 34, 56)}, "i": None, "d": None}]


_ARRAYS = pa.table({
    "a": pa.array([1, 2, 3, 4], pa.int32()),
    "c": pa.array([["Hi", "w"], None, [], ["x", None, "z"]]),
    "b": pa.array([[{"_1": 12, "_2": "45.6"}, None], [{"_1": 13, "_2": "41.6"}], [], None],
                  pa.list_(pa.struct([("_1", pa.int32()), ("_2", pa.string())])))})


@pytest.mark.parametrize("parallelism", [1, 2])
def test_unnest_with_ordinality_gives_the_position(parallelism):
    """``CROSS JOIN UNNEST(T.c) WITH ORDINALITY AS A (s, n)`` (Flink, DuckDB) dropped the
    ordinality: sqlglot holds its name apart from the alias's, ``n`` was an unknown column
    and ``SELECT *`` silently lacked it. Each element now has its position from 1; an array
    of ROWs spreads its fields before it."""
    t = cd.from_arrow(_ARRAYS)
    got = cd.sql("SELECT * FROM T CROSS JOIN UNNEST(T.c) WITH ORDINALITY AS A (s, n)",
                 T=t.select("a", "c")).collect(parallelism=parallelism)
    assert got.schema.names == ["a", "c", "s", "n"]
    assert sorted((r["a"], r["n"], r["s"]) for r in got.to_pylist()) == [
        (1, 1, "Hi"), (1, 2, "w"), (4, 1, "x"), (4, 2, None), (4, 3, "z")]
    got = cd.sql("SELECT a, x, y, n FROM T, UNNEST(T.b) WITH ORDINALITY AS A (x, y, n)",
                 T=t).collect(parallelism=parallelism)
    assert sorted((tuple(r.values()) for r in got.to_pylist()), key=lambda r: r[::-1]) == [
        (2, 13, "41.6", 1), (1, 12, "45.6", 1), (1, None, None, 2)]


_A = values([(8,), (7,), (6,), (5,), (4,), (None,)], "a1")


@pytest.mark.parametrize("b", [values([(6,), (8,)], "x"), values([(6,), (None,)], "x"),
                               "SELECT 1 AS x WHERE false"])
@pytest.mark.parametrize("query", [
    "SELECT a1 FROM a WHERE a1 = ANY (SELECT x FROM b)",
    "SELECT a1 FROM a WHERE a1 = SOME (SELECT x FROM b) AND a1 > 4",
    "SELECT a1 FROM a WHERE a1 <> ALL (SELECT x FROM b)",
    "SELECT a1 FROM a WHERE NOT a1 <> ALL (SELECT x + 1 FROM b)",
])
def test_quantified_in_subqueries_equal_duckdb(query, b):
    """SortITCase's ``a1 < all (select a1 * 2 from a)``: ANY / SOME / ALL were read as a
    scalar subquery (refused as giving more than one row, or as 'ANY __scalar0.max', or
    with an aggregate inside as 'unknown column'). ``= ANY`` is IN and ``<> ALL`` NOT IN
    (NULLs alike); the other comparisons are refused in one line naming what works."""
    check({"a": _A, "b": b}, query)


@pytest.mark.parametrize("query", [
    "select * from a where a1 < all (select a1 * 2 from a) order by a1 desc",
    "SELECT a1, a1 > ANY (SELECT max(x) FROM b) FROM a",
    "SELECT a1 FROM a WHERE a1 > SOME (SELECT x FROM b) OR a1 IS NULL",
])
def test_other_quantified_comparisons_are_refused_in_one_line(query):
    t = cd.from_arrow(pa.table({"a1": pa.array([8, 7], pa.int32()), "x": [1, 2]}))
    with pytest.raises(PlanError, match=r"(ANY|ALL) \(SELECT …\) is only supported as "
                                        r"x = ANY \(…\) or x <> ALL"):
        cd.sql(query, a=t, b=t).collect()


def test_an_aggregate_inside_a_subquery_is_the_subquery_s():
    """``SELECT a1, a1 IN (SELECT max(x) FROM b) FROM a`` said "unknown column 'x'": the
    outer query took the subquery's max() for its own aggregate."""
    t = cd.from_arrow(pa.table({"a1": pa.array([8, 7], pa.int32()), "x": [1, 2]}))
    with pytest.raises(PlanError, match=r"IN \(SELECT …\) is only supported as a condition "
                                        r"of WHERE"):
        cd.sql("SELECT a1, a1 IN (SELECT max(x) FROM b) FROM a", a=t, b=t).collect()


_MAPS = ("SELECT * FROM (VALUES (1, 11::BIGINT, MAP {'a': '10', 'b': '11'}), "
         "(2, 22::BIGINT, MAP {'c': '20'}), (3, 33::BIGINT, MAP {'d': '30', 'e': NULL}), "
         "(4, 44::BIGINT, NULL), (5, 55::BIGINT, MAP {})) v(a, b, c)")


@pytest.mark.parametrize("query, duck_query", [
    # UnnestITCase.testCrossWithUnnestForMap
    ("SELECT a, b, v FROM T CROSS JOIN UNNEST(c) as f (k, v)",
     "SELECT a, b, e.value FROM (SELECT a, b, unnest(map_entries(c)) AS e FROM T)"),
    ("SELECT a, k, n FROM T CROSS JOIN UNNEST(c) WITH ORDINALITY AS f (k, v, n) WHERE a > 1",
     "SELECT a, e.key, n FROM (SELECT a, unnest(map_entries(c)) AS e, "
     "generate_subscripts(map_entries(c), 1) AS n FROM T) WHERE a > 1"),
    ("SELECT a, map_entries(c) AS e FROM T", None),
])
def test_unnest_of_a_map_gives_its_entries(query, duck_query):
    """``CROSS JOIN UNNEST(c) AS f (k, v)`` of a MAP was refused ("unnest() takes an
    array"); Flink gives a row per entry. map_entries() (DuckDB's) is the array it reads."""
    check({"T": _MAPS}, query, duck_query)


@pytest.mark.parametrize("parallelism", [1, 2])
def test_row_constructor_and_row_equality(parallelism):
    """CalcITCase.testRowType / testValueConstructor: ``ROW(1, a, b)`` was 'unknown function
    row()' and ``WHERE (a, b, c) = ('foo', 12, TIMESTAMP …)`` 'unsupported expression'. ROW
    names its fields f1, f2, … (PostgreSQL); a row equality is the AND of its fields'
    (``<>`` the OR), NULLs as PostgreSQL and Flink give them (DuckDB compares NULL fields as
    values: docs/sql.md)."""
    t = cd.from_arrow(pa.table({
        "a": ["foo", "bar", None], "b": pa.array([12, 12, 3], pa.int32()),
        "c": pa.array([dt.datetime(1984, 7, 12, 14, 34, 24, 1000)] * 3, pa.timestamp("us"))}))
    got = cd.sql("SELECT ROW(a, b, c) AS r, ROW(CAST(2.0002 AS DECIMAL(5, 4)), NULL) AS d, "
                 "(a, b) <> ('foo', 3) AS n FROM MyTable "
                 "WHERE (a, b, c) = ('foo', 12, TIMESTAMP '1984-07-12 14:34:24.001') "
                 "OR (b, a) = (3, a) OR (b, 1) = (3, 1)", MyTable=t).collect(
        parallelism=parallelism)
    assert got.schema.field("r").type.names == ["f1", "f2", "f3"]
    assert sorted(got.to_pylist(), key=lambda r: r["r"]["f2"]) == [
        {"r": {"f1": None, "f2": 3, "f3": dt.datetime(1984, 7, 12, 14, 34, 24, 1000,
                                                      tzinfo=dt.UTC)},
         "d": {"f1": Decimal("2.0002"), "f2": None}, "n": None},
        {"r": {"f1": "foo", "f2": 12, "f3": dt.datetime(1984, 7, 12, 14, 34, 24, 1000,
                                                        tzinfo=dt.UTC)},
         "d": {"f1": Decimal("2.0002"), "f2": None}, "n": True}]


_TIMES = values([("2015-05-20 10:00:00.887",), ("1969-12-31 23:59:58.5",), ("2021-01-03 00:00:59",),
                 (None,)], "j").replace("SELECT *", "SELECT j::TIMESTAMP AS j")


def test_flink_date_functions():
    """CalcITCase.testQuarter / testWeek / testDayOfYear / testDayOfWeek / testSecond:
    QUARTER(j), WEEK(j), DAYOFYEAR(j), DAYOFWEEK(j) and SECOND(j) were 'not supported'.
    DAYOFWEEK is Flink's and MySQL's, 1 (Sunday) to 7 (DuckDB's counts from 0)."""
    check({"t": _TIMES}, "SELECT j, QUARTER(j) AS q, WEEK(j) AS w, DAYOFYEAR(j) AS y, "
                         "DAYOFWEEK(j) AS d, SECOND(j) AS s FROM t",
          "SELECT j, quarter(j), week(j), dayofyear(j), dayofweek(j) + 1, second(j) FROM t")
    t = cd.from_arrow(pa.table({"a": [1, 2]}))
    got = cd.sql("SELECT CURRENT_TIME = CURRENT_TIME AS s, CURRENT_TIME IS NULL AS n FROM t",
                 t=t).collect()
    assert got.to_pylist() == [{"s": True, "n": False}] * 2


_LISTS = ("SELECT a, c::VARCHAR[] AS c FROM (VALUES (1, ['Hi', 'w']), (2, NULL), (3, []), "
          "(4, ['x', NULL, 'z']), (5, [NULL]), (6, [])) v(a, c)")


@pytest.mark.parametrize("query, duck_query", [
    ("SELECT a, s FROM T LEFT JOIN UNNEST(T.c) AS A (s) ON TRUE", None),
    ("SELECT a, s FROM T LEFT OUTER JOIN UNNEST(T.c) AS A (s) ON TRUE WHERE a > 1", None),
    ("SELECT a, s, n FROM T LEFT JOIN UNNEST(T.c) WITH ORDINALITY AS A (s, n) ON TRUE",
     "SELECT a, s, CASE WHEN s IS NOT NULL OR cardinality(c) > 0 THEN n END FROM T "
     "LEFT JOIN UNNEST(T.c) WITH ORDINALITY AS A (s, n) ON TRUE"),
])
def test_left_join_unnest_keeps_rows_without_elements(query, duck_query):
    """UnnestITCase.testLeftUnnest…: ``LEFT JOIN UNNEST(T.c) AS A (s) ON TRUE`` was refused
    ("only CROSS JOIN UNNEST"); a row whose array is NULL or empty keeps one row with a NULL
    element, as in Flink and DuckDB."""
    check({"T": _LISTS}, query, duck_query)


_SMALL3 = values([(1, 1, "Hi"), (2, 2, "Hello"), (3, 2, "Hello world")], "a, b, c")
_T1, _T2 = values([(1,), (1,), (1,), (2,), (2,), (None,), (None,)], "c"), \
    values([(1,), (2,), (2,), (2,), (3,), (None,)], "c")


@pytest.mark.parametrize("query", [
    # SetOperatorsITCase.testIntersectAll / testMinusAll (batch and stream), their SQL
    "SELECT c FROM T1 INTERSECT ALL SELECT c FROM T2",
    "SELECT c FROM T1 EXCEPT ALL SELECT c FROM T2",
    "SELECT c FROM T2 EXCEPT ALL SELECT c FROM T1",
    "SELECT c FROM ((SELECT * FROM SmallTable3 UNION ALL SELECT * FROM SmallTable3 UNION ALL "
    "SELECT * FROM SmallTable3) EXCEPT ALL (SELECT * FROM T3 UNION ALL SELECT * FROM T3))",
    # over changelogs: the copies follow the counts as they move
    "SELECT c, count(*) AS n FROM T1 GROUP BY c INTERSECT ALL "
    "SELECT c, count(*) FROM T2 GROUP BY c",
    "SELECT count(*) AS n FROM T1 GROUP BY c EXCEPT ALL SELECT count(*) FROM T2 GROUP BY c",
    "SELECT c, count(*) AS n FROM (SELECT c FROM T1 EXCEPT ALL SELECT c + 1 FROM T2) "
    "GROUP BY c",
])
def test_intersect_all_and_except_all_equal_duckdb(query):
    """INTERSECT ALL and EXCEPT ALL were refused; Flink runs them (a retract stream). Each row
    comes min(m, n) / max(m - n, 0) times, NULL matching NULL."""
    check({"T1": _T1, "T2": _T2, "SmallTable3": _SMALL3,
           "T3": values([(1, 1, "Hi")], "a, b, c")}, query)


_NULL3 = values([(1, 1, "Hi"), (2, 2, "Hello"), (3, 2, "Hello world"),
                 (4, 3, "Hello world, how are you?"), (None, 999, "NullTuple"),
                 (None, 999, "NullTuple")], "a, b, c")
_PATTERNS = values([("abc", "a%"), ("a_c", "a!_c"), ("abc", "a!_c"), ("ABC", "a_C"),
                    (None, "a%"), ("abc", None), ("a%c", "a!%_")], "s, p")


@pytest.mark.parametrize("tables, query", [
    # CalcITCase.testLike
    ({"NullTable3": _NULL3},
     "SELECT a FROM NullTable3 WHERE CAST(a as VARCHAR(10)) LIKE CAST(b as VARCHAR(10))"),
    ({"t": _PATTERNS}, "SELECT s, p, s LIKE p AS l, s NOT ILIKE p AS i, "
                       "s LIKE p ESCAPE '!' AS e FROM t"),
])
def test_like_takes_a_pattern_per_row(tables, query):
    """``x LIKE <column>`` was refused ("LIKE() needs a constant pattern"); Flink and DuckDB
    take a pattern per row (DuckDB's LIKE evaluates them, with caudal's ESCAPE)."""
    check(tables, query)


@pytest.mark.parametrize("query", [
    "SELECT * FROM UNNEST(ARRAY[1, 2, 3]) AS A (s)",
    "SELECT s * 2 AS d FROM UNNEST(ARRAY[1, 2, 3]) AS A (s) WHERE s > 1",
    "SELECT * FROM UNNEST(ARRAY['x', NULL]) WITH ORDINALITY AS A (s, n)",
])
def test_unnest_alone_in_from(query):
    """``SELECT * FROM UNNEST(ARRAY[1, 2, 3]) AS A (s)`` (Flink, DuckDB) was 'unsupported
    FROM item': it is the elements of one row's array."""
    check({}, query)
