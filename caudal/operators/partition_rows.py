"""The state of operators that recompute whole partitions of rows: updating top-N and OVER
aggregates over a changelog.

``PartitionRows`` keeps the rows of each partition (in a CompactRows store: NumPy buffers,
text with few distinct values as dictionary codes; plus the values last emitted for each
row: its rank, or its aggregates) and gives every row a sequence number
``_seq`` when it arrives. The number breaks ties in ORDER BY (earlier rows first, as Flink's
top-N does) and names a row across flushes, so a flush can say which rows entered, left or
changed. Arriving rows (or changes, for a changelog input) wait in ``pending`` until a
flush; ``take_touched`` then hands the operator every row of the partitions that changed
(old rows with their emitted values, new rows without, and the rows retracted) and drops them
from the state; the operator ranks or aggregates them and ``put``s back what it keeps.

Rows are found by partition with a hash of the partition columns (the hash the shuffle uses,
so it also gives the key group of a snapshot); a collision only brings extra rows along, which
are ranked within their own partition (``sort_partitions`` compares the columns themselves).
Dropped rows are marked dead and compacted away once they outnumber the living ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from caudal import compute as pc
from caudal import float_order
from caudal.operators.compact_rows import CompactRows, Growing
from caudal.operators.keyed_tables import (
    LOWEST,
    NET,
    apply_net,
    net_rows,
    own_rows,
    own_rows_mask,
    positional,
)
from caudal.plan.changelog import (
    DELETE,
    INSERT,
    OP,
    OP_TYPE,
    data_columns,
    interleave_updates,
    weights,
)
from caudal.state.incremental import RowChanges
from caudal.state.key_groups import hash_columns, key_group
from caudal.state.rescale import KEY_GROUP

SEQ = "_seq"
EMITTED = "_emitted"
#: net a changelog's pending changes once this many batches wait
_COMPACT_PENDING = 32


def _kept(values: np.ndarray, keep: np.ndarray | None) -> np.ndarray:
    return values if keep is None else values[keep]


def partition_hash(table: pa.Table | pa.RecordBatch, partition: list[str]) -> np.ndarray:
    """The shuffle's hash of each row's partition columns (all equal without PARTITION BY)."""
    if not partition:
        return np.zeros(table.num_rows, dtype=np.uint64)
    return hash_columns(table, partition)


def _equal_to_previous(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Per row after the first: equal to the row before (NULL equals NULL)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if len(column) < 2:
        return np.zeros(0, dtype=bool)
    a, b = column.slice(1), column.slice(0, len(column) - 1)
    eq = pc.fill_null(float_order.equal_or_both_nan(a, b), False)
    if column.null_count:
        eq = pc.or_(eq, pc.and_(pc.is_null(a), pc.is_null(b)))
    return eq.to_numpy(zero_copy_only=False)


def pick_rows(table: pa.Table, index: np.ndarray) -> pa.Table:
    """``table``'s rows at ``index``. Ascending indices (what ``flatnonzero`` gives) select
    by a mask: Arrow's filter copies text columns far faster than its take."""
    n = len(index)
    if n == 0:
        return table.slice(0, 0)
    if n == 1 or bool((index[1:] > index[:-1]).all()):
        if n == table.num_rows:
            return table
        mask = np.zeros(table.num_rows, dtype=bool)
        mask[index] = True
        return table.filter(pa.array(mask))
    return table.take(pa.array(index))


def _distinct(values: np.ndarray) -> np.ndarray:
    """The distinct values (hashed, not sorted)."""
    return pl.Series(values).unique().to_numpy()


@dataclass
class Sorted:
    """Rows ordered by partition, ORDER BY keys and ``_seq``: the order (indices into the
    rows), where partitions start and where runs of equal ORDER BY keys (peers) start."""

    indices: np.ndarray
    heads: np.ndarray
    peer_start: np.ndarray

    @property
    def gid(self) -> np.ndarray:
        """Dense partition number of each sorted row."""
        return np.cumsum(self.heads) - 1


