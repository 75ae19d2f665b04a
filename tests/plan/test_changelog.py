"""The changelog representation: op codes, weights, update pairs kept consistent by filters,
and the planner's knowledge of which nodes update."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from caudal.job import compile_sql
from caudal.plan.changelog import (
    OP,
    OP_TYPE,
    filter_changelog,
    interleave_updates,
    repair_pairs,
    rows_equal,
    weights,
)


def test_weights_are_the_sign_of_the_op():
    batch = pa.record_batch([pa.array([1, 2, 3, 4]), pa.array([1, -1, -2, 2], OP_TYPE)],
                            names=["x", OP])
    assert weights(batch).tolist() == [1, -1, -1, 1]
    assert weights(batch.drop_columns([OP])).tolist() == [1, 1, 1, 1]


def test_broken_pairs_are_relabelled():
    ops = np.array([-2, 2, -2, 1, 2, -2, 2, -2], dtype=np.int8)
    assert repair_pairs(ops).tolist() == [-2, 2, -1, 1, 1, -2, 2, -1]


def test_filter_keeps_pairs_consistent():
    batch = pa.record_batch([pa.array(["a", "a", "b", "b"]), pa.array([1, 5, 2, 9]),
                             pa.array([-2, 2, -2, 2], OP_TYPE)], names=["k", "n", OP])
    kept = filter_changelog(batch, pa.array([True, False, False, True]))
    assert kept.column(OP).to_pylist() == [-1, 1]
    assert kept.column("k").to_pylist() == ["a", "b"]


def test_interleave_and_row_equality():
    before = pa.table({"k": [1, 2], "v": [None, 3]})
    after = pa.table({"k": [1, 2], "v": [None, 4]})
    rows, ops = interleave_updates(before, after)
    assert rows.column("v").to_pylist() == [None, None, 3, 4]
    assert ops.tolist() == [-2, 2, -2, 2]
    same = rows_equal([before.column("k"), before.column("v")],
                      [after.column("k"), after.column("v")])
    assert same.tolist() == [True, False]
    structs = pa.array([{"a": 1, "b": None}, {"a": 2, "b": "x"}])
    other = pa.array([{"a": 1, "b": None}, {"a": 2, "b": "y"}])
    assert rows_equal([structs], [other]).tolist() == [True, False]


def test_the_plan_knows_which_nodes_update(tmp_path):
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"k": [1, 2], "v": [3, 4]}), path)
    script = (f"CREATE TABLE t WITH (connector = 'filesystem', path = '{path}');\n"
              "SELECT k, count(*) AS n FROM t WHERE v > 0 GROUP BY k HAVING count(*) > 0;")
    plan = compile_sql(script).job.outputs[0].plan
    marks = []
    node = plan.input
    while True:
        marks.append((type(node).__name__, node.updating))
        if not node.children():
            break
        node = node.children()[0]
    assert marks == [("Project", True), ("Filter", True), ("UpdatingAggregate", True),
                     ("Project", False), ("Filter", False), ("Scan", False)]
