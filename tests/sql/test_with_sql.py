"""WITH (common table expressions): chained, with column names, read twice, inside
subqueries, before INSERT; results equal DuckDB's at parallelism 1 and 2."""

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
    "WITH hi AS (SELECT auction, price, channel FROM bids WHERE price > 5000), "
    "c(a, n) AS (SELECT auction, count(*) FROM hi GROUP BY auction) "
    "SELECT a, n FROM c WHERE n > 20",
    # read twice, and from a subquery (a WITH query is visible inside it)
    "WITH lo AS (SELECT auction, bidder FROM bids WHERE price < 100) "
    "SELECT auction, bidder FROM lo UNION ALL SELECT bidder, auction FROM lo "
    "WHERE auction IN (SELECT auction FROM lo WHERE bidder < 50)",
    # a WITH query named like a table hides it; a nested WITH sees the outer one
    "WITH bids AS (SELECT auction, price FROM bids WHERE channel = 'apple') "
    "SELECT count(*) AS n, sum(price) AS s FROM (WITH x AS (SELECT * FROM bids "
    "WHERE price > 10) SELECT * FROM x)",
]


@pytest.fixture(scope="module")
def bids_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("with") / "bids.parquet"
    table = make_bids(3000, seed=51)
    pq.write_table(table, path, row_group_size=400)
    return path, table


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("query", QUERIES)
def test_with_equals_duckdb(tmp_path, duck, bids_file, query, parallelism):
    path, table = bids_file
    changes = run_changelog(DDL.format(path=path), query, tmp_path / "out",
                            parallelism=parallelism, settings="SET updating_flush = '0';",
                            batch_rows=400)
    duck.register("bids", table)
    assert normalized_rows(fold(changes)) == normalized_rows(duck.sql(query).to_arrow_table())


def test_with_before_insert_and_views_do_not_see_it(tmp_path, bids_file):
    path, _ = bids_file
    script = (f"{DDL.format(path=path)}\nCREATE VIEW v AS SELECT auction FROM bids;\n"
              "CREATE TABLE o WITH (connector = 'stdout');\n"
              "WITH bids AS (SELECT bidder AS auction FROM bids WHERE price < 0) "
              "INSERT INTO o SELECT auction FROM v;")
    plan = compile_sql(script).job.outputs[0].plan
    assert "price" not in plan.explain()  # v reads the table bids, not the WITH query


def test_recursive_with_is_refused(bids_file):
    path, _ = bids_file
    with pytest.raises(PlanError) as err:
        compile_sql(f"{DDL.format(path=path)}\nWITH RECURSIVE r AS (SELECT auction FROM "
                    f"bids) SELECT * FROM r;")
    assert "WITH RECURSIVE is not supported" in str(err.value) and "line 2" in str(err.value)
