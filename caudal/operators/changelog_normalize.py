"""The last row of each PRIMARY KEY of a changelog source (Flink's ChangelogNormalize).

Debezium delivers changes at least once and a topic or file may start mid-history: a create
may repeat, a delete may name a key never created, an update's before image may not be the
row held. Taken as they are, such changes corrupt every updating operator below (a count
goes down for a row it never counted). Keyed by the table's declared key, this operator
holds each key's current row and emits only what changes it: an insert or update-after
replaces the row (+I, or -U of the row held and +U), a delete or update-before removes the
row held (-D of that row, never of the message's image), and a change of nothing is
dropped. A consistent log passes unchanged, change by change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from caudal.operators.base import Operator
from caudal.operators.key_index import KeyIndex, SlotTable
from caudal.operators.keyed_tables import lookup, own_rows, tag_key_groups
from caudal.plan.changelog import (
    DELETE,
    INSERT,
    OP,
    OP_TYPE,
    UPDATE_AFTER,
    UPDATE_BEFORE,
    ops_of,
    rows_equal,
)


class ChangelogNormalize(Operator):
    """Keeps one row per key; emits the changes of those rows."""

    accepts_merged_batches = True

    def __init__(self, keys: list[str], output_schema: pa.Schema):
        self.keys = list(keys)
        self.output_schema = output_schema
        self.data_schema = pa.schema([f for f in output_schema if f.name != OP])
        self._reset()

    def _reset(self) -> None:
        self.index = KeyIndex(self.keys, self.data_schema)
        self.held = SlotTable(self.data_schema)
        self.present = np.zeros(0, dtype=bool)

    def process(self, batch: pa.RecordBatch, input: int = 0) -> Sequence[pa.RecordBatch]:
        if batch.num_rows == 0:
            return ()
        ops = ops_of(batch)
        data = pa.Table.from_batches([batch]).select(self.data_schema.names)
        keys = data.select(self.keys)
        distinct = keys.group_by(self.keys, use_threads=False).aggregate([])
        ids, new = self.index.ids(distinct)
        pos = lookup(keys, self.keys, distinct, self.keys)   # each row's distinct key
        rid = ids[pos]
        # an update pair of one key is one replacement (its before image is the row held)
        pair = np.zeros(len(ops), dtype=bool)
        pair[:-1] = (ops[:-1] == UPDATE_BEFORE) & (ops[1:] == UPDATE_AFTER) & \
            (rid[:-1] == rid[1:])
        if pair.any():
            kept = np.flatnonzero(~pair)
            data, ops, rid, pos = data.take(pa.array(kept)), ops[kept], rid[kept], pos[kept]
        n = len(ops)
        if len(self.present) < self.index.size:
            grown = np.zeros(max(self.index.size, 2 * len(self.present)), dtype=bool)
            grown[:len(self.present)] = self.present
            self.present = grown
        had = self.present[ids] & ~new
        prior = self.held.take(ids[had])
        # per distinct key, its row in ``prior`` (-1: none); sized by the batch, not the state
        prior_at = np.where(had, np.cumsum(had) - 1, -1)
        # the row each change meets: the change before it of its key, else the row held
        order = np.argsort(rid, kind="stable")
        first = np.ones(n, dtype=bool)
        first[1:] = rid[order[1:]] != rid[order[:-1]]
        before = np.empty(n, dtype=np.int64)   # into data, or n + into prior; -1: none
        before[order[1:]] = np.where(ops[order[:-1]] > 0, order[:-1], -1)
        met = prior_at[pos[order[first]]]
        before[order[first]] = np.where(met >= 0, n + met, -1)
        up = ops > 0
        images = pa.concat_tables([data, prior.cast(data.schema)])
        has = before >= 0
        pairs = up & has
        if pairs.any():   # an update to the row it met changes nothing
            at = np.flatnonzero(pairs)
            same = rows_equal(images.take(pa.array(before[at])).columns,
                              data.take(pa.array(at)).columns)
            pairs[at[same]] = False
            up[at[same]] = False
        gone = ~(ops > 0) & has
        count = pairs.astype(np.int64) + up + gone
        total = int(count.sum())
        # the lines each change emits, in change order: [-U met, +U row], [+I row], [-D met]
        start = np.cumsum(count) - count
        take = np.empty(total, dtype=np.int64)
        out_ops = np.empty(total, dtype=np.int8)
        take[start[pairs]], out_ops[start[pairs]] = before[pairs], UPDATE_BEFORE
        last = start + count - 1
        take[last[up]] = np.flatnonzero(up)
        out_ops[last[up]] = np.where(pairs[up], UPDATE_AFTER, INSERT)
        take[start[gone]], out_ops[start[gone]] = before[gone], DELETE
        # each key's state after the batch: its last change
        final = np.ones(n, dtype=bool)
        final[:-1] = rid[order[1:]] != rid[order[:-1]]
        ends = order[final]
        self.held.put(rid[ends], data.take(pa.array(ends)))
        self.present[rid[ends]] = ops[ends] > 0
        if not total:
            return ()
        table = images.take(pa.array(take))
        table = table.append_column(pa.field(OP, OP_TYPE), pa.array(out_ops, OP_TYPE))
        return table.to_batches()

    def snapshot(self, epoch: int) -> dict[str, Any]:
        held = self.held.table().slice(0, self.index.size)
        held = held.filter(pa.array(self.present[:self.index.size].copy()))
        return {"rows": tag_key_groups(held, self.keys, self.ctx.max_key_groups)}

    def restore(self, state: dict[str, Any]) -> None:
        table = own_rows(state.get("rows"), self.keys, self.ctx)
        self._reset()
        if table is None or table.num_rows == 0:
            return
        table = table.cast(self.data_schema)
        self.index = KeyIndex.build(self.keys, table.select(self.keys))
        self.held = SlotTable.of(table)
        self.present = np.ones(table.num_rows, dtype=bool)
