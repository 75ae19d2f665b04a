"""A broker connection dropped mid-run: each job reads through a loopback proxy whose
connections the test cuts while messages are being published (the broker and other clients
are not touched). The source reconnects and goes on, or the job fails with one line and
`caudal run` restarts it from its checkpoint; either way the output holds every message the
delivery guarantee promises."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.connectors.broker_util import CuttableProxy

N = 3000


def committed_ids(out: Path) -> list[int]:
    ids = []
    if out.exists():
        for p in out.rglob("*.json"):
            if not any(part.startswith((".", "_")) for part in p.relative_to(out).parts):
                ids.extend(json.loads(line)["id"] for line in p.read_text().splitlines())
    return ids


def start_job(tmp_path: Path, source_sql: str) -> subprocess.Popen:
    out = tmp_path / "out"
    job = tmp_path / "job.sql"
    job.write_text(source_sql + f"""
CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', format = 'json');
INSERT INTO out SELECT id FROM events;
""")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("CAUDAL_DEBUG", None)
    return subprocess.Popen([sys.executable, "-m", "caudal.cli", "run", str(job),
                             "--checkpoint-dir", str(tmp_path / "ck"),
                             "--checkpoint-interval", "200ms"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env)


def publish_slowly(publish: Callable[[list[bytes]], None], n: int = N, per_batch: int = 100,
                   pause: float = 0.05) -> threading.Thread:
    """Publishes ``n`` messages {"id": i} in batches (by default 100 every 50 ms)."""
    def run() -> None:
        for lo in range(0, n, per_batch):
            publish([json.dumps({"id": i}).encode() for i in range(lo, lo + per_batch)])
            time.sleep(pause)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def cut_while_running(proxy: CuttableProxy, proc: subprocess.Popen, cuts: int) -> int:
    """Cut every proxied connection ``cuts`` times, each once the job has connected again;
    returns how many cuts found connections."""
    done = 0
    for _ in range(cuts):
        deadline = time.monotonic() + 30
        while not proxy.pairs and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.4)
        if proc.poll() is not None:
            break
        done += proxy.cut() > 0
    return done


def wait_for_all(out: Path, proc: subprocess.Popen, seconds: float = 60,
                 n: int = N) -> list[int]:
    deadline = time.monotonic() + seconds
    while len(set(committed_ids(out))) < n and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.2)
    time.sleep(0.6)   # a duplicate would be committed by now
    return committed_ids(out)


def stop(proc: subprocess.Popen) -> str:
    """Kill the job; returns what it wrote to stderr."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    return proc.stderr.read()


def test_redis_stream_source_reconnects_and_loses_nothing(tmp_path):
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        client.ping()
    except redis.RedisError as e:
        pytest.skip(f"no Redis on 6379: {e}")
    key = f"caudal-test:outage:{uuid.uuid4().hex[:8]}"
    proxy = CuttableProxy(6379)
    proc = start_job(tmp_path, f"""CREATE TABLE events (id BIGINT) WITH (connector = 'redis',
  url = 'redis://127.0.0.1:{proxy.port}/0', stream = '{key}', format = 'json');
""")
    try:
        def publish(values: list[bytes]) -> None:
            pipe = client.pipeline(transaction=False)
            for v in values:
                pipe.xadd(key, {b"value": v})
            pipe.execute()

        thread = publish_slowly(publish)
        cuts = cut_while_running(proxy, proc, 3)
        thread.join(60)
        ids = wait_for_all(tmp_path / "out", proc)
    finally:
        err = stop(proc)
        proxy.close()
        client.delete(key)
        client.close()
    assert cuts == 3 and "job failed" not in err, err   # reconnected, no restart
    assert sorted(ids) == list(range(N))   # pending entries re-read: none lost, none twice


