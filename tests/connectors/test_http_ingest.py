"""The http ingest source: caudal listens on loopback and takes NDJSON POSTs."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

COLUMNS = "id BIGINT, name TEXT, at TIMESTAMP"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def job_sql(port: int, out: Path, extra: str = "") -> str:
    return f"""CREATE TABLE events ({COLUMNS}) WITH (connector = 'http', port = '{port}',
  path = '/ingest'{extra});
CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', format = 'json');
INSERT INTO out SELECT id, name, at FROM events;
"""


def start(tmp_path: Path, sql: str, ck: Path | None = None) -> subprocess.Popen:
    job = tmp_path / "job.sql"
    job.write_text(sql)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("CAUDAL_DEBUG", None)
    ck = ck or tmp_path / "ck"
    return subprocess.Popen([sys.executable, "-m", "caudal.cli", "run", str(job),
                             "--checkpoint-dir", str(ck), "--checkpoint-interval", "200ms"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env)


def post(port: int, body: bytes, path: str = "/ingest",
         timeout: float = 10) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body, {"Content-Type": "application/x-ndjson"})
        answer = conn.getresponse()
        return answer.status, json.loads(answer.read() or b"{}")
    finally:
        conn.close()


def wait_up(port: int, proc: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/ingest")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("the http source did not come up")


def committed_rows(out: Path) -> list[dict]:
    rows = []
    if out.exists():
        for p in sorted(out.rglob("*.json")):
            if not any(part.startswith((".", "_")) for part in p.relative_to(out).parts):
                rows.extend(json.loads(line) for line in p.read_text().splitlines())
    return rows


def wait_rows(out: Path, n: int, seconds: float = 30) -> list[dict]:
    deadline = time.monotonic() + seconds
    rows = committed_rows(out)
    while len(rows) < n and time.monotonic() < deadline:
        time.sleep(0.1)
        rows = committed_rows(out)
    return rows


def event(i: int) -> bytes:
    return json.dumps({"id": i, "name": f"n{i}", "at": "2024-01-01T00:00:00.123456"}).encode()


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.parametrize("ack", ["pipeline", "checkpoint"])
def test_batches_single_events_and_bad_lines(tmp_path, ack):
    port = free_port()
    out = tmp_path / "out"
    proc = start(tmp_path, job_sql(port, out, f", ack = '{ack}'"))
    try:
        wait_up(port, proc)
        status, body = post(port, b"\n".join(event(i) for i in range(1000)) + b"\n")
        assert (status, body) == (202, {"rows": 1000})
        for i in range(1000, 1005):
            assert post(port, event(i)) == (202, {"rows": 1})   # no trailing newline
        status, body = post(port, event(2000) + b"\n{oops\n" + event(2001))
        assert status == 400 and "line 2" in body["error"]
        assert post(port, event(1), path="/other")[0] == 404
        rows = wait_rows(out, 1005)
    finally:
        stop(proc)
    assert sorted(r["id"] for r in rows) == list(range(1005))
    assert rows[0]["at"].startswith("2024-01-01T00:00:00.123456")


def test_bad_lines_dropped_with_bad_data_drop(tmp_path):
    port = free_port()
    out = tmp_path / "out"
    proc = start(tmp_path, job_sql(port, out, ", bad_data = 'drop'"))
    try:
        wait_up(port, proc)
        assert post(port, event(1) + b"\nnot json\n" + event(2) + b"\n") == (202, {"rows": 2})
        rows = wait_rows(out, 2)
    finally:
        stop(proc)
    assert sorted(r["id"] for r in rows) == [1, 2]


def test_port_in_use_is_one_line(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = start(tmp_path, job_sql(port, tmp_path / "out"))
        _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err


@pytest.mark.slow   # five killed runs while a client posts
def test_ack_checkpoint_loses_nothing_acked_when_killed_five_times(tmp_path):
    """ack = 'checkpoint': a client posts batches and retries each until it gets 202; the
    job is SIGKILLed five times and restarted. Every acknowledged event is in the output."""
    import random
    import threading

    port = free_port()
    out = tmp_path / "out"
    sql = job_sql(port, out, ", ack = 'checkpoint'")
    acked: list[int] = []
    done = threading.Event()

    def client() -> None:
        for b in range(150):
            ids = range(b * 40, b * 40 + 40)
            body = b"\n".join(event(i) for i in ids) + b"\n"
            while not done.is_set():
                try:
                    if post(port, body, timeout=5)[0] == 202:
                        acked.extend(ids)
                        break
                except OSError:
                    pass
                time.sleep(0.05)
            time.sleep(0.01)
        done.set()

    rng = random.Random(3)
    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    kills = 0
    while not done.is_set():
        proc = start(tmp_path, sql)
        if kills < 5:
            time.sleep(rng.uniform(1.5, 3.0))
            stop(proc)
            kills += 1
            continue
        thread.join(120)
        rows = wait_rows(out, len(set(acked)), 30)
        stop(proc)
        break
    assert kills == 5 and len(acked) == 6000
    got = {r["id"] for r in rows}
    assert set(acked) <= got


def test_slow_sink_backpressures_clients_with_503(tmp_path):
    """A webhook sink 10x slower than the clients: the ingest queue stays under
    max_queued_bytes (clients get 503 and Retry-After) and the job's memory stays bounded."""
    import threading

    import psutil

    from tests.connectors.http_receiver import Receiver

    class Slow(Receiver):
        pass

    hook = Slow()
    handler = hook.server.RequestHandlerClass
    original = handler.do_POST

    def slow_post(self):
        time.sleep(0.05)
        original(self)

    handler.do_POST = slow_post
    port = free_port()
    job = f"""CREATE TABLE events ({COLUMNS}) WITH (connector = 'http', port = '{port}',
  path = '/ingest', max_queued_bytes = '500000');
CREATE TABLE hook WITH (connector = 'webhook', endpoint = '{hook.url}', 'batch.max_rows' = '100');
INSERT INTO hook SELECT id, name FROM events;
"""
    (tmp_path / "job.sql").write_text(job)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "caudal.cli", "run",
                             str(tmp_path / "job.sql")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_up(port, proc)
        body = b"\n".join(event(i) for i in range(1000)) + b"\n"   # ~70 kB
        codes: dict[int, int] = {}
        lock = threading.Lock()
        deadline = time.monotonic() + 6

        def client() -> None:
            while time.monotonic() < deadline:
                status, _ = post(port, body, timeout=30)
                with lock:
                    codes[status] = codes.get(status, 0) + 1

        threads = [threading.Thread(target=client) for _ in range(12)]
        for t in threads:
            t.start()
        peak = 0
        while any(t.is_alive() for t in threads):
            peak = max(peak, psutil.Process(proc.pid).memory_info().rss)
            time.sleep(0.05)
        accepted_rows = codes.get(202, 0) * 1000
    finally:
        stop(proc)
        hook.close()
    assert codes.get(503, 0) > 0 and codes.get(202, 0) > 0   # taken, and pushed back
    assert len(hook.rows(dedupe=False)) < accepted_rows   # the sink is behind
    assert peak < 400 << 20, f"RSS {peak >> 20} MiB"


