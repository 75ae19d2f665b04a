"""Changelog inputs as a Flink user with CDC data feeds them: debezium_json changes (inserts,
updates with before/after images, deletes, repeated updates of one key) through GROUP BY,
joins, top-N and DISTINCT. The folded output equals DuckDB's answer over the table the
changelog leaves (the changes applied to a DuckDB table first), at parallelism 1 and 2."""

from __future__ import annotations

import json
import random
from pathlib import Path

import duckdb
import pytest

from tests.changelog_helpers import fold, run_changelog
from tests.helpers import normalized_rows

COLUMNS = "id BIGINT, g TEXT, v BIGINT, s TEXT"


def changes(seed: int, n: int = 300, keys: int = 30, messy: bool = False
            ) -> tuple[list[dict], list[dict]]:
    """A Debezium changelog of ``n`` changes over ``keys`` ids, and the rows it leaves.
    ``messy``: as at-least-once delivery and a mid-history start leave it, with deletes of
    keys never created, creates of keys that exist (a redelivered snapshot row) and updates
    whose before image is not the row held; the rows it leaves are then the last image of
    each key (Flink's ChangelogNormalize; DuckDB's DELETE and INSERT OR REPLACE)."""
    rnd = random.Random(seed)
    state: dict[int, dict] = {}
    out = []

    def row(k: int) -> dict:
        return {"id": k, "g": rnd.choice(["a", "b", "c", None]),
                "v": rnd.choice([None, *range(-5, 20)]), "s": rnd.choice(["x", "y", None])}

    for _ in range(n):
        k, r = rnd.randrange(keys), rnd.random()
        if k not in state:
            if messy and r < 0.15:   # a delete of a key never created
                out.append({"before": row(k), "after": None, "op": "d"})
                continue
            state[k] = row(k)
            out.append({"before": None, "after": state[k], "op": rnd.choice("cr")})
        elif messy and r < 0.15:   # a repeated create, or a stale before image
            new = row(k)
            out.append({"before": None, "after": new, "op": "c"} if r < 0.07 else
                       {"before": row(k), "after": new, "op": "u"})
            state[k] = new
        elif r < 0.6:
            new = row(k)
            out.append({"before": state[k], "after": new, "op": "u"})
            state[k] = new
        else:
            out.append({"before": state.pop(k), "after": None, "op": "d"})
    return out, list(state.values())


def write_lines(path: Path, lines: list[dict]) -> None:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


def duck_answer(query: str, tables: dict[str, list[dict]]) -> list[tuple]:
    con = duckdb.connect()
    for name, rows in tables.items():
        con.execute(f"CREATE TABLE {name} ({COLUMNS})")
        if rows:
            con.executemany(f"INSERT INTO {name} VALUES (?, ?, ?, ?)",
                            [(r["id"], r["g"], r["v"], r["s"]) for r in rows])
    return normalized_rows(con.sql(query).to_arrow_table())


def source_ddl(name: str, path: Path) -> str:
    return (f"CREATE TABLE {name} ({COLUMNS}, PRIMARY KEY (id) NOT ENFORCED) WITH ("
            f"connector = 'filesystem', path = '{path}', format = 'debezium_json');")


QUERIES = [
    "SELECT g, count(*) AS n, sum(v) AS t, min(v) AS lo, max(v) AS hi, avg(v) AS a, "
    "count(DISTINCT s) AS ds FROM src GROUP BY g",
    "SELECT DISTINCT g, s FROM src",
    "SELECT g, id, v FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY g ORDER BY v DESC "
    "NULLS LAST, id) AS rn FROM src) WHERE rn <= 2",
]


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("query", QUERIES[:2])
def test_a_changelog_split_over_files_is_read_in_order(tmp_path, query, parallelism):
    """A directory of debezium_json files is one changelog: a row's update or delete may be
    in a later file than its insert. The files were dealt to the source subtasks like
    independent partitions, so at parallelism 2 a delete could reach the GROUP BY before its
    insert (ignored there), and the insert stayed: count 57 for 23 rows."""
    lines, final = changes(3, n=400)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        write_lines(src / f"part-{i}.json", lines[i * 100:(i + 1) * 100])
    got = fold(run_changelog(source_ddl("src", src), query, tmp_path / "out",
                             parallelism=parallelism, batch_rows=17))
    assert normalized_rows(got) == duck_answer(query, {"src": final})


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("query", [*QUERIES, "SELECT id, g, v FROM src WHERE v > 5"])
def test_a_keyed_changelog_keeps_the_last_row_of_each_key(tmp_path, query, parallelism):
    """With a PRIMARY KEY, a delete of a key never created, a repeated create and a stale
    before image change nothing but the key's row. They were taken as they came: a count
    went down for a row it never counted, a filter passed on a delete of nothing."""
    lines, final = changes(0, messy=True)
    write_lines(tmp_path / "src.json", lines)
    got = fold(run_changelog(source_ddl("src", tmp_path / "src.json"), query, tmp_path / "out",
                             parallelism=parallelism, batch_rows=37))
    assert normalized_rows(got) == duck_answer(query, {"src": final})


