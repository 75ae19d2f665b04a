"""Arroyo's memory tables: a CREATE TABLE without WITH is written by INSERT INTO and read by
later queries in the same job (several INSERTs union), checked against DuckDB."""

from __future__ import annotations

import pytest

from caudal.errors import PlanError
from caudal.job import run_sql
from caudal.sql.planner import Planner
from tests.helpers import normalized_rows, read_committed

SOURCE = ("CREATE TABLE bids WITH (connector = 'filesystem', path = '{path}', "
          "event_time_field = 'date_time');\n")


def test_memory_table_between_statements_matches_duckdb(tmp_path, bids_parquet, duck):
    path, _ = bids_parquet
    out = tmp_path / "out"
    script = SOURCE.format(path=path) + f"""
CREATE TABLE pricey (auction BIGINT, price BIGINT, date_time TIMESTAMP);
INSERT INTO pricey SELECT auction, price, date_time FROM bids WHERE price > 5000;
CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', format = 'parquet');
INSERT INTO out
SELECT window_start, auction, count(*) AS n, max(price) AS top
FROM TABLE(TUMBLE(TABLE pricey, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
GROUP BY window_start, window_end, auction;
"""
    expected = duck.sql(f"""
SELECT time_bucket(INTERVAL 10 SECOND, date_time) AS window_start, auction, count(*),
       max(price)
FROM '{path}' WHERE price > 5000 GROUP BY ALL""").to_arrow_table()
    for parallelism in (1, 2):
        run_sql(script, parallelism=parallelism)
        got = read_committed(out)
        assert normalized_rows(got) == normalized_rows(expected)
        for f in out.iterdir():
            f.unlink()


def test_several_inserts_union_and_two_readers(tmp_path, bids_parquet, duck):
    path, _ = bids_parquet
    a, b = tmp_path / "a", tmp_path / "b"
    run_sql(SOURCE.format(path=path) + f"""
CREATE TABLE m (id BIGINT, tag TEXT);
INSERT INTO m SELECT auction, 'low' FROM bids WHERE price < 100;
INSERT INTO m (tag, id) SELECT 'high', bidder FROM bids WHERE price > 9900;
CREATE TABLE a WITH (connector = 'filesystem', path = '{a}', format = 'parquet');
CREATE TABLE b WITH (connector = 'filesystem', path = '{b}', format = 'parquet');
INSERT INTO a SELECT * FROM m;
INSERT INTO b SELECT tag, id FROM m WHERE id > 0;
""")
    expected = duck.sql(f"""
SELECT auction AS id, 'low' AS tag FROM '{path}' WHERE price < 100
UNION ALL SELECT bidder, 'high' FROM '{path}' WHERE price > 9900""").to_arrow_table()
    got = read_committed(a)
    assert got.schema.names == ["id", "tag"]
    assert normalized_rows(got) == normalized_rows(expected)
    got_b = read_committed(b)
    assert normalized_rows(got_b, ["id", "tag"]) == normalized_rows(
        expected.filter(expected.column("id").to_numpy() > 0))


def test_memory_table_errors():
    with pytest.raises(PlanError, match="nothing writes it") as info:
        Planner().plan_script("CREATE TABLE m (a BIGINT);\nSELECT a FROM m;")
    assert info.value.line == 2 and info.value.col
    with pytest.raises(PlanError, match="written from itself"):
        Planner().plan_script("CREATE TABLE m (a BIGINT);\nINSERT INTO m SELECT a FROM m;\n"
                              "SELECT a FROM m;")
    with pytest.raises(PlanError, match="cannot declare a WATERMARK"):
        Planner().plan_script("CREATE TABLE m (ts TIMESTAMP, WATERMARK FOR ts);")
    with pytest.raises(PlanError, match="gives 2 column"):
        Planner().plan_script("CREATE TABLE s WITH (connector = 'impulse', events = '3');\n"
                              "CREATE TABLE m (a BIGINT);\n"
                              "INSERT INTO m SELECT counter, counter FROM s;")


def test_insert_into_memory_table_is_no_output_and_keeps_event_time():
    job = Planner().plan_script("""
CREATE TABLE s WITH (connector = 'impulse', events = '10');
CREATE TABLE m (c BIGINT, t TIMESTAMP);
INSERT INTO m SELECT counter, timestamp FROM s;
""")
    assert job.outputs == []
    job = Planner().plan_script("""
CREATE TABLE s WITH (connector = 'impulse', events = '10');
CREATE TABLE m (c BIGINT, t TIMESTAMP);
INSERT INTO m SELECT counter, timestamp FROM s;
SELECT window_start, count(*) AS n
FROM TABLE(TUMBLE(TABLE m, DESCRIPTOR(t), INTERVAL '1' SECOND)) GROUP BY window_start, window_end;
""")
    assert len(job.outputs) == 1
