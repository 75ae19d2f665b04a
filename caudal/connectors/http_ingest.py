"""The ``http`` ingest source: caudal listens on a port and takes NDJSON POSTs.

A request's body is one or more JSON lines (one event, or a batch). The server is a small
HTTP/1.1 implementation on an asyncio loop thread (keep-alive, one request at a time per
connection); it only queues bodies. The source's poll takes every queued body at once, joins
them and decodes the lot with one call of the JSON decoder (the Kafka source's), then answers:

- ``ack = 'pipeline'`` (default): 202 once the request's rows are in the pipeline (decoded and
  handed to the job). Rows not yet in a checkpoint are lost if the job dies: at most once.
- ``ack = 'checkpoint'``: 202 once a checkpoint holding the rows is complete (needs
  ``--checkpoint-dir``). A client that retries until it gets 202 loses nothing: at least once
  (a request whose 202 was lost in a crash is taken again).

A body with a malformed line is answered 400 naming the line, and none of its rows enter
(``bad_data = 'fail'``), or its bad lines are dropped and counted (``bad_data = 'drop'``);
either way the job goes on. When more than ``max_queued_bytes`` wait for the job, requests
are answered 503 with Retry-After (memory stays bounded when the job falls behind).
"""

from __future__ import annotations

import asyncio
import collections
import json
import threading
from typing import Any

import pyarrow as pa

from caudal.connectors import messages as mx
from caudal.connectors.base import Source
from caudal.errors import ConfigError, RuntimeFailure
from caudal.formats import bad_data
from caudal.plan.tables import TableSpec

DEFAULT_MAX_QUEUED = 64 << 20
MAX_BODY = 32 << 20
OPTIONS = {
    "port": "the TCP port to listen on",
    "host": "the address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)",
    "path": "the request path taken (default /; others are answered 404)",
    "format": "json (default: NDJSON, one event per line) or raw_string (one row per line)",
    "ack": "pipeline (default: 202 once the rows are in the pipeline) or checkpoint (202 "
           "once a checkpoint holding them is complete)",
    "max_queued_bytes": f"bodies waiting for the job before requests get 503 (default "
                        f"{DEFAULT_MAX_QUEUED >> 20} MiB)",
}
REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 404: "Not Found",
           405: "Method Not Allowed", 411: "Length Required", 413: "Payload Too Large",
           503: "Service Unavailable"}


def _response(status: int, body: bytes, close: bool = False, extra: str = "") -> bytes:
    head = (f"HTTP/1.1 {status} {REASONS.get(status, '')}\r\nContent-Type: application/json"
            f"\r\nContent-Length: {len(body)}\r\n{extra}")
    if close:
        head += "Connection: close\r\n"
    return head.encode() + b"\r\n" + body


class _Connection(asyncio.Protocol):
    """One client connection: parses requests, hands bodies to the server, writes answers in
    order (reading pauses while a request waits for its answer)."""

    def __init__(self, server: _Server):
        self.server = server
        self.buf = bytearray()
        self.busy = False
        self.close_after = False
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._next()

    def _next(self) -> None:
        while not self.busy and self.transport is not None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > 65536:
                    self.answer(400, b'{"error": "headers too long"}', close=True)
                return
            head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            parts = head[0].split(" ")
            if len(parts) != 3:
                self.answer(400, b'{"error": "bad request line"}', close=True)
                return
            method, target, version = parts
            length, chunked = 0, False
            self.close_after = version == "HTTP/1.0"
            for line in head[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value.strip() or 0)
                elif name == "transfer-encoding" and "chunked" in value.lower():
                    chunked = True
                elif name == "connection":
                    v = value.strip().lower()
                    self.close_after = v == "close" or (self.close_after and v != "keep-alive")
            if chunked:
                self.answer(411, b'{"error": "send a Content-Length"}', close=True)
                return
            if length > MAX_BODY:
                self.answer(413, b'{"error": "body too large"}', close=True)
                return
            if len(self.buf) < end + 4 + length:
                return
            body = bytes(self.buf[end + 4:end + 4 + length])
            del self.buf[:end + 4 + length]
            path = target.split("?", 1)[0]
            if path != self.server.path:
                self.answer(404, b'{"error": "no such path"}')
            elif method == "GET":
                self.answer(200, b'{"status": "up"}')
            elif method != "POST":
                self.answer(405, b'{"error": "POST NDJSON"}')
            else:
                self.busy = True
                self.server.submit(self, body)

    def answer(self, status: int, body: bytes, close: bool = False, extra: str = "") -> None:
        """Called on the loop thread."""
        if self.transport is None:
            return
        close = close or self.close_after
        self.transport.write(_response(status, body, close, extra))
        self.busy = False
        if close:
            self.transport.close()
            self.transport = None
        elif self.buf:
            self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


