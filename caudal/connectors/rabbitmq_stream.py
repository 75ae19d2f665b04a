"""The ``rabbitmq`` connector's RabbitMQ Streams source (``stream`` set; rstream client).

A RabbitMQ stream is an append-only log read by offset over the stream protocol (port 5552,
plugin ``rabbitmq_stream``). The stream is one caudal partition, read by one subtask; the
next offset to read is its offset in checkpoint state. A job (re)starting from a checkpoint
subscribes at that offset, so what was read after the checkpoint is read again: at least once
into the pipeline, exactly once into an exactly-once sink. Nothing is acknowledged: a stream
keeps its messages whoever reads them (until its retention drops them).

When the connection drops mid-run, the source subscribes again at the next offset it has not
handed to the job (bounded retries with backoff, then one line): nothing is lost or doubled.

``'scan.bounded.mode' = 'latest-offset'`` reads up to the stream's last offset at start. The
broker before 3.11 has no command that says it, so the source reads the stream's last chunk
with a second subscription (offset ``last``): the highest offset of the first chunk it gets is
the bound. A stream that is empty sends nothing; after ``EMPTY_WAIT_S`` without a chunk (and
no message counted by the broker) it is taken as empty.
"""

from __future__ import annotations

import asyncio
import collections
import time
import urllib.parse
from typing import Any

import numpy as np
import pyarrow as pa

from caudal.connectors import messages as mx
from caudal.connectors.base import Source
from caudal.errors import ConfigError, RuntimeFailure
from caudal.plan.tables import TableSpec

DEFAULT_STREAM_PORT = 5552
#: messages received and not yet polled, beyond which the client stops asking for chunks
MAX_BUFFERED = 200_000
#: how long an empty stream's last-chunk probe waits (latest-offset)
EMPTY_WAIT_S = 3.0
STARTUP = ("earliest", "latest", "earliest-offset", "latest-offset")


def stream_address(table: TableSpec, default_url: str) -> dict[str, Any]:
    """host, port, user, password and vhost from ``url`` (the AMQP URL) and ``stream_port``."""
    raw = table.options.get("url", default_url)
    parts = urllib.parse.urlsplit(raw)
    if parts.scheme not in ("amqp", "amqps", "rabbitmq-stream") or not parts.hostname:
        raise ConfigError(f"url = {raw!r} of table {table.name!r}", line=table.line,
                          hint="amqp://user:password@host:port/vhost")
    vhost = urllib.parse.unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    return {"host": parts.hostname,
            "port": mx.int_option(table, "stream_port", DEFAULT_STREAM_PORT, 1, 65535,
                                  "a TCP port"),
            "username": urllib.parse.unquote(parts.username or "guest"),
            "password": urllib.parse.unquote(parts.password or "guest"),
            "vhost": vhost,
            "load_balancer": mx.choice(table, "load_balancer", ("true", "false"), "false")
            == "true"}


