"""The ``http`` ingest source: caudal listens on a port and takes NDJSON POSTs.

A request's body is one or more JSON lines (one event, or a batch). The server is a small
HTTP/1.1 implementation on a selector (keep-alive, one request at a time per connection) run
by the source thread itself: its poll waits on the sockets, takes every complete body they
hold, joins them and decodes the lot with one call of the JSON decoder (the Kafka source's),
then answers. A single event is in the pipeline as soon as it is read (no batch timer, no
hand-off between threads: each costs milliseconds on a busy machine). Answers:

- ``ack = 'pipeline'`` (default): 202 once the request's rows are in the pipeline (decoded and
  handed to the job). Rows not yet in a checkpoint are lost if the job dies: at most once.
- ``ack = 'checkpoint'``: 202 once a checkpoint holding the rows is complete (needs
  ``--checkpoint-dir``). A client that retries until it gets 202 loses nothing: at least once
  (a request whose 202 was lost in a crash is taken again).

A body with a malformed line is answered 400 naming the line, and none of its rows enter
(``bad_data = 'fail'``), or its bad lines are dropped and counted (``bad_data = 'drop'``);
either way the job goes on. A poll takes at most about ``max_queued_bytes`` of bodies. When the
job has not polled for a while (a slow sink holds it), an overflow thread serves the sockets:
it queues bodies for the next poll up to ``max_queued_bytes`` and answers 503 with
Retry-After beyond (memory stays bounded when the job falls behind).
"""

from __future__ import annotations

import json
import selectors
import socket
import threading
import time
from typing import Any

import pyarrow as pa

from caudal.connectors import messages as mx
from caudal.connectors.base import Source
from caudal.errors import ConfigError, RuntimeFailure
from caudal.formats import bad_data
from caudal.plan.tables import TableSpec

DEFAULT_MAX_QUEUED = 64 << 20
MAX_BODY = 32 << 20
MAX_HEAD = 65536
#: bytes one read of a connection takes
READ_BYTES = 1 << 20
#: the job has not polled for this long (its sink is slow): the overflow thread serves
BEHIND_S = 0.2
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


class _Connection:
    """One client connection: its unparsed input, its unsent output, and whether a request
    of it waits for its answer (then it is not read: answers go out in request order)."""

    __slots__ = ("sock", "buf", "out", "busy", "close_after", "closing", "events")

    def __init__(self, sock: socket.socket):
        self.sock: socket.socket | None = sock
        self.buf = bytearray()
        self.out = bytearray()
        self.busy = False
        self.close_after = False
        self.closing = False
        #: the selector events it is registered for (0: not registered)
        self.events = 0


