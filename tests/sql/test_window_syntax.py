"""The window syntax Flink users paste: window table functions with named arguments and an
offset, legacy group windows (``GROUP BY TUMBLE(ts, size)`` with ``TUMBLE_START`` …),
cascading windows. First the examples of Flink's documentation ("Windowing TVF", "Window
Aggregation") with its Bid table and the results it prints; then random inputs against
DuckDB's batch answer (window bounds by floor arithmetic), at parallelism 1 and 2."""

from __future__ import annotations

import datetime as dt
import decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from caudal.errors import PlanError
from caudal.job import explain_sql
from tests.helpers import run_to_table
from tests.test_windows_vs_duckdb import DDL, S, write_input
from tests.windows_reference import assert_same_rows, duck_answer, make_events, rows_of, window_rows

# ---- Flink's documentation examples -------------------------------------------------------

BID_ROWS = [("08:05", "4.00", "C", "supplier1"), ("08:07", "2.00", "A", "supplier1"),
            ("08:09", "5.00", "D", "supplier2"), ("08:11", "3.00", "B", "supplier2"),
            ("08:13", "1.00", "E", "supplier1"), ("08:17", "6.00", "F", "supplier2")]
BID_DDL = ("CREATE TABLE Bid (bidtime TIMESTAMP, price DECIMAL(10, 2), item TEXT, "
           "supplier_id TEXT, WATERMARK FOR bidtime AS bidtime - INTERVAL '1' SECOND) "
           "WITH (connector = 'filesystem', path = '{path}', format = 'parquet');")


def _at(hhmm: str) -> dt.datetime:
    return dt.datetime(2020, 4, 15, int(hhmm[:2]), int(hhmm[3:]), tzinfo=dt.UTC)


def write_bid(path) -> str:
    """Flink's Bid table as a Parquet file in ``path``; its CREATE TABLE."""
    pq.write_table(pa.table({
        "bidtime": pa.array([_at(r[0]) for r in BID_ROWS], pa.timestamp("us", tz="UTC")),
        "price": pa.array([decimal.Decimal(r[1]) for r in BID_ROWS], pa.decimal128(10, 2)),
        "item": [r[2] for r in BID_ROWS], "supplier_id": [r[3] for r in BID_ROWS]}),
        path / "bid.parquet")
    return BID_DDL.format(path=path)


@pytest.fixture(scope="module")
def bid_ddl(tmp_path_factory) -> str:
    return write_bid(tmp_path_factory.mktemp("bid"))


#: (query as in Flink's docs, the rows they print: (start, end, sum))
FLINK_DOCS = {
    "tumble_offset": ("""SELECT window_start, window_end, SUM(price)
  FROM TABLE(
    TUMBLE(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '10' MINUTES, INTERVAL '1' MINUTES))
  GROUP BY window_start, window_end""",
                      [("08:01", "08:11", "11.00"), ("08:11", "08:21", "10.00")]),
    "tumble_named_offset": ("""SELECT window_start, window_end, SUM(price)
  FROM TABLE(
   TUMBLE(
     DATA => TABLE Bid,
     TIMECOL => DESCRIPTOR(bidtime),
     SIZE => INTERVAL '10' MINUTES,
     OFFSET => INTERVAL '1' MINUTES))
  GROUP BY window_start, window_end""",
                            [("08:01", "08:11", "11.00"), ("08:11", "08:21", "10.00")]),
    "tumble_named": ("""SELECT window_start, window_end, SUM(price)
  FROM TABLE(
   TUMBLE(
     DATA => TABLE Bid,
     TIMECOL => DESCRIPTOR(bidtime),
     SIZE => INTERVAL '10' MINUTES))
  GROUP BY window_start, window_end""",
                     [("08:00", "08:10", "11.00"), ("08:10", "08:20", "10.00")]),
    "hop_named": ("""SELECT window_start, window_end, SUM(price)
  FROM TABLE(
    HOP(
      DATA => TABLE Bid,
      TIMECOL => DESCRIPTOR(bidtime),
      SLIDE => INTERVAL '5' MINUTES,
      SIZE => INTERVAL '10' MINUTES))
  GROUP BY window_start, window_end""",
                  [("08:00", "08:10", "11.00"), ("08:05", "08:15", "15.00"),
                   ("08:10", "08:20", "10.00"), ("08:15", "08:25", "6.00")]),
    "cumulate_named": ("""SELECT window_start, window_end, SUM(price)
  FROM TABLE(
    CUMULATE(
      DATA => TABLE Bid,
      TIMECOL => DESCRIPTOR(bidtime),
      STEP => INTERVAL '2' MINUTES,
      SIZE => INTERVAL '10' MINUTES))
  GROUP BY window_start, window_end""",
                       [("08:00", "08:06", "4.00"), ("08:00", "08:08", "6.00"),
                        ("08:00", "08:10", "11.00"), ("08:10", "08:12", "3.00"),
                        ("08:10", "08:14", "4.00"), ("08:10", "08:16", "4.00"),
                        ("08:10", "08:18", "10.00"), ("08:10", "08:20", "10.00")]),
    "session_named": ("""SELECT window_start, window_end, SUM(price) AS total_price
  FROM TABLE(
    SESSION(DATA => TABLE Bid PARTITION BY supplier_id, TIMECOL => DESCRIPTOR(bidtime), GAP => INTERVAL '5' MINUTES))
  GROUP BY window_start, window_end, supplier_id""",
                      [("08:05", "08:12", "6.00"), ("08:13", "08:18", "1.00"),
                       ("08:09", "08:16", "8.00"), ("08:17", "08:22", "6.00")]),
}


