"""The mqtt connector against the real Mosquitto on 127.0.0.1:1883."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid

import pytest

from tests.connectors.test_http_ingest import committed_rows, start, stop, wait_rows

mqtt = pytest.importorskip("paho.mqtt.client")
HOST, PORT = "127.0.0.1", 1883


def publisher():
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex}")
    try:
        client.connect(HOST, PORT)
    except OSError as e:
        pytest.skip(f"no MQTT broker at {HOST}:{PORT}: {e}")
    client.loop_start()
    return client


def event(i: int) -> bytes:
    return json.dumps({"id": i, "name": f"n{i}", "at": "2024-01-01T00:00:00.5"}).encode()


def job(topic: str, out, extra: str = "") -> str:
    return f"""CREATE TABLE events (id BIGINT, name TEXT, at TIMESTAMP) WITH (
  connector = 'mqtt', url = 'tcp://{HOST}:{PORT}', topic = '{topic}', qos = '1',
  client_id = 'caudal-test-{uuid.uuid4().hex[:8]}'{extra});
CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', format = 'json');
INSERT INTO out SELECT id, name, at FROM events WHERE id >= 0;
"""


def wait_subscribed(client, topic: str, out, proc) -> None:
    """Publish probes (id -1 .. filtered out? no: kept, id < 0 dropped by the query) until
    the job has one in its output: then it is subscribed."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        client.publish(topic, json.dumps({"id": 0, "name": "probe"}).encode(), qos=1)
        if any(r["name"] == "probe" for r in committed_rows(out)):
            return
        time.sleep(0.3)
    raise AssertionError("the job never subscribed")


def test_wildcard_source_and_sink_round_trip(tmp_path):
    tag = uuid.uuid4().hex[:8]
    client = publisher()
    out = tmp_path / "out"
    proc = start(tmp_path, job(f"caudal/{tag}/+/events", out))
    try:
        wait_subscribed(client, f"caudal/{tag}/a/events", out, proc)
        for i in range(1, 301):
            client.publish(f"caudal/{tag}/{'ab'[i % 2]}/events", event(i), qos=1).wait_for_publish()
        client.publish(f"caudal/{tag}/other", event(9999), qos=1).wait_for_publish()
        rows = wait_rows(out, 301 + 1)
        rows = [r for r in committed_rows(out) if r["name"] != "probe"]
        deadline = time.monotonic() + 20
        while len(rows) < 300 and time.monotonic() < deadline:
            time.sleep(0.2)
            rows = [r for r in committed_rows(out) if r["name"] != "probe"]
    finally:
        stop(proc)
    assert sorted(r["id"] for r in rows) == list(range(1, 301))


def test_sink_publishes_with_qos(tmp_path):
    from tests.conftest import run_cli

    tag = uuid.uuid4().hex[:8]
    got: list[bytes] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"s-{tag}")
    sub.on_message = lambda c, u, m: got.append(m.payload)
    sub.connect(HOST, PORT)
    sub.subscribe(f"caudal/{tag}/out", qos=2)
    sub.loop_start()
    time.sleep(0.5)
    (tmp_path / "job.sql").write_text(f"""CREATE TABLE g WITH (connector = 'impulse',
  events = '500');
CREATE TABLE o WITH (connector = 'mqtt', url = 'tcp://{HOST}:{PORT}',
  topic = 'caudal/{tag}/out', qos = '2');
INSERT INTO o SELECT counter FROM g;
""")
    result = run_cli("run", str(tmp_path / "job.sql"))
    deadline = time.monotonic() + 10
    while len(got) < 500 and time.monotonic() < deadline:
        time.sleep(0.1)
    sub.loop_stop()
    assert result.returncode == 0, result.stderr
    assert sorted(json.loads(v)["counter"] for v in got) == list(range(500))


def test_server_down_is_one_line_after_bounded_retry(tmp_path):
    from tests.conftest import run_cli

    (tmp_path / "job.sql").write_text("""CREATE TABLE e (id BIGINT) WITH (connector = 'mqtt',
  url = 'tcp://127.0.0.1:1', topic = 'x', connect_timeout = '1s');
SELECT * FROM e;
""")
    result = run_cli("run", str(tmp_path / "job.sql"))
    assert result.returncode != 0
    assert "cannot reach mqtt at 127.0.0.1:1" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow   # five killed runs while a client publishes
def test_qos1_persistent_session_loses_nothing_when_killed_five_times(tmp_path):
    """QoS 1, clean_session false: a client publishes 600 events while the job is SIGKILLed
    five times and restarted; acks come after checkpoints, so every event is in the output."""
    tag = uuid.uuid4().hex[:8]
    topic = f"caudal/{tag}/kill"
    client = publisher()
    out = tmp_path / "out"
    sql = job(topic, out)
    proc = start(tmp_path, sql)
    wait_subscribed(client, topic, out, proc)
    done = threading.Event()

    def publish() -> None:
        for i in range(1, 601):
            client.publish(topic, event(i), qos=1)
            time.sleep(1 / 60)
        done.set()

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    rng = random.Random(5)
    for _ in range(5):
        time.sleep(rng.uniform(1.0, 2.0))
        stop(proc)
        proc = start(tmp_path, sql)
    thread.join(60)
    try:
        deadline = time.monotonic() + 60
        ids: set[int] = set()
        while len(ids) < 600 and time.monotonic() < deadline:
            time.sleep(0.3)
            ids = {r["id"] for r in committed_rows(out) if r["name"] != "probe"}
    finally:
        stop(proc)
    assert ids == set(range(1, 601))
