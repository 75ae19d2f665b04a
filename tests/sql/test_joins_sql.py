"""Joins end to end: the changelog a debezium_json sink receives folds to DuckDB's batch
answer, for Nexmark q3 (updating join), q4 (interval join into nested updating aggregates),
q7 (windowed max joined back to the bids: the fused window max join), q8 (window join), outer joins with
counts, and interval joins over files — at parallelism 1 and 4."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from caudal.errors import PlanError
from caudal.job import compile_sql, run_sql
from tests.changelog_helpers import fold, run_changelog
from tests.conftest import REPO
from tests.helpers import normalized_rows, read_committed

EVENTS = 40_000
#: 2000 events per second of event time: 20 s, so 10-second windows close twice
NEXMARK = ("CREATE TABLE {name} WITH (connector = 'nexmark', table = '{name}', "
           f"events = '{EVENTS}', event_rate = '2000', pace = 'false', event_time_field = 'date_time');")
DDL = "\n".join(NEXMARK.format(name=n) for n in ("person", "auction", "bid"))


def _bench_query(name: str) -> tuple[str, str]:
    """(caudal SELECT, DuckDB SELECT) of a Nexmark query of the benchmark suite."""
    text = (REPO / "bench" / "nexmark" / f"{name}.sql").read_text()
    caudal = text[text.index("INSERT INTO results") + len("INSERT INTO results"):]
    duck = (REPO / "bench" / "nexmark" / "duckdb" / f"{name}.sql").read_text()
    return caudal.strip().rstrip(";"), duck.strip().rstrip(";")


@pytest.fixture(scope="module")
def nexmark(tmp_path_factory) -> dict[str, pa.Table]:
    """The three Nexmark tables, written by caudal itself, for DuckDB."""
    root = tmp_path_factory.mktemp("nexmark")
    tables = {}
    for name in ("person", "auction", "bid"):
        out = root / name
        out.mkdir()
        run_sql(f"{NEXMARK.format(name=name)}\nCREATE TABLE o WITH (connector = "
                f"'filesystem', path = '{out}', format = 'parquet');\n"
                f"INSERT INTO o SELECT * FROM {name};")
        tables[name] = read_committed(out)
    return tables


def _duck(duck, nexmark: dict[str, pa.Table], query: str) -> pa.Table:
    for name, table in nexmark.items():
        duck.register(name, table)
    return duck.sql(query).to_arrow_table()


@pytest.mark.parametrize("parallelism", [1, 4])
@pytest.mark.parametrize("name", ["q3", "q4", "q7", "q8"])
def test_nexmark_join_query_folds_to_duckdb(tmp_path, duck, nexmark, name, parallelism):
    query, duck_query = _bench_query(name)
    changes = run_changelog(DDL, query, tmp_path / "out", parallelism=parallelism,
                            settings="SET updating_flush = '0';", batch_rows=2000)
    got = fold(changes)
    expected = _duck(duck, nexmark, duck_query)
    assert expected.num_rows > 0
    assert normalized_rows(got) == normalized_rows(expected)


@pytest.mark.parametrize("name,kind", [("q3", "updating join"), ("q4", "interval join"),
                                       ("q7", "window max join"), ("q8", "window join")])
def test_nexmark_queries_pick_the_join_kind(name, kind):
    query, _ = _bench_query(name)
    graph = compile_sql(f"{DDL}\nCREATE TABLE o WITH (connector = 'blackhole');\n"
                        f"INSERT INTO o {query};").graph
    assert kind in [v.name for v in graph.vertices]


OUTER_QUERIES = [
    # updating joins of append-only inputs, with counts above them
    "SELECT p.id, count(a.id) AS n FROM person AS p LEFT JOIN auction AS a "
    "ON a.seller = p.id GROUP BY p.id",
    "SELECT p.state, a.category, count(*) AS n FROM person AS p FULL OUTER JOIN auction AS a "
    "ON a.seller = p.id AND a.reserve > p.id * 1000 GROUP BY p.state, a.category",
    "SELECT a.id, p.name FROM auction AS a RIGHT JOIN person AS p "
    "ON a.seller = p.id AND a.category = 12 WHERE p.state <> 'CA'",
    # joins of two updating aggregates
    "SELECT s.seller, s.n, b.bids FROM (SELECT seller, count(*) AS n FROM auction GROUP BY "
    "seller) AS s FULL JOIN (SELECT bidder, count(*) AS bids FROM bid GROUP BY bidder) AS b "
    "ON s.seller = b.bidder",
    "SELECT c.category, c.n, m.top FROM (SELECT category, count(*) AS n FROM auction GROUP BY "
    "category) AS c JOIN (SELECT category, max(reserve) AS top FROM auction GROUP BY "
    "category) AS m ON c.category = m.category",
]


@pytest.mark.parametrize("parallelism", [1, 4])
@pytest.mark.parametrize("query", OUTER_QUERIES)
def test_outer_and_updating_joins_fold_to_duckdb(tmp_path, duck, nexmark, query,
                                                  parallelism):
    changes = run_changelog(DDL, query, tmp_path / "out", parallelism=parallelism,
                            settings="SET updating_flush = '0';", batch_rows=1500)
    got = fold(changes)
    expected = _duck(duck, nexmark, query)
    assert normalized_rows(got) == normalized_rows(expected)


INTERVAL_QUERIES = [
    # bids within 300 ms after their auction started (explicit bounds both ways)
    "SELECT a.id, b.bidder, b.price FROM auction AS a JOIN bid AS b ON a.id = b.auction "
    "AND b.date_time BETWEEN a.date_time AND a.date_time + INTERVAL '300' MILLISECOND",
    "SELECT a.id, b.bidder FROM auction AS a, bid AS b WHERE a.id = b.auction "
    "AND a.date_time >= b.date_time - INTERVAL '0.1' SECOND AND a.date_time < b.date_time",
    # outer interval join: auctions without a bid in their first 100 ms are padded
    "SELECT a.id, b.price FROM auction AS a LEFT JOIN bid AS b ON a.id = b.auction "
    "AND b.date_time BETWEEN a.date_time AND a.date_time + INTERVAL '100' MILLISECOND",
]


@pytest.mark.parametrize("parallelism", [1, 4])
@pytest.mark.parametrize("query", INTERVAL_QUERIES)
def test_interval_joins_fold_to_duckdb(tmp_path, duck, nexmark, query, parallelism):
    graph = compile_sql(f"{DDL}\nCREATE TABLE o WITH (connector = 'blackhole');\n"
                        f"INSERT INTO o {query};").graph
    assert "interval join" in [v.name for v in graph.vertices]
    changes = run_changelog(DDL, query, tmp_path / "out", parallelism=parallelism,
                            batch_rows=1500)
    assert set(changes.column("_op").to_pylist()) == {1}  # append-only
    got = fold(changes)
    expected = _duck(duck, nexmark, query)
    assert expected.num_rows > 0
    assert normalized_rows(got) == normalized_rows(expected)


def test_interval_join_state_expires(tmp_path):
    """Rows leave the interval join's state as the watermark passes their deadline."""
    from caudal.operators.base import OperatorContext
    from caudal.operators.registry import create

    query = INTERVAL_QUERIES[0]
    graph = compile_sql(f"{DDL}\nCREATE TABLE o WITH (connector = 'blackhole');\n"
                        f"INSERT INTO o {query};").graph
    spec = next(op for v in graph.vertices for op in v.operators if op.kind == "interval_join")
    op = create(spec)
    op.open(OperatorContext())
    auction = spec.params["left_schema"]
    t0 = 1_767_225_600_000_000
    rows = pa.record_batch([pa.array([1, 2], pa.int64()),
                            pa.array([t0, t0 + 5_000_000], pa.timestamp("us", tz="UTC"))],
                           names=["id", "date_time"])
    rows = pa.RecordBatch.from_arrays([rows.column(n) if n in rows.schema.names else
                                       pa.nulls(2, f.type) for n, f in
                                       zip(auction.names, auction)], schema=auction)
    op.process(rows, 0)
    assert op.state_rows() == 2
    op.on_watermark(t0 + 2_500_000)  # auction 1 can no longer get a bid
    assert op.state_rows() == 1


