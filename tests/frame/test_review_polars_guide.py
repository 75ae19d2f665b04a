"""Polars' user guide and API examples through the frame API (review, 2026-12-07): methods
named as Polars names them answer as Polars does on the same DataFrame, or refuse in one
line. Each test failed before its fix."""

from __future__ import annotations

import polars as pl
import pytest

import caudal as cd
from caudal import col
from caudal.errors import PlanError

DATA = {"k": ["a", None, "b", None, "a", "c", "b", None, "c", "a"],
        "x": [-7, 7, -8, 0, None, 5, -1, 12, 9, -9],
        "y": [3, -3, 3, -5, 2, -2, 7, 5, None, -4],
        "f": [-7.5, 2.7, None, -0.5, 4.25, 3.0, 1.0, 6.5, 2.0, 0.5],
        "s": ["banana", "a", None, "cherry pie", "a", "", "date", "Eel", "fig", "grape"]}


def _same_column(exprs: dict, parallelism: int = 1) -> None:
    """Each caudal expression against its Polars twin, row by row (the source keeps its
    order at parallelism 1)."""
    got = cd.testing.from_records(DATA).select(**{n: c for n, (c, _) in exprs.items()}) \
        .to_polars(parallelism=parallelism)
    want = pl.DataFrame(DATA).select(**{n: p for n, (_, p) in exprs.items()})
    for name in exprs:
        ours, theirs = got[name].to_list(), want[name].to_list()
        assert [pytest.approx(v, rel=1e-15) if isinstance(v, float) else v for v in ours] \
            == theirs, name


def test_is_in_reads_a_listed_none_as_polars():
    """``x IN (7, NULL)`` is NULL for every x but 7 (SQL), so ``~is_in([7, None])`` kept no
    row where Polars keeps all but one; an empty list was refused."""
    pc = pl.col
    _same_column({
        "in": (col("x").is_in([7, None]), pc("x").is_in([7, None])),
        "not_in": (~col("x").is_in([7, None]), ~pc("x").is_in([7, None])),
        "empty": (col("x").is_in([]), pc("x").is_in([])),
        "eq": (col("x").is_in([7, None], nulls_equal=True),
               pc("x").is_in([7, None], nulls_equal=True)),
        "eq_no_none": (col("k").is_in(["a"], nulls_equal=True),
                       pc("k").is_in(["a"], nulls_equal=True)),
    })
    src = cd.testing.from_records(DATA)
    kept = src.filter(~col("x").is_in([7, None])).to_polars()
    assert kept.height == pl.DataFrame(DATA).filter(~pl.col("x").is_in([7, None])).height == 8


def test_polars_named_methods_answer_as_polars():
    """``mod`` was SQL's truncated mod (-7 mod 3 = -1; Polars 2), ``log()`` SQL's base-10
    log and ``log(2)`` the log of 2 to base x; ``replace`` replaced substrings where
    Polars replaces whole values ("banana" became "bXnXnX")."""
    pc = pl.col
    _same_column({
        "mod": (col("x").mod(3), pc("x").mod(3)),
        "mod_y": (col("x").mod(col("y")), pc("x").mod(pc("y"))),
        "ln": ((col("f").abs() + 1).log(), (pc("f").abs() + 1).log()),
        "log2": ((col("f").abs() + 1).log(2), (pc("f").abs() + 1).log(2)),
        "log10": ((col("f").abs() + 1).log10(), (pc("f").abs() + 1).log10()),
        "replace": (col("s").replace("a", "X"), pc("s").replace("a", "X")),
        "replace_list": (col("x").replace([7, -7], [70, -70]),
                         pc("x").replace([7, -7], [70, -70])),
        "replace_one": (col("x").replace([7, -7], 0), pc("x").replace([7, -7], 0)),
        "replace_dict": (col("k").replace({"a": "A", None: "?"}),
                         pc("k").replace({"a": "A", None: "?"})),
    })
    with pytest.raises(PlanError, match=r"replace\(\): give old and new values"):
        col("s").replace("a")
    # SQL's substring replace and truncated mod stay callable by name
    got = cd.testing.from_records(DATA).select(
        r=cd.call("replace", col("s"), "a", "X"), m=cd.call("mod", col("x"), 3)).to_polars()
    assert got["r"][0] == "bXnXnX" and got["m"][0] == -1


