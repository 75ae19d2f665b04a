"""HTTP client sources: ``polling_http`` (GET an endpoint every ``interval``, emit on change)
and ``sse`` (a Server-Sent Events stream, reconnecting with Last-Event-ID).

Both run their HTTP client on a daemon thread that queues raw bodies / event data; the
source's poll decodes whatever is queued with one call of the shared message decoder. One
subtask reads (the endpoint is one partition).

polling_http: the body is NDJSON, one JSON object, or a JSON array of objects (``format =
'json'``), or one row of text (``raw_string``). With ``emit_behavior = 'changed'`` (the
default) a body equal to the previous one emits nothing; the hash of the last body emitted is
checkpointed, so a resumed job does not emit it again.

sse: each event's ``data`` is a message. The id of the last event taken is checkpointed and
sent as ``Last-Event-ID`` when (re)connecting, so a server that keeps its events resumes the
stream after the checkpoint: at least once for such a server (events after the checkpoint
come again), at most once for one that ignores the header. Dropped connections are retried
with growing waits (``connect_timeout`` at start: then one line).
"""

from __future__ import annotations

import collections
import hashlib
import http.client
import json
import threading
import urllib.parse
from typing import Any

import pyarrow as pa

from caudal.connectors import messages as mx
from caudal.connectors.base import Source
from caudal.connectors.webhook import parse_headers
from caudal.durations import parse_duration_s
from caudal.errors import ConfigError, RuntimeFailure
from caudal.plan.tables import TableSpec

COMMON = {
    "endpoint": "the http:// or https:// URL",
    "headers": "extra request headers: 'Name: value, Other: value'",
    "format": "json (default) or raw_string (one TEXT column)",
    "connect_timeout": mx.CONNECT_TIMEOUT_OPTION,
}
POLLING_OPTIONS = {
    **COMMON,
    "interval": "time between requests (default 1s)",
    "emit_behavior": "changed (default: a body equal to the last one emits nothing) or all",
}


def _url(table: TableSpec) -> urllib.parse.SplitResult:
    raw = mx.require(table, "endpoint", "http://127.0.0.1:8080/state")
    url = urllib.parse.urlsplit(raw)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ConfigError(f"endpoint = {raw!r} of table {table.name!r}", line=table.line,
                          hint="an http:// or https:// URL")
    return url


def _connection(url: urllib.parse.SplitResult, timeout: float) -> http.client.HTTPConnection:
    cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    return cls(url.hostname, url.port, timeout=timeout)


def _target(url: urllib.parse.SplitResult) -> str:
    return (url.path or "/") + ("?" + url.query if url.query else "")


def json_lines(body: bytes) -> list[bytes]:
    """A body as JSON values, one per row: NDJSON, one (possibly pretty) object, or an array."""
    text = body.strip()
    if not text:
        return []
    if text[:1] in (b"[", b"{"):
        try:
            value = json.loads(text)
        except ValueError:
            value = None   # NDJSON (several objects), or broken: decoded line by line
        if isinstance(value, list):
            return [json.dumps(v).encode() for v in value]
        if isinstance(value, dict):
            return [json.dumps(value).encode()]
    return [line for line in text.split(b"\n") if line.strip()]


class _ClientSource(Source):
    """A source fed by a client thread through a queue of messages."""

    bounded = False
    FORMAT_ALIASES = mx.FORMAT_ALIASES

    @classmethod
    def validate(cls, table: TableSpec) -> None:
        _url(table)
        parse_headers(table)
        mx.choice(table, "format", ("json", "raw_string"), "json")

    @classmethod
    def infer_schema(cls, table: TableSpec) -> pa.Schema | None:
        raise ConfigError(f"{table.connector} table {table.name!r} declares no columns",
                          line=table.line,
                          hint="declare them: CREATE TABLE t (id BIGINT, …) WITH (…)")

    def __init__(self, table: TableSpec):
        super().__init__(table)
        self.decoder = mx.MessageDecoder(self)
        self.schema = self.decoder.schema
        self.url = _url(table)
        self.headers = parse_headers(table)
        self._queue: collections.deque = collections.deque()
        self._arrived = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: str | None = None
        self._name = f"{table.connector}:{table.options['endpoint']}"

    def partitions(self, parallelism: int) -> list[str]:
        return [self._name]

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"{self.table.connector}-{self.table.name}")
        self._thread.start()

    def _run(self) -> None:
        raise NotImplementedError

    def _take(self, max_rows: int, timeout: float) -> list[Any]:
        if self._error is not None:
            raise RuntimeFailure(self._error, hint="check the endpoint and that it is up")
        if not self._queue:
            self._arrived.wait(timeout)
            self._arrived.clear()
        q = self._queue
        return [q.popleft() for _ in range(min(max_rows, len(q)))]

    def _decode(self, values: list[bytes]) -> pa.RecordBatch | None:
        where = f"{self.table.connector} endpoint {self.table.options['endpoint']}"
        batch = self.decoder.decode(values, lambda i: where)
        if batch is not None:
            self.metrics.rows_read += batch.num_rows
        return batch if batch is not None and batch.num_rows else None

    def finished(self) -> bool:
        return False

    def close(self) -> None:
        self._stop.set()


