"""Top-N and deduplication without a window: the changelog a debezium_json sink receives
folds to DuckDB's batch answer, at parallelism 1 and 4, flushing after every batch (the most
revisions) and once a second; random inputs with ties (hypothesis) compare what ties cannot
change; the rank is emitted only when selected; state stays bounded for append-only input."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caudal.errors import PlanError
from caudal.job import compile_sql
from caudal.operators.base import OperatorContext
from caudal.operators.updating_rank import UpdatingRank
from tests.changelog_helpers import fold, run_changelog
from tests.conftest import make_bids
from tests.helpers import normalized_rows

DDL = ("CREATE TABLE bids WITH (connector = 'filesystem', path = '{path}', "
       "event_time_field = 'date_time');")

QUERIES = [
    # q19-like: top 3 per auction, rank selected (ties broken by the unique id)
    "SELECT auction, bidder, price, id, rn FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY "
    "auction ORDER BY price DESC NULLS LAST, id) AS rn FROM bids) WHERE rn <= 3",
    # q18-like: the last bid per (bidder, auction group), rank not selected
    "SELECT auction, bidder, price, channel, date_time FROM (SELECT *, ROW_NUMBER() OVER "
    "(PARTITION BY bidder, auction % 3 ORDER BY date_time DESC, id DESC) AS rn FROM bids) "
    "WHERE rn = 1",
    # RANK and DENSE_RANK keep every peer: ties cannot change the result
    "SELECT channel, price, r FROM (SELECT channel, price, RANK() OVER (PARTITION BY channel "
    "ORDER BY price NULLS FIRST) AS r FROM bids) WHERE r < 6",
    "SELECT channel, price, r FROM (SELECT channel, price, DENSE_RANK() OVER (PARTITION BY "
    "channel ORDER BY price DESC NULLS LAST) AS r FROM bids) WHERE r <= 4 AND price > 100",
    # no PARTITION BY: one global top-N
    "SELECT price, id, rn FROM (SELECT price, id, ROW_NUMBER() OVER (ORDER BY price DESC "
    "NULLS LAST, id) AS rn FROM bids) WHERE rn < 6",
    # over a changelog (an updating GROUP BY): retracted rows leave, lower rows come back
    "SELECT auction, n, rn FROM (SELECT auction, n, ROW_NUMBER() OVER (PARTITION BY "
    "auction % 5 ORDER BY n DESC, auction) AS rn FROM (SELECT auction, count(*) AS n FROM "
    "bids GROUP BY auction)) WHERE rn <= 2",
]


def _table(n: int, seed: int) -> pa.Table:
    bids = make_bids(n, seed=seed)
    rng = np.random.default_rng(seed)
    return bids.append_column("id", pa.array(rng.permutation(n).astype(np.int64)))


@pytest.fixture(scope="module")
def bids_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("bids") / "bids.parquet"
    table = _table(4000, 7)
    pq.write_table(table, path, row_group_size=400)
    return path, table


@pytest.mark.parametrize("parallelism,flush", [(1, "0"), (4, "0"), (4, "1s")])
@pytest.mark.parametrize("query", QUERIES)
def test_top_n_folds_to_duckdb(tmp_path, duck, bids_file, query, parallelism, flush):
    path, table = bids_file
    changes = run_changelog(DDL.format(path=path), query, tmp_path / "out",
                            parallelism=parallelism,
                            settings=f"SET updating_flush = '{flush}';", batch_rows=300)
    bids = table  # noqa: F841 - DuckDB reads the local variable by name
    expected = duck.sql(query).to_arrow_table()
    assert normalized_rows(fold(changes)) == normalized_rows(expected)


@settings(max_examples=12, deadline=None)
@given(rows=st.lists(st.tuples(st.integers(0, 4), st.one_of(st.none(), st.integers(0, 6))),
                     min_size=1, max_size=120),
       limit=st.integers(1, 4),
       function=st.sampled_from(["ROW_NUMBER", "RANK", "DENSE_RANK"]),
       parallelism=st.sampled_from([1, 4]))
def test_random_inputs_with_ties(rows, limit, function, parallelism):
    """Heavy ties and NULLs: RANK / DENSE_RANK results are fully determined; for
    ROW_NUMBER, which tied row wins is not, but each partition's ranked values are."""
    table = pa.table({"k": pa.array([r[0] for r in rows], pa.int64()),
                      "v": pa.array([r[1] for r in rows], pa.int64())})
    inner = (f"SELECT k, v, {function}() OVER (PARTITION BY k ORDER BY v DESC NULLS LAST) "
             f"AS r FROM t")
    query = f"SELECT k, v, r FROM ({inner}) WHERE r <= {limit}"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.parquet"
        pq.write_table(table, path, row_group_size=17)
        ddl = f"CREATE TABLE t WITH (connector = 'filesystem', path = '{path}');"
        got = fold(run_changelog(ddl, query, Path(tmp) / "out", parallelism=parallelism,
                                 settings="SET updating_flush = '0';", batch_rows=9))
    con = duckdb.connect()
    con.register("t", table)
    expected = con.sql(query).to_arrow_table()
    assert normalized_rows(got) == normalized_rows(expected)