def test_strings_name_columns_in_when_then_otherwise_and_is_between():
    """Polars parses a string given to when/then/otherwise and is_between as a column
    name: ``then("s")`` gave the text 's' for every row."""
    pc = pl.col
    _same_column({
        "w": (cd.when(col("x") > 0).then("s").otherwise("k"),
              pl.when(pc("x") > 0).then("s").otherwise("k")),
        "lit": (cd.when(col("x") > 0).then(cd.lit("pos")).otherwise(None),
                pl.when(pc("x") > 0).then(pl.lit("pos")).otherwise(None)),
        "btw": (col("x").is_between("y", 10), pc("x").is_between("y", 10)),
        **{f"btw_{c}": (col("x").is_between(-7, 7, closed=c),
                        pc("x").is_between(-7, 7, closed=c))
           for c in ("both", "left", "right", "none")},
    })
    with pytest.raises(PlanError, match=r"select\(\): unknown column 'big'"):
        cd.testing.from_records(DATA).select(cd.when(col("x") > 0).then("big").otherwise("s"))


def test_cast_takes_polars_and_python_types():
    """``cast(pl.Int64)`` stopped with an AttributeError traceback from pyarrow."""
    got = cd.testing.from_records(DATA).select(
        a=col("x").cast(pl.Float64), b=col("x").cast(pl.Utf8), c=col("x").cast(str),
        d=col("x").cast(pl.Int32)).schema
    assert [str(t) for t in got.types] == ["double", "string", "string", "int32"]
    with pytest.raises(PlanError, match=r"cast\(\): unknown type"):
        col("x").cast(object)


def test_polars_namespaces_are_refused_in_one_line():
    with pytest.raises(AttributeError, match=r"no \.str namespace: .* are methods"):
        col("s").str.to_uppercase()
    with pytest.raises(AttributeError, match=r"has no attribute 'nope'"):
        col("s").nope()


LEFT = {"id": [1, 2, 2, 3, None], "a": ["p", "q", "r", "s", "t"], "v": [1.0, 2.0, 3.0, 4.0, 5.0]}
RIGHT = {"rid": [2, 3, 3, 4, None], "v": [10.0, 20.0, 30.0, 40.0, 50.0],
         "b": [True, False, None, True, False]}


@pytest.mark.parametrize("how,parallelism", [("inner", 1), ("left", 1), ("right", 1),
                                             ("right", 2), ("full", 1), ("anti", 2)])
def test_join_layout_and_rows_as_polars(how, parallelism):
    """A right join kept the left key (NULL for a right row without a match) under the key's
    name: Polars' right join has the right key there (4 where caudal said NULL)."""
    left, right = cd.testing.from_records(LEFT), cd.testing.from_records(RIGHT)
    got = left.join(right, left_on="id", right_on="rid", how=how, suffix="_r") \
        .to_polars(parallelism=parallelism)
    want = pl.DataFrame(LEFT).join(pl.DataFrame(RIGHT), left_on="id", right_on="rid",
                                   how=how, suffix="_r")
    assert got.columns == want.columns
    assert sorted(got.rows(), key=str) == sorted(want.rows(), key=str)
    if how == "right":  # one key name on both sides
        same = cd.testing.from_records({"id": RIGHT["rid"], "v": RIGHT["v"]})
        got = left.join(same, on="id", how=how).to_polars(parallelism=parallelism)
        want = pl.DataFrame(LEFT).join(pl.DataFrame({"id": RIGHT["rid"], "v": RIGHT["v"]}),
                                       on="id", how=how)
        assert got.columns == want.columns == ["a", "v", "id", "v_right"]
        assert sorted(got.rows(), key=str) == sorted(want.rows(), key=str)


