"""The rabbitmq connector against the real RabbitMQ on 127.0.0.1:5672 (guest/guest)."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.conftest import make_bids, run_cli
from tests.connectors.broker_util import (
    BIDS_COLUMNS,
    assert_filter_matches_duckdb,
    bids_json,
    counts_of,
    duck_tumbling,
    kill_and_resume,
    tumbling,
)

pika = pytest.importorskip("pika")
URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


@pytest.fixture
def rabbit():
    try:
        conn = pika.BlockingConnection(pika.URLParameters(URL))
    except pika.exceptions.AMQPError as e:
        pytest.skip(f"no RabbitMQ at {URL}: {e}")
    channel = conn.channel()
    made: list[str] = []

    def queue(stem: str, values: list[bytes] = ()) -> str:
        name = f"caudal-test-{stem}-{uuid.uuid4().hex[:8]}"
        channel.queue_declare(name, durable=True)
        made.append(name)
        for v in values:
            channel.basic_publish("", name, v)
        return name

    yield channel, queue
    for name in made:
        channel.queue_delete(name)
    conn.close()


def drain(channel, queue: str) -> list[bytes]:
    out = []
    while True:
        method, _, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return out
        out.append(body)


def count(channel, queue: str) -> int:
    return channel.queue_declare(queue, passive=True).method.message_count


def source(queue: str, extra: str = "") -> str:
    return f"""CREATE TABLE bids ({BIDS_COLUMNS},
  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND) WITH (
  connector = 'rabbitmq', url = '{URL}', queue = '{queue}', format = 'json',
  'scan.bounded.mode' = 'latest-offset'{extra});
"""


@pytest.mark.parametrize("parallelism", [1, 2])
def test_bounded_read_matches_duckdb_and_acks(rabbit, tmp_path, duck, parallelism):
    channel, queue = rabbit
    table = make_bids(3000, seed=parallelism)
    q = queue("bids", bids_json(table))
    out = tmp_path / "out"
    job = tmp_path / "job.sql"
    job.write_text(source(q, ", prefetch = '500'") + f"""
CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', format = 'parquet');
INSERT INTO out SELECT auction, price, date_time FROM bids WHERE price > 100;
""")
    result = run_cli("run", str(job), "--parallelism", str(parallelism), "--checkpoint-dir",
                     str(tmp_path / "ck"), "--checkpoint-interval", "200ms")
    assert result.returncode == 0, result.stderr
    assert_filter_matches_duckdb(out, duck, table)
    time.sleep(0.5)
    assert count(channel, q) == 0   # every message acked after the final checkpoint


def test_sink_round_trip_with_confirms(rabbit, tmp_path, duck):
    channel, queue = rabbit
    table = make_bids(4000, seed=3)
    src, dst = queue("bids", bids_json(table)), queue("counts")
    job = tmp_path / "job.sql"
    job.write_text(source(src) + f"""CREATE TABLE counts WITH (connector = 'rabbitmq',
  url = '{URL}', queue = '{dst}');
""" + tumbling())
    result = run_cli("run", str(job))
    assert result.returncode == 0, result.stderr
    assert counts_of(drain(channel, dst)) == duck_tumbling(duck, table)


def test_unroutable_sink_is_one_line(rabbit, tmp_path):
    channel, queue = rabbit
    src = queue("bids", bids_json(make_bids(10)))
    job = tmp_path / "job.sql"
    job.write_text(source(src) + f"""CREATE TABLE o WITH (connector = 'rabbitmq',
  url = '{URL}', queue = 'no-such-queue-{uuid.uuid4().hex[:6]}');
INSERT INTO o SELECT auction FROM bids;
""")
    result = run_cli("run", str(job))
    assert result.returncode != 0
    assert "no queue is bound to exchange ''" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_messages_follow_bad_data(rabbit, tmp_path):
    channel, queue = rabbit
    good = b'{"auction": 1, "price": 2, "date_time": "2026-01-01T00:00:00"}'
    q = queue("bad", [good, b"not json", b'{"auction": 3, "price": 4}'])
    out = tmp_path / "out"
    body = f"""CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', format = 'json');
