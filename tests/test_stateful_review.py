"""The stateful engine from outside (review, 2026-12-07): late rows beyond the watermark
delay by the documented rule (docs/sql-windows.md: "rows older than the watermark are late"),
at parallelism 1 with one file read a row at a time, where which rows are late is fixed:
row i is late when its time is below max(time of rows before it) - delay."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from caudal.errors import PlanError
from caudal.job import run_sql
from tests.helpers import normalized_rows, read_committed, run_to_table

S = 1_000_000
BASE = 1_767_225_600 * S   # 2026-01-01 00:00:00 UTC in µs


def _write(path, ms: list[int], values: list[int]) -> None:
    path.mkdir()
    pq.write_table(pa.table({
        "k": pa.array([1] * len(ms), pa.int64()),
        "v": pa.array(values, pa.int64()),
        "ts": pa.array([BASE + m * 1000 for m in ms], pa.timestamp("us", tz="UTC"))}),
        path / "a.parquet", row_group_size=1)


def _ddl(path, late_data: str = "drop") -> str:
    return (f"CREATE TABLE t (k BIGINT, v BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts - "
            f"INTERVAL '1' SECOND) WITH (connector = 'filesystem', path = '{path}', "
            f"late_data = '{late_data}');")


def test_window_top_n_drops_the_rows_a_window_aggregate_drops(tmp_path):
    """The row at 2.1 s arrives after the one at 3.5 s (watermark 2.5 s): it is late, though
    its window [2 s, 4 s) is still open. The window aggregate dropped it; the window top-N
    over the same table function ranked it (first, with the highest value)."""
    _write(tmp_path / "in", [0, 3500, 2100], [1, 2, 9])
    tvf = "TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '2' SECOND))"
    result = run_sql(_ddl(tmp_path / "in") + f"""
CREATE TABLE agg WITH (connector = 'filesystem', path = '{tmp_path}/agg', format = 'parquet');
CREATE TABLE top WITH (connector = 'filesystem', path = '{tmp_path}/top', format = 'parquet');
INSERT INTO agg SELECT window_start AS ws, count(*) AS n, max(v) AS m FROM {tvf}
GROUP BY window_start, window_end;
INSERT INTO top SELECT ws, v, rn FROM (SELECT window_start AS ws, v, ROW_NUMBER() OVER
  (PARTITION BY window_start, window_end ORDER BY v DESC) AS rn FROM {tvf}) WHERE rn <= 1;
