"""Every query shape of the SQL suite written once with the frame API gives the rows of the
same SQL run by caudal and of DuckDB's batch answer: stateless steps, the four window kinds,
updating aggregates, updating, window and interval joins, top-N (updating and per window),
``cd.sql`` over frames; at parallelism 1 and 2."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import caudal as cd
from caudal import col
from tests.changelog_helpers import fold, run_changelog
from tests.conftest import make_bids
from tests.helpers import normalized_rows

DDL = ("CREATE TABLE bids (auction BIGINT, bidder BIGINT, price BIGINT, channel TEXT, "
       "url TEXT, date_time TIMESTAMP, extra TEXT, WATERMARK FOR date_time AS date_time - "
       "INTERVAL '2' SECOND) WITH (connector = 'filesystem', path = '{path}', "
       "format = 'parquet');")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, pa.Table]:
    table = make_bids(3000, seed=7)
    path = tmp_path_factory.mktemp("frame") / "bids.parquet"
    pq.write_table(table, path, row_group_size=500)
    return path, table


@pytest.fixture(scope="module")
def duck_bids(data):
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    bids = data[1]  # noqa: F841  (read by DuckDB's replacement scan)
    con.execute("CREATE TABLE bids AS SELECT * FROM bids")
    con.execute("CREATE TABLE persons AS SELECT DISTINCT bidder AS id, "
                "'p' || CAST(bidder AS TEXT) AS name FROM bids WHERE bidder % 3 = 0")
    yield con
    con.close()


def bids(data):
    return cd.read_parquet(data[0], event_time="date_time", watermark_delay="2s")


def check(frame, sql_select: str, duck_query: str, data, duck_bids, tmp_path,
          parallelism: int = 1) -> None:
    """The frame's rows = the SQL's rows (caudal) = DuckDB's rows."""
    got = frame.collect(parallelism=parallelism)
    sql_rows = fold(run_changelog(DDL.format(path=data[0]), sql_select, tmp_path / "sql",
                                  parallelism=parallelism))
    want = duck_bids.sql(duck_query).to_arrow_table()
    columns = got.column_names
    assert normalized_rows(got) == normalized_rows(sql_rows, columns)
    assert normalized_rows(got) == normalized_rows(want.rename_columns(columns))
    assert got.num_rows > 0


def test_stateless_steps(data, duck_bids, tmp_path):
    f = (bids(data).filter(col("price") > 100, col("channel").is_not_null())
         .with_columns((col("price") * 2).alias("p2"), col("channel").upper())
         .select("auction", "p2", "channel", col("url").length().alias("n")))
    check(f, "SELECT auction, price * 2 AS p2, upper(channel) AS channel, length(url) AS n "
             "FROM bids WHERE price > 100 AND channel IS NOT NULL",
          "SELECT auction, price * 2, upper(channel), length(url) FROM bids "
          "WHERE price > 100 AND channel IS NOT NULL", data, duck_bids, tmp_path)


@pytest.mark.parametrize("parallelism", [1, 2])
def test_tumble_aggregates(data, duck_bids, tmp_path, parallelism):
    f = (bids(data).filter(col("price") > 1_000)
         .group_by("auction", cd.tumble("date_time", "10s"))
         .agg(cd.count().alias("bids"), col("price").max().alias("top"),
              col("price").sum().alias("total"), col("bidder").n_unique().alias("bidders"),
              col("price").mean().alias("avg")))
    check(f, "SELECT auction, window_start, window_end, count(*) AS bids, max(price) AS top, "
             "sum(price) AS total, count(DISTINCT bidder) AS bidders, avg(price) AS avg FROM "
             "TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) WHERE "
             "price > 1000 GROUP BY auction, window_start, window_end",
          "SELECT auction, time_bucket(INTERVAL 10 SECOND, date_time) AS ws, "
          "time_bucket(INTERVAL 10 SECOND, date_time) + INTERVAL 10 SECOND AS we, count(*), "
          "max(price), sum(price), count(DISTINCT bidder), avg(price) FROM bids "
          "WHERE price > 1000 GROUP BY ALL", data, duck_bids, tmp_path, parallelism)


