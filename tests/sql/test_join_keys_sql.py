"""Updating joins on text keys and on two-column keys probe the other side through its
persistent hashed key -> rows index (operators.join_index), and sides over a changelog
(a GROUP BY's retracting result) drop removed rows from it in place: over random inputs with
NULL, empty and unicode text, repeated keys on both sides and small batches interleaved,
inner, LEFT, FULL and semi joins fold to DuckDB's answer at parallelism 1, 2 and 3; and a
join on a text key SIGKILLed after checkpoints resumes (its index rebuilt from the restored
rows) to DuckDB's answer."""

from __future__ import annotations

import tempfile
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caudal.job import compile_sql, run_sql
from tests.changelog_helpers import fold, read_changes
from tests.helpers import kill_after_checkpoints, normalized_rows

pytestmark = pytest.mark.timeout(300)

QUERIES = {
    "inner_text": "SELECT l.s, l.a, r.b FROM l JOIN r ON l.s = r.s",
    "left_two": "SELECT l.s, l.i, l.a, r.b FROM l LEFT JOIN r ON l.s = r.s AND l.i = r.i",
    "full_text": "SELECT l.a, r.b FROM l FULL JOIN r ON l.s = r.s AND l.a < r.b + 3",
    "semi_two": "SELECT l.s, l.a FROM l WHERE (l.s, l.i) IN (SELECT s, i FROM r WHERE b > 2)",
    # a side over a changelog: the counts per text key are retracted and re-inserted
    "updating_text": "SELECT c.s, c.n, r.b FROM (SELECT s, count(*) AS n FROM l GROUP BY s) "
                     "AS c JOIN r ON c.s = r.s",
    "updating_left_two": "SELECT r.s, r.i, r.b, c.n FROM r LEFT JOIN (SELECT s, i, sum(a) "
                         "AS n FROM l GROUP BY s, i) AS c ON r.s = c.s AND r.i = c.i",
}

_TEXT = st.one_of(st.none(), st.sampled_from(["", "a", "b", "ab", "é", "日本", " ", "a b"]))
_INT = st.one_of(st.none(), st.integers(0, 2))


def _table(rows: list[tuple], name: str) -> pa.Table:
    return pa.table({"s": pa.array([r[0] for r in rows], pa.string()),
                     "i": pa.array([r[1] for r in rows], pa.int64()),
                     name: pa.array([r[2] for r in rows], pa.int64())})


def _answers(tables: dict[str, pa.Table], names: list[str], parallelism: int,
             tmp: Path, batch_rows: int) -> None:
    con = duckdb.connect()
    for name, table in tables.items():
        con.register(name, table)
    script = "SET updating_flush = '0';\n"
    for name, table in tables.items():
        path = tmp / f"{name}.parquet"
        pq.write_table(table, path, row_group_size=7)
        script += f"CREATE TABLE {name} WITH (connector = 'filesystem', path = '{path}');\n"
    for name in names:
        script += (f"CREATE TABLE out_{name} WITH (connector = 'filesystem', path = "
                   f"'{tmp / name}', format = 'debezium_json');\n"
                   f"INSERT INTO out_{name} {QUERIES[name]};\n")
    run_sql(script, parallelism=parallelism, batch_rows=batch_rows)
    outputs = compile_sql(script).job.outputs
    for name, output in zip(names, outputs):
        got = fold(read_changes(tmp / name, output.plan.table.schema))
        expected = con.sql(QUERIES[name]).to_arrow_table()
        assert normalized_rows(got) == normalized_rows(expected), name


@settings(max_examples=12, deadline=None)
@given(left=st.lists(st.tuples(_TEXT, _INT, st.integers(0, 9)), min_size=1, max_size=80),
       right=st.lists(st.tuples(_TEXT, _INT, st.integers(0, 9)), min_size=1, max_size=40),
       parallelism=st.sampled_from([1, 2, 3]))
def test_text_and_two_column_joins_equal_duckdb(left, right, parallelism):
    with tempfile.TemporaryDirectory() as tmp:
        _answers({"l": _table(left, "a"), "r": _table(right, "b")}, list(QUERIES),
                 parallelism, Path(tmp), batch_rows=5)


def _big(tmp: Path) -> dict[str, Path]:
    rng = np.random.default_rng(11)
    n, m = 120_000, 8_000
    words = np.array([f"k-{i}-é" for i in range(m + 300)] + ["", None], dtype=object)
    left = pa.table({"s": pa.array(words[rng.integers(0, len(words), n)], pa.string()),
                     "i": pa.array(rng.integers(0, 2, n)),
                     "a": pa.array(rng.integers(0, 10, n))})
    right = pa.table({"s": pa.array(words[rng.permutation(m)], pa.string()),
                      "i": pa.array(rng.integers(0, 2, m)),
                      "b": pa.array(rng.integers(0, 10, m))})
    paths = {"l": tmp / "l.parquet", "r": tmp / "r.parquet"}
    pq.write_table(left, paths["l"], row_group_size=4000)
    pq.write_table(right, paths["r"], row_group_size=1000)
    return paths


@pytest.mark.slow
@pytest.mark.parametrize("first,then", [(2, 1), (1, 2)])
def test_killed_text_join_resumes_equal_duckdb(tmp_path, first, then):
    """Inner join on text and a LEFT join on (text, int) over a changelog side, SIGKILLed
    after checkpoints and resumed at another parallelism: the restored sides' indexes are
    built from their rows, and the folded changelogs equal DuckDB's answers."""
    paths = _big(tmp_path)
    names = ["inner_text", "updating_left_two"]
    out, ck = tmp_path / "out", tmp_path / "ck"
    script = "SET updating_flush = '20ms';\n" + "".join(
        f"CREATE TABLE {t} WITH (connector = 'filesystem', path = '{p}');\n"
        for t, p in paths.items())
    for name in names:
        script += (f"CREATE TABLE out_{name} WITH (connector = 'filesystem', path = "
                   f"'{out / name}', format = 'debezium_json');\n"
                   f"INSERT INTO out_{name} {QUERIES[name]};\n")
    job = tmp_path / "job.sql"
    job.write_text(script)
    kill_after_checkpoints(job, ck, batch_rows=2048, first=first, then=then)
    con = duckdb.connect()
    for t, p in paths.items():
        con.register(t, pq.read_table(p))
    outputs = compile_sql(script).job.outputs
    for name, output in zip(names, outputs):
        got = normalized_rows(fold(read_changes(out / name, output.plan.table.schema)))
        assert got == normalized_rows(con.sql(QUERIES[name]).to_arrow_table()), name