class _Server:
    """The listening socket and the queue of bodies between the loop and the source."""

    def __init__(self, path: str, max_queued: int):
        self.path = path
        self.max_queued = max_queued
        self.queue: collections.deque = collections.deque()
        self.queued = 0
        self.lock = threading.Condition()
        self.loop: asyncio.AbstractEventLoop | None = None

    def submit(self, conn: _Connection, body: bytes) -> None:
        if body and not body.endswith(b"\n"):
            body += b"\n"
        with self.lock:
            if self.queued + len(body) > self.max_queued:
                full = True
            else:
                full = False
                self.queue.append((conn, body))
                self.queued += len(body)
                self.lock.notify()
        if full:
            conn.answer(503, b'{"error": "the job is behind; retry"}', extra="Retry-After: 1\r\n")

    def take(self, timeout: float) -> list[tuple[_Connection, bytes]]:
        with self.lock:
            if not self.queue:
                self.lock.wait(timeout)
            items = list(self.queue)
            self.queue.clear()
            self.queued = 0
        return items

    def answer_all(self, answers: list[tuple[_Connection, int, bytes]]) -> None:
        """From the source thread: send answers on the loop thread, in one hop."""
        if answers and self.loop is not None:
            self.loop.call_soon_threadsafe(_answer_all, answers)


def _answer_all(answers: list[tuple[_Connection, int, bytes]]) -> None:
    for conn, status, body in answers:
        conn.answer(status, body)


class _BodyPolicy(bad_data.BadDataPolicy):
    """bad_data within one request body: ``fail`` refuses the request (its first bad line is
    said in the 400 answer), ``drop`` counts and skips bad lines."""

    class Refused(Exception):
        pass

    def reject(self, line: int, reason: str) -> None:
        if self.mode != "drop":
            raise self.Refused(f"line {line + 1}: {reason}")
        self.metrics.bad_rows_dropped += 1
        if len(self.metrics.bad_row_examples) < bad_data.MAX_EXAMPLES:
            self.metrics.bad_row_examples.append(f"{self.where} line {line + 1}: {reason}")


