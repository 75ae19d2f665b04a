"""OVER aggregates, Top-N and deduplication reviewed from outside, with the queries of Flink's
planner IT cases (OverAggregateITCase, RankITCase, DeduplicateITCase, WindowRankITCase,
WindowDeduplicateITCase; stream), their text kept, their tables Parquet files. Compared with
Flink's expected rows where DuckDB cannot say (processing time), at parallelism 1 and 2.

Found wrong before: deduplication keeping the last row on processing time (``ORDER BY
proctime DESC``, DeduplicateITCase.testLastRowOnProctime) kept the first row of the last
batch, not the last row: PROCTIME() is read once per batch, so the rows of a batch tie, and
ties went to the earlier row."""

from __future__ import annotations

import pyarrow as pa
import pytest

from tests.changelog_helpers import run_folded
from tests.helpers import normalized_rows

# ---- DeduplicateITCase: first and last row on processing time -----------------------------

_TUPLE_DATA3 = [(1, 1, "Hi"), (2, 2, "Hello"), (3, 2, "Hello world"),
                (4, 3, "Hello world, how are you?"), (5, 3, "I am fine."),
                (6, 3, "Luke Skywalker"), (7, 4, "Comment#1"), (8, 4, "Comment#2"),
                (9, 4, "Comment#3"), (10, 4, "Comment#4"), (11, 5, "Comment#5"),
                (12, 5, "Comment#6"), (13, 5, "Comment#7"), (14, 5, "Comment#8"),
                (15, 5, "Comment#9"), (16, 6, "Comment#10"), (17, 6, "Comment#11"),
                (18, 6, "Comment#12"), (19, 6, "Comment#13"), (20, 6, "Comment#14"),
                (21, 6, "Comment#15")]


def _tuple_data3(key_type: str) -> pa.Table:
    a, b, c = zip(*_TUPLE_DATA3)
    keys = pa.array(b, pa.int64()) if key_type == "BIGINT" else pa.array([str(x) for x in b])
    return pa.table({"a": pa.array(a, pa.int32()), "b": keys, "c": pa.array(c)})


_DEDUP = """
SELECT a, b, c
FROM (
  SELECT *,
    ROW_NUMBER() OVER (PARTITION BY b ORDER BY {order}) as rowNum
  FROM T
)
WHERE rowNum = 1"""


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("key_type", ["BIGINT", "STRING"])   # the top-1 slots; the sort
@pytest.mark.parametrize("order,rows", [
    ("proctime", [1, 2, 4, 7, 11, 16]),            # testFirstRowOnProctime
    ("proctime()", [1, 2, 4, 7, 11, 16]),          # testFirstRowOnBuiltinProctime
    ("proctime DESC", [1, 3, 6, 10, 15, 21]),      # testLastRowOnProctime
    ("proctime() DESC", [1, 3, 6, 10, 15, 21]),    # testLastRowOnBuiltinProctime
])
def test_dedup_on_processing_time_keeps_the_first_or_last_row(tmp_path, order, rows,
                                                              key_type, parallelism):
    """Rows read in one batch share their PROCTIME(): the last row is the last one read."""
    got = run_folded(tmp_path, {"T": _tuple_data3(key_type)}, _DEDUP.format(order=order),
                     parallelism, {"T": f"a INT, b {key_type}, c STRING, proctime AS PROCTIME()"},
                     row_group_rows=None)   # one reader: the rows arrive in file order
    expected = [r for r in _TUPLE_DATA3 if r[0] in rows]
    if key_type == "STRING":
        expected = [(a, str(b), c) for a, b, c in expected]
    assert got == normalized_rows(pa.table(dict(zip("abc", map(list, zip(*expected))))))