@pytest.mark.parametrize("parallelism", [1, 2])
def test_cast_of_a_float_to_an_integer_truncates_as_polars(parallelism):
    """``cast(pl.Int64)`` of 2.7 was 3 and of -7.5 was -8 (SQL's CAST rounds); Polars
    truncates: 2, -7. Texts, decimals and integers cast as before; in a select, a filter, a
    group key and an aggregate."""
    import decimal

    data = {"f": [-7.5, 2.7, None, -0.5, 6.5, -2.7, 1e9], "k": [1, 1, 2, 2, 3, 3, 3],
            "s": ["1", "2", None, "3", "4", "5", "6"],
            "d": [decimal.Decimal(v) if v else None
                  for v in ("1.5", "-2.5", None, "2.7", "0", "-0.5", "9")]}
    src, p, pc = cd.testing.from_records(data), pl.DataFrame(data), pl.col
    got = src.select(a=col("f").cast(pl.Int64), b=col("s").cast("BIGINT"),
                     c=col("d").cast("INT"), e=(col("f") * 2).cast(pl.Int64).cast(pl.Int32),
                     g=col("k").cast(pl.Int8)).to_polars(parallelism=parallelism)
    want = p.select(a=pc("f").cast(pl.Int64), b=pc("s").cast(pl.Int64),
                    c=pc("d").cast(pl.Int32), e=(pc("f") * 2).cast(pl.Int64).cast(pl.Int32),
                    g=pc("k").cast(pl.Int8))
    assert got.equals(want)
    got = src.group_by("k").agg(m=col("f").mean().cast(pl.Int64)) \
        .to_polars(parallelism=parallelism).sort("k")
    assert got.equals(p.group_by("k").agg(m=pc("f").mean().cast(pl.Int64)).sort("k"))
    got = src.group_by(col("f").cast(pl.Int64)).agg(n=cd.count()) \
        .to_polars(parallelism=parallelism).sort("f")
    assert got.rows() == p.group_by(pc("f").cast(pl.Int64)).agg(n=pl.len()).sort("f").rows()
    assert src.filter(col("f").cast(pl.Int64) == -7).to_polars()["f"].to_list() == [-7.5]


def test_round_as_polars_rounds():
    """``round(2)`` was SQL's round: ties away from zero, decided on the exact value (0.125
    -> 0.13, 2.675 -> 2.67, 6.5 -> 7 at 0 digits); Polars takes ties to even on x * 10^d
    (0.12, 2.68, 6), or away from zero with ``mode="half_away_from_zero"`` (0.13, 2.68)."""
    import decimal

    f = [0.125, 2.675, 1.005, 6.5, -0.5, 2.5, -7.45, 1e300, float("inf"), None, 3.14159]
    data = {"f": f, "i": list(range(-5, 6)),
            "d": [decimal.Decimal(v) for v in ("0.125", "2.675", "1.005", "6.5", "-0.5", "2.5",
                                               "-7.45", "0.135", "0", "-0.135", "3.142")]}
    exprs = {}
    for d in (0, 1, 2):
        for mode in ("half_to_even", "half_away_from_zero"):
            for c in ("f", "d"):
                exprs[f"{c}{d}{mode}"] = (col(c).round(d, mode), pl.col(c).round(d, mode=mode))
    exprs["i"] = (col("i").round(1), pl.col("i").round(1))
    got = cd.testing.from_records(data).select(**{n: c for n, (c, _) in exprs.items()}) \
        .to_polars()
    want = pl.DataFrame(data).select(**{n: p for n, (_, p) in exprs.items()})
    for name in exprs:  # decimals keep their values (Polars keeps the scale too)
        assert got[name].to_list() == want[name].to_list(), name
    assert got["f2half_to_even"][:3].to_list() == [0.12, 2.68, 1.0]
    with pytest.raises(PlanError, match=r"round\(\): mode = 'up'.*half_to_even"):
        col("f").round(1, "up")


