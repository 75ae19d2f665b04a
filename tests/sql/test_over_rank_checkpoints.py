"""Exactly-once through checkpoints for the updating top-N and the OVER aggregate: a job
killed after a checkpoint at parallelism 2 and resumed at parallelism 3 leaves changelogs
that fold to the answer of a run that was never killed (state moved by key group, rows
waiting for a flush or a watermark included)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from caudal.job import compile_sql, run_sql
from tests.changelog_helpers import fold, read_changes
from tests.helpers import kill_after_checkpoints, normalized_rows

pytestmark = pytest.mark.timeout(120)

QUERIES = {
    # q19's shape: the top 3 bids of each auction, with their rank
    "top": "SELECT auction, bidder, price, rn FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY "
           "auction ORDER BY price DESC, date_time) AS rn FROM bids) WHERE rn <= 3",
    # q6's frame on event time
    "over": "SELECT auction, date_time, avg(price) OVER (PARTITION BY auction ORDER BY "
            "date_time ROWS BETWEEN 10 PRECEDING AND CURRENT ROW) AS a FROM bids",
}


def _script(bids: Path, out: Path) -> str:
    ddl = (f"SET updating_flush = '20ms';\nCREATE TABLE bids (auction BIGINT, bidder BIGINT, "
           f"price BIGINT, date_time TIMESTAMP, WATERMARK FOR date_time AS date_time - "
           f"INTERVAL '1' SECOND) WITH (connector = 'filesystem', path = '{bids}');\n")
    for name, select in QUERIES.items():
        ddl += (f"CREATE TABLE {name} WITH (connector = 'filesystem', path = '{out / name}', "
                f"format = 'debezium_json');\nINSERT INTO {name} {select};\n")
    return ddl


def _folded(out: Path, script: str) -> dict[str, list[tuple]]:
    outputs = compile_sql(script).job.outputs
    return {name: normalized_rows(fold(read_changes(out / name, o.plan.table.schema)))
            for name, o in zip(QUERIES, outputs)}


@pytest.mark.slow  # a kill test of ~5-11 CPU s: make test-all
def test_killed_job_resumes_at_another_parallelism(tmp_path):
    n = 200_000
    rng = np.random.default_rng(3)
    base = np.datetime64("2026-01-01T00:00:00", "us").astype(np.int64)
    bids = tmp_path / "bids.parquet"
    pq.write_table(pa.table({
        "auction": pa.array(rng.integers(0, 3000, n)),
        "bidder": pa.array(rng.integers(1, 50_000, n)),
        "price": pa.array(rng.permutation(n).astype(np.int64)),
        "date_time": pa.array(base + np.arange(n, dtype=np.int64) * 50,
                              pa.timestamp("us", tz="UTC")),
    }), bids, row_group_size=20_000)
    reference = tmp_path / "reference"
    run_sql(_script(bids, reference), parallelism=2)
    expected = _folded(reference, _script(bids, reference))

    out, ck = tmp_path / "out", tmp_path / "ck"
    script = tmp_path / "job.sql"
    script.write_text(_script(bids, out))
    kill_after_checkpoints(script, ck, batch_rows=4096, first=2, then=3)
    got = _folded(out, script.read_text())
    for name in QUERIES:
        assert got[name] == expected[name], name
