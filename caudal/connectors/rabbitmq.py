"""The ``rabbitmq`` connector (pika, AMQP 0-9-1): a queue as a source, an exchange as a sink.

Source: one subtask consumes the queue with manual acknowledgements and a prefetch bound
(``prefetch``, default 10 000 unacknowledged messages: the broker stops delivering beyond it,
which also bounds memory). The delivery tag of the last message taken is the offset in
checkpoint state; once that checkpoint is complete the source acks every message up to it
(``multiple``). Messages taken after the checkpoint are not acked, so when the job dies the
broker requeues them and the resumed job reads them again: at least once (a crash between a
checkpoint's completion and its ack also gives its messages again).
``'scan.bounded.mode' = 'latest-offset'`` reads as many messages as the queue held at start
(its message count: right when this job is its only consumer), then ends.

Source, stream (``stream`` set instead of ``queue``): see ``rabbitmq_stream``; offsets in
checkpoint state, no acknowledgements.

Sink: publishes each row as a persistent message with publisher confirms: a row is
written once the broker confirmed it, and every row of an epoch is confirmed before its
checkpoint completes; a restart publishes the rows since the last checkpoint again (at least
once).
"""

from __future__ import annotations

import uuid
from typing import Any

import pyarrow as pa

from caudal.connectors import messages as mx
from caudal.connectors.amqp import DEFAULT_URL, connect
from caudal.connectors.base import Source
from caudal.errors import ConfigError, RuntimeFailure
from caudal.plan.tables import TableSpec

DEFAULT_PREFETCH = 10_000

COMMON = {
    "url": f"amqp://user:password@host:port/vhost (default {DEFAULT_URL})",
    "format": mx.FORMAT_OPTION,
    "connect_timeout": mx.CONNECT_TIMEOUT_OPTION,
}
SOURCE_OPTIONS = {
    **COMMON,
    "queue": "the queue to consume (it must exist)",
    "stream": "instead of queue: a RabbitMQ stream, read by offset over the stream protocol "
              "(offset in checkpoint state; plugin rabbitmq_stream)",
    "stream_port": "the stream protocol's port (default 5552), on the url's host",
    "load_balancer": "stream: true to make every stream connection to the url's host and "
                     "stream_port (a load balancer or proxy) instead of the node the broker "
                     "names (default false)",
    "scan.startup.mode": "stream: where a job without checkpoint starts: earliest (default) "
                         "or latest",
    "prefetch": f"unacknowledged messages the broker sends at most (default "
                f"{DEFAULT_PREFETCH}); acks come after each checkpoint",
    "scan.bounded.mode": "latest-offset: read as many messages as the queue held at start "
                         "(a stream: up to its last offset at start), then end; default "
                         "unbounded",
}
SINK_OPTIONS = {
    **COMMON,
    "exchange": "the exchange to publish to (default '': the default exchange)",
    "routing_key": "the routing key (default: the queue option, or the table's name)",
    "queue": "with the default exchange: the queue messages go to",
}


def _prefetch(table: TableSpec) -> int:
    return mx.int_option(table, "prefetch", DEFAULT_PREFETCH, 1, 65535, "messages")