@pytest.mark.parametrize("parallelism", [1, 2])
def test_max_passes_nan_over_as_polars(parallelism):
    """``max()`` of 1.0 and NaN was NaN (SQL ranks NaN above every number); Polars' max
    passes NaN over unless every value is NaN (its ``nan_max`` would give NaN)."""
    data = {"k": [1, 1, 2, 2, 3, 3, 1], "x": [1.0, float("nan"), float("nan"), float("nan"),
                                           None, None, float("-inf")],
            "i": [1, 5, 2, None, None, None, 9]}
    got = cd.testing.from_records(data).group_by("k").agg(
        col("x").max(), col("x").min().alias("lo"), col("i").max().alias("mi"),
        (col("x").max() + 1).alias("m1")).to_polars(parallelism=parallelism).sort("k")
    want = pl.DataFrame(data).group_by("k").agg(
        pl.col("x").max(), pl.col("x").min().alias("lo"), pl.col("i").max().alias("mi"),
        (pl.col("x").max() + 1).alias("m1")).sort("k")
    assert str(got.rows()) == str(want.rows()) == \
        "[(1, 1.0, -inf, 9, 2.0), (2, nan, nan, 2, nan), (3, None, None, None, None)]"


@pytest.mark.parametrize("parallelism", [1, 2])
def test_first_last_all_any_std_as_polars(parallelism):
    """``first()`` of NULL, 5 was 5 (SQL's first_value passes NULLs over; Polars: NULL, the
    first row's value); ``all()``/``any()`` of only NULLs were NULL (Polars: true, false);
    ``std(ddof=0)`` was a TypeError."""
    import datetime as dt

    data = {"k": [1, 1, 1, 2, 2, 3, 3], "x": [None, 5.0, None, 7.0, 8.5, None, 1.5],
            "b": [None, None, None, True, None, False, None],
            "ts": [dt.datetime(2026, 1, 1, 0, 0, s) for s in (0, 1, 2, 3, 4, 5, 6)]}
    pc = pl.col
    got = cd.testing.from_records(data, event_time="ts").group_by("k").agg(
        col("x").first(), col("x").last().alias("l"), col("b").all().alias("a"),
        col("b").any().alias("y"), col("x").std(ddof=0).alias("s"),
        col("x").var().alias("v")).to_polars(parallelism=parallelism).sort("k")
    want = pl.DataFrame(data).group_by("k").agg(
        pc("x").first(), pc("x").last().alias("l"), pc("b").all().alias("a"),
        pc("b").any().alias("y"), pc("x").std(ddof=0).alias("s"),
        pc("x").var().alias("v")).sort("k")
    assert got.rows() == want.rows()
    assert got.rows()[0][:5] == (1, None, None, True, False)
    with pytest.raises(PlanError, match=r"std\(\): ddof = 2"):
        col("x").std(ddof=2)


def test_polars_call_shapes_are_taken():
    """Lists of columns (``select(["k", "x"])``, ``group_by([…])``, ``agg([…])``,
    ``drop([…])``: refused, drop with an AttributeError traceback), ``when().then()``
    without ``otherwise`` as an expression (refused), ``cd.len()`` (missing), ``filter``'s
    ``name=value`` and ``rename`` with a function (TypeErrors); explode() of a text and
    unique(subset=) are refused in one line saying what works."""
    src = cd.testing.from_records(DATA)
    p = pl.DataFrame(DATA)
    got = src.select(["k", "x"]).with_columns([(col("x") * 2).alias("x2")]) \
        .filter(k="a").drop(["x"]).rename(str.upper).to_polars()
    want = p.select(["k", "x"]).with_columns([(pl.col("x") * 2).alias("x2")]) \
        .filter(k="a").drop(["x"]).rename(str.upper)
    assert got.equals(want)
    got = src.group_by(["k"]).agg([col("x").sum(), cd.len()]).to_polars().sort("k")
    assert got.rows() == p.group_by(["k"]).agg([pl.col("x").sum(), pl.len()]).sort("k").rows()
    got = src.with_columns(w=cd.when(col("x") > 0).then("x"),
                           c=cd.when(col("x") > 0).then(col("y")).cast(pl.Float64)) \
        .select("w", "c").to_polars()
    want = p.with_columns(w=pl.when(pl.col("x") > 0).then("x"),
                          c=pl.when(pl.col("x") > 0).then(pl.col("y")).cast(pl.Float64)) \
        .select("w", "c")
    assert got.equals(want)
    with pytest.raises(PlanError, match=r"^explode\(\): column 's' is TEXT, not an array"):
        src.explode(["s"])
    with pytest.raises(PlanError, match=r"^unique\(\) takes no subset.*top_k\(1"):
        src.unique(subset=["k"])


