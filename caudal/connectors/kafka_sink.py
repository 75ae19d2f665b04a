"""The ``kafka`` sink: rows as messages, exactly once through Kafka transactions.

``sink.commit_mode = 'at_least_once'``: rows are produced as they come and the producer is
flushed at every barrier, so a checkpoint completes only once its rows are acknowledged; a
restart may write the rows since the last checkpoint again.

``exactly_once`` (the default). librdkafka cannot take over a transaction another process
opened (Flink resumes one by restoring the producer id and epoch, which confluent-kafka does
not expose), so a transaction left prepared by a killed process could never be committed. So
caudal keeps the epoch's messages (key and value bytes, already encoded) in the sink's
pre-commit state, which the checkpoint stores, and writes them in one transaction when the
checkpoint is complete:

- pre-commit (at the barrier): the epoch's encoded messages become part of the checkpoint;
- commit (the manifest exists): ``begin_transaction``, produce the messages of every
  pre-committed epoch up to the checkpoint, and a record ``{"epoch": N}`` keyed by the
  producer's transactional.id into the commit topic (``sink.commit_topic``), then
  ``commit_transaction``; the marker and the rows become visible together;
- recovery: the new process opens a producer with the same transactional.id
  (``<prefix>-<subtask>``): ``init_transactions`` fences the dead one and aborts whatever it
  left open; then the newest marker of that id tells whether the checkpoint's epoch was
  committed before the crash. If not, its messages are produced again from the checkpoint, in
  a new transaction. Epochs after the checkpoint never reached Kafka (they are replayed).

A read_committed consumer thus sees each row once. The cost is that the rows of an epoch are
held (encoded) in memory and written to the checkpoint, and become visible only when the
checkpoint completes, as with Flink's exactly-once Kafka sink.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import numpy as np
import pyarrow as pa

from caudal import compute as pc
from caudal.connectors import kafka_options as ko
from caudal.connectors.base import Sink
from caudal.errors import ConfigError, RuntimeFailure
from caudal.formats import debezium_json, text
from caudal.formats import json as json_format
from caudal.plan.changelog import OP
from caudal.plan.tables import TableSpec
from caudal.types import conform_batch

DEFAULT_COMMIT_TOPIC = "_caudal_kafka_commits"
#: without checkpoints, an exactly_once sink commits a transaction every this many messages
UNCHECKPOINTED_TRANSACTION = 100_000
#: the staged messages of pre-committed epochs, as the checkpoint stores them
STAGED = pa.schema([("epoch", pa.int64()), ("key", pa.binary()), ("value", pa.binary())])


def split_lines(data: bytes) -> pa.Array:
    """JSON lines (each ending in a newline, none inside) -> one binary value per line,
    without the newline, cut by one Arrow kernel (no per-line Python)."""
    if not data:
        return pa.array([], pa.binary())
    pieces = pc.split_pattern(pa.array([data], pa.binary()), b"\n").values
    return pieces.slice(0, len(pieces) - 1)   # the empty piece after the last newline


def key_columns(table: TableSpec) -> list[str]:
    raw = ko.options(table).get("key.fields")
    if not raw:
        return []
    return [k.strip() for k in raw.replace(";", ",").split(",") if k.strip()]


class KafkaSink(Sink):
    """Writes one subtask's rows to a topic (see the module docstring for exactly-once)."""

    OPTIONS = ko.SINK_OPTIONS
    OPTION_PREFIXES = (ko.PROPERTIES,)
    FORMAT_ALIASES = ko.FORMAT_ALIASES

    @classmethod
    def validate(cls, table: TableSpec) -> None:
        ko.require(table, "topic", "results")
        ko.client_config(table)
        ko.pick(table, "sink.commit_mode", ko.COMMIT_MODES, "exactly_once")
        if table.schema is not None:
            columns = [(f.name, f.type) for f in table.schema if f.name != OP]
            ko.value_format(table, columns)
            names = {n.lower(): n for n, _ in columns}
            for key in key_columns(table):
                if key.lower() not in names:
                    raise ConfigError(f"key.fields names {key!r}, not a column of table "
                                      f"{table.name!r}", line=table.line,
                                      hint="its columns: " + ", ".join(names.values()))
        key_format = ko.options(table).get("key.format", "json")
        if key_format not in ("json", "raw_string", "raw"):
            raise ConfigError(f"key.format = {key_format!r} of table {table.name!r}",
                              line=table.line, hint="accepted: json, raw_string")

    @classmethod
    def takes_changelog(cls, table: TableSpec) -> bool:
        return ko.options(table).get("format", "json").strip().lower() in (
            "debezium_json", "debezium-json")

    def open(self, schema: pa.Schema, restored: dict[str, Any] | None = None) -> None:
        super().open(schema, restored)
        self.opts = ko.options(self.table)
        self.topic = ko.require(self.table, "topic", "results")
        self.mode = ko.pick(self.table, "sink.commit_mode", ko.COMMIT_MODES, "exactly_once")
        self.format = ko.value_format(self.table, [(f.name, f.type) for f in schema
                                                   if f.name != OP])
        self.keys = key_columns(self.table)
        self.commit_topic = self.opts.get("sink.commit_topic", DEFAULT_COMMIT_TOPIC)
        prefix = self.opts.get("sink.transactional_id_prefix") or \
            f"caudal-{self.table.name}-{self.topic}"
        # one id per writer (sink vertex) and subtask: stable across runs, so that a new
        # process fences the one it replaces
        self.transactional_id = f"{prefix}-{self.writer}-{self.subtask}"
        #: names this run's commits in the commit topic: markers of other runs (another
        #: checkpoint directory, a run without checkpoints) never count as this state's
        self._token = (restored or {}).get("token") or uuid.uuid4().hex[:16]
        self.rows = 0
        self._failed: list[str] = []
        #: this epoch's encoded messages: (keys, values) pairs of binary arrays
        self._staged: list[tuple[pa.Array, pa.Array]] = []
        self._staged_count = 0
        #: epochs of the transactions committed before the end of a run without checkpoints
        #: (negative: never confused with a checkpoint's)
        self._internal = 0
        #: pre-committed epochs not committed yet -> their messages (STAGED rows)
        self._pending: dict[int, pa.Table] = {}
        self._producer = self._make_producer()
        if restored and self.mode == "exactly_once" and restored.get("pending"):
            rows = restored.get("rows")
            if rows is None:
                raise RuntimeFailure(f"the checkpoint lacks the staged messages of kafka "
                                     f"table {self.table.name!r}; cannot finish its commit")
            done = self._last_committed_epoch(self._token)
            epochs = np.asarray(rows.column("epoch"))
            for e in sorted(set(int(x) for x in restored["pending"])):
                if e > done:
                    self._pending[e] = rows.filter(pa.array(epochs == e))

    # -- producer ---------------------------------------------------------------------------

    def _make_producer(self) -> Any:
        from confluent_kafka import Producer

        config = ko.client_config(self.table)
        config.setdefault("linger.ms", 20)
        config.setdefault("batch.size", 1 << 20)
        config.setdefault("queue.buffering.max.messages", 1_000_000)
        config.setdefault("queue.buffering.max.kbytes", 1 << 20)
        config.setdefault("error_cb", _ignore)
        if self.mode == "exactly_once":
            config["transactional.id"] = self.transactional_id
            config.setdefault("transaction.timeout.ms", 60_000)
        else:
            config.setdefault("enable.idempotence", True)
            config["on_delivery"] = self._delivered
        producer = ko.client(Producer, config, self.table)
        if self.mode == "exactly_once":
            # fences a previous producer with this id and aborts what it left open
            ko.retrying(self.table, "initializing the transactional producer "
                                    f"{self.transactional_id!r}", producer.init_transactions)
        return producer

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None and len(self._failed) < 3:
            self._failed.append(err.str())

    def _last_committed_epoch(self, token: str) -> int:
        """The newest epoch whose transaction this transactional.id committed for the run
        that wrote ``token`` (its marker in the commit topic, read read_committed), or -1."""
        from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

        config = ko.client_config(self.table)
        config.update({"group.id": f"{self.transactional_id}-recovery",
                       "enable.auto.commit": False, "isolation.level": "read_committed",
                       "enable.partition.eof": True, "error_cb": _ignore})
        consumer = ko.client(Consumer, config, self.table)
        try:
            meta = ko.retrying(self.table, f"reading topic {self.commit_topic!r}",
                               lambda t: consumer.list_topics(self.commit_topic, timeout=t))
            found = meta.topics.get(self.commit_topic)
            if found is None or found.error is not None or 0 not in found.partitions:
                return -1
            consumer.assign([TopicPartition(self.commit_topic, 0, OFFSET_BEGINNING)])
            key = self.transactional_id.encode()
            last = -1
            deadline = time.monotonic() + ko.connect_timeout(self.table)
            while time.monotonic() < deadline:
                msgs = consumer.consume(10_000, 1.0)
                for m in msgs:
                    err = m.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            return last
                        continue
                    if m.key() == key:
                        marker = json.loads(m.value())
                        if marker.get("token") == token:
                            last = max(last, int(marker["epoch"]))
            raise RuntimeFailure(f"cannot read the commit topic {self.commit_topic!r} of "
                                 f"kafka table {self.table.name!r} to its end",
                                 hint="check that the brokers are up")
        finally:
            consumer.close()

    # -- writing ----------------------------------------------------------------------------

    def write(self, batch: pa.RecordBatch) -> None:
        keys, values = self.encode(batch)
        self.rows += len(values)
        if self.mode == "exactly_once":
            self._staged.append((keys, values))
            self._staged_count += len(values)
            if not self.checkpointing and self._staged_count >= UNCHECKPOINTED_TRANSACTION:
                # no checkpoint will come before the end: commit what is held, in one
                # transaction (a run without checkpoints has nothing to resume from)
                self._internal -= 1
                self.pre_commit(self._internal)
                self.commit(self._internal)
        else:
            self._produce(keys, values)

    def encode(self, batch: pa.RecordBatch) -> tuple[pa.Array, pa.Array]:
        """The message keys (NULL without key.fields) and values of a batch."""
        ops = batch.column(OP) if OP in batch.schema.names else None
        data = batch.drop_columns([OP]) if ops is not None else batch
        schema = pa.schema([f for f in self.schema if f.name != OP])
        data = conform_batch(data, schema)
        if self.format == "json":
            values = split_lines(json_format.encode(data, self.table.options, self.schema))
            rows = data
        elif self.format == "debezium_json":
            full = data.append_column(OP, ops) if ops is not None else data
            values = split_lines(debezium_json.encode(full, self.table.options, self.schema))
            # one message per change: an update's two rows make one (its second row's key)
            rows = data.take(pa.array(debezium_json.line_rows(full))) \
                if len(values) != data.num_rows else data
        elif self.format == "raw_bytes":
            values, rows = data.column(0).cast(pa.binary()), data
        else:
            values, rows = text.to_text(data.column(0)).cast(pa.binary()), data
        return self._keys(rows), values

    def _keys(self, rows: pa.RecordBatch) -> pa.Array:
        if not self.keys:
            return pa.nulls(rows.num_rows, pa.binary())
        names = {n.lower(): n for n in rows.schema.names}
        columns = [names[k.lower()] for k in self.keys]
        if self.opts.get("key.format", "json") in ("raw_string", "raw"):
            return text.to_text(rows.column(columns[0])).cast(pa.binary())
        return split_lines(json_format.encode(rows.select(columns), self.table.options,
                                              self.schema))

    def _produce(self, keys: pa.Array, values: pa.Array) -> None:
        producer = self._producer
        produce = producer.produce
        topic = self.topic
        if keys.null_count == len(keys):
            for v in values.to_pylist():   # the client takes one call per message
                try:
                    produce(topic, v)
                except BufferError:
                    producer.poll(0.05)
                    produce(topic, v)
        else:
            for k, v in zip(keys.to_pylist(), values.to_pylist()):
                try:
                    produce(topic, v, k)
                except BufferError:
                    producer.poll(0.05)
                    produce(topic, v, k)
        producer.poll(0)

    def _flush(self) -> None:
        left = self._producer.flush(ko.connect_timeout(self.table) * 3)
        if left:
            raise RuntimeFailure(f"kafka table {self.table.name!r}: {left} messages were not "
                                 f"acknowledged by the brokers at {self.opts.get('bootstrap_servers')}",
                                 hint="check that the brokers are up")
        if self._failed:
            raise RuntimeFailure(f"kafka table {self.table.name!r}: writing to topic "
                                 f"{self.topic!r} failed: {self._failed[0]}")

    # -- two-phase commit ---------------------------------------------------------------------

    def pre_commit(self, epoch: int) -> dict[str, Any]:
        if self.mode != "exactly_once":
            self._flush()
            return {}
        if self._staged:
            # the batches' arrays as chunks, not concatenated: no copy of the epoch's bytes
            # (they are immutable, so the snapshot shares nothing that changes)
            keys = pa.chunked_array([k for k, _ in self._staged], pa.binary())
            values = pa.chunked_array([v for _, v in self._staged], pa.binary())
            epochs = pa.chunked_array([pa.array(np.full(len(v), epoch, np.int64))
                                       for _, v in self._staged], pa.int64())
            self._staged, self._staged_count = [], 0
            sealed = pa.table([epochs, keys, values], schema=STAGED)
            if epoch in self._pending:
                sealed = pa.concat_tables([self._pending[epoch], sealed])
            self._pending[epoch] = sealed
        if not self._pending:
            return {"epoch": epoch, "pending": []}
        rows = pa.concat_tables([self._pending[e] for e in sorted(self._pending)])
        return {"epoch": epoch, "pending": sorted(self._pending),
                "transactional_id": self.transactional_id, "token": self._token,
                "rows": rows}

    def commit(self, epoch: int) -> None:
        """One transaction with the messages of every pending epoch up to ``epoch`` and the
        marker of the newest; nothing to do when they are already committed."""
        if self.mode != "exactly_once":
            return
        ready = sorted(e for e in self._pending if e <= epoch)
        if not ready:
            return
        producer = self._producer
        producer.begin_transaction()
        for e in ready:
            rows = self._pending[e]
            # chunk by chunk: the Python bytes the client needs live one batch at a time
            for keys, values in zip(rows.column("key").chunks, rows.column("value").chunks):
                self._produce(keys, values)
        try:
            # the rows are acknowledged before the marker is sent: the marker is the last
            # record of the transaction, right before its commit
            self._flush()
            marker = {"epoch": ready[-1], "token": self._token}
            producer.produce(self.commit_topic, json.dumps(marker).encode(),
                             self.transactional_id.encode(), partition=0)
            producer.commit_transaction(ko.connect_timeout(self.table) * 3)
        except RuntimeFailure:
            raise
        except Exception as e:  # noqa: BLE001 - one line naming the table
            err = e.args[0] if e.args else e
            raise RuntimeFailure(f"kafka table {self.table.name!r}: committing the "
                                 f"transaction of checkpoint {ready[-1]} failed: "
                                 f"{getattr(err, 'str', lambda: str(err))()}",
                                 hint="the job restarts from its last checkpoint") from None
        for e in ready:
            del self._pending[e]

    def abort(self, epoch: int) -> None:
        """Nothing of an uncommitted epoch reached Kafka outside a transaction that
        ``init_transactions`` aborted; forget its messages."""
        self._pending.pop(epoch, None)

    def close(self) -> None:
        if self.mode != "exactly_once" and self._producer is not None:
            self._flush()
        self._producer = None


def _ignore(*_: Any) -> None:
    """Broker errors are retried by librdkafka; caudal's calls fail with one line."""


SINK = KafkaSink
