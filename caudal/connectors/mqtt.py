"""The ``mqtt`` connector (paho-mqtt, MQTT 3.1.1): topics as a source or a sink.

Source: one subtask subscribes to ``topic`` (wildcards ``+`` and ``#`` allowed; several
topics comma-separated) with ``qos`` 0, 1 or 2, as client ``client_id`` (default
``caudal-<table>``). With QoS 1 or 2 the client acknowledges a message (PUBACK / PUBREC) only
once a checkpoint holding it is complete. With ``clean_session = 'false'`` (the default) the
broker keeps the session while the job is down: messages published meanwhile, and those
delivered but never acknowledged, are delivered again when it comes back: at least once. With
QoS 0, or a clean session, messages in flight when the job dies are lost: at most once.
The broker sends at most its ``max_inflight_messages`` unacknowledged messages (Mosquitto's
default: 20) and queues ``max_queued_messages`` more per client (default 1 000, beyond which
it drops them): since acks come at checkpoints, raise both on the broker for real rates.

Sink: each row a message on ``topic`` with ``qos`` (and ``retain``); with QoS 1 or 2 every
message of an epoch is acknowledged by the broker before its checkpoint completes, and a
restart publishes the rows since the last checkpoint again: at least once (QoS 0: at most).
"""

from __future__ import annotations

import collections
import threading
import time
import uuid
from typing import Any

import pyarrow as pa

from caudal.connectors import messages as mx
from caudal.connectors.base import Source
from caudal.errors import ConfigError, RuntimeFailure
from caudal.plan.tables import TableSpec

DEFAULT_URL = "tcp://127.0.0.1:1883"
COMMON = {
    "url": f"tcp://host:port of the broker (default {DEFAULT_URL})",
    "topic": "the topic (source: filters with + and #, comma-separated)",
    "qos": "0, 1 (default) or 2",
    "username": "user name, if the broker asks for one",
    "password": "password, if the broker asks for one",
    "client_id": "the MQTT client id (default caudal-<table>, per subtask for a sink)",
    "format": mx.FORMAT_OPTION,
    "connect_timeout": mx.CONNECT_TIMEOUT_OPTION,
}
SOURCE_OPTIONS = {
    **COMMON,
    "clean_session": "false (default: the broker keeps the session while the job is down; "
                     "at least once with QoS 1) or true (at most once)",
}
SINK_OPTIONS = {**COMMON, "retain": "true: the broker keeps each topic's last message",
                "max_inflight": "QoS 1/2 messages sent before the broker acknowledged them "
                                "(default 20, Mosquitto's limit)"}


def _address(table: TableSpec) -> tuple[str, int]:
    raw = table.options.get("url", DEFAULT_URL)
    scheme, _, rest = raw.rpartition("://")
    host, _, port = rest.rpartition(":")
    try:
        if scheme.lower() not in ("", "tcp", "mqtt"):   # (ssl:// would go out in plain TCP)
            raise ValueError(scheme)
        return (host or rest), int(port or 1883)
    except ValueError:
        raise ConfigError(f"url = {raw!r} of table {table.name!r}", line=table.line,
                          hint="tcp://host:port") from None


def _qos(table: TableSpec) -> int:
    return int(mx.choice(table, "qos", ("0", "1", "2"), "1"))


def _flag(table: TableSpec, key: str, default: str) -> bool:
    return mx.choice(table, key, ("true", "false"), default) == "true"


def connect(table: TableSpec, client_id: str, clean: bool, on_message: Any = None,
            manual_ack: bool = False) -> Any:
    import paho.mqtt.client as mqtt

    host, port = _address(table)
    connected = threading.Event()
    codes: list[Any] = []

    def on_connect(_c: Any, _u: Any, _f: Any, code: Any, _p: Any = None) -> None:
        codes.append(code)
        connected.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         clean_session=clean, manual_ack=manual_ack)
    client.on_connect = on_connect
    if on_message is not None:
        client.on_message = on_message
    if table.options.get("username"):
        client.username_pw_set(table.options["username"], table.options.get("password"))
    # the broker drops QoS 1/2 messages beyond its own limit (Mosquitto: 20)
    client.max_inflight_messages_set(mx.int_option(table, "max_inflight", 20, 1, 65535,
                                                   "messages"))
    client.max_queued_messages_set(0)

    def attempt() -> Any:
        client.connect(host, port, keepalive=30)
        return client

    mx.retrying(table, f"{host}:{port}", "connecting", attempt, (OSError,))
    client.loop_start()
    if not connected.wait(mx.connect_timeout(table)) or codes[0].is_failure:
        client.loop_stop()
        raise RuntimeFailure(f"mqtt table {table.name!r}: the broker at {host}:{port} refused "
                             f"the connection ({codes[0] if codes else 'no answer'})",
                             hint="check url, username and password")
    return client


