"""The ``upsert-kafka`` connector (Flink's name): an updating query as a compacted topic.

Each change becomes a message keyed by the table's PRIMARY KEY (a JSON object of the key
columns): an insert or an update's new row is the row as JSON, a delete is a tombstone (a
message with a null value), and an update's old row is not written (the new one replaces it
under the same key) unless the new row has another key: then the old key gets a tombstone.
Messages of one key go to one partition, in order. Commit modes are the kafka sink's
(exactly_once by default).

Read, such a topic is a changelog (Flink's upsert-kafka source): a message with a value is
the new row of its key (an insert or an update), a tombstone the delete of the key its
message key names. The plan keeps the last row of each key (operators.changelog_normalize),
which turns these into inserts, update pairs and deletes of the rows held.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from caudal import compute as pc
from caudal.connectors import kafka_options as ko
from caudal.connectors.kafka import KafkaSource, _MessagePolicy
from caudal.connectors.kafka_sink import KafkaSink, split_lines
from caudal.connectors.messages import decode_json_values
from caudal.errors import ConfigError
from caudal.formats import bad_data
from caudal.formats import json as json_format
from caudal.plan.changelog import (
    DELETE,
    OP,
    OP_TYPE,
    UPDATE_AFTER,
    UPDATE_BEFORE,
    ops_of,
    rows_equal,
)
from caudal.plan.tables import TableSpec
from caudal.types import conform_batch


class UpsertKafkaSink(KafkaSink):
    """Keys by the primary key; tombstones for deletes."""

    accepts_updates = True
    #: each key's changes reach one subtask, in order (the planner shuffles by the key)
    writes_by_key = True
    OPTIONS = {k: v for k, v in ko.SINK_OPTIONS.items() if k not in ("key.fields",)}
    OPTIONS["key.format"] = "json (the only one: a JSON object of the primary key columns)"

    @classmethod
    def validate(cls, table: TableSpec) -> None:
        _check_key(table)
        super().validate(table)

    @classmethod
    def takes_changelog(cls, table: TableSpec) -> bool:
        return True

    def open(self, schema, restored=None) -> None:
        super().open(schema, restored)
        self.keys = list(self.table.upsert_key or self.table.primary_key)

    def encode(self, batch: pa.RecordBatch) -> tuple[pa.Array, pa.Array]:
        ops = ops_of(batch) if OP in batch.schema.names else \
            np.ones(batch.num_rows, np.int8)
        data = batch.drop_columns([OP]) if OP in batch.schema.names else batch
        data = conform_batch(data, pa.schema([f for f in self.schema if f.name != OP]))
        written = ops != UPDATE_BEFORE
        if not written.all():
            # an update's old row is left out when its new row has the same key (it replaces
            # it); one whose key changed is a delete of its old key (a tombstone)
            before = np.flatnonzero(~written)
            after = np.minimum(before + 1, len(ops) - 1)
            keys = [data.column(k) for k in self.keys]
            moved = (ops[after] != UPDATE_AFTER) | (after == before) | ~rows_equal(
                [c.take(pa.array(before)) for c in keys], [c.take(pa.array(after))
                                                           for c in keys])
            written[before[moved]] = True
            data = data.filter(pa.array(written))
            ops = ops[written]
        values = split_lines(json_format.encode(data, self.table.options, self.schema))
        tombstone = pa.array((ops == DELETE) | (ops == UPDATE_BEFORE))
        if pc.any(tombstone).as_py():
            values = pc.if_else(tombstone, pa.scalar(None, pa.binary()), values)
        return self._keys(data), values


def _check_key(table: TableSpec) -> None:
    if not table.primary_key:
        raise ConfigError(f"upsert-kafka table {table.name!r} has no PRIMARY KEY",
                          line=table.line,
                          hint="declare one: CREATE TABLE t (k BIGINT, n BIGINT, PRIMARY "
                               "KEY (k) NOT ENFORCED) WITH (connector = 'upsert-kafka', …)")
    fmt = str(ko.options(table).get("format", "json")).lower()
    if fmt != "json":
        raise ConfigError(f"format = {fmt!r} of upsert-kafka table {table.name!r}",
                          line=table.line, hint="accepted: json")


class UpsertKafkaSource(KafkaSource):
    """A compacted topic read as a changelog: values are the rows of their keys (+U),
    tombstones delete the key of their message key (-D, the other columns NULL; the plan's
    last-row-per-key step deletes the row it holds). Messages are read through
    confluent-kafka's Consumer, which hands over each message's key."""

    CHANGELOG = True
    OPTIONS = {**ko.SOURCE_OPTIONS,
               "format": "json (the only one: a value is the row of its key)",
               "key.format": "json (the only one: a JSON object of the primary key columns)"}

    @classmethod
    def validate(cls, table: TableSpec) -> None:
        _check_key(table)
        if table.metadata:
            raise ConfigError(f"table {table.name!r}: METADATA columns cannot be read from an "
                              f"upsert-kafka table", line=table.line,
                              hint="drop them, or read the topic with connector 'kafka'")
        super().validate(table)

    def __init__(self, table: TableSpec):
        super().__init__(table)
        # the values are rows of the table, not Debezium envelopes
        self.changelog = False
        self._decoder = json_format.Decoder(self.data_schema, table.options)
        names = {n.lower(): n for n in self.data_schema.names}
        key = pa.schema([self.data_schema.field(names.get(k.lower(), k))
                         for k in table.primary_key])
        self._key_decoder = json_format.Decoder(key, table.options)

    def _open_native(self) -> None:
        """The native drain hands over no keys without a key metadata column: read through
        confluent-kafka's Consumer."""

    def _decode(self, msgs: list, parts: np.ndarray | None, offs: np.ndarray | None
                ) -> tuple[pa.RecordBatch | None, np.ndarray | None]:
        from confluent_kafka import Message

        values = list(map(Message.value, msgs))
        tomb = np.fromiter((v is None for v in values), bool, len(values))
        rows = np.flatnonzero(~tomb)
        dead = np.flatnonzero(tomb)
        policy = _MessagePolicy(self.table.bad_data, self.metrics, self.topic,
                                lambda i: (msgs[i].partition(), msgs[i].offset()))
        held = bad_data.Held(policy)   # handed over in message order: fail names the first
        upserts = self._decoded(self._decoder, [values[i] for i in rows], rows, held)
        keys = [msgs[i].key() for i in dead]
        missing = [j for j, k in enumerate(keys) if k is None]
        for j in missing:
            held.reject(int(dead[j]), "a tombstone without a key")
        if missing:
            dead = np.delete(dead, missing)
            keys = [k for k in keys if k is not None]
        deletes = self._decoded(self._key_decoder, keys, dead, held)
        for at, reason in sorted(held.rejected):
            policy.reject(at, reason)
        (upserts, up_at), (deletes, del_at) = upserts, deletes
        names = self.data_schema.names
        deletes = pa.table([deletes.column(n) if n in deletes.column_names else
                            pa.nulls(deletes.num_rows, f.type) for n, f in
                            zip(names, self.data_schema)], schema=self.data_schema)
        both = pa.concat_tables([upserts.select(names).cast(self.data_schema), deletes])
        order = np.argsort(np.concatenate([up_at, del_at]), kind="stable")
        ops = np.concatenate([np.full(len(up_at), UPDATE_AFTER, np.int8),
                              np.full(len(del_at), DELETE, np.int8)])[order]
        table = both.take(pa.array(order)).append_column(pa.field(OP, OP_TYPE),
                                                         pa.array(ops, OP_TYPE))
        if not table.num_rows:
            return None, None
        return table.combine_chunks().to_batches()[0], None

    def _decoded(self, decoder, values: list[bytes], at: np.ndarray,
                 held: bad_data.Held) -> tuple[pa.Table, np.ndarray]:
        """``values`` (of the messages at ``at``) decoded; the bad ones are ``held``."""
        if not values:
            return decoder.schema.empty_table(), at[:0]
        local = _Numbered(held, at)
        table = decode_json_values(decoder, values, local)
        if local.dropped:
            at = np.delete(at, local.dropped)
        return table, at


class _Numbered(bad_data.BadDataPolicy):
    """Rejections of some of a batch's messages, handed on by their number in the batch."""

    def __init__(self, held: bad_data.Held, at: np.ndarray):
        super().__init__(held.mode, held.metrics, held.where)
        self.held, self.at = held, at
        self.dropped: list[int] = []

    def reject(self, line: int, reason: str) -> None:
        self.dropped.append(line)
        self.held.reject(int(self.at[line]), reason)


SOURCE = UpsertKafkaSource
SINK = UpsertKafkaSink
