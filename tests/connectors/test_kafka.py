"""The kafka and upsert-kafka connectors against librdkafka's mock cluster (real protocol,
real client, a helper process holding the brokers), with real `caudal run` processes.

Exactly-once output is read with ``kafka_verify.committed_messages``: the mock cluster does
not hide aborted transactions from read_committed consumers, so the verifier applies the
transaction markers of the raw log itself, as a real cluster's read_committed consumer would.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from caudal.connectors import kafka_native
from caudal.connectors.kafka_mock import cluster
from caudal.connectors.kafka_sink import DEFAULT_COMMIT_TOPIC
from tests.conftest import REPO, make_bids, run_cli
from tests.connectors.broker_util import kill_and_resume
from tests.connectors.kafka_verify import aborted_transactions, committed_messages


@pytest.fixture(scope="session")
def kafka():
    """The bootstrap list of a mock cluster of 3 brokers, alive for the whole session."""
    with cluster() as bootstrap:
        assert bootstrap, "the mock cluster did not start"
        yield bootstrap


@pytest.fixture(params=["native", "pure"])
def reader(request, monkeypatch):
    """Both ways the source reads messages: the native drain (kafka_native, the default) and
    confluent-kafka's Consumer (CAUDAL_KAFKA_NATIVE=0, also the fallback without gcc)."""
    monkeypatch.setenv(kafka_native.ENV, "1" if request.param == "native" else "0")
    if request.param == "native":
        assert kafka_native.load() is not None, "the native drain did not compile"
    return request.param


def topic_name(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:8]}"


def produce(bootstrap: str, topic: str, values: list, keys: list | None = None,
            headers: list | None = None, timestamps: list | None = None,
            partition: int | None = None) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i, value in enumerate(values):
        kwargs = {} if partition is None else {"partition": partition}
        if keys is not None:
            kwargs["key"] = keys[i]
        if headers is not None:
            kwargs["headers"] = headers[i]
        if timestamps is not None:
            kwargs["timestamp"] = timestamps[i]
        producer.produce(topic, value, **kwargs)
        if i % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0


def bids_json(table: pa.Table) -> list[bytes]:
    rows = table.to_pylist()
    out = []
    for r in rows:
        r = dict(r)
        r["date_time"] = r["date_time"].isoformat().replace("+00:00", "Z")
        out.append(json.dumps(r).encode())
    return out


BIDS_COLUMNS = """auction BIGINT, bidder BIGINT, price BIGINT, channel TEXT, url TEXT,
    date_time TIMESTAMP, extra TEXT"""


def source_sql(bootstrap: str, topic: str, columns: str = BIDS_COLUMNS,
               extra: str = "") -> str:
    return f"""CREATE TABLE bids ({columns},
    WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND)
WITH (connector = 'kafka', bootstrap_servers = '{bootstrap}', topic = '{topic}',
      'source.offset' = 'earliest', 'scan.bounded.mode' = 'latest-offset'{extra});
"""


def write_job(tmp_path: Path, sql: str, name: str = "job.sql") -> Path:
    path = tmp_path / name
    path.write_text(sql)
    return path


@pytest.fixture(scope="module")
def bids_topic(kafka):
    table = make_bids(5000)
    topic = topic_name("bids")
    produce(kafka, topic, bids_json(table), keys=[str(i).encode() for i in range(5000)])
    return topic, table


@pytest.mark.parametrize("parallelism", [1, 2])
def test_json_source_bounded_matches_duckdb(kafka, bids_topic, tmp_path, duck, parallelism,
                                            reader):
    topic, table = bids_topic
    out = tmp_path / "out"
    sql = source_sql(kafka, topic) + f"""
CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', format = 'parquet');
INSERT INTO out SELECT auction, bidder, price, channel, url, date_time, extra
FROM bids WHERE price > 100 OR channel IS NULL;
"""
    result = run_cli("run", str(write_job(tmp_path, sql)), "--parallelism", str(parallelism))
    assert result.returncode == 0, result.stderr
    columns = "auction, bidder, price, channel, url, date_time, extra"
    got = pq.read_table(out).to_pylist()
    duck.register("bids", table)
    cursor = duck.execute(f"SELECT {columns} FROM bids WHERE price > 100 OR channel IS NULL")
    names = [d[0] for d in cursor.description]
    want = [dict(zip(names, row)) for row in cursor.fetchall()]
    key = lambda r: (r["date_time"], r["auction"], r["bidder"], str(r["price"]))  # noqa: E731
    assert sorted(got, key=key) == sorted(want, key=key)
    assert len(got) > 4000


def test_metadata_columns(kafka, tmp_path):
    topic = topic_name("meta")
    values = [json.dumps({"v": i}).encode() for i in range(40)]
    keys = [f"k{i}".encode() for i in range(40)]
    headers = [[("h", f"x{i}".encode())] for i in range(40)]
    stamps = [1_767_225_600_000 + i for i in range(40)]
    produce(kafka, topic, values, keys, headers, stamps)
    out = tmp_path / "out"
    sql = f"""CREATE TABLE t (v BIGINT, p INT METADATA FROM 'partition',
    o BIGINT METADATA FROM 'offset', ts TIMESTAMP METADATA FROM 'timestamp',
    k TEXT METADATA FROM 'key', h TEXT METADATA FROM 'headers')
WITH (connector = 'kafka', 'properties.bootstrap.servers' = '{kafka}', topic = '{topic}',
      'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset');
CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', format = 'parquet');
INSERT INTO out SELECT * FROM t;
"""
    result = run_cli("run", str(write_job(tmp_path, sql)))
    assert result.returncode == 0, result.stderr
    rows = sorted(pq.read_table(out).to_pylist(), key=lambda r: r["v"])
    assert [r["v"] for r in rows] == list(range(40))
    assert [r["k"] for r in rows] == [f"k{i}" for i in range(40)]
    assert [json.loads(r["h"]) for r in rows] == [{"h": f"x{i}"} for i in range(40)]
    assert [int(r["ts"].timestamp() * 1000) for r in rows] == stamps
    assert {r["p"] for r in rows} <= {0, 1, 2, 3}
    by_partition: dict[int, list[int]] = {}
    for r in sorted(rows, key=lambda r: (r["p"], r["o"])):
        by_partition.setdefault(r["p"], []).append(r["o"])
    for offsets in by_partition.values():   # each partition's offsets, all of them
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))