# its bound on restarts (one) is a wall-clock one: beside the other xdist workers the
# reconnect took two restarts in 2 of 4 runs; make test-all runs it
@pytest.mark.slow
def test_nats_jetstream_source_reconnects_and_loses_nothing(tmp_path):
    nats = pytest.importorskip("nats")
    tag = uuid.uuid4().hex[:8]
    stream, subject = f"OUTAGE_{tag}".upper(), f"outage.{tag}"

    async def with_js(fn):
        nc = await nats.connect("nats://127.0.0.1:4222", connect_timeout=2)
        try:
            return await fn(nc.jetstream())
        finally:
            await nc.close()

    async def add(js):
        await js.add_stream(name=stream, subjects=[subject])

    try:
        asyncio.run(with_js(add))
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"no NATS JetStream on 4222: {e}")
    proxy = CuttableProxy(4222)
    proc = start_job(tmp_path, f"""CREATE TABLE events (id BIGINT) WITH (connector = 'nats',
  servers = 'nats://127.0.0.1:{proxy.port}', stream = '{stream}', subject = '{subject}',
  format = 'json');
""")
    try:
        def publish(values: list[bytes]) -> None:
            async def go(js):
                await asyncio.gather(*[js.publish(subject, v) for v in values])
            asyncio.run(with_js(go))

        thread = publish_slowly(publish)
        cuts = cut_while_running(proxy, proc, 3)
        thread.join(60)
        ids = wait_for_all(tmp_path / "out", proc)
    finally:
        err = stop(proc)
        proxy.close()

        async def drop(js):
            await js.delete_stream(stream)
        asyncio.run(with_js(drop))
    # reconnected without a restart; in about 1 run in 8 a JetStream request times out
    # right after a cut and the job restarts once from its checkpoint (seen in make test):
    # either way every id exactly once
    assert cuts == 3 and err.count("job failed") <= 1, err
    assert sorted(ids) == list(range(N))   # consumer re-created at the next sequence


@pytest.mark.slow   # two restarts with backoff
def test_rabbitmq_queue_source_fails_in_one_line_and_resumes_without_loss(tmp_path):
    """AMQP 0-9-1: a dropped connection fails the job with one line; its unacked messages go
    back to the queue, and `caudal run` restarts the job from its checkpoint: every message
    is in the output (at least once)."""
    pika = pytest.importorskip("pika")
    url = "amqp://guest:guest@127.0.0.1:5672/%2F"
    try:
        conn = pika.BlockingConnection(pika.URLParameters(url))
    except pika.exceptions.AMQPError as e:
        pytest.skip(f"no RabbitMQ on 5672: {e}")
    channel = conn.channel()
    queue = f"caudal-test-outage-{uuid.uuid4().hex[:8]}"
    channel.queue_declare(queue, durable=True)
    proxy = CuttableProxy(5672)
    lock = threading.Lock()
    proc = start_job(tmp_path, f"""CREATE TABLE events (id BIGINT) WITH (connector = 'rabbitmq',
  url = 'amqp://guest:guest@127.0.0.1:{proxy.port}/%2F', queue = '{queue}', format = 'json',
  prefetch = '500');
""")
    try:
        def publish(values: list[bytes]) -> None:
            with lock:
                for v in values:
                    channel.basic_publish("", queue, v)

        thread = publish_slowly(publish)
        cuts = cut_while_running(proxy, proc, 2)
        thread.join(60)
        ids = wait_for_all(tmp_path / "out", proc)
    finally:
        err = stop(proc)
        proxy.close()
        with lock:
            channel.queue_delete(queue)
        conn.close()
    assert cuts == 2
    assert "lost the broker" in err and "restarting from checkpoint" in err, err
    assert "Traceback" not in err
    missing = sorted(set(range(N)) - set(ids))
    assert not missing, (len(missing), missing[:3], missing[-3:], err[-600:])


def test_mqtt_qos1_source_reconnects_and_loses_nothing(tmp_path):
    """QoS 1 with a persistent session: the client reconnects by itself after each cut and
    the broker sends again what was not acknowledged (acks come after checkpoints): every
    message is in the output (at least once). 600 messages at 200/s: Mosquitto's default
    in-flight and queue limits drop messages beyond them (docs/connectors.md)."""
    mqtt = pytest.importorskip("paho.mqtt.client")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex}")
    try:
        client.connect("127.0.0.1", 1883)
    except OSError as e:
        pytest.skip(f"no MQTT broker on 1883: {e}")
    client.loop_start()
    topic = f"caudal/outage/{uuid.uuid4().hex[:8]}"
    proxy = CuttableProxy(1883)
    proc = start_job(tmp_path, f"""CREATE TABLE events (id BIGINT) WITH (connector = 'mqtt',
  url = 'tcp://127.0.0.1:{proxy.port}', topic = '{topic}', qos = '1',
  client_id = 'caudal-test-{uuid.uuid4().hex[:8]}', format = 'json');
""")
    n = 600
    try:
        deadline = time.monotonic() + 60
        while not proxy.pairs and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
        time.sleep(1.0)   # subscribed

        def publish(values: list[bytes]) -> None:
            for v in values:
                client.publish(topic, v, qos=1)

        thread = publish_slowly(publish, n, per_batch=10, pause=0.05)
        cuts = cut_while_running(proxy, proc, 3)
        thread.join(60)
        ids = wait_for_all(tmp_path / "out", proc, n=n)
    finally:
        err = stop(proc)
        proxy.close()
        client.loop_stop()
        client.disconnect()
    assert cuts == 3 and "job failed" not in err, err
    assert set(ids) == set(range(n))