""", batch_rows=1)
    assert normalized_rows(read_committed(tmp_path / "agg")) == [(BASE, 1, 1),
                                                                 (BASE + 2 * S, 1, 2)]
    assert normalized_rows(read_committed(tmp_path / "top")) == [(BASE, 1, 1),
                                                                 (BASE + 2 * S, 2, 1)]
    assert result.late_rows == 2   # once by each


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("kind", ["", "LEFT"])
def test_temporal_join_without_the_version_time_in_the_select(tmp_path, duck, kind,
                                                              parallelism):
    """Flink's currency-rates example selects the rate, not its update time: the versions'
    time column was pruned to NULLs, every version was dropped as late, and the join gave
    no row (LEFT: every row padded)."""
    for name, ms, keys, values in (("orders", [5000, 36000, 900, 2500], [0, 2, 0, 2],
                                    [1, 2, 3, 4]),
                                   ("rates", [1000, 2000, 3000], [0, 2, 2], [10, 20, 30])):
        (tmp_path / name).mkdir()
        pq.write_table(pa.table({
            "k": pa.array(keys, pa.int64()), "v": pa.array(values, pa.int64()),
            "ts": pa.array([BASE + m * 1000 for m in ms], pa.timestamp("us", tz="UTC"))}),
            tmp_path / name / "a.parquet")
    ddl = (f"CREATE TABLE orders (k BIGINT, v BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts) "
           f"WITH (connector = 'filesystem', path = '{tmp_path / 'orders'}');\n"
           f"CREATE TABLE rates (k BIGINT, v BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts - "
           f"INTERVAL '1' SECOND, PRIMARY KEY (k) NOT ENFORCED) WITH (connector = "
           f"'filesystem', path = '{tmp_path / 'rates'}');")
    got = run_to_table(ddl, f"SELECT o.k, o.v, r.v AS rate FROM orders o {kind} JOIN rates "
                            f"FOR SYSTEM_TIME AS OF o.ts AS r ON o.k = r.k",
                       tmp_path / "out", parallelism)
    duck.register("orders", pq.read_table(tmp_path / "orders"))
    duck.register("rates", pq.read_table(tmp_path / "rates"))
    want = duck.sql(f"SELECT o.k, o.v, r.v AS rate FROM orders o ASOF {kind} JOIN rates r "
                    f"ON o.k = r.k AND o.ts >= r.ts").to_arrow_table()
    assert normalized_rows(got) == normalized_rows(want)
    assert len(normalized_rows(want)) == (3 if kind == "" else 4)


@pytest.mark.parametrize("parallelism", [1, 2])
def test_left_temporal_join_keeps_rows_without_a_time(tmp_path, duck, parallelism):
    """A LEFT join keeps every left row: one whose time is NULL has no current version
    (DuckDB's ASOF LEFT JOIN pads it); it was dropped and counted as late."""
    for name, ms, keys in (("orders", [5000, None, 2500, None], [0, 0, 2, 3]),
                           ("rates", [1000, 2000], [0, 2])):
        (tmp_path / name).mkdir()
        pq.write_table(pa.table({
            "k": pa.array(keys, pa.int64()), "v": pa.array(range(len(keys)), pa.int64()),
            "ts": pa.array([None if m is None else BASE + m * 1000 for m in ms],
                           pa.timestamp("us", tz="UTC"))}), tmp_path / name / "a.parquet")
    ddl = (f"CREATE TABLE orders (k BIGINT, v BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts) "
           f"WITH (connector = 'filesystem', path = '{tmp_path / 'orders'}');\n"
           f"CREATE TABLE rates (k BIGINT, v BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts, "
           f"PRIMARY KEY (k) NOT ENFORCED) WITH (connector = 'filesystem', "
           f"path = '{tmp_path / 'rates'}');")
    select = ("SELECT o.k, o.v, o.ts, r.v AS rate FROM orders o LEFT JOIN rates "
              "FOR SYSTEM_TIME AS OF o.ts AS r ON o.k = r.k")
    got = run_to_table(ddl, select, tmp_path / "out", parallelism)
    duck.register("orders", pq.read_table(tmp_path / "orders"))
    duck.register("rates", pq.read_table(tmp_path / "rates"))
    want = duck.sql("SELECT o.k, o.v, o.ts, r.v AS rate FROM orders o ASOF LEFT JOIN rates r "
                    "ON o.k = r.k AND o.ts >= r.ts").to_arrow_table()
    assert normalized_rows(got) == normalized_rows(want)
    assert len(normalized_rows(got)) == 4


LATE_SIDE = {
    "over": "SELECT k, sum(v) OVER (PARTITION BY k ORDER BY ts ROWS BETWEEN 1 PRECEDING AND "
            "CURRENT ROW) AS s FROM t",
    "interval join": "SELECT a.v, b.v AS w FROM t a JOIN t b ON a.k = b.k AND b.ts BETWEEN "
                     "a.ts - INTERVAL '1' SECOND AND a.ts",
    "window top-n": "SELECT * FROM (SELECT v, ROW_NUMBER() OVER (PARTITION BY window_start, "
                    "window_end ORDER BY v) AS rn FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), "
                    "INTERVAL '2' SECOND))) WHERE rn <= 1",
    "window join": "SELECT L.v, R.v AS w FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL "
                   "'2' SECOND)) L JOIN TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '2' "
                   "SECOND)) R ON L.k = R.k AND L.window_start = R.window_start AND "
                   "L.window_end = R.window_end",
}


@pytest.mark.parametrize("name", sorted(LATE_SIDE))
def test_a_late_side_table_only_windows_fill_is_refused_elsewhere(tmp_path, name):
    """Only window aggregates send late rows to ``late_data = 'side:<table>'``: the others
    dropped them (counted) and left the side table the user asked for empty."""
    _write(tmp_path / "in", [0, 3500, 2100], [1, 2, 9])
    script = _ddl(tmp_path / "in", "side:late") + f"""
CREATE TABLE late (v BIGINT, ts TIMESTAMP)
  WITH (connector = 'filesystem', path = '{tmp_path}/late', format = 'parquet');
CREATE TABLE out WITH (connector = 'filesystem', path = '{tmp_path}/out', format = 'parquet');
INSERT INTO out {LATE_SIDE[name]};"""
    with pytest.raises(PlanError, match=r"late_data = 'side:late' of table 't'.*windows? "
                                        r"aggregate"):
        run_sql(script, batch_rows=1)


def test_a_late_side_table_still_feeds_a_window_aggregate_with_others_beside(tmp_path):
    """The same table read by a window aggregate (sending late rows to the side table)
    and by a stateless query is accepted."""
    _write(tmp_path / "in", [0, 3500, 2100], [1, 2, 9])
    run_sql(_ddl(tmp_path / "in", "side:late") + f"""
CREATE TABLE late (v BIGINT, ts TIMESTAMP)
  WITH (connector = 'filesystem', path = '{tmp_path}/late', format = 'parquet');
CREATE TABLE a WITH (connector = 'filesystem', path = '{tmp_path}/a', format = 'parquet');
CREATE TABLE b WITH (connector = 'filesystem', path = '{tmp_path}/b', format = 'parquet');
INSERT INTO a SELECT window_start, count(*) AS n FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts),
  INTERVAL '2' SECOND)) GROUP BY window_start, window_end;
INSERT INTO b SELECT v FROM t WHERE v > 1;""", batch_rows=1)
    assert read_committed(tmp_path / "late")["v"].to_pylist() == [9]
    assert sorted(read_committed(tmp_path / "b")["v"].to_pylist()) == [2, 9]
