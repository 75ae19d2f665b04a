"""GROUP BY GROUPING SETS / ROLLUP / CUBE with GROUPING() and GROUPING_ID(): updating and
windowed, folded changelogs equal DuckDB's answer at parallelism 1 and 2."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from caudal.errors import PlanError
from caudal.job import compile_sql
from tests.changelog_helpers import fold, run_changelog
from tests.conftest import make_bids
from tests.helpers import normalized_rows

DDL = ("CREATE TABLE bids WITH (connector = 'filesystem', path = '{path}', "
       "event_time_field = 'date_time');")

QUERIES = [
    ("SELECT channel, auction % 2 AS par, count(*) AS n, max(price) AS mx, "
     "GROUPING(channel, auction % 2) AS g FROM bids GROUP BY ROLLUP (channel, auction % 2)",
     None),
    ("SELECT channel, bidder % 3 AS b3, sum(price) AS s, GROUPING_ID(channel, b3) AS gid "
     "FROM bids GROUP BY CUBE (channel, b3) HAVING count(*) > 150", None),
    ("SELECT channel, bidder % 4 AS b4, avg(price) AS a, count(DISTINCT auction) AS d FROM "
     "bids WHERE price > 100 GROUP BY GROUPING SETS ((channel, b4), (b4), ())", None),
    # plain items are in every set; a key in an expression outside an aggregate is NULL
    ("SELECT auction % 3 AS a3, channel, upper(channel) AS up, count(*) AS n FROM bids "
     "GROUP BY auction % 3, GROUPING SETS ((channel), ())", None),
    # windowed (Flink: GROUPING SETS next to window_start, window_end)
    ("SELECT window_start, window_end, channel, count(*) AS n, sum(price) AS s FROM "
     "TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '20' SECOND)) "
     "GROUP BY window_start, window_end, GROUPING SETS ((channel), ())",
     "SELECT time_bucket(INTERVAL 20 SECOND, date_time) AS window_start, "
     "time_bucket(INTERVAL 20 SECOND, date_time) + INTERVAL 20 SECOND AS window_end, "
     "channel, count(*) AS n, sum(price) AS s FROM bids "
     "GROUP BY GROUPING SETS ((window_start, window_end, channel), (window_start, window_end))"),
]


@pytest.fixture(scope="module")
def bids_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("gsets") / "bids.parquet"
    table = make_bids(4000, seed=31)
    pq.write_table(table, path, row_group_size=350)
    return path, table


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("query,duck_query", QUERIES)
def test_grouping_sets_fold_to_duckdb(tmp_path, duck, bids_file, query, duck_query,
                                      parallelism):
    path, table = bids_file
    changes = run_changelog(DDL.format(path=path), query, tmp_path / "out",
                            parallelism=parallelism, settings="SET updating_flush = '0';",
                            batch_rows=500)
    duck.register("bids", table)
    expected = duck.sql(duck_query or query).to_arrow_table()
    assert normalized_rows(fold(changes)) == normalized_rows(expected)


def test_windowed_grouping_sets_only_append(bids_file):
    path, _ = bids_file
    plan = compile_sql(DDL.format(path=path) + "\n" + QUERIES[-1][0] + ";").job.outputs[0].plan
    assert not plan.input.updating


@pytest.mark.parametrize("query,message", [
    ("SELECT channel, GROUPING(price) FROM bids GROUP BY ROLLUP (channel)",
     "GROUPING() argument price is not a GROUP BY expression"),
])
def test_grouping_sets_errors(bids_file, query, message):
    path, _ = bids_file
    with pytest.raises(PlanError) as err:
        compile_sql(f"{DDL.format(path=path)}\n{query};")
    assert message in str(err.value) and "line 2, column" in str(err.value)