class _Server:
    """The listening socket and its connections, served by whichever thread holds ``lock``:
    the source thread during its poll (requests go straight from the socket into the poll's
    batch and are answered by the same thread: no hand-off between threads on the way), or,
    while the job has not polled for ``BEHIND_S`` (a slow sink), the overflow thread, which
    queues bodies for the next poll up to ``max_queued`` bytes and answers 503 beyond."""

    def __init__(self, listener: socket.socket, path: str, max_queued: int):
        self.listener = listener
        self.path = path
        self.max_queued = max_queued
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener, selectors.EVENT_READ, None)
        self.lock = threading.Lock()
        #: connections holding a complete request not parsed yet
        self.ready: set[_Connection] = set()
        #: bodies the overflow thread read, for the next poll
        self.queue: list[tuple[_Connection, bytes]] = []
        self.queued = 0
        self.last_poll = time.monotonic()
        #: the source thread waits for the lock: the overflow thread hands it over
        self.wanted = False
        self.stopped = threading.Event()
        self.overflow = threading.Thread(target=self._overflow, daemon=True,
                                         name="http-ingest-overflow")
        self.overflow.start()

    # ---- the source thread ----------------------------------------------------------------

    def take(self, timeout: float, max_bytes: int) -> list[tuple[_Connection, bytes]]:
        """Serve the sockets until a request body arrives or ``timeout`` passes; returns the
        bodies read (at most about ``max_bytes``; the rest waits in the connections)."""
        self.wanted = True
        with self.lock:
            self.wanted = False
            items, self.queue, self.queued = self.queue, [], 0
            taken = sum(len(body) for _, body in items)
            if not items and not self.ready:
                self._serve(timeout)
            elif not self.ready:
                self._serve(0)
            taken = self._parse_ready(items, taken, max_bytes, overflow=False)
            if items and taken < max_bytes:
                # what arrived meanwhile joins this poll's decode, without waiting: waiting
                # (even a millisecond) costs a trip through the scheduler's queue, which on a
                # busy machine is far longer than the wait; the busier the job, the more each
                # poll finds, so the cost of a decode is shared by more requests
                self._serve(0)
                self._parse_ready(items, taken, max_bytes, overflow=False)
            self.last_poll = time.monotonic()
        return items

    def answer_all(self, answers: list[tuple[_Connection, int, bytes]]) -> None:
        if not answers:
            return
        with self.lock:
            for conn, status, body in answers:
                self._answer(conn, status, body)

    def close(self) -> None:
        self.stopped.set()
        self.overflow.join(timeout=5)
        with self.lock:
            for key in list(self.selector.get_map().values()):
                key.fileobj.close()
            self.selector.close()
            self.ready.clear()

    # ---- the overflow thread --------------------------------------------------------------

    def _overflow(self) -> None:
        while not self.stopped.wait(BEHIND_S / 2):
            if time.monotonic() - self.last_poll < BEHIND_S or \
                    not self.lock.acquire(blocking=False):
                continue
            try:
                while not self.wanted and not self.stopped.is_set() and \
                        time.monotonic() - self.last_poll >= BEHIND_S:
                    self._serve(0.01)
                    self.queued = self._parse_ready(self.queue, self.queued, self.max_queued,
                                                    overflow=True)
            finally:
                self.lock.release()

    # ---- under the lock -------------------------------------------------------------------

    def _serve(self, timeout: float) -> None:
        """One round of the selector: accept, read, write what waits."""
        for key, mask in self.selector.select(timeout):
            conn = key.data
            if conn is None:
                self._accept()
                continue
            if mask & selectors.EVENT_WRITE:
                self._flush(conn)
            if mask & selectors.EVENT_READ and conn.sock is not None:
                if conn.busy:
                    self._interest(conn)   # waits for its answer: not read until then
                else:
                    self._read(conn)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # e.g. out of file descriptors: the client is refused, the job goes on
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._interest(_Connection(sock))

    def _read(self, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:   # the client is gone (or half-closed: it cannot be answered in order)
            self._drop(conn)
            return
        conn.buf += data
        if len(conn.buf) > MAX_HEAD and conn.buf.find(b"\r\n\r\n", 0, MAX_HEAD) < 0:
            self._answer(conn, 400, b'{"error": "headers too long"}', close=True)
            return
        self.ready.add(conn)

    def _parse_ready(self, items: list[tuple[_Connection, bytes]], taken: int,
                     max_bytes: int, overflow: bool) -> int:
        """Parse the complete requests waiting in connections: POST bodies go to ``items``
        while they stay under ``max_bytes`` (in the overflow thread, beyond it: 503)."""
        for conn in list(self.ready):
            if taken >= max_bytes and not overflow:
                break
            self.ready.discard(conn)
            body = self._request(conn)
            if body is None:
                continue
            if overflow and taken + len(body) > max_bytes:
                self._answer(conn, 503, b'{"error": "the job is behind; retry"}',
                             extra="Retry-After: 1\r\n")
                continue
            items.append((conn, body))
            taken += len(body)
        return taken

    def _request(self, conn: _Connection) -> bytes | None:
        """The body of the connection's next POST (the connection then waits for its
        answer); other requests are answered here. None: nothing (complete) to take."""
        while not conn.busy and conn.sock is not None:
            buf = conn.buf
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return None
            head = bytes(buf[:end]).decode("latin-1").split("\r\n")
            parts = head[0].split(" ")
            if len(parts) != 3:
                self._answer(conn, 400, b'{"error": "bad request line"}', close=True)
                return None
            method, target, version = parts
            length, chunked = 0, False
            conn.close_after = version == "HTTP/1.0"
            try:
                for line in head[1:]:
                    name, _, value = line.partition(":")
                    name = name.strip().lower()
                    if name == "content-length":
                        length = int(value.strip() or 0)
                    elif name == "transfer-encoding" and "chunked" in value.lower():
                        chunked = True
                    elif name == "connection":
                        v = value.strip().lower()
                        conn.close_after = v == "close" or (conn.close_after and
                                                            v != "keep-alive")
            except ValueError:
                self._answer(conn, 400, b'{"error": "bad Content-Length"}', close=True)
                return None
            if chunked:
                self._answer(conn, 411, b'{"error": "send a Content-Length"}', close=True)
                return None
            if length > MAX_BODY:
                self._answer(conn, 413, b'{"error": "body too large"}', close=True)
                return None
            if len(buf) < end + 4 + length:
                return None
            body = bytes(buf[end + 4:end + 4 + length])
            del buf[:end + 4 + length]
            path = target.split("?", 1)[0]
            if path != self.path:
                self._answer(conn, 404, b'{"error": "no such path"}')
            elif method == "GET":
                self._answer(conn, 200, b'{"status": "up"}')
            elif method != "POST":
                self._answer(conn, 405, b'{"error": "POST NDJSON"}')
            else:
                # not read until answered; it stays registered (two system calls a request
                # saved): only when it is readable while it waits is it taken out (_serve)
                conn.busy = True
                if body and not body.endswith(b"\n"):
                    body += b"\n"
                return body
        return None

    def _answer(self, conn: _Connection, status: int, body: bytes, close: bool = False,
                extra: str = "") -> None:
        if conn.sock is None:
            return
        close = close or conn.close_after
        conn.out += _response(status, body, close, extra)
        conn.busy = False
        conn.closing = close
        self._flush(conn)
        if conn.sock is not None and conn.buf and not close:
            self.ready.add(conn)   # a pipelined request waits behind this one

    def _flush(self, conn: _Connection) -> None:
        try:
            sent = conn.sock.send(conn.out)
            del conn.out[:sent]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._drop(conn)
            return
        if conn.closing and not conn.out:
            self._drop(conn)
        else:
            self._interest(conn)

    def _interest(self, conn: _Connection) -> None:
        want = (0 if conn.busy or conn.closing else selectors.EVENT_READ) | \
            (selectors.EVENT_WRITE if conn.out else 0)
        if want == conn.events:
            return
        if not conn.events:
            self.selector.register(conn.sock, want, conn)
        elif not want:
            self.selector.unregister(conn.sock)
        else:
            self.selector.modify(conn.sock, want, conn)
        conn.events = want

    def _drop(self, conn: _Connection) -> None:
        if conn.sock is None:
            return
        if conn.events:
            self.selector.unregister(conn.sock)
            conn.events = 0
        conn.sock.close()
        conn.sock = None
        self.ready.discard(conn)


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
        self._max_queued = DEFAULT_MAX_QUEUED
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
        try:
            listener = socket.create_server((host, port), backlog=1024)
        except OSError as e:
            raise RuntimeFailure(f"http table {self.table.name!r} cannot listen on "
                                 f"{host}:{port}: {e.strerror or e}",
                                 hint="choose another port, or stop what uses it") from None
        listener.setblocking(False)
        self._server = _Server(listener, opts.get("path", "/"), max_queued)
        self._max_queued = max_queued

    def poll(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        if self._server is None:
            return None
        items = self._server.take(timeout, self._max_queued)
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
        if self._server is not None:
            self._server.close()
            self._server = None


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
