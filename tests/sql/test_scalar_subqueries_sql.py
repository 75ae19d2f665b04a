"""Scalar subqueries (an aggregate without GROUP BY) in WHERE, in the SELECT list and in a
GROUP BY query: folded changelogs equal DuckDB's answer at parallelism 1 and 2."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from caudal.errors import PlanError
from caudal.job import compile_sql
from tests.changelog_helpers import fold, run_changelog
from tests.conftest import make_bids
from tests.helpers import normalized_rows

DDL = "CREATE TABLE bids WITH (connector = 'filesystem', path = '{path}');"

QUERIES = [
    "SELECT auction, price FROM bids WHERE price > (SELECT avg(price) + 4900 FROM bids)",
    "SELECT auction, price - (SELECT min(price) FROM bids WHERE channel = 'apple') AS d "
    "FROM bids WHERE bidder < 30",
    # HAVING leaves no row: the value is NULL
    "SELECT auction, (SELECT max(price) FROM bids HAVING count(*) > 1000000) AS m "
    "FROM bids WHERE bidder < 10",
    "SELECT channel, count(*) AS n, (SELECT max(price) FROM bids) AS top FROM bids "
    "GROUP BY channel",
]


@pytest.fixture(scope="module")
def bids_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("scalar") / "bids.parquet"
    table = make_bids(3000, seed=61)
    pq.write_table(table, path, row_group_size=400)
    return path, table


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("query", QUERIES)
def test_scalar_subquery_folds_to_duckdb(tmp_path, duck, bids_file, query, parallelism):
    path, table = bids_file
    changes = run_changelog(DDL.format(path=path), query, tmp_path / "out",
                            parallelism=parallelism, settings="SET updating_flush = '0';",
                            batch_rows=400)
    duck.register("bids", table)
    assert normalized_rows(fold(changes)) == normalized_rows(duck.sql(query).to_arrow_table())


@pytest.mark.parametrize("query,message", [
    ("SELECT auction FROM bids WHERE price > (SELECT price FROM bids)",
     "at most one row"),
    ("SELECT auction FROM bids b WHERE price > (SELECT max(price) FROM bids c "
     "WHERE c.auction = b.auction)", "correlated scalar subqueries are not supported"),
    ("SELECT count(*) - (SELECT count(*) FROM bids) FROM bids",
     "aggregate query without GROUP BY"),
])
def test_scalar_subquery_errors(bids_file, query, message):
    path, _ = bids_file
    with pytest.raises(PlanError) as err:
        compile_sql(f"{DDL.format(path=path)}\n{query};")
    assert message in str(err.value) and "line 2, column" in str(err.value)
