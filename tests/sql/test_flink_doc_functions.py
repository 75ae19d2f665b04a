"""Functions as Flink's and Arroyo's documentation write them: FLOOR/CEIL(ts TO unit),
LOCALTIMESTAMP without parentheses, and refusals that name the function the user wrote."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from caudal.errors import PlanError
from caudal.job import compile_sql
from tests.helpers import normalized_rows, run_to_table

DDL = ("CREATE TABLE t WITH (connector = 'filesystem', path = '{path}', "
       "event_time_field = 'ts');")


@pytest.fixture(scope="module")
def times(tmp_path_factory):
    base = dt.datetime(2020, 4, 15, 8, 0, tzinfo=dt.UTC)
    steps = [0, 1, 59_999_999, 60_000_000, 3_599_000_000, 3_600_000_000, 86_400_000_000,
             86_400_000_001, 90_061_001_001]
    table = pa.table({"id": list(range(len(steps) * 3)),
                      "ts": pa.array([base + dt.timedelta(microseconds=s + k * 7_777_777)
                                      for k in range(3) for s in steps],
                                     pa.timestamp("us", tz="UTC"))})
    path = tmp_path_factory.mktemp("floor_to") / "t.parquet"
    pq.write_table(table, path, row_group_size=5)
    return path, table


@pytest.mark.parametrize("parallelism", [1, 2])
def test_floor_and_ceil_to_unit_equal_duckdb(tmp_path, duck, times, parallelism):
    path, table = times
    query = ("SELECT id, FLOOR(ts TO HOUR) AS fh, FLOOR(ts TO MONTH) AS fm, "
             "CEIL(ts TO SECOND) AS cs, CEIL(ts TO MINUTE) AS cm, CEIL(ts TO DAY) AS cd "
             "FROM t")
    got = run_to_table(DDL.format(path=path), query, tmp_path / "out",
                       parallelism=parallelism)
    duck.register("t", table)
    duck.sql("SET TimeZone = 'UTC'")

    def ceil(unit: str) -> str:
        return (f"CASE WHEN date_trunc('{unit}', ts) = ts THEN date_trunc('{unit}', ts) "
                f"ELSE date_trunc('{unit}', ts) + INTERVAL 1 {unit} END")

    expected = duck.sql(f"SELECT id, date_trunc('hour', ts) AS fh, date_trunc('month', ts), "
                        f"{ceil('second')}, {ceil('minute')}, {ceil('day')} FROM t"
                        ).to_arrow_table()
    assert normalized_rows(got) == normalized_rows(expected)


def test_ceil_to_month_is_refused_in_one_line(times):
    path, _ = times
    with pytest.raises(PlanError, match=r"CEIL\(ts TO MONTH\) is not supported") as info:
        compile_sql(DDL.format(path=path) + "\nSELECT CEIL(ts TO MONTH) FROM t;")
    assert "\n" not in str(info.value)


def test_localtimestamp_without_parentheses_plans(times):
    path, _ = times
    compile_sql(DDL.format(path=path) + "\nSELECT id, LOCALTIMESTAMP AS now FROM t;")


@pytest.mark.parametrize("call,name", [("sha256(CAST(id AS TEXT))", "sha256()"),
                                       ("uuid()", "uuid()")])
def test_refusal_names_the_function_as_written(times, call, name):
    path, _ = times
    with pytest.raises(PlanError) as info:
        compile_sql(DDL.format(path=path) + f"\nSELECT {call} FROM t;")
    assert f"function {name} is not supported" in str(info.value)


@pytest.mark.parametrize("parallelism", [1, 2])
def test_make_array_as_arroyo_writes_it(tmp_path, duck, times, parallelism):
    """Arroyo's docs (DataFusion's functions) build arrays with make_array(); it was
    refused as an unknown function."""
    path, table = times
    got = run_to_table(DDL.format(path=path),
                       "SELECT id, unnest(make_array(id, id * 2, NULL)) AS x FROM t",
                       tmp_path / "out", parallelism=parallelism)
    duck.register("t", table)
    expected = duck.sql("SELECT id, unnest([id, id * 2, NULL]) AS x FROM t").to_arrow_table()
    assert normalized_rows(got) == normalized_rows(expected)


@pytest.mark.parametrize("expr,message", [
    ("MAP['a', id]['a']", "the MAP[…] value constructor is not supported"),
    ("ARRAY[id, 2][1, 2]", "a subscript takes one index, not 2"),
    ("ARRAY[id, 2][1:2]", "array slices a[i:j] are not supported"),
])
def test_subscript_refusals_say_what_is_wrong(times, expr, message):
    """Flink's MAP['k', v] constructor was refused as 'array slices a[i:j] are not
    supported'."""
    path, _ = times
    with pytest.raises(PlanError) as info:
        compile_sql(DDL.format(path=path) + f"\nSELECT {expr} FROM t;")
    assert message in str(info.value)


def test_a_column_named_map_still_takes_a_subscript(tmp_path):
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"map": [[1, 2], [3]], "ts": pa.array(
        [dt.datetime(2026, 1, 1, tzinfo=dt.UTC)] * 2, pa.timestamp("us", tz="UTC"))}), path)
    got = run_to_table(DDL.format(path=path).replace("TABLE t", "TABLE m"),
                       "SELECT map[1] AS first FROM m", tmp_path / "out")
    assert sorted(got.column("first").to_pylist()) == [1, 3]


@pytest.mark.parametrize("parallelism", [1, 2])
def test_filter_in_over_aggregates_equals_duckdb(tmp_path, duck, times, parallelism):
    """``agg(x) FILTER (WHERE …) OVER (…)`` was taken for a GROUP BY aggregate ('column id
    must appear in GROUP BY'); it is ``agg(CASE WHEN … THEN x END) OVER (…)``."""
    path, table = times
    frame = "ORDER BY ts RANGE BETWEEN INTERVAL '1' HOUR PRECEDING AND CURRENT ROW"
    query = (f"SELECT id, sum(id) FILTER (WHERE id % 2 = 0) OVER ({frame}) AS s, "
             f"count(*) FILTER (WHERE id > 9) OVER ({frame}) AS c, "
             f"max(id) FILTER (WHERE id < 5) OVER ({frame}) AS m FROM t")
    got = run_to_table(DDL.format(path=path), query, tmp_path / "out",
                       parallelism=parallelism)
    duck.register("t", table)
    assert normalized_rows(got) == normalized_rows(duck.sql(query).to_arrow_table())


def test_distinct_with_filter_over_is_still_refused(times):
    path, _ = times
    with pytest.raises(PlanError, match=r"count\(DISTINCT …\) OVER \(…\) is not supported"):
        compile_sql(DDL.format(path=path) + "\nSELECT count(DISTINCT id) FILTER (WHERE id > 3) "
                    "OVER (ORDER BY ts RANGE BETWEEN INTERVAL '1' HOUR PRECEDING AND CURRENT "
                    "ROW) AS s FROM t;")