class PollingHttpSource(_ClientSource):
    OPTIONS = POLLING_OPTIONS

    @classmethod
    def validate(cls, table: TableSpec) -> None:
        super().validate(table)
        parse_duration_s(table.options.get("interval", "1s"), "interval")
        mx.choice(table, "emit_behavior", ("changed", "all"), "changed")

    def __init__(self, table: TableSpec):
        super().__init__(table)
        self.interval = parse_duration_s(table.options.get("interval", "1s"), "interval")
        self.changed_only = mx.choice(table, "emit_behavior", ("changed", "all"),
                                      "changed") == "changed"
        self._last_hash: str | None = None

    def open(self, assigned: list[str], offsets: dict[str, Any] | None = None) -> None:
        if not assigned:
            return
        self._last_hash = (offsets or {}).get(self._name)
        # the first request at start: an unreachable endpoint is one line after retries
        self._queue.append(mx.retrying(self.table, self.table.options["endpoint"], "GET",
                                       self._get, (OSError, http.client.HTTPException)))
        self._start()

    def _get(self) -> bytes:
        conn = _connection(self.url, mx.connect_timeout(self.table))
        try:
            conn.request("GET", _target(self.url), headers=self.headers)
            answer = conn.getresponse()
            body = answer.read()
            if answer.status >= 400:
                raise OSError(f"HTTP {answer.status} {answer.reason}")
            return body
        finally:
            conn.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._queue.append(self._get())
                self._arrived.set()
            except (OSError, http.client.HTTPException):
                continue   # the next interval tries again

    def poll(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        if self._thread is None:
            return None
        values: list[bytes] = []
        for body in self._take(max_rows, timeout):
            digest = hashlib.sha1(body).hexdigest()
            if self.changed_only and digest == self._last_hash:
                continue
            self._last_hash = digest
            values.extend(json_lines(body) if self.decoder.format == "json" else [body])
        return self._decode(values) if values else None

    def offsets(self) -> dict[str, Any]:
        return {self._name: self._last_hash} if self._thread is not None else {}


class SseSource(_ClientSource):
    OPTIONS = dict(COMMON)

    def __init__(self, table: TableSpec):
        super().__init__(table)
        self._last_id: str | None = None
        #: the id of the newest event queued (by the client thread)
        self._queued_id: str | None = None

    def open(self, assigned: list[str], offsets: dict[str, Any] | None = None) -> None:
        if not assigned:
            return
        self._last_id = (offsets or {}).get(self._name)
        self._queued_id = self._last_id
        self._response = mx.retrying(self.table, self.table.options["endpoint"], "connecting",
                                     self._connect, (OSError, http.client.HTTPException))
        self._start()

    def _connect(self) -> Any:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache", **self.headers}
        if self._queued_id is not None:
            headers["Last-Event-ID"] = self._queued_id
        conn = _connection(self.url, 60)
        conn.request("GET", _target(self.url), headers=headers)
        answer = conn.getresponse()
        if answer.status != 200:
            conn.close()
            raise OSError(f"HTTP {answer.status} {answer.reason}")
        return answer

    def _run(self) -> None:
        wait = 0.2
        while not self._stop.is_set():
            try:
                self._read(self._response)
                wait = 0.2
            except (OSError, http.client.HTTPException):
                pass
            if self._stop.wait(wait):
                return
            wait = min(wait * 2, 5.0)
            try:
                self._response = self._connect()
            except (OSError, http.client.HTTPException):
                continue

    def _read(self, answer: Any) -> None:
        """Parse the event stream: ``data:`` lines make an event's data, ``id:`` its id, a
        blank line ends it."""
        data: list[bytes] = []
        event_id = None
        while not self._stop.is_set():
            line = answer.readline()
            if not line:
                return   # the server closed the stream: reconnect
            line = line.rstrip(b"\r\n")
            if not line:
                if data:
                    self._queue.append((event_id, b"\n".join(data)))
                    self._arrived.set()
                data, event_id = [], None
                continue
            if line.startswith(b":"):
                continue
            name, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if name == b"data":
                data.append(value)
            elif name == b"id":
                event_id = value.decode("utf-8", "replace")
                self._queued_id = event_id

    def poll(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        if self._thread is None:
            return None
        events = self._take(max_rows, timeout)
        if not events:
            return None
        for event_id, _ in events:
            if event_id is not None:
                self._last_id = event_id
        return self._decode([d for _, d in events])

    def offsets(self) -> dict[str, Any]:
        return {self._name: self._last_id} if self._thread is not None else {}


WEBSOCKET_OPTIONS = {
    "endpoint": "the ws:// or wss:// URL",
    "headers": "extra handshake headers: 'Name: value, Other: value'",
    "subscription_message": "a text message sent after each (re)connect, e.g. a subscribe "
                            "request",
    "format": "json (default) or raw_string (one TEXT column)",
    "connect_timeout": mx.CONNECT_TIMEOUT_OPTION,
}


class WebsocketSource(_ClientSource):
    """Each text or binary message is one message (aiohttp's client on an asyncio thread);
    reconnects with growing waits. WebSocket has no resume point: at most once."""

    OPTIONS = WEBSOCKET_OPTIONS

    @classmethod
    def validate(cls, table: TableSpec) -> None:
        raw = mx.require(table, "endpoint", "ws://127.0.0.1:8080/feed")
        url = urllib.parse.urlsplit(raw)
        if url.scheme not in ("ws", "wss") or not url.hostname:
            raise ConfigError(f"endpoint = {raw!r} of table {table.name!r}", line=table.line,
                              hint="a ws:// or wss:// URL")
        parse_headers(table)
        mx.choice(table, "format", ("json", "raw_string"), "json")

    def __init__(self, table: TableSpec):
        Source.__init__(self, table)
        self.decoder = mx.MessageDecoder(self)
        self.schema = self.decoder.schema
        self.headers = parse_headers(table)
        self._queue = collections.deque()
        self._arrived = threading.Event()
        self._stop = threading.Event()
        self._thread = None
        self._error = None
        self._name = f"websocket:{table.options['endpoint']}"
        self._loop: mx.AsyncLoop | None = None

    def open(self, assigned: list[str], offsets: dict[str, Any] | None = None) -> None:
        if not assigned:
            return
        import aiohttp

        self._loop = mx.AsyncLoop(f"websocket-{self.table.name}")
        self._session = self._loop.run(self._make_session(), timeout=10)
        first = mx.retrying(self.table, self.table.options["endpoint"], "connecting",
                            lambda: self._loop.run(self._connect(), timeout=30),
                            (aiohttp.ClientError, OSError, TimeoutError))
        self._thread = threading.current_thread()   # marks the source open
        self._task = asyncio_run_soon(self._loop, self._read(first))

    async def _make_session(self) -> Any:
        import aiohttp

        return aiohttp.ClientSession()

    async def _connect(self) -> Any:
        ws = await self._session.ws_connect(self.table.options["endpoint"],
                                            headers=self.headers, heartbeat=30)
        message = self.table.options.get("subscription_message")
        if message:
            await ws.send_str(message)
        return ws

    async def _read(self, ws: Any) -> None:
        import asyncio

        import aiohttp

        wait = 0.2
        while not self._stop.is_set():
            try:
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        self._queue.append(msg.data.encode())
                    elif msg.type == aiohttp.WSMsgType.BINARY:
                        self._queue.append(msg.data)
                    else:
                        continue
                    self._arrived.set()
                    wait = 0.2
            except (aiohttp.ClientError, OSError):
                pass
            await asyncio.sleep(wait)
            wait = min(wait * 2, 5.0)
            try:
                ws = await self._connect()
            except (aiohttp.ClientError, OSError):
                continue

    def poll(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        if self._thread is None:
            return None
        values = self._take(max_rows, timeout)
        return self._decode(values) if values else None

    def close(self) -> None:
        self._stop.set()
        if self._loop is not None:
            self._task.cancel()
            try:
                self._loop.run(self._session.close(), timeout=5)
            except Exception:  # noqa: BLE001 - closing a lost connection
                pass
            self._loop.stop()
            self._loop = None


def asyncio_run_soon(loop: mx.AsyncLoop, coro: Any) -> Any:
    """Start ``coro`` on the loop thread without waiting for it."""
    import asyncio

    return asyncio.run_coroutine_threadsafe(coro, loop.loop)
