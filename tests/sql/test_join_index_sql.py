"""Updating joins on one integer-like key probe the other side through its persistent key ->
rows index (operators.join_index): over random inputs with NULL keys, repeated keys on both
sides, int32 / timestamp / far-apart int64 keys, small batches of both sides interleaved,
inner, outer and semi joins fold to DuckDB's answer at parallelism 1, 2 and 3."""

from __future__ import annotations

import tempfile
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caudal.job import compile_sql, run_sql
from tests.changelog_helpers import fold, read_changes
from tests.helpers import normalized_rows

pytestmark = pytest.mark.timeout(300)

QUERIES = {
    "inner": "SELECT l.k, l.a, r.b FROM l JOIN r ON l.k = r.k",
    "left": "SELECT l.k, l.a, r.b FROM l LEFT JOIN r ON l.k = r.k",
    "full": "SELECT l.a, r.b FROM l FULL JOIN r ON l.k = r.k AND l.a < r.b + 3",
    "semi": "SELECT l.k, l.a FROM l WHERE l.k IN (SELECT k FROM r WHERE b > 2)",
}

_KEY = st.one_of(st.none(), st.integers(-3, 9))


def _table(rows: list[tuple], dtype: pa.DataType, scale: int, name: str) -> pa.Table:
    keys = pa.array([None if k is None else k * scale for k, _ in rows], pa.int64())
    return pa.table({"k": keys.cast(dtype), name: pa.array([v for _, v in rows], pa.int64())})


@settings(max_examples=12, deadline=None)
@given(left=st.lists(st.tuples(_KEY, st.integers(0, 9)), min_size=1, max_size=80),
       right=st.lists(st.tuples(_KEY, st.integers(0, 9)), min_size=1, max_size=40),
       kind=st.sampled_from([(pa.int64(), 1), (pa.int64(), 10**12), (pa.int32(), 1000),
                             (pa.timestamp("us"), 10**6)]),
       parallelism=st.sampled_from([1, 2, 3]))
def test_joins_through_the_index_equal_duckdb(left, right, kind, parallelism):
    dtype, scale = kind
    tables = {"l": _table(left, dtype, scale, "a"), "r": _table(right, dtype, scale, "b")}
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for name, table in tables.items():
        con.register(name, table)
    with tempfile.TemporaryDirectory() as tmp:
        script = "SET updating_flush = '0';\n"
        for name, table in tables.items():
            path = Path(tmp) / f"{name}.parquet"
            pq.write_table(table, path, row_group_size=7)
            script += f"CREATE TABLE {name} WITH (connector = 'filesystem', path = '{path}');\n"
        for name, query in QUERIES.items():
            script += (f"CREATE TABLE out_{name} WITH (connector = 'filesystem', path = "
                       f"'{Path(tmp) / name}', format = 'debezium_json');\n"
                       f"INSERT INTO out_{name} {query};\n")
        run_sql(script, parallelism=parallelism, batch_rows=5)
        outputs = compile_sql(script).job.outputs
        for (name, query), output in zip(QUERIES.items(), outputs):
            got = fold(read_changes(Path(tmp) / name, output.plan.table.schema))
            expected = con.sql(query).to_arrow_table()
            assert normalized_rows(got) == normalized_rows(expected), name