def tumbling_sql(kafka: str, source_topic: str, sink_topic: str, extra_sink: str = "",
                 interval: str = "10") -> str:
    return source_sql(kafka, source_topic) + f"""
CREATE TABLE counts WITH (connector = 'kafka', bootstrap_servers = '{kafka}',
    topic = '{sink_topic}', 'key.fields' = 'window_start'{extra_sink});
INSERT INTO counts
SELECT window_start, count(*) AS bids, sum(price) AS total
FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '{interval}' SECOND))
GROUP BY window_start, window_end;
"""


def duck_tumbling(duck, table: pa.Table, seconds: int = 10) -> list[tuple]:
    duck.register("bids", table)
    rows = duck.execute(f"""SELECT time_bucket(INTERVAL '{seconds} seconds', date_time)
        AS ws, count(*), sum(price) FROM bids GROUP BY ws ORDER BY ws""").fetchall()
    return [(ws.strftime("%Y-%m-%dT%H:%M:%S"), n, int(total)) for ws, n, total in rows]


def read_counts(kafka: str, topic: str) -> list[tuple]:
    rows = [json.loads(v) for _, v in committed_messages(kafka, topic)]
    return sorted((r["window_start"], r["bids"], r["total"]) for r in rows)


def test_tumbling_count_kafka_to_kafka_exactly_once(kafka, bids_topic, tmp_path, duck, reader):
    topic, table = bids_topic
    sink = topic_name("counts")
    job = write_job(tmp_path, tumbling_sql(kafka, topic, sink))
    result = run_cli("run", str(job), "--checkpoint-dir", str(tmp_path / "ck"),
                     "--checkpoint-interval", "200ms")
    assert result.returncode == 0, result.stderr
    assert read_counts(kafka, sink) == duck_tumbling(duck, table)
    keys = {k for k, _ in committed_messages(kafka, sink)}
    assert all(json.loads(k).keys() == {"window_start"} for k in keys)


def test_at_least_once_sink_without_checkpoints(kafka, bids_topic, tmp_path, duck):
    topic, table = bids_topic
    sink = topic_name("counts-alo")
    job = write_job(tmp_path, tumbling_sql(kafka, topic, sink,
                                           ", 'sink.delivery-guarantee' = 'at-least-once'"))
    result = run_cli("run", str(job), "--parallelism", "2")
    assert result.returncode == 0, result.stderr
    assert read_counts(kafka, sink) == duck_tumbling(duck, table)


def test_upsert_kafka(kafka, bids_topic, tmp_path, duck):
    topic, table = bids_topic
    sink = topic_name("upsert")
    sql = source_sql(kafka, topic) + f"""
CREATE TABLE totals (channel TEXT, n BIGINT, PRIMARY KEY (channel) NOT ENFORCED)
WITH (connector = 'upsert-kafka', bootstrap_servers = '{kafka}', topic = '{sink}');
INSERT INTO totals SELECT channel, count(*) AS n FROM bids WHERE channel IS NOT NULL
GROUP BY channel;
"""
    result = run_cli("run", str(write_job(tmp_path, sql)), "--checkpoint-dir",
                     str(tmp_path / "ck"), "--checkpoint-interval", "100ms")
    assert result.returncode == 0, result.stderr
    latest: dict[str, int | None] = {}
    for key, value in committed_messages(kafka, sink):
        k = json.loads(key)["channel"]
        latest[k] = None if value is None else json.loads(value)["n"]
    duck.register("bids", table)
    want = dict(duck.execute("SELECT channel, count(*) FROM bids WHERE channel IS NOT NULL "
                             "GROUP BY channel").fetchall())
    assert {k: v for k, v in latest.items() if v is not None} == want


def test_upsert_kafka_tombstone_for_delete(kafka, tmp_path):
    src = topic_name("cdc")
    changes = [{"before": None, "after": {"id": 1, "n": 1}, "op": "c"},
               {"before": None, "after": {"id": 2, "n": 5}, "op": "c"},
               {"before": {"id": 1, "n": 1}, "after": None, "op": "d"}]
    producer = Producer({"bootstrap.servers": kafka})
    for c in changes:   # one partition keeps the changes in order
        producer.produce(src, json.dumps(c).encode(), partition=0)
    producer.flush(10)
    got = _upsert_kafka_of(kafka, tmp_path, f"""CREATE TABLE src (id BIGINT, n BIGINT) WITH (
    connector = 'kafka', bootstrap_servers = '{kafka}', topic = '{src}',
    format = 'debezium_json', 'source.offset' = 'earliest',
    'scan.bounded.mode' = 'latest-offset');""")
    ones = [v for k, v in got if k == 1]
    assert ones == [1, None]   # inserted, then a tombstone
    assert [v for k, v in got if k == 2] == [5]


def _upsert_kafka_of(kafka: str, tmp_path: Path, source_ddl: str) -> list[tuple]:
    """Runs ``src`` (id, n) into an upsert-kafka table; its (id, n or None) messages."""
    sink = topic_name("upsert")
    sql = source_ddl + f"""
CREATE TABLE dst (id BIGINT, n BIGINT, PRIMARY KEY (id) NOT ENFORCED)
WITH (connector = 'upsert-kafka', bootstrap_servers = '{kafka}', topic = '{sink}');
INSERT INTO dst SELECT id, n FROM src;
"""
    result = run_cli("run", str(write_job(tmp_path, sql)))
    assert result.returncode == 0, result.stderr
    return [(json.loads(k)["id"], v and json.loads(v)["n"])
            for k, v in committed_messages(kafka, sink)]


