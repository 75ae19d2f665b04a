"""UNNEST (Flink's CROSS JOIN UNNEST and Arroyo's / DuckDB's SELECT unnest(arr)) and Arroyo's
virtual ``_timestamp`` column, in streaming jobs against DuckDB."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from caudal.errors import PlanError
from caudal.job import compile_sql
from tests.helpers import normalized_rows, run_to_table

UTC = dt.UTC


@pytest.fixture(scope="module")
def table_file(tmp_path_factory):
    n = 400
    arrays = [None if i % 7 == 0 else [] if i % 5 == 0 else
              [i * 10 + k if (i + k) % 9 else None for k in range(i % 4 + 1)]
              for i in range(n)]
    table = pa.table({
        "id": pa.array(range(n), pa.int64()),
        "arr": pa.array(arrays, pa.list_(pa.int64())),
        "s": pa.array([None if i % 11 == 0 else ",".join(str(i + k) for k in range(i % 3 + 1))
                       for i in range(n)]),
        "ts": pa.array([dt.datetime(2026, 1, 1, tzinfo=UTC) + dt.timedelta(milliseconds=50 * i)
                        for i in range(n)], pa.timestamp("us", tz="UTC")),
    })
    path = tmp_path_factory.mktemp("t") / "t.parquet"
    pq.write_table(table, path, row_group_size=64)
    return path, table


DDL = ("CREATE TABLE t (id BIGINT, arr BIGINT[], s TEXT, ts TIMESTAMP, WATERMARK FOR ts AS "
       "ts - INTERVAL '1' SECOND) WITH (connector = 'filesystem', path = '{path}');")

QUERIES = [
    ("SELECT id, x FROM t CROSS JOIN UNNEST(arr) AS u(x)", None),
    ("SELECT t.id, u.x FROM t, UNNEST(t.arr) AS u(x) WHERE u.x % 3 = 0 OR x IS NULL", None),
    ("SELECT id, unnest(arr) FROM t", None),
    ("SELECT id, unnest(arr) + id AS v FROM t WHERE id > 100", None),
    ("SELECT id, p FROM t CROSS JOIN UNNEST(string_to_array(s, ',')) AS u(p)",
     "SELECT id, p FROM t CROSS JOIN UNNEST(string_split(s, ',')) AS u(p)"),
    ("SELECT window_start, count(*) AS n, sum(x) AS total FROM TABLE(TUMBLE(TABLE t, "
     "DESCRIPTOR(ts), INTERVAL '5' SECOND)) CROSS JOIN UNNEST(arr) AS u(x) "
     "GROUP BY window_start, window_end",
     "SELECT time_bucket(INTERVAL '5 seconds', ts) AS window_start, count(*) AS n, "
     "sum(x) AS total FROM t CROSS JOIN UNNEST(arr) AS u(x) GROUP BY 1"),
]


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("query,duck_query", QUERIES)
def test_unnest_matches_duckdb(tmp_path, duck, table_file, query, duck_query, parallelism):
    path, table = table_file
    got = run_to_table(DDL.format(path=path), query, tmp_path / "out", parallelism)
    t = table  # noqa: F841 - DuckDB reads the local variable by name
    expected = duck.sql(duck_query or query).to_arrow_table()
    assert normalized_rows(got) == normalized_rows(expected)


def test_select_unnest_column_is_named_unnest(tmp_path, table_file):
    path, _ = table_file
    got = run_to_table(DDL.format(path=path), "SELECT id, unnest(arr) FROM t WHERE id = 1",
                       tmp_path / "out")
    assert got.schema.names == ["id", "unnest"]
    assert got.column("unnest").to_pylist() == [10, 11]


@pytest.mark.parametrize("query,message", [
    ("SELECT x FROM t CROSS JOIN UNNEST(s) AS u(x)", "unnest.. takes an array, got TEXT"),
    ("SELECT id FROM t WHERE unnest(arr) > 1", "unnest.. is not allowed here"),
    ("SELECT unnest(arr), unnest(string_to_array(s, ',')) FROM t", "one unnest"),
    ("SELECT x FROM t LEFT JOIN UNNEST(arr) AS u(x) ON x > 1", "only CROSS JOIN UNNEST"),
    ("SELECT count(*), unnest(arr) FROM t", "unnest.. is not allowed here"),
])
def test_unsupported_unnest_is_refused(table_file, query, message):
    with pytest.raises(PlanError, match=message) as e:
        compile_sql(DDL.format(path=table_file[0]) + query)
    assert str(e.value).startswith("line 1, column")


def test_timestamp_is_the_event_time(tmp_path, table_file):
    path, table = table_file
    got = run_to_table(DDL.format(path=path),
                       "SELECT id, _timestamp, t._timestamp AS again FROM t "
                       "WHERE _timestamp < TIMESTAMP '2026-01-01 00:00:01'", tmp_path / "out")
    assert got.schema.names == ["id", "_timestamp", "again"]
    expected = [(i, t) for i, t in zip(table.column("id").to_pylist(),
                                       table.column("ts").to_pylist())
                if t < dt.datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)]
    assert list(zip(got.column("id").to_pylist(), got.column("_timestamp").to_pylist())) \
        == expected
    assert got.column("again").equals(got.column("_timestamp"))


def test_timestamp_is_virtual_and_yields_to_a_real_column(tmp_path, table_file):
    path, _ = table_file
    star = run_to_table(DDL.format(path=path), "SELECT * FROM t WHERE id < 3", tmp_path / "a")
    assert star.schema.names == ["id", "arr", "s", "ts"]
    real = DDL.replace("s TEXT", "_timestamp TEXT").format(path=tmp_path / "b.parquet")
    pq.write_table(pa.table({"id": [1], "arr": pa.array([[1]], pa.list_(pa.int64())),
                             "_timestamp": ["mine"],
                             "ts": pa.array([dt.datetime(2026, 1, 1, tzinfo=UTC)],
                                            pa.timestamp("us", tz="UTC"))}),
                   tmp_path / "b.parquet")
    got = run_to_table(real, "SELECT _timestamp FROM t", tmp_path / "c")
    assert got.column(0).to_pylist() == ["mine"]


def test_timestamp_without_event_time_is_processing_time(tmp_path, table_file):
    path, _ = table_file
    before = dt.datetime.now(UTC)
    got = run_to_table(f"CREATE TABLE t WITH (connector = 'filesystem', path = '{path}');",
                       "SELECT id, _timestamp FROM t WHERE id < 5", tmp_path / "out")
    after = dt.datetime.now(UTC)
    assert all(before <= v <= after for v in got.column("_timestamp").to_pylist())


@pytest.mark.parametrize("parallelism", [1, 2])
def test_unnest_of_rows_gives_a_column_per_field(tmp_path, duck, parallelism):
    # Flink: CROSS JOIN UNNEST(array of ROW) AS u(a, b) names each field of the element
    item = pa.struct([("name", pa.string()), ("qty", pa.int64())])
    t = pa.table({"id": pa.array(range(60), pa.int64()),
                  "items": pa.array([None if i % 9 == 0 else
                                     [None if (i + k) % 7 == 0 else
                                      {"name": f"n{i}_{k}", "qty": None if k == 2 else i * k}
                                      for k in range(i % 4)] for i in range(60)],
                                    pa.list_(item))})
    pq.write_table(t, tmp_path / "t.parquet", row_group_size=16)
    got = run_to_table(f"CREATE TABLE t WITH (connector = 'filesystem', path = "
                       f"'{tmp_path / 't.parquet'}');",
                       "SELECT id, n, q FROM t CROSS JOIN UNNEST(items) AS u(n, q) "
                       "WHERE q IS NULL OR q % 2 = 0", tmp_path / "out", parallelism)
    expected = duck.sql("SELECT id, e.name AS n, e.qty AS q FROM (SELECT id, unnest(items) "
                        "AS e FROM t) WHERE e.qty IS NULL OR e.qty % 2 = 0").to_arrow_table()
    assert normalized_rows(got) == normalized_rows(expected)
    with pytest.raises(PlanError, match="the alias names 3"):
        compile_sql(f"CREATE TABLE t WITH (connector = 'filesystem', path = "
                    f"'{tmp_path / 't.parquet'}');"
                    "SELECT * FROM t CROSS JOIN UNNEST(items) AS u(a, b, c)")
