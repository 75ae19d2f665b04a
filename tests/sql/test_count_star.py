"""``count(*)`` with no other column to read (issue 10, bug 1): the projection that feeds the
aggregate has no column at all, and it must still carry the input's row count. Every form
(alone, beside count(1), behind a filter, a view, a subquery, a join, windows of both
spellings, processing-time windows, OVER) equals DuckDB's answer at parallelism 1 and 2."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from tests.changelog_helpers import fold, run_changelog
from tests.conftest import make_bids
from tests.helpers import normalized_rows, run_to_table

ROWS = 3000
TIMED = ("CREATE TABLE bids (auction BIGINT, bidder BIGINT, price BIGINT, channel TEXT, "
         "url TEXT, date_time TIMESTAMP, extra TEXT, "
         "WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND) "
         "WITH (connector = 'filesystem', path = '{path}', format = 'parquet');")
PLAIN = "CREATE TABLE bids WITH (connector = 'filesystem', path = '{path}', format = 'parquet');"
VIEW = "CREATE VIEW cheap AS SELECT * FROM bids WHERE price < 5000;"

#: (caudal query, DuckDB query) of updating results (a changelog folded to its rows)
UPDATING = [
    ("SELECT count(*) AS n FROM bids", None),
    ("SELECT count(*) AS n, count(1) AS one FROM bids", None),
    ("SELECT count(*) AS n FROM bids WHERE price > 100", None),
    ("SELECT count(*) AS n FROM cheap", "SELECT count(*) AS n FROM bids WHERE price < 5000"),
    ("SELECT count(*) AS n FROM (SELECT auction, price FROM bids WHERE bidder < 100) AS s", None),
    ("SELECT count(*) AS n FROM (SELECT auction FROM bids GROUP BY auction) AS g", None),
    ("SELECT count(*) AS n FROM bids AS a JOIN bids AS b ON a.auction = b.auction "
     "AND a.bidder = b.bidder", None),
    ("SELECT count(*) AS n FROM bids HAVING count(*) > 10", None),
]

BUCKET = "make_timestamp((epoch_us(date_time) // 10000000) * 10000000)"
#: (caudal query, DuckDB query) of windowed results (appended rows)
WINDOWED = [
    ("SELECT window_start, count(*) AS n FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), "
     "INTERVAL '10' SECOND)) GROUP BY window_start, window_end",
     f"SELECT {BUCKET} AS window_start, count(*) AS n FROM bids GROUP BY 1"),
    ("SELECT window.start AS window_start, n FROM (SELECT count(*) AS n, "
     "tumble(INTERVAL '10' SECOND) AS window FROM bids GROUP BY window) AS w",
     f"SELECT {BUCKET} AS window_start, count(*) AS n FROM bids GROUP BY 1"),
    ("SELECT window_start, count(*) AS n FROM TABLE(TUMBLE(TABLE cheap, DESCRIPTOR(date_time), "
     "INTERVAL '10' SECOND)) GROUP BY window_start, window_end",
     f"SELECT {BUCKET} AS window_start, count(*) AS n FROM bids WHERE price < 5000 GROUP BY 1"),
    ("SELECT auction, date_time, count(*) OVER (PARTITION BY auction ORDER BY date_time "
     "ROWS BETWEEN 10 PRECEDING AND CURRENT ROW) AS n FROM bids",
     "SELECT auction, date_time, count(*) OVER (PARTITION BY auction ORDER BY date_time "
     "ROWS BETWEEN 10 PRECEDING AND CURRENT ROW) AS n FROM bids"),
]


@pytest.fixture(scope="module")
def bids_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("bids") / "bids.parquet"
    table = make_bids(ROWS, seed=3)
    pq.write_table(table, path, row_group_size=400)
    return path, table


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("query,reference", UPDATING)
def test_updating_count_star_equals_duckdb(tmp_path, duck, bids_file, query, reference,
                                           parallelism):
    path, table = bids_file
    changes = run_changelog(PLAIN.format(path=path) + "\n" + VIEW, query, tmp_path / "out",
                            parallelism=parallelism)
    bids = table  # noqa: F841 - DuckDB reads the local variable by name
    expected = duck.sql(reference or query).to_arrow_table()
    assert normalized_rows(fold(changes)) == normalized_rows(expected)


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("query,reference", WINDOWED)
def test_windowed_count_star_equals_duckdb(tmp_path, duck, bids_file, query, reference,
                                           parallelism):
    path, table = bids_file
    ddl = TIMED.format(path=path) + "\n" + VIEW
    got = run_to_table(ddl, query, tmp_path / "out", parallelism=parallelism)
    bids = table  # noqa: F841
    expected = duck.sql(reference).to_arrow_table()
    assert normalized_rows(got) == normalized_rows(expected)


@pytest.mark.parametrize("parallelism", [1, 2])
def test_processing_time_window_counts_every_row(tmp_path, bids_file, parallelism):
    """A table without event time gets processing-time windows: which window a row lands in
    depends on the clock, but the counts add up to the input."""
    path, _ = bids_file
    got = run_to_table(PLAIN.format(path=path),
                       "SELECT count(*) AS n, tumble(INTERVAL '1' HOUR) AS window "
                       "FROM bids GROUP BY window", tmp_path / "out", parallelism=parallelism)
    assert got is not None and sum(got.column("n").to_pylist()) == ROWS