def _flink_rows(got: pa.Table) -> list[tuple]:
    rows = []
    for r in got.to_pylist():
        start, end, total = list(r.values())[:3]
        rows.append((start.strftime("%H:%M"), end.strftime("%H:%M"), f"{total:.2f}"))
    return sorted(rows)


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("name", sorted(FLINK_DOCS))
def test_flink_documentation_examples(tmp_path, bid_ddl, name, parallelism):
    query, expected = FLINK_DOCS[name]
    got = run_to_table(bid_ddl, query, tmp_path / "out", parallelism)
    assert _flink_rows(got) == sorted(expected)


# ---- offsets against DuckDB ---------------------------------------------------------------


@pytest.fixture(scope="module")
def events():
    return make_events(3000, seed=21, span_ms=90_000, disorder_ms=1500)


def _shifted_rows(kind: str, size: int, slide: int, offset: int) -> str:
    """DuckDB rows with ws/we of windows aligned to the epoch + offset: the windows of the
    times shifted by -offset, shifted back."""
    shifted = (f"(SELECT * REPLACE (date_time - to_microseconds({offset}) AS date_time), "
               f"date_time AS original FROM bids)")
    rows = window_rows(kind, size, slide, table=shifted)
    return f"(SELECT * REPLACE (ws + {offset} AS ws, we + {offset} AS we) FROM {rows})"


