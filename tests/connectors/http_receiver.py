"""A webhook receiver on loopback for tests: records (Idempotency-Key, rows) per request and
can answer the first tries of each key with an error."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    def __init__(self, fail_first: int = 0, status: int = 503):
        self.requests: list[tuple[str, list[dict], dict]] = []
        self.tries: dict[str, int] = {}
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                key = self.headers.get("Idempotency-Key", "")
                with outer.lock:
                    n = outer.tries.get(key, 0)
                    outer.tries[key] = n + 1
                    ok = n >= fail_first
                    if ok:
                        outer.requests.append((key, json.loads(body), dict(self.headers)))
                code = 200 if ok else status
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/in"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def rows(self, dedupe: bool = True) -> list[dict]:
        seen: set[str] = set()
        out: list[dict] = []
        with self.lock:
            for key, rows, _ in self.requests:
                if dedupe and key in seen:
                    continue
                seen.add(key)
                out.extend(rows)
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
