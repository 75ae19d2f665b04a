"""Group UDAFs (plain functions of each group's values, called with one pa.ListArray per
argument, or once per group with ``per_group=True``) from SQL: a median, a product and a
two-argument max of products equal DuckDB's median, product and max in tumbling and session
windows, in an updating GROUP BY over an append-only input and over a changelog, with
FILTER, at parallelism 1 and 2; misuse refused in one line."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

import caudal as cd
from caudal.errors import CaudalError, PlanError
from caudal.job import compile_sql
from caudal.plan.functions.python_udf import job_context
from tests.changelog_helpers import fold, run_changelog
from tests.frame import udafs  # noqa: F401 - registers py_median, py_product, …
from tests.helpers import run_to_table
from tests.windows_reference import (
    assert_same_rows,
    duck_answer,
    make_events,
    rows_of,
    session_rows,
    window_rows,
)

DDL = ("CREATE TABLE bids (auction BIGINT, bidder BIGINT, price BIGINT, channel TEXT, "
       "date_time TIMESTAMP, WATERMARK FOR date_time AS date_time - INTERVAL '2' SECOND) "
       "WITH (connector = 'filesystem', path = '{path}', format = 'parquet');")
#: (caudal, DuckDB): group UDAFs beside a built-in aggregate
AGGS = [
    ("py_median(price)", "median(price)"),
    ("py_median_each(price)", "median(price)"),
    ("py_product(abs(price) % 3 + 1)", "product(abs(price) % 3 + 1)"),
    ("py_max_product(price, bidder)", "max(price * bidder)"),
    ("py_median(price) FILTER (WHERE bidder > 15)", "median(price) FILTER (WHERE bidder > 15)"),
    ("count(*)", "count(*)"),
]
OURS = ", ".join(f"{c} AS a{i}" for i, (c, _) in enumerate(AGGS))
THEIRS = ", ".join(f"{d} AS a{i}" for i, (_, d) in enumerate(AGGS))
COLUMNS = [f"a{i}" for i in range(len(AGGS))]
S = 1_000_000


@pytest.fixture(autouse=True)
def _udafs_by_name():
    """SQL run in-process finds the UDAFs of the process by name (as ``caudal run --udf``)."""
    with job_context():
        yield


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    table = make_events(2500, seed=17, disorder_ms=1500)
    directory = tmp_path_factory.mktemp("bids")
    n = table.num_rows
    for i in range(3):  # three files: three source splits
        pq.write_table(table.slice(i * n // 3, (i + 1) * n // 3 - i * n // 3),
                       directory / f"part-{i}.parquet", row_group_size=97)
    return directory, table


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("kind", ["tumble", "session"])
def test_group_udafs_in_windows_equal_duckdb(tmp_path, events, kind, parallelism):
    path, table = events
    if kind == "tumble":
        tvf = "TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '10' SECOND)"
        reference = window_rows("tumble", 10 * S)
    else:
        tvf = ("SESSION(TABLE bids PARTITION BY auction, DESCRIPTOR(date_time), "
               "INTERVAL '500' MILLISECOND)")
        reference = session_rows(S // 2, ["auction"])
    got = run_to_table(DDL.format(path=path),
                       f"SELECT window_start AS ws, window_end AS we, auction, {OURS} FROM "
                       f"TABLE({tvf}) GROUP BY window_start, window_end, auction",
                       tmp_path / "out", parallelism)
    want = duck_answer(table, f"SELECT ws, we, auction, {THEIRS} FROM {reference} "
                              f"GROUP BY ws, we, auction")
    columns = ["ws", "we", "auction", *COLUMNS]
    assert got.num_rows > 20
    assert_same_rows(rows_of(got, columns), rows_of(want, columns))


@pytest.mark.parametrize("parallelism", [1, 2])
def test_group_udafs_in_updating_group_by_equal_duckdb(tmp_path, events, parallelism):
    path, table = events
    changes = run_changelog(DDL.format(path=path),
                            f"SELECT auction, {OURS} FROM bids GROUP BY auction",
                            tmp_path / "out", parallelism=parallelism)
    want = duck_answer(table, f"SELECT auction, {THEIRS} FROM bids GROUP BY auction")
    columns = ["auction", *COLUMNS]
    assert_same_rows(rows_of(fold(changes), columns), rows_of(want, columns))


@pytest.mark.parametrize("parallelism", [1, 2])
def test_group_udafs_over_a_changelog_equal_duckdb(tmp_path, events, parallelism):
    """Over an updating input each bidder's count is retracted and inserted again; the
    touched groups are recomputed from their rows."""
    path, table = events
    inner = "SELECT bidder, count(*) AS n, max(price) AS m FROM bids GROUP BY bidder"
    changes = run_changelog(
        DDL.format(path=path),
        f"SELECT bidder % 4 AS b, py_median(n) AS md, py_product(n % 3 + 1) AS pr, "
        f"py_max_product(n, m) AS mp FROM ({inner}) GROUP BY bidder % 4",
        tmp_path / "out", parallelism=parallelism)
    want = duck_answer(table, f"SELECT bidder % 4 AS b, median(n) AS md, "
                              f"product(n % 3 + 1) AS pr, max(n * m) AS mp FROM ({inner}) "
                              f"GROUP BY bidder % 4")
    columns = ["b", "md", "pr", "mp"]
    assert_same_rows(rows_of(fold(changes), columns), rows_of(want, columns))


def test_group_udaf_misuse_is_refused_in_one_line(events):
    path, _ = events

    def refused(select: str, group: str = " GROUP BY auction") -> str:
        with pytest.raises(PlanError) as raised:
            compile_sql(DDL.format(path=path) + f"\nSELECT auction, {select} AS v FROM bids"
                        f"{group};")
        assert "\n" not in str(raised.value) and raised.value.line == 2
        return str(raised.value)

    assert "py_median() cannot take 2 argument(s)" in refused("py_median(price, bidder)")
    assert "py_max_product() cannot take 1 argument(s)" in refused("py_max_product(price)")
    assert "py_median() needs an argument" in refused("py_median()")
    assert "py_median() OVER (…) is not supported" in refused(
        "py_median(price) OVER (PARTITION BY auction ORDER BY date_time)", "")
    with pytest.raises(CaudalError, match="state= is for a class UDAF"):
        cd.udaf(returns="DOUBLE", state={"s": "DOUBLE"}, name="f")(lambda x: x)
    with pytest.raises(CaudalError, match="input='numpy' has no form for a batch of lists"):
        cd.udaf(returns="DOUBLE", input="numpy", name="f")(lambda x: x)
    with pytest.raises(CaudalError, match="per_group= is for a function UDAF"):
        cd.udaf(returns="DOUBLE", state={"s": "DOUBLE"}, per_group=True)(type("c", (), {}))
    with pytest.raises(CaudalError, match="a class UDAF declares its state columns"):
        cd.udaf(returns="DOUBLE")(type("c", (), {}))


def test_group_udaf_failures_name_the_udaf():
    frame = cd.testing.from_records([{"k": 1, "x": 1}, {"k": 1, "x": 2}, {"k": 2, "x": 3}])

    @cd.udaf(returns="BIGINT")
    def broken(x):
        raise ZeroDivisionError("boom")

    @cd.udaf(returns="BIGINT")
    def short(x):
        return [1]

    @cd.udaf(returns="BIGINT", per_group=True)
    def text(x):
        return "many"

    with pytest.raises(CaudalError, match=r"UDAF broken\(\) failed: ZeroDivisionError: boom"):
        frame.group_by("k").agg(broken(cd.col("x"))).collect()
    with pytest.raises(CaudalError, match=r"UDAF short\(\) has 1 values for 2 groups"):
        frame.group_by("k").agg(short(cd.col("x"))).collect()
    with pytest.raises(CaudalError, match=r"UDAF text\(\) is not a column of BIGINT"):
        frame.group_by("k").agg(text(cd.col("x"))).collect()


def test_group_udafs_take_polars_and_numpy():
    """input='polars' passes List Series (per_group: Series), input='numpy' with per_group
    NumPy arrays; NULLs arrive in the lists and a FILTER that leaves a group no row makes it
    NULL without a call."""
    frame = cd.testing.from_records([{"k": 1, "x": 1}, {"k": 1, "x": 5}, {"k": 2, "x": None},
                                     {"k": 2, "x": 3}, {"k": 3, "x": 7}])
    seen: list[int] = []

    @cd.udaf(returns="BIGINT", input="polars")
    def pl_max(x):
        return x.list.max()

    @cd.udaf(returns="BIGINT", input="polars", per_group=True)
    def pl_max_each(x):
        return x.max()

    @cd.udaf(returns="BIGINT", input="numpy", per_group=True)
    def np_count(x):
        seen.append(len(x))
        return len(x)

    got = cd.sql("SELECT k, pl_max(x) AS a, pl_max_each(x) AS b, np_count(x) AS n, "
                 "np_count(x) FILTER (WHERE x < 6) AS f FROM t GROUP BY k", t=frame).collect()
    assert got.sort_by("k").to_pylist() == [{"k": 1, "a": 5, "b": 5, "n": 2, "f": 2},
                                            {"k": 2, "a": 3, "b": 3, "n": 2, "f": 1},
                                            {"k": 3, "a": 7, "b": 7, "n": 1, "f": None}]
    assert sorted(seen) == [1, 1, 2, 2, 2]  # group 3 had no row for f: no call