OFFSETS = [
    ("tumble", "TUMBLE", "INTERVAL '10' SECOND, INTERVAL '3' SECOND", 10 * S, 0, 3 * S),
    ("tumble", "TUMBLE", "SIZE => INTERVAL '10' SECOND, OFFSET => INTERVAL '-14' SECOND",
     10 * S, 0, -14 * S),
    ("hop", "HOP", "INTERVAL '2' SECOND, INTERVAL '6' SECOND, INTERVAL '500' MILLISECOND",
     6 * S, 2 * S, S // 2),
    ("hop", "HOP", "SLIDE => INTERVAL '4' SECOND, SIZE => INTERVAL '8' SECOND, "
     "OFFSET => INTERVAL '-1' SECOND", 8 * S, 4 * S, -S),
    ("cumulate", "CUMULATE", "INTERVAL '2' SECOND, INTERVAL '8' SECOND, INTERVAL '5' SECOND",
     8 * S, 2 * S, 5 * S),
]


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("case", range(len(OFFSETS)), ids=[f"{o[0]}{i}"
                                                           for i, o in enumerate(OFFSETS)])
def test_window_offsets_match_duckdb(tmp_path, events, case, parallelism):
    kind, tvf, args, size, slide, offset = OFFSETS[case]
    path = write_input(events, tmp_path / "in", "parquet")
    named = "=>" in args
    source = ("DATA => TABLE bids, TIMECOL => DESCRIPTOR(date_time)" if named
              else "TABLE bids, DESCRIPTOR(date_time)")
    query = (f"SELECT window_start AS ws, window_end AS we, auction, count(*) AS n, "
             f"sum(price) AS total, max(channel) AS top FROM TABLE({tvf}({source}, {args})) "
             f"GROUP BY window_start, window_end, auction")
    got = run_to_table(DDL["parquet"].format(path=path), query, tmp_path / "out",
                       parallelism, batch_rows=200)
    want = duck_answer(events, f"SELECT ws, we, auction, count(*) AS n, sum(price) AS total, "
                         f"max(channel) AS top FROM {_shifted_rows(kind, size, slide, offset)} "
                         f"GROUP BY ALL")
    columns = ["ws", "we", "auction", "n", "total", "top"]
    want = want.set_column(0, "ws", want.column(0).cast(pa.int64()))
    want = want.set_column(1, "we", want.column(1).cast(pa.int64()))
    assert want.num_rows > 20
    assert_same_rows(rows_of(got, columns), rows_of(want, columns))


# ---- errors -------------------------------------------------------------------------------

BAD = [
    ("TUMBLE(DATA => TABLE bids, TIMECOL => DESCRIPTOR(date_time), WIDTH => INTERVAL '1' "
     "SECOND)", "no argument WIDTH", "SIZE =>"),
    ("TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '1' SECOND, "
     "SIZE => INTERVAL '2' SECOND)", "given twice", "SIZE"),
    ("SESSION(TABLE bids PARTITION BY auction, DESCRIPTOR(date_time), INTERVAL '1' SECOND, "
     "INTERVAL '1' SECOND)", "at most 1", "accepted"),
    ("HOP(DATA => TABLE bids, TIMECOL => DESCRIPTOR(date_time), SIZE => INTERVAL '4' SECOND)",
     "SLIDE is missing", "accepted"),
    ("TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '1' SECOND, auction)",
     "offset must be a constant INTERVAL", "INTERVAL"),
]


@pytest.mark.parametrize("call,message,hint", BAD)
def test_bad_arguments_are_refused_with_position(tmp_path, call, message, hint):
    sql = (f"{DDL['parquet'].format(path=tmp_path)}\nSELECT window_start, count(*) AS n "
           f"FROM TABLE({call}) GROUP BY window_start, window_end;")
    with pytest.raises(PlanError) as err:
        explain_sql(sql)
    assert message in err.value.message and hint in str(err.value), err.value
    assert err.value.line == 2 and err.value.col is not None


def test_offset_shows_in_the_plan(tmp_path):
    sql = (f"{DDL['parquet'].format(path=tmp_path)}\nSELECT window_start, count(*) AS n "
           f"FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '1' MINUTE, "
           f"INTERVAL '-45' SECOND)) GROUP BY window_start, window_end;")
    assert "tumble(1m, offset 15s)" in explain_sql(sql)


# ---- legacy group windows and cascading windows -------------------------------------------

#: Flink's docs: the cascading window aggregation of "Window Aggregation", verbatim (the
#: view keeps window_start and window_end: the outer TUMBLE's columns shadow them)
CASCADING_VIEW = """CREATE VIEW window1 AS
SELECT window_start, window_end, window_time as rowtime, SUM(price) as partial_price
  FROM TABLE(
    TUMBLE(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '5' MINUTES))
  GROUP BY supplier_id, window_start, window_end, window_time;"""
FLINK_CASCADES = {
    "cascading_tvf": (CASCADING_VIEW, """SELECT window_start, window_end, SUM(partial_price) as total_price
  FROM TABLE(
      TUMBLE(TABLE window1, DESCRIPTOR(rowtime), INTERVAL '10' MINUTES))
  GROUP BY window_start, window_end""", [("08:00", "08:10", "11.00"), ("08:10", "08:20", "10.00")]),
    # the same without renaming window_time: DESCRIPTOR(window_time) of the inner aggregate
    "cascading_unrenamed": (
        CASCADING_VIEW.replace("window_time as rowtime", "window_time"),
        """SELECT window_start, window_end, SUM(partial_price) as total_price
  FROM TABLE(
      TUMBLE(TABLE window1, DESCRIPTOR(window_time), INTERVAL '10' MINUTES))
  GROUP BY window_start, window_end""", [("08:00", "08:10", "11.00"), ("08:10", "08:20", "10.00")]),
    # GROUP BY the inner window's own bounds again: the same 5-minute windows
    "regroup_bounds": (CASCADING_VIEW, """SELECT window_start, window_end, SUM(partial_price)
  FROM window1 GROUP BY window_start, window_end""",
                       [("08:05", "08:10", "11.00"), ("08:10", "08:15", "4.00"),
                        ("08:15", "08:20", "6.00")]),
    # Flink's legacy group window example (Orders there, Bid here)
    "legacy_tumble": ("", """SELECT
  TUMBLE_START(bidtime, INTERVAL '10' MINUTE) AS wStart,
  TUMBLE_END(bidtime, INTERVAL '10' MINUTE) AS wEnd,
  SUM(price) FROM Bid
GROUP BY
  TUMBLE(bidtime, INTERVAL '10' MINUTE)""", [("08:00", "08:10", "11.00"),
                                           ("08:10", "08:20", "10.00")]),
    "legacy_hop": ("", """SELECT HOP_START(B.bidtime, INTERVAL '5' MINUTES, INTERVAL '10' MINUTES),
  HOP_END(B.bidtime, INTERVAL '5' MINUTES, INTERVAL '10' MINUTES), SUM(price)
FROM Bid B GROUP BY HOP(B.bidtime, INTERVAL '5' MINUTES, INTERVAL '10' MINUTES)""",
                   [("08:00", "08:10", "11.00"), ("08:05", "08:15", "15.00"),
                    ("08:10", "08:20", "10.00"), ("08:15", "08:25", "6.00")]),
    # cascading legacy windows through TUMBLE_ROWTIME (Flink's group window docs)
    "legacy_rowtime": ("""CREATE VIEW per_minute AS
SELECT TUMBLE_ROWTIME(bidtime, INTERVAL '1' MINUTE) AS rowtime, supplier_id,
       SUM(price) AS price
FROM Bid GROUP BY TUMBLE(bidtime, INTERVAL '1' MINUTE), supplier_id;""",
                       """SELECT TUMBLE_START(rowtime, INTERVAL '10' MINUTE),
  TUMBLE_END(rowtime, INTERVAL '10' MINUTE), SUM(price)
FROM per_minute GROUP BY TUMBLE(rowtime, INTERVAL '10' MINUTE)""",
                       [("08:00", "08:10", "11.00"), ("08:10", "08:20", "10.00")]),
}


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("name", sorted(FLINK_CASCADES))
def test_flink_cascading_and_group_window_examples(tmp_path, bid_ddl, name, parallelism):
    view, query, expected = FLINK_CASCADES[name]
    got = run_to_table(f"{bid_ddl}\n{view}", query, tmp_path / "out", parallelism)
    assert _flink_rows(got) == sorted(expected)
    assert "processing time" not in explain_sql(f"{bid_ddl}\n{view}\n{query};")


LEGACY = {
    "tumble": ("TUMBLE(date_time, INTERVAL '10' SECOND)", "tumble", (10 * S, 0)),
    "hop": ("HOP(date_time, INTERVAL '2' SECOND, INTERVAL '6' SECOND)", "hop", (6 * S, 2 * S)),
    "session": ("SESSION(date_time, INTERVAL '3' SECOND)", "session", (3 * S, 0)),
}


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("name", sorted(LEGACY))
def test_legacy_group_windows_match_duckdb(tmp_path, events, name, parallelism):
    from tests.windows_reference import session_rows

    call, kind, (size, slide) = LEGACY[name]
    prefix = call.split("(")[0]
    args = call[call.index("(") + 1:-1]
    path = write_input(events, tmp_path / "in", "parquet")
    query = (f"SELECT {prefix}_START({args}) AS ws, {prefix}_END({args}) AS we, "
             f"{prefix}_ROWTIME({args}) AS wt, auction, count(*) AS n, sum(price) AS total "
             f"FROM bids GROUP BY auction, {call}")
    got = run_to_table(DDL["parquet"].format(path=path), query, tmp_path / "out",
                       parallelism, batch_rows=200)
    rows = session_rows(size, ["auction"]) if kind == "session" else \
        window_rows(kind, size, slide)
    want = duck_answer(events, f"SELECT ws, we, we - 1 AS wt, auction, count(*) AS n, "
                               f"sum(price) AS total FROM {rows} GROUP BY ALL")
    columns = ["ws", "we", "wt", "auction", "n", "total"]
    for i in range(3):
        want = want.set_column(i, columns[i], want.column(i).cast(pa.int64()))
    assert want.num_rows >= 10
    assert_same_rows(rows_of(got, columns), rows_of(want, columns))


LEGACY_BAD = [
    ("SELECT TUMBLE_START(date_time, INTERVAL '5' SECOND) AS s, count(*) AS n FROM bids "
     "GROUP BY TUMBLE(date_time, INTERVAL '10' SECOND)", "must repeat the arguments",
     "TUMBLE_START(date_time, INTERVAL '10' SECOND)"),
    ("SELECT HOP_END(date_time, INTERVAL '10' SECOND) AS s, count(*) AS n FROM bids "
     "GROUP BY TUMBLE(date_time, INTERVAL '10' SECOND)", "must repeat the arguments",
     "TUMBLE_START"),
    ("SELECT TUMBLE_END(date_time, INTERVAL '10' SECOND) AS s, count(*) AS n FROM bids "
     "GROUP BY auction", "needs GROUP BY TUMBLE(ts", "same arguments"),
    ("SELECT count(*) AS n FROM bids GROUP BY TUMBLE(price, INTERVAL '10' SECOND)",
     "price is not the event time", "TUMBLE(date_time, …)"),
    ("SELECT count(*) AS n FROM (SELECT auction, count(*) AS c FROM bids GROUP BY auction) "
     "GROUP BY SESSION(c, INTERVAL '10' SECOND)", "without event time", "PROCTIME"),
]


@pytest.mark.parametrize("query,message,hint", LEGACY_BAD)
def test_bad_legacy_group_windows_are_refused(tmp_path, query, message, hint):
    with pytest.raises(PlanError) as err:
        explain_sql(f"{DDL['parquet'].format(path=tmp_path)}\n{query};")
    assert message in err.value.message and hint in str(err.value), err.value
    assert err.value.line == 2 and err.value.col is not None