class RabbitStreamSource(Source):
    bounded = False
    FORMAT_ALIASES = mx.FORMAT_ALIASES

    def __init__(self, table: TableSpec, default_url: str):
        super().__init__(table)
        self.decoder = mx.MessageDecoder(self)
        self.schema = self.decoder.schema
        self.stream = table.options["stream"]
        self.bounded = mx.bounded_latest(table)
        self.address = stream_address(table, default_url)
        self._loop: mx.AsyncLoop | None = None
        self._consumer: Any = None
        self._assigned = False
        #: the next offset to hand to the job (the checkpointed offset)
        self._next = 0
        #: the last offset to read (latest-offset), or None
        self._stop: int | None = None
        self._done = False
        #: (offset, body) from the client's callback on the loop thread; one per subscription
        self._got: collections.deque = collections.deque()
        self._lost: str | None = None
        self._reconnects = 0

    def partitions(self, parallelism: int) -> list[str]:
        return [self.stream]

    def open(self, assigned: list[str], offsets: dict[str, Any] | None = None) -> None:
        if not assigned:
            self._done = True
            return
        self._assigned = True
        self._loop = mx.AsyncLoop(f"rabbitmq-stream-{self.table.name}")
        start = (offsets or {}).get(self.stream)
        self._consumer = self._connect()
        if not self._loop.run(self._consumer.stream_exists(self.stream), timeout=30):
            raise ConfigError(f"RabbitMQ stream {self.stream!r} of table {self.table.name!r} "
                              f"does not exist", line=self.table.line,
                              hint="declare it (x-queue-type = stream), or check the stream "
                                   "option")
        if self.bounded:
            self._stop = self._last_offset()
        if start is None:
            mode = mx.choice(self.table, "scan.startup.mode", STARTUP, "earliest")
            if mode.startswith("latest"):   # only what is published from now on
                start = -1 if self._stop is None else self._stop + 1
            else:
                start = 0
        self._next = int(start)
        if self.bounded and (self._stop is None or self._next > self._stop):
            self._done = True
            return
        self._subscribe()

    # -- the client ---------------------------------------------------------------------------

    def _connect(self) -> Any:
        from rstream import Consumer
        from rstream.recovery import BackOffRecoveryStrategy

        a = self.address

        def lost(info: Any) -> None:
            self._lost = str(getattr(info, "reason", info)) or "connection closed"

        async def attempt() -> Any:
            consumer = Consumer(a["host"], a["port"], username=a["username"],
                                password=a["password"], vhost=a["vhost"], max_retries=20,
                                load_balancer_mode=a["load_balancer"],
                                on_close_handler=lost,
                                recovery_strategy=BackOffRecoveryStrategy(False))
            try:
                await asyncio.wait_for(consumer.start(), mx.connect_timeout(self.table))
                await consumer.default_client   # the locator connection: fails here if down
            except BaseException:
                await _quiet_close(consumer)
                raise
            return consumer

        return mx.retrying(self.table, f"{a['host']}:{a['port']}", "connecting",
                           lambda: self._loop.run(attempt(), timeout=mx.connect_timeout(
                               self.table) + 10), _client_errors())

    def _subscribe(self) -> None:
        """Subscribe at ``_next`` (or at the next message published: latest), into a fresh
        buffer so that what an old subscription delivered is never taken."""
        from rstream import ConsumerOffsetSpecification, OffsetType

        got: collections.deque = collections.deque()
        self._got = got
        self._lost = None

        async def on_message(body: bytes, ctx: Any) -> None:
            got.append((ctx.offset, message_body(body)))
            while len(got) > MAX_BUFFERED:   # the job is behind: stop asking for chunks
                await asyncio.sleep(0.01)

        spec = ConsumerOffsetSpecification(OffsetType.NEXT, None) if self._next < 0 else \
            ConsumerOffsetSpecification(OffsetType.OFFSET, self._next)
        self._loop.run(self._consumer.subscribe(self.stream, on_message, decoder=bytes,
                                                offset_specification=spec,
                                                initial_credit=4), timeout=30)

    def _reconnect(self) -> None:
        """The connection dropped: a new one, subscribed at the next offset not handed on."""
        reason = self._lost
        self._reconnects += 1
        self._loop.run(_quiet_close(self._consumer), timeout=10)
        try:
            self._consumer = self._connect()
        except RuntimeFailure:
            raise RuntimeFailure(f"rabbitmq table {self.table.name!r}: lost stream "
                                 f"{self.stream!r} ({reason}) and could not reconnect",
                                 hint="the job restarts from its last checkpoint") from None
        if self._next < 0:
            self._next = -1   # latest and nothing read yet: still only what comes next
        self._subscribe()

    def _last_offset(self) -> int | None:
        """The stream's last offset now (None: empty), from a probe reading its last chunk."""
        from rstream import ConsumerOffsetSpecification, OffsetType

        seen: list[int] = []
        first_chunk: list[int] = []

        def on_message(_body: bytes, ctx: Any) -> None:
            if not seen:
                # the client runs one chunk's callbacks without yielding: what is seen when
                # this runs is the first chunk whole
                asyncio.get_running_loop().call_soon(lambda: first_chunk.append(max(seen)))
            seen.append(ctx.offset)

        probe = self._connect()
        try:
            self._loop.run(probe.subscribe(
                self.stream, on_message, decoder=bytes,
                offset_specification=ConsumerOffsetSpecification(OffsetType.LAST, None)),
                timeout=30)
            wait, counted = EMPTY_WAIT_S, False
            deadline = time.monotonic() + wait
            while not first_chunk and time.monotonic() < deadline:
                time.sleep(0.01)
            if not first_chunk and self._counted():   # not empty: slow; wait longer
                counted, wait = True, wait + mx.connect_timeout(self.table) + 10
                deadline = time.monotonic() + wait
                while not first_chunk and time.monotonic() < deadline:
                    time.sleep(0.01)
        finally:
            self._loop.run(_quiet_close(probe), timeout=10)
        if first_chunk:
            return first_chunk[0]
        if counted:
            raise RuntimeFailure(f"rabbitmq table {self.table.name!r}: stream {self.stream!r} "
                                 f"holds messages but its last chunk did not arrive in "
                                 f"{wait:g}s", hint="check the broker; run again")
        return None

    def _counted(self) -> bool:
        """Whether the broker counts messages in the stream (its count lags by seconds: only
        a hint that the stream is not empty)."""
        from caudal.connectors.amqp import DEFAULT_URL, connect

        try:
            conn = connect(TableSpec(self.table.name, "rabbitmq", {
                "url": self.table.options.get("url", DEFAULT_URL), "connect_timeout": "5s"}))
        except RuntimeFailure:
            return False
        try:
            declared = conn.channel().queue_declare(self.stream, passive=True)
            return declared.method.message_count > 0
        except Exception:  # noqa: BLE001 - a hint only
            return False
        finally:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - closing a lost connection
                pass

    # -- reading ------------------------------------------------------------------------------

    def poll(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        if self._done or not self._assigned:
            return None
        got = self._got
        if not got:
            if self._lost is not None:
                self._reconnect()
                return None
            deadline = time.monotonic() + timeout
            while not got and time.monotonic() < deadline:
                time.sleep(0.001 if timeout < 0.05 else 0.005)
            if not got:
                return None
        n = min(max_rows, len(got))
        taken = [got.popleft() for _ in range(n)]
        offsets = np.fromiter((o for o, _ in taken), np.int64, n)
        keep = offsets >= self._next   # a chunk's messages before the subscribed offset
        if self._stop is not None:
            keep &= offsets <= self._stop
        if not keep.all():
            taken = [t for t, k in zip(taken, keep) if k]
            offsets = offsets[keep]
        if self._stop is not None and (self._next > self._stop or len(offsets) and
                                       offsets.max() >= self._stop):
            self._done = True
        if not taken:
            return None
        self._next = int(offsets.max()) + 1
        batch = self.decoder.decode([b for _, b in taken],
                                    lambda i: f"stream {self.stream!r} offset {int(offsets[i])}")
        if batch is None or batch.num_rows == 0:
            return None
        self.metrics.rows_read += batch.num_rows
        return batch

    def finished(self) -> bool:
        return self.bounded and (self._done or not self._assigned)

    def offsets(self) -> dict[str, Any]:
        if not self._assigned or self._next < 0:
            return {}
        return {self.stream: self._next}

    def close(self) -> None:
        if self._loop is not None:
            try:
                self._loop.run(_quiet_close(self._consumer), timeout=10)
            except Exception:  # noqa: BLE001 - closing a lost connection
                pass
            self._loop.stop()
            self._loop = None


#: AMQP 1.0 section codes (after 0x00 0x53) of a message's body: data, amqp-value
_DATA, _VALUE = 0x75, 0x77
#: an AMQP 1.0 constructor -> bytes of its size field (binary, string, list, map)
_SIZED = {0xa0: 1, 0xa1: 1, 0xa3: 1, 0xb0: 4, 0xb1: 4, 0xb3: 4, 0xc0: 1, 0xc1: 1, 0xd0: 4,
          0xd1: 4}
#: constructors without a size field -> their fixed width (null, true/false, list0, …)
_FIXED = {0x40: 0, 0x41: 0, 0x42: 0, 0x43: 0, 0x44: 0, 0x45: 0, 0x50: 1, 0x51: 1, 0x52: 1,
          0x53: 1, 0x54: 1, 0x55: 1, 0x56: 1, 0x60: 2, 0x61: 2, 0x70: 4, 0x71: 4, 0x72: 4,
          0x73: 4, 0x80: 8, 0x81: 8, 0x82: 8, 0x83: 8, 0x84: 8, 0x94: 16, 0x98: 16}


def message_body(raw: bytes) -> bytes:
    """The payload of a stream message. Clients that speak AMQP 1.0 (Java, .NET, Go, and
    AMQP 0-9-1 publishing into a stream) wrap it in sections (header, properties, …, data);
    others (rstream's raw publish) store it as it is. Only the sections' sizes are read: the
    body is cut out, not decoded."""
    if raw[:2] != b"\x00\x53":
        return raw
    out, pos, n = [], 0, len(raw)
    try:
        while pos < n:
            if raw[pos] != 0x00 or raw[pos + 1] != 0x53:
                return raw
            code, ctor, pos = raw[pos + 2], raw[pos + 3], pos + 4
            if ctor in _SIZED:
                width = _SIZED[ctor]
                size = raw[pos] if width == 1 else int.from_bytes(raw[pos:pos + 4], "big")
                pos += width
                if code in (_DATA, _VALUE) and ctor in (0xa0, 0xa1, 0xb0, 0xb1):
                    out.append(raw[pos:pos + size])
                pos += size
            elif ctor in _FIXED:
                pos += _FIXED[ctor]
            else:
                return raw
    except IndexError:
        return raw
    return b"".join(out) if out else raw


async def _quiet_close(consumer: Any) -> None:
    if consumer is None:
        return
    try:
        await asyncio.wait_for(consumer.close(), 5)
    except Exception:  # noqa: BLE001 - closing a lost connection
        pass


def _client_errors() -> tuple[type[BaseException], ...]:
    from rstream.exceptions import ServerError

    return (OSError, asyncio.TimeoutError, ServerError, ConnectionError)
