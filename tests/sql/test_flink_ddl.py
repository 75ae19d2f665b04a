"""CREATE TABLE as Flink writes it: backtick identifiers, quoted WITH keys, constraints,
metadata columns, and Flink's types; each refusal names the line and column."""

from __future__ import annotations

import pyarrow as pa
import pytest

from caudal.errors import ConfigError, PlanError
from caudal.sql.planner import Planner
from caudal.types import TIMESTAMP


def catalog_of(text: str):
    planner = Planner()
    planner.plan_script(text)
    return planner.catalog


def test_backticks_quoted_options_key_and_not_null():
    cat = catalog_of("""
CREATE TABLE `Orders` (
  `orderId` BIGINT NOT NULL,
  `dateTime` TIMESTAMP(3),
  v STRING NULL,
  PRIMARY KEY (`orderId`) NOT ENFORCED
) WITH ('connector' = 'blackhole');
""")
    spec = cat.tables["orders"]
    assert spec.name == "Orders"
    assert spec.connector == "blackhole"
    assert spec.schema == pa.schema([("orderId", pa.int64()), ("dateTime", TIMESTAMP),
                                     ("v", pa.string())])
    assert spec.primary_key == ["orderId"]
    assert spec.not_null == ["orderId"]


def test_column_primary_key_and_unknown_key_column():
    cat = catalog_of("CREATE TABLE t (k BIGINT PRIMARY KEY NOT ENFORCED, v INT) "
                     "WITH (connector = 'blackhole');")
    assert cat.tables["t"].primary_key == ["k"]
    with pytest.raises(PlanError, match=r"PRIMARY KEY names unknown column 'x'") as info:
        catalog_of("CREATE TABLE t (k BIGINT,\n  PRIMARY KEY (x) NOT ENFORCED) "
                   "WITH (connector = 'blackhole');")
    assert info.value.line == 2 and info.value.col


def test_metadata_columns_recorded():
    cat = catalog_of("""
CREATE TABLE k (
  v STRING,
  ts TIMESTAMP(3) METADATA FROM 'timestamp',
  `offset` BIGINT METADATA VIRTUAL,
  `partition` INT METADATA
) WITH ('connector' = 'blackhole');
""")
    spec = cat.tables["k"]
    assert spec.metadata == {"ts": "timestamp", "offset": "offset", "partition": "partition"}
    assert spec.virtual == ["offset"]
    assert spec.writable_columns() == ["v", "ts", "partition"]
    assert spec.data_schema().names == ["v"]


def test_unknown_metadata_key_is_refused_with_the_accepted_list(tmp_path):
    data = tmp_path / "d.json"
    data.write_text('{"v": "a"}\n')
    with pytest.raises(ConfigError, match=r"cannot supply metadata 'offset'") as info:
        Planner().plan_script(f"""
CREATE TABLE k (v STRING, `offset` BIGINT METADATA VIRTUAL)
  WITH ('connector' = 'filesystem', 'path' = '{data}');
SELECT * FROM k;
""")
    assert info.value.line == 2


def test_sink_refuses_metadata_it_cannot_write_but_skips_virtual():
    with pytest.raises(ConfigError, match=r"cannot write metadata 'partition'.*VIRTUAL"):
        Planner().plan_script("""
CREATE TABLE src WITH (connector = 'impulse', events = '3');
CREATE TABLE o (v BIGINT, `partition` INT METADATA) WITH (connector = 'blackhole');
INSERT INTO o SELECT counter FROM src;
""")
    job = Planner().plan_script("""
CREATE TABLE src WITH (connector = 'impulse', events = '3');
CREATE TABLE o (v BIGINT, `partition` INT METADATA VIRTUAL) WITH (connector = 'blackhole');
INSERT INTO o SELECT counter FROM src;
""")
    sink = job.outputs[0].plan.table
    assert sink.schema.names == ["v"] and sink.metadata == {}


def test_backticks_in_queries_keep_case_and_match_case_insensitively(tmp_path):
    cat = Planner()
    job = cat.plan_script("""
CREATE TABLE `Src` WITH (connector = 'impulse', events = '3');
SELECT `Counter` AS `Total`, `src`.counter FROM `Src`;
""")
    assert job.outputs[0].plan.schema.names == ["Total", "counter"]


def test_duplicate_column_and_unsupported_constraint():
    with pytest.raises(PlanError, match="declared twice") as info:
        catalog_of("CREATE TABLE t (a INT,\n a BIGINT) WITH (connector = 'blackhole');")
    assert info.value.line == 2
    with pytest.raises(PlanError, match="unsupported constraint"):
        catalog_of("CREATE TABLE t (a INT UNIQUE) WITH (connector = 'blackhole');")


# ---- watermarks, computed columns, PROCTIME ---------------------------------------------

