"""Exactly-once for updating queries: a job with an updating aggregate and an updating join,
killed after a few checkpoints and resumed from its checkpoint directory, leaves a changelog
in its debezium_json sink that folds to the answer of a run that was never killed. The same
for a two-phase updating aggregate (partial states per key before the shuffle, also held
across batches until a barrier), resumed at the parallelism it was killed at and at
another one."""

from __future__ import annotations

from pathlib import Path

import pytest

from caudal.job import compile_sql, explain_sql, run_sql
from tests.changelog_helpers import fold, read_changes
from tests.checkpoint.test_checkpoint_cli import _kill_after_checkpoints
from tests.conftest import run_cli
from tests.helpers import normalized_rows

pytestmark = pytest.mark.timeout(120)

QUERY = """
SELECT a.category, count(*) AS bids, max(b.price) AS top, count(DISTINCT b.bidder) AS who
FROM auction AS a JOIN bid AS b ON a.id = b.auction
GROUP BY a.category
"""


#: every aggregate splittable over an append-only input: pre-aggregated before the shuffle
TWO_PHASE_QUERY = """
SELECT auction, count(*) AS bids, max(price) AS top, sum(price) AS total, avg(price) AS mean
FROM bid GROUP BY auction
"""


def _script(out: Path, pace: bool, query: str = QUERY) -> str:
    tables = "\n".join(
        f"CREATE TABLE {n} WITH (connector = 'nexmark', table = '{n}', events = '600000', "
        f"event_rate = '300000', pace = '{str(pace).lower()}');" for n in ("auction", "bid"))
    return (f"SET updating_flush = '50ms';\n{tables}\nCREATE TABLE out WITH (connector = "
            f"'filesystem', path = '{out}', format = 'debezium_json');\n"
            f"INSERT INTO out {query};\n")


def test_killed_updating_job_resumes_exactly_once(tmp_path):
    ref = tmp_path / "reference"
    run_sql(_script(ref, pace=False), parallelism=2)
    schema = compile_sql(_script(ref, pace=False)).job.outputs[0].plan.table.schema
    expected = fold(read_changes(ref, schema))

    out, ck = tmp_path / "out", tmp_path / "ck"
    job = tmp_path / "job.sql"
    job.write_text(_script(out, pace=True))
    _kill_after_checkpoints(job, ck, 3)
    done = run_cli("run", str(job), "-p", "2", "--checkpoint-dir", str(ck),
                   "--checkpoint-interval", "100ms", cwd=tmp_path, timeout=100)
    assert done.returncode == 0, done.stderr
    changes = read_changes(out, schema)
    assert normalized_rows(fold(changes)) == normalized_rows(expected)
    assert (changes.column("_op").to_numpy() < 0).any()  # it did revise results


#: count/min/max of integers per integer key: the local stage holds the partials of many
#: batches (DensePartials) and must send them before each barrier
HELD_QUERY = """
SELECT auction, count(*) AS bids, max(price) AS top, min(bidder) AS low FROM bid GROUP BY auction
"""


@pytest.mark.parametrize("query,resume_parallelism", [
    (TWO_PHASE_QUERY, 2), pytest.param(TWO_PHASE_QUERY, 3, marks=pytest.mark.slow),
    pytest.param(HELD_QUERY, 1, marks=pytest.mark.slow), (HELD_QUERY, 3)])
def test_killed_two_phase_updating_aggregate_resumes_exactly_once(tmp_path, query,
                                                                  resume_parallelism):
    ref = tmp_path / "reference"
    assert "local pre-aggregate by [auction]" in explain_sql(_script(ref, False, query), 2)
    run_sql(_script(ref, False, query), parallelism=1)
    schema = compile_sql(_script(ref, False, query)).job.outputs[0].plan.table.schema
    expected = fold(read_changes(ref, schema))

    out, ck = tmp_path / "out", tmp_path / "ck"
    job = tmp_path / "job.sql"
    job.write_text(_script(out, True, query))
    _kill_after_checkpoints(job, ck, 3)
    done = run_cli("run", str(job), "-p", str(resume_parallelism), "--checkpoint-dir", str(ck),
                   "--checkpoint-interval", "100ms", cwd=tmp_path, timeout=100)
    assert done.returncode == 0, done.stderr
    changes = read_changes(out, schema)
    assert normalized_rows(fold(changes)) == normalized_rows(expected)
    assert (changes.column("_op").to_numpy() < 0).any()  # it did revise results
