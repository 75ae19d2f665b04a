"""Math functions and arithmetic, against DuckDB and PostgreSQL's documented answers."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
import pytest

from caudal.errors import PlanError, RuntimeFailure
from tests.plan.sql_eval import bind, caudal_eval, check, values

AGREE = [
    ("abs(i)", None), ("abs(f)", None), ("abs(d)", None), ("round(f, 1)", None),
    ("round(d, 1)", None), ("round(d)", None), ("round(i, -1)", None), ("round(d, -1)", None),
    ("floor(f)", None), ("floor(d)", None), ("ceil(f)", None), ("ceiling(d)", None),
    ("trunc(f)", None), ("trunc(d, 1)", None), ("trunc(f, 2)", None),
    ("power(f, 2)", None), ("pow(i, 2)", None), ("power(2, i)", None), ("sqrt(abs(f))", None),
    ("cbrt(f)", None), ("exp(f)", None), ("ln(abs(f) + 1)", None), ("log10(abs(f) + 1)", None),
    ("log(abs(f) + 1)", None), ("log(2, abs(f) + 1)", None), ("sign(f)", None),
    ("sign(i)", None), ("sign(d)", None), ("mod(i, 4)", None), ("mod(b, -3)", None),
    ("pi()", None), ("degrees(f)", None), ("radians(f)", None), ("sin(f)", None),
    ("cos(f)", None), ("tan(f)", None), ("atan(f)", None), ("atan2(f, 2)", None),
    ("asin(f / 3)", None), ("acos(f / 3)", None),
    ("i + 1", None), ("i - b", None), ("i * b", None), ("f * 2", None), ("d + 1", None),
    ("d * d", None), ("d - i", None), ("d * 2.5", None), ("f / 3", None), ("-d", None),
    ("-i", None), ("b % 3", None), ("i % -4", None), ("d % 2", None), ("i * 1.5", None),
    ("i / 2", "i // 2"), ("b / -3", "b // -3"), ("-7 / 2", "-7 // 2"),
]


@pytest.mark.parametrize("sql,duck_sql", AGREE)
def test_math_matches_duckdb(sql, duck_sql):
    # DuckDB's / on integers returns a double; PostgreSQL truncates, which is DuckDB's //
    check(sql, duck_sql=duck_sql)


def test_round_float_half_to_even_like_postgres_rint():
    # PostgreSQL: round(double) is rint() (half to even); round(numeric) half away from
    # zero; DuckDB rounds both half away from zero
    table = pa.table({"f": [0.5, 1.5, 2.5, -2.5, None]})
    assert values("round(f)", table) == [0.0, 2.0, 2.0, -2.0, None]
    assert values("round(2.5)")[0] == 3
    assert values("round(-2.5)")[0] == -3
    assert values("round(f, 0)", table) == [1.0, 2.0, 3.0, -3.0, None]


def test_round_decimal_result_type():
    assert bind("round(d, 1)").dtype == pa.decimal128(10, 1)
    assert bind("round(d)").dtype == pa.decimal128(9, 0)
    assert bind("round(f)").dtype == pa.float64()
    assert values("round(99.99, 1)")[0] == 100.0


def test_integer_division_truncates_toward_zero():
    assert values("i / 2") == [0, -1, None, 3, 0, -7]
    assert bind("i / 2").dtype == pa.int32()
    assert values("i % 4") == [1, -2, None, 3, 0, -3]


def test_decimal_arithmetic_types():
    assert bind("d + d").dtype == pa.decimal128(11, 2)
    assert bind("d * d").dtype == pa.decimal128(20, 4)
    assert bind("d + i").dtype == pa.decimal128(13, 2)
    assert bind("d / 2").dtype == pa.float64()  # PostgreSQL: numeric; DuckDB: double
    assert values("1.5 + 1")[0] == 2.5


@pytest.mark.parametrize("sql,message", [
    ("i / 0", "division by zero"), ("f / 0", "division by zero"),
    ("d / 0", "division by zero"), ("i % 0", "division by zero"),
    ("f % 0", "division by zero"), ("sqrt(f)", "square root of a negative number"),
    ("ln(f)", "logarithm of a negative number"), ("ln(i - i)", "logarithm of zero"),
    ("log10(f - f)", "logarithm of zero"), ("power(f - f, -1)", "zero raised to a negative"),
    ("power(-8.0, f)", "non-integer power"), ("exp(f * 10000)", "overflow"),
    ("b * b", "integer out of range"), ("i + 2147483647", "integer out of range"),
    ("abs(i - 2147483647 - 2)", "out of range"),
])
def test_math_errors(sql, message):
    table = pa.table({"i": pa.array([1, 2], pa.int32()), "f": [-1.0, 0.5],
                      "d": pa.array([Decimal("1.0"), None], pa.decimal128(4, 1)),
                      "b": pa.array([2**40, 1], pa.int64())})
    with pytest.raises(RuntimeFailure, match=message):
        caudal_eval(sql, table)


def test_decimal_overflow_is_an_error():
    table = pa.table({"d": pa.array([Decimal("9" * 36)], pa.decimal128(38, 0))})
    with pytest.raises(RuntimeFailure, match="out of range|overflow"):
        caudal_eval("d * d * d", table)


def test_random_is_per_row_and_volatile():
    table = pa.table({"x": list(range(1000))})
    first = values("random()", table)
    assert len(set(first)) > 990
    assert all(0 <= v < 1 for v in first)
    assert values("random()", table) != first


def test_math_rejects_text():
    with pytest.raises(PlanError, match=r"abs\(TEXT\) does not exist"):
        bind("abs(s)")
    with pytest.raises(PlanError, match="operator \\+ does not take TEXT and INT"):
        bind("s + 1")
    with pytest.raises(PlanError, match="needs a constant number of digits"):
        bind("round(d, i)")


def test_text_literal_takes_the_numeric_type():
    assert values("i + '1'")[:2] == [2, -1]
    with pytest.raises(PlanError, match="cannot cast TEXT to INT"):
        bind("i + 'one'")