def _events(tmp_path, n=200):
    """JSON lines with epoch milliseconds, as many Flink tables hold event time."""
    import json

    path = tmp_path / "events.json"
    rows = [{"id": i, "ms": 1_700_000_000_000 + (i * 733) % 40_000 + i * 100, "kind": i % 3}
            for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("clause, delay", [
    ("WATERMARK FOR ts", 0),
    ("WATERMARK FOR ts AS ts", 0),
    ("WATERMARK FOR ts AS (ts - INTERVAL '1' HOUR)", 3_600_000_000),
    ("WATERMARK FOR `ts` AS `ts` - INTERVAL '5' SECOND", 5_000_000),
    ("WATERMARK FOR ts AS ts - INTERVAL '250' MILLISECOND", 250_000),
    ("WATERMARK FOR ts AS ts - INTERVAL '2' MINUTE", 120_000_000),
    ("WATERMARK FOR ts AS ts - INTERVAL '1' DAY", 86_400_000_000),
])
def test_watermark_forms(clause, delay):
    cat = catalog_of(f"CREATE TABLE t (ts TIMESTAMP(3), {clause}) "
                     "WITH ('connector' = 'blackhole');")
    assert cat.tables["t"].event_time == "ts"
    assert cat.tables["t"].watermark_delay_us == delay


def test_unsupported_watermark_expression_names_position():
    with pytest.raises(PlanError, match="unsupported watermark expression") as info:
        catalog_of("CREATE TABLE t (ts TIMESTAMP(3),\n  WATERMARK FOR ts AS ts + "
                   "INTERVAL '1' SECOND) WITH ('connector' = 'blackhole');")
    assert info.value.line == 2 and info.value.col


def test_computed_event_time_windows_match_duckdb(tmp_path, duck):
    from tests.helpers import normalized_rows, run_to_table

    path = _events(tmp_path)
    ddl = f"""
CREATE TABLE src (
  id BIGINT, ms BIGINT, kind INT,
  `ts` AS to_timestamp(ms / 1000.0),
  label AS CASE WHEN kind = 0 THEN 'zero' ELSE 'other' END,
  WATERMARK FOR `ts` AS `ts` - INTERVAL '30' SECOND
) WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json');"""
    select = ("SELECT window_start, label, count(*) AS n, max(id) AS top FROM TABLE(TUMBLE("
              "TABLE src, DESCRIPTOR(ts), INTERVAL '5' SECOND)) "
              "GROUP BY window_start, window_end, label")
    expected = duck.sql(f"""
SELECT time_bucket(INTERVAL 5 SECOND, to_timestamp(ms / 1000.0)) AS window_start,
       CASE WHEN kind = 0 THEN 'zero' ELSE 'other' END AS label, count(*), max(id)
FROM read_json('{path}') GROUP BY ALL""").to_arrow_table()
    for parallelism in (1, 2):
        got = run_to_table(ddl, select, tmp_path / f"out{parallelism}", parallelism)
        assert normalized_rows(got) == normalized_rows(expected)


def test_computed_columns_in_star_keep_declared_order(tmp_path):
    from tests.helpers import run_to_table

    path = _events(tmp_path, 10)
    ddl = f"""
CREATE TABLE src (id BIGINT, twice AS id * 2, ms BIGINT, kind INT)
  WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json');"""
    got = run_to_table(ddl, "SELECT * FROM src", tmp_path / "out")
    assert got.schema.names == ["id", "twice", "ms", "kind"]
    assert got.column("twice").to_pylist() == [2 * i for i in got.column("id").to_pylist()]
    got = run_to_table(ddl, "SELECT twice FROM src WHERE kind = 1", tmp_path / "out2")
    assert sorted(got.column("twice").to_pylist()) == [2, 8, 14]


def test_computed_column_errors_name_position():
    with pytest.raises(PlanError, match="unknown column 'nope'") as info:
        catalog_of("CREATE TABLE t (a INT,\n  b AS nope + 1) WITH ('connector' = 'blackhole');")
    assert info.value.line == 2 and info.value.col
    with pytest.raises(PlanError, match="must be a TIMESTAMP"):
        catalog_of("CREATE TABLE t (a INT, b AS a + 1, WATERMARK FOR b) "
                   "WITH ('connector' = 'blackhole');")
    with pytest.raises(PlanError, match="PROCTIME"):
        catalog_of("CREATE TABLE t (a INT, p AS PROCTIME(), WATERMARK FOR p) "
                   "WITH ('connector' = 'blackhole');")


def test_proctime_column_gives_processing_time_windows(tmp_path):
    from tests.helpers import run_to_table

    path = _events(tmp_path, 50)
    ddl = f"""
CREATE TABLE src (id BIGINT, ms BIGINT, kind INT, p AS PROCTIME())
  WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json');"""
    planner = Planner()
    job = planner.plan_script(ddl + """
SELECT window_start, count(*) AS n FROM TABLE(TUMBLE(TABLE src, DESCRIPTOR(p),
  INTERVAL '1' HOUR)) GROUP BY window_start, window_end;""")
    assert "processing time" in job.outputs[0].plan.explain()
    got = run_to_table(ddl, "SELECT window_start, count(*) AS n FROM TABLE(TUMBLE(TABLE src, "
                            "DESCRIPTOR(p), INTERVAL '1' HOUR)) GROUP BY window_start, "
                            "window_end", tmp_path / "out")
    assert sum(got.column("n").to_pylist()) == 50
    got = run_to_table(ddl, "SELECT id, p FROM src", tmp_path / "out2")
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    assert all(abs((now - v).total_seconds()) < 120 for v in got.column("p").to_pylist())


def test_not_null_sink_column_fails_on_null(tmp_path):
    from caudal.errors import CaudalError
    from caudal.job import run_sql
    from tests.helpers import read_committed

    data = tmp_path / "in.json"
    data.write_text('{"k": 1, "v": "a"}\n{"k": 2, "v": null}\n')
    script = f"""
CREATE TABLE src (k BIGINT, v STRING) WITH (connector = 'filesystem', path = '{data}');
CREATE TABLE out (k BIGINT NOT NULL, v STRING NOT NULL)
  WITH (connector = 'filesystem', path = '{{out}}', format = 'parquet');
INSERT INTO out SELECT k, v FROM src{{where}};"""
    run_sql(script.format(out=tmp_path / "out", where=" WHERE v IS NOT NULL"))
    assert read_committed(tmp_path / "out").to_pylist() == [{"k": 1, "v": "a"}]
    with pytest.raises(CaudalError, match="column 'v' of table 'out' is declared NOT NULL"):
        run_sql(script.format(out=tmp_path / "out2", where=""))


def test_temporary_if_not_exists_and_comments():
    cat = catalog_of("""
CREATE TEMPORARY TABLE t (a INT COMMENT 'the a', b AS a + 1 COMMENT 'computed')
  COMMENT 'a table' WITH ('connector' = 'blackhole');
CREATE TABLE IF NOT EXISTS t (x BIGINT) WITH ('connector' = 'blackhole');
""")
    spec = cat.tables["t"]
    assert spec.options == {"connector": "blackhole"}
    assert spec.columns_schema().names == ["a", "b"]
    with pytest.raises(PlanError, match="already defined"):
        catalog_of("CREATE TABLE t (a INT) WITH ('connector' = 'blackhole');\n"
                   "CREATE TABLE t (a INT) WITH ('connector' = 'blackhole');")


def test_flink_types():
    cat = catalog_of("""
CREATE TABLE t (a TIMESTAMP_LTZ(3), b TIMESTAMP(3) WITH LOCAL TIME ZONE, c TIMESTAMP(9),
  d ROW<x BIGINT, `y` STRING>, e ROW(x INT), f ARRAY<ROW<z DOUBLE>>, g MAP<STRING, BIGINT>,
  h BYTES, i INT ARRAY, j DECIMAL(10, 2), k STRING ARRAY NOT NULL, l INT[])
  WITH ('connector' = 'blackhole');
""")
    from caudal.types import is_zoned, sql_name, timestamp_precision

    schema = cat.tables["t"].schema
    assert [sql_name(f.type) for f in schema] == [
        "TIMESTAMP", "TIMESTAMP", "TIMESTAMP", "STRUCT<x BIGINT, y TEXT>", "STRUCT<x INT>",
        "STRUCT<z DOUBLE>[]", "MAP<TEXT, BIGINT>", "BYTEA", "INT[]", "DECIMAL(10, 2)",
        "TEXT[]", "INT[]"]
    assert [is_zoned(schema.field(n)) for n in "abc"] == [True, True, False]
    assert [timestamp_precision(schema.field(n)) for n in "abc"] == [3, 3, 9]


def test_arroyo_generated_columns(tmp_path):
    from caudal.job import run_sql
    from tests.helpers import read_committed

    data = tmp_path / "in.json"
    data.write_text('{"ms": 1700000000000}\n{"ms": 1700000001500}\n')
    run_sql(f"""
CREATE TABLE src (
  ms BIGINT,
  ts TIMESTAMP GENERATED ALWAYS AS (to_timestamp(ms / 1000.0)) STORED,
  half DOUBLE GENERATED ALWAYS AS (ms / 2),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
) WITH (connector = 'filesystem', path = '{data}', format = 'json');
CREATE TABLE out WITH (connector = 'filesystem', path = '{tmp_path / "out"}',
                       format = 'parquet');
INSERT INTO out SELECT ts, half FROM src;""")
    got = read_committed(tmp_path / "out")
    assert str(got.schema.field("half").type) == "double"
    assert got.column("half").to_pylist() == [850000000000.0, 850000000750.0]
    assert [t.timestamp() for t in got.column("ts").to_pylist()] == [1700000000.0,
                                                                     1700000001.5]