@pytest.mark.parametrize("text_key", [False, True])
@pytest.mark.parametrize("old_p,new_p", [(1, 2), (2, 1), (2, 3)])
def test_the_last_rows_restore_and_rescale(old_p, new_p, text_key):
    """The rows held per key are snapshotted with their key groups: a job restored at
    another parallelism folds to the rows the changelog leaves."""
    import pyarrow as pa

    from caudal.formats import debezium_json
    from caudal.operators.changelog_normalize import ChangelogNormalize
    from caudal.plan.changelog import OP
    from tests.operators.test_changelog_state_restore import _run

    lines, final = changes(4, messy=True)
    schema = pa.schema([("id", pa.int64()), ("g", pa.string()), ("v", pa.int64()),
                        ("s", pa.string())])
    table = debezium_json.changes(pa.Table.from_pylist(lines, debezium_json.envelope(schema)),
                                  schema)
    if text_key:
        table = table.set_column(0, "id", table.column("id").cast(pa.string()))
    items = [(0, b) for b in table.to_batches(max_chunksize=23)]
    out = table.schema

    def factory():
        return ChangelogNormalize(["id"], out)

    got = _run(factory, items, [["id"]], len(items) // 2, old_p, new_p)
    want = pa.Table.from_pylist(final, schema).cast(table.drop_columns([OP]).schema) \
        if final else None
    assert normalized_rows(got) == normalized_rows(want)


@pytest.fixture(scope="module")
def kafka():
    from caudal.connectors.kafka_mock import cluster

    with cluster() as bootstrap:
        yield bootstrap


def _upsert_topic(kafka: str, messages: list[tuple[bytes | None, bytes | None]]) -> str:
    import uuid

    from confluent_kafka import Producer

    topic = f"upserts-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": kafka})
    for key, value in messages:   # one partition: the messages in this order
        producer.produce(topic, value, key=key, partition=0)
    assert producer.flush(10) == 0
    return topic


def _upsert_source(kafka: str, topic: str, extra: str = "") -> str:
    return (f"CREATE TABLE src ({COLUMNS}, PRIMARY KEY (id) NOT ENFORCED) WITH ("
            f"connector = 'upsert-kafka', bootstrap_servers = '{kafka}', topic = '{topic}', "
            f"'source.offset' = 'earliest', 'scan.bounded.mode' = 'latest-offset'{extra});")


@pytest.mark.parametrize("parallelism", [1, 2])
def test_an_upsert_kafka_topic_is_a_changelog_source(kafka, tmp_path, parallelism):
    """Flink's upsert-kafka source: a value is the row of its key, a tombstone deletes the
    key (also one never written). It was refused: "connector 'upsert-kafka' cannot be read
    from"."""
    messages, final = upsert_messages(1, 400, 30)
    ddl = _upsert_source(kafka, _upsert_topic(kafka, messages))
    for i, query in enumerate([QUERIES[0], "SELECT * FROM src"]):
        got = fold(run_changelog(ddl, query, tmp_path / f"out{i}", parallelism=parallelism))
        assert normalized_rows(got) == duck_answer(query, {"src": final})


