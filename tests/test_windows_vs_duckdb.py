"""Windowed queries over bounded input give exactly DuckDB's batch answer: tumble, hop,
cumulate and session windows, Arroyo and Flink spellings, every aggregate, parallelism 1 and
4, Parquet and JSON sources; with empty windows, one-row windows, rows exactly on window
boundaries, NULL keys and values, and rows out of order by less than the watermark delay."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import run_to_table
from tests.windows_reference import (
    assert_same_rows,
    make_events,
    rows_of,
    select_list,
    session_rows,
    window_rows,
)

COLUMNS = "auction BIGINT, bidder BIGINT, price BIGINT, channel TEXT, date_time TIMESTAMP"
DELAY = "INTERVAL '2' SECOND"
DDL = {
    "parquet": f"CREATE TABLE bids ({COLUMNS}, WATERMARK FOR date_time AS date_time - {DELAY})"
               " WITH (connector = 'filesystem', path = '{path}', format = 'parquet');",
    "json": f"CREATE TABLE bids ({COLUMNS}, WATERMARK FOR date_time AS date_time - {DELAY})"
            " WITH (connector = 'filesystem', path = '{path}', format = 'json');",
}
S = 1_000_000


def write_input(table: pa.Table, directory: Path, fmt: str, files: int = 3) -> Path:
    """The rows in arrival order, split over several files (one partition each)."""
    directory.mkdir(parents=True, exist_ok=True)
    n = table.num_rows
    for i in range(files):
        part = table.slice(i * n // files, (i + 1) * n // files - i * n // files)
        if fmt == "parquet":
            pq.write_table(part, directory / f"part-{i}.parquet", row_group_size=97)
        else:
            with open(directory / f"part-{i}.json", "w") as f:
                for row in part.to_pylist():
                    if row["date_time"] is not None:
                        row["date_time"] = row["date_time"].isoformat()
                    f.write(json.dumps(row) + "\n")
    return directory


def queries(kind: str, style: str, keys: bool = True) -> tuple[str, str, list[str]]:
    """(caudal query, DuckDB query, compared columns) for one window kind and spelling."""
    ours, theirs = select_list()
    n_aggs = ours.count(" AS a")
    key, key_sql = (["auction"], "auction, ") if keys else ([], "")
    columns = ["ws", "we", *key] + [f"a{i}" for i in range(n_aggs)]
    windows = {"tumble": ("tumble(INTERVAL '10' SECOND)", "TUMBLE", "INTERVAL '10' SECOND",
                          window_rows("tumble", 10 * S)),
               "hop": ("hop(INTERVAL '2' SECOND, INTERVAL '6' SECOND)", "HOP",
                       "INTERVAL '2' SECOND, INTERVAL '6' SECOND",
                       window_rows("hop", 6 * S, 2 * S)),
               # a slide that does not divide the size (Arroyo's hop(40 min, 1 hour))
               "hop_unaligned": ("hop(INTERVAL '4' SECOND, INTERVAL '10' SECOND)", "HOP",
                                 "INTERVAL '4' SECOND, INTERVAL '10' SECOND",
                                 window_rows("hop", 10 * S, 4 * S)),
               "cumulate": (None, "CUMULATE", "INTERVAL '2' SECOND, INTERVAL '8' SECOND",
                            window_rows("cumulate", 8 * S, 2 * S)),
               "session": ("session(INTERVAL '3' SECOND)", "SESSION", "INTERVAL '3' SECOND",
                           session_rows(3 * S, key))}
    call, tvf, args, reference = windows[kind]
    group = ", ".join(["ws", "we", *key])
    duck = f"SELECT ws, we, {key_sql}{theirs} FROM {reference} GROUP BY {group}"
    if style == "arroyo":
        caudal = (f"SELECT w.start AS ws, w.\"end\" AS we, {key_sql}{ours}, {call} AS w "
                  f"FROM bids GROUP BY {key_sql}w")
    else:
        table = "TABLE bids PARTITION BY auction" if kind == "session" and keys else "TABLE bids"
        group = ", ".join(["window_start", "window_end", *key])
        caudal = (f"SELECT window_start AS ws, window_end AS we, {key_sql}{ours} FROM "
                  f"TABLE({tvf}({table}, DESCRIPTOR(date_time), {args})) GROUP BY {group}")
    return caudal, duck, columns


def check(tmp: Path, events: pa.Table, kind: str, style: str, fmt: str, parallelism: int,
          keys: bool = True, **runtime) -> None:
    path = write_input(events, tmp / "in", fmt)
    caudal, duck, columns = queries(kind, style, keys)
    got = run_to_table(DDL[fmt].format(path=path), caudal, tmp / "out", parallelism, **runtime)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("bids", events)
    want = con.sql(duck).to_arrow_table()
    con.close()
    want = want.rename_columns(columns)
    assert_same_rows(rows_of(got, columns), rows_of(want, columns))


CASES = [("tumble", "arroyo"), ("tumble", "flink"), ("hop", "flink"), ("hop", "arroyo"),
         ("hop_unaligned", "flink"), ("hop_unaligned", "arroyo"),
         ("cumulate", "flink"), ("session", "arroyo"), ("session", "flink")]


@pytest.mark.parametrize("fmt", ["parquet", "json"])
@pytest.mark.parametrize("parallelism", [1, 4])
@pytest.mark.parametrize("kind,style", CASES)
def test_every_aggregate_matches_duckdb(tmp_path, kind, style, fmt, parallelism):
    events = make_events(1500, seed=len(kind) + parallelism, disorder_ms=1900)
    check(tmp_path, events, kind, style, fmt, parallelism)


@pytest.mark.parametrize("kind,style", [("tumble", "arroyo"), ("hop", "flink"),
                                        ("session", "flink")])
def test_global_window_without_keys(tmp_path, kind, style):
    check(tmp_path, make_events(800, seed=5, disorder_ms=500), kind, style, "parquet", 4,
          keys=False)


def test_sparse_rows_make_one_row_windows(tmp_path):
    """A handful of rows far apart: every window holds one row; most windows are empty."""
    events = make_events(12, seed=9, span_ms=600_000, gaps=False)
    for kind, style in [("tumble", "flink"), ("hop", "flink"), ("session", "arroyo")]:
        check(tmp_path / kind, events, kind, style, "parquet", 2)


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(0, 400), seed=st.integers(0, 1000), keys=st.integers(1, 6),
       span_s=st.integers(1, 90), disorder_ms=st.integers(0, 1999),
       case=st.sampled_from(CASES), parallelism=st.sampled_from([1, 2, 4]))
def test_random_inputs_match_duckdb(tmp_path_factory, n, seed, keys, span_s, disorder_ms,
                                    case, parallelism):
    tmp = tmp_path_factory.mktemp("w")
    events = make_events(n, seed, span_ms=span_s * 1000, keys=keys, disorder_ms=disorder_ms)
    check(tmp, events, case[0], case[1], "parquet", parallelism)


def test_cascading_windows_over_window_time(tmp_path):
    """A window aggregate over the results of another (Flink's cascading windows): the
    inner window's ``window_time`` is the outer one's event time, and no row is late."""
    events = make_events(3000, seed=1, span_ms=180_000, disorder_ms=500)
    path = write_input(events, tmp_path / "in", "parquet")
    ddl = DDL["parquet"].format(path=path) + """
CREATE VIEW per10 AS SELECT window_time AS rowtime, auction, count(*) AS num
FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
GROUP BY window_start, window_end, window_time, auction;"""
    got = run_to_table(ddl, "SELECT window_start AS ws, auction, sum(num) AS total, "
                            "count(*) AS windows FROM TABLE(TUMBLE(TABLE per10, "
                            "DESCRIPTOR(rowtime), INTERVAL '1' MINUTE)) "
                            "GROUP BY window_start, window_end, auction",
                       tmp_path / "out", 2)
    con = duckdb.connect()
    con.register("bids", events)
    want = con.sql(f"SELECT ws, auction, count(*), count(DISTINCT epoch_us(date_time) "
                   f"// {10 * S}) FROM {window_rows('tumble', 60 * S)} GROUP BY ALL"
                   ).to_arrow_table().rename_columns(["ws", "auction", "total", "windows"])
    columns = ["ws", "auction", "total", "windows"]
    assert_same_rows(rows_of(got, columns), rows_of(want, columns))


TOP_N = {
    # Flink: window aggregate, then ROW_NUMBER per window
    "aggregate": ("""SELECT * FROM (
        SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end
                                     ORDER BY num DESC, auction) AS rn
        FROM (SELECT window_start, window_end, auction, count(*) AS num
              FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
              GROUP BY window_start, window_end, auction)) WHERE rn <= 3""",
                  ["window_start", "auction", "num", "rn"]),
    # Arroyo: the window struct in PARTITION BY, RANK with ties
    "struct": ("""SELECT w.start AS window_start, auction, num, r FROM (
        SELECT *, RANK() OVER (PARTITION BY w ORDER BY num DESC) AS r
        FROM (SELECT auction, count(*) AS num, hop(INTERVAL '5' SECOND, INTERVAL '10' SECOND)
              AS w FROM bids GROUP BY auction, w)) WHERE r <= 2""",
               ["window_start", "auction", "num", "r"]),
    # Flink: top rows of each window straight from the table function
    "rows": ("""SELECT window_start, price, bidder, n FROM (
        SELECT *, DENSE_RANK() OVER (PARTITION BY window_start, window_end
                                     ORDER BY price DESC) AS n
        FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '10' SECOND)))
        WHERE n <= 2""", ["window_start", "price", "n"]),
}
TOP_N_DUCK = {
    "aggregate": """SELECT * FROM (SELECT ws AS window_start, auction, num, ROW_NUMBER() OVER
        (PARTITION BY ws ORDER BY num DESC, auction NULLS LAST) AS rn FROM (SELECT ws, auction,
        count(*) AS num FROM {tumble} GROUP BY ALL)) WHERE rn <= 3""",
    "struct": """SELECT * FROM (SELECT ws AS window_start, auction, num, RANK() OVER
        (PARTITION BY ws ORDER BY num DESC) AS r FROM (SELECT ws, auction, count(*) AS num
        FROM {hop} GROUP BY ALL)) WHERE r <= 2""",
    "rows": """SELECT * FROM (SELECT ws AS window_start, price, DENSE_RANK() OVER
        (PARTITION BY ws ORDER BY price DESC NULLS FIRST) AS n FROM {tumble}) WHERE n <= 2""",
}


@pytest.mark.parametrize("parallelism", [1, 4])
@pytest.mark.parametrize("name", sorted(TOP_N))
def test_top_n_per_window_matches_duckdb(tmp_path, name, parallelism):
    events = make_events(2000, seed=3, disorder_ms=1500)
    path = write_input(events, tmp_path / "in", "parquet")
    query, columns = TOP_N[name]
    got = run_to_table(DDL["parquet"].format(path=path), query, tmp_path / "out", parallelism)
    con = duckdb.connect()
    con.register("bids", events)
    sql = TOP_N_DUCK[name].format(tumble=window_rows("tumble", 10 * S),
                                  hop=window_rows("hop", 10 * S, 5 * S))
    want = con.sql(sql).to_arrow_table()
    want = want.set_column(0, "window_start", want.column(0).cast(pa.int64()))
    assert_same_rows(rows_of(got, columns), rows_of(want, columns))


def test_event_time_from_with_options_for_a_table_without_ddl(tmp_path):
    """``event_time_field`` and ``watermark_delay`` in WITH, for a table whose columns come
    from its Parquet files."""
    events = make_events(1000, seed=4, disorder_ms=900)
    path = write_input(events, tmp_path / "in", "parquet")
    ddl = (f"CREATE TABLE bids WITH (connector = 'filesystem', path = '{path}', "
           f"event_time_field = 'date_time', watermark_delay = '1s');")
    caudal, duck, columns = queries("hop", "flink")
    got = run_to_table(ddl, caudal, tmp_path / "out", 2, batch_rows=50)
    con = duckdb.connect()
    con.register("bids", events)
    want = con.sql(duck).to_arrow_table().rename_columns(columns)
    assert_same_rows(rows_of(got, columns), rows_of(want, columns))