def test_hop(data, duck_bids, tmp_path):
    f = (bids(data).group_by(cd.hop("date_time", size="10s", slide="5s"))
         .agg(cd.count().alias("n"), col("price").min().alias("low")))
    check(f, "SELECT window_start, window_end, count(*) AS n, min(price) AS low FROM "
             "TABLE(HOP(TABLE bids, DESCRIPTOR(date_time), INTERVAL '5' SECOND, "
             "INTERVAL '10' SECOND)) GROUP BY window_start, window_end",
          "WITH w AS (SELECT time_bucket(INTERVAL 5 SECOND, date_time) - INTERVAL 5 SECOND * "
          "k AS ws, price FROM bids, range(2) t(k)) SELECT ws, ws + INTERVAL 10 SECOND, "
          "count(*), min(price) FROM w GROUP BY ws", data, duck_bids, tmp_path)


def test_cumulate(data, duck_bids, tmp_path):
    f = (bids(data).group_by(cd.cumulate("date_time", size="20s", step="10s"))
         .agg(cd.count().alias("n")))
    check(f, "SELECT window_start, window_end, count(*) AS n FROM TABLE(CUMULATE(TABLE bids, "
             "DESCRIPTOR(date_time), INTERVAL '10' SECOND, INTERVAL '20' SECOND)) "
             "GROUP BY window_start, window_end",
          "WITH w AS (SELECT time_bucket(INTERVAL 20 SECOND, date_time) AS ws, "
          "time_bucket(INTERVAL 10 SECOND, date_time) + INTERVAL 10 SECOND AS e FROM bids) "
          "SELECT ws, ws + INTERVAL 10 SECOND * k, count(*) FROM w, range(1, 3) t(k) "
          "WHERE e <= ws + INTERVAL 10 SECOND * k GROUP BY ALL", data, duck_bids, tmp_path)


def test_session_per_key(data, duck_bids, tmp_path):
    f = (bids(data).filter(col("auction") < 1010)
         .group_by("auction", cd.session("date_time", "3s")).agg(cd.count().alias("n")))
    check(f, "SELECT auction, window_start, window_end, count(*) AS n FROM TABLE(SESSION("
             "TABLE bids PARTITION BY auction, DESCRIPTOR(date_time), INTERVAL '3' SECOND)) "
             "WHERE auction < 1010 GROUP BY auction, window_start, window_end",
          "WITH o AS (SELECT auction, date_time, CASE WHEN date_time - lag(date_time) OVER "
          "(PARTITION BY auction ORDER BY date_time) < INTERVAL 3 SECOND THEN 0 ELSE 1 END "
          "AS new FROM bids WHERE auction < 1010), s AS (SELECT *, sum(new) OVER (PARTITION "
          "BY auction ORDER BY date_time ROWS UNBOUNDED PRECEDING) AS sid FROM o) SELECT "
          "auction, min(date_time), max(date_time) + INTERVAL 3 SECOND, count(*) FROM s "
          "GROUP BY auction, sid", data, duck_bids, tmp_path)


@pytest.mark.parametrize("parallelism", [1, 2])
def test_updating_aggregate(data, duck_bids, tmp_path, parallelism):
    f = (bids(data).group_by("channel")
         .agg(cd.count().alias("n"), col("price").sum().alias("total"),
              col("price").max().alias("top")))
    check(f, "SELECT channel, count(*) AS n, sum(price) AS total, max(price) AS top FROM bids "
             "GROUP BY channel",
          "SELECT channel, count(*), sum(price), max(price) FROM bids GROUP BY channel",
          data, duck_bids, tmp_path, parallelism)


def test_updating_join(data, duck_bids, tmp_path):
    b = bids(data)
    persons = (b.filter(col("bidder") % 3 == 0).group_by(col("bidder").alias("id"))
               .agg(col("bidder").max().alias("m"))
               .select("id", cd.lit("p").concat(col("id").cast("TEXT")).alias("name")))
    f = b.select("auction", "bidder", "price").join(persons, left_on="bidder", right_on="id",
                                                    how="left")
    check(f, "SELECT b.auction, b.bidder, b.price, p.name FROM bids AS b LEFT JOIN (SELECT "
             "id, concat('p', CAST(id AS TEXT)) AS name FROM (SELECT bidder AS id, "
             "max(bidder) AS m FROM bids WHERE bidder % 3 = 0 GROUP BY bidder)) AS p "
             "ON b.bidder = p.id",
          "SELECT b.auction, b.bidder, b.price, p.name FROM bids b LEFT JOIN persons p "
          "ON b.bidder = p.id", data, duck_bids, tmp_path)