class MqttSource(Source):
    bounded = False
    OPTIONS = SOURCE_OPTIONS
    FORMAT_ALIASES = mx.FORMAT_ALIASES

    @classmethod
    def validate(cls, table: TableSpec) -> None:
        mx.require(table, "topic", "sensors/#")
        _address(table)
        _qos(table)
        _flag(table, "clean_session", "false")
        if table.schema is not None:
            mx.value_format(table)

    @classmethod
    def infer_schema(cls, table: TableSpec) -> pa.Schema | None:
        raise ConfigError(f"mqtt table {table.name!r} declares no columns", line=table.line,
                          hint="declare them: CREATE TABLE t (id BIGINT, …) WITH (…)")

    def __init__(self, table: TableSpec):
        super().__init__(table)
        self.decoder = mx.MessageDecoder(self)
        self.schema = self.decoder.schema
        self.topics = [t.strip() for t in table.options["topic"].split(",") if t.strip()]
        self.qos = _qos(table)
        self._client: Any = None
        self._got: collections.deque = collections.deque()
        self._arrived = threading.Event()
        self._taken = 0
        #: (poll number, messages to acknowledge) until a checkpoint holds that poll
        self._unacked: list[tuple[int, list[Any]]] = []
        self._run = uuid.uuid4().hex[:12]
        self._name = "mqtt:" + ",".join(self.topics)

    def partitions(self, parallelism: int) -> list[str]:
        return [self._name]

    def open(self, assigned: list[str], offsets: dict[str, Any] | None = None) -> None:
        if not assigned:
            return
        got, arrived = self._got, self._arrived

        def on_message(_c: Any, _u: Any, msg: Any) -> None:
            got.append(msg)
            arrived.set()

        clean = _flag(self.table, "clean_session", "false")
        client_id = self.table.options.get("client_id") or f"caudal-{self.table.name}"
        self._client = connect(self.table, client_id, clean, on_message,
                               manual_ack=self.qos > 0)
        result, _ = self._client.subscribe([(t, self.qos) for t in self.topics])
        if result != 0:
            raise RuntimeFailure(f"mqtt table {self.table.name!r}: subscribing to "
                                 f"{', '.join(self.topics)} failed (code {result})")

    def poll(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        if self._client is None:
            return None
        if not self._got:
            self._arrived.wait(timeout)
            self._arrived.clear()
            if not self._got:
                return None
        got = self._got
        msgs = [got.popleft() for _ in range(min(max_rows, len(got)))]
        self._taken += 1
        if self.qos > 0:
            self._unacked.append((self._taken, msgs))
        batch = self.decoder.decode([m.payload for m in msgs],
                                    lambda i: f"topic {msgs[i].topic!r}")
        if batch is None or batch.num_rows == 0:
            return None
        self.metrics.rows_read += batch.num_rows
        return batch

    def finished(self) -> bool:
        return False

    def offsets(self) -> dict[str, Any]:
        return {self._name: [self._run, self._taken]} if self._client is not None else {}

    def checkpoint_completed(self, offsets: dict[str, Any]) -> None:
        """Acknowledge (PUBACK / PUBREC) the messages of the polls the checkpoint holds."""
        held = offsets.get(self._name)
        if not held or held[0] != self._run or self._client is None:
            return
        ready = [m for n, msgs in self._unacked if n <= held[1] for m in msgs]
        self._unacked = [(n, m) for n, m in self._unacked if n > held[1]]
        for m in ready:
            self._client.ack(m.mid, m.qos)

    def close(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None


class MqttSink(mx.MessageSink):
    OPTIONS = SINK_OPTIONS

    @classmethod
    def validate(cls, table: TableSpec) -> None:
        mx.require(table, "topic", "results")
        _address(table)
        _qos(table)
        _flag(table, "retain", "false")
        mx.int_option(table, "max_inflight", 20, 1, 65535, "messages")
        if any(c in table.options["topic"] for c in "+#"):
            raise ConfigError(f"topic {table.options['topic']!r} of mqtt table "
                              f"{table.name!r} has a wildcard", line=table.line,
                              hint="publish to one topic")
        if table.schema is not None:
            mx.value_format(table)

    def open(self, schema: pa.Schema, restored: dict[str, Any] | None = None) -> None:
        super().open(schema, restored)
        self.topic = self.table.options["topic"]
        self.qos = _qos(self.table)
        self.retain = _flag(self.table, "retain", "false")
        base = self.table.options.get("client_id") or f"caudal-{self.table.name}"
        self._client = connect(self.table, f"{base}-{self.writer}-{self.subtask}", True)
        #: the messages published since the last checkpoint, until the broker has them
        self._sent: list[Any] = []

    def write(self, batch: pa.RecordBatch) -> None:
        values, _ = mx.encode_values(batch, self.format, self.table, self.schema)
        publish, topic, qos, retain = self._client.publish, self.topic, self.qos, self.retain
        sent = self._sent
        for v in values.to_pylist():   # the client takes one call per message
            sent.append(publish(topic, v, qos, retain))

    def _flush(self) -> None:
        """Wait until the broker acknowledged every message published so far."""
        deadline = time.monotonic() + mx.connect_timeout(self.table) * 3
        while any(not m.is_published() for m in self._sent):
            if time.monotonic() > deadline:
                raise RuntimeFailure(f"mqtt table {self.table.name!r}: the broker did not "
                                     f"acknowledge the messages of this checkpoint",
                                     hint="check the broker; the job restarts from its last "
                                          "checkpoint")
            time.sleep(0.002)
        self._sent = []

    def pre_commit(self, epoch: int) -> dict[str, Any]:
        self._flush()
        return {}

    def close(self) -> None:
        self._flush()
        self._client.disconnect()
        self._client.loop_stop()


SOURCE = MqttSource
SINK = MqttSink