def test_upsert_kafka_tombstones_the_old_key_of_an_update_that_moves_a_row(kafka, tmp_path):
    """An update whose new row has another key (a CDC row whose id changed) must delete the
    old key: its old row was dropped like that of an update in place, and the compacted
    topic kept the row under its old key too."""
    src = tmp_path / "changes.json"
    src.write_text("".join(json.dumps(c) + "\n" for c in [
        {"before": None, "after": {"id": 1, "n": 10}, "op": "c"},
        {"before": None, "after": {"id": 5, "n": 50}, "op": "c"},
        {"before": {"id": 1, "n": 10}, "after": {"id": 2, "n": 10}, "op": "u"},
        {"before": {"id": 5, "n": 50}, "after": {"id": 5, "n": 51}, "op": "u"}]))
    got = _upsert_kafka_of(kafka, tmp_path, f"""CREATE TABLE src (id BIGINT, n BIGINT,
    PRIMARY KEY (id) NOT ENFORCED) WITH (connector = 'filesystem', path = '{src}',
    format = 'debezium_json');""")
    latest = dict(got)
    assert {k: v for k, v in latest.items() if v is not None} == {2: 10, 5: 51}
    assert [v for k, v in got if k == 5] == [50, 51]   # in place: no tombstone between


@pytest.mark.parametrize("policy", ["fail", "drop"])
def test_bad_messages_follow_bad_data(kafka, tmp_path, policy, reader):
    topic = topic_name("bad")
    values = [json.dumps({"v": i}).encode() for i in range(20)]
    values[7] = b'{"v": "seven"}'
    values[13] = b"not json"
    producer = Producer({"bootstrap.servers": kafka})
    for v in values:
        producer.produce(topic, v, partition=1)
    producer.flush(10)
    out = tmp_path / "out"
    sql = f"""CREATE TABLE t (v BIGINT) WITH (connector = 'kafka',
    bootstrap_servers = '{kafka}', topic = '{topic}', bad_data = '{policy}',
    'source.offset' = 'earliest', 'scan.bounded.mode' = 'latest-offset');
CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', format = 'parquet');
INSERT INTO out SELECT v FROM t;
"""
    result = run_cli("run", str(write_job(tmp_path, sql)))
    if policy == "fail":
        assert result.returncode != 0
        line = result.stderr.strip().splitlines()[-1]
        assert f"topic '{topic}' partition 1 offset 7" in line, line
        assert "Traceback" not in result.stderr
    else:
        assert result.returncode == 0, result.stderr
        got = sorted(pq.read_table(out).column("v").to_pylist())
        assert got == [i for i in range(20) if i not in (7, 13)]




@pytest.mark.parametrize("policy", ["fail", "drop"])
@pytest.mark.parametrize("metadata", [False, True])
def test_an_empty_message_is_a_bad_message(kafka, tmp_path, policy, metadata, reader):
    """An empty (or blank) value is not a tombstone and not a JSON object: it follows
    bad_data, named by partition and offset. It vanished without a count, and with a
    METADATA column the job failed with 'ArrowInvalid: Column 1 named o expected length 3
    but got length 4'."""
    topic = topic_name("empty")
    values = [json.dumps({"v": i}).encode() for i in range(6)]
    values[2], values[4] = b"", b"  "
    produce(kafka, topic, values, partition=0)
    out = tmp_path / "out"
    meta = ", o BIGINT METADATA FROM 'offset'" if metadata else ""
    sql = f"""CREATE TABLE t (v BIGINT{meta}) WITH (connector = 'kafka',
    bootstrap_servers = '{kafka}', topic = '{topic}', bad_data = '{policy}',
    'source.offset' = 'earliest', 'scan.bounded.mode' = 'latest-offset');
CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', format = 'json');
INSERT INTO out SELECT * FROM t;
"""
    result = run_cli("run", str(write_job(tmp_path, sql)))
    assert "Traceback" not in result.stderr and "ArrowInvalid" not in result.stderr, \
        result.stderr
    if policy == "fail":
        assert result.returncode != 0
        assert f"topic '{topic}' partition 0 offset 2: the value is empty" in \
            result.stderr.strip().splitlines()[-1], result.stderr
    else:
        assert result.returncode == 0, result.stderr
        assert "2 bad rows dropped" in result.stderr, result.stderr
        rows = sorted((json.loads(x) for f in out.iterdir() for x in f.read_text().split()),
                      key=lambda r: r["v"])
        assert [r["v"] for r in rows] == [0, 1, 3, 5]
        if metadata:
            assert [r["o"] for r in rows] == [0, 1, 3, 5]

@pytest.mark.parametrize("policy", ["fail", "drop"])
def test_bad_debezium_messages_name_partition_and_offset(kafka, tmp_path, policy, reader):
    """A changelog message with a bad op is named by partition and offset like one the JSON
    decoder refuses, and the first bad message is the one named (offset 3 before 7)."""
    topic = topic_name("dbz-bad")
    values = [json.dumps({"before": None, "after": {"id": i, "n": i}, "op": "c"}).encode()
              for i in range(10)]
    values[3] = b'{"before": null, "after": {"id": 3, "n": 3}, "op": "x"}'
    values[5] = b'{"before": null, "after": {"id": 5, "n": 5}, "op": "u"}'
    values[7] = b'{"before": null, "after": {"id": 7, "n": "seven"}, "op": "c"}'
    produce(kafka, topic, values, partition=2)
    out = tmp_path / "out"
    sql = f"""CREATE TABLE t (id BIGINT, n BIGINT) WITH (connector = 'kafka',
    bootstrap_servers = '{kafka}', topic = '{topic}', bad_data = '{policy}',
    format = 'debezium_json', 'source.offset' = 'earliest',
    'scan.bounded.mode' = 'latest-offset');
CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', format = 'debezium_json');
INSERT INTO out SELECT id, n FROM t;
"""
    result = run_cli("run", str(write_job(tmp_path, sql)))
    first = f"topic '{topic}' partition 2 offset 3: debezium op 'x' is not c, r, u or d"
    assert "Traceback" not in result.stderr
    if policy == "fail":
        assert result.returncode != 0
        assert first in result.stderr.strip().splitlines()[-1], result.stderr
    else:
        assert result.returncode == 0, result.stderr
        assert f"3 bad rows dropped (first: {first})" in result.stderr, result.stderr
        got = sorted(json.loads(x)["after"]["id"] for f in out.iterdir()
                     for x in f.read_text().splitlines())
        assert got == [0, 1, 2, 4, 6, 8, 9]