def test_join_without_key_is_refused_unless_allowed(tmp_path):
    query = ("SELECT p.id, a.id FROM person AS p JOIN auction AS a ON p.id < a.seller")
    script = f"{DDL}\nCREATE TABLE o WITH (connector = 'blackhole');\nINSERT INTO o {query};"
    with pytest.raises(PlanError) as err:
        compile_sql(script)
    assert "equality key" in str(err.value) and "allow_unkeyed_join" in str(err.value)
    assert err.value.line == 5
    graph = compile_sql("SET allow_unkeyed_join = true;\n" + script).graph
    joins = [v for v in graph.vertices if v.name == "updating join"]
    assert joins and joins[0].parallelism == 1


def test_unkeyed_join_with_opt_in_matches_duckdb(tmp_path, duck):
    small = tmp_path / "small.parquet"
    pq.write_table(pa.table({"x": [1, 2, 3, 4], "t": ["a", "b", "c", "d"]}), small)
    big = tmp_path / "big.parquet"
    pq.write_table(pa.table({"y": list(range(10))}), big)
    ddl = (f"CREATE TABLE s WITH (connector = 'filesystem', path = '{small}');\n"
           f"CREATE TABLE b WITH (connector = 'filesystem', path = '{big}');")
    query = "SELECT s.t, b.y FROM s JOIN b ON s.x * 2 > b.y"
    got = fold(run_changelog(ddl, query, tmp_path / "out",
                             settings="SET allow_unkeyed_join = true;"))
    s = pq.read_table(small)  # noqa: F841
    b = pq.read_table(big)  # noqa: F841
    assert normalized_rows(got) == normalized_rows(duck.sql(query).to_arrow_table())


