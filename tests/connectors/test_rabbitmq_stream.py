"""The rabbitmq connector's stream source against the real RabbitMQ (stream protocol on 5552,
plugin rabbitmq_stream: enabled by .ci/rabbitmq-setup)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO, make_bids, run_cli
from tests.connectors.broker_util import (
    BIDS_COLUMNS,
    CuttableProxy,
    assert_filter_matches_duckdb,
    bids_json,
    counts_of,
    duck_tumbling,
    kill_and_resume,
    tumbling,
)

pika = pytest.importorskip("pika")
pytest.importorskip("rstream")
URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
STREAM_PORT = 5552


@pytest.fixture
def streams():
    try:
        conn = pika.BlockingConnection(pika.URLParameters(URL))
    except pika.exceptions.AMQPError as e:
        pytest.skip(f"no RabbitMQ at {URL}: {e}")
    try:
        socket.create_connection(("127.0.0.1", STREAM_PORT), timeout=2).close()
    except OSError:
        conn.close()
        pytest.skip("RabbitMQ's stream plugin is not enabled (nothing on port 5552): run "
                    ".ci/rabbitmq-setup (rabbitmq-plugins enable rabbitmq_stream)")
    channel = conn.channel()
    channel.confirm_delivery()
    made: list[str] = []

    def stream(stem: str, values: list[bytes] = ()) -> str:
        name = f"caudal-test-{stem}-{uuid.uuid4().hex[:8]}"
        channel.queue_declare(name, durable=True, arguments={"x-queue-type": "stream"})
        made.append(name)
        publish(channel, name, values)
        return name

    yield channel, stream
    for name in made:
        channel.queue_delete(name)
    conn.close()


def publish(channel, name: str, values: list[bytes]) -> None:
    for v in values:   # confirmed one by one: in the stream before the job looks
        channel.basic_publish("", name, v)


def source(stream: str, extra: str = "", columns: str = BIDS_COLUMNS) -> str:
    return f"""CREATE TABLE bids ({columns}) WITH (
  connector = 'rabbitmq', url = '{URL}', stream = '{stream}', format = 'json'{extra});
"""


@pytest.mark.parametrize("parallelism", [1, 2])
def test_bounded_stream_read_matches_duckdb(streams, tmp_path, duck, parallelism):
    """latest-offset: the job reads what the stream held at start (3 000 bids) and ends; the
    answer equals DuckDB's. A second run starting at 'latest' reads nothing of them (p=1)."""
    channel, stream = streams
    table = make_bids(3000, seed=parallelism)
    s = stream("bids", bids_json(table))
    out = tmp_path / "out"
    job = tmp_path / "job.sql"
    sql = f"""
CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', format = 'parquet');
INSERT INTO out SELECT auction, price, date_time FROM bids WHERE price > 100;
"""
    job.write_text(source(s, ", 'scan.bounded.mode' = 'latest-offset'") + sql)
    result = run_cli("run", str(job), "--parallelism", str(parallelism), "--checkpoint-dir",
                     str(tmp_path / "ck"), "--checkpoint-interval", "200ms")
    assert result.returncode == 0, result.stderr
    assert_filter_matches_duckdb(out, duck, table)
    if parallelism > 1:
        return
    late = tmp_path / "late"
    job.write_text(source(s, ", 'scan.bounded.mode' = 'latest-offset', "
                             "'scan.startup.mode' = 'latest'") + sql.replace(str(out), str(late)))
    result = run_cli("run", str(job))
    assert result.returncode == 0, result.stderr
    assert not late.exists() or pq.read_table(late).num_rows == 0


def test_missing_stream_and_queue_with_stream_are_one_line(streams, tmp_path):
    job = tmp_path / "job.sql"
    body = """CREATE TABLE o WITH (connector = 'blackhole');
INSERT INTO o SELECT auction FROM bids;
"""
    job.write_text(source("no-such-stream-x", ", 'scan.bounded.mode' = 'latest-offset'") + body)
    result = run_cli("run", str(job))
    assert result.returncode != 0
    assert "RabbitMQ stream 'no-such-stream-x' of table 'bids' does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    job.write_text(source("s", ", queue = 'q'") + body)
    result = run_cli("run", str(job))
    assert "has both queue and stream" in result.stderr and "Traceback" not in result.stderr