def test_window_join(data, duck_bids, tmp_path):
    b = bids(data)
    left = (b.group_by("auction", cd.tumble("date_time", "10s"))
            .agg(cd.count().alias("n")))
    right = (b.group_by("auction", cd.tumble("date_time", "10s"))
             .agg(col("price").max().alias("top")))
    f = left.join(right, on=["window_start", "window_end", "auction"])
    sub = ("SELECT auction, window_start, window_end, {agg} FROM TABLE(TUMBLE(TABLE bids, "
           "DESCRIPTOR(date_time), INTERVAL '10' SECOND)) GROUP BY auction, window_start, "
           "window_end")
    check(f, f"SELECT l.auction, l.window_start, l.window_end, l.n, r.top FROM "
             f"({sub.format(agg='count(*) AS n')}) l JOIN "
             f"({sub.format(agg='max(price) AS top')}) r ON l.window_start = r.window_start "
             f"AND l.window_end = r.window_end AND l.auction = r.auction",
          "SELECT auction, time_bucket(INTERVAL 10 SECOND, date_time) AS ws, "
          "time_bucket(INTERVAL 10 SECOND, date_time) + INTERVAL 10 SECOND, count(*), "
          "max(price) FROM bids GROUP BY ALL", data, duck_bids, tmp_path)


def test_interval_join(data, duck_bids, tmp_path):
    import datetime as dt

    b = bids(data).filter(col("auction") < 1030)
    cheap = b.filter(col("price") < 1000).select("auction", "date_time", "price")
    dear = b.filter(col("price") > 8_000).select("auction", "date_time", "price")
    f = cheap.join(dear, on="auction", where=col("date_time_right").is_between(
        col("date_time"), col("date_time") + cd.lit(dt.timedelta(seconds=5))))
    check(f, "SELECT c.auction, c.date_time, c.price, d.date_time AS date_time_right, d.price AS price_right "
             "FROM bids c JOIN bids d ON c.auction = d.auction AND d.date_time BETWEEN "
             "c.date_time AND c.date_time + INTERVAL '5' SECOND WHERE c.price < 1000 AND "
             "d.price > 8000 AND c.auction < 1030 AND d.auction < 1030",
          "SELECT c.auction, c.date_time, c.price, d.date_time, d.price FROM bids c JOIN "
          "bids d ON c.auction = d.auction AND d.date_time BETWEEN c.date_time AND "
          "c.date_time + INTERVAL 5 SECOND WHERE c.price < 1000 AND d.price > 8000 AND "
          "c.auction < 1030", data, duck_bids, tmp_path)


def test_updating_top_n(data, duck_bids, tmp_path):
    f = bids(data).filter(col("price").is_not_null()).select(
        "auction", "bidder", "price").top_k(2, by=["price", "bidder"], over="auction")
    check(f, "SELECT auction, bidder, price FROM (SELECT auction, bidder, price, ROW_NUMBER() "
             "OVER (PARTITION BY auction ORDER BY price DESC, bidder DESC) AS rn FROM bids "
             "WHERE price IS NOT NULL) WHERE rn <= 2",
          "SELECT auction, bidder, price FROM bids WHERE price IS NOT NULL QUALIFY "
          "row_number() OVER (PARTITION BY auction ORDER BY price DESC, bidder DESC) <= 2",
          data, duck_bids, tmp_path)


def test_window_top_n(data, duck_bids, tmp_path):
    per = (bids(data).group_by("auction", cd.tumble("date_time", "10s"))
           .agg(cd.count().alias("n")))
    f = per.top_k(3, by=["n", "auction"], over=["window_start", "window_end"])
    check(f, "SELECT auction, window_start, window_end, n FROM (SELECT *, ROW_NUMBER() OVER "
             "(PARTITION BY window_start, window_end ORDER BY n DESC, auction DESC) AS rn "
             "FROM (SELECT auction, window_start, window_end, count(*) AS n FROM "
             "TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) "
             "GROUP BY auction, window_start, window_end)) WHERE rn <= 3",
          "WITH c AS (SELECT auction, time_bucket(INTERVAL 10 SECOND, date_time) AS ws, "
          "count(*) AS n FROM bids GROUP BY ALL) SELECT auction, ws, ws + INTERVAL 10 SECOND, "
          "n FROM c QUALIFY row_number() OVER (PARTITION BY ws ORDER BY n DESC, "
          "auction DESC) <= 3", data, duck_bids, tmp_path)


