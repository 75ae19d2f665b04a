"""Time from the outside: watermark delays and INTERVAL literals as Flink users write them,
checked against DuckDB's batch answer (or Flink's documented value where DuckDB has no such
syntax) at parallelism 1 and 2."""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from caudal.errors import PlanError
from caudal.job import run_sql
from tests.helpers import normalized_rows, run_to_table

S = 1_000_000
T0 = 1_767_225_600 * S   # 2026-01-01 00:00:00 UTC in µs


def _events(tmp_path, micros: list[int], name: str = "in") -> tuple[str, pa.Table]:
    table = pa.table({"v": pa.array(range(1, len(micros) + 1), pa.int64()),
                      "ts": pa.array(micros, pa.int64()).cast(pa.timestamp("us", tz="UTC"))})
    (tmp_path / name).mkdir()
    pq.write_table(table, tmp_path / name / "a.parquet", row_group_size=1)  # in this order
    return str(tmp_path / name), table


TUMBLE_10S = ("SELECT window_start AS ws, count(*) AS n, sum(v) AS s FROM TABLE(TUMBLE("
              "TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND)) GROUP BY window_start, window_end")


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("delay", ["WATERMARK FOR ts AS ts - INTERVAL '1.001' SECOND",
                                   "WATERMARK FOR ts AS ts - INTERVAL '00:00:01.001'",
                                   "WATERMARK FOR ts AS ts - INTERVAL '0:01.001' MINUTE TO SECOND",
                                   "watermark_delay = '1.001s'"])
def test_a_row_exactly_the_delay_behind_is_on_time(tmp_path, duck, parallelism, delay):
    """A row 1.001 s behind the latest one, on the last µs but one of its window, under a
    1.001 s delay: within the delay, so in its window. The delay was read as 1.000999 s
    (int(1.001 * 10^6)), its window closed one µs early and the row was dropped as late
    (p=1: [0 s, 10 s) counted 1 row instead of 2); '00:00:01.001' and MINUTE TO SECOND
    were refused in WATERMARK though queries take them."""
    late = T0 + 10 * S - 2
    path, table = _events(tmp_path, [T0 + S, late + 1_001_000, late, late + 30 * S])
    if delay.startswith("watermark_delay"):
        ddl = (f"CREATE TABLE t (v BIGINT, ts TIMESTAMP) WITH (connector = 'filesystem', "
               f"path = '{path}', event_time_field = 'ts', {delay});")
    else:
        ddl = (f"CREATE TABLE t (v BIGINT, ts TIMESTAMP, {delay}) WITH (connector = "
               f"'filesystem', path = '{path}');")
    got = run_to_table(ddl, TUMBLE_10S, tmp_path / "out", parallelism, batch_rows=1)
    duck.register("t", table)
    want = duck.sql("SELECT time_bucket(INTERVAL 10 SECOND, ts) AS ws, count(*) AS n, "
                    "sum(v) AS s FROM t GROUP BY ws").to_arrow_table()
    assert normalized_rows(got) == normalized_rows(want)


#: Flink's interval literals with a qualifier, and their length in seconds
QUALIFIED = {
    "INTERVAL '1:30' MINUTE TO SECOND": 90,
    "INTERVAL '-1:30.5' MINUTE TO SECOND": -90.5,
    "INTERVAL '1:30' HOUR TO MINUTE": 5400,
    "INTERVAL '2:03:04' HOUR TO SECOND": 7384,
    "INTERVAL '10 00:00:00.004' DAY TO SECOND": 864000.004,
    "INTERVAL '2 03' DAY TO HOUR": 183600,
    "INTERVAL '1 02:30' DAY TO MINUTE": 95400,
}


@pytest.mark.parametrize("parallelism", [1, 2])
def test_interval_qualifiers_are_read_as_flink_reads_them(tmp_path, parallelism):
    """They were refused ('invalid input syntax for type interval: '1:30 minute'', the
    qualifier's end dropped)."""
    path, _ = _events(tmp_path, [T0])
    ddl = f"CREATE TABLE t (v BIGINT, ts TIMESTAMP) WITH (connector = 'filesystem', path = '{path}');"
    select = ", ".join(f"extract(epoch FROM {text}) AS c{i}" for i, text in enumerate(QUALIFIED))
    got = run_to_table(ddl, f"SELECT {select} FROM t", tmp_path / "out", parallelism)
    assert list(got.to_pylist()[0].values()) == pytest.approx(list(QUALIFIED.values()))


@pytest.mark.parametrize("parallelism", [1, 2])
def test_a_window_sized_by_a_qualified_interval(tmp_path, duck, parallelism):
    path, table = _events(tmp_path, [T0 + s * S for s in (0, 89, 90, 91, 179, 180, 400)])
    ddl = (f"CREATE TABLE t (v BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL "
           f"'0:00:05' HOUR TO SECOND) WITH (connector = 'filesystem', path = '{path}');")
    got = run_to_table(ddl, TUMBLE_10S.replace("INTERVAL '10' SECOND",
                                               "INTERVAL '1:30' MINUTE TO SECOND"),
                       tmp_path / "out", parallelism)
    duck.register("t", table)
    want = duck.sql("SELECT time_bucket(INTERVAL 90 SECOND, ts) AS ws, count(*) AS n, "
                    "sum(v) AS s FROM t GROUP BY ws").to_arrow_table()
    assert normalized_rows(got) == normalized_rows(want)


@pytest.mark.parametrize("text,message", [
    ("INTERVAL '1:75' MINUTE TO SECOND", "MINUTE TO SECOND takes 'mm:ss[.fff]'"),
    ("INTERVAL '2-10' YEAR TO MONTH", "has months or years, which have no fixed length"),
])
def test_bad_qualified_intervals_are_refused_in_one_line(tmp_path, text, message):
    path, _ = _events(tmp_path, [T0])
    with pytest.raises(PlanError, match=re.escape(message)):
        run_sql(f"CREATE TABLE t (v BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts - {text}) "
                f"WITH (connector = 'filesystem', path = '{path}');\nSELECT v FROM t;")