def committed_ids(out) -> list[int]:
    ids = []
    if out.exists():
        for p in out.rglob("*.json"):
            if not any(part.startswith((".", "_")) for part in p.relative_to(out).parts):
                ids.extend(json.loads(line)["id"] for line in p.read_text().splitlines())
    return ids


def test_stream_connection_cut_mid_run_loses_and_doubles_nothing(streams, tmp_path):
    """The job reads the stream through a loopback proxy (load_balancer = 'true') while
    messages are published; every connection is cut three times mid-run. The source
    subscribes again at its next offset: the output holds every id exactly once."""
    channel, stream = streams
    s = stream("cut")
    proxy = CuttableProxy(STREAM_PORT)
    out = tmp_path / "out"
    job = tmp_path / "job.sql"
    job.write_text(source(s, f", stream_port = '{proxy.port}', load_balancer = 'true'",
                          columns="id BIGINT") + f"""
CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', format = 'json');
INSERT INTO out SELECT id FROM bids;
""")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("CAUDAL_DEBUG", None)
    proc = subprocess.Popen([sys.executable, "-m", "caudal.cli", "run", str(job),
                             "--checkpoint-dir", str(tmp_path / "ck"),
                             "--checkpoint-interval", "200ms"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env)
    n = 3000
    try:
        done = threading.Event()

        def publisher() -> None:
            conn = pika.BlockingConnection(pika.URLParameters(URL))
            ch = conn.channel()
            ch.confirm_delivery()
            for i in range(n):
                ch.basic_publish("", s, json.dumps({"id": i}).encode())
                if i % 100 == 99:
                    time.sleep(0.05)
            conn.close()
            done.set()

        thread = threading.Thread(target=publisher, daemon=True)
        thread.start()
        cut = 0
        while cut < 3 and proc.poll() is None:
            time.sleep(1.0)
            if proxy.cut():
                cut += 1
                seen = proxy.accepted
                deadline = time.monotonic() + 30
                while proxy.accepted == seen and time.monotonic() < deadline:
                    time.sleep(0.05)   # the source connects again
                assert proxy.accepted > seen, "the source did not reconnect"
        thread.join(60)
        deadline = time.monotonic() + 60
        while len(committed_ids(out)) < n and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.2)
        time.sleep(0.5)   # a duplicate would be committed by now
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proxy.close()
    ids = committed_ids(out)
    assert cut == 3 and done.is_set()
    assert sorted(ids) == list(range(n))


@pytest.mark.slow   # six runs of a job
def test_stream_killed_five_times_is_exactly_once(streams, tmp_path, duck):
    """A tumbling count from a stream into files, SIGKILLed five times at random moments
    and resumed: the offsets are in checkpoint state and the file sink commits with the
    checkpoint, so the counts equal DuckDB's exactly."""
    channel, stream = streams
    table = make_bids(6000, seed=5)
    s = stream("kill", bids_json(table))
    out = tmp_path / "out"
    job = tmp_path / "job.sql"
    job.write_text(source(s, ", 'scan.bounded.mode' = 'latest-offset'",
                          columns=BIDS_COLUMNS + ", WATERMARK FOR date_time AS date_time - "
                                                 "INTERVAL '1' SECOND")
                   + f"""CREATE TABLE counts WITH (connector = 'filesystem',
  path = '{out}', format = 'json');
""" + tumbling())
    hit = kill_and_resume(job, tmp_path / "ck", kills=5, seed=17, parallelisms=(1, 2))
    assert hit >= 3
    rows = [json.loads(line) for p in out.rglob("*.json")
            if not any(part.startswith((".", "_")) for part in p.relative_to(out).parts)
            for line in p.read_text().splitlines()]
    assert counts_of([json.dumps(r).encode() for r in rows]) == duck_tumbling(duck, table)
