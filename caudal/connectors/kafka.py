"""The ``kafka`` connector on confluent-kafka (librdkafka): a topic as a source or a sink.

Source: a topic's partitions are caudal partitions (``<topic>:<n>``), dealt to subtasks by the
runtime; a subtask assigns its partitions to one consumer (no group rebalancing) and keeps the
next offset of each in checkpoint state, so a job resumes exactly where its checkpoint was, at
any parallelism. Offsets are also committed to the consumer group once a checkpoint completes,
only so that tools can show the lag. A polled batch of messages is decoded in one call (JSON
values joined into JSON lines for Arrow's parser): the only per-message Python is what the
client forces (one object per message, whose value, partition and offset are read) -- or
none at all where the native drain (``kafka_native``: librdkafka's queue read in C) can be
had, the default. The watermark is the minimum over the subtask's partitions; a partition
without data for ``idle_timeout`` stops holding it back. Partitions added to the topic are
picked up by the subtask that would own them (``partition % parallelism``), from their start.

Sink: see ``kafka_sink`` (exactly once through transactions, or at least once).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from caudal import compute as pc
from caudal import formats
from caudal.connectors import kafka_native
from caudal.connectors import kafka_options as ko
from caudal.connectors.base import IDLE_TIMEOUT, Source
from caudal.connectors.kafka_sink import KafkaSink
from caudal.connectors.messages import decode_json_values, decode_raw_strings, paused_gc
from caudal.connectors.registry import table_is_changelog
from caudal.durations import parse_duration_s
from caudal.errors import ConfigError, DataError
from caudal.formats import bad_data
from caudal.formats.debezium_json import changes, envelope
from caudal.plan.changelog import OP, OP_TYPE
from caudal.plan.tables import TableSpec
from caudal.types import TIMESTAMP, sql_name
from caudal.watermark import WATERMARK_MIN

#: seconds between looks for partitions added to the topic (``partition_discovery``)
DISCOVERY_S = 10.0
HEADERS_TYPE = pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))


def partition_name(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


def partition_number(name: str) -> int:
    return int(name.rsplit(":", 1)[1])


def topic_partitions(table: TableSpec, client: Any, topic: str) -> list[int]:
    """The topic's partition numbers; ConfigError naming the topic when it does not exist."""
    from confluent_kafka import KafkaError

    meta = ko.retrying(table, f"reading the metadata of topic {topic!r}",
                       lambda t: client.list_topics(topic, timeout=t))
    found = meta.topics.get(topic)
    if found is None or (found.error is not None and
                         found.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART) or \
            not found.partitions:
        raise ConfigError(f"topic {topic!r} of table {table.name!r} does not exist",
                          line=table.line, hint="create it, or check the topic option")
    return sorted(found.partitions)


class _MessagePolicy(bad_data.BadDataPolicy):
    """bad_data for messages: names topic, partition and offset (``position(row)``, read
    only when one is rejected); remembers dropped rows."""

    def __init__(self, mode: str, metrics: Any, topic: str,
                 position: Callable[[int], tuple[int, int]]):
        super().__init__(mode, metrics, f"topic {topic!r}")
        self.position = position
        self.dropped: list[int] = []

    def reject(self, line: int, reason: str) -> None:
        partition, offset = self.position(line)
        text = f"{self.where} partition {partition} offset {offset}: {reason}"
        if self.mode != "drop":
            raise DataError(f"malformed message in {text}",
                            hint="fix the producer, or set bad_data = 'drop' to skip such "
                                 "messages")
        self.dropped.append(line)
        self.metrics.bad_rows_dropped += 1
        if len(self.metrics.bad_row_examples) < bad_data.MAX_EXAMPLES:
            self.metrics.bad_row_examples.append(text)


def _held(policy: _MessagePolicy, changelog: bool) -> bad_data.BadDataPolicy:
    """The policy the JSON decoder gets: a changelog's rejections are held until its ops
    are checked too (debezium_json.changes), so that ``fail`` names the first bad message."""
    return bad_data.Held(policy) if changelog else policy


