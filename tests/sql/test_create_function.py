"""CREATE FUNCTION for the Java UDF classes caudal re-implements (Flink Nexmark's CountChar),
and Flink's HOUR/MINUTE/YEAR/MONTH/DAYOFMONTH, against DuckDB."""

from __future__ import annotations

import pytest

from caudal.errors import PlanError
from caudal.job import compile_sql
from tests.changelog_helpers import fold, run_changelog

NEXMARK_UDF = "CREATE FUNCTION count_char AS 'com.github.nexmark.flink.udf.CountChar';"


def _ddl(path) -> str:
    return f"CREATE TABLE bids WITH (connector = 'filesystem', path = '{path}');"


@pytest.mark.parametrize("parallelism", [1, 2])
def test_udf_class_and_time_fields_equal_duckdb(bids_parquet, tmp_path, duck, parallelism):
    path, table = bids_parquet
    ddl = _ddl(path) + NEXMARK_UDF + "CREATE TEMPORARY FUNCTION IF NOT EXISTS cc AS " \
        "'com.github.nexmark.flink.udf.CountChar' LANGUAGE JAVA;"
    select = ("SELECT url, count_char(url, 'a') AS a, cc(channel, 'o') AS o, "
              "HOUR(date_time) AS h, MINUTE(date_time) AS m, YEAR(date_time) AS y, "
              "MONTH(date_time) AS mo, DAYOFMONTH(date_time) AS d FROM bids")
    got = fold(run_changelog(ddl, select, tmp_path / "out", parallelism=parallelism))
    duck.register("bids", table)
    expected = duck.sql(
        "SELECT url, length(url) - length(replace(url, 'a', '')) AS a, "
        "coalesce(length(channel) - length(replace(channel, 'o', '')), 0) AS o, "
        "hour(date_time) AS h, minute(date_time) AS m, year(date_time) AS y, "
        "month(date_time) AS mo, day(date_time) AS d FROM bids").to_arrow_table()
    assert sorted(got.to_pylist(), key=repr) == sorted(expected.to_pylist(), key=repr)


@pytest.mark.parametrize("statement, message", [
    ("CREATE FUNCTION f AS 'com.example.MyUdf';", "runs no JVM code"),
    ("CREATE FUNCTION f AS 'my_module.f' LANGUAGE PYTHON;", "LANGUAGE PYTHON"),
    (NEXMARK_UDF + NEXMARK_UDF.replace("count_char", "upper"), "already defined"),
])
def test_refused(bids_parquet, statement, message):
    with pytest.raises(PlanError, match=message) as info:
        compile_sql(_ddl(bids_parquet[0]) + statement + "SELECT url FROM bids;")
    assert "\n" not in str(info.value)
