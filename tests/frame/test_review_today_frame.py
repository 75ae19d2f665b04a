"""Review of the day's frame rewrites (Polars semantics of ``%``, ``//``, ``is_in``) against
Polars on the same rows. Each test failed before its fix."""

from __future__ import annotations

import math

import polars as pl

import caudal as cd
from caudal import col

DATA = {"x": [-7, 7, None, 0, 5],
        "f": [-7.5, 2.7, None, -0.5, float("nan")],
        "z": [0, 0, 0, None, 2]}


def _same(exprs: dict) -> None:
    got = cd.testing.from_records(DATA).select(**{n: c for n, (c, _) in exprs.items()}) \
        .to_polars()
    want = pl.DataFrame(DATA).select(**{n: p for n, (_, p) in exprs.items()})
    for name in exprs:
        ours, theirs = got[name].to_list(), want[name].to_list()
        assert len(ours) == len(theirs), name
        for a, b in zip(ours, theirs, strict=True):
            if a is None or b is None:
                assert a is None and b is None, (name, ours, theirs)
            elif isinstance(b, float) and math.isnan(b):
                assert math.isnan(a), (name, ours, theirs)
            else:
                assert a == b, (name, ours, theirs)


def test_a_null_float_modulo_zero_stays_null():
    """``f % 0`` where f is NULL is NULL in Polars; the by-zero rewrite gave NaN for every
    row, NULL ones too."""
    pc = pl.col
    _same({"lit": (col("f") % 0, pc("f") % 0),
           "column": (col("f") % col("z"), pc("f") % pc("z"))})


def test_an_integer_by_a_float_literal_zero_as_polars():
    """``x // 0.0`` and ``x % 0.0``: a Python float is a float to Polars (+-inf, NaN); the
    literal planned as a DECIMAL, so the rewrite kept SQL's division, which stopped the job
    ('division by zero')."""
    pc = pl.col
    _same({"fd": (col("x") // 0.0, pc("x") // 0.0),
           "mod": (col("x") % 0.0, pc("x") % 0.0)})


def test_nan_and_infinity_are_literals():
    """``is_in([0.0, nan])`` / ``+ inf``: the Python float's repr went into the SQL text as
    a name ('unknown column nan')."""
    pc = pl.col
    nan, inf = float("nan"), float("inf")
    _same({"in": (col("f").is_in([-0.5, nan]), pc("f").is_in([-0.5, nan])),
           "plus": (col("f") + inf, pc("f") + inf),
           "minus": (col("f") - inf, pc("f") - inf),
           "neg": (col("f") * -inf, pc("f") * -inf)})


def test_is_in_matches_a_negative_zero_as_equality_does():
    """``-0.0 IN (0.0)`` is true (DuckDB; Polars' is_in; ``-0.0 = 0.0`` here too): the IN
    list's hash lookup compared the bits, so ``is_in([0.0])`` missed a -0.0 row."""
    data = {"g": [0.0, -0.0, float("nan"), 1.0, None]}
    got = cd.testing.from_records(data).select(
        a=col("g").is_in([0.0]), b=col("g").is_in([-0.0, float("nan")])).to_polars()
    want = pl.DataFrame(data).select(a=pl.col("g").is_in([0.0]),
                                     b=pl.col("g").is_in([-0.0, float("nan")]))
    assert got.to_dict(as_series=False) == want.to_dict(as_series=False)


def test_dividing_by_a_negative_zero_literal_keeps_its_sign():
    """``x / -0.0`` and ``x // -0.0`` are -x * infinity in Polars; ``lit(-0.0)`` was the
    number literal -0.0, which SQL reads as a DECIMAL 0 (no sign), so the sign was lost
    (-7 / -0.0 was -inf)."""
    pc = pl.col
    _same({"div": (col("x") / -0.0, pc("x") / -0.0),
           "fdiv": (col("f") // -0.0, pc("f") // -0.0),
           "plain": (col("f") * -0.0, pc("f") * -0.0)})


def test_power_outside_its_domain_as_polars():
    """``x ** 0.5`` of a negative is NaN and ``0 ** -1`` +-infinity in Polars; SQL's
    power() stopped the job ('a negative number raised to a non-integer power')."""
    pc = pl.col
    data = {"z": [0.0, -0.0, 2.0, None, -8.0, 4.0], "i": [0, 1, 2, None, -8, 3],
            "e": [-1.0, -1.0, 0.5, 2.0, 0.5, -2.0]}
    got = cd.testing.from_records(data).select(
        a=col("z") ** 0.5, b=col("z") ** -1, c=col("i") ** -2.0, d=col("z") ** col("e"),
        s=col("z") ** 2, t=2 ** col("e")).to_polars()
    want = pl.DataFrame(data).select(
        a=pc("z") ** 0.5, b=pc("z") ** -1, c=pc("i") ** -2.0, d=pc("z") ** pc("e"),
        s=pc("z") ** 2, t=2 ** pc("e"))
    for name in want.columns:
        ours, theirs = got[name].to_list(), want[name].to_list()
        for a, b in zip(ours, theirs, strict=True):
            assert (a is None and b is None) or (math.isnan(a) and math.isnan(b)) or \
                a == b, (name, ours, theirs)
