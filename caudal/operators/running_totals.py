"""Running totals per key: the updating aggregate's state for count/sum/avg over a changelog.

Over a changelog input the updating aggregate keeps the multiset of input rows per key
(``updating_aggregate._Multiset``), because min, max, DISTINCT and percentiles need every
value to retract one exactly. count(*), count(x), and sum/avg of integers do not: a
retraction subtracts what its insertion added. So when every aggregate of the operator is
one of those, the state is one row of totals per key, kept by a persistent ``KeyIndex`` and
a ``SlotTable`` (NumPy columns written in place):

* ``_n``: the key's rows (weights summed): a key whose ``_n`` falls to 0 is retracted;
* per aggregate ``i``: ``_c{i}`` the rows it counts (non-NULL argument, FILTER true) and, for
  sum/avg, the exact sum of its values as ``_h{i} * 2^32 + _l{i}`` (operators.integer_sums:
  halves never wrap, so a sum is exact whatever it passes through, and a sum past BIGINT
  fails in one line at the flush that would emit it, as the recomputing path does).

A batch is folded into per-key deltas (one Arrow hash aggregation of its +/- weighted
halves); a flush merges the pending deltas, looks the touched keys up in the index and adds
the deltas to their totals: its cost is what it touched, never the whole state. Floating
point sums are left to the multiset path (a running float sum with subtractions rounds
differently from the sum of the remaining rows).

The totals trust their input: a retraction of a row never inserted cannot be told from a
valid one, so the planner chooses this path only for changelogs caudal's own operators make
(``plan.updating_nodes``), never for a source's changelog (whose corrupt retractions the
multiset path counts and ignores). A key whose row count would still go negative is counted
in ``corrupt_retractions`` and reset to empty.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from caudal.operators import integer_sums
from caudal.operators.aggregator import Aggregator
from caudal.operators.key_index import KeyIndex, SlotTable
from caudal.operators.keyed_tables import own_rows, tag_key_groups
from caudal.plan.aggregates import AggCall
from caudal.plan.changelog import weights

_N = "_n"
_SEEN = "_seen"
#: merge pending deltas once this many pile up
_COMPACT_PENDING = 32


class Changes:
    """What a flush found: the touched keys, and per key whether a row existed before and
    after, with the aggregate values before and after."""

    def __init__(self, keys: pa.Table, old_exists: np.ndarray, old: list[pa.Array],
                 exists: np.ndarray, new: list[pa.Array]):
        self.keys, self.old_exists, self.old = keys, old_exists, old
        self.exists, self.new = exists, new


class RunningTotals:
    """Totals per key (see the module's docstring), for a changelog input."""

    def __init__(self, group: list[str], aggregates: list[AggCall], input_schema: pa.Schema):
        self.group = group
        self.calls = list(aggregates)
        self.aggregator = Aggregator(aggregates, input_schema, None)
        self.summed = [c.func in ("sum", "avg") for c in self.calls]
        self.long_double = [c.func == "avg" and integer_sums.divided_in_long_double(
            input_schema.field(c.args[0]).type) for c in self.calls]
        self.columns = [_N]
        for i, summed in enumerate(self.summed):
            self.columns += [f"_c{i}", f"_h{i}", f"_l{i}"] if summed else [f"_c{i}"]
        self.index: KeyIndex | None = None
        self.store: SlotTable | None = None
        self.pending: list[pa.Table] = []
        #: keys with rows (``_n`` > 0)
        self.live = 0

    # ---- input ----------------------------------------------------------------------------

    def add(self, keys: dict[str, pa.Array], batch: pa.RecordBatch, ctx) -> None:
        w = weights(batch)
        prepared = self.aggregator.prepare(batch)
        columns: dict[str, Any] = dict(keys)
        columns[_N] = w
        for i, (call, summed) in enumerate(zip(self.calls, self.summed)):
            x = prepared.get(f"_s{i}_x")
            if x is None:   # count(*) without FILTER
                columns[f"_c{i}"] = w
                continue
            if isinstance(x, pa.ChunkedArray):
                x = x.combine_chunks()
            if call.func == "count" and not call.args:   # count(*) FILTER: a 0/1 mask
                columns[f"_c{i}"] = w * x.to_numpy(zero_copy_only=False)
                continue
            valid = x.is_valid().to_numpy(zero_copy_only=False) if x.null_count else None
            columns[f"_c{i}"] = w if valid is None else w * valid
            if summed:
                hi, lo = integer_sums.halves(x)   # NULL: 0
                columns[f"_h{i}"] = w * hi
                columns[f"_l{i}"] = w * lo
        table = pa.table({k: pa.array(v) if isinstance(v, np.ndarray) else v
                          for k, v in columns.items()})
        self.pending.append(self._merge([table]))
        if len(self.pending) >= _COMPACT_PENDING:
            self.pending = [self._merge(self.pending)]

    def _merge(self, tables: list[pa.Table]) -> pa.Table:
        """One row per key, its deltas summed (int64 sums of halves: exact for < 2^31
        rows)."""
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        summed = table.group_by(self.group, use_threads=False).aggregate(
            [(c, "sum") for c in self.columns])
        return summed.rename_columns([c[:-4] if c.endswith("_sum") and c[:-4] in self.columns
                                      else c for c in summed.column_names])

    # ---- flush ----------------------------------------------------------------------------

    def flush(self, now: int, ctx) -> Changes | None:
        if not self.pending:
            return None
        delta = self._merge(self.pending)
        self.pending = []
        changed = np.zeros(delta.num_rows, dtype=bool)
        for c in self.columns:
            changed |= delta.column(c).to_numpy() != 0
        if not changed.all():
            delta = delta.filter(pa.array(changed))
        if delta.num_rows == 0:
            return None
        touched = delta.select(self.group).combine_chunks()
        n = touched.num_rows
        if self.index is None:
            self.index = KeyIndex(self.group, touched.schema)
        ids, fresh = self.index.ids(touched)
        old = {c: np.zeros(n, dtype=np.int64) for c in self.columns}
        matched = ~fresh
        if matched.any():
            stored = self.store.take(ids[matched])
            for c in self.columns:
                old[c][matched] = stored.column(c).to_numpy()
        new = {c: old[c] + delta.column(c).to_numpy() for c in self.columns}
        for i, summed in enumerate(self.summed):
            if summed:
                new[f"_h{i}"], new[f"_l{i}"] = integer_sums.carry(new[f"_h{i}"], new[f"_l{i}"])
        bad = new[_N] < 0
        for i in range(len(self.calls)):
            bad |= new[f"_c{i}"] < 0
        if bad.any():   # a corrupt changelog (see the module's docstring): the key emptied
            ctx.metrics["corrupt_retractions"] += int(bad.sum())
            for c in self.columns:
                new[c][bad] = 0
        old_exists, exists = old[_N] > 0, new[_N] > 0
        self.live += int(exists.sum()) - int(old_exists.sum())
        new_values = self._finals(new, exists)
        old_values = self._finals(old, old_exists)
        state = touched
        for c in self.columns:
            state = state.append_column(c, pa.array(new[c]))
        state = state.append_column(_SEEN, pa.array(np.full(n, now, dtype=np.int64)))
        if self.store is None:
            self.store = SlotTable(state.schema)
        self.store.put(ids, state)
        return Changes(touched, old_exists, old_values, exists, new_values)

    def _finals(self, totals: dict[str, np.ndarray], exists: np.ndarray) -> list[pa.Array]:
        """Each aggregate's value per key from its totals (keys not ``exists``: ignored)."""
        out: list[pa.Array] = []
        for i, call in enumerate(self.calls):
            count = totals[f"_c{i}"]
            if call.func == "count":
                out.append(pa.array(count, pa.int64()))
                continue
            empty = count <= 0
            hi, lo = totals[f"_h{i}"], totals[f"_l{i}"]
            if call.func == "sum":
                live = np.flatnonzero(exists & ~empty)
                value = np.zeros(len(count), dtype=np.int64)
                value[live] = integer_sums.to_bigint(hi[live], lo[live], call)
                out.append(pa.array(value, pa.int64(), mask=empty))
            else:
                value = integer_sums.mean(hi, lo, count, self.long_double[i])
                out.append(pa.array(value, pa.float64(), mask=empty))
        return out

    # ---- TTL and checkpoints --------------------------------------------------------------

    def expire(self, before: int) -> None:
        if self.store is None or not self.store.size:
            return
        table = self.store.table()
        keep = table.column(_SEEN).to_numpy() >= before
        if not keep.all():
            self._load(table.filter(pa.array(keep)))

    def _load(self, table: pa.Table | None) -> None:
        self.live = 0 if table is None else int((table.column(_N).to_numpy() > 0).sum())
        if table is None or table.num_rows == 0:
            self.store, self.index = None, None
            return
        self.store = SlotTable.of(table)
        self.index = KeyIndex.build(self.group, table.select(self.group))

    def _live(self) -> pa.Table | None:
        """The keys with rows (a copy: a snapshot never shares the live arrays)."""
        if self.store is None or not self.store.size:
            return None
        table = self.store.table()
        return table.filter(pa.array(table.column(_N).to_numpy() > 0))

    def snapshot(self, mkg: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        live = self._live()
        if live is not None:
            out["totals"] = tag_key_groups(live, self.group, mkg)
        if self.pending:
            self.pending = [self._merge(self.pending)]
            out["pending"] = tag_key_groups(self.pending[0], self.group, mkg)
        return out

    def restore(self, state: dict[str, Any], keys: list[str], ctx) -> None:
        self._load(own_rows(state.get("totals"), keys, ctx))
        pending = own_rows(state.get("pending"), keys, ctx)
        self.pending = [pending] if pending is not None and pending.num_rows else []

    def rows_count(self) -> int:
        return self.live