@pytest.mark.parametrize("parallelism", [1, 2])
def test_over_is_polars_over_or_says_its_frame(parallelism):
    """``sum().over("k", order_by="ts")`` gave running sums where Polars gives each
    partition's total: it is refused, and a running aggregate names its frame
    (``rows="unbounded"`` is Polars' ``cum_sum().over("k", order_by="ts")``). Without
    ``order_by``, over an updating input, each row gets its partition's aggregate as in
    Polars; ``all()`` (now a COALESCE around an aggregate) is refused as SQL refuses
    bool_and() OVER, not with a parse error."""
    import datetime as dt

    data = {"k": [1, 1, 1, 2, 2, 3], "g": [1, 2, 2, 1, 1, 1], "x": [4, 5, 2, 7, 8, 1],
            "ts": [dt.datetime(2026, 1, 1, 0, 0, s) for s in range(6)]}
    src, p, pc = cd.testing.from_records(data, event_time="ts"), pl.DataFrame(data), pl.col
    with pytest.raises(PlanError, match=r"^over\(\): with order_by, give the running frame"):
        col("x").sum().over("k", order_by="ts")
    got = src.select("k", "x", c=col("x").sum().over("k", order_by="ts", rows="unbounded")) \
        .to_polars(parallelism=parallelism).sort("k", "x")
    want = p.select("k", "x", c=pc("x").cum_sum().over("k", order_by="ts")).sort("k", "x")
    assert got.rows() == want.rows()
    sums = src.group_by("k", "g").agg(s=col("x").sum())
    got = sums.with_columns(t=col("s").sum().over("k"), m=col("s").max().over("k")) \
        .to_polars(parallelism=parallelism).sort("k", "g")
    want = p.group_by("k", "g").agg(s=pc("x").sum()).with_columns(
        t=pc("s").sum().over("k"), m=pc("s").max().over("k")).sort("k", "g")
    assert got.rows() == want.rows()
    with pytest.raises(PlanError, match=r"bool_and\(\) OVER \(…\) is not supported"):
        sums.with_columns(a=(col("s") > 5).all().over("k"))


def test_a_named_string_is_a_column_as_in_polars():
    """``select(y="x")`` is column x named y in Polars; it was the text 'x' in every row
    (so a join on it, then ``sum("y")``, said "sum() takes a number, got TEXT")."""
    src, p = cd.testing.from_records(DATA), pl.DataFrame(DATA)
    got = src.select("k", y="x", z=1, t=cd.lit("x")).with_columns(w="k").to_polars()
    assert got.rows() == p.select("k", y="x", z=1, t=pl.lit("x")).with_columns(w="k").rows()


def test_true_division_by_zero_as_polars():
    """``x / y`` with y = 0 stopped the job (SQL's division by zero); Polars divides as
    floats: +-inf (by -0.0 too), NaN for 0 / 0. ``**`` was a TypeError (a DOUBLE now, as
    ``pow``: Polars keeps integers)."""
    data = {"x": [1, -2, 0, None, 3, 4], "y": [0, 0, 0, 0, 2, None],
            "f": [1.5, -1.0, 0.0, 2.0, float("nan"), 1.0],
            "z": [0.0, -0.0, -0.0, 0.0, 0.0, -0.0]}
    got = cd.testing.from_records(data).select(
        a=col("x") / col("y"), b=col("f") / col("z"), c=col("x") / 0, d=1 / col("y"),
        e=col("x") / 2, q=2.0 ** col("x")).to_polars()
    pc = pl.col
    want = pl.DataFrame(data).select(
        a=pc("x") / pc("y"), b=pc("f") / pc("z"), c=pc("x") / 0, d=1 / pc("y"), e=pc("x") / 2,
        q=2.0 ** pc("x"))
    assert str(got.rows()) == str(want.rows())


