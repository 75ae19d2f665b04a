"""What windowed queries must return, computed by DuckDB as ordinary batch SQL, and a row
comparison that tolerates float rounding and string_agg's unspecified order.

Window arithmetic in the reference is written out on microseconds (``epoch_us``), so it
checks caudal's window assignment instead of trusting a shared helper.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pyarrow as pa

BASE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
BASE_US = int(BASE.timestamp()) * 1_000_000


def make_events(n: int, seed: int, span_ms: int = 60_000, keys: int = 8,
                disorder_ms: int = 0, gaps: bool = True) -> pa.Table:
    """Rows with distinct millisecond event times (some exactly on second boundaries),
    nullable keys and values, arriving out of order by less than ``disorder_ms``."""
    rng = np.random.default_rng(seed)
    span = max(span_ms, n + 1)
    millis = np.sort(rng.choice(span, size=n, replace=False))
    if gaps and n > 10:  # a hole of several seconds: windows with no rows
        cut = span // 3
        millis = np.where(millis > cut, millis + 25_000, millis)
    arrival = millis + (rng.random(n) * disorder_ms if disorder_ms else 0)
    order = np.argsort(arrival, kind="stable")
    millis = millis[order]
    price = rng.integers(-50, 10_000, n)
    channel = np.array(["apple", "google", "facebook", "baidu", ""], dtype=object)[
        rng.integers(0, 5, n)]
    return pa.table({
        "auction": pa.array(rng.integers(0, keys, n), pa.int64(), mask=rng.random(n) < 0.05),
        "bidder": pa.array(rng.integers(0, 20, n), pa.int64(), mask=rng.random(n) < 0.05),
        "price": pa.array(price, pa.int64(), mask=rng.random(n) < 0.1),
        "channel": pa.array(channel, pa.string(), mask=rng.random(n) < 0.1),
        "date_time": pa.array((BASE_US + millis * 1000).astype(np.int64)).cast(
            pa.timestamp("us", tz="UTC")),
    })


#: (caudal aggregate, DuckDB aggregate) — every aggregate caudal computes in windows
AGGREGATES = [
    ("count(*)", "count(*)"),
    ("count(price)", "count(price)"),
    ("count(DISTINCT bidder)", "count(DISTINCT bidder)"),
    ("sum(price)", "sum(price)"),
    ("avg(price)", "avg(price)"),
    ("min(price)", "min(price)"),
    ("max(channel)", "max(channel)"),
    ("stddev(price)", "stddev_samp(price)"),
    ("stddev_pop(price)", "stddev_pop(price)"),
    ("variance(price)", "var_samp(price)"),
    ("var_pop(price)", "var_pop(price)"),
    ("bool_and(price > 2000)", "bool_and(price > 2000)"),
    ("bool_or(channel = 'apple')", "bool_or(channel = 'apple')"),
    ("first_value(price)", "arg_min(price, date_time) FILTER (WHERE price IS NOT NULL)"),
    ("last_value(channel)", "arg_max(channel, date_time) FILTER (WHERE channel IS NOT NULL)"),
    ("string_agg(channel, '|')", "string_agg(channel, '|')"),
    ("approx_count_distinct(bidder)", "count(DISTINCT bidder)"),
    ("count(*) FILTER (WHERE price > 5000)", "count(*) FILTER (WHERE price > 5000)"),
    ("sum(price) FILTER (WHERE channel <> 'apple')",
     "sum(price) FILTER (WHERE channel <> 'apple')"),
    ("sum(DISTINCT bidder)", "sum(DISTINCT bidder)"),
    ("max(price) - min(price) + count(*)", "max(price) - min(price) + count(*)"),
]
#: the output column of string_agg (compared as a multiset of parts)
STRING_AGG = {f"a{i}" for i, (c, _) in enumerate(AGGREGATES) if c.startswith("string_agg")}


def select_list(which: list[int] | None = None) -> tuple[str, str]:
    chosen = range(len(AGGREGATES)) if which is None else which
    ours = ", ".join(f"{AGGREGATES[i][0]} AS a{i}" for i in chosen)
    theirs = ", ".join(f"{AGGREGATES[i][1]} AS a{i}" for i in chosen)
    return ours, theirs


def window_rows(kind: str, size_us: int, slide_us: int = 0, table: str = "bids") -> str:
    """DuckDB: the rows of ``table`` with ``ws``/``we`` (µs) of every window they are in."""
    us = "epoch_us(date_time)"

    def floor(size: int) -> str:  # windows align to the epoch: floor, also before 1970
        return f"(floor({us} / {size})::BIGINT * {size})"

    if kind == "tumble":
        return f"(SELECT *, {floor(size_us)} AS ws, {floor(size_us)} + {size_us} AS we " \
               f"FROM {table})"
    k = size_us // slide_us
    pane_end = f"({floor(slide_us)} + {slide_us} + j * {slide_us})"
    if kind == "hop":  # starts every slide, each size long (the slide need not divide it)
        start = f"({floor(slide_us)} - j * {slide_us})"
        return f"(SELECT *, {start} AS ws, {start} + {size_us} AS we " \
               f"FROM {table}, range({-(-size_us // slide_us)}) r(j) " \
               f"WHERE {start} + {size_us} > {us})"
    assert kind == "cumulate"
    start = floor(size_us)
    return f"(SELECT *, {start} AS ws, {pane_end} AS we FROM {table}, range({k}) r(j) " \
           f"WHERE {pane_end} <= {start} + {size_us})"


def session_rows(gap_us: int, keys: list[str], table: str = "bids") -> str:
    """DuckDB: rows with ``ws``/``we`` of their session (rows within ``gap`` of the previous
    row of their key join its session: Flink merges windows that touch)."""
    part = f"PARTITION BY {', '.join(keys)}" if keys else ""
    us = "epoch_us(date_time)"
    return f"""(SELECT *, min(u) OVER (PARTITION BY {', '.join(keys + ['sid'])}) AS ws,
                       max(u) OVER (PARTITION BY {', '.join(keys + ['sid'])}) + {gap_us} AS we
        FROM (SELECT *, sum(new) OVER ({part} ORDER BY u, n ROWS UNBOUNDED PRECEDING) AS sid
              FROM (SELECT *, CASE WHEN u - lag(u) OVER ({part} ORDER BY u, n) <= {gap_us}
                                   THEN 0 ELSE 1 END AS new
                    FROM (SELECT *, {us} AS u, row_number() OVER (ORDER BY {us}) AS n
                          FROM {table}))))"""


def _sortable(v):
    if v is None:
        return (0, "")
    if isinstance(v, float):
        return (1, round(v, 3))
    return (1, v) if not isinstance(v, (list, tuple)) else (1, tuple(v))


def rows_of(table: pa.Table | None, columns: list[str]) -> list[tuple]:
    """Rows (timestamps as µs ints, string_agg results as sorted part lists), sorted."""
    if table is None or table.num_rows == 0:
        return []
    cols = []
    for name in columns:
        col = table.column(name)
        if pa.types.is_timestamp(col.type):
            col = col.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
        values = col.to_pylist()
        if name in STRING_AGG:
            values = [None if v is None else tuple(sorted(v.split("|"))) for v in values]
        cols.append(values)
    rows = list(zip(*cols))
    return sorted(rows, key=lambda r: tuple(_sortable(v) for v in r))


def assert_same_rows(got: list[tuple], want: list[tuple]) -> None:
    assert len(got) == len(want), f"{len(got)} rows, expected {len(want)}"
    for g, w in zip(got, want):
        for a, b in zip(g, w):
            if isinstance(a, float) or isinstance(b, float):
                assert a is not None and b is not None, (g, w)
                assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6), (g, w)
            else:
                assert a == b, (g, w)


def duck_answer(events: pa.Table, sql: str) -> pa.Table:
    """DuckDB's answer to ``sql`` over ``events`` registered as ``bids`` (UTC session)."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("bids", events)
    try:
        return con.sql(sql).to_arrow_table()
    finally:
        con.close()
