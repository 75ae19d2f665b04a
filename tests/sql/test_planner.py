"""Planning: every statement form, name resolution, schema inference and the errors users get
(each naming the line and column and what would be accepted)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from caudal.errors import CaudalError, ConfigError, PlanError
from caudal.job import compile_sql, explain_sql, run_sql
from caudal.sql.planner import Planner
from tests.helpers import read_committed

SOURCE = "CREATE TABLE bids WITH (connector = 'filesystem', path = '{path}');\n"


def plan(text: str):
    return Planner().plan_script(text)


def test_view_subquery_and_alias(tmp_path, bids_parquet):
    path, table = bids_parquet
    out = tmp_path / "out"
    run_sql(SOURCE.format(path=path) + f"""
CREATE VIEW pricey AS SELECT auction AS a, price FROM bids WHERE price > 9000;
CREATE TABLE out WITH (connector = 'filesystem', path = '{out}');
INSERT INTO out SELECT s.a, s.p2 FROM (SELECT v.a, v.price * 2 AS p2 FROM pricey AS v) AS s
WHERE s.p2 > 18100;
""")
    got = read_committed(out)
    expected = [r for r in table.to_pylist() if r["price"] is not None and r["price"] > 9050]
    assert got.num_rows == len(expected)
    assert got.schema.names == ["a", "p2"]


def test_insert_into_declared_sink_casts_and_names(tmp_path, bids_parquet):
    path, _ = bids_parquet
    out = tmp_path / "out"
    run_sql(SOURCE.format(path=path) + f"""
CREATE TABLE out (id BIGINT, price DOUBLE, note TEXT)
  WITH (connector = 'filesystem', path = '{out}');
