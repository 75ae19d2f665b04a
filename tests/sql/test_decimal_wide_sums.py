"""sum() and avg() of DECIMALs of 19 to 38 digits against DuckDB.

Their unscaled values take up to 127 bits. sum kept them as Arrow decimal128 sums, which wrap
past 2^127 without a word (two values of 9e37 summed to -1.6e38), and avg summed them as
DOUBLE (last bits differed from DuckDB's, which sums a HUGEINT exactly). Both now keep a
decimal256 sum (operators.integer_sums.wide_sum): exact in any order, a DECIMAL(38, s) at
the end, or one line where it leaves DECIMAL(38) (DuckDB fails there too). avg finishes as
DuckDB's: the 128-bit sum in long double over count * double(10^s). OVER frames refuse
them when planning."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal, localcontext

import pyarrow as pa
import pytest

from caudal.errors import PlanError, RuntimeFailure
from tests.sql.test_decimal_avg import BASE, TS, WINDOWS, _answer, _duck, _no_times

TYPES = [(20, 0), (30, 2), (38, 10)]


def _table(p: int, s: int, n: int = 64, seed: int = 0) -> pa.Table:
    """Random unscaled values of up to 35 digits (sums of 64 stay within 38), small ones,
    the extremes of the type when they are that small, negatives, a NULL."""
    rng = random.Random(seed)
    top = 10 ** min(p, 35) - 1
    values = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            values.append(rng.randint(-top, top))
        elif kind == 1:
            values.append(rng.randint(-10, 10))
        elif kind == 2:
            values.append(top if rng.random() < 0.8 else -top)
        else:
            values.append(rng.randint(0, top))
    with localcontext() as ctx:
        ctx.prec = 80
        decimals = [Decimal(v).scaleb(-s) for v in values]
    decimals[5] = None
    return pa.table({"k": [i % 3 for i in range(n)],
                     "m": pa.array(decimals, pa.decimal128(p, s)),
                     "ts": pa.array([BASE + dt.timedelta(milliseconds=10 * i)
                                     for i in range(n)], TS)})


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("p,s", TYPES)
def test_group_by_distinct_and_without_group_by(p, s, parallelism):
    """(sum and avg in separate queries: DuckDB finishes an avg that has a sum or count of
    the same argument beside it differently.)"""
    table = _table(p, s, seed=p + s)
    for sql in ("SELECT k, sum(m) AS a FROM t GROUP BY k",
                "SELECT k, avg(m) AS a FROM t GROUP BY k",
                "SELECT k, sum(DISTINCT m) AS a, avg(DISTINCT m) AS d, "
                "avg(m) FILTER (WHERE m > 0) AS f FROM t GROUP BY k",
                "SELECT sum(m) AS a FROM t", "SELECT avg(m) AS a FROM t",
                "SELECT avg(DISTINCT m) AS a FROM t"):
        for batch_rows in (1, 100):
            assert _answer(sql, table, parallelism, batch_rows) == _duck(sql, table), sql


@pytest.mark.parametrize("parallelism", [1, 2])
def test_updating_revisions_and_retractions(parallelism):
    for p, s in ((30, 2), (38, 10)):
        table = _table(p, s, 96, seed=p)
        for func in ("sum", "avg"):
            sql = (f"SELECT c % 2 AS g, {func}(x) AS a, count(*) AS n FROM (SELECT k, "
                   f"max(m) AS x, count(*) AS c FROM t GROUP BY k) GROUP BY c % 2")
            for batch_rows in (1, 5):
                assert _answer(sql, table, parallelism, batch_rows) == _duck(sql, table)


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("sql,duck_sql", WINDOWS)
@pytest.mark.parametrize("p,s", [(20, 0), (38, 10)])
def test_windows(sql, duck_sql, p, s, parallelism):
    table = _table(p, s)
    for func in ("sum", "avg"):
        ours, theirs = sql.replace("avg(m)", f"{func}(m)"), duck_sql.replace("avg(m)",
                                                                             f"{func}(m)")
        got = _answer(ours, table, parallelism, 7, event_time="ts")
        assert _no_times(got) == _no_times(_duck(theirs, table))


def _extremes(values: list[int]) -> pa.Table:
    return pa.table({"k": [1] * len(values),
                     "m": pa.array([Decimal(v) for v in values], pa.decimal128(38, 0))})


@pytest.mark.parametrize("parallelism", [1, 2])
def test_a_sum_past_decimal_38_fails_in_one_line(parallelism):
    """9e37 + 8e37: Arrow's decimal128 sum wrapped to -1.7e38 (a wrong answer);
    DuckDB fails, and so does caudal, naming the aggregate."""
    table = _extremes([9 * 10 ** 37, 8 * 10 ** 37])
    for sql in ("SELECT sum(m) AS s FROM t", "SELECT k, avg(m) AS a FROM t GROUP BY k",
                "SELECT k, sum(DISTINCT m) AS s FROM t GROUP BY k"):
        with pytest.raises(RuntimeFailure, match=r"overflowed DECIMAL\(38, 0\)") as caught:
            _answer(sql, table, parallelism, 1)
        assert "\n" not in str(caught.value)


def test_sums_through_2_127_are_exact():
    """A sum that passes 2^127 on its way and comes back: exact (DuckDB's HUGEINT
    addition fails on the way, depending on the order of its additions)."""
    table = _extremes([9 * 10 ** 37, 9 * 10 ** 37, -9 * 10 ** 37, 5])
    got = _answer("SELECT k, sum(m) AS s, count(*) AS n FROM t GROUP BY k", table, 1, 1)
    assert got == [(1, Decimal(9 * 10 ** 37 + 5), 4)]


def test_over_frames_refuse_them_when_planning():
    table = _table(38, 10)
    for func in ("sum", "avg"):
        sql = f"SELECT k, {func}(m) OVER (PARTITION BY k ORDER BY ts) AS v FROM t"
        with pytest.raises(PlanError, match=rf"{func}\(\) OVER \(…\) of DECIMAL\(38, 10\) "
                                            r"is not supported"):
            _answer(sql, table, 1, event_time="ts")
