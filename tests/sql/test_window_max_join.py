"""The rows carrying their tumbling window's maximum (Nexmark q7's shape) are planned as one
windowed operator (plan.window_max_join) and give DuckDB's answer: ties, rows exactly on a
window's end (they match the window ending there too), NULL prices, batches spanning
windows, at parallelism 1 and 2, after a SIGKILL and a resume. Shapes that differ are left to
the interval join."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from caudal.job import compile_sql
from tests.helpers import (
    kill_after_checkpoints,
    normalized_rows,
    read_committed,
    run_to_table,
)

WINDOW = "TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '2' SECOND))"


def _q7(select: str = "B.auction, B.price, B.bidder, B.date_time, B.extra",
        inner: str = "max(price) AS maxprice, window_end AS t",
        cond: str = "B.date_time BETWEEN B1.t - INTERVAL '2' SECOND AND B1.t") -> str:
    return (f"SELECT {select} FROM bids AS B JOIN (SELECT {inner} FROM {WINDOW} "
            f"GROUP BY window_start, window_end) AS B1 ON B.price = B1.maxprice WHERE {cond}")


def _duck(select: str = "B.auction, B.price, B.bidder, B.date_time, B.extra",
          cond: str = "B.date_time BETWEEN B1.t - INTERVAL '2' SECOND AND B1.t") -> str:
    return (f"SELECT {select} FROM bids AS B JOIN (SELECT max(price) AS maxprice, "
            f"time_bucket(INTERVAL '2 seconds', date_time) + INTERVAL '2 seconds' AS t, "
            f"time_bucket(INTERVAL '2 seconds', date_time) AS s "
            f"FROM bids GROUP BY ALL) AS B1 ON B.price = B1.maxprice WHERE {cond}")


#: (caudal query, DuckDB query): all fused
FUSED = [
    (_q7(), _duck()),
    # the right side's columns in the output, window_start as the bound, strict bounds
    (_q7("B.auction, B.price, B1.maxprice, B1.t, B1.s",
         "max(price) AS maxprice, window_end AS t, window_start AS s",
         "B.date_time >= B1.s AND B.date_time <= B1.t"),
     _duck("B.auction, B.price, B1.maxprice, B1.t, B1.s",
           "B.date_time >= B1.s AND B.date_time <= B1.t")),
    (_q7("B.bidder, B.price, B.date_time", cond="B1.t > B.date_time AND "
         "B.date_time >= B1.t - INTERVAL '2' SECOND"),
     _duck("B.bidder, B.price, B.date_time", cond="B1.t > B.date_time AND "
           "B.date_time >= B1.t - INTERVAL '2' SECOND")),
    (_q7("B.bidder, B.price, B.date_time",
         cond="B.date_time BETWEEN B1.t - INTERVAL '1' SECOND AND B1.t"),
     _duck("B.bidder, B.price, B.date_time",
           cond="B.date_time BETWEEN B1.t - INTERVAL '1' SECOND AND B1.t")),
]


def _bids(n: int, seed: int = 0) -> pa.Table:
    """Bids with few distinct prices (ties), times on a 250 ms grid (many exactly on a
    window's end), NULL prices; in time order, as the watermark wants."""
    rng = np.random.default_rng(seed)
    base = np.datetime64("2026-01-01T00:00:00", "us").astype(np.int64)
    ticks = np.sort(rng.integers(0, 4 * 60, n))  # 60 s of event time
    price = rng.integers(0, 12, n)
    return pa.table({
        "auction": pa.array(rng.integers(0, 50, n), pa.int64()),
        "bidder": pa.array(np.arange(n), pa.int64()),
        "price": pa.array(price, pa.int64(), mask=rng.random(n) < 0.05),
        "date_time": pa.array(base + ticks * 250_000, pa.timestamp("us", tz="UTC")),
        "extra": pa.array([f"e{i % 7}" for i in range(n)]),
    })


def _ddl(path: Path) -> str:
    return (f"CREATE TABLE bids (auction BIGINT, bidder BIGINT, price BIGINT, date_time "
            f"TIMESTAMP, extra TEXT, WATERMARK FOR date_time AS date_time - INTERVAL '1' "
            f"SECOND) WITH (connector = 'filesystem', path = '{path}');")


@pytest.fixture(scope="module")
def bids(tmp_path_factory) -> tuple[Path, pa.Table]:
    path = tmp_path_factory.mktemp("bids") / "bids.parquet"
    table = _bids(3000)
    pq.write_table(table, path, row_group_size=400)
    return path, table


def _vertices(select: str, path: Path) -> list[str]:
    graph = compile_sql(f"{_ddl(path)}\nCREATE TABLE o WITH (connector = 'blackhole');\n"
                        f"INSERT INTO o {select};").graph
    return [v.name for v in graph.vertices]


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("query,duck_query", FUSED)
def test_fused_equals_duckdb(tmp_path, duck, bids, query, duck_query, parallelism):
    path, table = bids
    names = _vertices(query, path)
    assert "window max join" in names and "interval join" not in names, names
    got = run_to_table(_ddl(path), query, tmp_path / "out", parallelism=parallelism,
                       batch_rows=97)
    duck.register("bids", table)
    expected = duck.sql(duck_query).to_arrow_table()
    assert expected.num_rows > 10
    assert normalized_rows(got) == normalized_rows(expected)


@pytest.mark.parametrize("query", [
    _q7(inner="min(price) AS maxprice, window_end AS t"),  # not max
    _q7(cond="B.date_time BETWEEN B1.t - INTERVAL '3' SECOND AND B1.t"),  # two windows back
    _q7(cond="B.date_time BETWEEN B1.t - INTERVAL '2' SECOND AND B1.t AND B.auction > 3"),
    _q7().replace("FROM bids AS B JOIN", "FROM (SELECT * FROM bids WHERE auction > 3) AS B "
                                         "JOIN"),  # other rows than the max is taken over
])
def test_other_shapes_stay_interval_joins(bids, query):
    names = _vertices(query, bids[0])
    assert "interval join" in names and "window max join" not in names, names


def test_flink_and_bench_q7_are_fused(bids):
    from tests.sql.test_joins_sql import DDL, _bench_query

    query, _ = _bench_query("q7")
    graph = compile_sql(f"{DDL}\nCREATE TABLE o WITH (connector = 'blackhole');\n"
                        f"INSERT INTO o {query};").graph
    assert "window max join" in [v.name for v in graph.vertices]


@pytest.mark.timeout(120)
def test_killed_job_resumes_with_the_same_rows(tmp_path):
    """SIGKILL after two checkpoints at parallelism 2, resume at 1: the committed rows are
    those of a run never killed (the operator's maxima and candidates restored, with the
    row locators of the columns read late, plan.late_columns)."""
    path = tmp_path / "bids.parquet"
    pq.write_table(_bids(120_000, seed=5), path, row_group_size=5000)
    query = _q7()
    graph = compile_sql(f"{_ddl(path)}\nCREATE TABLE o WITH (connector = 'blackhole');\n"
                        f"INSERT INTO o {query};").graph
    assert next(v.source for v in graph.vertices if v.source).late_columns == [
        "auction", "bidder", "extra"]
    reference = run_to_table(_ddl(path), query, tmp_path / "reference")
    out, ck = tmp_path / "out", tmp_path / "ck"
    script = tmp_path / "job.sql"
    script.write_text(f"{_ddl(path)}\nCREATE TABLE out WITH (connector = 'filesystem', "
                      f"path = '{out}', format = 'parquet');\nINSERT INTO out {query};")
    kill_after_checkpoints(script, ck, batch_rows=512, first=2, then=1)
    assert reference.num_rows > 10
    assert normalized_rows(read_committed(out)) == normalized_rows(reference)


#: (seconds, price) read in this order a row at a time (watermark: the latest time - 1 s)
LATE_ROWS = [
    (0.5, 5), (1.0, 3), (4.5, 7),  # watermark 3.5 s: [0 s, 2 s) fired, [2 s, 4 s) open
    (2.5, 9),   # behind the watermark, its window open: counts (the max of [2 s, 4 s))
    (1.5, 10),  # behind the watermark, its window fired: late, dropped everywhere
    (2.0, 5),   # behind the watermark, in [2 s, 4 s), on the end of fired [0 s, 2 s): = max
    (3.0, 4), (6.0, 1), (5.0, 7), (9.0, 2),
    (8.5, 2),   # a tie with the 9.0 s row, in its open window
    (7.9, 1)]   # watermark 8 s: [6 s, 8 s) fired (at its end): late


def _kept(rows: list[tuple[float, int]], size: float = 2.0, delay: float = 1.0
          ) -> list[bool]:
    """The window aggregate's rule: a row is late once its window fired (end <= the
    watermark when it arrives), not as soon as it is behind the watermark."""
    kept, top = [], float("-inf")
    for t, _ in rows:
        kept.append((t // size + 1) * size > top - delay)
        top = max(top, t)
    return kept


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("query,duck_query", FUSED)
def test_rows_behind_the_watermark_count_as_in_the_window_aggregate(
        tmp_path, duck, query, duck_query, parallelism):
    """The fused operator judged a row late as soon as it was behind the watermark, where the
    window aggregate it replaces (0019f28, Flink's rule) still counts it in its window not yet
    fired: the fused q7 lost the 2.5 s row (the max of [2 s, 4 s)) and the 2.0 s row (on
    the end of [0 s, 2 s), already emitted, and equal to its max), and at another timing the
    same SQL planned without the fusion had them. Now: the batch answer over the rows the
    aggregate keeps (the 1.5 s and 7.9 s rows, whose windows fired, are dropped by both)."""
    base = int(np.datetime64("2026-01-01T00:00:00", "us").astype(np.int64))
    n = len(LATE_ROWS)
    table = pa.table({
        "auction": pa.array(range(n), pa.int64()),
        "bidder": pa.array(range(100, 100 + n), pa.int64()),
        "price": pa.array([p for _, p in LATE_ROWS], pa.int64()),
        "date_time": pa.array([base + int(t * 1e6) for t, _ in LATE_ROWS],
                              pa.timestamp("us", tz="UTC")),
        "extra": pa.array([f"e{i}" for i in range(n)]),
    })
    path = tmp_path / "bids.parquet"
    pq.write_table(table, path)  # one row group: one source subtask reads it, in order
    assert "window max join" in _vertices(query, path)
    got = run_to_table(_ddl(path), query, tmp_path / "out", parallelism=parallelism,
                       batch_rows=1)
    kept = table.filter(pa.array(_kept(LATE_ROWS)))
    assert kept.num_rows == n - 2
    duck.register("bids", kept)
    expected = duck.sql(duck_query).to_arrow_table()
    assert normalized_rows(got) == normalized_rows(expected)


def test_a_fired_windows_max_survives_a_restore_for_the_rows_on_its_end():
    """The maximum of a window that fired is kept (in the snapshot too) until the next
    window fires: a row exactly on its end, behind the watermark but in an open window,
    still matches it after a restore; once the next window fired the row is late."""
    from caudal.operators.base import OperatorContext
    from caudal.operators.window_max_join import WindowMaxJoin
    from caudal.plan.windows import WindowSpec

    schema = pa.schema([("price", pa.int64()), ("date_time", pa.timestamp("us"))])
    out = pa.schema([("price", pa.int64()), ("date_time", pa.timestamp("us")),
                     ("t", pa.timestamp("us"))])

    def op() -> WindowMaxJoin:
        o = WindowMaxJoin(WindowSpec("tumble", 2_000_000), -2_000_000, 0, "date_time",
                          "price", schema, [("row", "price"), ("row", "date_time"),
                                            ("end", None)], out, 2_000_000)
        o.open(OperatorContext())
        return o

    def rows(*pairs: tuple[float, int]) -> pa.RecordBatch:
        return pa.RecordBatch.from_arrays([
            pa.array([p for _, p in pairs], pa.int64()),
            pa.array([int(t * 1e6) for t, _ in pairs], pa.timestamp("us"))], schema=schema)

    first = op()
    assert first.process(rows((0.5, 5), (1.0, 3), (4.5, 7))) == ()
    emitted = first.on_watermark(3_500_000)  # [0 s, 2 s) fires
    assert pa.Table.from_batches(emitted).column("price").to_pylist() == [5]
    second = op()
    second.restore(first.snapshot(1))
    got = pa.Table.from_batches(second.process(rows((2.0, 5), (2.0, 4))))
    two = dt.datetime(1970, 1, 1, 0, 0, 2)
    assert got.to_pylist() == [{"price": 5, "date_time": two, "t": two}]
    second.on_watermark(4_000_000)  # [2 s, 4 s) fires: a row at 2 s is late now
    assert second.process(rows((2.0, 5))) == ()
    assert second.ctx.metrics["late_rows"] == 1
