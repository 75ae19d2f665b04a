"""CASE, COALESCE, NULLIF, GREATEST/LEAST, IN, BETWEEN, IS tests; CASE and COALESCE are
lazy like PostgreSQL's (a branch a row does not take cannot fail it)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from caudal.errors import PlanError, RuntimeFailure
from tests.plan.sql_eval import bind, caudal_eval, check, values

AGREE = [
    "CASE WHEN i > 0 THEN 'pos' WHEN i < 0 THEN 'neg' ELSE 'zero' END",
    "CASE i WHEN 1 THEN 10 WHEN 7 THEN 70 END", "CASE WHEN bo THEN f END",
    "CASE WHEN i > 0 THEN i ELSE f END", "CASE s WHEN 'Hello' THEN 1 ELSE 0 END",
    "CASE WHEN NULL THEN 1 ELSE 2 END", "COALESCE(i, b, -1)", "COALESCE(NULL, s, p)",
    "COALESCE(f, i)", "NULLIF(i, 0)", "NULLIF(s, '')", "GREATEST(i, b, 3)", "LEAST(f, i)",
    "GREATEST(s, p)", "LEAST(ts, TIMESTAMP '2021-01-01')", "GREATEST(NULL, i)",
    "i BETWEEN -2 AND 1", "i NOT BETWEEN -2 AND 1", "f BETWEEN i AND b",
"i IN (1, 7)", "i IN (1, 7, NULL)",
    "i NOT IN (1, NULL)", "s IN ('Hello', p)", "i IN (b, 0)", "i NOT IN (b, 1)",
    "ts IN (TIMESTAMP '2020-01-02 03:04:05')", "bo IS TRUE", "bo IS NOT TRUE", "bo IS FALSE",
    "bo IS NOT FALSE", "bo IS UNKNOWN", "s IS NULL", "s IS NOT NULL",
    "i IS DISTINCT FROM b", "i IS NOT DISTINCT FROM NULL", "s IS DISTINCT FROM p",
    "NOT bo", "bo AND i > 0", "bo OR i > 0", "NOT (bo OR NULL)",
]


@pytest.mark.parametrize("sql", AGREE)
def test_conditional_matches_duckdb(sql):
    check(sql)


def test_case_does_not_evaluate_branches_rows_do_not_take():
    # PostgreSQL evaluates a CASE branch only for rows that reach it
    assert values("CASE WHEN b = 0 THEN 0 ELSE 100 / b END")[:4] == [10, 0, 20, None]
    assert values("CASE WHEN b <> 0 THEN 100 / b END")[:3] == [10, None, 20]
    assert values("CASE WHEN b = 0 OR b / b = 1 THEN 1 END")[:2] == [1, 1]
    assert values("CASE WHEN i < 0 THEN 0 ELSE sqrt(i) END")[:2] == [1.0, 0.0]
    with pytest.raises(RuntimeFailure, match="division by zero"):
        caudal_eval("CASE WHEN b >= 0 THEN 100 / b END")


def test_between_symmetric():
    # DuckDB has no BETWEEN SYMMETRIC; PostgreSQL swaps the bounds when needed
    assert values("i BETWEEN SYMMETRIC 1 AND -2") == values("i BETWEEN -2 AND 1")


def test_and_or_skip_rows_the_left_side_decides():
    # PostgreSQL stops at the first operand that decides AND/OR for a row
    assert values("b = 0 OR 100 / b > 5")[:4] == [True, True, True, None]
    assert values("b <> 0 AND 100 / b > 5")[:3] == [True, False, True]
    with pytest.raises(RuntimeFailure, match="division by zero"):
        caudal_eval("b > 0 OR 100 / b > 5")


def test_coalesce_is_lazy():
    table = pa.table({"a": [1, None, 3], "b": [0, 2, 0]})
    assert values("COALESCE(a, 10 / b)", table) == [1, 5, 3]
    with pytest.raises(RuntimeFailure, match="division by zero"):
        caudal_eval("COALESCE(a, 10 / (b - 2))", table)


def test_case_types_and_errors():
    assert bind("CASE WHEN i > 0 THEN i ELSE 1.5 END").dtype == pa.decimal128(11, 1)
    assert bind("CASE WHEN i > 0 THEN i ELSE b END").dtype == pa.int64()
    with pytest.raises(PlanError, match="CASE results mixes types.*INT.*TEXT"):
        bind("CASE WHEN i > 0 THEN i ELSE s END")
    with pytest.raises(PlanError, match="CASE WHEN.*boolean"):
        bind("CASE WHEN i THEN 1 END")
    with pytest.raises(PlanError, match="coalesce\\(\\) mixes types"):
        bind("COALESCE(i, s)")


def test_text_literal_adapts_in_comparisons_and_lists():
    assert values("i = '7'")[3] is True
    assert values("ts > '2020-06-01'")[:3] == [False, None, True]
    assert values("dt IN ('2020-01-02', '1970-01-01')")[:4] == [True, False, None, True]


def test_in_list_of_nulls_only():
    assert values("i IN (NULL)") == [None] * 6
    assert values("NULL IN (1, 2)") == [None] * 6


def test_is_distinct_never_null():
    table = pa.table({"a": [1, None, None, 2], "b": [1, None, 2, 3]})
    assert values("a IS DISTINCT FROM b", table) == [False, False, True, True]
    assert values("a IS NOT DISTINCT FROM b", table) == [True, True, False, False]


def test_boolean_operators_need_booleans():
    with pytest.raises(PlanError, match="AND\\(\\) takes booleans, got INT"):
        bind("i AND bo")
    with pytest.raises(PlanError, match="IS TRUE"):
        bind("i IS TRUE")
