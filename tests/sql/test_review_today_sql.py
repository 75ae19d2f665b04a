"""Review of the day's SQL and plan changes (set operations, quantified subqueries, UNNEST,
ROW, casts, date functions, OVER, top-N bounds, window filters), attacked with NULLs, empty
inputs, nested types and parallelism 2. Each test failed before its fix."""

from __future__ import annotations

import pytest

import caudal as cd
from caudal.errors import PlanError
from tests.sql.test_review_aggregates import check, values

_NESTED = "SELECT [1, 2] AS l, {'x': 1} AS r"


@pytest.mark.parametrize("query", [
    "SELECT l FROM t INTERSECT ALL SELECT l FROM t",
    "SELECT r FROM t EXCEPT ALL SELECT r FROM t",
])
def test_intersect_all_of_nested_columns_is_refused_in_one_line(query):
    """INTERSECT ALL / EXCEPT ALL count copies by grouping on every column; an array or ROW
    column stopped the job at its first row with Arrow's 'Keys of type list<…>' (INTERSECT
    and UNION refuse it when planning, as GROUP BY one)."""
    import duckdb

    t = cd.from_arrow(duckdb.sql(_NESTED).to_arrow_table())
    with pytest.raises(PlanError, match=r"distinct rows with a (INT\[\]|STRUCT)"):
        cd.sql(query, t=t).collect()


@pytest.mark.parametrize("query", [
    "SELECT x = CURRENT_TIMESTAMP AS e FROM (SELECT now() AS x, a FROM t)",
    "SELECT x = CURRENT_TIMESTAMP AS e FROM (SELECT now() AS x, a FROM t) WHERE a",
    "SELECT x = y AS e FROM (SELECT now() AS x FROM t WHERE a) CROSS JOIN UNNEST(ARRAY[now()]) "
    "AS u(y)",
])
def test_current_timestamp_is_one_read_through_subqueries(query):
    """A row's now() / CURRENT_TIMESTAMP in a subquery and in the query around it are one
    read of the clock (DuckDB: once per query; Flink: once per record, its Calcs merged);
    each operator of a chain got a batch of its own and read the clock again, so ``x =
    CURRENT_TIMESTAMP`` was false on every row."""
    import pyarrow as pa

    from caudal import clock

    ticks = iter(range(1_700_000_000_000_000, 1_800_000_000_000_000))
    clock.set_source(lambda: next(ticks))  # a clock that moves on every read
    try:
        t = cd.from_arrow(pa.table({"a": [True, True, True]}))
        for parallelism in (1, 2):
            got = cd.sql(query, t=t).collect(parallelism=parallelism)
            assert got.column("e").to_pylist() == [True] * 3
    finally:
        clock.set_source(None)


_ROWS_T = values([(1, "a"), (2, None), (None, "b"), (1, "c")], "a, s")


@pytest.mark.parametrize("query,duck_query", [
    ("SELECT a, s, ROW(a, s) = ROW(1, 'a') AS e, (a, s) <> ROW(1, 'a') AS n FROM t",
     "SELECT a, s, a = 1 AND s = 'a' AS e, a <> 1 OR s <> 'a' AS n FROM t"),
    ("SELECT a, s FROM t WHERE ROW(a, s) <> (1, 'a')",
     "SELECT a, s FROM t WHERE a <> 1 OR s <> 'a'"),
])
def test_row_constructor_compares_as_a_row(query, duck_query):
    """``ROW(a, b) = ROW(x, y)`` is the row comparison ``(a, b) = (x, y)`` is (PostgreSQL,
    Flink): it compared two STRUCTs and was refused ('cannot compare STRUCT<…> values')."""
    check({"t": _ROWS_T}, query, duck_query)


def test_other_row_comparisons_are_refused_saying_what_is_accepted():
    t = cd.from_arrow({"a": [1], "s": ["a"]})
    with pytest.raises(PlanError, match=r"a row \(a, s\) is only supported compared with = "
                                        r"or <> to another row"):
        cd.sql("SELECT (a, s) < (1, 'b') AS e FROM t", t=t).collect()


def test_unnest_alone_of_a_column_says_so():
    """``SELECT * FROM UNNEST(t.arr)`` without t in FROM said "unknown column 't' (columns
    here: dummy)", naming the hidden one-row input the standalone UNNEST is planned over."""
    t = cd.from_arrow({"a": [1], "arr": [[1, 2]]})
    with pytest.raises(PlanError, match=r"UNNEST alone in FROM takes an array value, not a "
                                        r"column \(t.arr\)") as info:
        cd.sql("SELECT * FROM UNNEST(t.arr) AS A(s)", t=t).collect()
    assert "dummy" not in str(info.value)


@pytest.mark.parametrize("query", [
    "SELECT a, CAST(ARRAY[] AS INT[]) AS e, cardinality(CAST(ARRAY[] AS VARCHAR[])) AS n "
    "FROM t",
    "SELECT * FROM UNNEST(CAST(ARRAY[] AS INT[])) AS A(s)",
    "SELECT a, x FROM t LEFT JOIN UNNEST(CAST(ARRAY[] AS INT[])) AS u(x) ON TRUE",
])
def test_a_typed_empty_array(query):
    """``CAST(ARRAY[] AS INT[])`` was refused with 'ARRAY[] needs at least one element (or a
    CAST to a typed array)', the CAST it names; now the empty array of that type (DuckDB),
    so the empty UNNEST alone in FROM and LEFT JOIN UNNEST … ON TRUE of it answer."""
    check({"t": values([(1,), (None,)], "a")}, query)
