"""VALUES: ``(VALUES …) AS t(a, b)`` in FROM, ``INSERT INTO t VALUES …`` and a SELECT without
FROM (one row), as Flink and PostgreSQL write them; before, each was refused. Results equal
DuckDB's at parallelism 1 and 2; malformed VALUES are refused with their position."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from caudal.errors import CaudalError
from caudal.job import compile_sql, run_sql
from tests.changelog_helpers import fold, run_changelog
from tests.conftest import make_bids
from tests.helpers import normalized_rows, run_to_table

ROWS = "(VALUES (1, 'a', 2.5), (2, NULL, 3), (3, 'c', NULL), (1000, 'a', -1)) AS t(x, y, z)"


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("query", [
    f"SELECT * FROM {ROWS}",
    f"SELECT x * 2 AS x2, upper(y) AS y FROM {ROWS} WHERE z IS NOT NULL",
    "SELECT 1 AS one, 'two' AS two, 1 + 2 AS three",
    "SELECT * FROM (VALUES (1), (2), (3)) AS v(n) UNION ALL SELECT 4 AS n",
])
def test_values_equal_duckdb(tmp_path, duck, query, parallelism):
    got = run_to_table("", query, tmp_path / "out", parallelism=parallelism)
    assert normalized_rows(got) == normalized_rows(duck.sql(query).to_arrow_table())


@pytest.mark.parametrize("parallelism", [1, 2])
def test_values_grouped_and_joined_with_a_table_equal_duckdb(tmp_path, duck, parallelism):
    path = tmp_path / "bids.parquet"
    bids = make_bids(500, seed=2)
    pq.write_table(bids, path)
    ddl = f"CREATE TABLE bids WITH (connector = 'filesystem', path = '{path}');"
    query = ("SELECT v.label, count(*) AS n FROM bids JOIN (VALUES (1000, 'low'), "
             "(1050, 'mid'), (1099, 'high')) AS v(auction, label) ON bids.auction = v.auction "
             "GROUP BY v.label")
    changes = run_changelog(ddl, query, tmp_path / "out", parallelism=parallelism)
    assert normalized_rows(fold(changes)) == normalized_rows(duck.sql(query).to_arrow_table())


def test_insert_values_into_a_table(tmp_path):
    out = tmp_path / "out"
    run_sql(f"""CREATE TABLE t (id INT, name STRING, price DOUBLE) WITH (
                    connector = 'filesystem', path = '{out}', format = 'parquet');
                INSERT INTO t VALUES (1, 'x', 1.5), (2, 'y', NULL);""")
    got = pq.read_table(out).to_pylist()
    assert sorted(got, key=lambda r: r["id"]) == [
        {"id": 1, "name": "x", "price": 1.5}, {"id": 2, "name": "y", "price": None}]


@pytest.mark.parametrize("query,message", [
    ("SELECT * FROM (VALUES (1, 2), (3)) AS t(a, b)", "VALUES rows differ in length"),
    ("SELECT * FROM (VALUES (1, 2)) AS t(a)", "2 column(s) but 1 name(s)"),
    # as in PostgreSQL: the column's type is INT, and 'b' is no INT
    ("SELECT * FROM (VALUES (1, 'a'), ('b', 2)) AS t(a, b)", "cannot cast TEXT to INT"),
])
def test_malformed_values_are_refused_with_position(query, message):
    with pytest.raises(CaudalError) as raised:
        compile_sql(query + ";")
    assert message in str(raised.value) and raised.value.line == 1
