"""Top-N per window: ROW_NUMBER / RANK / DENSE_RANK per (window, partition) when the window
is complete, equal to DuckDB's window functions, also when a large buffer is pruned early."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from caudal.operators import window_rank
from caudal.operators.base import OperatorContext
from caudal.operators.window_rank import WindowRank
from caudal.types import TIMESTAMP
from caudal.watermark import WATERMARK_MAX

S = 1_000_000


def windows_table(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    end = rng.integers(1, 8, n) * 10 * S
    return pa.table({
        "window_start": pa.array(end - 10 * S).view(TIMESTAMP),
        "window_end": pa.array(end).view(TIMESTAMP),
        "k": pa.array(rng.integers(0, 4, n), mask=rng.random(n) < 0.1),
        "c": pa.array(rng.integers(0, 15, n), mask=rng.random(n) < 0.1),
        "d": pa.array(rng.integers(0, 3, n)),
    }).sort_by("window_end")


def run(table: pa.Table, function: str, limit: int | None, batch: int = 97) -> pa.Table:
    schema = table.schema.append(pa.field("rn", pa.int64()))
    op = WindowRank("window_end", None, ["window_start", "window_end", "k"],
                    [("c", True, True), ("d", False, False)], function, limit, schema)
    op.open(OperatorContext())
    out = []
    ends = table.column("window_end").cast(pa.int64()).to_numpy()
    for i, b in enumerate(table.to_batches(max_chunksize=batch)):
        out += op.process(b)
        # a window aggregate emits a window's rows, then a watermark at its end
        last = int(ends[min((i + 1) * batch, len(ends)) - 1])
        out += op.on_watermark(last - 1)
    out += op.on_watermark(WATERMARK_MAX)
    assert op.state_rows() == 0
    return pa.Table.from_batches(out, schema=schema)


def reference(table: pa.Table, function: str, limit: int | None) -> pa.Table:
    con = duckdb.connect()
    con.register("t", table)
    where = f"WHERE rn <= {limit}" if limit is not None else ""
    return con.sql(f"SELECT * FROM (SELECT *, {function}() OVER (PARTITION BY window_start, "
                   f"window_end, k ORDER BY c DESC NULLS FIRST, d ASC NULLS LAST) AS rn "
                   f"FROM t) {where}").to_arrow_table()


def _rows(table: pa.Table) -> list[tuple]:
    # ROW_NUMBER breaks ties arbitrarily: compare what ties cannot change
    cols = ["window_end", "k", "rn", "c", "d"]
    return sorted(zip(*[table[c].cast(pa.int64()).to_pylist() for c in cols]),
                  key=lambda r: tuple((v is None, v or 0) for v in r))


@pytest.mark.parametrize("function", ["row_number", "rank", "dense_rank"])
@pytest.mark.parametrize("limit", [1, 3, None])
def test_ranks_match_duckdb(function, limit):
    table = windows_table(3000, seed=len(function))
    assert _rows(run(table, function, limit)) == _rows(reference(table, function, limit))


@pytest.mark.parametrize("function", ["row_number", "rank", "dense_rank"])
def test_pruning_a_large_buffer_keeps_the_answer(monkeypatch, function):
    monkeypatch.setattr(window_rank, "_PRUNE_ROWS", 50)
    table = windows_table(2000, seed=11)
    # one window at a time would not exercise pruning: put everything in one window
    table = table.set_column(1, "window_end", pa.array(np.full(2000, 10 * S)).view(TIMESTAMP))
    table = table.set_column(0, "window_start", pa.array(np.zeros(2000, np.int64)).view(
        TIMESTAMP))
    got = run(table, function, 2, batch=31)
    assert _rows(got) == _rows(reference(table, function, 2))


def test_rows_of_a_window_already_ranked_are_late():
    table = windows_table(10, seed=1)
    schema = table.schema.append(pa.field("rn", pa.int64()))
    op = WindowRank("window_end", None, ["window_start", "window_end"], [("c", False, False)],
                    "row_number", None, schema)
    op.open(OperatorContext())
    op.on_watermark(100 * S)
    assert op.process(table.to_batches()[0]) == []
    assert op.ctx.metrics["late_rows"] == 10