def test_sql_over_frames(data, duck_bids, tmp_path):
    b = bids(data).filter(col("price") > 0)
    f = cd.sql("SELECT bidder, count(*) AS n FROM b GROUP BY bidder", b=b)
    check(f, "SELECT bidder, count(*) AS n FROM bids WHERE price > 0 GROUP BY bidder",
          "SELECT bidder, count(*) FROM bids WHERE price > 0 GROUP BY bidder",
          data, duck_bids, tmp_path)
    # a frame built on a cd.sql frame
    top = f.filter(col("n") > 8).select("bidder")
    assert sorted(top.collect().column("bidder").to_pylist()) == sorted(
        r[0] for r in duck_bids.sql("SELECT bidder FROM bids WHERE price > 0 GROUP BY "
                                        "bidder HAVING count(*) > 8").fetchall())


@pytest.mark.parametrize("how,word", [("semi", "IN"), ("anti", "NOT IN")])
def test_semi_and_anti_joins(data, duck_bids, tmp_path, how, word):
    b = bids(data)
    dear = b.filter(col("price") > 9_000).select("auction")
    f = b.select("auction", "bidder", "price").join(dear, on="auction", how=how)
    sub = "(SELECT auction FROM bids WHERE price > 9000 AND auction IS NOT NULL)"
    check(f, f"SELECT auction, bidder, price FROM bids WHERE auction {word} {sub}"
             + (" AND auction IS NOT NULL" if how == "anti" else ""),
          f"SELECT auction, bidder, price FROM bids WHERE auction {word} {sub}"
          + (" AND auction IS NOT NULL" if how == "anti" else ""),
          data, duck_bids, tmp_path, 2)


def test_unique_and_union(data, duck_bids, tmp_path):
    b = bids(data)
    f = (b.filter(col("price") > 9_000).select("channel", (col("auction") % 4).alias("a"))
         .union(b.filter(col("price") < 0).select("channel", (col("auction") % 4).alias("a")))
         .unique())
    query = ("SELECT DISTINCT * FROM (SELECT channel, auction % 4 AS a FROM bids WHERE price > "
             "9000 UNION ALL SELECT channel, auction % 4 AS a FROM bids WHERE price < 0)")
    check(f, query, query, data, duck_bids, tmp_path, 2)


def test_explode(tmp_path):
    import duckdb

    rows = [{"k": i, "xs": None if i % 7 == 0 else list(range(i % 4)), "s": f"r{i}"}
            for i in range(300)]
    f = cd.from_arrow(rows)
    got = f.explode("xs").collect(parallelism=2)
    assert got.column_names == ["k", "xs", "s"]
    sql = cd.sql("SELECT k, x AS xs, s FROM t CROSS JOIN UNNEST(t.xs) AS u(x)", t=f).collect()
    arrays = pa.Table.from_pylist(rows)  # noqa: F841 - read by DuckDB
    want = duckdb.sql("SELECT k, unnest(xs) AS xs, s FROM arrays").to_arrow_table()
    assert normalized_rows(got) == normalized_rows(sql) == normalized_rows(want)
    assert got.num_rows > 0


def test_over_aggregates(data, duck_bids, tmp_path):
    """Running aggregates per key in event-time order (the default frame: every row up to
    this one and its peers; a RANGE of 10 s)."""
    f = (bids(data).filter(col("auction") < 1020)
         .select("auction", "date_time", "price",
                 col("price").sum().over("auction", order_by="date_time", range="unbounded")
                 .alias("s"),
                 cd.count().over("auction", order_by="date_time", range="10s").alias("n")))
    window = "PARTITION BY auction ORDER BY date_time"
    query = ("SELECT auction, date_time, price, sum(price) OVER ({w}) AS s, count(*) OVER "
             "({w} RANGE BETWEEN INTERVAL {i} PRECEDING AND CURRENT ROW) AS n FROM bids "
             "WHERE auction < 1020")
    check(f, query.format(w=window, i="'10' SECOND"), query.format(w=window, i="10 SECOND"),
          data, duck_bids, tmp_path)
