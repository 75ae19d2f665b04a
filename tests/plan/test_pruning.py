"""Row groups are skipped only when their statistics prove the filter rejects every row; the
answer is the same with and without skipping."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from caudal.connectors.filesystem import FileSystemSource
from caudal.job import compile_sql
from caudal.plan.pruning import ColumnStats, cannot_match
from caudal.sql.dialect import parse_expression
from caudal.sql.expressions import translate
from caudal.sql.scope import Scope, ScopeColumn
from tests.helpers import normalized_rows, run_to_table

SCOPE = Scope([ScopeColumn("t", "a", pa.int64(), "a"), ScopeColumn("t", "s", pa.string(), "s"),
               ScopeColumn("t", "ts", pa.timestamp("us", tz="UTC"), "ts")])
STATS = {"a": ColumnStats(10, 20, 0, 100), "s": ColumnStats("b", "d", 5, 100),
         "ts": ColumnStats(dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 2), 0, 100)}


@pytest.mark.parametrize("sql,skip", [
    ("a > 20", True), ("a > 19", False), ("a >= 21", True), ("a < 10", True), ("a <= 10", False),
    ("a = 25", True), ("a = 15", False), ("25 < a", True), ("a > 30 OR a < 5", True),
    ("a > 30 OR a < 15", False), ("a > 30 AND s = 'c'", True), ("s = 'z'", True),
    ("s IS NULL", False), ("a IS NULL", True), ("a + 1 > 100", False),
    ("ts > TIMESTAMP '2026-01-03 00:00:00'", True), ("ts > TIMESTAMP '2026-01-01 12:00:00'",
                                                     False),
])
def test_cannot_match(sql, skip):
    assert cannot_match(translate(parse_expression(sql), SCOPE), STATS) is skip


def test_skipped_row_groups_give_the_same_answer(tmp_path, duck):
    n = 10_000
    table = pa.table({"a": pa.array(np.arange(n), pa.int64()),
                      "b": pa.array(np.arange(n) % 7, pa.int64())})
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=1000)
    ddl = f"CREATE TABLE t WITH (connector = 'filesystem', path = '{path}');"
    query = "SELECT a, b FROM t WHERE a >= 7500 AND b = 3"
    compiled = compile_sql(ddl + f"\n{query};")
    spec = compiled.graph.vertices[0].source
    assert spec.prune_filter is not None
    source = FileSystemSource(spec)
    source.open(source.partitions(1))
    rows = 0
    while not source.finished():
        batch = source.poll(4096, 0.01)
        rows += batch.num_rows if batch is not None else 0
    assert source.row_groups_skipped == 7
    assert rows == 3000  # row groups 7, 8 and 9 are read whole; the filter runs later
    got = run_to_table(ddl, query, tmp_path / "out", parallelism=2)
    t = table  # noqa: F841
    expected = duck.sql(query).to_arrow_table()
    assert normalized_rows(got) == normalized_rows(expected)