def test_pipelined_requests_answered_in_order_on_one_connection(tmp_path):
    """Three requests in one write on a keep-alive connection: a POST, a GET and a POST are
    answered in that order, and both POSTs' rows enter."""
    port = free_port()
    out = tmp_path / "out"
    proc = start(tmp_path, job_sql(port, out))
    try:
        wait_up(port, proc)
        one, two = event(1) + b"\n", event(2) + event(3).join([b"\n", b"\n"])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"POST /ingest HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s"
                      b"GET /ingest HTTP/1.1\r\n\r\n"
                      b"POST /ingest HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s"
                      % (len(one), one, len(two), two))
            got = b""
            while got.count(b"HTTP/1.1") < 3 or not got.endswith(b"}"):
                chunk = s.recv(65536)
                assert chunk, got
                got += chunk
        answers = [a.split(b"\r\n")[0] + a[a.index(b"\r\n\r\n") + 4:]
                   for a in got.split(b"HTTP/1.1 ")[1:]]
        assert answers == [b'202 Accepted{"rows": 1}', b'200 OK{"status": "up"}',
                           b'202 Accepted{"rows": 2}']
        rows = wait_rows(out, 3)
    finally:
        stop(proc)
    assert sorted(r["id"] for r in rows) == [1, 2, 3]


def test_windows_close_at_parallelism_two_without_waiting_for_idle_timeout(tmp_path):
    """One subtask listens; the other has no partition. It must not hold the watermark back
    until idle_timeout (30 s): a tumbling window closes as soon as events pass its end."""
    port = free_port()
    out = tmp_path / "out"
    sql = f"""CREATE TABLE events ({COLUMNS}, WATERMARK FOR at AS at) WITH (connector = 'http',
  port = '{port}', path = '/ingest');
CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', format = 'json');
INSERT INTO out SELECT window_start, count(*) AS n
FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(at), INTERVAL '1' SECOND))
GROUP BY window_start, window_end;
"""
    job = tmp_path / "job.sql"
    job.write_text(sql)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "caudal.cli", "run", str(job),
                             "--parallelism", "2", "--checkpoint-dir", str(tmp_path / "ck"),
                             "--checkpoint-interval", "200ms"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        wait_up(port, proc)
        started = time.monotonic()
        body = b"\n".join(json.dumps({"id": i, "name": "x", "at": f"2024-01-01T00:00:0{s}"}
                                     ).encode() for i, s in enumerate([0, 0, 0, 1, 2])) + b"\n"
        assert post(port, body)[0] == 202
        rows = wait_rows(out, 2, seconds=20)
        took = time.monotonic() - started
    finally:
        stop(proc)
    assert sorted((r["window_start"][:19], r["n"]) for r in rows)[:2] == [
        ("2024-01-01T00:00:00", 3), ("2024-01-01T00:00:01", 1)]
    assert took < 20
