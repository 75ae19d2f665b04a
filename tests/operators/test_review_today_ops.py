"""Review of the day's operator changes from the outside: a keyed changelog source (the
last-row-per-key step, changelog_normalize) SIGKILLed after checkpoints and resumed at
another parallelism folds to the rows the changelog leaves (DuckDB's answer): a debezium_json
directory and an upsert-kafka topic; and its cost per batch."""

from __future__ import annotations

from pathlib import Path

import pytest

from caudal.job import compile_sql
from tests.changelog_helpers import fold, read_changes
from tests.helpers import kill_after_checkpoints, normalized_rows
from tests.sql.test_review_changelog_inputs import (
    QUERIES,
    _upsert_source,
    _upsert_topic,
    changes,
    duck_answer,
    source_ddl,
    upsert_messages,
    write_lines,
)


def _kill_and_resume(tmp_path: Path, ddl: str, first: int, then: int) -> list[tuple]:
    """``QUERIES[0]`` over ``ddl``'s src into a debezium_json sink, killed after three
    checkpoints at parallelism ``first`` and resumed at ``then``; the folded rows."""
    out = tmp_path / "out"
    script = tmp_path / "job.sql"
    script.write_text(f"SET updating_flush = '20ms';\n{ddl}\nCREATE TABLE out WITH ("
                      f"connector = 'filesystem', path = '{out}', format = 'debezium_json');"
                      f"\nINSERT INTO out {QUERIES[0]};\n")
    kill_after_checkpoints(script, tmp_path / "ck", batch_rows=7, first=first, then=then,
                           checkpoints=3)
    schema = compile_sql(script.read_text()).job.outputs[-1].plan.table.schema
    return normalized_rows(fold(read_changes(out, schema)))


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("first,then", [(1, 2), (2, 1)])
def test_a_keyed_changelog_resumes_after_a_kill_at_another_parallelism(tmp_path, first, then):
    lines, final = changes(7, n=4000, keys=300, messy=True)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        write_lines(src / f"part-{i}.json", lines[i * 1000:(i + 1) * 1000])
    assert _kill_and_resume(tmp_path, source_ddl("src", src), first, then) == \
        duck_answer(QUERIES[0], {"src": final})


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("first,then", [(1, 2), (2, 1)])
def test_an_upsert_kafka_topic_resumes_after_a_kill_at_another_parallelism(
        tmp_path, first, then):
    from caudal.connectors.kafka_mock import cluster

    messages, final = upsert_messages(5, 3000, 200)
    with cluster() as kafka:
        ddl = _upsert_source(kafka, _upsert_topic(kafka, messages))
        got = _kill_and_resume(tmp_path, ddl, first, then)
    assert got == duck_answer(QUERIES[0], {"src": final})


def test_a_small_batch_costs_the_normalizer_no_pass_over_its_state():
    """The last-row-per-key step allocated an array of every key it ever held for each
    batch (the row each key's first change meets): with 1 M keys held, 8 MB and a fill
    for a batch of 10 rows. It is now sized by the batch."""
    import tracemalloc

    import numpy as np
    import pyarrow as pa

    from caudal.operators.changelog_normalize import ChangelogNormalize
    from caudal.plan.changelog import OP, OP_TYPE, UPDATE_AFTER

    schema = pa.schema([("id", pa.int64()), ("v", pa.int64()), (OP, OP_TYPE)])
    op = ChangelogNormalize(["id"], schema)
    n = 1_000_000
    ids = np.arange(n)
    op.process(pa.record_batch([pa.array(ids), pa.array(ids), pa.array(np.ones(n, np.int8))],
                               schema=schema))
    small = pa.record_batch([pa.array(ids[:10] * 7), pa.array(ids[:10] + 1),
                             pa.array(np.full(10, UPDATE_AFTER, np.int8))], schema=schema)
    tracemalloc.start()
    try:
        out = op.process(small)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(b.num_rows for b in out) == 20   # ten update pairs
    assert peak < 1_000_000, peak


def _session(gap_s: float):
    from tests.operators.test_session_aggregate import make

    return make(gap_s)


def test_a_late_row_joins_the_union_of_an_open_sessions_parts():
    """A row behind the watermark joins an open session when its time is inside it. The
    session may still be parts not merged yet ([0 s, 100 s] and a row's [40 s, 50 s] of
    key 1): the row at 55 s is inside the first, though the part starting last before it
    ends at 50 s."""
    from caudal.watermark import WATERMARK_MAX
    from tests.operators.test_session_aggregate import S, as_rows, rows

    op = _session(10.0)
    op.process(rows([float(t) for t in range(0, 91, 5)], [1] * 19, range(19)))
    op.on_watermark(60 * S)
    op.process(rows([40.0], [1], [100]))   # behind the watermark: joins, a pending part
    op.process(rows([55.0, 30.0], [1, 2], [200, 300]))   # key 2 has no session: late
    out = as_rows(op.on_watermark(WATERMARK_MAX))
    assert [(r[2], r[3]) for r in out] == [(1, 21)]
    assert op.ctx.metrics["late_rows"] == 1


def test_a_row_behind_the_watermark_costs_no_merge_of_every_open_session():
    """Each batch holding a row behind the watermark merged every open session with the
    pending parts and hashed all their keys (the late-row join of ce1641a): with 300 k open
    sessions, 0.35 CPU s a batch where a batch without one took 3 ms. Only the late rows'
    keys are looked at now, in the parts as they are."""
    import tracemalloc

    import numpy as np

    from tests.operators.test_session_aggregate import S, rows

    op = _session(1000.0)
    n = 200_000
    op.process(rows(np.full(n, 100.0), np.arange(n), np.arange(n)))
    op._merge_pending()
    op.process(rows(np.full(n // 2, 120.0), np.arange(n // 2), np.arange(n // 2)))  # pending
    op.on_watermark(150 * S)
    tracemalloc.start()
    try:
        op.process(rows([101.0, 300.0], [7, 8], [1, 2]))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert op.ctx.metrics["late_rows"] == 0   # 101 s is inside key 7's open session
    assert peak < 1_000_000, peak
