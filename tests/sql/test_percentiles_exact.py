"""median, percentile_cont and percentile_disc equal DuckDB's to the last bit (no tolerance),
windowed and updating, at parallelism 1 and 2: integer, DOUBLE, FLOAT and DECIMAL values
(NaN, infinities, -0.0, values past 2^53 whose span is too wide for one sort key; FLOAT and
DECIMAL keep their type, as in DuckDB), NULLs, groups whose values
are all NULL or filtered out, even and odd counts, fractions whose decimal product is an
integer (0.07 of 100 values) and DESC. DuckDB computes lo * (1 - d) + hi * d with a fused
multiply-add; the kernel's emulated FMA must round as it does."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import caudal as cd
from caudal.operators.percentile_kernel import (
    _double_interpolation,
    disc_rank,
    fused_multiply_add,
)
from tests.helpers import run_to_table

FRACTIONS = (0.0, 0.07, 0.1, 0.25, 0.33, 0.5, 0.9, 0.99, 1.0)
BASE = datetime(2026, 1, 1, tzinfo=UTC)
TYPES = {"BIGINT": pa.int64(), "DOUBLE": pa.float64(), "INTEGER": pa.int32(),
         "REAL": pa.float32(), "DECIMAL(10,2)": pa.decimal128(10, 2),
         "DECIMAL(18,3)": pa.decimal128(18, 3)}


def _aggs(p: tuple[float, float, float]) -> str:
    return (f"median(v) AS med, percentile_cont({p[0]}) WITHIN GROUP (ORDER BY v) AS pc, "
            f"percentile_cont({p[1]}) WITHIN GROUP (ORDER BY v DESC) AS pd, "
            f"percentile_disc({p[2]}) WITHIN GROUP (ORDER BY v) AS dc, "
            f"median(v) FILTER (WHERE k = 1) AS fm")


def _ints(big: bool) -> st.SearchStrategy:
    bound = 2**62 if big else 10**9
    return st.one_of(st.none(), st.integers(-bound, bound), st.integers(-5, 5))


_DOUBLES = st.one_of(st.none(), st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan]),
                     st.floats(-1e12, 1e12, allow_nan=False, allow_subnormal=False),
                     st.integers(-1000, 1000).map(float))


@st.composite
def inputs(draw) -> tuple[str, pa.Table, tuple[float, float, float]]:
    sql_type = draw(st.sampled_from(sorted(TYPES)))
    if sql_type == "DOUBLE":
        values = _DOUBLES
    elif sql_type == "REAL":  # 32 bits (FLOAT too, in caudal and DuckDB)
        values = st.one_of(st.none(), st.sampled_from([0.0, math.inf, math.nan]),
                           st.floats(-1e6, 1e6, width=32, allow_subnormal=False))
    elif sql_type.startswith("DECIMAL"):
        places = TYPES[sql_type].scale
        bound = 10 ** (TYPES[sql_type].precision - places) - 1
        values = st.one_of(st.none(), st.decimals(-bound, bound, places=places,
                                                  allow_nan=False, allow_infinity=False))
    elif sql_type == "INTEGER":
        values = st.one_of(st.none(), st.integers(-2**31, 2**31 - 1))
    else:
        values = _ints(draw(st.booleans()))
    n = draw(st.integers(1, 60))
    rows = draw(st.lists(st.tuples(st.integers(0, 3), values, st.integers(0, 29)),
                         min_size=n, max_size=n))
    rows.sort(key=lambda r: r[2])  # in event-time order: none late
    table = pa.table({
        "k": pa.array([r[0] for r in rows], pa.int64()),
        "v": pa.array([r[1] for r in rows], TYPES[sql_type]),
        "ts": pa.array([BASE + timedelta(seconds=r[2]) for r in rows], pa.timestamp("us", "UTC")),
    })
    fractions = tuple(draw(st.sampled_from(FRACTIONS)) for _ in range(3))
    return sql_type, table, fractions  # type: ignore[return-value]


def _ddl(path, sql_type: str) -> str:
    return (f"CREATE TABLE t (k BIGINT, v {sql_type}, ts TIMESTAMP, "
            "WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) "
            f"WITH (connector = 'filesystem', path = '{path}', format = 'parquet');")


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b and type(a) is type(b)


def _assert_exact(got: pa.Table, want: pa.Table, keys: list[str]) -> None:
    def rows(table):
        return sorted(table.to_pylist(), key=lambda r: tuple(str(r[k]) for k in keys))

    got_rows, want_rows = rows(got), rows(want)
    assert len(got_rows) == len(want_rows), (got_rows, want_rows)
    for g, w in zip(got_rows, want_rows):
        for name in w:
            assert _same(g[name], w[name]), (name, g, w)


def _write(tmp_path, table: pa.Table):
    src = tmp_path / "in"
    src.mkdir()
    half = table.num_rows // 2  # two files, row groups of 7: many batches per window
    pq.write_table(table.slice(0, half), src / "a.parquet", row_group_size=7)
    pq.write_table(table.slice(half), src / "b.parquet", row_group_size=7)
    return src


SETTINGS = settings(max_examples=20, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


#: a group where lo * 0.1 + hi * 0.9 rounds differently with and without the fused
#: multiply-add (1320.2 against 1320.1999999999998), and 0.07 of 100 values (rank 6)
KNOWN = ("BIGINT", pa.table({
    "k": pa.array([0] * 8 + [1] * 100, pa.int64()),
    "v": pa.array([139, 404, 462, 517, 659, 983, 1259, 1463] + list(range(100)), pa.int64()),
    "ts": pa.array([BASE] * 108, pa.timestamp("us", "UTC"))}), (0.9, 0.9, 0.07))


@pytest.mark.parametrize("parallelism", [1, 2])
@SETTINGS
@given(data=inputs())
@example(data=KNOWN)
def test_windowed_percentiles_equal_duckdb_exactly(tmp_path_factory, parallelism, data):
    sql_type, table, fractions = data
    tmp_path = tmp_path_factory.mktemp("w")
    got = run_to_table(_ddl(_write(tmp_path, table), sql_type),
                       f"SELECT window_start, k, {_aggs(fractions)} FROM TABLE(TUMBLE(TABLE t, "
                       "DESCRIPTOR(ts), INTERVAL '10' SECOND)) GROUP BY window_start, "
                       "window_end, k", tmp_path / "out", parallelism=parallelism)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("t", table)
    want = con.sql(f"SELECT time_bucket(INTERVAL '10 seconds', ts) AS window_start, k, "
                   f"{_aggs(fractions)} FROM t GROUP BY ALL").to_arrow_table()
    _assert_exact(got, want, ["window_start", "k"])


@pytest.mark.parametrize("parallelism", [1, 2])
@SETTINGS
@given(data=inputs())
@example(data=KNOWN)
def test_updating_percentiles_equal_duckdb_exactly(tmp_path_factory, parallelism, data):
    sql_type, table, fractions = data
    tmp_path = tmp_path_factory.mktemp("u")
    # collected in memory and folded: a JSON changelog has no infinities or NaN
    src = cd.read_parquet(_write(tmp_path, table))
    got = cd.sql(f"SELECT k, {_aggs(fractions)} FROM t GROUP BY k", t=src).collect(
        parallelism=parallelism)
    con = duckdb.connect()
    con.register("t", table)
    want = con.sql(f"SELECT k, {_aggs(fractions)} FROM t GROUP BY k").to_arrow_table()
    _assert_exact(got, want, ["k"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.floats(-1e200, 1e200, allow_subnormal=False),
                          st.floats(0, 1), st.floats(-1e200, 1e200, allow_subnormal=False)),
                min_size=1, max_size=20))
def test_fused_multiply_add_rounds_once(triples):
    """Against the exact rational a * b + c rounded to the nearest double."""
    from fractions import Fraction

    a, b, c = (np.array(x, dtype=np.float64) for x in zip(*triples))
    want = [float(Fraction(x) * Fraction(y) + Fraction(z)) for x, y, z in triples]
    assert fused_multiply_add(a, b, c).tolist() == want


_EDGES = st.sampled_from([0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, math.inf,
                          -math.inf, math.nan, 1e308, -1e308, 3.0, -3.0])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.floats(), st.integers(-2**53, 2**53).map(float), _EDGES),
                          st.one_of(st.floats(), st.integers(-2**53, 2**53).map(float), _EDGES),
                          st.sampled_from([0.0, 0.5, 0.25, 0.9, 0.7000000000000002])),
                min_size=1, max_size=30))
def test_double_interpolation_skips_only_exact_fma(rows):
    """The shortcut at d = 0.5 gives the bits of the emulated FMA everywhere (signed zeros,
    subnormals, infinities; NaN stays NaN)."""
    lo, hi, d = (np.array(x, dtype=np.float64) for x in zip(*rows))
    with np.errstate(all="ignore"):
        want = np.where(d == 0, lo, fused_multiply_add(lo, 1.0 - d, hi * d))
    got = _double_interpolation(lo, hi, d, d == 0)
    assert ((np.isnan(want) & np.isnan(got)) | (want.view(np.int64) == got.view(np.int64))).all()


def test_disc_rank_is_exact_for_decimal_fractions():
    """100 * 0.07 is 7.000000000000001 in doubles: the 7th value (rank 6), not the 8th."""
    n = np.array([100, 10, 3, 1, 0])
    assert disc_rank(0.07, n).tolist() == [6, 0, 0, 0, 0]
    assert disc_rank(1.0, n).tolist() == [99, 9, 2, 0, 0]
    assert disc_rank(0.0, n).tolist() == [0, 0, 0, 0, 0]


def test_wide_decimal_is_refused_in_one_line(tmp_path):
    """DuckDB interpolates a DECIMAL of more than 18 digits in 128-bit integers."""
    from caudal.errors import PlanError
    from caudal.job import compile_sql

    pq.write_table(pa.table({"k": pa.array([1], pa.int64()),
                             "v": pa.array([1], pa.int64()).cast(pa.decimal128(38, 4))}),
                   tmp_path / "t.parquet")
    ddl = ("CREATE TABLE t (k BIGINT, v DECIMAL(38, 4)) WITH (connector = 'filesystem', "
           f"path = '{tmp_path / 't.parquet'}', format = 'parquet');")
    with pytest.raises(PlanError, match=r"median\(\) of DECIMAL\(38, ?4\) is not supported"
                       ) as error:
        compile_sql(ddl + "CREATE TABLE o WITH (connector = 'blackhole');"
                    "INSERT INTO o SELECT k, median(v) FROM t GROUP BY k;")
    assert "CAST(x AS DOUBLE)" in error.value.hint


def test_percentiles_of_equal_values_in_other_types_are_not_confused(tmp_path, duck):
    """Two arguments with the same values but other types (scales) share no sorting."""
    table = pa.table({"k": pa.array([1, 1, 1, 2], pa.int64()),
                      "v": pa.array(["1.25", "2.50", "4.00", "7.75"]).cast(
                          pa.decimal128(10, 2))})
    pq.write_table(table, tmp_path / "t.parquet")
    query = ("SELECT k, median(v) AS a, median(CAST(v AS DECIMAL(12, 4))) AS b, "
             "median(CAST(v AS DOUBLE)) AS c, percentile_cont(0.3) WITHIN GROUP (ORDER BY "
             "CAST(v AS DECIMAL(12, 4))) AS d FROM t GROUP BY k")
    got = cd.sql(query, t=cd.read_parquet(tmp_path / "t.parquet")).collect()
    duck.register("t", table)
    want = duck.sql(query).to_arrow_table()
    _assert_exact(got.cast(want.schema), want, ["k"])
    assert got.schema == want.schema