def upsert_messages(seed: int, n: int, keys: int
                    ) -> tuple[list[tuple[bytes, bytes | None]], list[dict]]:
    """``n`` upsert-kafka messages over ``keys`` ids (values and tombstones, also of keys
    never written), and the rows they leave."""
    rnd = random.Random(seed)
    state: dict[int, dict] = {}
    messages: list[tuple[bytes, bytes | None]] = []
    for _ in range(n):
        k = rnd.randrange(keys)
        key = json.dumps({"id": k}).encode()
        if rnd.random() < 0.3:
            state.pop(k, None)
            messages.append((key, None))
        else:
            state[k] = {"id": k, "g": rnd.choice("ab"), "v": rnd.randrange(10),
                        "s": rnd.choice(["x", None])}
            messages.append((key, json.dumps(state[k]).encode()))
    return messages, list(state.values())


def test_an_upsert_kafka_tombstone_without_a_key_follows_bad_data(kafka, tmp_path):
    from caudal.errors import DataError

    row = json.dumps({"id": 1, "g": "a", "v": 2, "s": None}).encode()
    topic = _upsert_topic(kafka, [(b'{"id": 1}', row), (None, None),
                                  (b'{"id": 2}', b'{"id": 2, "v": "two"}')])
    with pytest.raises(DataError, match="tombstone without a key") as err:
        run_changelog(_upsert_source(kafka, topic), "SELECT * FROM src", tmp_path / "a")
    assert "partition 0 offset 1:" in str(err.value)   # the first bad message
    got = fold(run_changelog(_upsert_source(kafka, topic, ", bad_data = 'drop'"),
                             "SELECT * FROM src", tmp_path / "b"))
    assert normalized_rows(got) == [(1, "a", 2, None)]


def test_debezium_lines_with_their_schema(kafka, tmp_path):
    """Kafka Connect's JSON converter with schemas enabled (Debezium's default) wraps each
    change: {"schema": {…}, "payload": {"before": …, "after": …, "op": …}}. Flink reads it
    with 'debezium-json.schema-include' = 'true'; the option was refused as unknown, and the
    lines were malformed ("op None")."""
    from caudal.errors import DataError

    lines, final = changes(7, n=120)
    wrapped = [json.dumps({"schema": {"type": "struct", "optional": False},
                           "payload": {**x, "ts_ms": 1}}).encode() for x in lines]
    keys = [json.dumps({"id": (x["after"] or x["before"])["id"]}).encode() for x in lines]
    topic = _upsert_topic(kafka, [m for k, v in zip(keys, wrapped) for m in
                                  ([(k, v)] + ([(k, None)] if b'"op": "d"' in v else []))])
    (tmp_path / "src.json").write_bytes(b"\n".join(wrapped) + b"\n")
    query = QUERIES[0]
    for where in (f"connector = 'filesystem', path = '{tmp_path / 'src.json'}'",
                  f"connector = 'kafka', bootstrap_servers = '{kafka}', topic = '{topic}', "
                  "'source.offset' = 'earliest', 'scan.bounded.mode' = 'latest-offset'"):
        ddl = (f"CREATE TABLE src ({COLUMNS}, PRIMARY KEY (id) NOT ENFORCED) WITH ({where}, "
               "format = 'debezium_json'{});")
        got = fold(run_changelog(ddl.format(", 'debezium-json.schema-include' = 'true'"),
                                 query, tmp_path / f"out{len(where)}", parallelism=2))
        assert normalized_rows(got) == duck_answer(query, {"src": final})
        with pytest.raises(DataError, match="schema-include' = 'true'"):
            run_changelog(ddl.format(""), query, tmp_path / f"bad{len(where)}")


def test_a_keyed_changelog_job_resumes_at_another_parallelism(tmp_path):
    """The last-row step is a vertex of its own at any parallelism: at 1 it was chained to
    the source, so a checkpoint taken at 1 could not be restored at 2 ("holds checkpoints
    of a different job: normalize src changed")."""
    from caudal.checkpoint.fingerprint import job_fingerprint
    from caudal.job import compile_sql

    write_lines(tmp_path / "src.json", changes(1, n=20)[0])
    script = (source_ddl("src", tmp_path / "src.json") + "\nCREATE TABLE out WITH ("
              "connector = 'blackhole');\nINSERT INTO out SELECT g, count(*) FROM src "
              "GROUP BY g;")
    prints = {job_fingerprint(compile_sql(script, p).graph) for p in (1, 2, 3)}
    assert len(prints) == 1