INSERT INTO out SELECT auction, price, 'x' FROM bids WHERE price > 9990;
""")
    got = read_committed(out)
    assert got.schema == pa.schema([("id", pa.int64()), ("price", pa.float64()),
                                    ("note", pa.string())])


def test_insert_column_count_mismatch():
    with pytest.raises(PlanError, match="expects 2"):
        plan("CREATE TABLE s (auction BIGINT) WITH (connector = 'nexmark', "
             "table = 'bid');\n"
             "CREATE TABLE o (a BIGINT, b BIGINT) WITH (connector = 'blackhole');\n"
             "INSERT INTO o SELECT 1, 2, 3 FROM s;")


def test_star_and_qualified_star(bids_parquet):
    path, table = bids_parquet
    job = plan(SOURCE.format(path=path) + "SELECT b.*, price AS p FROM bids b;")
    schema = job.outputs[0].plan.schema
    assert schema.names == table.schema.names + ["p"]


def test_duplicate_output_names_are_made_unique(bids_parquet):
    path, _ = bids_parquet
    job = plan(SOURCE.format(path=path) + "SELECT price, price FROM bids;")
    assert job.outputs[0].plan.schema.names == ["price", "price_1"]


@pytest.mark.parametrize("sql,message,line,col", [
    ("SELECT pricee FROM bids;", "unknown column 'pricee'", 2, 8),
    ("SELECT price FROM bidz;", "unknown table 'bidz'", 2, 19),
    ("SELECT price FROM bids\nWHERE price + 1;", "WHERE needs a boolean", 3, 7),
    ("SELECT upper(price) FROM bids;", "upper", 2, 8),
    ("SELECT price FROM bids ORDER BY 5;", "ORDER BY position 5 is not in the SELECT list",
     2, 33),
    ("SELECT price FROM bids LIMIT 1.5;", "LIMIT takes a whole number", 2, 30),
    ("SELECT nosuchfn(price) FROM bids;", "unknown function", 2, 8),
    ("SELECT price FROM bids WHERE channel > 3;", "comparison", 2, None),
])
def test_plan_errors_name_line_and_column(bids_parquet, sql, message, line, col):
    path, _ = bids_parquet
    with pytest.raises(CaudalError) as info:
        plan(SOURCE.format(path=path) + sql)
    err = info.value
    assert message in str(err)
    assert err.line == line
    if col is not None:
        assert err.col == col


def test_ambiguous_column():
    from caudal.sql.scope import Scope, ScopeColumn

    scope = Scope([ScopeColumn("a", "x", pa.int64(), "x"), ScopeColumn("b", "x", pa.int64(),
                                                                       "x_1")])
    from caudal.sql.dialect import parse_expression

    with pytest.raises(PlanError, match="ambiguous"):
        scope.resolve_column(parse_expression("x"))
    assert scope.resolve_column(parse_expression("b.x")).name == "x_1"


def test_watermark_clause_and_event_time_options():
    job = plan("""CREATE TABLE t (a BIGINT, ts TIMESTAMP,
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND) WITH (connector = 'filesystem', path = 'x');""")
    spec = job.catalog.tables["t"]
    assert spec.event_time == "ts" and spec.watermark_delay_us == 2_000_000
    job = plan("CREATE TABLE t (a BIGINT, ts TIMESTAMP) WITH (connector = 'filesystem', "
               "path = 'x', event_time_field = 'ts', watermark_delay = '500ms');")
    spec = job.catalog.tables["t"]
    assert spec.event_time == "ts" and spec.watermark_delay_us == 500_000


def test_watermark_errors():
    with pytest.raises(PlanError, match="unknown column 'tss'"):
        plan("CREATE TABLE t (a BIGINT, ts TIMESTAMP,\n WATERMARK FOR tss AS tss) "
             "WITH (connector = 'filesystem', path = 'x');")
    with pytest.raises(PlanError, match="must be a TIMESTAMP"):
        plan("CREATE TABLE t (a BIGINT, ts TIMESTAMP, WATERMARK FOR a AS a) "
             "WITH (connector = 'filesystem', path = 'x');")
    with pytest.raises(PlanError, match="watermark expression"):
        plan("CREATE TABLE t (a BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts + INTERVAL '1' "
             "SECOND) WITH (connector = 'filesystem', path = 'x');")


def test_table_without_connector_and_duplicate_table():
    # without WITH a table is a memory table (tests/sql/test_memory_tables.py); options
    # without a connector are still refused
    with pytest.raises(ConfigError, match="no connector"):
        plan("CREATE TABLE t (a BIGINT) WITH (path = 'x');")
    with pytest.raises(PlanError, match="already defined"):
        plan("CREATE TABLE t (a BIGINT) WITH (connector = 'blackhole');\n"
             "CREATE TABLE t (a BIGINT) WITH (connector = 'blackhole');")


def test_sink_used_as_source_and_unsupported_statement():
    with pytest.raises(ConfigError, match="cannot be read from"):
        plan("CREATE TABLE t (a BIGINT) WITH (connector = 'blackhole');\nSELECT a FROM t;")
    with pytest.raises(CaudalError, match="unsupported statement"):
        plan("DROP TABLE t;")


def test_set_statement_reaches_graph_settings(bids_parquet):
    path, _ = bids_parquet
    compiled = compile_sql("SET updating_ttl = '1 hour';\n" + SOURCE.format(path=path)
                           + "SELECT price FROM bids;")
    assert compiled.graph.settings["updating_ttl"] == "1 hour"


def test_explain_statement_in_script(bids_parquet):
    path, _ = bids_parquet
    text = explain_sql(SOURCE.format(path=path) + "EXPLAIN SELECT price FROM bids "
                       "WHERE price > 3;")
    assert "Filter (price > 3)" in text
    assert "columns [price]" in text


def test_parallel_graph_shape(bids_parquet):
    path, _ = bids_parquet
    compiled = compile_sql(SOURCE.format(path=path) + "SELECT price FROM bids;",
                           parallelism=3)
    # the stdout sink runs as one subtask fed by every source subtask
    assert [v.parallelism for v in compiled.graph.vertices] == [3, 1]
    assert compiled.graph.edges[0].partitioning == "single"