def test_unreachable_broker_is_one_line_after_bounded_retry(tmp_path):
    sql = """CREATE TABLE t (v BIGINT) WITH (connector = 'kafka',
    bootstrap_servers = '127.0.0.1:1', topic = 'nowhere', connect_timeout = '2s');
SELECT * FROM t;
"""
    started = time.monotonic()
    result = run_cli("run", str(write_job(tmp_path, sql)), timeout=60)
    assert time.monotonic() - started < 30
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "cannot reach Kafka at 127.0.0.1:1" in lines[0]
    assert "times in 2s" in lines[0]


def test_missing_topic_is_named(kafka, tmp_path):
    sql = f"""CREATE TABLE t (v BIGINT) WITH (connector = 'kafka',
    bootstrap_servers = '{kafka}', topic = 'no-such-topic-x');
SELECT * FROM t;
"""
    result = run_cli("run", str(write_job(tmp_path, sql)))
    assert result.returncode != 0
    assert "topic 'no-such-topic-x' of table 't' does not exist" in result.stderr


def test_options_are_checked(kafka, tmp_path):
    sql = f"""CREATE TABLE t (v BIGINT) WITH (connector = 'kafka',
    bootstrap_servers = '{kafka}', topic = 'x', 'source.offset' = 'middle');
SELECT * FROM t;
"""
    result = run_cli("run", str(write_job(tmp_path, sql)))
    assert result.returncode != 0
    assert "source.offset = 'middle'" in result.stderr
    assert "accepted: earliest, earliest-offset, group" in result.stderr



@pytest.mark.parametrize("prop, refused", [
    ("'properties.fetch.max.bytes' = 'lots'", 'Invalid value for configuration property'),
    ("'properties.no.such.thing' = '1'", 'No such configuration property: "no.such.thing"'),
    ("'properties.security.protocol' = 'SASL_SSL', 'properties.sasl.mechanism' = 'PLAIN'",
     "sasl.username and sasl.password must be set")])
@pytest.mark.parametrize("side", ["source", "sink"])
def test_properties_librdkafka_refuses_are_one_line(kafka, bids_topic, tmp_path, prop,
                                                    refused, side):
    """A properties.* setting librdkafka refuses is one line naming the table and what
    librdkafka says (it was an internal error with KafkaException's repr)."""
    topic, _ = bids_topic
    src_extra, sink_extra = (", " + prop, "") if side == "source" else ("", ", " + prop)
    sql = f"""CREATE TABLE t (auction BIGINT) WITH (connector = 'kafka',
    bootstrap_servers = '{kafka}', topic = '{topic}', 'source.offset' = 'earliest',
    'scan.bounded.mode' = 'latest-offset'{src_extra});
CREATE TABLE out WITH (connector = 'kafka', bootstrap_servers = '{kafka}',
    topic = '{topic_name("props")}'{sink_extra});
INSERT INTO out SELECT auction FROM t;
"""
    result = run_cli("run", str(write_job(tmp_path, sql)))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "internal error" not in lines[0], result.stderr
    assert f"kafka table {'t' if side == 'source' else 'out'!r}" in lines[0], lines[0]
    assert refused in lines[0], lines[0]

# -- kill tests --------------------------------------------------------------------------------

def _kill_and_resume(kafka: str, tmp_path: Path, source_topic: str, kills: int,
                     parallelisms: list[int], seed: int) -> str:
    """Run Kafka -> tumbling count -> Kafka (exactly_once), SIGKILL it ``kills`` times at
    random moments, then let the same command finish; returns the sink topic."""
    sink = topic_name("killed")
    job = write_job(tmp_path, tumbling_sql(kafka, source_topic, sink, interval="2"))
    # small batches: seconds of work to kill in
    hit = kill_and_resume(job, tmp_path / "ck", kills, seed, tuple(parallelisms), batch_rows=50)
    assert hit >= kills // 2, "most kills must land while the job runs"
    return sink


def check_killed_output(kafka: str, sink: str, want: list[tuple]) -> None:
    """The committed windows equal DuckDB's, counting those the mock cluster made recovery
    skip (``lost_to_the_mock``): exactly what a real cluster's recovery writes again."""
    got = read_counts(kafka, sink) + sorted(
        (r["window_start"], r["bids"], r["total"])
        for r in map(json.loads, lost_to_the_mock(kafka, sink)))
    assert sorted(got) == want


def lost_to_the_mock(kafka: str, sink: str) -> list[bytes]:
    """The values of table ``counts``' messages in ``sink`` that recovery did not write
    again because a kill landed between a commit marker and its transaction's commit.

    The mock cluster fences the killed producer's transactional.id by giving the new one
    another producer id, without aborting the open transaction, and hands that
    transaction's marker to the recovery's read_committed consumer; recovery then takes the
    epoch as committed. A real cluster aborts and hides the transaction, and recovery writes
    its messages again. They are the records of the fenced transactions (by producer id)
    that hold a marker of this sink."""
    prefix = f"caudal-counts-{sink}-"
    stale = {pid for pid, messages in aborted_transactions(kafka, DEFAULT_COMMIT_TOPIC).items()
             if any(k is not None and k.decode().startswith(prefix) for k, _ in messages)}
    return [v for pid, messages in aborted_transactions(kafka, sink).items() if pid in stale
            for _, v in messages]


