"""array_agg and the bit aggregates survive a kill: a job killed after a few checkpoints and
resumed from its checkpoint directory writes what a run never killed writes, for a window
aggregate (array_agg ORDER BY, bit_xor) and an updating one (bit_or, array_agg over a
changelog)."""

from __future__ import annotations

from pathlib import Path

import pytest

from caudal.job import compile_sql, run_sql
from tests.changelog_helpers import fold, read_changes
from tests.checkpoint.test_checkpoint_cli import _kill_after_checkpoints
from tests.conftest import run_cli
from tests.helpers import normalized_rows, read_committed

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

WINDOWED = """SELECT window_start, auction % 20 AS k, bit_xor(bidder) AS x,
  array_agg(price ORDER BY date_time DESC) AS prices
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '100' MILLISECOND))
GROUP BY window_start, window_end, auction % 20"""
UPDATING = """SELECT n, bit_or(mx) AS o, array_agg(mx ORDER BY mx DESC)[1] AS top,
  cardinality(array_agg(mx)) AS c
FROM (SELECT auction, count(*) AS n, max(price) AS mx FROM bid GROUP BY auction)
GROUP BY n"""


def _script(out: Path, pace: bool) -> str:
    return (f"SET updating_flush = '50ms';\n"
            f"CREATE TABLE bid WITH (connector = 'nexmark', table = 'bid', events = '400000', "
            f"event_rate = '200000', pace = '{str(pace).lower()}');\n"
            f"CREATE TABLE win WITH (connector = 'filesystem', path = '{out / 'win'}');\n"
            f"CREATE TABLE upd WITH (connector = 'filesystem', path = '{out / 'upd'}', "
            f"format = 'debezium_json');\n"
            f"INSERT INTO win {WINDOWED};\nINSERT INTO upd {UPDATING};\n")


def test_killed_job_with_array_and_bit_aggregates_resumes_exactly_once(tmp_path):
    ref = tmp_path / "reference"
    run_sql(_script(ref, pace=False), parallelism=2)
    schema = compile_sql(_script(ref, pace=False)).job.outputs[1].plan.table.schema

    out, ck = tmp_path / "out", tmp_path / "ck"
    job = tmp_path / "job.sql"
    job.write_text(_script(out, pace=True))
    _kill_after_checkpoints(job, ck, 3)
    done = run_cli("run", str(job), "-p", "2", "--checkpoint-dir", str(ck),
                   "--checkpoint-interval", "100ms", cwd=tmp_path, timeout=100)
    assert done.returncode == 0, done.stderr
    assert normalized_rows(read_committed(out / "win")) == \
        normalized_rows(read_committed(ref / "win"))
    assert normalized_rows(fold(read_changes(out / "upd", schema))) == \
        normalized_rows(fold(read_changes(ref / "upd", schema)))
