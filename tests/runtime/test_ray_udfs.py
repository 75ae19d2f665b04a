"""Python UDFs and UDAFs on Ray: the functions of ``--udf`` files travel to the worker actors
with the graph (by value: a ``--udf`` file is no importable module), and a windowed query
calling a scalar UDF, a UDAF, a group UDAF and a ``CREATE FUNCTION`` alias gives DuckDB's
answer on Ray at parallelism 2, as on the local runtime. A function that cannot be pickled is refused in one
line naming it, before any actor starts."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from tests.conftest import make_bids, run_cli
from tests.helpers import normalized_rows, read_committed

UDAFS = Path(__file__).resolve().parents[1] / "frame" / "udafs.py"

SCALAR = """
import pyarrow.compute as pc

import caudal as cd

RATE = 0.9   # a global the function reads: it travels with the function


@cd.udf(returns="DOUBLE")
def euro(price):
    return pc.multiply(pc.cast(price, "double"), RATE)
"""

UNSHIPPABLE = """
import threading

import caudal as cd

LOCK = threading.Lock()


@cd.udf(returns="BIGINT")
def locked(x):
    with LOCK:
        return x
"""

JOB = """
CREATE FUNCTION count_char AS 'com.github.nexmark.flink.udf.CountChar';
CREATE TABLE bids WITH (connector = 'filesystem', path = '{bids}',
                        event_time_field = 'date_time');
CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', format = 'parquet');
INSERT INTO out
SELECT auction % 7 AS k, window_start AS ws, py_avg(euro(price)) AS a,
       sum(count_char(url, '/')) AS slashes, count(*) AS n, py_median(price) AS md
FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
GROUP BY auction % 7, window_start, window_end;
"""

DUCK = """
SELECT auction % 7 AS k, to_timestamp(floor(epoch(date_time) / 10) * 10) AS ws,
       avg(price * 0.9) AS a, sum(length(url) - length(replace(url, '/', '')))::BIGINT AS slashes,
       count(*) AS n, median(price) AS md
FROM read_parquet('{bids}') GROUP BY ALL
"""


def test_udfs_and_udafs_on_ray_equal_duckdb(ray_cluster, tmp_path):
    bids = tmp_path / "bids.parquet"
    pq.write_table(make_bids(6000, seed=5), bids, row_group_size=1000)
    udfs = tmp_path / "euro.py"
    udfs.write_text(SCALAR)
    expected = normalized_rows(duckdb.sql(DUCK.format(bids=bids)).to_arrow_table())
    for runtime in ("ray", "local"):
        out = tmp_path / runtime
        out.mkdir()
        job = tmp_path / f"{runtime}.sql"
        job.write_text(JOB.format(bids=bids, out=out))
        args = ["run", str(job), "-p", "2", "--udf", str(udfs), "--udf", str(UDAFS)]
        if runtime == "ray":
            args += ["--runtime", "ray", "--address", ray_cluster.address]
        done = run_cli(*args, timeout=240)
        assert done.returncode == 0, done.stderr
        got = normalized_rows(read_committed(out))
        # the UDAF sums in another order than DuckDB: its averages agree to rounding
        assert [r[:2] + r[3:] for r in got] == [r[:2] + r[3:] for r in expected], runtime
        assert [r[2] for r in got] == pytest.approx([r[2] for r in expected], rel=1e-9)


def test_a_udf_that_cannot_travel_is_refused(ray_cluster, tmp_path):
    bids = tmp_path / "bids.parquet"
    pq.write_table(make_bids(100), bids)
    udfs = tmp_path / "locked.py"
    udfs.write_text(UNSHIPPABLE)
    job = tmp_path / "job.sql"
    job.write_text(f"CREATE TABLE bids WITH (connector = 'filesystem', path = '{bids}');\n"
                   "SELECT locked(auction) FROM bids;")
    done = run_cli("run", str(job), "--udf", str(udfs), "--runtime", "ray", "--address",
                   ray_cluster.address, timeout=240)
    assert done.returncode != 0
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert "udf locked cannot be sent to the Ray workers" in lines[0], done.stderr
    assert "lock" in lines[0] and "Traceback" not in done.stderr, done.stderr
