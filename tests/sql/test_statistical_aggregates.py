"""median, percentile_cont/percentile_disc (WITHIN GROUP and the function forms), corr,
covar_pop/samp and the regr_* aggregates (Arroyo's every_aggregate smoke test used them; caudal
refused median()): updating and windowed, with FILTER, equal to DuckDB at parallelism 1 and 2
(floats to a relative 1e-9: the co-moments merge in another order than DuckDB's)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest

from caudal.errors import PlanError
from caudal.job import compile_sql
from tests.changelog_helpers import fold, run_changelog
from tests.conftest import make_bids
from tests.helpers import run_to_table

DDL = ("CREATE TABLE bids (auction BIGINT, bidder BIGINT, price BIGINT, channel TEXT, "
       "url TEXT, date_time TIMESTAMP, extra TEXT, "
       "WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND) "
       "WITH (connector = 'filesystem', path = '{path}', format = 'parquet');")
AGGS = ("median(price) AS med, percentile_cont(0.9) WITHIN GROUP (ORDER BY price) AS p90, "
        "percentile_cont(0.9) WITHIN GROUP (ORDER BY price DESC) AS p10, "
        "percentile_disc(0.25) WITHIN GROUP (ORDER BY price) AS d25, "
        "{approx} AS a75, "
        "median(price) FILTER (WHERE bidder > 100) AS fmed, "
        "corr(price, bidder) AS c, covar_pop(price, bidder) AS cp, "
        "covar_samp(price, bidder) AS cs, regr_slope(price, bidder) AS sl, "
        "regr_intercept(price, bidder) AS ic, regr_count(price, bidder) AS rc, "
        "regr_r2(price, bidder) AS r2, regr_avgx(price, bidder) AS ax, "
        "regr_avgy(price, bidder) AS ay, regr_sxx(price, bidder) AS sxx, "
        "regr_syy(price, bidder) AS syy, regr_sxy(price, bidder) AS sxy")
CAUDAL_AGGS = AGGS.format(approx="approx_percentile_cont(price, 0.75)")
DUCK_AGGS = AGGS.format(approx="quantile_cont(price, 0.75)")
BUCKET = "make_timestamp((epoch_us(date_time) // 10000000) * 10000000)"


@pytest.fixture(scope="module")
def bids_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("bids") / "bids.parquet"
    table = make_bids(3000, seed=11)
    pq.write_table(table, path, row_group_size=350)
    return path, table


def _close(got, expected) -> bool:
    if isinstance(got, datetime) and isinstance(expected, datetime):  # instants, in UTC
        return got.astimezone(UTC).replace(tzinfo=None) == expected.replace(tzinfo=None)
    if got is None or expected is None:
        return got is expected
    if isinstance(got, float) or isinstance(expected, float):
        return math.isclose(float(got), float(expected), rel_tol=1e-9, abs_tol=1e-9)
    return got == expected


def _assert_rows_close(got, expected, keys: list[str]) -> None:
    def ordered(table):
        rows = table.to_pylist()
        return sorted(rows, key=lambda r: tuple((r[k] is None, str(r[k])) for k in keys))

    got_rows, expected_rows = ordered(got), ordered(expected)
    assert len(got_rows) == len(expected_rows)
    for g, e in zip(got_rows, expected_rows):
        for name in e:
            assert _close(g[name], e[name]), (name, g, e)


@pytest.mark.parametrize("parallelism", [1, 2])
def test_updating_statistics_equal_duckdb(tmp_path, duck, bids_file, parallelism):
    path, table = bids_file
    changes = run_changelog(DDL.format(path=path),
                            f"SELECT channel, {CAUDAL_AGGS} FROM bids GROUP BY channel",
                            tmp_path / "out", parallelism=parallelism)
    bids = table  # noqa: F841 - DuckDB reads the local variable by name
    expected = duck.sql(f"SELECT channel, {DUCK_AGGS} FROM bids GROUP BY channel")
    _assert_rows_close(fold(changes), expected.to_arrow_table(), ["channel"])


@pytest.mark.parametrize("parallelism", [1, 2])
def test_windowed_statistics_equal_duckdb(tmp_path, duck, bids_file, parallelism):
    path, table = bids_file
    got = run_to_table(DDL.format(path=path),
                       f"SELECT window_start, channel, {CAUDAL_AGGS} FROM TABLE(TUMBLE(TABLE "
                       "bids, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) "
                       "GROUP BY window_start, window_end, channel",
                       tmp_path / "out", parallelism=parallelism)
    bids = table  # noqa: F841
    expected = duck.sql(f"SELECT {BUCKET} AS window_start, channel, {DUCK_AGGS} FROM bids "
                        "GROUP BY 1, 2").to_arrow_table()
    _assert_rows_close(got, expected,
                       ["window_start", "channel"])



@pytest.mark.parametrize("parallelism", [1, 2])
def test_over_no_rows_regr_count_is_0_and_the_others_null(tmp_path, duck, bids_file,
                                                          parallelism):
    """regr_count is a count: 0 over no rows (it was NULL), as in DuckDB and PostgreSQL."""
    path, table = bids_file
    changes = run_changelog(DDL.format(path=path),
                            f"SELECT {CAUDAL_AGGS} FROM bids WHERE channel = 'no such channel'",
                            tmp_path / "out", parallelism=parallelism)
    bids = table  # noqa: F841
    expected = duck.sql(f"SELECT {DUCK_AGGS} FROM bids WHERE channel = 'no such channel'").to_arrow_table()
    got = fold(changes)
    assert got.column("rc").to_pylist() == [0] == expected.column("rc").to_pylist()
    _assert_rows_close(got, expected, [])

@pytest.mark.parametrize("select,message", [
    ("percentile_cont(1.5) WITHIN GROUP (ORDER BY price)", "constant fraction between 0"),
    ("percentile_cont(price) WITHIN GROUP (ORDER BY price)", "constant fraction"),
    ("median(channel)", "median() takes a number, got TEXT"),
    ("regr_count(channel, price)", "regr_count() takes two numbers (y, x), got (TEXT, BIGINT)"),
    ("sum(price) WITHIN GROUP (ORDER BY price)", "sum() takes no WITHIN GROUP"),
    ("percentile_disc(0.5) WITHIN GROUP (ORDER BY price DESC)", "is not supported"),
])
def test_bad_statistics_are_refused_with_position(tmp_path, bids_file, select, message):
    path, _ = bids_file
    with pytest.raises(PlanError) as raised:
        compile_sql(DDL.format(path=path) + f"\nSELECT auction, {select} AS v FROM bids "
                    "GROUP BY auction;")
    assert message in str(raised.value) and raised.value.line == 2
