"""Where a Polars user reads the frame API as Polars: ``%`` takes the sign of the divisor
(paired with ``//``, which floors), ``n_unique()`` counts NULL as a value, and ``sort()``
puts NULLs first unless ``nulls_last=True``; each compared with Polars at parallelism 1
and 2."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

import caudal as cd
from caudal import col
from caudal.errors import PlanError

BASE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DATA = {"k": ["a", None, "b", None, "a", "c", "b", None, "c", "a"],
        "x": [-7, 7, -8, 0, None, 5, -1, 12, 9, -9],
        "y": [3, -3, 3, -5, 2, -2, 7, 5, None, -4],
        "f": [-7.5, 2.0, None, -0.5, 4.25, -3.0, 1.0, 6.5, -2.0, 0.0],
        "ts": [BASE + dt.timedelta(seconds=s) for s in (0, 1, 2, 5, 11, 12, 13, 21, 22, 23)]}


def rows(frame: pl.DataFrame) -> list[str]:
    return sorted(map(str, frame.rows()))


@pytest.mark.parametrize("parallelism", [1, 2])
def test_modulo_takes_the_divisor_sign_as_in_polars(parallelism):
    src = cd.testing.from_records(DATA)
    got = src.select((col("x") % col("y")).alias("m"), (col("x") % 4).alias("m4"),
                     (col("f") % 2).alias("fm"), (17 % col("y")).alias("r"),
                     ((col("x") // col("y")) * col("y") + col("x") % col("y")).alias("back")
                     ).to_polars(parallelism=parallelism)
    p = pl.DataFrame(DATA)
    expected = p.select((pl.col("x") % pl.col("y")).alias("m"), (pl.col("x") % 4).alias("m4"),
                        (pl.col("f") % 2).alias("fm"), (17 % pl.col("y")).alias("r"),
                        pl.when(pl.col("y").is_not_null()).then(pl.col("x"))
                        .cast(pl.Float64).alias("back"))
    # -2.0 % 2 is -0.0 from SQL's remainder and 0.0 from Polars: equal numbers
    got = got.with_columns(pl.when(pl.col("fm") == 0).then(0.0).otherwise(pl.col("fm"))
                           .alias("fm")).cast({"back": pl.Float64})
    assert rows(got) == rows(expected)


@pytest.mark.parametrize("parallelism", [1, 2])
def test_n_unique_counts_null_as_polars(parallelism):
    src = cd.testing.from_records(DATA, event_time="ts")
    got = src.group_by(col("x") > 0).agg(col("k").n_unique().alias("n")) \
        .to_polars(parallelism=parallelism)
    expected = pl.DataFrame(DATA).group_by(pl.col("x") > 0).agg(pl.col("k").n_unique()
                                                                .alias("n"))
    assert rows(got) == rows(expected)
    windowed = src.group_by(cd.tumble("ts", "10s")).agg(col("k").n_unique().alias("n")) \
        .select("window_start", "n").to_polars(parallelism=parallelism)
    expected = pl.DataFrame(DATA).group_by(pl.col("ts").dt.truncate("10s").alias(
        "window_start")).agg(pl.col("k").n_unique().alias("n"))
    assert rows(windowed.cast({"window_start": pl.Datetime("us", "UTC")})) == rows(
        expected.cast({"window_start": pl.Datetime("us", "UTC")}))


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("nulls_last", [False, True])
def test_sort_places_nulls_as_polars(parallelism, descending, nulls_last):
    src = cd.testing.from_records(DATA)
    got = src.sort("x", descending=descending, nulls_last=nulls_last).select("x") \
        .collect(parallelism=parallelism).column("x").to_pylist()
    expected = pl.DataFrame(DATA).sort("x", descending=descending, nulls_last=nulls_last)
    assert got == expected["x"].to_list()


@pytest.mark.parametrize("parallelism", [1, 2])
def test_floor_division_is_exact_on_integers_as_in_polars(parallelism):
    """``//`` was FLOOR of a DOUBLE division: a DOUBLE, and wrong past 2**53."""
    data = {"v": [2**60 + 1, -(2**53) - 1, -7, 7, 5, None], "f": [-7.5, 7.5, -2.0, None, 1.0, 3.0]}
    exprs = [(col("v") // 1).alias("d"), (col("v") // 3).alias("e"),
             (col("v") // -2).alias("g"), (col("f") // 2).alias("h"), (7 // col("v")).alias("r")]
    got = cd.testing.from_records(data).select(*exprs).to_polars(parallelism=parallelism)
    p = pl.DataFrame(data)
    expected = p.select((pl.col("v") // 1).alias("d"), (pl.col("v") // 3).alias("e"),
                        (pl.col("v") // -2).alias("g"), (pl.col("f") // 2).alias("h"),
                        (7 // pl.col("v")).alias("r"))
    assert got.schema == expected.schema
    assert rows(got) == rows(expected)


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("descending", [True, False])
def test_top_k_ranks_nulls_last_as_polars(parallelism, descending):
    """top_k(2, by="x") gave the rows whose x is NULL: SQL's DESC ranks NULLs first."""
    src = cd.testing.from_records(DATA, event_time="ts").select("k", "x", "ts")
    p = pl.DataFrame(DATA).select("k", "x", "ts")
    got = src.top_k(2, by="x", descending=descending).select("k", "x") \
        .to_polars(parallelism=parallelism)
    top = p.top_k(2, by="x") if descending else p.bottom_k(2, by="x")
    assert rows(got) == rows(top.select("k", "x"))
    # per window: the first 10 s hold x = -7, 7, -8, 0, NULL... the NULL never wins
    got = src.window(cd.tumble("ts", "10s")).top_k(1, by="x", descending=descending,
                                                  over=["window_start", "window_end"]) \
        .select("x").to_polars(parallelism=parallelism)
    windows = p.with_columns(pl.col("ts").dt.truncate("10s").alias("w"))
    expected = [(windows.filter(pl.col("w") == w).top_k(1, by="x") if descending else
                 windows.filter(pl.col("w") == w).bottom_k(1, by="x"))["x"][0]
                for w in windows["w"].unique()]
    assert sorted(got["x"].to_list(), key=str) == sorted(expected, key=str)


def test_floor_division_and_modulo_refuse_operands_of_another_value_at_each_call():
    """``x // y`` and ``x % y`` read each operand several times (SQL's truncating ``/`` and
    ``%`` made floored): RANDOM() or a UDF gave another value each time, so the floor and
    its correction disagreed (``x % (random() * 10 + 1)`` came out negative)."""
    from caudal.frame import call

    @cd.udf(returns="DOUBLE")
    def noisy(x):
        return x

    for operand in (call("random") * 10 + 1, noisy(col("x")), call("proctime")):
        for make in (lambda o: col("x") // o, lambda o: col("x") % o,
                     lambda o: o // 3, lambda o: 7 % o):
            with pytest.raises(PlanError, match=r"gives another value at each call.*"
                                                r"compute the operand into a column first"):
                make(operand)
    # as the message says: computed once in a column, the two agree
    src = cd.testing.from_records({"x": list(range(-200, 200))})
    got = src.with_columns(r=call("random") * 10 + 1) \
        .with_columns(q=col("x") // col("r"), m=col("x") % col("r")).to_polars()
    want = got.select(q=pl.col("x") // pl.col("r"), m=pl.col("x") % pl.col("r"))
    assert got["q"].to_list() == want["q"].to_list()
    assert max(abs(a - b) for a, b in zip(got["m"], want["m"], strict=True)) < 1e-9
