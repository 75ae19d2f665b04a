"""Updating (non-windowed) GROUP BY: the changelog a debezium_json sink receives folds to
DuckDB's batch answer, at parallelism 1 and 4, with flushes after every batch (the most
retractions) and at the end only."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from caudal.errors import PlanError
from caudal.job import compile_sql
from tests.changelog_helpers import fold, run_changelog
from tests.conftest import make_bids
from tests.helpers import normalized_rows

DDL = "CREATE TABLE bids WITH (connector = 'filesystem', path = '{path}');"

QUERIES = [
    # running aggregates per key
    "SELECT auction, count(*) AS n, max(price) AS mx, min(channel) AS mc, sum(price) AS s "
    "FROM bids GROUP BY auction",
    "SELECT channel, avg(price) AS a, count(DISTINCT bidder) AS d, stddev_samp(price) AS sd, "
    "bool_or(price > 9000) AS hi FROM bids GROUP BY channel",
    "SELECT auction % 7 AS g, count(price) FILTER (WHERE channel = 'apple') AS n, "
    "sum(DISTINCT price % 10) AS sd FROM bids GROUP BY auction % 7 HAVING count(*) > 600",
    "SELECT count(*) AS n, max(price) AS mx, avg(price) AS a FROM bids",
    # nested: an aggregate over an updating aggregate (retractable min/max/avg/distinct)
    "SELECT n, count(*) AS k, min(mx) AS lo, max(mx) AS hi, avg(mx) AS a, "
    "count(DISTINCT mx % 3) AS d, sum(mx) AS s FROM "
    "(SELECT auction, count(*) AS n, max(price) AS mx FROM bids GROUP BY auction) GROUP BY n",
    "SELECT count(*) AS groups, sum(n) AS total, var_pop(n) AS v FROM "
    "(SELECT bidder, count(*) AS n FROM bids WHERE price > 100 GROUP BY bidder)",
]


@pytest.fixture(scope="module")
def bids_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("bids") / "bids.parquet"
    table = make_bids(6000, seed=11)
    pq.write_table(table, path, row_group_size=500)
    return path, table


@pytest.mark.parametrize("parallelism,flush", [(1, "0"), (4, "0"), (4, "1s")])
@pytest.mark.parametrize("query", QUERIES)
def test_updating_aggregate_folds_to_duckdb(tmp_path, duck, bids_file, query, parallelism, flush):
    path, table = bids_file
    changes = run_changelog(DDL.format(path=path), query, tmp_path / "out",
                            parallelism=parallelism,
                            settings=f"SET updating_flush = '{flush}';", batch_rows=700)
    got = fold(changes)
    bids = table  # noqa: F841 - DuckDB reads the local variable by name
    expected = duck.sql(query).to_arrow_table()
    assert normalized_rows(got) == normalized_rows(expected)


def test_every_batch_flush_produces_retractions(tmp_path, bids_file):
    path, _ = bids_file
    changes = run_changelog(DDL.format(path=path),
                            "SELECT channel, count(*) AS n FROM bids GROUP BY channel",
                            tmp_path / "out", settings="SET updating_flush = '0';",
                            batch_rows=500)
    ops = set(changes.column("_op").to_pylist())
    assert ops == {1, -2, 2}
    assert len(fold(changes)) == 6


def test_updating_result_into_append_sink_is_refused(tmp_path, bids_file):
    path, _ = bids_file
    script = (DDL.format(path=path) + f"\nCREATE TABLE out WITH (connector = 'filesystem', "
              f"path = '{tmp_path}', format = 'parquet');\n"
              "INSERT INTO out SELECT channel, count(*) FROM bids GROUP BY channel;")
    with pytest.raises(PlanError) as err:
        compile_sql(script)
    text = str(err.value)
    assert "updating" in text and "debezium_json" in text and "line 3" in text


def test_window_aggregate_over_updating_input_is_refused(bids_file):
    path, _ = bids_file
    script = (DDL.format(path=path) + "\nSELECT count(*) FROM (SELECT auction, "
              "max(date_time) AS t FROM bids GROUP BY auction) GROUP BY tumble(INTERVAL "
              "'1' SECOND);")
    with pytest.raises(PlanError, match="updating input|event time|window"):
        compile_sql(script)


def test_order_dependent_aggregate_over_changelog_is_refused(bids_file):
    path, _ = bids_file
    script = (DDL.format(path=path) + "\nSELECT n, string_agg(channel, ',') FROM (SELECT "
              "channel, count(*) AS n FROM bids GROUP BY channel) GROUP BY n;")
    with pytest.raises(PlanError, match="order of rows") as err:
        compile_sql(script)
    assert err.value.line == 2


def test_ttl_and_flush_settings_reach_the_operator(bids_file):
    path, _ = bids_file
    script = ("SET updating_ttl = '1 hour';\nSET updating_flush = '250ms';\n" +
              DDL.format(path=path) + "\nSELECT auction, count(*) FROM bids GROUP BY auction;")
    graph = compile_sql(script).graph
    specs = [op for v in graph.vertices for op in v.operators
             if op.kind == "updating_aggregate"]
    assert specs[0].params["ttl_us"] == 3_600_000_000
    assert specs[0].params["flush_us"] == 250_000


def test_bad_setting_is_a_plan_error(bids_file):
    path, _ = bids_file
    script = "SET updating_flush = 'soon';\n" + DDL.format(path=path) + \
        "\nSELECT auction, count(*) FROM bids GROUP BY auction;"
    with pytest.raises(PlanError, match="updating_flush"):
        compile_sql(script)


def test_empty_global_aggregate_gives_one_row(tmp_path, duck):
    path = tmp_path / "empty.parquet"
    pq.write_table(make_bids(10).slice(0, 0), path)
    query = "SELECT count(*) AS n, sum(price) AS s FROM bids"
    got = fold(run_changelog(DDL.format(path=path), query, tmp_path / "out"))
    assert got.to_pylist() == [{"n": 0, "s": None}]
    assert isinstance(got, pa.Table)


def test_having_keeps_update_pairs_of_one_key(tmp_path, bids_file):
    """HAVING drops one half of some update pairs: the debezium lines never pair the
    before image of one key with the after image of another."""
    import json

    path, _ = bids_file
    run_changelog(DDL.format(path=path), "SELECT auction, count(*) AS n FROM bids "
                  "GROUP BY auction HAVING count(*) % 2 = 0", tmp_path / "out",
                  settings="SET updating_flush = '0';", batch_rows=300)
    lines = [json.loads(line) for f in sorted((tmp_path / "out").glob("*.json"))
             for line in f.read_text().splitlines()]
    kinds = {x["op"] for x in lines}
    assert {"c", "d"} <= kinds
    for x in lines:
        if x["op"] == "u":
            assert x["before"]["auction"] == x["after"]["auction"]


@pytest.mark.parametrize("parallelism", [1, 3])
def test_select_distinct_of_an_append_only_stream_only_appends(tmp_path, duck, bids_file,
                                                              parallelism):
    from tests.helpers import run_to_table

    path, table = bids_file
    query = "SELECT DISTINCT channel, auction % 5 AS m FROM bids WHERE price > 100"
    got = run_to_table(DDL.format(path=path), query, tmp_path / "out", parallelism,
                       batch_rows=500)
    bids = table  # noqa: F841
    assert normalized_rows(got) == normalized_rows(duck.sql(query).to_arrow_table())


def test_select_distinct_of_a_changelog(tmp_path, duck, bids_file):
    path, table = bids_file
    query = ("SELECT DISTINCT n % 4 AS r FROM (SELECT auction, count(*) AS n FROM bids "
             "GROUP BY auction)")
    got = fold(run_changelog(DDL.format(path=path), query, tmp_path / "out",
                             settings="SET updating_flush = '0';", batch_rows=400))
    bids = table  # noqa: F841
    assert normalized_rows(got) == normalized_rows(duck.sql(query).to_arrow_table())


def test_select_distinct_on_is_refused(bids_file):
    path, _ = bids_file
    with pytest.raises(PlanError, match="DISTINCT ON"):
        compile_sql(DDL.format(path=path) + "\nSELECT DISTINCT ON (channel) channel, price "
                    "FROM bids;")


def test_first_and_last_value_by_event_time(tmp_path, duck):
    import datetime as dt

    import numpy as np

    rng = np.random.default_rng(4)
    n = 3000
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    times = [base + dt.timedelta(milliseconds=int(i)) for i in rng.permutation(n) * 7]
    table = pa.table({"k": rng.integers(0, 30, n), "v": rng.integers(0, 1000, n),
                      "t": pa.array(times, pa.timestamp("us", tz="UTC"))})
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=400)
    ddl = (f"CREATE TABLE t WITH (connector = 'filesystem', path = '{path}', "
           f"event_time_field = 't');")
    query = "SELECT k, first_value(v) AS f, last_value(v) AS l FROM t GROUP BY k"
    got = fold(run_changelog(ddl, query, tmp_path / "out", parallelism=2,
                             settings="SET updating_flush = '0';", batch_rows=300))
    duck.register("rows", table)
    expected = duck.sql("SELECT k, arg_min(v, t) AS f, arg_max(v, t) AS l FROM rows "
                        "GROUP BY k").to_arrow_table()
    assert normalized_rows(got) == normalized_rows(expected)


@pytest.mark.parametrize("query,parallelism,two_phase", [
    (QUERIES[0], 4, True),     # count, max, min, sum per key: pre-aggregated before the shuffle
    (QUERIES[0], 1, False),    # one subtask: the edge moves whole batches, nothing to split
    (QUERIES[1], 4, False),    # count(DISTINCT): its state is the values, not a partial
    (QUERIES[3], 4, False),    # global: one subtask gets every row anyway
    (QUERIES[4], 4, True),     # the inner aggregate only: the outer one reads a changelog
])
def test_two_phase_only_where_partials_merge(bids_file, query, parallelism, two_phase):
    from caudal.job import explain_sql

    plan = explain_sql(DDL.format(path=bids_file[0]) + f"\nSELECT * FROM ({query});",
                       parallelism)
    assert ("local pre-aggregate by" in plan) == two_phase
    if two_phase:
        assert plan.count("local pre-aggregate by") == 1


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("query", [
    "SELECT k, count(*) AS n, max(v) AS mx, min(v) AS mn FROM u GROUP BY k",
    "SELECT k, count(v) AS n FROM u GROUP BY k",
])
def test_uint64_keys_and_values_above_int64(tmp_path, duck, query, parallelism):
    """UBIGINT values above 2^63 do not fit the int64 slots of the dense NumPy paths: they
    must take the hash path (before, max() of such a value per key came out as a small one)."""
    big = 2**63
    rng = __import__("random").Random(5)
    keys = [rng.choice([1, 2, 3, big + 7, big + 9]) for _ in range(3000)]
    vals = [rng.choice([0, 5, big - 1, big + 1, 2**64 - 1]) for _ in range(3000)]
    u = pa.table({"k": pa.array(keys, pa.uint64()), "v": pa.array(vals, pa.uint64())})
    path = tmp_path / "u.parquet"
    pq.write_table(u, path, row_group_size=400)
    ddl = f"CREATE TABLE u WITH (connector = 'filesystem', path = '{path}');"
    got = fold(run_changelog(ddl, query, tmp_path / "out", parallelism=parallelism,
                             settings="SET updating_flush = '0';", batch_rows=500))
    expected = duck.sql(query).to_arrow_table()
    assert normalized_rows(got) == normalized_rows(expected)


@pytest.mark.parametrize("parallelism,flush", [(1, "1s"), (2, "1s"), (3, "20ms"), (2, "0"),
                                               (3, "1s")])
@pytest.mark.parametrize("query", [
    # count/min/max of integers per integer key: the local stage holds the rows of many
    # batches in DensePartials arrays before it emits their partials
    "SELECT auction, count(*) AS n, count(bidder) AS c, min(bidder) AS lo, max(bidder) AS hi "
    "FROM bids GROUP BY auction",
    "SELECT bidder, count(*) AS n, max(auction) AS hi FROM bids GROUP BY bidder",
    # price has NULLs: those batches are pre-aggregated one by one, between held ones
    "SELECT auction, count(price) AS n, max(price) AS hi, min(bidder) AS lo FROM bids "
    "GROUP BY auction",
])
def test_held_local_partials_fold_to_duckdb(tmp_path, duck, bids_file, query, parallelism,
                                            flush):
    path, table = bids_file
    changes = run_changelog(DDL.format(path=path), query, tmp_path / "out",
                            parallelism=parallelism,
                            settings=f"SET updating_flush = '{flush}';", batch_rows=300)
    bids = table  # noqa: F841 - DuckDB reads the local variable by name
    assert normalized_rows(fold(changes)) == normalized_rows(duck.sql(query).to_arrow_table())