def sort_partitions(table: pa.Table, h: np.ndarray, seq: np.ndarray, partition: list[str],
                    order: list[tuple[str, bool, bool]], later_ties: bool = False) -> Sorted:
    """One sort of ``table`` by (partition hash, partition columns, ORDER BY, ``_seq``);
    ``order`` items are (column, descending, nulls_first). Ties go to the earlier row
    (``_seq`` ascending), to the later one with ``later_ties``."""
    n = table.num_rows
    columns: dict[str, Any] = {"__h": pa.array(h)}
    keys: list[tuple[str, str]] = [("__h", "ascending")]
    for i, c in enumerate(partition):
        columns[f"__p{i}"] = table.column(c)
        keys.append((f"__p{i}", "ascending"))
    for i, (c, desc, nulls_first) in enumerate(order):
        values = table.column(c)
        if values.null_count:
            columns[f"__n{i}"] = pc.is_null(values)
            keys.append((f"__n{i}", "descending" if nulls_first else "ascending"))
        nan = float_order.sort_nan_key(values, desc)
        if nan is not None:
            columns[f"__f{i}"] = nan[0]
            keys.append((f"__f{i}", nan[1]))
        columns[f"__o{i}"] = values
        keys.append((f"__o{i}", "descending" if desc else "ascending"))
    columns["__s"] = pa.array(seq)
    keys.append(("__s", "descending" if later_ties else "ascending"))
    indices = pc.sort_indices(pa.table(columns), sort_keys=keys).to_numpy()
    heads = np.ones(n, dtype=bool)
    if n > 1:
        hs = h[indices]
        heads[1:] = hs[1:] != hs[:-1]
        take = pa.array(indices)
        for c in partition:
            heads[1:] |= ~_equal_to_previous(table.column(c).take(take))
    peer_start = heads.copy()
    if n > 1:
        take = pa.array(indices)
        for c, _, _ in order:
            peer_start[1:] |= ~_equal_to_previous(table.column(c).take(take))
    return Sorted(indices, heads, peer_start)


@dataclass
class Touched:
    """What a flush works on: every row of the partitions that changed.

    ``rows`` are the partitions' rows now (kept and new; data columns), with ``seq``,
    ``h``, the values last emitted for them (``old``: a table of value columns, NULL for new
    rows) and whether they were emitted (``old_emitted``). ``removed`` are rows retracted by
    the input, with their old values and flags, emitted as deletes when they had been."""

    rows: pa.Table
    seq: np.ndarray
    h: np.ndarray
    old: pa.Table
    old_emitted: np.ndarray
    removed: pa.Table
    removed_old: pa.Table
    removed_emitted: np.ndarray
    removed_seq: np.ndarray
    removed_h: np.ndarray