INSERT INTO out SELECT auction FROM bids;
"""
    job = tmp_path / "job.sql"
    job.write_text(source(q) + body)
    failed = run_cli("run", str(job))
    assert failed.returncode != 0
    assert f"malformed message in queue '{q}' delivery" in failed.stderr
    job.write_text(source(q, ", bad_data = 'drop'") + body)
    ok = run_cli("run", str(job))   # the failed run acked nothing: all three are there
    assert ok.returncode == 0, ok.stderr
    rows = [json.loads(line) for p in out.iterdir() for line in p.read_text().splitlines()]
    assert sorted(x["auction"] for x in rows) == [1, 3]


def test_server_down_is_one_line_after_bounded_retry(tmp_path):
    job = tmp_path / "job.sql"
    job.write_text(f"""CREATE TABLE bids ({BIDS_COLUMNS}) WITH (connector = 'rabbitmq',
  url = 'amqp://guest:guest@127.0.0.1:1/%2F', queue = 'x', connect_timeout = '1s');
SELECT * FROM bids;
""")
    start = time.monotonic()
    result = run_cli("run", str(job))
    assert result.returncode != 0
    assert "cannot reach rabbitmq at 127.0.0.1:1" in result.stderr
    assert "Traceback" not in result.stderr
    assert time.monotonic() - start < 20


@pytest.mark.slow   # five killed runs and a resumed one
def test_kill_five_times_then_resume_loses_nothing(rabbit, tmp_path, duck):
    """Queue source (acks after checkpoints) -> tumbling count -> filesystem (exactly once),
    SIGKILLed 5 times: every window is there and no count is below DuckDB's (at least once:
    a message in a completed checkpoint but not yet acked when killed counts twice)."""
    channel, queue = rabbit
    table = make_bids(20_000, seed=19)
    q = queue("kbids", bids_json(table))
    out = tmp_path / "out"
    job = tmp_path / "job.sql"
    job.write_text(source(q) + f"""CREATE TABLE counts WITH (connector = 'filesystem',
  path = '{out}', format = 'json');
""" + tumbling())
    hit = kill_and_resume(job, tmp_path / "ck", kills=5, seed=21)
    assert hit >= 3
    rows = [json.loads(line) for p in out.rglob("*.json")
            if not p.name.startswith((".", "_")) for line in p.read_text().splitlines()]
    got = counts_of([json.dumps(r).encode() for r in rows])
    want = duck_tumbling(duck, table)
    assert [w for w, _, _ in got] == [w for w, _, _ in want]
    assert all(g[1] >= w[1] for g, w in zip(got, want))
    assert count(channel, q) == 0


def test_idle_queue_keeps_its_consumer(rabbit, tmp_path):
    """Checkpoints while the queue is idle ack nothing new: acking the same delivery tag
    again made the broker close the channel, and the source silently read nothing more."""
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import REPO

    channel, queue = rabbit
    q = queue("idle", [json.dumps({"auction": i}).encode() for i in range(10)])
    out = tmp_path / "out"
    job = tmp_path / "job.sql"
    job.write_text(f"""CREATE TABLE bids (auction BIGINT) WITH (connector = 'rabbitmq',
  url = '{URL}', queue = '{q}', format = 'json');
CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', format = 'json');
INSERT INTO out SELECT auction FROM bids;
""")
    proc = subprocess.Popen([sys.executable, "-m", "caudal.cli", "run", str(job),
                             "--checkpoint-dir", str(tmp_path / "ck"),
                             "--checkpoint-interval", "100ms"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))

    def committed() -> list[int]:
        return sorted(json.loads(line)["auction"] for p in out.glob("*.json")
                      for line in p.read_text().splitlines()) if out.exists() else []

    try:
        deadline = time.monotonic() + 30
        while len(committed()) < 10 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)   # about ten checkpoints with nothing new
        for i in range(10, 20):
            channel.basic_publish("", q, json.dumps({"auction": i}).encode())
        deadline = time.monotonic() + 30
        while len(committed()) < 20 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert committed() == list(range(20))
