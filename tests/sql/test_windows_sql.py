"""Windowed SQL: both spellings parse and plan, and bad windows are planning errors that name
the line, the column and what is accepted."""

from __future__ import annotations

import pytest

from caudal.errors import PlanError
from caudal.job import compile_sql, explain_sql
from caudal.plan.window_nodes import WindowAggregate, WindowRank

DDL = """CREATE TABLE bids (auction BIGINT, bidder BIGINT, price BIGINT, channel TEXT,
  date_time TIMESTAMP, other_time TIMESTAMP,
  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND)
  WITH (connector = 'filesystem', path = '{dir}/bids.json', format = 'json');
CREATE TABLE plain (auction BIGINT, date_time TIMESTAMP)
  WITH (connector = 'filesystem', path = '{dir}/plain.json', format = 'json');
"""


@pytest.fixture
def ddl(tmp_path) -> str:
    """The tables, over empty input files (sources check their path when planning)."""
    for name in ("bids.json", "plain.json", "x.json"):
        (tmp_path / name).write_text("")
    return DDL.replace("{dir}", str(tmp_path))


def plan_error(ddl: str, sql: str) -> PlanError:
    with pytest.raises(PlanError) as info:
        compile_sql(ddl + sql)
    return info.value


def find(node, cls):
    while not isinstance(node, cls):
        node = node.children()[0]
    return node


def test_tvf_syntax_parses_and_plans_one_window_aggregate(ddl):
    job = compile_sql(ddl + """
SELECT window_start, window_end, auction, count(*) AS num
FROM TABLE(HOP(TABLE bids, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
GROUP BY window_start, window_end, auction;""")
    agg = find(job.job.outputs[0].plan, WindowAggregate)
    assert (agg.window.kind, agg.window.slide_us, agg.window.size_us) == ("hop", 2e6, 10e6)
    assert agg.keys == ["auction"]
    kinds = [op.kind for v in job.graph.vertices for op in v.operators]
    assert "window_aggregate" in kinds and "window_assign" not in kinds


def test_arroyo_window_struct_and_expressions_over_aggregates(ddl):
    text = explain_sql(ddl + """
SELECT auction, count(*) + 1 AS n1, sum(price) / count(price) AS mean,
       tumble(INTERVAL '10' SECOND) AS window
FROM bids WHERE price > 0 GROUP BY auction, window HAVING count(*) > 2;""", 4)
    assert "WindowAggregate tumble(10s)" in text
    assert "hash(auction)" in text
    assert "window STRUCT<start TIMESTAMP, end TIMESTAMP>" in text


def test_global_window_runs_in_one_subtask(ddl):
    job = compile_sql(ddl + "SELECT count(*) AS n, hop(INTERVAL '1' MINUTE, INTERVAL '1' HOUR) "
                            "FROM bids GROUP BY 2;", 4)
    windows = [v for v in job.graph.vertices
               if any(op.kind == "window_aggregate" for op in v.operators)]
    assert windows[0].parallelism == 1
    assert [e.partitioning for e in job.graph.inputs_of(windows[0].id)] == ["single"]


def test_table_without_event_time_gets_processing_time_windows(ddl):
    job = compile_sql(ddl + "SELECT auction, count(*), tumble(INTERVAL '1' SECOND) AS w "
                            "FROM plain GROUP BY auction, w;")
    agg = find(job.job.outputs[0].plan, WindowAggregate)
    assert agg.time_input is None
    assert "processing time" in agg.describe()


def test_top_n_limit_is_pushed_into_the_rank_operator(ddl):
    job = compile_sql(ddl + """
SELECT * FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY num DESC) AS rn
  FROM (SELECT window_start, window_end, auction, count(*) AS num
        FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
        GROUP BY window_start, window_end, auction)
) WHERE rn <= 3;""")
    rank = find(job.job.outputs[0].plan, WindowRank)
    assert rank.limit == 3 and rank.function == "row_number"
    assert rank.order == [("num", True, True)]


def test_late_data_side_table_gets_its_own_sink_vertex(tmp_path):
    (tmp_path / "x.json").write_text("")
    text = explain_sql("""
CREATE TABLE src (k BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts)
  WITH (connector = 'filesystem', path = '{TMP}/x.json', format = 'json',
        late_data = 'side:late');
CREATE TABLE late (k BIGINT, ts TIMESTAMP)
  WITH (connector = 'filesystem', path = '{TMP}/late', format = 'json');
SELECT k, count(*), tumble(INTERVAL '1' SECOND) AS w FROM src GROUP BY k, w;""".replace(
        "{TMP}", str(tmp_path)), 2)
    assert "side output late" in text
    assert "write late rows to late" in text