def _slow_bids(kafka: str, n: int, seed: int) -> tuple[str, pa.Table]:
    table = make_bids(n, seed=seed)
    topic = topic_name("kill-bids")
    produce(kafka, topic, bids_json(table), keys=[str(i).encode() for i in range(n)])
    # the mock cluster keeps about 30k messages per partition: the whole input must be there
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": "check"})
    for p in range(4):
        assert consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10,
                                              cached=False)[0] == 0
    consumer.close()
    return topic, table


@pytest.mark.slow   # about 30 s on the shared 2-core machine (three runs' start-up)
def test_kill_twice_then_resume_exactly_once(kafka, tmp_path, duck):
    topic, table = _slow_bids(kafka, 30_000, seed=3)
    sink = _kill_and_resume(kafka, tmp_path, topic, kills=2, parallelisms=[1, 2], seed=3)
    check_killed_output(kafka, sink, duck_tumbling(duck, table, 2))


@pytest.mark.slow
def test_kill_ten_times_then_resume_exactly_once(kafka, tmp_path, duck):
    topic, table = _slow_bids(kafka, 100_000, seed=4)
    sink = _kill_and_resume(kafka, tmp_path, topic, kills=10, parallelisms=[2, 1, 3],
                            seed=4)
    check_killed_output(kafka, sink, duck_tumbling(duck, table, 2))


_KILLED_AT_COMMIT = r'''
import os, pickle, signal, sys
import pyarrow as pa
from caudal.connectors.kafka_sink import KafkaSink
from caudal.plan.tables import TableSpec

bootstrap, topic, out = sys.argv[1:4]
schema = pa.schema([("window_start", pa.string()), ("bids", pa.int64())])
table = TableSpec("counts", "kafka", {"bootstrap_servers": bootstrap, "topic": topic},
                  schema=schema)
sink = KafkaSink(table, 0, 1)
sink.writer = 1
sink.open(schema)
sink.write(pa.record_batch([pa.array(["00:00:14"]), pa.array([7])], schema=schema))
state = sink.pre_commit(1)
with open(out, "wb") as f:   # what the checkpoint's manifest holds
    pickle.dump({**state, "rows": state["rows"].to_pylist()}, f)


class KilledBeforeCommit:
    """The producer, but the process dies once the marker is acknowledged, before EndTxn."""

    def __init__(self, producer):
        self.producer = producer

    def __getattr__(self, name):
        return getattr(self.producer, name)

    def commit_transaction(self, *args):
        self.producer.flush(30)
        os.kill(os.getpid(), signal.SIGKILL)


sink._producer = KilledBeforeCommit(sink._producer)
sink.commit(1)
'''