def test_operator_methods_as_polars_names_them():
    """Polars' method equivalents of the operators (``add``, ``floordiv``, ``eq_missing``…)
    were AttributeErrors."""
    pc = pl.col
    _same_column({
        "add": (col("x").add(1).mul(2).sub(col("y")), pc("x").add(1).mul(2).sub(pc("y"))),
        "div": (col("x").truediv(4).neg(), pc("x").truediv(4).neg()),
        "fdiv": (col("x").floordiv(3), pc("x").floordiv(3)),
        "cmp": (col("x").gt(0).and_(col("y").le(3), col("x").ne(5)).or_(col("x").eq(-7)),
                pc("x").gt(0).and_(pc("y").le(3), pc("x").ne(5)).or_(pc("x").eq(-7))),
        "not": (col("x").ge(0).not_(), pc("x").ge(0).not_()),
        "lt": (col("x").lt(col("y")), pc("x").lt(pc("y"))),
        "eqm": (col("k").eq_missing(cd.lit(None)), pc("k").eq_missing(None)),
        "nem": (col("x").ne_missing(col("y")), pc("x").ne_missing(pc("y"))),
    })


@pytest.mark.parametrize("parallelism", [1, 2])
def test_floor_division_and_modulo_by_zero_as_polars(parallelism):
    """``x // 0`` and ``x % 0`` stopped the job (SQL's division by zero); Polars gives NULL
    for integers, +-infinity (NaN for 0) for a float ``//`` and NaN for a float ``%``; in a
    select and inside an aggregate."""
    data = {"x": [5, -5, 0, None, 7, 3], "y": [0, 0, 0, 0, 2, None],
            "f": [1.5, -1.0, 0.0, 2.0, float("nan"), 1.0],
            "z": [0.0, -0.0, -0.0, 0.0, 0.0, -0.0]}
    pc = pl.col
    got = cd.testing.from_records(data).select(
        a=col("x") // col("y"), b=col("x") % col("y"), c=col("f") // col("z"),
        d=col("f") % col("z"), e=col("x") // col("z"), m=col("x").mod(col("y")),
        h=col("x") // 2, i=col("x") % -3).to_polars(parallelism=parallelism)
    want = pl.DataFrame(data).select(
        a=pc("x") // pc("y"), b=pc("x") % pc("y"), c=pc("f") // pc("z"), d=pc("f") % pc("z"),
        e=pc("x") // pc("z"), m=pc("x").mod(pc("y")), h=pc("x") // 2, i=pc("x") % -3)
    assert str(got.rows()) == str(want.rows())
    got = cd.testing.from_records(data).group_by("y").agg(
        m=(col("x") % col("y")).max()).to_polars(parallelism=parallelism).sort("y")
    assert got.rows() == [(None, None), (0, None), (2, 1)]


def test_sqrt_and_log_outside_their_domain_as_polars():
    """``sqrt()`` of a negative and ``log()`` of 0 or a negative stopped the job (SQL's
    functions); Polars gives NaN and -infinity. A random() operand, read twice, is refused."""
    data = {"f": [float("nan"), float("inf"), -0.0, 4.0, -2.0, 0.0, None],
            "i": [1, 0, -1, 8, 100, 2, None]}
    pc = pl.col
    got = cd.testing.from_records(data).select(
        a=col("f").sqrt(), b=col("f").log(), c=col("f").log10(), d=col("f").log(2),
        e=col("i").sqrt(), h=col("i").log()).to_polars()
    want = pl.DataFrame(data).select(
        a=pc("f").sqrt(), b=pc("f").log(), c=pc("f").log10(), d=pc("f").log(2),
        e=pc("i").sqrt(), h=pc("i").log())
    def close(a, b) -> bool:  # NaN as NaN, log10 to an ulp
        return str(a) == str(b) or (isinstance(a, float) and b == pytest.approx(a, rel=1e-15))

    for ours, theirs in zip(got.rows(), want.rows(), strict=True):
        assert all(close(a, b) for a, b in zip(ours, theirs, strict=True)), (ours, theirs)
    with pytest.raises(PlanError, match=r"^sqrt\(\): an operand calls random\(\)"):
        cd.call("random").sqrt()
