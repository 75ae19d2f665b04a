"""IN / EXISTS subqueries as semi and anti joins: the changelog a debezium_json sink receives
folds to DuckDB's answer (NULL semantics of NOT IN included), at parallelism 1 and 2."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caudal.errors import PlanError
from caudal.job import compile_sql
from tests.changelog_helpers import fold, run_changelog
from tests.conftest import make_bids
from tests.helpers import normalized_rows

DDL = ("CREATE TABLE bids WITH (connector = 'filesystem', path = '{path}');\n"
       "CREATE TABLE more WITH (connector = 'filesystem', path = '{path2}');")

QUERIES = [
    "SELECT auction, price FROM bids WHERE price > 5000 AND auction IN "
    "(SELECT auction FROM more WHERE channel = 'apple' AND price < 100)",
    # NOT IN with NULLs in the subquery: nothing passes
    "SELECT auction, price FROM bids WHERE price % 100 NOT IN "
    "(SELECT price % 50 FROM more WHERE auction = 1000)",
    # NOT IN without NULLs in the subquery, NULLs on the outer side (never pass)
    "SELECT auction, price FROM bids WHERE price NOT IN "
    "(SELECT price FROM more WHERE price IS NOT NULL AND bidder > 20)",
    # correlated EXISTS (two keys) and NOT EXISTS with a residual condition
    "SELECT auction, bidder FROM bids b WHERE EXISTS "
    "(SELECT 1 FROM more m WHERE m.auction = b.auction AND m.bidder = b.bidder)",
    "SELECT auction, price FROM bids b WHERE NOT EXISTS "
    "(SELECT * FROM more m WHERE m.auction = b.auction AND m.price > b.price)",
    # correlated NOT IN (NULLs per correlation key)
    "SELECT bidder, auction FROM bids b WHERE price % 20 NOT IN "
    "(SELECT price % 20 FROM more m WHERE m.auction = b.auction AND m.bidder < 30)",
    # uncorrelated EXISTS / NOT EXISTS
    "SELECT count(*) AS n FROM bids WHERE EXISTS (SELECT 1 FROM more WHERE price > 9990)",
    "SELECT auction FROM bids WHERE NOT EXISTS (SELECT 1 FROM more WHERE price > 99990)",
    # a subquery with GROUP BY (an updating right side), an aggregate above a semi join
    "SELECT channel, count(*) AS n FROM bids WHERE auction IN "
    "(SELECT auction FROM more GROUP BY auction HAVING count(*) > 27) GROUP BY channel",
    # several columns, IN and NOT EXISTS together, literal IN lists still work
    "SELECT auction, bidder, channel FROM bids WHERE (auction, bidder % 3) IN "
    "(SELECT auction, bidder % 3 FROM more WHERE price < 300) AND channel IN ('apple', '') "
    "AND NOT EXISTS (SELECT 1 FROM more m WHERE m.bidder = bids.bidder AND m.price < 0)",
]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("subq")
    bids, more = make_bids(3000, seed=8), make_bids(2500, seed=9)
    pq.write_table(bids, root / "bids.parquet", row_group_size=400)
    pq.write_table(more, root / "more.parquet", row_group_size=300)
    return DDL.format(path=root / "bids.parquet", path2=root / "more.parquet"), bids, more


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("query", QUERIES)
def test_subquery_folds_to_duckdb(tmp_path, duck, files, query, parallelism):
    ddl, bids, more = files
    changes = run_changelog(ddl, query, tmp_path / "out", parallelism=parallelism,
                            settings="SET updating_flush = '0';", batch_rows=500)
    duck.register("bids", bids)
    duck.register("more", more)
    expected = duck.sql(query).to_arrow_table()
    assert normalized_rows(fold(changes)) == normalized_rows(expected)


def test_semi_join_over_append_inputs_only_appends(files):
    ddl, _, _ = files
    plan = compile_sql(ddl + "\nSELECT * FROM bids WHERE auction IN (SELECT auction FROM "
                             "more);").job.outputs[0].plan
    assert not plan.input.updating
    plan = compile_sql(ddl + "\nSELECT * FROM bids WHERE auction NOT IN (SELECT auction "
                             "FROM more);").job.outputs[0].plan
    assert plan.input.updating


small = st.lists(st.one_of(st.none(), st.integers(0, 4)), min_size=0, max_size=8)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(left=small, right=small, negated=st.booleans())
def test_in_null_semantics_match_duckdb(tmp_path_factory, duck, left, right, negated):
    root = tmp_path_factory.mktemp("nulls")
    pq.write_table(pa.table({"x": pa.array(left, pa.int64())}), root / "l.parquet")
    pq.write_table(pa.table({"y": pa.array(right, pa.int64())}), root / "r.parquet")
    ddl = (f"CREATE TABLE l WITH (connector = 'filesystem', path = '{root}/l.parquet');\n"
           f"CREATE TABLE r WITH (connector = 'filesystem', path = '{root}/r.parquet');")
    query = f"SELECT x FROM l WHERE x {'NOT ' if negated else ''}IN (SELECT y FROM r)"
    changes = run_changelog(ddl, query, root / "out", settings="SET updating_flush = '0';",
                            batch_rows=3)
    duck.register("l", pa.table({"x": pa.array(left, pa.int64())}))
    duck.register("r", pa.table({"y": pa.array(right, pa.int64())}))
    assert normalized_rows(fold(changes)) == normalized_rows(duck.sql(query).to_arrow_table())


@pytest.mark.parametrize("query,message", [
    ("SELECT * FROM bids WHERE price > 5 OR auction IN (SELECT auction FROM more)",
     "must be a condition of its own"),
    ("SELECT auction IN (SELECT auction FROM more) FROM bids",
     "only supported as a condition of WHERE"),
    ("SELECT * FROM bids b WHERE EXISTS (SELECT 1 FROM more m WHERE m.price > b.price)",
     "correlated without an equality"),
    ("SELECT * FROM bids WHERE (auction, bidder) NOT IN (SELECT auction, bidder FROM more)",
     "NOT IN with several columns"),
    ("SELECT * FROM bids WHERE auction IN (SELECT auction, bidder FROM more)",
     "1 value(s) compared with a subquery of 2 column(s)"),
])
def test_subquery_errors(files, query, message):
    ddl, _, _ = files
    with pytest.raises(PlanError) as err:
        compile_sql(f"{ddl}\n{query};")
    text = str(err.value)
    assert message in text and "line 3, column" in text
