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