class HttpIngestSource(Source):
    bounded = False
    OPTIONS = OPTIONS

    @classmethod
    def validate(cls, table: TableSpec) -> None:
        _port(table)
        mx.choice(table, "ack", ("pipeline", "checkpoint"), "pipeline")
        fmt = mx.choice(table, "format", ("json", "raw_string"), "json")
        if table.schema is not None and fmt == "raw_string" and len(table.schema) != 1:
            raise ConfigError(f"format raw_string of table {table.name!r} needs exactly one "
                              f"TEXT column", line=table.line, hint="declare one TEXT column")

    @classmethod
    def infer_schema(cls, table: TableSpec) -> pa.Schema | None:
        raise ConfigError(f"http table {table.name!r} declares no columns", line=table.line,
                          hint="declare them: CREATE TABLE t (id BIGINT, …) WITH (…)")

    def __init__(self, table: TableSpec):
        super().__init__(table)
        self.format = mx.choice(table, "format", ("json", "raw_string"), "json")
        self.ack = mx.choice(table, "ack", ("pipeline", "checkpoint"), "pipeline")
        self._json = None
        if self.format == "json":
            from caudal import formats

            self._json = formats.get("json").Decoder(table.data_schema(), table.options)
        self._server: _Server | None = None
        self._loop: mx.AsyncLoop | None = None
        self._listener: Any = None
        #: polls taken so far; ack = 'checkpoint' answers requests of polls a checkpoint holds
        self._taken = 0
        #: the one partition: only one subtask listens
        self._name = f"http:{_port(table)}"
        self._waiting: list[tuple[int, list[tuple[_Connection, int, bytes]]]] = []

    def partitions(self, parallelism: int) -> list[str]:
        return [self._name]

    def open(self, assigned: list[str], offsets: dict[str, Any] | None = None) -> None:
        if not assigned:
            return
        opts = self.table.options
        host = opts.get("host", "127.0.0.1")
        port = _port(self.table)
        try:
            max_queued = int(opts.get("max_queued_bytes", DEFAULT_MAX_QUEUED))
        except ValueError:
            raise ConfigError(f"max_queued_bytes = {opts['max_queued_bytes']!r} of table "
                              f"{self.table.name!r}", line=self.table.line,
                              hint="a number of bytes") from None
        self._server = _Server(opts.get("path", "/"), max_queued)
        self._loop = mx.AsyncLoop(f"http-{self.table.name}")
        self._server.loop = self._loop.loop
        server = self._server

        async def listen() -> Any:
            return await self._loop.loop.create_server(lambda: _Connection(server), host,
                                                       port, reuse_address=True, backlog=1024)
        try:
            self._listener = self._loop.run(listen(), timeout=10)
        except OSError as e:
            self._loop.stop()
            self._loop = None
            raise RuntimeFailure(f"http table {self.table.name!r} cannot listen on "
                                 f"{host}:{port}: {e.strerror or e}",
                                 hint="choose another port, or stop what uses it") from None

    def poll(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        if self._server is None:
            return None
        items = self._server.take(timeout)
        if not items:
            return None
        table, answers = self._decode(items)
        self._taken += 1
        if self.ack == "pipeline":
            self._server.answer_all(answers)
        else:
            refused = [a for a in answers if a[1] != 202]
            self._server.answer_all(refused)
            self._waiting.append((self._taken, [a for a in answers if a[1] == 202]))
        if table is None or table.num_rows == 0:
            return None
        self.metrics.rows_read += table.num_rows
        return mx.as_batch(table, self.schema)

    def _decode(self, items: list[tuple[_Connection, bytes]]
                ) -> tuple[pa.Table | None, list[tuple[_Connection, int, bytes]]]:
        """All bodies in one decoder call; when that fails, body by body."""
        try:
            table = self._decode_bytes(b"".join(body for _, body in items))
            return table, [(conn, 202, _rows_body(body.count(b"\n"))) for conn, body in items]
        except pa.ArrowInvalid:
            pass
        tables, answers = [], []
        for conn, body in items:
            policy = _BodyPolicy(self.table.bad_data, self.metrics, "request")
            try:
                try:
                    good = [self._decode_bytes(body)]
                except pa.ArrowInvalid:
                    rows = list(enumerate(body.splitlines(keepends=True)))
                    good = bad_data.decode_rows(rows, self._decode_bytes, self._explain,
                                                policy)
            except _BodyPolicy.Refused as e:
                answers.append((conn, 400, json.dumps({"error": str(e)}).encode()))
                continue
            n = sum(t.num_rows for t in good)
            tables.extend(good)
            answers.append((conn, 202, _rows_body(n)))
        return (pa.concat_tables(tables) if tables else None), answers

    def _decode_bytes(self, data: bytes) -> pa.Table:
        if self._json is not None:
            return self._json.decode(data)
        name = self.schema.names[0]
        values = mx.split_lines(data)
        try:
            return pa.table({name: values.cast(pa.string())})
        except pa.ArrowInvalid:
            raise pa.ArrowInvalid("the line is not UTF-8 text") from None

    def _explain(self, row: bytes, error: Exception) -> str:
        if self._json is not None:
            return self._json.explain(row, error)
        return str(error)

    def finished(self) -> bool:
        return False

    def offsets(self) -> dict[str, Any]:
        return {self._name: self._taken} if self._server is not None else {}

    def checkpoint_completed(self, offsets: dict[str, Any]) -> None:
        """ack = 'checkpoint': answer the requests whose rows the checkpoint holds."""
        upto = offsets.get(self._name)
        if upto is None or self._server is None:
            return
        ready = [a for n, answers in self._waiting if n <= upto for a in answers]
        self._waiting = [(n, a) for n, a in self._waiting if n > upto]
        self._server.answer_all(ready)

    def close(self) -> None:
        if self._loop is not None:
            if self._listener is not None:
                self._loop.loop.call_soon_threadsafe(self._listener.close)
            self._loop.stop()
            self._loop = None


def _rows_body(n: int) -> bytes:
    return b'{"rows": %d}' % n


def _port(table: TableSpec) -> int:
    raw = mx.require(table, "port", "8080")
    try:
        port = int(raw)
        if not 0 < port < 65536:
            raise ValueError
        return port
    except ValueError:
        raise ConfigError(f"port = {raw!r} of table {table.name!r}", line=table.line,
                          hint="a TCP port, 1 to 65535") from None


SOURCE = HttpIngestSource
