"""Stateful operators the other Ray tests leave out, on the 3-node cluster of the session
(review, 2026-12-07): OVER aggregates, window top-N, interval and temporal joins, an
updating top-N and sessions per key with NULL keys give the embedded runtime's answer
(itself checked against DuckDB by the SQL tests) at parallelism 2 and 3."""

from __future__ import annotations

import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.changelog_helpers import fold, read_changes, run_changelog
from tests.conftest import run_cli
from tests.helpers import normalized_rows, read_committed

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

S = 1_000_000
BASE = 1_767_225_600 * S

QUERIES = {
    "over": "SELECT k, v, ts, sum(v) OVER (PARTITION BY k ORDER BY ts ROWS BETWEEN 2 "
            "PRECEDING AND CURRENT ROW) AS s, max(v) OVER (PARTITION BY k ORDER BY ts RANGE "
            "BETWEEN INTERVAL '1' SECOND PRECEDING AND CURRENT ROW) AS m FROM t",
    "window_rank": "SELECT * FROM (SELECT window_start AS ws, k, v, RANK() OVER (PARTITION BY "
                   "window_start, window_end ORDER BY v DESC NULLS LAST) AS r FROM TABLE("
                   "TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '2' SECOND))) WHERE r <= 2",
    "interval_join": "SELECT a.k, a.v, b.v AS w FROM t a LEFT JOIN u b ON a.k = b.k AND "
                     "b.ts BETWEEN a.ts - INTERVAL '1' SECOND AND a.ts",
    "temporal_join": "SELECT a.k, a.v, r.v AS rate FROM t a LEFT JOIN uv FOR SYSTEM_TIME AS "
                     "OF a.ts AS r ON a.k = r.k",
    "updating_top_n": "SELECT k, v, rn FROM (SELECT k, v, ROW_NUMBER() OVER (PARTITION BY k "
                      "ORDER BY v DESC NULLS LAST, ts) AS rn FROM t) WHERE rn <= 2",
    "session": "SELECT window_start, window_end, k, count(*) AS n, sum(v) AS s FROM TABLE("
               "SESSION(TABLE t PARTITION BY k, DESCRIPTOR(ts), INTERVAL '700' MILLISECOND)) "
               "GROUP BY window_start, window_end, k",
}


def _table(rng: random.Random, n: int, unique_times: bool = False) -> pa.Table:
    ms = rng.sample(range(60_000), n) if unique_times else \
        [rng.randrange(60_000) for _ in range(n)]
    ms.sort()
    ms = [m - rng.randrange(400) for m in ms]   # disorder within the 500 ms delay
    return pa.table({
        "k": pa.array([None if rng.random() < .1 else rng.randrange(5) for _ in range(n)],
                      pa.int64()),
        "v": pa.array([None if rng.random() < .1 else rng.randrange(-50, 50)
                       for _ in range(n)], pa.int64()),
        "ts": pa.array([BASE + m * 1000 for m in ms], pa.timestamp("us", tz="UTC"))})


@pytest.fixture(scope="module")
def ddl(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray_review")
    rng = random.Random(5)
    for name, n in (("t", 3000), ("u", 1000)):
        (root / name).mkdir()
        table = _table(rng, n, unique_times=name == "u")
        for i in range(3):   # three files: partitions of the source
            pq.write_table(table.slice(i * n // 3, n // 3), root / name / f"p{i}.parquet",
                           row_group_size=200)
    lines = []
    for name in ("t", "u"):
        lines.append(f"CREATE TABLE {name} (k BIGINT, v BIGINT, ts TIMESTAMP, WATERMARK FOR ts "
                     f"AS ts - INTERVAL '500' MILLISECOND) WITH (connector = 'filesystem', "
                     f"path = '{root / name}');")
    lines.append(f"CREATE TABLE uv (k BIGINT, v BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts - "
                 f"INTERVAL '500' MILLISECOND, PRIMARY KEY (k) NOT ENFORCED) WITH (connector "
                 f"= 'filesystem', path = '{root / 'u'}');")
    return root, "\n".join(lines)


@pytest.mark.parametrize("parallelism", [2, 3])
@pytest.mark.parametrize("name", sorted(QUERIES))
def test_stateful_queries_on_ray_equal_the_embedded_runtime(ray_cluster, ddl, tmp_path, name,
                                                             parallelism):
    root, text = ddl
    local = run_changelog(text, QUERIES[name], tmp_path / "local", parallelism=parallelism,
                          batch_rows=97)
    on_ray = run_changelog(text, QUERIES[name], tmp_path / "ray", parallelism=parallelism,
                           batch_rows=97, runtime="ray")
    want = normalized_rows(fold(local) if "_op" in local.column_names else local)
    got = normalized_rows(fold(on_ray) if "_op" in on_ray.column_names else on_ray)
    assert len(want) > 0
    assert got == want


#: paced nexmark (~5 s), three stateful outputs in one job
KILL_JOB = """
CREATE TABLE bid WITH (connector = 'nexmark', table = 'bid', events = '12000',
                       event_rate = '2500', event_time_field = 'date_time');
CREATE TABLE top WITH (connector = 'filesystem', path = '{out}/top', format = 'parquet');
CREATE TABLE over WITH (connector = 'filesystem', path = '{out}/over', format = 'parquet');
CREATE TABLE per WITH (connector = 'filesystem', path = '{out}/per', format = 'debezium_json');
INSERT INTO top SELECT * FROM (SELECT window_start, auction, price, RANK() OVER (PARTITION BY
  window_start, window_end ORDER BY price DESC) AS r FROM TABLE(TUMBLE(TABLE bid,
  DESCRIPTOR(date_time), INTERVAL '1' SECOND))) WHERE r <= 3;
INSERT INTO over SELECT auction, bidder, price, sum(price) OVER (PARTITION BY auction ORDER BY
  date_time ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS s FROM bid;
INSERT INTO per SELECT auction % 10 AS g, count(DISTINCT bidder) AS b, max(price) AS m
  FROM bid GROUP BY auction % 10;
"""


def _outputs(out) -> dict[str, list]:
    from caudal.job import compile_sql

    got = {n: normalized_rows(read_committed(out / n)) for n in ("top", "over")}
    schema = compile_sql(KILL_JOB.format(out=out)).job.outputs[-1].plan.table.schema
    got["per"] = normalized_rows(fold(read_changes(out / "per", schema)))
    return got


def test_worker_killed_under_window_rank_over_and_distinct(ray_cluster, tmp_path):
    """A worker actor SIGKILLed after the first checkpoint of a job with a window top-N, an
    OVER aggregate and an updating DISTINCT aggregate: the restarted job's committed output
    equals an uninterrupted run on the embedded runtime."""
    import os
    import signal

    from tests.runtime.test_ray_failures import _start, _wait_for_checkpoint, _worker_pids

    ref = tmp_path / "ref"
    (tmp_path / "ref.sql").write_text(KILL_JOB.format(out=ref).replace(
        "event_rate = '2500'", "event_rate = '2500', pace = 'false'"))
    done = run_cli("run", str(tmp_path / "ref.sql"), "-p", "2", timeout=240)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    (tmp_path / "job.sql").write_text(KILL_JOB.format(out=out))
    proc = _start(ray_cluster, tmp_path / "job.sql", tmp_path / "ck")
    _wait_for_checkpoint(tmp_path / "ck", proc)
    pids = _worker_pids()
    assert pids
    os.kill(pids[0], signal.SIGKILL)
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr
    assert "restarting from checkpoint" in stderr
    want, got = _outputs(ref), _outputs(out)
    assert all(want.values())
    assert got == want
