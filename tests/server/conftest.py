"""A real ``caudal serve`` in a subprocess, spoken to over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``caudal serve`` on a free port; ``client`` carries the token when there is one."""

    def __init__(self, state_dir: Path, token: str | None = None, cwd: Path | None = None):
        self.state_dir, self.token, self.cwd = state_dir, token, cwd or state_dir.parent
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Server:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        env.pop("CAUDAL_TOKEN", None)
        cmd = [sys.executable, "-m", "caudal.cli", "serve", "--port", str(self.port),
               "--state-dir", str(self.state_dir)]
        if self.token:
            cmd += ["--token", self.token]
        self.log = open(self.state_dir.parent / f"serve-{self.port}.log", "ab")
        self.proc = subprocess.Popen(cmd, cwd=self.cwd, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self.client = httpx.Client(base_url=self.url, headers=headers, timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if self.client.get("/api/v1/health").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            assert self.proc.poll() is None, "caudal serve exited"
            time.sleep(0.1)
        raise AssertionError("caudal serve did not answer within 30s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()
        self.client.close()

    def wait_state(self, pid: str, states: set[str], timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            p = self.client.get(f"/api/v1/pipelines/{pid}").json()
            if p["state"] in states:
                return p
            time.sleep(0.1)
        raise AssertionError(f"pipeline {pid} stayed {p['state']} (wanted {states}): {p}")


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path / "state").start()
    yield s
    s.stop()
