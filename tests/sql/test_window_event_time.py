"""A window aggregate's output keeps an event time: its window's end minus 1 µs (Flink's
``window_time``, Arroyo's ``_timestamp`` of a window), so a window over it is an event-time
window again, with the batch answer (DuckDB) at parallelism 1 and 2. Where the event time
cannot be carried (an updating aggregate's output, a projection that dropped every time
column) a window over it is refused, never silently put on processing time."""

from __future__ import annotations

import pytest

from caudal.errors import PlanError
from caudal.job import explain_sql
from tests.helpers import run_to_table
from tests.test_windows_vs_duckdb import DDL, S, write_input
from tests.windows_reference import assert_same_rows, duck_answer, make_events, rows_of


@pytest.fixture(scope="module")
def events():
    # 6 minutes of events, out of order by up to 1.5 s (the watermark delay is 2 s)
    return make_events(4000, seed=11, span_ms=360_000, disorder_ms=1500)


#: per 10 s and auction, then per minute (Arroyo: the inner window is a struct column)
ARROYO_VIEW = ("CREATE VIEW per10 AS SELECT auction, count(*) AS n, max(price) AS top, "
               "tumble(INTERVAL '10' SECOND) AS window FROM bids GROUP BY auction, window;")
ARROYO_OUTER = ("SELECT w.start AS ws, count(*) AS groups, sum(n) AS total, max(top) AS top, "
                "tumble(INTERVAL '1' MINUTE) AS w FROM per10 GROUP BY w")
DUCK_OUTER = (f"WITH inner_ AS (SELECT auction, count(*) AS n, max(price) AS top, "
              f"floor(epoch_us(date_time) / {10 * S})::BIGINT AS p FROM bids GROUP BY ALL) "
              f"SELECT (floor(((p + 1) * {10 * S} - 1) / {60 * S})::BIGINT * {60 * S}) AS ws, "
              f"count(*) AS groups, sum(n) AS total, max(top) AS top FROM inner_ GROUP BY ws")
COLUMNS = ["ws", "groups", "total", "top"]

OUTER_CASES = {
    # Arroyo: tumble() over a view that is a tumble() aggregate
    "arroyo": (ARROYO_VIEW, ARROYO_OUTER),
    # the view keeps only window_end of a Flink window: its rows' time is window_end - 1 µs
    "flink_end": ("CREATE VIEW per10 AS SELECT window_end AS e, auction, count(*) AS n, "
                  "max(price) AS top FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), "
                  "INTERVAL '10' SECOND)) GROUP BY window_start, window_end, auction;",
                  ARROYO_OUTER),
    # Flink's cascading windows: DESCRIPTOR(window_time) of the inner aggregate
    "flink_tvf": ("CREATE VIEW per10 AS SELECT window_time AS rowtime, auction, count(*) AS n, "
                  "max(price) AS top FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), "
                  "INTERVAL '10' SECOND)) GROUP BY window_start, window_end, window_time, "
                  "auction;",
                  "SELECT window_start AS ws, count(*) AS groups, sum(n) AS total, "
                  "max(top) AS top FROM TABLE(TUMBLE(TABLE per10, DESCRIPTOR(rowtime), "
                  "INTERVAL '1' MINUTE)) GROUP BY window_start, window_end"),
}


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("case", sorted(OUTER_CASES))
def test_window_over_a_window_aggregate_is_on_event_time(tmp_path, events, case,
                                                         parallelism):
    view, outer = OUTER_CASES[case]
    path = write_input(events, tmp_path / "in", "parquet")
    ddl = DDL["parquet"].format(path=path) + "\n" + view
    plan = explain_sql(f"{ddl}\n{outer};")
    assert "processing time" not in plan and "arrival time" not in plan, plan
    got = run_to_table(ddl, outer, tmp_path / "out", parallelism, batch_rows=300)
    want = duck_answer(events, DUCK_OUTER)
    assert want.num_rows >= 6
    assert_same_rows(rows_of(got, COLUMNS), rows_of(want, COLUMNS))


REFUSED = {
    # an updating aggregate's rows have no event time
    "updating": ("CREATE VIEW totals AS SELECT auction, count(*) AS n FROM bids "
                 "GROUP BY auction;",
                 "SELECT count(*) AS c, tumble(INTERVAL '1' MINUTE) AS w FROM totals "
                 "GROUP BY w", "updating"),
    # the view drops its window: nothing left to carry the event time
    "dropped": ("CREATE VIEW per10 AS SELECT auction, count(*) AS n FROM bids "
                "GROUP BY auction, tumble(INTERVAL '10' SECOND);",
                "SELECT count(*) AS c, tumble(INTERVAL '1' MINUTE) AS w FROM per10 "
                "GROUP BY w", "dropped"),
    "dropped_tvf": ("CREATE VIEW p AS SELECT auction, price FROM bids;",
                    "SELECT window_start, count(*) AS c FROM TABLE(TUMBLE(TABLE p, "
                    "DESCRIPTOR(price), INTERVAL '1' MINUTE)) GROUP BY window_start, "
                    "window_end", "event time"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_window_that_lost_its_event_time_is_refused(tmp_path, case):
    view, outer, word = REFUSED[case]
    ddl = DDL["parquet"].format(path=tmp_path) + "\n" + view
    with pytest.raises(PlanError) as err:
        explain_sql(f"{ddl}\n{outer};")
    text = str(err.value)
    assert word in text and "line" in text, text
    assert "\n" not in text.strip()


def test_a_table_without_event_time_still_gets_processing_time(tmp_path):
    ddl = ("CREATE TABLE t (k BIGINT, v BIGINT) WITH (connector = 'filesystem', "
           f"path = '{tmp_path}', format = 'parquet');")
    plan = explain_sql(f"{ddl}\nSELECT k, count(*) AS c, tumble(INTERVAL '1' SECOND) AS w "
                       "FROM t GROUP BY k, w;")
    assert "processing time" in plan


def test_a_window_alias_shadowed_by_an_input_column_is_explained(tmp_path):
    """``GROUP BY window`` over a view with a ``window`` column groups by that column: the
    ``tumble(…) AS window`` in SELECT is then not grouped by, and the error says why."""
    ddl = DDL["parquet"].format(path=tmp_path) + "\n" + ARROYO_VIEW
    with pytest.raises(PlanError) as err:
        explain_sql(f"{ddl}\nSELECT sum(n) AS total, tumble(INTERVAL '1' MINUTE) AS window "
                    "FROM per10 GROUP BY window;")
    assert "is not grouped by" in err.value.message and err.value.col is not None
    assert "another alias" in str(err.value)


def test_arroyo_timestamp_of_a_window_aggregate_is_its_end_minus_1us(tmp_path, events):
    """Arroyo's virtual ``_timestamp`` over a view or subquery is its rows' event time: for
    a window aggregate the window's end - 1 µs."""
    path = write_input(events, tmp_path / "in", "parquet")
    ddl = DDL["parquet"].format(path=path) + "\n" + ARROYO_VIEW
    got = run_to_table(ddl, "SELECT window.end AS e, _timestamp AS t, per10._timestamp AS u "
                            "FROM per10", tmp_path / "out")
    rows = rows_of(got, ["e", "t", "u"])
    assert rows and all(t == u == e - 1 for e, t, u in rows)
    with pytest.raises(PlanError):  # the event time is gone: no _timestamp to make up
        explain_sql(f"{ddl}\nSELECT _timestamp FROM (SELECT auction, n FROM per10);")
