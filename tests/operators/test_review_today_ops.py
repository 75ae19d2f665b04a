"""Review of the day's operator changes from the outside: a keyed debezium_json changelog
(the last-row-per-key step, changelog_normalize) SIGKILLed after checkpoints and resumed at
another parallelism folds to the rows the changelog leaves (DuckDB's answer)."""

from __future__ import annotations

import pytest

from tests.changelog_helpers import fold, read_changes
from tests.helpers import kill_after_checkpoints, normalized_rows
from tests.sql.test_review_changelog_inputs import QUERIES, changes, duck_answer, source_ddl


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("first,then", [(1, 2), (2, 1)])
def test_a_keyed_changelog_resumes_after_a_kill_at_another_parallelism(tmp_path, first, then):
    lines, final = changes(7, n=4000, keys=300, messy=True)
    src = tmp_path / "src"
    src.mkdir()
    from tests.sql.test_review_changelog_inputs import write_lines
    for i in range(4):
        write_lines(src / f"part-{i}.json", lines[i * 1000:(i + 1) * 1000])
    out = tmp_path / "out"
    query = QUERIES[0]
    script = tmp_path / "job.sql"
    script.write_text(
        "SET updating_flush = '20ms';\n" + source_ddl("src", src) +
        f"\nCREATE TABLE out WITH (connector = 'filesystem', path = '{out}', "
        f"format = 'debezium_json');\nINSERT INTO out {query};\n")
    kill_after_checkpoints(script, tmp_path / "ck", batch_rows=7, first=first, then=then,
                           checkpoints=3)
    from caudal.job import compile_sql
    schema = compile_sql(script.read_text()).job.outputs[-1].plan.table.schema
    got = fold(read_changes(out, schema))
    assert normalized_rows(got) == duck_answer(query, {"src": final})


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("first,then", [(1, 2), (2, 1)])
def test_an_upsert_kafka_topic_resumes_after_a_kill_at_another_parallelism(
        tmp_path, first, then):
    import json
    import random

    from caudal.connectors.kafka_mock import cluster
    from tests.sql.test_review_changelog_inputs import _upsert_source, _upsert_topic

    rnd = random.Random(5)
    state: dict[int, dict] = {}
    messages = []
    for _ in range(3000):
        k = rnd.randrange(200)
        key = json.dumps({"id": k}).encode()
        if rnd.random() < 0.3:
            state.pop(k, None)
            messages.append((key, None))
        else:
            state[k] = {"id": k, "g": rnd.choice("ab"), "v": rnd.randrange(10),
                        "s": rnd.choice(["x", None])}
            messages.append((key, json.dumps(state[k]).encode()))
    out = tmp_path / "out"
    query = QUERIES[0]
    with cluster() as kafka:
        script = tmp_path / "job.sql"
        script.write_text(
            "SET updating_flush = '20ms';\n" +
            _upsert_source(kafka, _upsert_topic(kafka, messages)) +
            f"\nCREATE TABLE out WITH (connector = 'filesystem', path = '{out}', "
            f"format = 'debezium_json');\nINSERT INTO out {query};\n")
        kill_after_checkpoints(script, tmp_path / "ck", batch_rows=7, first=first, then=then,
                               checkpoints=3)
    from caudal.job import compile_sql
    schema = compile_sql(script.read_text()).job.outputs[-1].plan.table.schema
    got = fold(read_changes(out, schema))
    assert normalized_rows(got) == duck_answer(query, {"src": list(state.values())})
