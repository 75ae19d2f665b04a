"""Updating (non-windowed) GROUP BY: a running aggregate per key that emits a changelog.

No window ever closes, so a result row is *revised*: when a key's aggregates change, the
operator retracts the row it emitted before and inserts the new one (an update pair, see
plan.changelog). Changes are collected and emitted at most every ``flush_us`` (processing
time) and at the end of the input, so a hot key costs one update per flush, not one per row.
Every aggregate is computed by the window aggregate's kernels (operators.aggregate_kernels:
partial, merge, final), never by a second implementation.

Two ways to keep state, chosen by whether the input is a changelog (all Arrow tables and
NumPy columns, never a Python object per key):

* append-only input (``_Merged``): one row of partial aggregate states per key. A batch is
  aggregated once into partial states; at a flush the partials of the touched keys merge
  with their stored states. Every aggregate works, first_value and string_agg included.
* updating input (``_Multiset``): the multiset of input rows per key (the rows' columns and
  a multiplicity ``_m``), and the values last emitted per key. At a flush the pending
  changes are netted, checked against the multiset, applied, and the touched keys'
  aggregates are recomputed from their rows. So min, max and DISTINCT retract exactly, and a
  retraction of a row that was never inserted (a corrupt upstream changelog) is recognized:
  it is counted in the ``corrupt_retractions`` metric and ignored, never made a negative
  count. Order-dependent aggregates (first_value, last_value, string_agg) are refused over
  a changelog at planning.
* updating input made by caudal's own operators, every aggregate count/sum/avg of integers
  (``RunningTotals``, operators.running_totals, chosen at planning): exact totals per key,
  updated from each batch's weights, no rows kept.

A flush compares each touched key's values before and after: a new key is inserted, a key
without rows left is deleted, a changed key is an update pair, an unchanged one emits
nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from caudal import clock
from caudal import compute as pc
from caudal.operators.aggregate_kernels import GroupIndex, dense_codes, group_order
from caudal.operators.aggregator import Aggregator
from caudal.operators.base import Operator
from caudal.operators.join_rows import SideState, repeat_rows
from caudal.operators.key_index import KeyIndex, SlotTable
from caudal.operators.keyed_tables import (
    LOWEST,
    NET,
    apply_net,
    as_array,
    batches_of,
    from_numpy,
    lookup,
    net_rows,
    own_rows,
    tag_key_groups,
    take_or_null,
)
from caudal.operators.percentile_kernel import Percentile, sorted_in_groups
from caudal.operators.periodic_flush import PeriodicFlush
from caudal.operators.running_totals import Changes as _Changes
from caudal.operators.running_totals import RunningTotals
from caudal.plan.aggregates import COUNTS, AggCall, totals_apply
from caudal.plan.changelog import (
    DELETE,
    INSERT,
    OP,
    OP_TYPE,
    data_columns,
    interleave_updates,
    rows_equal,
    weights,
)
from caudal.state.incremental import ChangedRows, Unfolded
from caudal.state.rescale import KEY_GROUP

#: order-dependent aggregates: refused over an updating input
ORDERED = {"first_value", "last_value", "string_agg"}

#: batches refused by the dense partials for their companion keys before they are dropped
_DENSE_MISSES = 8
_ROW = "_i"
_SEEN = "_seen"
_MULT = "_m"
_GLOBAL = "_g"
#: merge pending tables once this many pile up
_COMPACT_PENDING = 32


def retraction_problem(call: AggCall) -> str | None:
    """Why ``call`` cannot run over an updating input, or None when it can."""
    if call.func in ORDERED:
        return (f"{call.func}() depends on the order of rows, which a retraction cannot "
                f"undo")
    return None


class _Merged:
    """Partial aggregate states per key, for an append-only input."""

    def __init__(self, group: list[str], aggregates: list[AggCall], input_schema: pa.Schema,
                 time_column: str | None, partial_input: bool = False):
        self.group = group
        self.aggregator = Aggregator(aggregates, input_schema, time_column)
        #: batches are already partial states per key (a local stage made them)
        self.partial_input = partial_input
        #: ``pending`` may hold a key twice in one table (partials of several upstream
        #: subtasks, coalesced into one batch): merge it even when it is the only one
        self.unmerged = False
        #: one row per key (keys, partial states, ``_seen``), key ``i`` of ``index`` at row
        #: ``i``: both persist across batches, so a flush costs what it touched
        self.store: SlotTable | None = None
        self.index: KeyIndex | None = None
        self.pending: list[pa.Table] = []
        #: batches' partial states folded in NumPy (one integer key, count/min/max of
        #: integers), taken into ``pending`` at a flush or snapshot; None where it does not
        #: apply (nor to partial states as input)
        self.dense = None if partial_input else \
            self.aggregator.dense_partials(group, input_schema, companions=True)
        self.dense_misses = 0
        #: what changed since the last snapshot, so a checkpoint writes only that
        self.changes = ChangedRows()
        #: the values last emitted per key id, when an aggregate is a percentile (whose
        #: final sorts its values) and every one's type is a number, so a flush takes its
        #: retractions' values instead of recomputing them from the old states; other
        #: finals read their states as they are, not worth a copy of the outputs per key.
        #: ``known[i]``: key ``i``'s are there (not after a restore or an expiry, which
        #: compute them as before). Never in a snapshot: it is derived state.
        self.remember = any(isinstance(k, Percentile) for k in self.aggregator.kernels)
        self.emitted: SlotTable | None = None
        self.known = np.zeros(0, dtype=bool)

    def add(self, keys: dict[str, pa.Array], batch: pa.RecordBatch, ctx) -> None:
        if self.partial_input:
            self.pending.append(pa.Table.from_batches([batch]))
            self.unmerged = True
        else:
            if self.dense is not None:
                if self.dense.add(batch):
                    return
                self._take_dense()   # the range moved too far (or NULLs): start afresh
                if self.dense.add(batch):
                    return
                if self.dense.companions:
                    # a key with two values of a companion in one batch: GROUP BY columns
                    # that are not one key's attributes; after a few, stop trying
                    self.dense_misses += 1
                    if self.dense_misses >= _DENSE_MISSES:
                        self.dense = None
            columns = dict(keys)
            columns.update(self.aggregator.prepare(batch))
            self.pending.append(self.aggregator.partial(pa.table(columns), self.group))
        if len(self.pending) >= _COMPACT_PENDING:
            self._compact()

    def _take_dense(self) -> None:
        taken = self.dense.take() if self.dense is not None else None
        if taken is not None:
            self.pending.append(taken)

    def _compact(self) -> None:
        self._take_dense()
        if len(self.pending) > 1 or (self.unmerged and self.pending):
            self.pending = [self.aggregator.merge(pa.concat_tables(self.pending), self.group)]
        self.unmerged = False

    def flush(self, now: int, ctx) -> _Changes | None:
        self._compact()
        if not self.pending:
            return None
        delta = self.pending[0]
        self.pending = []
        touched = delta.select(self.group).combine_chunks()
        n = touched.num_rows
        if self.index is None:
            self.index = KeyIndex(self.group, touched.schema)
        ids, new_key = self.index.ids(touched)  # persistent: no join against the state
        matched = ~new_key
        state_cols = [c for c in delta.column_names if c not in self.group]
        schema = delta.select(state_cols).schema
        parts = [delta.select(state_cols).append_column(_ROW, from_numpy(np.arange(n)))]
        old_rows = None
        if matched.any():
            old_rows = self.store.take(ids[matched])
        if not state_cols:  # no aggregate (SELECT DISTINCT): the keys are the whole state
            merged = parts[0]
        elif old_rows is not None:
            olds = old_rows.select(state_cols)
            if not olds.schema.equals(schema):
                olds = olds.cast(schema)
            parts.append(olds.append_column(_ROW, from_numpy(np.flatnonzero(matched))))
            merged = self.aggregator.merge(pa.concat_tables(parts), [_ROW])
        else:
            merged = parts[0]
        order = merged.column(_ROW).to_numpy()
        if len(order) > 1 and (order[1:] < order[:-1]).any():   # (in order from a dense merge)
            merged = pc.take(merged, from_numpy(np.argsort(order)))
        new_state = touched
        for name in state_cols:
            new_state = new_state.append_column(name, merged.column(name))
        new_state = new_state.append_column(_SEEN, from_numpy(np.full(n, now, dtype=np.int64)))
        if self.store is None:
            self.store = SlotTable(new_state.schema)
        self.store.put(ids, new_state)
        self.changes.touch(ids)
        new = self.aggregator.final(merged)
        if old_rows is not None:
            ranks = np.full(n, -1, dtype=np.int64)
            ranks[matched] = np.arange(int(matched.sum()))
            old_ids = ids[matched]
            if self.emitted is not None and int(old_ids.max()) < len(self.known) and \
                    self.known[old_ids].all():
                values = self.emitted.take(old_ids).columns
            else:
                values = self.aggregator.final(old_rows)
            old = [take_or_null(v, ranks) for v in values]
        else:
            old = [pa.nulls(n, v.type) for v in new]
        self._remember(ids, new)
        return _Changes(touched, matched, old, np.ones(n, dtype=bool), new)

    def _remember(self, ids: np.ndarray, values: list[pa.Array]) -> None:
        """Keep ``values`` as the ones emitted for keys ``ids`` (see ``emitted``)."""
        if not self.remember or not values or not all(
                pa.types.is_integer(v.type) or pa.types.is_floating(v.type) for v in values):
            return
        table = pa.Table.from_arrays(values, names=[f"_{i}" for i in range(len(values))])
        if self.emitted is None:
            self.emitted = SlotTable(table.schema)
        self.emitted.put(ids, table)
        if len(self.known) < self.emitted.size:
            known = np.zeros(max(self.emitted.size, 2 * len(self.known)), dtype=bool)
            known[:len(self.known)] = self.known
            self.known = known
        self.known[ids] = True

    def expire(self, before: int) -> None:
        if self.store is not None and self.store.size:
            table = self.store.table()
            keep = pc.greater_equal(table.column(_SEEN), before)
            if pc.all(keep).as_py():
                return
            self.changes.removed(table.filter(pc.invert(keep)).select(self.group),
                                 keep.to_numpy(zero_copy_only=False))
            self._load(table.filter(keep), baseline=True)

    def _load(self, table: pa.Table | None, baseline: bool = False, reserve: int = 0) -> None:
        """The state as ``table`` (room for ``reserve`` more keys without growing)."""
        self.store = None if table is None else SlotTable.of(table, reserve)
        self.index = None if table is None else \
            KeyIndex.build(self.group, table.select(self.group), reserve)
        self.emitted, self.known = None, np.zeros(0, dtype=bool)   # ids may have moved
        if not baseline:
            self.changes = ChangedRows()

    def snapshot(self, mkg: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.store is not None:
            out["table"] = self.changes.snapshot(
                self.store, lambda t: tag_key_groups(t, self.group, mkg), self.group)
        self._compact()
        if self.pending:
            out["pending"] = tag_key_groups(self.pending[0], self.group, mkg)
        return out

    def restore(self, state: dict[str, Any], keys: list[str], ctx) -> None:
        table = state.get("table")
        upserts = table.upserts() if isinstance(table, Unfolded) else None
        if isinstance(table, Unfolded) and upserts is None:
            table = table.table()   # deletions or expiries: folded
        if upserts is not None:
            self._load_unfolded(table, upserts.drop_columns([KEY_GROUP])
                                if KEY_GROUP in upserts.column_names else upserts)
        else:
            # SlotTable.of copies the columns into NumPy: no contiguous copy before it
            self._load(own_rows(table, keys, ctx, combine=False))
        pending = own_rows(state.get("pending"), keys, ctx)
        self.pending = [pending] if pending is not None and pending.num_rows else []

    def _load_unfolded(self, chain: Unfolded, upserts: pa.Table) -> None:
        """The state as ``chain``'s whole table, then its deltas' rows written by key.
        The whole table is copied into the SlotTable a row group at a time; its key
        columns are decoded, copied and indexed (KeyIndex) on another thread meanwhile (a
        restore at the same parallelism: every row is this subtask's)."""
        from concurrent.futures import ThreadPoolExecutor

        schema = pa.schema([f for f in chain.schema if f.name != KEY_GROUP])
        n = chain.base_rows
        store = SlotTable.sized(schema, n, upserts.num_rows)
        others = [c for c in schema.names if c not in self.group]

        def keyed() -> tuple[KeyIndex, np.ndarray | None]:
            # the key columns decoded, copied and indexed on this thread while the caller
            # copies the other columns (fill writes each column's arrays apart), and the
            # deltas' keys looked up (the room reserved for them: nothing grows); while the
            # file's checksum may still be running (chain.checked below, before any of it
            # is this operator's state)
            keys = chain.base_table(self.group, check=False)
            store.fill(0, keys)
            index = KeyIndex.build(self.group, keys, upserts.num_rows)
            return index, index.ids(upserts.select(self.group))[0] if upserts.num_rows \
                else None

        with ThreadPoolExecutor(1, thread_name_prefix="caudal-restore-index") as pool:
            indexed = pool.submit(keyed)
            at = 0
            if others:
                for part in chain.base_batches(others):
                    store.fill(at, part)
                    at += part.num_rows
            index, ids = indexed.result()   # (the key columns filled too)
            chain.checked()
            store.seal()
        self.store, self.index = store, index
        self.emitted, self.known = None, np.zeros(0, dtype=bool)
        self.changes = ChangedRows()
        if ids is not None:
            self.store.put(ids, upserts.select(schema.names))

    def rows(self) -> int:
        return self.store.size if self.store is not None else 0


#: values a flush sorts at once: pieces of about this many stay in the caches, and their
#: arrays reuse freed memory (a flush of 4.6 M values in one piece faulted in ~150 k fresh
#: pages, ~2 µs each on this VM: bench/README.md)
_PIECE = 1 << 19


def _grouped_sorted(flat: np.ndarray, parents: np.ndarray, n: int, t: pa.DataType
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``flat``'s values (``parents``: the group of each, below ``n``) in group order and
    sorted within each group, and the count of each group: by one sort of (group, value)
    keys (``_sorted_keys``), or where those would not fit an int64, with the groups cut
    into pieces of about ``_PIECE`` values (one radix pass puts the rows in piece order,
    keeping their order within a piece: a key's old values stay first), each piece sorted
    apart."""
    counts = np.bincount(parents, minlength=n)
    keyed = _sorted_keys(flat, parents, n)
    if keyed is not None:
        return keyed, counts
    if len(flat) <= _PIECE:
        return _sorted_piece(flat, parents, n, t), counts
    ends = np.cumsum(counts)
    cuts = np.unique(np.searchsorted(ends, np.arange(_PIECE, len(flat), _PIECE),
                                     side="right"))
    cuts = cuts[(cuts > 0) & (cuts < n)]
    if len(cuts) >= 1 << 16:
        return _sorted_piece(flat, parents, n, t), counts
    first = np.zeros(n, dtype=np.uint16)   # piece of each group
    first[cuts] = 1
    np.cumsum(first, out=first)
    perm = np.argsort(first[parents], kind="stable")
    flat, parents = flat[perm], parents[perm]
    bounds = np.concatenate([[0], cuts, [n]])
    starts = np.concatenate([[0], ends[bounds[1:] - 1]])
    return np.concatenate([
        _sorted_piece(flat[starts[j]:starts[j + 1]], parents[starts[j]:starts[j + 1]] -
                      bounds[j], int(bounds[j + 1] - bounds[j]), t)
        for j in range(len(bounds) - 1)]), counts


def _sorted_keys(flat: np.ndarray, parents: np.ndarray, n: int) -> np.ndarray | None:
    """``_grouped_sorted``'s values by one in-place sort of int64 keys ``group * span +
    (value - low)``, NumPy's default (unstable) sort: vectorized (SIMD) for int64, ~6x
    faster than the stable radix passes plus Timsort, and stability is not needed, as
    equal keys are equal values. The group is then dropped by one remainder (a division
    by a constant, vectorized). None when the keys would not fit an int64."""
    if not len(flat) or flat.dtype.kind not in "iu":
        return None
    low, high = int(flat.min()), int(flat.max())
    span = high - low + 1
    if span * n >= 1 << 62 or high >= 1 << 63:
        return None
    key = np.multiply(parents, np.int64(span), dtype=np.int64)
    np.add(key, flat, out=key, casting="unsafe")
    key -= np.int64(low)
    key.sort()
    np.remainder(key, np.int64(span), out=key)
    key += np.int64(low)
    return key


def _sorted_piece(flat: np.ndarray, parents: np.ndarray, n: int, t: pa.DataType
                  ) -> np.ndarray:
    pos = group_order(parents, n)   # stable: a key's old (sorted) values stay first
    return sorted_in_groups(pa.array(flat[pos], type=t), parents[pos])[1]


class _Percentiles(_Merged):
    """``_Merged`` for an append-only input whose aggregates are all median /
    percentile_cont / percentile_disc of integer columns (``applies``): the same state
    table and snapshots (a list of values per key and aggregate), kept so that a flush
    costs what it touched.

    * A batch is only kept (its keys and arguments): no per-batch grouping into lists.
    * Each key's values are kept sorted, as runs of one NumPy pool (SlotTable's
      ListSlots, written in place); aggregates of one argument (median(x) and
      percentile_cont(0.9) ... ORDER BY x) share one list.
    * A flush groups its rows by key (radix passes), puts each touched key's sorted old
      values before its new ones and sorts the int64 keys (group, value) once: Timsort
      merges the old run with the sorted new values instead of sorting again what it sorted
      at the flush before. The percentiles are picked from that order, which is stored back
      as the keys' lists.
    * The values emitted last are taken for the retractions (``_Merged.emitted``).
    """

    @staticmethod
    def applies(aggregator: Aggregator, group: list[str], input_schema: pa.Schema) -> bool:
        def key_ok(t: pa.DataType) -> bool:
            return (pa.types.is_integer(t) or pa.types.is_string(t) or
                    pa.types.is_large_string(t) or pa.types.is_date(t) or
                    pa.types.is_timestamp(t) or pa.types.is_boolean(t))

        kernels = aggregator.kernels
        return bool(kernels) and all(
            isinstance(k, Percentile) and k.arg_type is not None and
            pa.types.is_integer(k.arg_type) and not pa.types.is_uint64(k.arg_type)
            for k in kernels) and all(
            g not in input_schema.names or key_ok(input_schema.field(g).type) for g in group)

    def __init__(self, group: list[str], aggregates: list[AggCall], input_schema: pa.Schema,
                 time_column: str | None):
        super().__init__(group, aggregates, input_schema, time_column)
        self.dense = None
        #: one entry per distinct (argument, FILTER): its input column, the state columns
        #: of its kernels (the first one keeps the values, the others share them)
        self.sources: list[tuple[str, list[Percentile]]] = []
        by_input: dict[tuple, list[Percentile]] = {}
        for k in self.aggregator.kernels:
            assert isinstance(k, Percentile)
            by_input.setdefault((k.call.args[0], k.call.filter), []).append(k)
        for kernels in by_input.values():
            self.sources.append((f"{kernels[0].p}_x", kernels))

    def add(self, keys: dict[str, pa.Array], batch: pa.RecordBatch, ctx) -> None:
        columns = dict(keys)
        for name, kernels in self.sources:
            columns[name] = kernels[0].prepare(batch)[name]
        self.pending.append(pa.table(columns))

    def _compact(self) -> None:
        pass   # the rows are grouped at the flush, once

    def _share(self) -> None:
        if self.store is not None:
            for _, kernels in self.sources:
                for k in kernels[1:]:
                    self.store.share(f"{k.p}_v", f"{kernels[0].p}_v")

    def _load(self, table: pa.Table | None, baseline: bool = False, reserve: int = 0) -> None:
        super()._load(table, baseline, reserve)
        self._share()

    def _load_unfolded(self, chain: Unfolded, upserts: pa.Table) -> None:
        super()._load_unfolded(chain, upserts)
        self._share()

    def snapshot(self, mkg: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.store is not None:
            out["table"] = self.changes.snapshot(
                self.store, lambda t: tag_key_groups(t, self.group, mkg), self.group)
        if self.pending:   # as _Merged keeps them: partial states (lists) per key
            rows = pa.concat_tables(self.pending)
            columns = {g: rows.column(g) for g in self.group}
            for name, kernels in self.sources:
                for k in kernels:
                    columns[f"{k.p}_x"] = rows.column(name)
            partial = self.aggregator.partial(pa.table(columns), self.group)
            out["pending"] = tag_key_groups(partial, self.group, mkg)
        return out

    def restore(self, state: dict[str, Any], keys: list[str], ctx) -> None:
        super().restore(state, keys, ctx)
        partial = self.pending[0] if self.pending else None
        self.pending = []
        if partial is None:
            return
        # the partial states back to rows: every key once without a value (a key whose
        # values are all NULL stays a group), then each source's values with their keys
        types = {name: partial.schema.field(f"{kernels[0].p}_v").type.value_type
                 for name, kernels in self.sources}

        def rows(keys: pa.Table, values: dict[str, pa.Array]) -> pa.Table:
            columns = {g: keys.column(g) for g in self.group}
            for name, t in types.items():
                columns[name] = values.get(name, pa.nulls(keys.num_rows, t))
            return pa.table(columns)

        parts = [rows(partial.select(self.group), {})]
        for name, kernels in self.sources:
            lists = as_array(partial.column(f"{kernels[0].p}_v"))
            parents = pc.list_parent_indices(lists)
            parts.append(rows(pc.take(partial.select(self.group), parents),
                              {name: pc.list_flatten(lists)}))
        self.pending = [pa.concat_tables(parts)]

    def flush(self, now: int, ctx) -> _Changes | None:
        if not self.pending:
            return None
        rows = pa.concat_tables(self.pending)
        self.pending = []
        dense = dense_codes(as_array(rows.column(self.group[0]))) \
            if len(self.group) == 1 else None
        if dense is not None:   # an integer key of a narrow range: by direct addressing
            touched, gid = pa.table({self.group[0]: dense[0]}), dense[1]
        elif len(self.group) == 1:   # the distinct keys are the dictionary's, in order
            encoded = pc.dictionary_encode(rows.column(self.group[0]).combine_chunks(),
                                           null_encoding="encode")
            touched = pa.table({self.group[0]: encoded.dictionary})
            gid = encoded.indices.to_numpy(zero_copy_only=False)
        else:
            grouped = GroupIndex.encode(rows, self.group)
            assert grouped is not None   # (key types ``applies`` takes)
            gid = grouped[0].gid
            touched = pc.take(rows.select(self.group), from_numpy(grouped[1])).combine_chunks()
        n = touched.num_rows
        if self.index is None:
            self.index = KeyIndex(self.group, touched.schema)
        ids, new_key = self.index.ids(touched)
        matched = ~new_key
        old_ids = ids[matched]
        known = self.emitted is not None and (not len(old_ids) or (
            int(old_ids.max()) < len(self.known) and self.known[old_ids].all()))
        old_rows = self.store.take(old_ids) if len(old_ids) and not known else None
        where_old = np.flatnonzero(matched)
        lists_of: dict[str, pa.Array] = {}
        new_by_kernel: dict[str, pa.Array] = {}
        for name, kernels in self.sources:
            state = f"{kernels[0].p}_v"
            t = kernels[0].arg_type
            values = as_array(rows.column(name))
            parents = gid
            if values.null_count:
                keep = np.flatnonzero(values.is_valid().to_numpy(zero_copy_only=False))
                values, parents = pc.take(values, from_numpy(keep)), gid[keep]
            flat = values.to_numpy(zero_copy_only=False)
            if len(old_ids):
                slots = self.store.lists(state)
                olds = slots.take(old_ids) if slots is not None else \
                    as_array(self.store.take(old_ids).column(state))
                old_parents = where_old[pc.list_parent_indices(olds).to_numpy(
                    zero_copy_only=False)]
                old_flat = pc.list_flatten(olds).to_numpy(zero_copy_only=False)
                flat = np.concatenate([old_flat, flat.astype(old_flat.dtype, copy=False)])
                parents = np.concatenate([old_parents, parents])
            ordered, counts = _grouped_sorted(flat, parents, n, t)
            offsets = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(counts, out=offsets[1:])
            lists = pa.ListArray.from_arrays(from_numpy(offsets.astype(np.int32)),
                                             pc.cast(from_numpy(ordered.astype(
                                                 flat.dtype, copy=False)), t),
                                             type=pa.list_(t))
            # the lists are sorted: every kernel of the source picks from them as they are
            cache: list = [(t, counts.astype(np.int64), ordered, (None, ordered))]
            for k in kernels:
                lists_of[k.p] = lists
                new_by_kernel[k.p] = as_array(k.final({f"{k.p}_v": lists}, cache))
        kernels = self.aggregator.kernels   # the columns in _Merged's order
        new = [new_by_kernel[k.p] for k in kernels]
        new_state = pa.table({**{g: touched.column(g) for g in self.group},
                              **{f"{k.p}_v": lists_of[k.p] for k in kernels},
                              _SEEN: from_numpy(np.full(n, now, dtype=np.int64))})
        if self.store is None:
            self.store = SlotTable(new_state.schema)
            self._share()
        if known and len(old_ids):
            old_values = self.emitted.take(old_ids).columns
        elif old_rows is not None:
            old_values = self.aggregator.final(old_rows)
        else:
            old_values = None
        self.store.put(ids, new_state)
        self.changes.touch(ids)
        if old_values is not None:
            ranks = np.full(n, -1, dtype=np.int64)
            ranks[matched] = np.arange(len(old_ids))
            old = [take_or_null(v, ranks) for v in old_values]
        else:
            old = [pa.nulls(n, v.type) for v in new]
        self._remember(ids, new)
        return _Changes(touched, matched, old, np.ones(n, dtype=bool), new)


class _Multiset:
    """The multiset of input rows per key and the values last emitted, for a changelog
    input (exact retraction of every aggregate)."""

    def __init__(self, group: list[str], aggregates: list[AggCall], input_schema: pa.Schema,
                 keyed: bool):
        self.group = group
        columns = [f for f in input_schema if f.name != OP]
        if not keyed:
            columns = [pa.field(_GLOBAL, pa.int8()), *columns]
        self.schema = pa.schema(columns)
        self.aggregator = Aggregator(aggregates, input_schema, None)
        self.rows = SideState(self.schema, group, {_MULT: np.int64})
        self.values: pa.Table | None = None
        self.pending: list[pa.Table] = []

    def add(self, keys: dict[str, pa.Array], batch: pa.RecordBatch, ctx) -> None:
        data = data_columns(batch)
        columns = {f.name: keys[f.name] if f.name in keys else data.column(f.name)
                   for f in self.schema}
        w = weights(batch)
        columns[NET] = pa.array(w)
        columns[LOWEST] = pa.array(np.minimum(w, 0))
        self.pending.append(pa.table(columns))
        if len(self.pending) >= _COMPACT_PENDING:
            self.pending = [self._net(self.pending)]

    def _net(self, tables: list[pa.Table]) -> pa.Table:
        """Equal rows' weights summed, in order (keyed_tables.net_rows)."""
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        return net_rows(table, self.schema.names, self.schema)

    def flush(self, now: int, ctx) -> _Changes | None:
        if not self.pending:
            return None
        delta = self._net(self.pending)
        self.pending = []
        if delta.num_rows == 0:
            return None
        names = self.schema.names
        rows = delta.select(names)
        stored = self.rows
        found = lookup(rows, names, stored.rows, names) if stored.size else \
            np.full(rows.num_rows, -1, dtype=np.int64)
        known = found >= 0
        have = np.zeros(rows.num_rows, dtype=np.int64)
        have[known] = stored[_MULT][found[known]]
        net, ignored = apply_net(delta.column(NET).to_numpy(), delta.column(LOWEST).to_numpy(),
                                 have)
        if ignored.any():
            ctx.metrics["corrupt_retractions"] += int(ignored.sum())
        if known.any():
            stored[_MULT][found[known]] += net[known]
        new = ~known & (net > 0)
        if new.any():
            stored.append(rows.filter(pa.array(new)), **{_MULT: net[new]})
        if (net < 0).any():
            stored.keep(stored[_MULT] > 0)
        changed = net != 0
        if not changed.any():
            return None
        touched = rows.filter(pa.array(changed)).select(self.group).group_by(
            self.group, use_threads=False).aggregate([]).select(self.group).combine_chunks()
        return self._recompute(touched, now)

    def _recompute(self, touched: pa.Table, now: int) -> _Changes:
        """The touched keys' aggregates from their rows, against the values emitted before."""
        n = touched.num_rows
        stored = self.rows
        owner = lookup(stored.rows, self.group, touched, self.group) if stored.size else \
            np.zeros(0, dtype=np.int64)
        mine = owner >= 0
        subset = repeat_rows(stored.take(mine), stored[_MULT][mine])
        where = np.repeat(owner[mine], stored[_MULT][mine])
        columns = {_ROW: pa.array(where)}
        columns.update(self.aggregator.prepare(subset))
        exists = np.zeros(n, dtype=bool)
        if subset.num_rows:
            states = self.aggregator.partial(pa.table(columns), [_ROW])
            position = states.column(_ROW).to_numpy()
            exists[position] = True
            index = np.full(n, -1, dtype=np.int64)
            index[position] = np.arange(states.num_rows)
            new = [take_or_null(v, index) for v in self.aggregator.final(states)]
        else:
            new = [pa.nulls(n, k.call.dtype) for k in self.aggregator.kernels]
        new = [v.cast(k.call.dtype) if not v.type.equals(k.call.dtype) else v
               for v, k in zip(new, self.aggregator.kernels)]
        values = self.values
        found = lookup(touched, self.group, values, self.group) if values is not None and \
            values.num_rows else np.full(n, -1, dtype=np.int64)
        old_exists = found >= 0
        value_cols = [f"_e{i}" for i in range(len(new))]
        if old_exists.any():
            old = [take_or_null(values.column(c), found) for c in value_cols]
        else:
            old = [pa.nulls(n, v.type) for v in new]
        kept = touched.filter(pa.array(exists))
        for c, v in zip(value_cols, new):
            kept = kept.append_column(c, v.filter(pa.array(exists)))
        kept = kept.append_column(_SEEN, pa.array(np.full(kept.num_rows, now, dtype=np.int64)))
        if values is None:
            self.values = kept
        else:
            untouched = np.ones(values.num_rows, dtype=bool)
            untouched[found[old_exists]] = False
            self.values = pa.concat_tables([values.filter(pa.array(untouched)),
                                            kept.cast(values.schema)])
        return _Changes(touched, old_exists, old, exists, new)

    def expire(self, before: int) -> None:
        values = self.values
        if values is None or values.num_rows == 0:
            return
        old = values.column(_SEEN).to_numpy() < before
        if not old.any():
            return
        gone = values.filter(pa.array(old)).select(self.group)
        self.values = values.filter(pa.array(~old))
        if self.rows.size:
            self.rows.keep(lookup(self.rows.rows, self.group, gone, self.group) < 0)

    def snapshot(self, mkg: int) -> dict[str, Any]:
        out: dict[str, Any] = {"rows": tag_key_groups(self.rows.table(), self.group, mkg)}
        if self.values is not None:
            out["values"] = tag_key_groups(self.values, self.group, mkg)
        if self.pending:
            self.pending = [self._net(self.pending)]
            out["pending"] = tag_key_groups(self.pending[0], self.group, mkg)
        return out

    def restore(self, state: dict[str, Any], keys: list[str], ctx) -> None:
        rows = own_rows(state.get("rows"), keys, ctx)
        self.rows.load(rows)
        self.values = own_rows(state.get("values"), keys, ctx)
        pending = own_rows(state.get("pending"), keys, ctx)
        self.pending = [pending] if pending is not None and pending.num_rows else []

    def rows_count(self) -> int:
        return self.rows.size + (self.values.num_rows if self.values is not None else 0)


class UpdatingAggregate(PeriodicFlush, Operator):
    """``GROUP BY keys`` with aggregates over an unbounded input, emitting a changelog.

    Input: the ``keys`` and the aggregates' argument and FILTER columns (plus ``_op`` when
    ``updating_input``). Output: the keys, then one column per aggregate (``output_schema``),
    then ``_op``.
    """

    accepts_merged_batches = True
    unfolded = frozenset({"table"})   # _Merged writes the deltas' rows into its SlotTable

    def __init__(self, keys: list[str], aggregates: list[AggCall], input_schema: pa.Schema,
                 output_schema: pa.Schema, time_column: str | None = None,
                 updating_input: bool = False, flush_us: int = 1_000_000,
                 ttl_us: int | None = None, updating_output: bool = True,
                 partial_input: bool = False, running_totals: bool = False):
        self.keys = list(keys)
        self.group = self.keys or [_GLOBAL]
        self.aggregates = list(aggregates)
        self.output_schema = output_schema
        self.updating_input = updating_input
        self.flush_us = max(0, int(flush_us))
        self.ttl_us = ttl_us
        #: False for SELECT DISTINCT over an append-only input: rows are only inserted
        self.updating_output = updating_output
        if updating_input:
            for call in aggregates:
                problem = retraction_problem(call)
                if problem is not None:
                    raise ValueError(problem)
            if running_totals and totals_apply(self.aggregates, input_schema):
                # count/sum/avg over a changelog caudal made: totals per key, not rows
                self.state: _Merged | _Multiset | RunningTotals = RunningTotals(
                    self.group, self.aggregates, input_schema)
            else:
                self.state = _Multiset(self.group, self.aggregates, input_schema,
                                       bool(self.keys))
        else:
            self.state = _Merged(self.group, self.aggregates, input_schema, time_column,
                                 partial_input)
            if not partial_input and _Percentiles.applies(self.state.aggregator, self.group, input_schema):
                self.state = _Percentiles(self.group, self.aggregates, input_schema,
                                          time_column)
        #: the global (keyless) group's row has been emitted
        self.emitted_global = False

    # ---- input ----------------------------------------------------------------------------

    def process(self, batch: pa.RecordBatch, input: int = 0) -> Sequence[pa.RecordBatch]:
        if batch.num_rows == 0:
            return ()
        if self.keys:
            keys = {k: batch.column(k) for k in self.keys}
        else:
            keys = {_GLOBAL: pa.array(np.zeros(batch.num_rows, dtype=np.int8))}
        self.state.add(keys, batch, self.ctx)
        if self._flush_due():
            return self.flush()
        return ()

    def on_end(self) -> Sequence[pa.RecordBatch]:
        out = self.flush()
        if not self.keys and not self.emitted_global:
            self.emitted_global = True
            out.extend(self._empty_global())
        return out

    # ---- flush ----------------------------------------------------------------------------

    def flush(self) -> list[pa.RecordBatch]:
        """Fold the pending changes into the state and emit what changed."""
        self._schedule_flush()
        now = clock.now_us()
        if self.ttl_us is not None:
            self.state.expire(now - self.ttl_us)
        changes = self.state.flush(now, self.ctx)
        if changes is None:
            return []
        if not self.keys:  # a global aggregate always has its one row
            changes.old_exists[:] = self.emitted_global
            changes.exists[:] = True
            # with no rows left it shows counts of 0 (what was emitted then, too)
            changes.new = [_zero_if_empty(v, c) for v, c in zip(changes.new, self.aggregates)]
            changes.old = [_zero_if_empty(v, c) for v, c in zip(changes.old, self.aggregates)]
            self.emitted_global = True
        return self._emit(changes)

    def _emit(self, changes: _Changes) -> list[pa.RecordBatch]:
        schema = self.output_schema
        key_arrays = [changes.keys.column(k) for k in self.keys]
        old, new = changes.old, changes.new
        old_exists, exists = changes.old_exists, changes.exists

        def rows(values: list[pa.Array], mask: np.ndarray) -> pa.Table:
            arrays = key_arrays + values
            if not mask.all():   # (all: every touched key is new, as while state grows)
                keep = from_numpy(mask)
                arrays = [pc.filter(a, keep) for a in arrays]
            arrays = [a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a
                      for a in arrays]
            return pa.Table.from_arrays([pc.cast(a, f.type) if not a.type.equals(f.type) else a
                                         for a, f in zip(arrays, schema)], schema=schema)

        both = old_exists & exists
        changed = both.copy()
        if both.any() and not old:  # no aggregate (DISTINCT): a key's row never changes
            changed[:] = False
        elif both.any():
            idx = from_numpy(np.flatnonzero(both))
            same = rows_equal([pc.take(v, idx) for v in old], [pc.take(v, idx) for v in new])
            changed[np.flatnonzero(both)[same]] = False
        pieces: list[pa.Table] = []
        ops: list[np.ndarray] = []
        gone = old_exists & ~exists
        if gone.any():
            pieces.append(rows(old, gone))
            ops.append(np.full(int(gone.sum()), DELETE, dtype=np.int8))
        if changed.any():
            pairs, pair_ops = interleave_updates(rows(old, changed), rows(new, changed))
            pieces.append(pairs)
            ops.append(pair_ops)
        born = exists & ~old_exists
        if born.any():
            pieces.append(rows(new, born))
            ops.append(np.full(int(born.sum()), INSERT, dtype=np.int8))
        if not pieces:
            return []
        table = pa.concat_tables(pieces)
        if not self.updating_output:
            return batches_of(table)
        table = table.append_column(pa.field(OP, OP_TYPE),
                                    from_numpy(np.concatenate(ops)))
        return batches_of(table)

    def _empty_global(self) -> list[pa.RecordBatch]:
        """The one row a keyless aggregate over no rows has: counts 0, the rest NULL."""
        arrays = [_zero_if_empty(pa.nulls(1, f.type), call)
                  for f, call in zip(self.output_schema, self.aggregates)]
        arrays.append(pa.array([INSERT], OP_TYPE))
        schema = self.output_schema.append(pa.field(OP, OP_TYPE))
        return [pa.RecordBatch.from_arrays(arrays, schema=schema)]

    # ---- checkpoints ----------------------------------------------------------------------

    def snapshot(self, epoch: int) -> dict[str, Any]:
        out = self.state.snapshot(self.ctx.max_key_groups)
        out["meta"] = pa.table({"emitted_global": pa.array([self.emitted_global])})
        return out

    def restore(self, state: dict[str, Any]) -> None:
        self.state.restore(state, self.keys, self.ctx)
        meta = state.get("meta")
        if meta is not None and meta.num_rows and (self.keys or self.ctx.subtask == 0):
            self.emitted_global = bool(pc.any(meta.column("emitted_global")).as_py())

    def state_rows(self) -> int:
        if isinstance(self.state, _Merged):
            return self.state.rows()
        return self.state.rows_count()


def _zero_if_empty(values: pa.Array, call: AggCall) -> pa.Array:
    """count() of no rows is 0, not NULL."""
    if call.func in COUNTS:
        return pc.fill_null(values, 0)
    return values