class PartitionRows:
    """Rows per partition, with the values last emitted for each (see the module doc)."""

    def __init__(self, data_schema: pa.Schema, partition: list[str],
                 value_fields: list[pa.Field], updating_input: bool, hashes: bool = True):
        self.data_schema = pa.schema([f for f in data_schema if f.name != OP])
        self.partition = list(partition)
        self.value_schema = pa.schema(value_fields)
        self.schema = pa.schema(list(self.data_schema) + list(self.value_schema))
        self.updating_input = updating_input
        self.store = CompactRows(self.schema)
        #: each row's partition hash, by which a flush finds the rows of the partitions it
        #: touched; None (``hashes`` False) for an operator that finds them otherwise (a
        #: top-1's slots): a snapshot then hashes the rows it writes
        self.h: Growing | None = Growing(np.uint64) if hashes else None
        #: without hashes: the key group of rows 0 .. n-1 (2 bytes a row), for the ``_mkg``
        #: of the snapshots; rows put since the last snapshot are hashed by the next, once
        self._groups = Growing(np.uint16)
        self._mkg = 0
        self.seq = Growing(np.int64)
        self.alive = Growing(bool)
        self.emitted = Growing(bool)
        self.dead = 0
        self.next_seq = 0
        #: what changed since the last snapshot (rows by ``_seq``), so a checkpoint writes
        #: only that
        self.changes = self._changes()
        #: append-only input: rows with ``_seq``; changelog input: rows with ``_w``
        self.pending: list[pa.Table] = []
        self.pending_rows = 0

    # ---- input ----------------------------------------------------------------------------

    def add(self, batch: pa.RecordBatch) -> None:
        """Queue an input batch for the next flush."""
        n = batch.num_rows
        data = pa.Table.from_batches([data_columns(batch)]).select(self.data_schema.names)
        if self.updating_input:
            w = weights(batch)
            data = data.append_column(NET, pa.array(w))
            data = data.append_column(LOWEST, pa.array(np.minimum(w, 0)))
        else:
            data = data.append_column(SEQ, pa.array(self._new_seq(n)))
        self.pending.append(data)
        self.pending_rows += n
        if self.updating_input and len(self.pending) >= _COMPACT_PENDING:
            # equal rows' changes summed (in order), so a hot row costs one pending row
            netted = net_rows(pa.concat_tables(self.pending), self.data_schema.names,
                              self.data_schema)
            self.pending, self.pending_rows = [netted], netted.num_rows

    def _new_seq(self, n: int) -> np.ndarray:
        out = np.arange(self.next_seq, self.next_seq + n, dtype=np.int64)
        self.next_seq += n
        return out

    # ---- state ----------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return self.store.num_rows - self.dead

    def _rows_of(self, touched: np.ndarray) -> np.ndarray:
        """Indices of the living rows whose partition hash is in ``touched``."""
        if self.store.num_rows == 0 or len(touched) == 0:
            return np.zeros(0, dtype=np.int64)
        assert self.h is not None
        found = pl.Series(self.h.values).is_in(pl.Series(touched).implode()).to_numpy()
        return np.flatnonzero(found & self.alive.values)

    def _changes(self) -> RowChanges:
        """What a checkpoint writes: rows by ``_seq``; a flush takes every row of the
        partitions it touches out and puts back those it keeps, and one put back with the
        value and flag it had at the previous snapshot is not written again."""
        return RowChanges(SEQ, mutable=[*self.value_schema.names, EMITTED])

    def _mutable(self, index: np.ndarray) -> pa.Table:
        """The values and the emitted flag of the rows at ``index``."""
        values = self.store.take(index, self.value_schema.names)
        return values.append_column(EMITTED, pa.array(self.emitted.values[index]))

    def _kill(self, index: np.ndarray) -> None:
        if len(index):
            self.changes.removing_at(index, self.seq.values[index], self._mutable)
            self.alive.buf[index] = False
            self.dead += len(index)

    def put(self, rows: pa.Table, values: pa.Table, seq: np.ndarray, h: np.ndarray | None,
            emitted: np.ndarray) -> np.ndarray | None:
        """Store rows (data columns) with the values emitted for them (and their partition
        hashes ``h``, None when the state keeps none); when that dropped the dead rows, the
        mask of the rows kept (row numbers then change)."""
        if rows.num_rows == 0:
            return None
        arrays = [rows.column(f.name) for f in self.data_schema]
        arrays += [values.column(f.name) for f in self.value_schema]
        self.store.append(pa.table(dict(zip(self.schema.names, arrays))))
        if self.h is not None:
            assert h is not None
            self.h.extend(h)
        self.seq.extend(seq)
        self.alive.extend(np.ones(len(seq), dtype=bool))
        self.emitted.extend(emitted)
        return self._compact()

    def _compact(self) -> np.ndarray | None:
        if self.dead > max(self.size, 4096):
            keep = self.alive.values
            self.changes.keep(keep)
            self.store.keep(keep)
            for column in (self.h, self.seq, self.emitted):
                if column is not None:
                    column.reset(column.values[keep])
            self._groups.reset(self._groups.values[keep[:self._groups.n]])
            self.alive.reset(np.ones(self.store.num_rows, dtype=bool))
            self.dead = 0
            return keep
        return None

    # ---- a flush --------------------------------------------------------------------------

    def take_touched(self, metrics: dict[str, int]) -> Touched | None:
        """Fold the pending input into the state and take out every row of the partitions
        it touched (see ``Touched``); None when nothing is pending."""
        if not self.pending:
            return None
        pending = pa.concat_tables(self.pending) if len(self.pending) > 1 else self.pending[0]
        self.pending, self.pending_rows = [], 0
        if self.updating_input:
            return self._take_changes(pending, metrics)
        new = pending.select(self.data_schema.names)
        new_h = partition_hash(new, self.partition)
        old_index = self._rows_of(_distinct(new_h))
        return self._assemble(old_index, new, pending.column(SEQ).to_numpy(), new_h,
                              np.zeros(0, dtype=np.int64))

    def _take_changes(self, pending: pa.Table, metrics: dict[str, int]) -> Touched | None:
        names = self.data_schema.names
        delta = net_rows(pending, names, self.data_schema)
        if delta.num_rows == 0:
            return None
        rows = delta.select(names)
        h = partition_hash(rows, self.partition)
        old_index = self._rows_of(_distinct(h))
        # the stored copies of each changed row: (delta row, state row) pairs
        left = positional(rows, names).with_row_index("_j")
        stored = self.store.take(old_index)
        right = positional(stored, names).with_row_index("_s")
        keys = [f"_k{i}" for i in range(len(names))]
        pairs = left.join(right, on=keys, how="inner", nulls_equal=True).select("_j", "_s")
        j = pairs["_j"].to_numpy().astype(np.int64)
        s = pairs["_s"].to_numpy().astype(np.int64)
        have = np.bincount(j, minlength=rows.num_rows)
        net, ignored = apply_net(delta.column(NET).to_numpy(), delta.column(LOWEST).to_numpy(),
                                 have)
        if ignored.any():
            metrics["corrupt_retractions"] = metrics.get("corrupt_retractions", 0) + \
                int(ignored.sum())
        # retract the first -net stored copies of each row
        order = np.argsort(j, kind="stable")
        j, s = j[order], s[order]
        first = np.searchsorted(j, j, side="left")
        removed = s[(np.arange(len(j)) - first) < np.maximum(-net, 0)[j]]
        add = np.maximum(net, 0)
        added = rows.take(pa.array(np.repeat(np.arange(rows.num_rows), add)))
        added_h = np.repeat(h, add)
        return self._assemble(old_index, added, self._new_seq(added.num_rows), added_h,
                              removed)

    def _assemble(self, old_index: np.ndarray, new: pa.Table, new_seq: np.ndarray,
                  new_h: np.ndarray, removed_local: np.ndarray) -> Touched:
        """Touched rows: the stored rows at ``old_index`` (minus ``removed_local``, positions
        within them) and the new rows; the stored ones leave the state."""
        assert self.h is not None
        stored = self.store.take(old_index)
        seq = self.seq.values[old_index]
        h = self.h.values[old_index]
        emitted = self.emitted.values[old_index]
        self._kill(old_index)
        gone = np.zeros(len(old_index), dtype=bool)
        gone[removed_local] = True
        keep = pa.array(~gone)
        data = stored.select(self.data_schema.names)
        values = stored.select(self.value_schema.names)
        gone_rows = pa.array(gone)
        new_values = pa.Table.from_arrays(
            [pa.nulls(new.num_rows, f.type) for f in self.value_schema], schema=self.value_schema)
        rows = pa.concat_tables([data.filter(keep), new.cast(self.data_schema)])
        old = pa.concat_tables([values.filter(keep), new_values])
        return Touched(
            rows=rows, seq=np.concatenate([seq[~gone], new_seq]),
            h=np.concatenate([h[~gone], new_h]), old=old,
            old_emitted=np.concatenate([emitted[~gone], np.zeros(new.num_rows, dtype=bool)]),
            removed=data.filter(gone_rows), removed_old=values.filter(gone_rows),
            removed_emitted=emitted[gone], removed_seq=seq[gone], removed_h=h[gone])

    # ---- checkpoints ----------------------------------------------------------------------

    def _key_groups(self, h: np.ndarray, mkg: int) -> pa.Array:
        if not self.partition:
            return pa.array(np.zeros(len(h), dtype=np.int32))
        return pa.array(key_group(h, mkg))

    def snapshot(self, mkg: int) -> dict[str, Any]:
        """The living rows whole the first time after open or restore, then what changed
        since the previous snapshot (rows put, ``_seq`` of rows dropped); the rows waiting
        for a flush whole."""
        seq, emitted = self.seq.values, self.emitted.values

        def rows_at(index: np.ndarray | None) -> pa.Table:
            # (fancy indexing and ``copy``: nothing shares the live arrays)
            table = self.store.snapshot(index=index)
            take = (lambda a: a.copy()) if index is None else (lambda a: a[index])
            table = table.append_column(SEQ, pa.array(take(seq)))
            table = table.append_column(EMITTED, pa.array(take(emitted)))
            if self.h is not None:
                return table.append_column(KEY_GROUP, self._key_groups(take(self.h.values), mkg))
            groups = self._stored_groups(mkg)
            return table.append_column(KEY_GROUP, pa.array(take(groups).astype(np.int32)))

        rows = self.changes.snapshot(self.store.num_rows, rows_at, {}, lambda t: t,
                                     live=self.alive.values if self.dead else None,
                                     nbytes=self.store.nbytes)
        out: dict[str, Any] = {"rows": rows}
        if self.pending:
            pending = pa.concat_tables(self.pending)
            self.pending = [pending]
            out["pending"] = pending.append_column(
                KEY_GROUP, self._key_groups(partition_hash(pending, self.partition), mkg))
        return out

    def _stored_groups(self, mkg: int) -> np.ndarray:
        """Without hashes: every stored row's key group; the rows put since the previous
        snapshot hashed now (their partition columns as stored, as the shuffle hashes)."""
        if mkg != self._mkg:
            self._groups = Growing(np.uint16 if mkg <= (1 << 16) else np.int32)
            self._mkg = mkg
        done, n = self._groups.n, self.store.num_rows
        if done < n:
            rows = self.store.take(np.arange(done, n), self.partition)
            self._groups.extend(key_group(partition_hash(rows, self.partition), mkg))
        return self._groups.values

    def restore(self, state: dict[str, Any], ctx: Any) -> None:
        """Keep this subtask's rows; number them again in their old order (rows of one
        partition all come from one old subtask, so their order is kept)."""
        # (rows: the old subtasks' tables as they are at another parallelism, ``Operator.
        # own_key_groups``: this subtask's rows are taken from them as they are copied)
        rows, keep = own_rows_mask(state.get("rows"), self.partition, ctx)
        if rows is not None and keep is not None and not keep.any():
            rows, keep = rows.slice(0, 0), None
        pending = own_rows(state.get("pending"), self.partition, ctx, combine=False)
        old_seq = [] if rows is None else [_kept(rows.column(SEQ).to_numpy(), keep)]
        if pending is not None and SEQ in pending.column_names:
            old_seq.append(pending.column(SEQ).to_numpy())
        if old_seq:
            everything = np.concatenate(old_seq)
            rank = np.empty(len(everything), dtype=np.int64)
            rank[np.argsort(everything, kind="stable")] = np.arange(len(everything))
            self.next_seq = len(everything)
        else:
            rank = np.zeros(0, dtype=np.int64)
        self.store = CompactRows(self.schema)
        self.changes = self._changes()
        for column in (self.h, self.seq, self.alive, self.emitted):
            if column is not None:
                column.reset(np.zeros(0, dtype=column.buf.dtype))
        self.dead = 0
        self._groups.reset(np.zeros(0, dtype=self._groups.buf.dtype))
        n = 0
        if rows is not None and rows.num_rows:
            # text a snapshot kept dictionary-encoded goes back into the store as codes, a
            # column at a time from the chunks as read (CompactRows.extend: no copy of the
            # whole table into one chunk first)
            data = rows.select(self.schema.names)
            self.store.extend(data, keep)
            n = self.store.num_rows
            if self.h is not None:
                keys = data.select(self.partition)   # (only these columns cut, to be hashed)
                self.h.extend(partition_hash(
                    keys if keep is None else keys.filter(pa.array(keep)), self.partition))
            self.seq.extend(rank[:n])
            self.alive.extend(np.ones(n, dtype=bool))
            self.emitted.extend(_kept(rows.column(EMITTED).to_numpy(), keep).astype(bool))
        self.pending, self.pending_rows = [], 0
        if pending is not None and pending.num_rows:
            if SEQ in pending.column_names:
                pending = pending.set_column(pending.column_names.index(SEQ), SEQ,
                                             pa.array(rank[n:]))
            self.pending = [pending]
            self.pending_rows = pending.num_rows


