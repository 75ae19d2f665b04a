"""A stateless query gives the same rows as DuckDB on the same input, at parallelism 1 and 4,
from Parquet and JSON sources."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import make_bids
from tests.helpers import normalized_rows, run_to_table

QUERIES = [
    # (caudal SQL, DuckDB SQL when it differs)
    ("SELECT auction, price FROM bids WHERE price > 5000", None),
    ("SELECT auction, price * 2 AS p2, upper(channel) AS ch FROM bids "
     "WHERE channel LIKE 'a%' OR price IS NULL", None),
    ("SELECT bidder, CASE WHEN price > 100 THEN 'high' WHEN price IS NULL THEN 'none' "
     "ELSE 'low' END AS tier FROM bids", None),
    ("SELECT auction / 7 AS a7, price % 13 AS m FROM bids WHERE bidder BETWEEN 10 AND 200",
     "SELECT auction // 7 AS a7, price % 13 AS m FROM bids WHERE bidder BETWEEN 10 AND 200"),
    ("SELECT coalesce(channel, 'none') AS c, length(url) AS n, "
     "date_trunc('second', date_time) AS ts FROM bids WHERE auction IN (1001, 1002, 1050)",
     None),
    ("SELECT * FROM bids WHERE NOT (price < 0) AND channel <> ''", None),
    ("SELECT split_part(url, '/', 4) AS part, extract(minute FROM date_time) AS s FROM bids "
     "WHERE price % 2 = 0", None),
]


def _write_json(table, path):
    with open(path, "w") as f:
        for row in table.to_pylist():
            row["date_time"] = row["date_time"].isoformat()
            f.write(json.dumps(row) + "\n")


DDL_PARQUET = "CREATE TABLE bids WITH (connector = 'filesystem', path = '{path}');"
DDL_JSON = """CREATE TABLE bids (auction BIGINT, bidder BIGINT, price BIGINT, channel TEXT,
  url TEXT, date_time TIMESTAMP, extra TEXT)
  WITH (connector = 'filesystem', path = '{path}', format = 'json');"""


@pytest.mark.parametrize("parallelism", [1, 4])
@pytest.mark.parametrize("query,duck_query", QUERIES)
def test_parquet_query_matches_duckdb(tmp_path, duck, bids_parquet, parallelism, query,
                                      duck_query):
    path, table = bids_parquet
    got = run_to_table(DDL_PARQUET.format(path=path), query, tmp_path / "out", parallelism)
    bids = table  # noqa: F841 - DuckDB reads the local variable by name
    expected = duck.sql(duck_query or query).to_arrow_table()
    assert normalized_rows(got) == normalized_rows(expected)


@pytest.mark.parametrize("parallelism", [1, 4])
def test_json_source_matches_duckdb(tmp_path, duck, parallelism):
    table = make_bids(3000, seed=3)
    files = tmp_path / "in"
    files.mkdir()
    _write_json(table.slice(0, 1000), files / "a.json")
    _write_json(table.slice(1000), files / "b.json")
    query = "SELECT auction, bidder, price, channel FROM bids WHERE price > 100"
    got = run_to_table(DDL_JSON.format(path=files), query, tmp_path / "out", parallelism)
    bids = table  # noqa: F841
    expected = duck.sql(query).to_arrow_table()
    assert normalized_rows(got) == normalized_rows(expected)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(low=st.integers(-100, 10_000), high=st.integers(-100, 10_000),
       parallelism=st.sampled_from([1, 2, 4]), seed=st.integers(0, 5))
def test_random_filters_match_duckdb(tmp_path_factory, duck, low, high, parallelism, seed):
    import pyarrow.parquet as pq

    tmp = tmp_path_factory.mktemp("h")
    table = make_bids(800, seed=seed)
    pq.write_table(table, tmp / "bids.parquet", row_group_size=97)
    query = (f"SELECT auction, price - {low} AS d, channel FROM bids "
             f"WHERE price BETWEEN {low} AND {high} OR channel = 'apple'")
    got = run_to_table(DDL_PARQUET.format(path=tmp / "bids.parquet"), query, tmp / "out",
                       parallelism)
    bids = table  # noqa: F841
    expected = duck.sql(query).to_arrow_table()
    assert normalized_rows(got) == normalized_rows(expected)