class RabbitSource(Source):
    bounded = False
    OPTIONS = SOURCE_OPTIONS
    FORMAT_ALIASES = mx.FORMAT_ALIASES

    def __new__(cls, table: TableSpec) -> Any:
        if table.options.get("stream"):   # a RabbitMQ stream: read by offset
            from caudal.connectors.rabbitmq_stream import RabbitStreamSource

            return RabbitStreamSource(table, DEFAULT_URL)
        return super().__new__(cls)

    @classmethod
    def validate(cls, table: TableSpec) -> None:
        if table.options.get("stream"):
            from caudal.connectors.rabbitmq_stream import STARTUP, stream_address

            if table.options.get("queue"):
                raise ConfigError(f"rabbitmq table {table.name!r} has both queue and stream",
                                  line=table.line, hint="one of them: a queue, or a stream "
                                                        "read by offset")
            stream_address(table, DEFAULT_URL)
            mx.choice(table, "scan.startup.mode", STARTUP, "earliest")
        else:
            mx.require(table, "queue", "events")
            for key in ("stream_port", "scan.startup.mode", "load_balancer"):
                if key in table.options:
                    raise ConfigError(f"option {key} of rabbitmq table {table.name!r} is for "
                                      f"streams", line=table.line,
                                      hint="set stream = '<name>', or drop the option")
        _prefetch(table)
        mx.bounded_latest(table)
        if table.schema is not None:
            mx.value_format(table)

    @classmethod
    def infer_schema(cls, table: TableSpec) -> pa.Schema | None:
        raise ConfigError(f"rabbitmq table {table.name!r} declares no columns",
                          line=table.line,
                          hint="declare them: CREATE TABLE t (id BIGINT, …) WITH (…)")

    def __init__(self, table: TableSpec):
        super().__init__(table)
        self.decoder = mx.MessageDecoder(self)
        self.schema = self.decoder.schema
        self.queue = table.options["queue"]
        self.bounded = mx.bounded_latest(table)
        self._conn: Any = None
        self._channel: Any = None
        self._got: list[tuple[int, bytes]] = []
        self._last_tag = 0
        #: the delivery tag acknowledged last (multiple): never acknowledged twice
        self._acked = 0
        self._left: int | None = None
        #: names this connection's delivery tags (a restored checkpoint's are another's)
        self._run = uuid.uuid4().hex[:12]

    def partitions(self, parallelism: int) -> list[str]:
        return [self.queue]

    def open(self, assigned: list[str], offsets: dict[str, Any] | None = None) -> None:
        import pika.exceptions

        if not assigned:
            self._left = 0
            return
        self._conn = connect(self.table)
        self._channel = self._conn.channel()
        try:
            declared = self._channel.queue_declare(self.queue, passive=True)
        except pika.exceptions.ChannelClosedByBroker:
            raise ConfigError(f"queue {self.queue!r} of rabbitmq table {self.table.name!r} "
                              f"does not exist", line=self.table.line,
                              hint="declare it, or check the queue option") from None
        if self.bounded:
            self._left = declared.method.message_count
        self._channel.basic_qos(prefetch_count=_prefetch(self.table))
        got = self._got

        def on_message(_ch: Any, method: Any, _props: Any, body: bytes) -> None:
            got.append((method.delivery_tag, body))

        self._channel.basic_consume(self.queue, on_message, auto_ack=False)

    def poll(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        if self._channel is None or self._left == 0:
            return None
        if not self._got:
            if not self._channel.is_open:   # the broker closed it: no consumer is left
                raise RuntimeFailure(f"rabbitmq table {self.table.name!r}: the broker closed "
                                     f"the channel of queue {self.queue!r}",
                                     hint="the job restarts from its last checkpoint")
            try:
                self._conn.process_data_events(time_limit=timeout)
            except Exception as e:  # noqa: BLE001 - one line; the job restarts
                raise RuntimeFailure(f"rabbitmq table {self.table.name!r}: lost the broker "
                                     f"({type(e).__name__})",
                                     hint="the job restarts from its last checkpoint") from None
        if not self._got:
            return None
        take = min(max_rows, len(self._got), self._left if self._left is not None else
                   len(self._got))
        got = self._got[:take]
        del self._got[:take]   # in place: the consumer callback appends to this list
        if self._left is not None:
            self._left -= take
        self._last_tag = got[-1][0]
        batch = self.decoder.decode([b for _, b in got],
                                    lambda i: f"queue {self.queue!r} delivery {got[i][0]}")
        if batch is None or batch.num_rows == 0:
            return None
        self.metrics.rows_read += batch.num_rows
        return batch

    def finished(self) -> bool:
        return self.bounded and self._left == 0

    def offsets(self) -> dict[str, Any]:
        return {self.queue: [self._run, self._last_tag]} if self._channel is not None else {}

    def checkpoint_completed(self, offsets: dict[str, Any]) -> None:
        """Ack (multiple) every message up to the checkpoint's last delivery tag."""
        held = offsets.get(self.queue)
        if not held or held[0] != self._run or not held[1] or self._channel is None:
            return
        tag = int(held[1])
        if tag <= self._acked:
            # nothing new since the last ack (an idle queue): acking a tag again is an
            # "unknown delivery tag" to the broker, which closes the channel and with it the
            # consumer: the source would never get another message
            return
        try:
            self._channel.basic_ack(delivery_tag=tag, multiple=True)
            self._acked = tag
        except Exception:  # noqa: BLE001 - unacked messages are requeued: replay is safe
            pass

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 - closing a lost connection
                pass
            self._conn = None


class RabbitSink(mx.MessageSink):
    OPTIONS = SINK_OPTIONS

    @classmethod
    def validate(cls, table: TableSpec) -> None:
        if table.schema is not None:
            mx.value_format(table)

    def open(self, schema: pa.Schema, restored: dict[str, Any] | None = None) -> None:
        import pika

        super().open(schema, restored)
        opts = self.table.options
        self.exchange = opts.get("exchange", "")
        self.routing_key = opts.get("routing_key") or opts.get("queue") or self.table.name
        self._conn = connect(self.table)
        self._channel = self._conn.channel()
        self._channel.confirm_delivery()
        self._props = pika.BasicProperties(delivery_mode=2)

    def write(self, batch: pa.RecordBatch) -> None:
        import pika.exceptions

        values, _ = mx.encode_values(batch, self.format, self.table, self.schema)
        publish = self._channel.basic_publish
        try:
            for v in values.to_pylist():   # the client takes one call per message
                publish(self.exchange, self.routing_key, v, self._props, mandatory=True)
        except pika.exceptions.UnroutableError:
            raise RuntimeFailure(f"rabbitmq table {self.table.name!r}: no queue is bound to "
                                 f"exchange {self.exchange!r} with routing key "
                                 f"{self.routing_key!r}",
                                 hint="declare the queue or bind it") from None
        except pika.exceptions.AMQPError as e:
            raise RuntimeFailure(f"rabbitmq table {self.table.name!r}: publishing failed "
                                 f"({type(e).__name__})",
                                 hint="the job restarts from its last checkpoint") from None

    def close(self) -> None:
        try:
            self._conn.close()
        except Exception:  # noqa: BLE001 - closing a lost connection
            pass


SOURCE = RabbitSource
SINK = RabbitSink
