"""The three queries of the engine comparison, in SQL for caudal, DuckDB and PyFlink (Bytewax
and Pathway have no SQL: bench/engines/bytewax_job.py and pathway_job.py write the same
queries in their own APIs), and how to fold each engine's output into rows comparable with
DuckDB's answer."""

from __future__ import annotations

#: name -> (what it is, the SELECT over ``bids`` in caudal's and Flink's SQL, DuckDB's SELECT)
QUERIES = {
    "filter": (
        "filter + projection",
        "SELECT auction, bidder, price, date_time FROM bids WHERE price > 1000",
        "SELECT auction, bidder, price, date_time FROM bids WHERE price > 1000",
    ),
    "tumble": (
        "count per auction per 10 s tumbling window",
        "SELECT auction, window_start, count(*) AS n FROM TABLE(TUMBLE(TABLE bids, "
        "DESCRIPTOR(date_time), INTERVAL '10' SECOND)) GROUP BY auction, window_start, "
        "window_end",
        "SELECT auction, time_bucket(INTERVAL 10 SECOND, date_time) AS window_start, "
        "count(*) AS n FROM bids GROUP BY ALL",
    ),
    "updating": (
        "updating count + max per auction",
        "SELECT auction, count(*) AS n, max(price) AS top FROM bids GROUP BY auction",
        "SELECT auction, count(*) AS n, max(price) AS top FROM bids GROUP BY auction",
    ),
}

#: the bids' columns, in the CSV's order
COLUMNS = {"auction": "BIGINT", "bidder": "BIGINT", "price": "BIGINT", "channel": "VARCHAR",
           "url": "VARCHAR", "date_time": "TIMESTAMP", "extra": "VARCHAR"}

#: name -> the answer's columns, in Flink's DDL (DuckDB reads the same list with TIMESTAMP)
OUT_COLUMNS = {
    "filter": "auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3)",
    "tumble": "auction BIGINT, window_start TIMESTAMP(3), n BIGINT",
    "updating": "auction BIGINT, n BIGINT, top BIGINT",
}
