"""From the outside: a two-phase tumbling window aggregate whose local stage holds a pane's
count/min/max per integer key across batches, killed (SIGKILL) after checkpoints taken while
partials were held, resumed at another parallelism, writes the windows of a run that was never
killed, each once."""

from __future__ import annotations

from pathlib import Path

import pytest

from caudal.job import explain_sql, run_sql
from tests.helpers import kill_after_checkpoints, normalized_rows, read_committed

pytestmark = pytest.mark.timeout(200)

QUERY = ("SELECT window_start, auction, count(*) AS n, max(price) AS top, min(bidder) AS low "
         "FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '50' MILLISECOND)) "
         "GROUP BY window_start, window_end, auction")


def _script(out: Path, pace: bool) -> str:
    return (f"CREATE TABLE bid WITH (connector = 'nexmark', table = 'bid', events = '400000', "
            f"event_rate = '200000', pace = '{str(pace).lower()}');\n"
            f"CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', "
            f"format = 'parquet');\nINSERT INTO out {QUERY};\n")


@pytest.mark.slow
@pytest.mark.parametrize("then", [1, 3])
def test_killed_held_window_aggregate_resumes_at_another_parallelism(tmp_path, then):
    ref = tmp_path / "reference"
    assert "local pre-aggregate tumble" in explain_sql(_script(ref, False), 2)
    run_sql(_script(ref, False), parallelism=1)
    expected = normalized_rows(read_committed(ref))
    assert expected

    out, ck = tmp_path / "out", tmp_path / "ck"
    script = tmp_path / "job.sql"
    script.write_text(_script(out, True))
    kill_after_checkpoints(script, ck, batch_rows=512, first=2, then=then, checkpoints=3)
    assert normalized_rows(read_committed(out)) == expected
