"""The polling_http and sse sources against servers on loopback."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.connectors.test_http_ingest import committed_rows, start, stop


def serve(handler_cls) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_cls)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/s"


def wait_for(out, n: int, seconds: float = 30) -> list[dict]:
    deadline = time.monotonic() + seconds
    rows = committed_rows(out)
    while len(rows) < n and time.monotonic() < deadline:
        time.sleep(0.1)
        rows = committed_rows(out)
    return rows


def test_polling_http_emits_only_changes(tmp_path):
    state = {"body": json.dumps({"v": 0, "name": "a"}, indent=2).encode()}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            body = state["body"]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server, url = serve(Handler)
    out = tmp_path / "out"
    proc = start(tmp_path, f"""CREATE TABLE s (v BIGINT, name TEXT) WITH (
  connector = 'polling_http', endpoint = '{url}', interval = '50ms');
CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', format = 'json');
INSERT INTO out SELECT v, name FROM s;
""")
    try:
        assert wait_for(out, 1)
        for v in (1, 2):
            time.sleep(0.5)   # ten polls of the same body: one row
            state["body"] = json.dumps([{"v": v, "name": "b"}, {"v": v, "name": "c"}]).encode()
            wait_for(out, 1 + 2 * v)
        time.sleep(0.6)
        rows = committed_rows(out)
    finally:
        stop(proc)
        server.shutdown()
    assert sorted((r["v"], r["name"]) for r in rows) == [
        (0, "a"), (1, "b"), (1, "c"), (2, "b"), (2, "c")]


def test_sse_reconnects_with_last_event_id(tmp_path):
    seen_ids: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            last = self.headers.get("Last-Event-ID")
            seen_ids.append(last)
            start_at = int(last) + 1 if last else 1
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for i in range(start_at, min(start_at + 5, 13)):   # then the server hangs up
                self.wfile.write(b": comment\nid: %d\ndata: {\"n\": %d,\ndata:  \"x\": \"e\"}\n\n"
                                 % (i, i))
                self.wfile.flush()
            if start_at >= 13:
                time.sleep(5)

        def log_message(self, *args):
            pass

    server, url = serve(Handler)
    out = tmp_path / "out"
    proc = start(tmp_path, f"""CREATE TABLE ev (n BIGINT, x TEXT) WITH (connector = 'sse',
  endpoint = '{url}');
CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', format = 'json');
INSERT INTO out SELECT n, x FROM ev;
""")
    try:
        rows = wait_for(out, 12)
    finally:
        stop(proc)
        server.shutdown()
    assert sorted(r["n"] for r in rows) == list(range(1, 13))
    assert seen_ids[:3] == [None, "5", "10"]


def test_websocket_subscribes_and_reconnects(tmp_path):
    """A server that hangs up after three messages: the source reconnects, sends its
    subscription message again, and every message sent on an open connection arrives."""
    import asyncio

    from aiohttp import web

    subscriptions: list[str] = []
    state = {"next": 1}

    async def feed(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        subscriptions.append((await ws.receive()).data)
        for _ in range(3):
            if state["next"] > 9:
                break
            await ws.send_str(json.dumps({"n": state["next"], "x": "w"}))
            state["next"] += 1
        if state["next"] > 9:
            await asyncio.sleep(30)
        await ws.close()
        return ws

    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_get("/feed", feed)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]
    threading.Thread(target=loop.run_forever, daemon=True).start()
    out = tmp_path / "out"
    proc = start(tmp_path, f"""CREATE TABLE ev (n BIGINT, x TEXT) WITH (connector = 'websocket',
  endpoint = 'ws://127.0.0.1:{port}/feed', subscription_message = '{{"subscribe": "all"}}');
CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', format = 'json');
INSERT INTO out SELECT n, x FROM ev;
""")
    try:
        rows = wait_for(out, 9)
    finally:
        stop(proc)
        loop.call_soon_threadsafe(loop.stop)
    assert sorted(r["n"] for r in rows) == list(range(1, 10))
    assert len(subscriptions) >= 3 and set(subscriptions) == {'{"subscribe": "all"}'}
