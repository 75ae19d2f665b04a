"""``caudal run --metrics-port``: Prometheus series of one job; and ``caudal serve``'s refusal
of an open bind without a token."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx

from tests.server.conftest import REPO, free_port

JOB = """CREATE TABLE bids WITH (connector = 'nexmark', table = 'bid', events = '3000',
  event_rate = '1000');
CREATE TABLE out WITH (connector = 'blackhole');
INSERT INTO out SELECT auction, count(*) AS n FROM TABLE(TUMBLE(TABLE bids,
  DESCRIPTOR(date_time), INTERVAL '1' SECOND)) GROUP BY window_start, window_end, auction;"""


def test_run_metrics_port(tmp_path):
    job = tmp_path / "hot.sql"
    job.write_text(JOB)
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "caudal.cli", "run", str(job),
                             "--metrics-port", str(port), "-p", "2",
                             "--checkpoint-dir", str(tmp_path / "ck"),
                             "--checkpoint-interval", "500ms"],
                            env=env, stderr=subprocess.PIPE, text=True)
    text = ""
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            except httpx.TransportError:
                time.sleep(0.2)
                continue
            if "caudal_checkpoint_size_bytes{" in text and "caudal_state_rows{" in text and \
                    "caudal_state_bytes{" in text:
                break
            time.sleep(0.2)
    finally:
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    label = 'operator="[0] source bids",pipeline="hot",subtask="1"'
    for series in ("caudal_rows_in_total", "caudal_bytes_out_total",
                   "caudal_backpressure_seconds_total", "caudal_watermark_seconds",
                   "caudal_watermark_lag_seconds", "caudal_late_rows_total"):
        assert f"{series}{{{label}}}" in text, series
    assert 'caudal_checkpoint_size_bytes{pipeline="hot"}' in text
    # state size per subtask: its files in the newest checkpoint (the window's state)
    sizes = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
             if line.startswith("caudal_state_bytes{")]
    assert sizes and max(sizes) > 0, sizes
    assert 'caudal_restarts_total{pipeline="hot"} 0.0' in text
    assert "# TYPE caudal_rows_in_total counter" in text


def test_open_bind_needs_token(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("CAUDAL_TOKEN", None)
    r = subprocess.run([sys.executable, "-m", "caudal.cli", "serve", "--host", "0.0.0.0",
                        "--state-dir", str(tmp_path / "s")], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "caudal: error: --host 0.0.0.0 is reachable from other machines and no --token is "
        "set (give --token (or CAUDAL_TOKEN), or --insecure to serve without one)"]


def test_serve_refuses_bad_arguments_in_one_line(tmp_path):
    """An unusable --state-dir was "internal error: FileNotFoundError: …" (exit 1); an
    unknown --host was refused as "reachable from other machines"."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("CAUDAL_TOKEN", None)
    (tmp_path / "afile").write_text("")
    for args, expected in (
            (["--state-dir", str(tmp_path / "afile")],
             f"caudal: error: --state-dir {tmp_path / 'afile'}: cannot use it as a directory"),
            (["--state-dir", "/proc/caudal-nope"],
             "caudal: error: --state-dir /proc/caudal-nope: cannot use it as a directory"),
            (["--host", "nonexistent.invalid", "--state-dir", str(tmp_path / "s")],
             "caudal: error: --host nonexistent.invalid: unknown host")):
        r = subprocess.run([sys.executable, "-m", "caudal.cli", "serve", "--port",
                            str(free_port()), *args], env=env, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 2, r.stderr
        [line] = r.stderr.strip().splitlines()
        assert line.startswith(expected), line


def test_run_refuses_a_metrics_file_or_tap_socket_it_cannot_use(tmp_path):
    """--metrics-file in a directory that does not exist ran the job and wrote nothing,
    saying nothing; a --tap-socket path too long for a Unix socket said "(None)"."""
    job = tmp_path / "job.sql"
    job.write_text("SELECT 1 AS one;")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    long_dir = tmp_path / ("x" * 120)
    long_dir.mkdir()
    for args, expected in (
            (["--metrics-file", str(tmp_path / "nope" / "m.json")],
             f"caudal: error: --metrics-file {tmp_path / 'nope' / 'm.json'}: cannot write it "
             f"(No such file or directory)"),
            (["--tap-socket", str(long_dir / "t.sock")],
             f"caudal: error: --tap-socket {long_dir / 't.sock'}: cannot listen there (")):
        r = subprocess.run([sys.executable, "-m", "caudal.cli", "run", str(job), *args],
                           env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, r.stderr
        [line] = r.stderr.strip().splitlines()
        assert line.startswith(expected) and "None" not in line, line