# ---- emitting a changelog -----------------------------------------------------------------


def images(rows: pa.Table, values: pa.Table, schema: pa.Schema) -> pa.Table:
    """Output rows: the data columns, then the value columns, in ``schema``."""
    arrays = []
    names = set(rows.column_names)
    for f in schema:
        col = rows.column(f.name) if f.name in names else values.column(f.name)
        arrays.append(col.cast(f.type) if not col.type.equals(f.type) else col)
    return pa.Table.from_arrays(arrays, schema=schema)


def changelog(schema: pa.Schema, deletes: list[pa.Table], before: list[pa.Table],
              after: list[pa.Table], inserts: list[pa.Table]) -> list[pa.RecordBatch]:
    """Deletes, then update pairs (``before[i]`` with ``after[i]``, adjacent), then
    inserts, as batches with ``_op``."""
    pieces: list[pa.Table] = []
    ops: list[np.ndarray] = []
    for t in deletes:
        if t.num_rows:
            pieces.append(t)
            ops.append(np.full(t.num_rows, DELETE, dtype=np.int8))
    for b, a in zip(before, after):
        if b.num_rows:
            pairs, pair_ops = interleave_updates(b, a)
            pieces.append(pairs)
            ops.append(pair_ops)
    for t in inserts:
        if t.num_rows:
            pieces.append(t)
            ops.append(np.full(t.num_rows, INSERT, dtype=np.int8))
    if not pieces:
        return []
    table = pa.concat_tables([p if p.schema.equals(schema) else p.cast(schema)
                              for p in pieces])
    table = table.append_column(pa.field(OP, OP_TYPE), pa.array(np.concatenate(ops), OP_TYPE))
    return [b for b in table.to_batches(max_chunksize=1 << 16) if b.num_rows]