def test_kill_between_the_commit_marker_and_the_commit_loses_no_window(kafka, tmp_path):
    """A SIGKILL after the commit marker reached the brokers but before commit_transaction,
    then recovery: the epoch's window is committed once, or (on the mock cluster) is in the
    fenced transaction whose marker made recovery skip it (``lost_to_the_mock``). Before the
    verifier counted a transaction left open by a fenced producer as aborted, this ordering
    showed as a lost window (issue 11: the ten-kill test missed window 00:00:14 once)."""
    from caudal.connectors.kafka_sink import STAGED, KafkaSink
    from caudal.plan.tables import TableSpec

    sink_topic = topic_name("killed-at-commit")
    out = tmp_path / "state.pickle"
    child = subprocess.run([sys.executable, "-c", _KILLED_AT_COMMIT, kafka, sink_topic,
                            str(out)], env=dict(os.environ, PYTHONPATH=str(REPO)),
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr
    state = pickle.loads(out.read_bytes())
    state["rows"] = pa.Table.from_pylist(state["rows"], schema=STAGED)
    # recovery, as checkpoint.recovery.recover_sinks runs it for the killed subtask
    schema = pa.schema([("window_start", pa.string()), ("bids", pa.int64())])
    table = TableSpec("counts", "kafka", {"bootstrap_servers": kafka, "topic": sink_topic},
                      schema=schema)
    sink = KafkaSink(table, 0, 1)
    sink.writer = 1
    sink.open(schema, state)
    sink.commit(1)
    sink.close()
    got = [json.loads(v) for _, v in committed_messages(kafka, sink_topic)]
    lost = [json.loads(v) for v in lost_to_the_mock(kafka, sink_topic)]
    assert got + lost == [{"window_start": "00:00:14", "bids": 7}]

def test_watermark_is_the_minimum_over_partitions_until_one_is_idle(kafka, reader):
    import pyarrow as pa

    from caudal.connectors.kafka import KafkaSource
    from caudal.plan.tables import TableSpec
    from caudal.types import TIMESTAMP

    topic = topic_name("marks")
    producer = Producer({"bootstrap.servers": kafka})
    for second in range(50):   # partition 0 is at 49 s, partition 1 at 5 s
        producer.produce(topic, json.dumps({"ts": f"2026-01-01T00:00:{second:02d}"}).encode(),
                         partition=0)
    producer.produce(topic, b'{"ts": "2026-01-01T00:00:05"}', partition=1)
    producer.flush(10)
    spec = TableSpec("t", "kafka", {"bootstrap_servers": kafka, "topic": topic,
                                    "source.offset": "earliest", "idle_timeout": "1s"},
                     pa.schema([("ts", TIMESTAMP)]), event_time="ts",
                     watermark_delay_us=1_000_000)
    source = KafkaSource(spec)
    parts = source.partitions(1)
    source.open(parts, None)
    rows = 0
    deadline = time.monotonic() + 10
    while rows < 51 and time.monotonic() < deadline:
        batch = source.poll(1000, 0.1)
        rows += batch.num_rows if batch is not None else 0
    assert rows == 51
    base = 1_767_225_600_000_000
    assert source.watermark() is not None and source.watermark() < base  # 2, 3: no data yet
    time.sleep(1.2)   # partitions 2 and 3 (empty) and then 1 fall idle; 0 is idle as well
    assert source.watermark() == base + 49_000_000 - 1_000_000
    source.close()
    source = KafkaSource(spec)
    source.partitions(1)
    source.open(parts, {f"{topic}:0": 45, f"{topic}:1": 1})   # resumed: positions restored
    got = []
    deadline = time.monotonic() + 10
    while len(got) < 5 and time.monotonic() < deadline:
        batch = source.poll(1000, 0.1)
        if batch is not None:
            got += batch.column("ts").to_pylist()
    assert sorted(t.second for t in got) == [45, 46, 47, 48, 49]
    assert source.offsets() == {f"{topic}:0": 50, f"{topic}:1": 1, f"{topic}:2": 0,
                                f"{topic}:3": 0}
    source.close()


def test_exactly_once_without_checkpoints_commits_as_it_goes(kafka, tmp_path, monkeypatch):
    from caudal.connectors import kafka_sink
    from caudal.job import run_sql

    monkeypatch.setattr(kafka_sink, "UNCHECKPOINTED_TRANSACTION", 2_000)
    sink = topic_name("nockpt")
    run_sql(f"""CREATE TABLE gen WITH (connector = 'nexmark', table = 'bid', events = '10000');
CREATE TABLE t WITH (connector = 'kafka', bootstrap_servers = '{kafka}', topic = '{sink}');
INSERT INTO t SELECT auction, price FROM gen;""", batch_rows=1000)
    rows = committed_messages(kafka, sink)
    assert len(rows) == 9_200   # the bids of 10,000 events, once each
    markers = [json.loads(v) for k, v in committed_messages(kafka, DEFAULT_COMMIT_TOPIC)
               if k is not None and k.decode().startswith(f"caudal-t-{sink}-")]
    assert len(markers) >= 4   # several transactions, not one at the end


def test_two_inserts_into_one_topic_do_not_fence_each_other(kafka, bids_topic, tmp_path, duck):
    topic, table = bids_topic
    sink = topic_name("two-writers")
    sql = source_sql(kafka, topic) + f"""
CREATE TABLE out WITH (connector = 'kafka', bootstrap_servers = '{kafka}', topic = '{sink}');
INSERT INTO out SELECT auction, price FROM bids WHERE price > 5000;
INSERT INTO out SELECT auction, price FROM bids WHERE price <= 5000;
"""
    result = run_cli("run", str(write_job(tmp_path, sql)), "--checkpoint-dir",
                     str(tmp_path / "ck"), "--checkpoint-interval", "100ms", "-p", "2")
    assert result.returncode == 0, result.stderr
    got = sorted((r["auction"], r["price"]) for r in
                 (json.loads(v) for _, v in committed_messages(kafka, sink)))
    duck.register("bids", table)
    want = sorted(duck.execute("SELECT auction, price FROM bids WHERE price IS NOT NULL"
                               ).fetchall())
    assert got == want


def test_count_star_and_metadata_only_queries(kafka, bids_topic, tmp_path, reader):
    topic, table = bids_topic
    sql = source_sql(kafka, topic, BIDS_COLUMNS + ", o BIGINT METADATA FROM 'offset'") + """
SELECT count(*) AS n, count(o) AS with_offset FROM bids;
"""
    result = run_cli("run", str(write_job(tmp_path, sql)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == [str(table.num_rows)] * 2


def _read_all(source, want: int) -> list:
    got = []
    deadline = time.monotonic() + 10
    while len(got) < want and time.monotonic() < deadline:
        batch = source.poll(1000, 0.1)
        if batch is not None:
            got += batch.column("v").to_pylist()
    return got


def test_startup_from_group_offsets(kafka, reader):
    import pyarrow as pa

    from caudal.connectors.kafka import KafkaSource
    from caudal.plan.tables import TableSpec

    topic = topic_name("startup")
    base = 1_767_225_600_000
    producer = Producer({"bootstrap.servers": kafka})
    for i in range(10):
        producer.produce(topic, json.dumps({"v": i}).encode(), partition=0,
                         timestamp=base + i * 1000)
    producer.flush(10)
    schema = pa.schema([("v", pa.int64())])
    options = {"bootstrap_servers": kafka, "topic": topic,
               "scan.startup.mode": "earliest-offset"}
    source = KafkaSource(TableSpec("t", "kafka", options, schema))
    source.open(source.partitions(1), None)
    assert sorted(_read_all(source, 10)) == list(range(10))
    # the positions of a completed checkpoint go to the consumer group (for lag tools) ...
    source.checkpoint_completed({f"{topic}:0": 8})
    source.close()
    group = {"bootstrap_servers": kafka, "topic": topic, "source.offset": "group",
             "source.group_id": "caudal-t"}
    deadline = time.monotonic() + 10
    while True:   # the commit is asynchronous
        source = KafkaSource(TableSpec("t", "kafka", group, schema))
        source.open(source.partitions(1), None)
        if source.offsets()[f"{topic}:0"] == 8 or time.monotonic() > deadline:
            break
        source.close()
        time.sleep(0.2)
    # ... and a job started with source.offset = 'group' begins there
    assert sorted(_read_all(source, 2)) == [8, 9]
    source.close()


def test_bounded_read_stops_at_the_offsets_of_its_start_while_the_topic_grows(kafka, reader):
    """Messages produced after the start are not read, even when a polled batch runs past a
    partition's stop offset (the batch is cut there); positions end at the stop offsets."""
    import pyarrow as pa

    from caudal.connectors.kafka import KafkaSource
    from caudal.plan.tables import TableSpec

    topic = topic_name("grows")
    produce(kafka, topic, [json.dumps({"v": i}).encode() for i in range(400)])
    options = {"bootstrap_servers": kafka, "topic": topic, "source.offset": "earliest",
               "scan.bounded.mode": "latest-offset"}
    source = KafkaSource(TableSpec("t", "kafka", options, pa.schema([("v", pa.int64())])))
    source.open(source.partitions(1), None)
    stops = dict(source._stop)
    produce(kafka, topic, [json.dumps({"v": 1000 + i}).encode() for i in range(400)])
    time.sleep(0.5)   # the later messages are in the log before the first poll
    got = []
    deadline = time.monotonic() + 20
    while not source.finished() and time.monotonic() < deadline:
        batch = source.poll(100_000, 0.1)
        if batch is not None:
            got += batch.column("v").to_pylist()
    assert source.finished()
    assert sorted(got) == list(range(400))
    assert source.offsets() == {f"{topic}:{p}": stop for p, stop in stops.items()}
    source.close()


def test_native_drain_compiles_once_into_the_cache_and_falls_back_without_gcc(
        monkeypatch, tmp_path, caplog):
    import logging

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv(kafka_native.ENV, "1")
    kafka_native._load.cache_clear()
    try:
        assert kafka_native.load() is not None
        assert len(list((tmp_path / "caudal" / "kafka_native").glob("*.so"))) == 1
        kafka_native._load.cache_clear()
        monkeypatch.setattr(kafka_native.shutil, "which", lambda name: None)
        assert kafka_native.load() is not None   # compiled before: no compiler needed
        kafka_native._load.cache_clear()
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty"))
        with caplog.at_level(logging.DEBUG, logger=kafka_native.__name__):
            assert kafka_native.load() is None
        assert "no C compiler" in caplog.text
    finally:
        kafka_native._load.cache_clear()


def _read_both_paths(spec, monkeypatch) -> list[dict]:
    """The rows of ``spec`` read through the native drain and through confluent-kafka's
    Consumer, checked equal (and each path checked to be the one asked for)."""
    got = {}
    for path in ("native", "pure"):
        monkeypatch.setenv(kafka_native.ENV, "1" if path == "native" else "0")
        got[path], native = _read_bounded(spec)
        assert native == (path == "native")
    assert got["native"] == got["pure"]
    return got["native"]


def _read_bounded(spec) -> tuple[list[dict], int]:
    from caudal.connectors.kafka import KafkaSource

    source = KafkaSource(spec)
    source.open(source.partitions(1), None)
    rows = []
    deadline = time.monotonic() + 20
    while not source.finished() and time.monotonic() < deadline:
        batch = source.poll(100_000, 0.1)
        if batch is not None:
            rows += batch.to_pylist()
    assert source.finished()
    native = source._native is not None
    source.close()
    return sorted(rows, key=lambda r: (r["p"], r["o"])), native


@pytest.mark.parametrize("fmt", ["json", "raw_string", "raw_bytes"])
def test_native_drain_reads_what_the_client_reads(kafka, monkeypatch, fmt):
    """The native drain and confluent-kafka's Consumer give the same rows: values (one
    pretty-printed over lines, a tombstone, a bad one dropped), keys (one NULL), timestamps,
    partitions and offsets; bad_data counts the same."""
    from caudal.plan.tables import TableSpec
    from caudal.types import TIMESTAMP

    topic = topic_name(f"paths-{fmt}")
    values = [json.dumps({"v": i}).encode() for i in range(300)]
    values[5] = b'{\n  "v": 5\n}'
    values[9] = None
    values[11] = b'{"v": "eleven"}' if fmt == "json" else b"\xff\xfe"
    keys = [None if i == 3 else f"k{i}".encode() for i in range(300)]
    stamps = [1_767_225_600_000 + i for i in range(300)]
    produce(kafka, topic, values, keys, timestamps=stamps)
    value_type = {"json": pa.int64(), "raw_string": pa.string(), "raw_bytes": pa.binary()}
    schema = pa.schema([("v", value_type[fmt]), ("p", pa.int32()), ("o", pa.int64()),
                        ("ts", TIMESTAMP), ("k", pa.string())])
    options = {"bootstrap_servers": kafka, "topic": topic, "source.offset": "earliest",
               "scan.bounded.mode": "latest-offset", "bad_data": "drop",
               "format": "json" if fmt == "json" else "raw"}
    spec = TableSpec("t", "kafka", options, schema,
                     metadata={"p": "partition", "o": "offset", "ts": "timestamp",
                               "k": "key"})
    rows = _read_both_paths(spec, monkeypatch)
    expect = [i for i in range(300) if i != 9 and (i != 11 or fmt == "raw_bytes")]
    assert len(rows) == len(expect)
    assert sum(r["k"] is None for r in rows) == 1
    assert sorted(int(r["ts"].timestamp() * 1000) for r in rows) == [stamps[i] for i in expect]


@pytest.mark.parametrize("key", [False, True])
@pytest.mark.parametrize("bad", [None, b'{"v": 1.5, "s": "x"}', b'{"v": 1, "s": "\\ud800"}'])
def test_native_json_typed_decoder_reads_what_the_client_reads(kafka, monkeypatch, bad, key):
    """JSON messages of the common column types are decoded in C (kafka_native.TypedJson)
    by the native drain: the same rows as confluent-kafka's Consumer and Arrow's parser give;
    a batch holding a message caudal's decoder refuses is left to Arrow's path (the same
    rows dropped). Straight from librdkafka's messages, or (with a key metadata column)
    from the values copied out with the keys."""
    from caudal.plan.tables import TableSpec
    from caudal.types import TIMESTAMP

    topic = topic_name("typed")
    values = [json.dumps({"v": i, "s": f"é{i}\"", "f": i / 4, "b": i % 3 == 0,
                          "t": f"2026-01-01T00:00:{i % 60:02d}.{i:03d}Z",
                          "skip": [i, {"x": None}]}).encode() for i in range(200)]
    values[17] = b'{"s": null, "v": -0, "f": -0, "t": "2026-01-01 10:00:00+02:00"}'
    if bad is not None:
        values[23] = bad
    produce(kafka, topic, values, [f"k{i}".encode() for i in range(200)])
    schema = pa.schema([("v", pa.int64()), ("s", pa.string()), ("f", pa.float64()),
                        ("b", pa.bool_()), ("t", TIMESTAMP), ("p", pa.int32()),
                        ("o", pa.int64())])
    options = {"bootstrap_servers": kafka, "topic": topic, "source.offset": "earliest",
               "scan.bounded.mode": "latest-offset", "bad_data": "drop"}
    metadata = {"p": "partition", "o": "offset"}
    if key:
        schema = schema.append(pa.field("k", pa.string()))
        metadata["k"] = "key"
    spec = TableSpec("t", "kafka", options, schema, metadata=metadata)
    decoded = []
    method = "decode" if key else "decode_messages"
    decode = getattr(kafka_native.TypedJson, method)

    def counting(self, *args):
        table = decode(self, *args)
        decoded.append(table is not None)
        return table

    monkeypatch.setattr(kafka_native.TypedJson, method, counting)
    rows = _read_both_paths(spec, monkeypatch)
    assert len(rows) == 200 - (bad is not None)
    assert decoded and all(decoded) == (bad is None)


def test_paused_gc_is_shared_by_overlapping_holders():
    import gc
    import threading

    from caudal.connectors.messages import paused_gc

    assert gc.isenabled()
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with paused_gc():
            inside.set()
            release.wait(5)

    other = threading.Thread(target=hold)
    other.start()
    inside.wait(5)
    with paused_gc():
        assert not gc.isenabled()
    assert not gc.isenabled()   # the other holder still holds it
    release.set()
    other.join(5)
    assert gc.isenabled()


def test_startup_at_a_timestamp_after_every_message_reads_only_later_ones(kafka):
    """The brokers answer "no message at or after" (-1): the job starts at the end, as
    Flink's does; messages produced after the start are read."""
    import pyarrow as pa

    from caudal.connectors.kafka import KafkaSource
    from caudal.plan.tables import TableSpec

    topic = topic_name("after")
    base = 1_767_225_600_000
    produce(kafka, topic, [json.dumps({"v": i}).encode() for i in range(8)],
            timestamps=[base + i * 1000 for i in range(8)])
    options = {"bootstrap_servers": kafka, "topic": topic, "scan.startup.mode": "timestamp",
               "scan.startup.timestamp-millis": str(base + 3_600_000)}
    source = KafkaSource(TableSpec("t", "kafka", options, pa.schema([("v", pa.int64())])))
    source.open(source.partitions(1), None)
    assert sum(source.offsets().values()) == 8   # every partition at its end
    produce(kafka, topic, [json.dumps({"v": 100 + i}).encode() for i in range(3)])
    assert sorted(_read_all(source, 3)) == [100, 101, 102]
    source.close()


def test_startup_at_a_timestamp_the_brokers_cannot_resolve_is_refused(kafka):
    """librdkafka's mock cluster answers -1 to every lookup by time, also for a time before
    its messages: caudal sees that the last message is later and refuses in one line
    instead of starting at the end and skipping them."""
    import pyarrow as pa

    from caudal.connectors.kafka import KafkaSource
    from caudal.errors import RuntimeFailure
    from caudal.plan.tables import TableSpec

    topic = topic_name("before")
    base = 1_767_225_600_000
    produce(kafka, topic, [json.dumps({"v": i}).encode() for i in range(8)],
            timestamps=[base + i * 1000 for i in range(8)])
    options = {"bootstrap_servers": kafka, "topic": topic, "scan.startup.mode": "timestamp",
               "scan.startup.timestamp-millis": str(base + 2_000)}
    source = KafkaSource(TableSpec("t", "kafka", options, pa.schema([("v", pa.int64())])))
    with pytest.raises(RuntimeFailure) as failure:
        source.open(source.partitions(1), None)
    message = str(failure.value)
    assert "holds no message at or after 2026-01-01 00:00:02.000" in message
    assert "cannot look up offsets by time" in message and "\n" not in message
    source.close()


def test_updating_query_as_debezium_json(kafka, bids_topic, tmp_path, duck):
    topic, table = bids_topic
    sink = topic_name("dbz")
    sql = source_sql(kafka, topic) + f"""
CREATE TABLE totals WITH (connector = 'kafka', bootstrap_servers = '{kafka}',
    topic = '{sink}', format = 'debezium_json', 'key.fields' = 'channel');
INSERT INTO totals SELECT channel, count(*) AS n FROM bids WHERE channel IS NOT NULL
GROUP BY channel;
"""
    result = run_cli("run", str(write_job(tmp_path, sql)), "-p", "2", "--checkpoint-dir",
                     str(tmp_path / "ck"), "--checkpoint-interval", "100ms")
    assert result.returncode == 0, result.stderr
    rows: dict[str, int] = {}
    for key, value in committed_messages(kafka, sink):   # fold the changelog
        change = json.loads(value)
        if change["before"] is not None:
            assert rows.pop(change["before"]["channel"]) == change["before"]["n"]
        if change["after"] is not None:
            rows[change["after"]["channel"]] = change["after"]["n"]
            assert json.loads(key) == {"channel": change["after"]["channel"]}
    duck.register("bids", table)
    want = dict(duck.execute("SELECT channel, count(*) FROM bids WHERE channel IS NOT NULL "
                             "GROUP BY channel").fetchall())
    assert rows == want
