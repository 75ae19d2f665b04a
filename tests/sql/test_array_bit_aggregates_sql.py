"""array_agg (with ORDER BY inside) and bit_and / bit_or / bit_xor in event-time windows, in
updating GROUP BYs and over an updating input (where rows are retracted), against DuckDB at
parallelism 1 and 2."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from caudal.errors import PlanError
from caudal.job import compile_sql
from tests.changelog_helpers import fold, run_changelog
from tests.conftest import make_bids
from tests.helpers import normalized_rows, run_to_table

DDL = ("CREATE TABLE bids (auction BIGINT, bidder BIGINT, price BIGINT, channel TEXT, "
       "url TEXT, date_time TIMESTAMP, extra TEXT, WATERMARK FOR date_time AS date_time - "
       "INTERVAL '1' SECOND) WITH (connector = 'filesystem', path = '{path}');")
TUMBLE = "TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '10' SECOND))"
DUCK_TUMBLE = ("(SELECT *, time_bucket(INTERVAL '10 seconds', date_time) AS window_start, "
               "time_bucket(INTERVAL '10 seconds', date_time) + INTERVAL '10 seconds' "
               "AS window_end FROM bids)")


@pytest.fixture(scope="module")
def bids_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("bids") / "bids.parquet"
    table = make_bids(3000, seed=5)
    pq.write_table(table, path, row_group_size=400)
    return path, table


WINDOWED = [
    "SELECT window_start, window_end, auction, bit_and(price) AS a, bit_or(price) AS o, "
    "bit_xor(bidder) AS x FROM {src} GROUP BY window_start, window_end, auction",
    # price is unique enough per window and key that the order is total
    "SELECT window_start, window_end, auction % 5 AS k, "
    "array_agg(price ORDER BY price DESC NULLS LAST) AS l, bit_xor(price) AS x "
    "FROM {src} GROUP BY window_start, window_end, auction % 5",
    "SELECT window_start, window_end, channel, array_agg(bidder ORDER BY bidder) "
    "FILTER (WHERE price > 9000) AS l FROM {src} GROUP BY window_start, window_end, channel",
]


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("query", WINDOWED)
def test_windowed_array_and_bit_aggregates_match_duckdb(tmp_path, duck, bids_file, query,
                                                        parallelism):
    path, table = bids_file
    got = run_to_table(DDL.format(path=path), query.format(src=TUMBLE), tmp_path / "out",
                       parallelism)
    bids = table  # noqa: F841 - DuckDB reads the local variable by name
    expected = duck.sql(query.format(src=DUCK_TUMBLE)).to_arrow_table()
    assert normalized_rows(got) == normalized_rows(expected)


@pytest.mark.parametrize("parallelism", [1, 2])
def test_array_agg_ignore_nulls_is_a_filter(tmp_path, duck, bids_file, parallelism):
    # Flink: ARRAY_AGG(x IGNORE NULLS) skips the NULLs it would otherwise keep
    path, table = bids_file
    query = ("SELECT window_start, window_end, auction % 3 AS k, "
             "array_agg(price ORDER BY price IGNORE NULLS) AS l, "
             "array_agg(channel RESPECT NULLS ORDER BY channel) FILTER (WHERE price > 5000) "
             "AS c FROM {src} GROUP BY window_start, window_end, auction % 3")
    duck_query = ("SELECT window_start, window_end, auction % 3 AS k, "
                  "array_agg(price ORDER BY price) FILTER (WHERE price IS NOT NULL) AS l, "
                  "array_agg(channel ORDER BY channel NULLS LAST) FILTER (WHERE price > 5000) "
                  "AS c FROM {src} GROUP BY window_start, window_end, auction % 3")
    got = run_to_table(DDL.format(path=path), query.format(src=TUMBLE), tmp_path / "out",
                       parallelism)
    bids = table  # noqa: F841
    expected = duck.sql(duck_query.format(src=DUCK_TUMBLE)).to_arrow_table()
    assert normalized_rows(got) == normalized_rows(expected)


def test_array_agg_keeps_arrival_order_and_nulls(tmp_path, bids_file):
    # without ORDER BY a window's list is its rows in arrival (file) order, NULLs kept
    path, table = bids_file
    got = run_to_table(DDL.format(path=path),
                       f"SELECT window_start, array_agg(price) AS l FROM {TUMBLE} "
                       "GROUP BY window_start, window_end", tmp_path / "out", 1)
    lists = dict(zip(got.column("window_start").to_pylist(), got.column("l").to_pylist()))
    start = min(lists)
    first = [p for p, t in zip(table.column("price").to_pylist(),
                               table.column("date_time").to_pylist())
             if (t - start).total_seconds() < 10]
    assert lists[start] == first and None in first


UPDATING = [
    "SELECT auction, bit_and(price) AS a, bit_or(price) AS o, bit_xor(bidder) AS x "
    "FROM bids GROUP BY auction",
    "SELECT channel, cardinality(array_agg(price)) AS n, "
    "array_agg(price ORDER BY price)[1] AS lo, array_agg(bidder ORDER BY bidder DESC)[2] AS b2 "
    "FROM bids GROUP BY channel",
    # over an updating input: rows are retracted, and the aggregates follow
    "SELECT n, bit_xor(mx) AS x, bit_or(mx) AS o, bit_and(mx) AS a, "
    "array_agg(mx ORDER BY mx)[1] AS lo, cardinality(array_agg(mx)) AS c FROM "
    "(SELECT auction, count(*) AS n, max(price) AS mx FROM bids GROUP BY auction) GROUP BY n",
]


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("query", UPDATING)
def test_updating_array_and_bit_aggregates_fold_to_duckdb(tmp_path, duck, bids_file, query,
                                                          parallelism):
    path, table = bids_file
    changes = run_changelog(DDL.format(path=path), query, tmp_path / "out",
                            parallelism=parallelism, settings="SET updating_flush = '0';",
                            batch_rows=500)
    bids = table  # noqa: F841
    assert normalized_rows(fold(changes)) == normalized_rows(duck.sql(query).to_arrow_table())


@pytest.mark.parametrize("query,message", [
    ("SELECT bit_and(channel) FROM bids", r"bit_and\(\) takes an integer"),
    ("SELECT array_agg(price ORDER BY price, bidder) FROM bids", "one ORDER BY key"),
    ("SELECT string_agg(channel, ',' ORDER BY price) FROM bids", "ORDER BY inside"),
    ("SELECT sum(price RESPECT NULLS) FROM bids", "RESPECT NULLS is not supported"),
    ("SELECT upper(channel IGNORE NULLS) FROM bids", "IGNORE NULLS applies to an aggregate"),
])
def test_bad_aggregate_calls_are_refused(bids_file, query, message):
    with pytest.raises(PlanError, match=message):
        compile_sql(DDL.format(path=bids_file[0]) + query)
