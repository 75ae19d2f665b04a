"""UNION ALL / UNION / INTERSECT / EXCEPT: the changelog a debezium_json sink receives folds
to DuckDB's batch answer, at parallelism 1 and 2, over append-only and updating inputs."""

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
from tests.helpers import normalized_rows, run_to_table

DDL = ("CREATE TABLE bids WITH (connector = 'filesystem', path = '{path}',\n"
       "                            event_time_field = 'date_time');\n"
       "CREATE TABLE more WITH (connector = 'filesystem', path = '{path2}',\n"
       "                            event_time_field = 'date_time');")

QUERIES = [
    # three inputs, type coercion by position (BIGINT meets DECIMAL, NULL takes a type)
    "SELECT auction, price FROM bids WHERE price > 9900 UNION ALL "
    "SELECT bidder, 1.5 FROM more WHERE bidder < 5 UNION ALL "
    "SELECT auction + 1, NULL FROM bids WHERE channel = 'apple' AND price < 0",
    # distinct union over append-only inputs (first occurrences)
    "SELECT channel, auction % 3 AS m FROM bids UNION SELECT channel, bidder % 4 FROM more",
    # mixed: UNION ALL under a UNION folds into it
    "SELECT channel FROM bids UNION ALL SELECT channel FROM more UNION SELECT 'zzz' FROM bids WHERE auction = 1000",
    # updating inputs: the union of changelogs is a changelog
    "SELECT auction, count(*) AS n FROM bids GROUP BY auction UNION ALL "
    "SELECT bidder, count(*) FROM more WHERE bidder < 50 GROUP BY bidder",
    # a distinct union of updating inputs retracts rows at their last copy
    "SELECT count(*) AS n FROM bids GROUP BY auction UNION "
    "SELECT count(*) FROM more GROUP BY auction",
    # inputs on one subtask (global aggregates) and on all of them, in one union
    "SELECT count(*) AS n, max(price) AS m FROM bids UNION ALL SELECT count(*), min(price) "
    "FROM more UNION ALL SELECT auction, price FROM bids WHERE price > 9990",
    # aggregate above a union
    "SELECT channel, count(*) AS n, sum(price) AS s FROM (SELECT channel, price FROM bids "
    "UNION ALL SELECT channel, price FROM more) GROUP BY channel",
    # NULLs match NULLs in INTERSECT / EXCEPT (channel has NULLs)
    "SELECT channel, auction FROM bids INTERSECT SELECT channel, auction FROM more "
    "WHERE price > 5000",
    "SELECT channel, auction % 10 AS a FROM bids EXCEPT SELECT channel, auction % 10 "
    "FROM more WHERE price > 200",
    "SELECT channel FROM bids WHERE price > 9000 EXCEPT SELECT channel FROM more "
    "WHERE bidder < 20 UNION SELECT 'x' FROM bids WHERE auction = 1000",
]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("sets")
    bids, more = make_bids(3000, seed=5), make_bids(2500, seed=6)
    pq.write_table(bids, root / "bids.parquet", row_group_size=400)
    pq.write_table(more, root / "more.parquet", row_group_size=300)
    return DDL.format(path=root / "bids.parquet", path2=root / "more.parquet"), bids, more


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("query", QUERIES)
def test_set_operation_folds_to_duckdb(tmp_path, duck, files, query, parallelism):
    ddl, bids, more = files
    changes = run_changelog(ddl, query, tmp_path / "out", parallelism=parallelism,
                            settings="SET updating_flush = '0';", batch_rows=500)
    duck.register("bids", bids)
    duck.register("more", more)
    expected = duck.sql(query).to_arrow_table()
    assert normalized_rows(fold(changes)) == normalized_rows(expected)


rows = st.lists(st.tuples(st.one_of(st.none(), st.integers(0, 3)),
                          st.sampled_from(["a", "b", None])), max_size=10)


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(left=rows, right=rows, op=st.sampled_from(["UNION", "UNION ALL", "INTERSECT",
                                                  "EXCEPT"]))
def test_set_operations_on_random_rows_match_duckdb(tmp_path_factory, duck, left, right, op):
    root = tmp_path_factory.mktemp("random")
    tables = {}
    for name, data in (("l", left), ("r", right)):
        tables[name] = pa.table({"x": pa.array([x for x, _ in data], pa.int64()),
                                 "s": pa.array([y for _, y in data], pa.string())})
        pq.write_table(tables[name], root / f"{name}.parquet")
        duck.register(name, tables[name])
    ddl = "\n".join(f"CREATE TABLE {n} WITH (connector = 'filesystem', "
                    f"path = '{root}/{n}.parquet');" for n in tables)
    query = f"SELECT x, s FROM l {op} SELECT x, s FROM r"
    changes = run_changelog(ddl, query, root / "out", settings="SET updating_flush = '0';",
                            batch_rows=3)
    assert normalized_rows(fold(changes)) == normalized_rows(duck.sql(query).to_arrow_table())


def test_union_of_append_inputs_only_appends(tmp_path, files):
    ddl, bids, more = files
    query = "SELECT channel FROM bids UNION SELECT channel FROM more"
    got = run_to_table(ddl, query, tmp_path / "out", parallelism=2)  # a parquet sink
    assert sorted(got.column("channel").to_pylist(), key=str) == sorted(
        set(bids.column("channel").to_pylist()) | set(more.column("channel").to_pylist()),
        key=str)


def test_union_keeps_event_time_for_windows(tmp_path, duck, files):
    ddl, bids, more = files
    query = ("SELECT window_start, count(*) AS n FROM TABLE(TUMBLE(TABLE u, "
             "DESCRIPTOR(date_time), INTERVAL '10' SECOND)) GROUP BY window_start, window_end")
    view = ("CREATE VIEW u AS SELECT auction, date_time FROM bids UNION ALL "
            "SELECT bidder, date_time FROM more;")
    got = run_to_table(ddl + "\n" + view, query, tmp_path / "out", parallelism=2)
    duck.register("bids", bids)
    duck.register("more", more)
    expected = duck.sql(
        "SELECT time_bucket(INTERVAL 10 SECOND, date_time) AS window_start, count(*) AS n "
        "FROM (SELECT date_time FROM bids UNION ALL SELECT date_time FROM more) GROUP BY 1"
    ).to_arrow_table()
    assert normalized_rows(got) == normalized_rows(expected)


@pytest.mark.parametrize("query,message", [
    ("SELECT auction, price FROM bids UNION ALL SELECT auction FROM more",
     "same number of columns"),
    ("SELECT auction FROM bids UNION ALL SELECT channel FROM more", "do not compare"),
    ("SELECT auction FROM bids INTERSECT ALL SELECT auction, price FROM more",
     "same number of columns"),
])
def test_set_operation_errors(files, query, message):
    ddl, _, _ = files
    with pytest.raises(PlanError) as err:
        compile_sql(f"{ddl}\n{query};")
    text = str(err.value)
    assert message in text and "line 5, column" in text


def test_text_literal_and_null_take_the_column_type_as_in_postgresql(files):
    ddl, _, _ = files
    plan = compile_sql(f"{ddl}\nSELECT auction, channel FROM bids UNION ALL "
                       f"SELECT '7', NULL FROM more;").job.outputs[0].plan
    assert [str(t) for t in plan.schema.types] == ["int64", "string"]