def test_dedup_emits_updates_of_one_key_and_no_rank_changes(tmp_path, bids_file):
    """q18's shape: the rank is not selected, so a new last bid is one update of its key
    (Debezium ``u`` with the same bidder and auction), and nothing else is emitted."""
    path, _ = bids_file
    query = ("SELECT bidder, auction, price FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY "
             "bidder, auction ORDER BY date_time DESC) AS rn FROM bids) WHERE rn <= 1")
    run_changelog(DDL.format(path=path), query, tmp_path / "out",
                  settings="SET updating_flush = '0';", batch_rows=200)
    lines = [json.loads(line) for f in sorted((tmp_path / "out").glob("*.json"))
             for line in f.read_text().splitlines()]
    kinds = {x["op"] for x in lines}
    assert kinds == {"c", "u"}
    for x in lines:
        if x["op"] == "u":
            assert (x["before"]["bidder"], x["before"]["auction"]) == \
                (x["after"]["bidder"], x["after"]["auction"])


def test_rank_selected_updates_by_position(tmp_path, bids_file):
    """With the rank selected, each change is an update of one (partition, rank) position —
    what an upsert sink keyed by partition and rank number needs."""
    path, _ = bids_file
    query = ("SELECT auction, price, id, rn FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY "
             "auction ORDER BY price DESC NULLS LAST, id) AS rn FROM bids) WHERE rn <= 3")
    run_changelog(DDL.format(path=path), query, tmp_path / "out",
                  settings="SET updating_flush = '0';", batch_rows=200)
    lines = [json.loads(line) for f in sorted((tmp_path / "out").glob("*.json"))
             for line in f.read_text().splitlines()]
    assert {x["op"] for x in lines} == {"c", "u"}
    for x in lines:
        if x["op"] == "u":
            assert (x["before"]["auction"], x["before"]["rn"]) == \
                (x["after"]["auction"], x["after"]["rn"])


def test_plan_shows_the_limit_and_drops_the_implied_filter(bids_file):
    path, _ = bids_file
    text = compile_sql(DDL.format(path=path) + "\nSELECT auction, price FROM (SELECT *, "
                       "ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC) AS rn "
                       "FROM bids) WHERE rn < 4 AND price > 10;").explain()
    assert "UpdatingRank row_number() AS __rank PARTITION BY auction" in text
    assert "keep <= 3 (rank not emitted)" in text
    assert "Filter (price > 10)" in text and "rn" not in text.split("Filter")[1][:30]
    assert "hash(auction)" in text


@pytest.mark.parametrize("query,match,col", [
    ("SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price) AS rn "
     "FROM bids)", "needs a bound on the rank", 26),
    ("SELECT * FROM (SELECT *, RANK() OVER (PARTITION BY auction) AS rn FROM bids) "
     "WHERE rn = 1", "needs ORDER BY", 26),
])
def test_planning_errors_say_what_is_accepted(bids_file, query, match, col):
    path, _ = bids_file
    with pytest.raises(PlanError, match=match) as err:
        compile_sql(DDL.format(path=path) + "\n" + query + ";")
    assert (err.value.line, err.value.col) == (2, col)
    assert "WHERE rn <= N" in str(err.value) or "ORDER BY" in str(err.value.hint)


def test_append_only_state_keeps_only_the_top_n():
    schema = pa.schema([("k", pa.int64()), ("v", pa.int64())])
    out_schema = schema.append(pa.field("__rank", pa.int64()))
    op = UpdatingRank(["k"], [("v", True, False)], "row_number", 3, schema, out_schema,
                      rank_used=False, flush_us=0)
    op.open(OperatorContext())
    rng = np.random.default_rng(0)
    for _ in range(50):
        op.process(pa.record_batch([pa.array(rng.integers(0, 20, 500)),
                                    pa.array(rng.integers(0, 10**6, 500))], schema=schema))
        assert op.state.size <= 3 * 20
    assert op.state.size == 60
