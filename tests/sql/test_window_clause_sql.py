"""The WINDOW clause of OVER aggregates (``OVER w … WINDOW w AS (…)``), with ``window`` still
usable as a column name: results equal DuckDB's (which reads the same WINDOW clause) at
parallelism 1 and 2."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from caudal.errors import PlanError
from caudal.job import compile_sql
from tests.changelog_helpers import fold, run_changelog
from tests.conftest import make_bids
from tests.helpers import normalized_rows, run_to_table

DDL = ("CREATE TABLE bids WITH (connector = 'filesystem', path = '{path}', "
       "event_time_field = 'date_time');")
BASE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

QUERIES = [
    "SELECT auction, price, avg(price) OVER w AS a, max(price) OVER w AS m, "
    "count(*) OVER (w ROWS BETWEEN 3 PRECEDING AND CURRENT ROW) AS n FROM bids "
    "WHERE price > 5000 WINDOW w AS (PARTITION BY auction ORDER BY date_time)",
    # a definition built on another one, two windows in one query
    "SELECT bidder, sum(price) OVER w2 AS s, min(price) OVER w3 AS lo FROM bids "
    "WINDOW w1 AS (PARTITION BY bidder % 7), w2 AS (w1 ORDER BY date_time), "
    "w3 AS (PARTITION BY channel ORDER BY date_time ROWS BETWEEN 5 PRECEDING AND CURRENT ROW)",
]


@pytest.fixture(scope="module")
def bids_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("wclause") / "bids.parquet"
    table = make_bids(3000, seed=41)
    times = [BASE + dt.timedelta(milliseconds=3 * i) for i in range(table.num_rows)]
    table = table.set_column(table.column_names.index("date_time"), "date_time",
                             pa.array(times, pa.timestamp("us", tz="UTC")))
    pq.write_table(table, path, row_group_size=400)
    return path, table


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("query", QUERIES)
def test_window_clause_equals_duckdb(tmp_path, duck, bids_file, query, parallelism):
    path, table = bids_file
    got = run_to_table(DDL.format(path=path), query, tmp_path / "out", parallelism,
                       batch_rows=300)
    duck.register("bids", table)
    assert normalized_rows(got) == normalized_rows(duck.sql(query).to_arrow_table())


def test_window_clause_over_an_updating_input(tmp_path, duck, bids_file):
    path, table = bids_file
    query = ("SELECT auction, n, sum(n) OVER w AS s FROM (SELECT auction, count(*) AS n FROM "
             "bids GROUP BY auction) WINDOW w AS (PARTITION BY auction % 4 ORDER BY n, "
             "auction ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)")
    changes = run_changelog(DDL.format(path=path), query, tmp_path / "out", parallelism=2,
                            settings="SET updating_flush = '0';", batch_rows=300)
    duck.register("bids", table)
    assert normalized_rows(fold(changes)) == normalized_rows(duck.sql(query).to_arrow_table())


def test_window_stays_a_column_name(tmp_path, bids_file):
    path, _ = bids_file
    got = run_to_table(DDL.format(path=path), "SELECT count(*) AS n, tumble(INTERVAL '4' "
                       "SECOND) AS window FROM bids window GROUP BY window", tmp_path / "out")
    assert got.num_rows == 3 and sum(got.column("n").to_pylist()) == 3000


@pytest.mark.parametrize("query,message", [
    ("SELECT sum(price) OVER v FROM bids WINDOW w AS (PARTITION BY auction ORDER BY "
     "date_time)", "window v is not defined"),
    ("SELECT sum(price) OVER (w PARTITION BY bidder) FROM bids WINDOW w AS (PARTITION BY "
     "auction ORDER BY date_time)", "cannot replace the PARTITION BY of window w"),
])
def test_window_clause_errors(bids_file, query, message):
    path, _ = bids_file
    with pytest.raises(PlanError) as err:
        compile_sql(f"{DDL.format(path=path)}\n{query};")
    assert message in str(err.value) and "line 2, column" in str(err.value)
