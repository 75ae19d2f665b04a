"""OVER aggregates: on event time over an append-only stream (every row once, with the
aggregates of its frame) and recomputed per partition over a changelog (folded), compared with
DuckDB's window functions at parallelism 1 and 4, with random inputs (hypothesis); late rows
are dropped and counted; planning errors name what is accepted."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caudal.errors import PlanError
from caudal.job import compile_sql
from caudal.operators.base import OperatorContext
from caudal.operators.over_aggregate import OverAggregate
from caudal.plan.aggregates import AggCall
from caudal.plan.over_nodes import Frame
from tests.changelog_helpers import fold, run_changelog
from tests.conftest import make_bids
from tests.helpers import normalized_rows, run_to_table

TS = pa.timestamp("us", tz="UTC")
BASE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DDL = ("CREATE TABLE bids WITH (connector = 'filesystem', path = '{path}', "
       "event_time_field = 'date_time');")


def _w(frame: str, partition: str = "PARTITION BY auction ") -> str:
    return f"OVER ({partition}ORDER BY date_time {frame})"


EVENT_TIME = [
    # Nexmark q6's frame: the last 10 rows and the current one
    "SELECT auction, price, date_time, avg(price) {w} AS a, count(*) {w} AS n, sum(price) {w} "
    "AS s, min(channel) {w} AS mc, max(price) {w} AS mx FROM bids".replace(
        "{w}", _w("ROWS BETWEEN 10 PRECEDING AND CURRENT ROW")),
    "SELECT bidder, date_time, sum(price) {w} AS s, min(price) {w} AS m, max(url) {w} AS mu, "
    "count(price) {w} AS c FROM bids".replace(
        "{w}", _w("ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW", "PARTITION BY bidder ")),
    "SELECT channel, date_time, count(price) {w} AS c, max(price) {w} AS m, avg(price) {w} "
    "AS a FROM bids".replace(
        "{w}", _w("RANGE BETWEEN INTERVAL '2' SECOND PRECEDING AND CURRENT ROW",
                  "PARTITION BY channel ")),
    # the SQL default frame, no PARTITION BY, and two windows (two chained operators)
    "SELECT date_time, price, sum(price) OVER (ORDER BY date_time) AS s, "
    "max(price) OVER (PARTITION BY auction % 4 ORDER BY date_time ROWS 2 PRECEDING) AS m "
    "FROM bids WHERE price > 5000",
]

UPDATING = [
    # OVER a GROUP BY (Nexmark q6's shape): any ORDER BY, rows recomputed per partition
    "SELECT auction % 5 AS g, n, s FROM (SELECT auction, n, sum(n) OVER (PARTITION BY "
    "auction % 5 ORDER BY n, auction ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS s FROM "
    "(SELECT auction, count(*) AS n FROM bids GROUP BY auction))",
    "SELECT auction, n, mx, lo, a FROM (SELECT auction, n, max(n) OVER (PARTITION BY "
    "auction % 3) AS mx, min(auction) OVER (PARTITION BY auction % 3 ORDER BY n RANGE "
    "BETWEEN 5 PRECEDING AND CURRENT ROW) AS lo, avg(n) OVER (ORDER BY t) AS a FROM "
    "(SELECT auction, count(*) AS n, max(date_time) AS t FROM bids GROUP BY auction))",
]


def _with_unique_times(table: pa.Table) -> pa.Table:
    """Distinct event times in file order, so ROWS frames have one answer."""
    times = [BASE + dt.timedelta(milliseconds=3 * i) for i in range(table.num_rows)]
    return table.set_column(table.column_names.index("date_time"), "date_time",
                            pa.array(times, TS))


@pytest.fixture(scope="module")
def bids_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("bids") / "bids.parquet"
    table = _with_unique_times(make_bids(4000, seed=3))
    pq.write_table(table, path, row_group_size=400)
    return path, table


@pytest.mark.parametrize("parallelism", [1, 4])
@pytest.mark.parametrize("query", EVENT_TIME)
def test_event_time_over_equals_duckdb(tmp_path, duck, bids_file, query, parallelism):
    path, table = bids_file
    got = run_to_table(DDL.format(path=path), query, tmp_path / "out", parallelism,
                       batch_rows=300)
    bids = table  # noqa: F841 - DuckDB reads the local variable by name
    assert normalized_rows(got) == normalized_rows(duck.sql(query).to_arrow_table())


@pytest.mark.parametrize("parallelism,flush", [(1, "0"), (4, "0"), (4, "1s")])
@pytest.mark.parametrize("query", UPDATING)
def test_over_a_changelog_folds_to_duckdb(tmp_path, duck, bids_file, query, parallelism,
                                          flush):
    path, table = bids_file
    changes = run_changelog(DDL.format(path=path), query, tmp_path / "out",
                            parallelism=parallelism,
                            settings=f"SET updating_flush = '{flush}';", batch_rows=300)
    bids = table  # noqa: F841
    assert normalized_rows(fold(changes)) == normalized_rows(duck.sql(query).to_arrow_table())


def test_result_keeps_event_time_for_a_window_above(tmp_path, duck, bids_file):
    path, table = bids_file
    inner = ("SELECT date_time, avg(price) OVER (PARTITION BY auction ORDER BY date_time "
             "ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS a FROM bids")
    got = run_to_table(DDL.format(path=path), f"SELECT max(a) AS m, count(*) AS n FROM "
                       f"({inner}) GROUP BY tumble(INTERVAL '1' SECOND)", tmp_path / "out", 2,
                       batch_rows=300)
    bids = table  # noqa: F841
    expected = duck.sql(f"SELECT max(a) AS m, count(*) AS n FROM ({inner}) "
                        f"GROUP BY time_bucket(INTERVAL 1 SECOND, date_time)").to_arrow_table()
    assert normalized_rows(got) == normalized_rows(expected)


@settings(max_examples=10, deadline=None)
@given(rows=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 400),
                               st.one_of(st.none(), st.integers(-20, 20))),
                     min_size=1, max_size=150),
       frame=st.sampled_from(["ROWS BETWEEN 3 PRECEDING AND CURRENT ROW",
                              "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW",
                              "RANGE BETWEEN INTERVAL '40' MILLISECOND PRECEDING AND "
                              "CURRENT ROW",
                              "RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW"]),
       parallelism=st.sampled_from([1, 4]))
def test_random_event_time_inputs(rows, frame, parallelism):
    """Random partitions and values; equal times (peers) only where they cannot change a
    ROWS result (times are unique per partition; RANGE frames take peers together)."""
    rows.sort(key=lambda r: r[1])
    ms = [r[1] for r in rows]
    if frame.startswith("ROWS"):
        ms = list(range(len(rows)))
    table = pa.table({
        "k": pa.array([r[0] for r in rows], pa.int64()),
        "v": pa.array([r[2] for r in rows], pa.int64()),
        "ts": pa.array([BASE + dt.timedelta(milliseconds=m) for m in ms], TS)})
    w = f"OVER (PARTITION BY k ORDER BY ts {frame})"
    query = (f"SELECT k, ts, v, sum(v) {w} AS s, count(*) {w} AS n, min(v) {w} AS lo, "
             f"max(v) {w} AS hi, avg(v) {w} AS a FROM t")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.parquet"
        pq.write_table(table, path, row_group_size=23)
        ddl = (f"CREATE TABLE t WITH (connector = 'filesystem', path = '{path}', "
               f"event_time_field = 'ts');")
        got = run_to_table(ddl, query, Path(tmp) / "out", parallelism, batch_rows=11)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("t", table)
    assert normalized_rows(got) == normalized_rows(con.sql(query).to_arrow_table())


def test_late_rows_are_dropped_and_counted():
    schema = pa.schema([("k", pa.int64()), ("v", pa.int64()), ("ts", TS)])
    out = schema.append(pa.field("s", pa.int64()))
    op = OverAggregate(["k"], [("ts", False, False)], Frame("rows", 1),
                       [AggCall("sum", ("v",), pa.int64())], schema, out, "ts")
    op.open(OperatorContext())

    def batch(k, v, ms):
        return pa.record_batch([pa.array(k), pa.array(v),
                                pa.array([BASE + dt.timedelta(milliseconds=m) for m in ms],
                                         TS)], schema=schema)

    assert op.process(batch([1, 1, 2], [1, 2, 3], [0, 10, 20])) == []
    wm = int((BASE + dt.timedelta(milliseconds=15)).timestamp() * 1e6)
    first = pa.Table.from_batches(op.on_watermark(wm))
    assert first.column("s").to_pylist() == [1, 3]  # released in time order, rows < 15ms
    op.process(batch([1, 2], [5, 7], [12, 30]))  # 12ms is late now
    assert op.ctx.metrics["late_rows"] == 1
    rest = pa.Table.from_batches(op.on_end())
    assert rest.column("s").to_pylist() == [3, 10]
    assert op.state_rows() == 0


@pytest.mark.parametrize("query,match,col", [
    ("SELECT avg(price) OVER (PARTITION BY auction ORDER BY price) FROM bids",
     "ordered by its event time column 'date_time' ascending", 55),
    ("SELECT avg(price) OVER (PARTITION BY auction ORDER BY date_time DESC) FROM bids",
     "ascending", 55),
    ("SELECT avg(price) OVER (PARTITION BY auction ORDER BY date_time ROWS BETWEEN 1 "
     "PRECEDING AND 1 FOLLOWING) FROM bids", "must end at CURRENT ROW", 8),
    ("SELECT sum(price) OVER (ORDER BY date_time RANGE BETWEEN 5 PRECEDING AND CURRENT ROW) "
     "FROM bids", "RANGE frame with an offset", 8),
    ("SELECT count(DISTINCT price) OVER (ORDER BY date_time) FROM bids", "DISTINCT", 8),
    ("SELECT stddev(price) OVER (ORDER BY date_time) FROM bids",
     "OVER aggregates: count, sum, avg, min, max", 8),
])
def test_planning_errors_say_what_is_accepted(bids_file, query, match, col):
    path, _ = bids_file
    with pytest.raises(PlanError, match=match) as err:
        compile_sql(DDL.format(path=path) + "\n" + query + ";")
    assert (err.value.line, err.value.col) == (2, col)
    assert err.value.hint


def test_without_event_time_the_error_says_how_to_declare_it(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"k": [1], "ts": pa.array([BASE], TS)}), path)
    with pytest.raises(PlanError, match="has none") as err:
        compile_sql(f"CREATE TABLE t WITH (connector = 'filesystem', path = '{path}');\n"
                    "SELECT count(*) OVER (ORDER BY ts ROWS 3 PRECEDING) FROM t;")
    assert "WATERMARK" in err.value.hint


@pytest.mark.parametrize("parallelism", [1, 2])
def test_min_max_over_ubigint_past_2_63(tmp_path, duck, parallelism):
    """min/max OVER of UBIGINT values past 2^63 equal DuckDB's: the frame kernel keyed
    them as int64 and failed with Arrow's 'not in range' (now ranked, as text is)."""
    big = 2**63 + 5
    table = pa.table({
        "auction": pa.array([1, 1, 1, 2, 2], pa.int64()),
        "u": pa.array([1, big, 7, big + 1, None], pa.uint64()),
        "date_time": pa.array([BASE + dt.timedelta(seconds=i) for i in range(5)], TS)})
    path = tmp_path / "u.parquet"
    pq.write_table(table, path)
    w = _w("ROWS BETWEEN 1 PRECEDING AND CURRENT ROW")
    query = (f"SELECT auction, date_time, max(u) {w} AS mx, min(u) {w} AS mn FROM bids")
    got = run_to_table(DDL.format(path=path), query, tmp_path / "out", parallelism)
    bids = table  # noqa: F841 - DuckDB reads the local variable by name
    want = duck.sql(query).to_arrow_table()
    assert normalized_rows(got) == normalized_rows(want)