class KafkaSource(Source):
    """Reads the partitions of one topic assigned to one subtask."""

    bounded = False
    OPTIONS = ko.SOURCE_OPTIONS
    OPTION_PREFIXES = (ko.PROPERTIES,)
    FORMAT_ALIASES = ko.FORMAT_ALIASES
    METADATA_KEYS = {
        "partition": "the message's partition (INT)",
        "offset": "the message's offset in its partition (BIGINT)",
        "timestamp": "the message's timestamp (TIMESTAMP)",
        "key": "the message key (BYTEA or TEXT)",
        "headers": "the message headers (TEXT: a JSON object; or ARRAY<ROW<key TEXT, value "
                   "BYTEA>>)",
    }

    @classmethod
    def validate(cls, table: TableSpec) -> None:
        ko.require(table, "topic", "events")
        ko.client_config(table)
        opts = ko.options(table)
        mode = ko.pick(table, "source.offset", ko.OFFSET_MODES, "latest")
        if mode == "timestamp":
            _timestamp_ms(table)
        ko.pick(table, "source.read_mode", ko.READ_MODES, "read_committed")
        bounded = opts.get("scan.bounded.mode")
        if bounded is not None and bounded.strip().lower() not in ("latest-offset",
                                                                      "unbounded"):
            raise ConfigError(f"option scan.bounded.mode = {bounded!r} of table "
                              f"{table.name!r}", line=table.line,
                              hint="accepted: latest-offset, unbounded")
        if table.schema is not None:
            fmt = ko.value_format(table, [(f.name, f.type) for f in _data_fields(table)])
            if fmt == "debezium_json" and table.metadata:
                raise ConfigError(f"table {table.name!r}: METADATA columns cannot be read "
                                  f"with format debezium_json", line=table.line,
                                  hint="drop the METADATA columns or use format json")
            for column, key in table.metadata.items():
                _check_metadata_type(table, column, key)
        parse_duration_s(opts.get("partition_discovery", f"{DISCOVERY_S}s"),
                         "partition_discovery")

    @classmethod
    def infer_schema(cls, table: TableSpec) -> pa.Schema | None:
        raise ConfigError(f"kafka table {table.name!r} declares no columns", line=table.line,
                          hint="declare them: CREATE TABLE t (id BIGINT, …) WITH (…)")

    def __init__(self, table: TableSpec):
        super().__init__(table)
        self.opts = ko.options(table)
        self.topic = ko.require(table, "topic", "events")
        self.data_schema = table.data_schema()
        self.format = ko.value_format(table, [(f.name, f.type) for f in _data_fields(table)])
        self.changelog = table_is_changelog(
            TableSpec(table.name, table.connector, {"format": self.format}))
        if self.changelog:
            self.schema = self.schema.append(pa.field(OP, OP_TYPE))
        self.bounded = str(self.opts.get("scan.bounded.mode", "")).lower() == "latest-offset"
        self.idle_s = parse_duration_s(self.opts.get("idle_timeout", IDLE_TIMEOUT), "idle_timeout")
        self.discovery_s = parse_duration_s(self.opts.get("partition_discovery",
                                                          f"{DISCOVERY_S}s"),
                                            "partition_discovery")
        self.group_id = self.opts.get("source.group_id") or f"caudal-{table.name}"
        self._consumer: Any = None
        self._decoder: Any = None
        #: the metadata keys of the declared metadata columns
        self._metadata_keys = {key for column, key in table.metadata.items()
                               if column in self.schema.names}
        #: partition or offset metadata columns: each message's position is read
        self._position_columns = bool(self._metadata_keys & {"partition", "offset"})
        #: caudal's own librdkafka consumer that reads the messages (kafka_native), when it
        #: can be had and no headers are read (those come through confluent-kafka's Consumer,
        #: which then reads the messages too)
        self._native: kafka_native.NativeConsumer | None = None
        #: the C decoder of JSON batches read by the native drain, when the columns allow it
        self._typed: kafka_native.TypedJson | None = None
        if self.format in ("json", "debezium_json"):
            schema = envelope(self.data_schema, table.options) if self.changelog \
                else self.data_schema
            self._decoder = formats.get("json").Decoder(schema, table.options)
        self._next: dict[int, int] = {}
        self._stop: dict[int, int] = {}
        self._done: set[int] = set()
        self._marks: dict[int, int] = {}
        self._seen: dict[int, float] = {}
        self._next_discovery = 0.0
        #: every assigned partition, for reading the consumer's positions in one call
        self._tps: list = []
        self._assigned = np.zeros(0, np.int32)

    # -- partitions and positions -------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        config = ko.client_config(self.table)
        config.update({
            "group.id": self.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": ko.pick(self.table, "source.read_mode", ko.READ_MODES,
                                       "read_committed"),
            "enable.partition.eof": self.bounded,
            "auto.offset.reset": "earliest",
        })
        config.setdefault("fetch.max.bytes", 64 << 20)
        config.setdefault("queued.max.messages.kbytes", 256 << 10)
        return config

    def _client(self) -> Any:
        """confluent-kafka's Consumer: metadata and offset look-ups, and the messages when
        the native drain is not used."""
        if self._consumer is None:
            from confluent_kafka import Consumer

            self._consumer = ko.client(Consumer, {**self._config(), "error_cb": _ignore},
                                        self.table)
        return self._consumer

    def _open_native(self) -> None:
        """Read through caudal's own librdkafka consumer when the drain can be had."""
        lib = kafka_native.load() if "headers" not in self._metadata_keys else None
        if lib is not None:
            self._native = kafka_native.NativeConsumer(lib, self._config(), self.topic)
            if self.format == "json":
                self._typed = kafka_native.TypedJson.of(lib, self._decoder)

    def partitions(self, parallelism: int) -> list[str]:
        self.parallelism = parallelism
        parts = topic_partitions(self.table, self._client(), self.topic)
        return [partition_name(self.topic, p) for p in parts]

    def open(self, assigned: list[str], offsets: dict[str, Any] | None = None) -> None:
        offsets = offsets or {}
        numbers = [partition_number(a) for a in assigned]
        starts = {p: offsets.get(partition_name(self.topic, p)) for p in numbers}
        fresh = [p for p, o in starts.items() if o is None]
        starts.update(self._start_offsets(fresh))
        if self.bounded:
            for p in numbers:
                self._stop[p] = self._watermarks(p)[1]
            #: stop offset by partition number, for one vectorized comparison per batch
            self._stops = np.zeros(max(numbers, default=0) + 1, np.int64)
            for p, stop in self._stop.items():
                self._stops[p] = stop
        self._open_native()
        self._assign({p: int(starts[p]) for p in numbers})
        self._next_discovery = time.monotonic() + self.discovery_s

    def _assign(self, starts: dict[int, int]) -> None:
        from confluent_kafka import TopicPartition

        now = time.monotonic()
        for p, start in starts.items():
            self._next[p] = start
            self._seen[p] = now
            self._marks.setdefault(p, WATERMARK_MIN)
            if self.bounded and start >= self._stop[p]:
                self._done.add(p)
        todo = [TopicPartition(self.topic, p, starts[p]) for p in starts if p not in self._done]
        if todo and self._native is not None:
            self._native.assign({tp.partition: tp.offset for tp in todo})
        elif todo:
            self._client().incremental_assign(todo)
        self._tps += [TopicPartition(self.topic, tp.partition) for tp in todo]
        self._assigned = np.array([tp.partition for tp in self._tps], np.int32)

    def _watermarks(self, p: int) -> tuple[int, int]:
        from confluent_kafka import TopicPartition

        tp = TopicPartition(self.topic, p)
        return ko.retrying(self.table, f"reading the offsets of {self.topic}:{p}",
                           lambda t: self._client().get_watermark_offsets(tp, timeout=t,
                                                                          cached=False))

    def _start_offsets(self, parts: list[int]) -> dict[int, int]:
        """Numeric start offsets of partitions without a checkpointed position."""
        from confluent_kafka import TopicPartition

        if not parts:
            return {}
        mode = ko.pick(self.table, "source.offset", ko.OFFSET_MODES, "latest")
        marks = {p: self._watermarks(p) for p in parts}
        if mode == "earliest":
            return {p: marks[p][0] for p in parts}
        if mode == "latest":
            return {p: marks[p][1] for p in parts}
        consumer = self._client()
        if mode == "group":
            tps = [TopicPartition(self.topic, p) for p in parts]
            found = ko.retrying(self.table, f"reading the offsets of group {self.group_id!r}",
                                lambda t: consumer.committed(tps, timeout=t))
            return {tp.partition: tp.offset if tp.offset >= 0 else marks[tp.partition][0]
                    for tp in found}
        ms = _timestamp_ms(self.table)
        tps = [TopicPartition(self.topic, p, ms) for p in parts]
        found = ko.retrying(self.table, "looking up offsets by time",
                            lambda t: consumer.offsets_for_times(tps, timeout=t))
        return {tp.partition: self._offset_at(tp, ms, marks[tp.partition]) for tp in found}

    def _offset_at(self, tp: Any, ms: int, marks: tuple[int, int]) -> int:
        """Where partition ``tp.partition`` starts for ``scan.startup.timestamp-millis``:
        the offset of its first message at or after ``ms``, as the brokers answered; their
        "none" (-1) is the partition's end, as in Flink, unless its last message is at or
        after ``ms`` -- then the brokers cannot look up offsets by time (librdkafka's mock
        cluster answers -1 to every lookup) and the job refuses rather than skip data."""
        from caudal.errors import RuntimeFailure

        where = f"topic {self.topic!r} partition {tp.partition} of table {self.table.name!r}"
        hint = ("start from 'earliest-offset' and filter on a timestamp METADATA column, or "
                "use brokers that answer ListOffsets by time")
        if tp.error is not None:
            raise RuntimeFailure(f"the brokers could not look up the offset at "
                                 f"{_iso(ms)} in {where}: {tp.error.str()}", hint=hint)
        if tp.offset >= 0:
            return tp.offset
        low, high = marks
        last = self._last_timestamp(tp.partition, high) if high > low else None
        if last is not None and last >= ms:
            raise RuntimeFailure(f"the brokers answered that {where} holds no message at or "
                                 f"after {_iso(ms)} (scan.startup.timestamp-millis), but its "
                                 f"last message is from {_iso(last)}: they cannot look up "
                                 f"offsets by time", hint=hint)
        return high

    def _last_timestamp(self, p: int, high: int) -> int | None:
        """The timestamp (ms) of the message at ``high - 1``, read by a throwaway consumer;
        None when there is none (a transaction marker) or it carries no timestamp."""
        from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, TopicPartition

        config = ko.client_config(self.table)
        config.update({"group.id": f"{self.group_id}-timestamp", "enable.auto.commit": False,
                       "isolation.level": ko.pick(self.table, "source.read_mode",
                                                  ko.READ_MODES, "read_committed"),
                       "error_cb": _ignore})
        consumer = ko.client(Consumer, config, self.table)
        try:
            consumer.assign([TopicPartition(self.topic, p, high - 1)])
            deadline = time.monotonic() + min(ko.connect_timeout(self.table), 5.0)
            while time.monotonic() < deadline:
                m = consumer.poll(0.2)
                if m is None or m.error() is not None:
                    continue
                kind, ms = m.timestamp()
                return None if kind == TIMESTAMP_NOT_AVAILABLE else ms
            return None
        finally:
            consumer.close()

    def _discover(self) -> None:
        """Assign partitions added to the topic that this subtask owns, from their start."""
        self._next_discovery = time.monotonic() + self.discovery_s
        if self._native is not None:   # the metadata consumer reads no messages: its queue
            self._client().poll(0)     # holds only the broker errors it reports; empty it
        try:
            meta = self._client().list_topics(self.topic, timeout=1.0)
        except Exception:  # noqa: BLE001 - a missed look is retried at the next interval
            return
        found = meta.topics.get(self.topic)
        if found is None or found.error is not None:
            return
        new = [p for p in found.partitions
               if p not in self._next and p % self.parallelism == self.subtask]
        if new:
            self._assign(self._start_offsets_earliest(new))

    def _start_offsets_earliest(self, parts: list[int]) -> dict[int, int]:
        return {p: self._watermarks(p)[0] for p in parts}

    # -- reading ------------------------------------------------------------------------------

    def poll(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        if not self.bounded and time.monotonic() >= self._next_discovery:
            self._discover()
        if self.finished():
            return None
        if self._native is not None:
            batch, row_parts = self._read_native(max_rows, timeout)
        else:
            with paused_gc():  # the client's message objects are alive only in here
                batch, row_parts = self._read(max_rows, timeout)
        if batch is None or batch.num_rows == 0:
            return None
        self.metrics.rows_read += batch.num_rows
        if row_parts is not None:
            self._observe(batch, row_parts)
        return batch

    def _read(self, max_rows: int, timeout: float
              ) -> tuple[pa.RecordBatch | None, np.ndarray | None]:
        """Consume up to ``max_rows`` messages and decode them. The per-message Python is
        what the client forces (one object per message) plus one C-level pass each for the
        errors and the values; positions come from the consumer per partition, and each
        message's partition and offset are read only where they are needed (bounded reads
        that ran past their end, event-time watermarks, metadata columns, a bad message)."""
        from confluent_kafka import Message

        msgs = self._consumer.consume(max_rows, timeout)
        if not msgs:
            return None, None
        if any(map(Message.error, msgs)):  # (an error is truthy; never compare it to None)
            msgs = self._handle_errors(msgs)
            if not msgs:
                return None, None
        parts = offs = None
        overshot = self._advance()
        if overshot:
            parts, offs = _positions(msgs)
            keep = offs < self._stops[parts]
            msgs = [m for m, k in zip(msgs, keep) if k]
            parts, offs = parts[keep], offs[keep]
            if not msgs:
                return None, None
        self._check_done()
        return self._decode(msgs, parts, offs)

    def _advance(self) -> bool:
        """Move each partition's next offset to the consumer's position (one call for all
        partitions: the position follows the last message handed to caudal); True when a
        bounded partition was read past its stop offset (then the batch is cut there)."""
        now = time.monotonic()
        overshot = False
        if self._native is not None:
            found = zip(self._assigned.tolist(), self._native.positions(self._assigned).tolist())
        else:
            found = ((tp.partition, tp.offset) for tp in self._consumer.position(self._tps))
        for p, pos in found:
            if pos >= 0 and pos > self._next[p]:
                if self.bounded and pos > self._stop[p]:
                    overshot = True
                    pos = self._stop[p]
                self._next[p] = pos
                self._seen[p] = now
        return overshot

    def _handle_errors(self, msgs: list) -> list:

        good = []
        for m in msgs:
            err = m.error()
            if err is None:
                good.append(m)
            else:
                self._error(err.code(), err.fatal(), m.partition(), m.offset(), err.str)
        return good

    def _error(self, code: int, fatal: bool, partition: int, offset: int,
               text: Callable[[], str]) -> None:
        """A message that signals an error: a partition's end (which ends it when bounded);
        fails the job when the topic is gone or not readable; else librdkafka retries."""
        from confluent_kafka import KafkaError

        if code == KafkaError._PARTITION_EOF:
            if self.bounded and offset >= self._stop.get(partition, 0):
                self._next[partition] = max(self._next.get(partition, 0),
                                            self._stop[partition])
                self._done.add(partition)
        elif fatal or code in (KafkaError.UNKNOWN_TOPIC_OR_PART,
                               KafkaError.TOPIC_AUTHORIZATION_FAILED):
            from caudal.errors import RuntimeFailure

            raise RuntimeFailure(f"reading topic {self.topic!r} of table "
                                 f"{self.table.name!r} failed: {text()}")

    def _check_done(self) -> None:
        if self.bounded:
            for p, nxt in self._next.items():
                if nxt >= self._stop.get(p, 0):
                    self._done.add(p)

    def _decode(self, msgs: list, parts: np.ndarray | None, offs: np.ndarray | None
                ) -> tuple[pa.RecordBatch | None, np.ndarray | None]:
        """The rows of the messages, and each row's partition when event-time watermarks
        need it (None for a changelog, whose updates are two rows: its watermark comes from
        the batches, as for files). ``parts``/``offs`` are the messages' partitions and
        offsets when already read, else None (read here only if needed)."""
        from confluent_kafka import Message

        values = list(map(Message.value, msgs))
        if None in values:  # tombstones carry no row
            keep = np.array([v is not None for v in values])
            msgs = [m for m, k in zip(msgs, keep) if k]
            values = [v for v in values if v is not None]
            if parts is not None:
                parts, offs = parts[keep], offs[keep]
            if not values:
                return None, None
        read = msgs
        policy = _MessagePolicy(self.table.bad_data, self.metrics, self.topic,
                                lambda i: (read[i].partition(), read[i].offset()))
        held = _held(policy, self.changelog)
        if not self.data_schema.names and not self.changelog:
            data = _no_columns(len(values))
        elif self.format in ("json", "debezium_json"):
            data = self._json(values, held)
        elif self.format == "raw_bytes":
            data = pa.table({self.data_schema.names[0]: pa.array(values, pa.binary())})
        else:
            data = self._raw_string(values, policy)
        if policy.dropped:
            mask = _kept(len(msgs), policy.dropped)
            msgs = [m for m, k in zip(msgs, mask) if k]
            if parts is not None:
                parts, offs = parts[mask], offs[mask]
        if parts is None and not self.changelog and (self.table.event_time or
                                                     self._position_columns):
            parts, offs = _positions(msgs)
        return self._rows(data, policy, len(msgs), parts,
                          lambda key, target: _metadata(key, msgs, parts, offs, target), held)

    def _rows(self, data: pa.Table, policy: _MessagePolicy, count: int,
              parts: np.ndarray | None, metadata: Callable[[str, pa.DataType], pa.Array],
              held: bad_data.BadDataPolicy) -> tuple[pa.RecordBatch | None, np.ndarray | None]:
        """The batch of ``count`` messages whose decoded values are ``data`` (bad ones
        dropped), with their metadata columns; and each row's partition (see _decode).
        A changelog's malformed messages (``held`` by the decoder, or with a bad op) are
        named by partition and offset, first message first."""
        if self.changelog:
            assert isinstance(held, bad_data.Held)
            data = changes(data, self.data_schema, policy, held.survivors(count), held.rejected)
            return _as_batch(data, self.schema), None
        columns = {name: data.column(name) for name in data.column_names}
        for column, key in self.table.metadata.items():
            if column in self.schema.names:
                columns[column] = metadata(key, self.schema.field(column).type)
        row_parts = parts if self.table.event_time else None
        if not self.schema.names:   # count(*): rows without columns
            return formats.empty_rows(count), row_parts
        table = pa.table([columns[f.name] for f in self.schema], schema=self.schema)
        return _as_batch(table, self.schema), row_parts

    # -- reading through the native drain (kafka_native) --------------------------------------

    def _read_native(self, max_rows: int, timeout: float
                     ) -> tuple[pa.RecordBatch | None, np.ndarray | None]:
        """``_read`` without a Python object per message: the batch is described into
        arrays, the rows to keep chosen with NumPy (as ``_read`` chooses messages: errors
        handled, a bounded read cut at its stop offsets, tombstones left out) and only
        their values (and keys and timestamps, when metadata columns want them) copied out
        of librdkafka, into one buffer."""
        drained = self._native.consume(max_rows, timeout)
        if drained is None:
            return None, None
        with drained:
            keep = drained.err == 0
            if not keep.all():
                for i in np.flatnonzero(~keep).tolist():
                    code = int(drained.err[i])
                    self._error(code, False, int(drained.parts[i]), int(drained.offsets[i]),
                                lambda code=code: self._native.error_text(code))
                if not keep.any():
                    return None, None
            if self._advance():
                keep &= drained.offsets < self._stops[drained.parts]
                if not keep.any():
                    return None, None
            self._check_done()
            keep &= drained.value_lens >= 0   # tombstones carry no row
            if not keep.any():
                return None, None
            json_lines = self.format in ("json", "debezium_json")
            # the common case: JSON values of the common column types decoded in C straight
            # out of librdkafka's messages, not copied first (keys and timestamps are copied
            # out by take, which then copies the values too)
            direct = self._typed is not None and drained.newlines == 0 and \
                not self._metadata_keys & {"key", "timestamp"}
            typed = self._typed.decode_messages(drained, keep) if direct else None
            values = ends = keys = stamps = None
            if typed is None:
                values, ends, keys, stamps = drained.take(
                    keep, ord("\n") if json_lines else None, "key" in self._metadata_keys,
                    "timestamp" in self._metadata_keys,
                    self._native.json_buffer if json_lines else None)
                if json_lines:
                    self._native.json_buffer = values
            key_valid = drained.key_lens[keep] >= 0
            parts, offs = drained.parts[keep], drained.offsets[keep]
            newlines = drained.newlines
        policy = _MessagePolicy(self.table.bad_data, self.metrics, self.topic,
                                lambda i: (int(parts[i]), int(offs[i])))
        held = _held(policy, self.changelog)
        count = len(parts)
        if not self.data_schema.names and not self.changelog:
            data = _no_columns(count)
        elif typed is not None:
            data = typed
        elif json_lines:
            data = None
            if newlines == 0 and self._typed is not None and not direct:   # in C, copied
                data = self._typed.decode(values, ends)
            if newlines == 0 and data is None:   # else pretty-printed JSON: one by one
                try:
                    data = self._decoder.decode(values, count, _objects(values, ends))
                except pa.ArrowInvalid:   # bad messages: found one by one
                    pass
            if data is not None and data.num_rows != count:   # an empty value among them
                data = None
            if data is None:
                data = self._json(_split(values, ends, 1), held)
        else:
            raw = _binary(values, ends, None)
            name = self.data_schema.names[0]
            try:
                data = pa.table({name: raw.cast(self.data_schema.field(0).type)})
            except pa.ArrowInvalid:   # text that is not UTF-8: found one by one
                data = self._raw_string(_split(values, ends, 0), policy)
        key_array = _binary(keys[0], keys[1], key_valid) if keys is not None else None
        if policy.dropped:
            mask = _kept(count, policy.dropped)
            parts, offs = parts[mask], offs[mask]
            if stamps is not None:
                stamps = stamps[mask]
            if key_array is not None:
                key_array = key_array.filter(pa.array(mask))
            count = len(parts)
        return self._rows(data, policy, count, parts, lambda key, target: _native_metadata(
            key, parts, offs, stamps, key_array, target), held)

    def _json(self, values: list[bytes], policy: bad_data.BadDataPolicy) -> pa.Table:
        return decode_json_values(self._decoder, values, policy)

    def _raw_string(self, values: list[bytes], policy: _MessagePolicy) -> pa.Table:
        return decode_raw_strings(self.data_schema.names[0], values, policy)

    # -- watermarks ---------------------------------------------------------------------------

    def _observe(self, batch: pa.RecordBatch, parts: np.ndarray | None) -> None:
        times = batch.column(self.table.event_time)
        if parts is None or not len(times):
            return
        us = pc.cast(times, pa.timestamp("us", tz=times.type.tz)).cast(pa.int64())
        values = us.to_numpy(zero_copy_only=False)
        valid = np.asarray(us.is_valid())
        delay = self.table.watermark_delay_us
        for p in np.unique(parts):
            chosen = (parts == p) & valid
            if chosen.any():
                mark = int(values[chosen].max()) - delay
                if mark > self._marks.get(int(p), WATERMARK_MIN):
                    self._marks[int(p)] = mark

    def watermark(self) -> int | None:
        """None for a changelog (see ``_decode``); else the minimum over this subtask's partitions of ``max event time - delay``; a
        partition idle for ``idle_timeout`` or finished is left out (when all are, the highest
        mark holds)."""
        if self.changelog or not self._marks:
            return None
        now = time.monotonic()
        active = [m for p, m in self._marks.items()
                  if p not in self._done and now - self._seen.get(p, now) < self.idle_s]
        if active:
            return min(active)
        return max(self._marks.values())

    # -- end, checkpoints ---------------------------------------------------------------------

    def finished(self) -> bool:
        return self.bounded and all(p in self._done for p in self._next)

    def offsets(self) -> dict[str, Any]:
        return {partition_name(self.topic, p): n for p, n in self._next.items()}

    def checkpoint_completed(self, offsets: dict[str, Any]) -> None:
        """Commit the checkpoint's positions to the consumer group, for lag monitoring only
        (a job resumes from its checkpoint, never from these)."""
        from confluent_kafka import TopicPartition

        mine = {partition_number(name): int(n) for name, n in offsets.items()
                if partition_number(name) in self._next}
        if mine and self._native is not None:
            self._native.commit(mine)
        elif mine and self._consumer is not None:
            try:
                self._consumer.commit(offsets=[TopicPartition(self.topic, p, n)
                                               for p, n in mine.items()], asynchronous=True)
            except Exception:  # noqa: BLE001 - lag reporting must not stop the job
                pass

    def close(self) -> None:
        if self._native is not None:
            self._native.close()
            self._native = None
        if self._consumer is not None:
            try:
                self._consumer.close()
            except RuntimeError:
                pass
            self._consumer = None


def _ignore(*_: Any) -> None:
    """librdkafka reports broker errors asynchronously and retries by itself; caudal's own
    calls time out with one line instead of printing each attempt."""


def _as_batch(table: pa.Table, schema: pa.Schema) -> pa.RecordBatch:
    table = table.combine_chunks()
    if table.num_columns == 0:
        return formats.empty_rows(table.num_rows)
    batches = table.to_batches()
    if len(batches) == 1:
        return batches[0]
    return pa.RecordBatch.from_arrays([pa.array([], f.type) for f in schema], schema=schema) \
        if not batches else pa.concat_batches(batches)


def _positions(msgs: list) -> tuple[np.ndarray, np.ndarray]:
    """Each message's partition and offset (one C-level pass each)."""
    from confluent_kafka import Message

    return (np.fromiter(map(Message.partition, msgs), np.int32, len(msgs)),
            np.fromiter(map(Message.offset, msgs), np.int64, len(msgs)))


def _data_fields(table: TableSpec) -> list[pa.Field]:
    return [f for f in table.schema if f.name not in table.metadata]


def _timestamp_ms(table: TableSpec) -> int:
    raw = ko.options(table).get("scan.startup.timestamp-millis")
    try:
        return int(str(raw))
    except ValueError:
        raise ConfigError(f"table {table.name!r}: scan.startup.mode = 'timestamp' needs "
                          f"scan.startup.timestamp-millis (got {raw!r})", line=table.line,
                          hint="milliseconds since 1970-01-01, e.g. '1767225600000'") from None


def _iso(ms: int) -> str:
    """Epoch milliseconds as ISO text (UTC), for messages."""
    import datetime

    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime(
        "%Y-%m-%d %H:%M:%S.%f")[:-3]


def _check_metadata_type(table: TableSpec, column: str, key: str) -> None:
    t = table.schema.field(column).type
    ok = {
        "partition": pa.types.is_integer(t),
        "offset": pa.types.is_integer(t),
        "timestamp": pa.types.is_timestamp(t),
        "key": pa.types.is_binary(t) or pa.types.is_string(t),
        "headers": pa.types.is_string(t) or t.equals(HEADERS_TYPE),
    }.get(key, True)
    if not ok:
        raise ConfigError(f"metadata column {column!r} of table {table.name!r} is "
                          f"{sql_name(t)}, which cannot hold Kafka's {key}", line=table.line,
                          hint=KafkaSource.METADATA_KEYS[key])


def _metadata(key: str, msgs: list, parts: np.ndarray, offs: np.ndarray,
              target: pa.DataType) -> pa.Array:
    if key == "partition":
        return pa.array(parts).cast(target)
    if key == "offset":
        return pa.array(offs).cast(target)
    if key == "timestamp":
        ms = np.fromiter((m.timestamp()[1] for m in msgs), np.int64, len(msgs))
        return _timestamps(ms, target)
    if key == "key":
        keys = pa.array([m.key() for m in msgs], pa.binary())
        return keys.cast(target)
    headers = [[(k, v) for k, v in (m.headers() or ())] for m in msgs]
    rows = pa.array([[{"key": k, "value": v} for k, v in h] for h in headers], HEADERS_TYPE)
    if pa.types.is_string(target):
        import json

        return pa.array([json.dumps({k: (v.decode("utf-8", "replace") if v is not None
                                         else None) for k, v in h}) for h in headers],
                        pa.string())
    return rows


def _native_metadata(key: str, parts: np.ndarray, offs: np.ndarray, stamps: np.ndarray | None,
                     keys: pa.Array | None, target: pa.DataType) -> pa.Array:
    """Metadata column ``key`` read by the native drain (never headers: see _open_native)."""
    if key == "partition":
        return pa.array(parts).cast(target)
    if key == "offset":
        return pa.array(offs).cast(target)
    if key == "timestamp":
        return _timestamps(stamps, target)
    return keys.cast(target)


def _timestamps(ms: np.ndarray, target: pa.DataType) -> pa.Array:
    """Message timestamps (ms since the epoch, -1 when there is none) as ``target``."""
    return pa.array(ms * 1000, pa.int64()).cast(TIMESTAMP).cast(target)


def _no_columns(count: int) -> pa.Table:
    """``count`` rows without columns (a query of metadata columns only)."""
    return pa.table({"_": pa.nulls(count)}).drop_columns(["_"])


def _kept(count: int, dropped: list[int]) -> np.ndarray:
    mask = np.ones(count, bool)
    mask[dropped] = False
    return mask


def _binary(data: bytes | bytearray, ends: np.ndarray, valid: np.ndarray | None) -> pa.Array:
    """Binary values laid end to end in ``data`` (value i ends at ``ends[i]``), one Arrow
    array without copying; ``valid``: False where a value is NULL."""
    offsets = np.zeros(len(ends) + 1, np.int64)
    offsets[1:] = ends
    bitmap = None
    if valid is not None and not valid.all():
        bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(pa.large_binary(), len(ends),
                                 [bitmap, pa.py_buffer(offsets), pa.py_buffer(data)])


def _objects(data: bytearray, ends: np.ndarray) -> bool:
    """True when each value laid end to end in ``data`` starts with ``{`` (one vectorized
    look at each first byte; a value starting with white space answers False, and the
    decoder then searches the block)."""
    starts = np.zeros(len(ends), np.int64)
    starts[1:] = ends[:-1]
    first = np.frombuffer(data, np.uint8)[np.minimum(starts, len(data) - 1)]
    return bool((first == ord("{")).all())


def _split(data: bytes | bytearray, ends: np.ndarray, trim: int) -> list[bytes]:
    """The values laid end to end in ``data``, each without its last ``trim`` bytes (a
    separator): Python objects, for the rare batches that must be decoded value by value."""
    view = memoryview(data)
    starts = [0, *ends[:-1].tolist()]
    return [bytes(view[a:b - trim]) for a, b in zip(starts, ends.tolist())]


SOURCE = KafkaSource
SINK = KafkaSink