@pytest.mark.parametrize("sql,message,hint", [
    ("SELECT count(*) FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(other_time), "
     "INTERVAL '1' SECOND)) GROUP BY window_start, window_end;",
     "DESCRIPTOR(other_time) is not the event time", "DESCRIPTOR(date_time)"),
    ("SELECT count(*) FROM TABLE(TUMBLE(TABLE plain, DESCRIPTOR(date_time), "
     "INTERVAL '1' SECOND)) GROUP BY window_start, window_end;",
     "which has no event time", "WATERMARK FOR"),
    ("SELECT count(*), hop(INTERVAL '30' SECOND, INTERVAL '10' SECOND) AS w "
     "FROM bids GROUP BY w;", "is longer than the window size", "no longer than the size"),
    ("SELECT count(*) FROM TABLE(CUMULATE(TABLE bids, DESCRIPTOR(date_time), "
     "INTERVAL '7' SECOND, INTERVAL '1' MINUTE)) GROUP BY window_start, window_end;",
     "step must divide the window size", "multiple of the step"),
    ("SELECT count(*), tumble(price * INTERVAL '1' SECOND) AS w FROM bids GROUP BY w;",
     "must be a constant INTERVAL", "INTERVAL '10' SECOND"),
    ("SELECT count(*), tumble(INTERVAL '0' SECOND) AS w FROM bids GROUP BY w;",
     "must be positive", "positive"),
    ("SELECT count(*), tumble(10) AS w FROM bids GROUP BY w;",
     "must be an INTERVAL", "INTERVAL"),
    ("SELECT price, count(*), tumble(INTERVAL '1' SECOND) AS w FROM bids GROUP BY w;",
     "column 'price' must appear in GROUP BY", "max(price)"),
    ("SELECT *, RANK() OVER (PARTITION BY auction ORDER BY price) AS r FROM bids;",
     "needs a bound on the rank", "PARTITION BY window_start, window_end"),
    ("SELECT count(*) FROM TABLE(SESSION(TABLE bids PARTITION BY auction, "
     "DESCRIPTOR(date_time), INTERVAL '5' SECOND)) GROUP BY window_start, window_end, bidder;",
     "groups by its PARTITION BY columns", "window_start, window_end, auction"),
    ("SELECT count(*) FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), "
     "INTERVAL '5' SECOND)) GROUP BY window_start, auction;",
     "window_end is missing", "GROUP BY window_start, window_end"),
    ("SELECT count(*), tumble(INTERVAL '1' SECOND), session(INTERVAL '1' SECOND) "
     "FROM bids GROUP BY 2, 3;", "more than one window", "one window"),
    ("SELECT first_value(auction), tumble(INTERVAL '1' SECOND) AS w FROM plain GROUP BY w;",
     "orders by event time", "WATERMARK FOR"),
    ("SELECT approx_percentile_cont_with_weight(price, 0.5), tumble(INTERVAL '1' SECOND) "
     "AS w FROM bids GROUP BY w;", "approx_percentile_cont_with_weight", "accepted:"),
    ("SELECT count(*) FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time))) "
     "GROUP BY window_start, window_end;", "takes 1 interval argument", "accepted:"),
    ("SELECT * FROM TABLE(SESSION(TABLE bids PARTITION BY auction, DESCRIPTOR(date_time), "
     "INTERVAL '5' SECOND));", "needs an aggregate", "GROUP BY window_start"),
])
def test_bad_windows_are_plan_errors_with_position_and_hint(ddl, sql, message, hint):
    error = plan_error(ddl, sql)
    assert message in error.message, error
    assert error.hint is not None and hint in error.hint, error
    assert error.line is not None and error.line >= 6, error


def test_error_column_points_at_the_bad_argument(ddl):
    error = plan_error(ddl, "SELECT count(*), hop(INTERVAL '30' SECOND,\n"
                       "                     INTERVAL '10' SECOND) AS w FROM bids GROUP BY w;")
    # line 8 of the script, inside "INTERVAL '10' SECOND" (columns 22-41)
    assert error.line == 8 and 22 <= error.col <= 41