def test_window_join_of_an_updating_input_is_not_a_window_join(tmp_path):
    """A join whose input is a changelog is an updating join (and its sink must take one)."""
    query = ("SELECT a.seller, c.n FROM auction AS a JOIN (SELECT seller, count(*) AS n "
             "FROM auction GROUP BY seller) AS c ON a.seller = c.seller")
    script = (f"{DDL}\nCREATE TABLE o WITH (connector = 'filesystem', path = '{tmp_path}', "
              f"format = 'parquet');\nINSERT INTO o {query};")
    with pytest.raises(PlanError, match="updating"):
        compile_sql(script)


def test_using_and_comma_joins(tmp_path, duck, nexmark):
    query = ("SELECT a.id, b.price FROM auction AS a, bid AS b WHERE a.id = b.auction AND "
             "b.price > 50000000 AND a.category = 11")
    got = fold(run_changelog(DDL, query, tmp_path / "out"))
    assert normalized_rows(got) == normalized_rows(_duck(duck, nexmark, query))


def test_explain_shows_the_join(tmp_path):
    from caudal.job import explain_sql

    query, _ = _bench_query("q3")
    text = explain_sql(f"{DDL}\nCREATE TABLE o WITH (connector = 'blackhole');\n"
                       f"INSERT INTO o {query};")
    assert "UpdatingJoin INNER ON seller = id" in text
    assert "hash(seller)" in text and "hash(id)" in text


TIME_QUERIES = [
    # an interval join keeps a time attribute (its watermark held back): windows over it
    ("CREATE VIEW j AS SELECT a.id, a.date_time AS t, b.price FROM auction AS a JOIN bid AS b "
     "ON a.id = b.auction AND b.date_time BETWEEN a.date_time - INTERVAL '1' SECOND AND "
     "a.date_time + INTERVAL '1' SECOND;",
     "SELECT window_start, count(*) AS n, max(price) AS mx FROM TABLE(TUMBLE(TABLE j, "
     "DESCRIPTOR(t), INTERVAL '2' SECOND)) GROUP BY window_start, window_end",
     "WITH j AS (SELECT a.id, a.date_time AS t, b.price FROM auction AS a JOIN bid AS b ON "
     "a.id = b.auction AND b.date_time BETWEEN a.date_time - INTERVAL 1 SECOND AND "
     "a.date_time + INTERVAL 1 SECOND) SELECT to_timestamp(floor(epoch_us(t) / 2000000) * 2) "
     "AS window_start, count(*) AS n, max(price) AS mx FROM j GROUP BY 1"),
    # a window join of two window table functions (rows, not aggregates)
    ("",
     "SELECT p.id, a.id AS auction, p.window_start FROM TABLE(TUMBLE(TABLE person, "
     "DESCRIPTOR(date_time), INTERVAL '5' SECOND)) AS p JOIN TABLE(TUMBLE(TABLE auction, "
     "DESCRIPTOR(date_time), INTERVAL '5' SECOND)) AS a ON p.id = a.seller AND "
     "p.window_start = a.window_start AND p.window_end = a.window_end",
     "SELECT p.id, a.id AS auction, to_timestamp(floor(epoch_us(p.date_time) / 5000000) * 5) "
     "AS window_start FROM person AS p JOIN auction AS a ON p.id = a.seller AND "
     "floor(epoch_us(p.date_time) / 5000000) = floor(epoch_us(a.date_time) / 5000000)"),
    # a LEFT window join of two window aggregates: people with or without an auction
    ("",
     "SELECT P.id, P.starttime, A.seller FROM (SELECT id, window_start AS starttime, "
     "window_end AS endtime FROM TABLE(TUMBLE(TABLE person, DESCRIPTOR(date_time), INTERVAL "
     "'5' SECOND)) GROUP BY id, window_start, window_end) AS P LEFT JOIN (SELECT seller, "
     "window_start AS starttime, window_end AS endtime FROM TABLE(TUMBLE(TABLE auction, "
     "DESCRIPTOR(date_time), INTERVAL '5' SECOND)) GROUP BY seller, window_start, "
     "window_end) AS A ON P.id = A.seller AND P.starttime = A.starttime AND "
     "P.endtime = A.endtime",
     "WITH P AS (SELECT DISTINCT id, floor(epoch_us(date_time) / 5000000) AS w FROM person), "
     "A AS (SELECT DISTINCT seller, floor(epoch_us(date_time) / 5000000) AS w FROM auction) "
     "SELECT P.id, to_timestamp(P.w * 5) AS starttime, A.seller FROM P LEFT JOIN A ON "
     "P.id = A.seller AND P.w = A.w"),
]


@pytest.mark.parametrize("parallelism", [1, 4])
@pytest.mark.parametrize("view,query,duck_query", TIME_QUERIES)
def test_window_joins_and_windows_over_joins(tmp_path, duck, nexmark, view, query,
                                             duck_query, parallelism):
    changes = run_changelog(f"{DDL}\n{view}", query, tmp_path / "out",
                            parallelism=parallelism, batch_rows=1500)
    assert set(changes.column("_op").to_pylist()) == {1}
    got = fold(changes)
    expected = _duck(duck, nexmark, duck_query)
    assert expected.num_rows > 0
    assert normalized_rows(got) == normalized_rows(expected)
