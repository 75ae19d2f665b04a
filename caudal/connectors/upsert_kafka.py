"""The ``upsert-kafka`` connector (Flink's name): an updating query as a compacted topic.

Each change becomes a message keyed by the table's PRIMARY KEY (a JSON object of the key
columns): an insert or an update's new row is the row as JSON, a delete is a tombstone (a
message with a null value), and an update's old row is not written (the new one replaces it
under the same key) unless the new row has another key: then the old key gets a tombstone.
Messages of one key go to one partition, in order. Commit modes are the kafka sink's
(exactly_once by default).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from caudal import compute as pc
from caudal.connectors import kafka_options as ko
from caudal.connectors.kafka_sink import KafkaSink, split_lines
from caudal.errors import ConfigError
from caudal.formats import json as json_format
from caudal.plan.changelog import DELETE, OP, UPDATE_AFTER, UPDATE_BEFORE, ops_of, rows_equal
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
        if not table.primary_key:
            raise ConfigError(f"upsert-kafka table {table.name!r} has no PRIMARY KEY",
                              line=table.line,
                              hint="declare one: CREATE TABLE t (k BIGINT, n BIGINT, PRIMARY "
                                   "KEY (k) NOT ENFORCED) WITH (connector = 'upsert-kafka', …)")
        fmt = str(ko.options(table).get("format", "json")).lower()
        if fmt != "json":
            raise ConfigError(f"format = {fmt!r} of upsert-kafka table {table.name!r}",
                              line=table.line, hint="accepted: json")
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


SINK = UpsertKafkaSink
