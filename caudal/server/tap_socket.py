"""``caudal run --tap-socket PATH``: the live preview of any vertex of a running job, served on
a Unix socket (mode 0600) to the job server, which relays it as Server-Sent Events.

A reader connects and sends one JSON line ``{"vertex": N}``. It then gets a JSON line every
``SEND_S`` seconds: ``{"rows": [...], "dropped": n}``, the rows the vertex emitted meanwhile
(at most ``taps.CAPACITY_ROWS`` of them) and how many more it emitted that the preview did not
keep. A reader that does not keep up blocks only this connection's thread; its tap stays
full and drops rows (counted), while the job runs on. An unknown vertex gets one line
``{"error": "..."}``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from caudal.runtime.taps import Taps

#: seconds between two messages to a reader (a bound on the preview's rate: CAPACITY_ROWS per)
SEND_S = 0.5
#: longest path a Unix socket may have (sun_path is 108 bytes with its terminating zero)
MAX_SOCKET_PATH = 100


def socket_path(directory: Path) -> Path:
    """Where a job's tap socket goes: ``tap.sock`` in its directory, or, when that path is too
    long for a Unix socket, a private directory under the system's temporary one."""
    path = directory / "tap.sock"
    if len(str(path)) <= MAX_SOCKET_PATH:
        return path
    private = Path(tempfile.gettempdir()) / f"caudal-taps-{os.getuid()}"
    private.mkdir(mode=0o700, exist_ok=True)
    digest = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:20]
    return private / f"{digest}.sock"


def rows_json(batches: list[Any]) -> list[dict[str, Any]]:
    """The kept rows as JSON objects (at most CAPACITY_ROWS: a preview, not a hot path)."""
    rows: list[dict[str, Any]] = []
    for b in batches:
        rows.extend(b.to_pylist())
    return rows


class TapServer:
    """Serves ``taps`` of a job whose vertices are ``vertices`` (id -> name)."""

    def __init__(self, taps: Taps, vertices: dict[int, str], path: str):
        self.taps, self.vertices, self.path = taps, vertices, path
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            self.sock.bind(path)
        finally:
            os.umask(old)
        self.sock.listen(8)
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._accept, name="caudal-taps", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.closed.set()
        with contextlib.suppress(OSError):
            self.sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), name="caudal-tap",
                             daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(10)
                request = json.loads(next(_lines(conn)))
                vertex = int(request["vertex"])
            except (OSError, ValueError, KeyError, TypeError, StopIteration):
                return
            if vertex not in self.vertices:
                known = ", ".join(n for _, n in sorted(self.vertices.items()))
                _send(conn, {"error": f"no node {vertex} in this job (nodes: {known})"})
                return
            conn.settimeout(None)  # a slow reader blocks this thread only
            tap = self.taps.subscribe(vertex)
            try:
                _send(conn, {"node": vertex, "name": self.vertices[vertex]})
                while not self.closed.wait(SEND_S):
                    batches, dropped = tap.take()
                    _send(conn, {"rows": rows_json(batches), "dropped": dropped})
            except OSError:
                pass  # the reader went away
            finally:
                self.taps.unsubscribe(vertex, tap)


def _send(conn: socket.socket, message: dict[str, Any]) -> None:
    try:
        text = json.dumps(message, default=str, separators=(",", ":"), allow_nan=False)
    except ValueError:  # NaN or infinity, which JSON (and a browser's JSON.parse) lacks
        text = json.dumps(_finite(message), default=str, separators=(",", ":"))
    conn.sendall(text.encode() + b"\n")


def _finite(value: Any) -> Any:
    """``value`` with each non-finite float as its name (``"NaN"``, ``"Infinity"``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _lines(conn: socket.socket) -> Iterator[bytes]:
    buffer = b""
    while True:
        data = conn.recv(4096)
        if not data:
            return
        buffer += data
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield line
