"""Incremental snapshots of large keyed state: an operator returns only what changed since
its previous snapshot, and the checkpoint keeps a chain ``full table, delta, delta, ...``
that a restore (or a background compaction) folds back into one table.

Writing 100 MB of state every second would cost more than the query; an updating aggregate
or a join buffer changes a small part of its keys per epoch. The rule for an operator:

- return a ``pyarrow.Table`` (the whole state) when it has no baseline: the first snapshot
  after ``open``/``restore``;
- afterwards it may return a ``StateDelta`` for the same name: the rows inserted or updated
  (whole rows, unique by ``key``), the keys deleted, and optionally ``expire=(column, value)``
  to drop every older row whose ``column`` is below ``value`` (closed windows, expired join
  rows); the delta's own upserts are not expired.

The checkpoint coordinator writes each delta as its own Parquet file and compacts the chain
into a new full file when it grows long or large; the operator never needs to know.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from caudal import compute as pc

#: column marking deleted keys in a delta file
DELETED = "_deleted"


@dataclass
class StateDelta:
    """The changes of one keyed state table since the operator's previous snapshot."""

    key: Sequence[str]
    #: whole rows that replace any row with the same key (keys unique within the delta)
    upserts: pa.Table | None = None
    #: the key columns of rows removed
    deletes: pa.Table | None = None
    #: drop the older rows (not these upserts) whose ``expire[0]`` is below ``expire[1]``
    expire: tuple[str, Any] | None = None

    def encode(self, schema: pa.Schema | None = None) -> pa.Table:
        """One table for the delta file: deleted keys (their other columns null, but for
        ``_key_group`` when given) then upserts, a boolean ``_deleted`` column telling them
        apart."""
        schema = schema or (self.upserts.schema if self.upserts is not None else None)
        if schema is None:
            schema = self.deletes.schema if self.deletes is not None else \
                pa.schema([(k, pa.null()) for k in self.key])   # nothing but an expiry
        parts = []
        # deletions first: a key deleted and inserted again since the last snapshot is
        # in both, and the later row of a key wins
        if self.deletes is not None and self.deletes.num_rows:
            n = self.deletes.num_rows
            cols = [self.deletes.column(f.name).cast(f.type)
                    if f.name in self.deletes.column_names else pa.nulls(n, f.type)
                    for f in schema]
            dele = pa.Table.from_arrays(cols, schema=schema)
            parts.append(dele.append_column(DELETED, pa.array(np.ones(n, dtype=bool))))
        if self.upserts is not None and self.upserts.num_rows:
            up = self.upserts.select(schema.names).cast(schema)
            parts.append(up.append_column(DELETED,
                                          pa.array(np.zeros(up.num_rows, dtype=bool))))
        if not parts:
            empty = schema.empty_table()
            return empty.append_column(DELETED, pa.array([], pa.bool_()))
        return pa.concat_tables(parts)


class Incremental:
    """What an operator tracks to snapshot incrementally; ``baseline`` is False until the
    first (whole) snapshot after open or restore has been taken."""

    baseline = False


class ChangedParts(Incremental):
    """Which keys of which parts of a state (window panes) changed since its previous
    snapshot: per part, the key columns of the tables filed into it (immutable Arrow
    tables, held by reference until the snapshot). Parts gone are expired by the lowest
    live part."""

    def __init__(self) -> None:
        self.parts: dict[int, list[pa.Table]] = {}

    def touch(self, part: int, keys: pa.Table) -> None:
        if self.baseline:
            self.parts.setdefault(part, []).append(keys)

    def take(self) -> dict[int, list[pa.Table]]:
        """The parts changed since the last call and their touched keys."""
        out, self.parts = self.parts, {}
        return out

    @staticmethod
    def changed_rows(rows: pa.Table, touched: list[pa.Table], key: Sequence[str]) -> pa.Table:
        """The rows of a part whose key was touched."""
        if not key:
            return rows
        keys = pa.concat_tables(touched) if len(touched) > 1 else touched[0]
        if keys.num_rows >= rows.num_rows:
            return rows
        mask = key_membership(rows, keys, key)
        return rows if mask.all() else rows.filter(pa.array(mask))


class ChangedRows(Incremental):
    """Which rows of a keyed state table changed since its previous snapshot, for a table
    kept by dense row id (operators.key_index.SlotTable: ``take(ids)``, ``table()``,
    ``size``). The first snapshot (after open, restore, or a reload of the table) is the
    whole table; later ones are a ``StateDelta`` of the rows touched and the keys removed.
    Costs a flag per row, set where the rows are written."""

    def __init__(self) -> None:
        self._dirty = np.zeros(0, dtype=bool)
        self._removed: list[pa.Table] = []

    def touch(self, ids: np.ndarray) -> None:
        """Rows ``ids`` were written (inserted or changed)."""
        if not self.baseline or len(ids) == 0:
            return
        top = int(ids.max()) + 1
        if top > len(self._dirty):
            grown = np.zeros(max(top, 2 * len(self._dirty)), dtype=bool)
            grown[:len(self._dirty)] = self._dirty
            self._dirty = grown
        self._dirty[ids] = True

    def removed(self, keys: pa.Table, keep: np.ndarray) -> None:
        """The rows not in ``keep`` (a mask over the ids) are gone, their ``keys`` given;
        the rows kept are renumbered in order."""
        if not self.baseline:
            return
        if keys.num_rows:
            self._removed.append(keys)
        dirty = np.zeros(len(keep), dtype=bool)
        n = min(len(keep), len(self._dirty))
        dirty[:n] = self._dirty[:n]
        self._dirty = dirty[keep]

    def snapshot(self, store: Any, tag: Any, key: Sequence[str]) -> pa.Table | StateDelta:
        """The whole table (through ``tag``: key groups added) or what changed since the last
        snapshot; copies either way (never shares memory with ``store``)."""
        if not self.baseline:
            self.baseline = True
            self._dirty = np.zeros(store.size, dtype=bool)
            self._removed = []
            return tag(store.table())
        ids = np.flatnonzero(self._dirty[:store.size])
        deletes = tag(pa.concat_tables(self._removed)) if self._removed else None
        self._dirty = np.zeros(store.size, dtype=bool)
        self._removed = []
        return StateDelta(list(key), upserts=tag(store.take(ids)), deletes=deletes)


#: the row id column of a row store's snapshots (``RowChanges``)
ROW_ID = "_rid"
#: a row store's delta that replaces or removes rows (not one that only appends) and would
#: name more than this share of its rows, or take more than this share of the store's
#: bytes, is written as the whole table instead: such deltas soon outweigh the whole table,
#: and the chain's fold then reads both and writes it again (q19's deltas named 6-8 % of
#: its rows but took a third of its bytes: the dictionary of its long text column, which
#: most rows of any delta use, went into every delta; with their compactions they cost
#: more CPU than whole snapshots). A delta that only appends is written however large: its
#: fold is a pass, and a store that grows is folded once per doubling (q20)
WHOLE_SHARE = 0.25


class RowChanges(Incremental):
    """Which rows of a row store changed since its previous snapshot, for a store whose rows
    are not unique by any column (an updating join's side, a top-N's rows): rows are appended
    at the end, removed by a mask that keeps the others in order, and a few integer columns
    (``counters``: match counts, multiplicities) change in place. Each row gets an id (the
    key of the chain's deltas): with ``numbered``, the tracker numbers the rows in the order
    they were appended (column ``ROW_ID``; a restore numbers them afresh, as its first
    snapshot is whole again); otherwise the caller's rows carry an id column of their own
    (a top-N's ``_seq``) and the caller reports the ids of the rows it drops.

    Costs nothing per batch: a delta is the rows appended since the previous snapshot, the
    rows whose counters differ from a copy of them taken then (one NumPy comparison per
    counter at the barrier), and the ids of the rows removed. Ids cost no memory until rows
    other than a prefix are removed (id = position + rows removed before them)."""

    def __init__(self, key: str | None = None, mutable: Sequence[str] = ()) -> None:
        #: the caller's id column, or None: the tracker numbers the rows (``ROW_ID``)
        self.key = key or ROW_ID
        self.numbered = key is None
        #: with the caller's ids: the columns a row dropped and put back under its id may
        #: have changed (a top-N's rank); its other columns are the id's. A row put back as
        #: the previous snapshot holds it is neither deleted nor upserted
        self.mutable = list(mutable)
        #: the ids and ``mutable`` columns of rows of the previous snapshot dropped since
        self.dropped: list[tuple[np.ndarray, pa.Table]] = []
        #: the first ``mark`` rows were in the previous snapshot; the rest are new
        self.mark = 0
        #: the counters of those rows as that snapshot wrote them
        self.mirror: dict[str, np.ndarray] = {}
        self.removed: list[np.ndarray] = []
        #: column types of the previous snapshot: a column that changes its form (text
        #: no longer dictionary-encoded) makes the next snapshot whole
        self.types: list[pa.DataType] | None = None
        #: own ids: position + ``offset``, until ``ids`` (ids of the first len(ids) rows;
        #: rows after them get ``next_id`` on) once rows other than a prefix were removed
        self.offset = 0
        self.ids: np.ndarray | None = None
        self.next_id = 0

    def _ids(self, n: int) -> np.ndarray:
        """The ids of every row of a store of ``n`` rows (own ids, explicit from now on)."""
        if self.ids is None:
            self.ids = np.arange(self.offset, self.offset + n, dtype=np.int64)
            self.next_id = self.offset + n
        elif len(self.ids) < n:
            more = n - len(self.ids)
            self.ids = np.concatenate([self.ids, np.arange(self.next_id, self.next_id + more,
                                                           dtype=np.int64)])
            self.next_id += more
        return self.ids

    def _row_ids(self, index: np.ndarray, n: int) -> np.ndarray:
        """The own ids of the rows at positions ``index`` of a store of ``n`` rows."""
        if self.ids is None:
            return self.offset + index
        return self._ids(n)[index]

    def removing(self, ids: np.ndarray) -> None:
        """Rows with these ids (the caller's) are dropped. Ids of rows appended since the
        previous snapshot may be among them: a delta deletes before it upserts, and
        deleting an id the chain lacks is harmless."""
        if self.baseline and len(ids):
            self.removed.append(np.asarray(ids, dtype=np.int64))

    def removing_at(self, positions: np.ndarray, ids: np.ndarray,
                    mutable: Any = None) -> None:
        """``removing`` of the rows at ``positions`` of the store, their ``ids`` given;
        ``mutable(positions)`` gives the ``mutable`` columns of the rows at some of them (a
        table), asked for those the previous snapshot holds."""
        if not self.baseline or not len(ids):
            return
        self.removed.append(np.asarray(ids, dtype=np.int64))
        if self.mutable and mutable is not None:
            old = positions < self.mark
            if old.any():
                self.dropped.append((np.asarray(ids, dtype=np.int64)[old],
                                     mutable(positions[old])))

    def keep(self, mask: np.ndarray) -> None:
        """The store keeps only the rows where ``mask`` is True (call before it does)."""
        if not self.baseline:
            return
        n = len(mask)
        before = mask[:self.mark]
        if self.numbered:
            gone = np.flatnonzero(~before)
            if len(gone):
                self.removed.append(self._row_ids(gone, n))
            first = int(np.argmax(mask)) if mask.any() else n
            if mask[first:].all():   # a prefix goes (expiry by time): ids stay implicit
                if self.ids is None:
                    self.offset += first
                else:
                    self.ids = self._ids(n)[first:]
            else:
                self.ids = self._ids(n)[mask]
        self.mirror = {c: v[before] for c, v in self.mirror.items()}
        self.mark = int(np.count_nonzero(before))

    def snapshot(self, n: int, rows: Any, counters: dict[str, np.ndarray], tag: Any,
                 live: np.ndarray | None = None, nbytes: int | None = None
                 ) -> pa.Table | StateDelta:
        """The whole table, or what changed since the previous snapshot as a ``StateDelta``
        keyed by the row id. ``n``: rows in the store; ``rows(index)``: its rows at
        positions ``index`` (None: all) as a snapshot (new memory or immutable arrays; with
        the caller's id column when not ``numbered``); ``counters``: the columns changed in
        place, appended here (copied); ``tag``: adds key groups; ``live``: a mask of the
        rows that count (only with the caller's ids: the others are dead rows still in the
        store, whose ids it gave ``removing``); ``nbytes``: the store's size in memory (a
        delta larger than ``WHOLE_SHARE`` of it is the whole table instead)."""
        assert live is None or not self.numbered
        if self.baseline:
            changed = np.zeros(self.mark, dtype=bool)
            for name, old in self.mirror.items():
                changed |= counters[name][:self.mark] != old
            index = np.concatenate([np.flatnonzero(changed),
                                    np.arange(self.mark, n, dtype=np.int64)])
            if live is not None:
                index = index[live[index]]
            upserts = self._rows(rows, index, n, counters)
            if [f.type for f in upserts.schema] == self.types:
                removed = np.concatenate(self.removed) if self.removed else \
                    np.zeros(0, dtype=np.int64)
                if self.dropped:
                    upserts, removed = self._put_back(upserts, removed)
                live_rows = n if live is None else int(np.count_nonzero(live[:n]))
                replaces = len(removed) > 0 or bool(changed.any())
                if replaces and (
                        upserts.num_rows + len(removed) > WHOLE_SHARE * max(live_rows, 1) or
                        (nbytes is not None and upserts.nbytes > WHOLE_SHARE * nbytes)):
                    return self._whole(rows, n, counters, tag, live)
                self._taken(n, counters)
                return StateDelta([self.key], upserts=tag(upserts),
                                  deletes=pa.table({self.key: pa.array(removed)}))
        return self._whole(rows, n, counters, tag, live)

    def _whole(self, rows: Any, n: int, counters: dict[str, np.ndarray], tag: Any,
               live: np.ndarray | None) -> pa.Table:
        """The whole table, the new baseline (own ids numbered afresh from 0)."""
        self.baseline = False
        table = self._rows(rows, None if live is None else np.flatnonzero(live), n, counters)
        self.baseline, self.types = True, [f.type for f in table.schema]
        self.offset, self.ids, self.next_id = 0, None, 0
        self._taken(n, counters)
        return tag(table)

    def _rows(self, rows: Any, index: np.ndarray | None, n: int,
              counters: dict[str, np.ndarray]) -> pa.Table:
        table = rows(index)
        if self.numbered:
            ids = np.arange(n, dtype=np.int64) if not self.baseline else \
                self._row_ids(index, n) if index is not None else self._ids(n).copy()
            table = table.append_column(ROW_ID, pa.array(ids, pa.int64()))
        for name, value in counters.items():
            table = table.append_column(name, pa.array(
                value[:n].copy() if index is None else value[index]))
        return table

    def _put_back(self, upserts: pa.Table, removed: np.ndarray
                  ) -> tuple[pa.Table, np.ndarray]:
        """``upserts`` and ``removed`` without the rows dropped and put back as the
        previous snapshot holds them (same id, same ``mutable`` columns)."""
        ids = np.concatenate([i for i, _ in self.dropped])
        was = pa.concat_tables([t for _, t in self.dropped])
        order = np.argsort(ids, kind="stable")
        new_ids = upserts.column(self.key).to_numpy()
        at = np.searchsorted(ids, new_ids, sorter=order)
        at = order[np.minimum(at, len(ids) - 1)]
        found = ids[at] == new_ids
        if not found.any():
            return upserts, removed
        rows, old = np.flatnonzero(found), at[found]
        same = np.ones(len(rows), dtype=bool)
        for name in self.mutable:
            a = upserts.column(name).take(pa.array(rows))
            b = was.column(name).take(pa.array(old))
            if not a.type.equals(b.type):
                b = b.cast(a.type)
            eq = pc.fill_null(pc.equal(a, b), False)
            both = pc.and_(pc.is_null(a), pc.is_null(b))
            same &= pc.or_(eq, both).to_numpy(zero_copy_only=False)
        if not same.any():
            return upserts, removed
        unchanged = np.zeros(upserts.num_rows, dtype=bool)
        unchanged[rows[same]] = True
        upserts = upserts.filter(pa.array(~unchanged))
        return upserts, removed[~np.isin(removed, new_ids[unchanged])]

    def _taken(self, n: int, counters: dict[str, np.ndarray]) -> None:
        """A snapshot of the store's ``n`` rows was taken."""
        self.mark, self.removed, self.dropped = n, [], []
        self.mirror = {c: v[:n].copy() for c, v in counters.items()}


def key_membership(base: pa.Table, keys: pa.Table, key: Sequence[str]) -> np.ndarray:
    """Which rows of ``base`` have a key among ``keys`` (nulls equal to nulls)."""
    if base.num_rows == 0 or keys.num_rows == 0:
        return np.zeros(base.num_rows, dtype=bool)
    if _above(base, keys, key):   # (rows appended since the base: none of its keys)
        return np.zeros(base.num_rows, dtype=bool)
    import polars as pl

    packed = _packed_pair(base, keys, key)
    if packed is not None:   # two small integer columns as one exact int64
        # a hash set (Polars), not np.isin's sort of both sides: 12 M window rows against
        # 360 k keys in 0.05 CPU s instead of 0.2-0.27
        return pl.Series(packed[0]).is_in(pl.Series(packed[1]).implode()).to_numpy()
    if len(key) == 1:   # one column: a membership test, no join
        column = pl.from_arrow(base.column(key[0]))
        if isinstance(column, pl.DataFrame):
            column = column.to_series()
        others = pl.from_arrow(keys.column(key[0]).cast(base.schema.field(key[0]).type))
        if isinstance(others, pl.DataFrame):
            others = others.to_series()
        return column.is_in(others.implode(), nulls_equal=True).to_numpy()
    left = pl.from_arrow(base.select(list(key))).with_row_index("_row")
    right = pl.from_arrow(keys.select(list(key))).unique()
    found = left.join(right, on=list(key), how="semi", nulls_equal=True)["_row"]
    mask = np.zeros(base.num_rows, dtype=bool)
    mask[found.to_numpy()] = True
    return mask


def _above(base: pa.Table, keys: pa.Table, key: Sequence[str]) -> bool:
    """Whether every one of ``keys`` is above every key of ``base`` (one integer column
    without NULLs): the row ids a row store appended after its whole table was taken."""
    if len(key) != 1:
        return False
    low, high = keys.column(key[0]), base.column(key[0])
    if not (pa.types.is_integer(low.type) and pa.types.is_integer(high.type)) or \
            low.null_count or high.null_count:
        return False
    return int(pc.min(low).as_py()) > int(pc.max(high).as_py())


def _packed_pair(base: pa.Table, keys: pa.Table, key: Sequence[str]
                 ) -> tuple[np.ndarray, np.ndarray] | None:
    """Two integer key columns without NULLs whose values all fit 32 bits (a window's pane
    and an id), each row's pair as one int64 (high and low halves: exact), for ``base``
    and ``keys``; None when the key is not such a pair."""
    if len(key) != 2:
        return None
    out = []
    for table in (base, keys):
        halves = []
        for name in key:
            col = table.column(name)
            if not pa.types.is_integer(col.type) or col.null_count:
                return None
            values = col.to_numpy().astype(np.int64, copy=False)
            if len(values) and (values.min() < -(1 << 31) or values.max() >= 1 << 31):
                return None
            halves.append(values)
        packed = np.left_shift(halves[0], 32)   # in place from here: one temporary
        packed |= np.bitwise_and(halves[1], 0xFFFFFFFF)
        out.append(packed)
    return out[0], out[1]


def rows_without_keys(base: pa.Table, keys: pa.Table, key: Sequence[str]) -> pa.Table:
    """The rows of ``base`` whose key is not among ``keys`` (nulls equal to nulls): one
    membership mask and one filter."""
    touched = key_membership(base, keys, key)
    return base.filter(pa.array(~touched)) if touched.any() else base


Expiry = tuple[str, Any]


def expiries(expire: Any) -> list[Expiry]:
    """The expiries of a file: None, one ``(column, value)``, or a list of them (a delta
    merged from several by compaction)."""
    if expire is None:
        return []
    if len(expire) == 2 and isinstance(expire[0], str):
        return [(expire[0], expire[1])]
    return [(str(e[0]), e[1]) for e in expire]


def _survives(col: pa.ChunkedArray | pa.Array, value: Any) -> pa.ChunkedArray | pa.Array:
    """Rows of ``col`` not expired by ``value`` (NULL never expires)."""
    if pa.types.is_timestamp(col.type) and isinstance(value, int):
        col = col.cast(pa.int64())
    if isinstance(value, pa.Array):
        value = value.cast(col.type)
    else:
        value = pa.scalar(value).cast(col.type)
    return pc.fill_null(pc.greater_equal(col, value), True)


def expire_rows(table: pa.Table, expire: Any) -> pa.Table:
    """``table`` without the rows the expiries (see ``expiries``) drop."""
    for column, value in expiries(expire):
        if table.num_rows == 0:
            break
        mask = _survives(table.column(column), value)
        if not pc.all(mask).as_py():
            table = table.filter(mask)
    return table


def apply_delta(base: pa.Table | None, delta: pa.Table, key: Sequence[str],
                expire: Any = None) -> pa.Table:
    """Fold one delta file's table into ``base`` (None: empty state): the base's rows of
    keys the delta names are replaced (or deleted), the rest go through the expiries, and
    the delta's upserts are added (an expiry concerns older rows, never its own delta's)."""
    if base is None:
        return delta.filter(pc.invert(delta.column(DELETED))).drop_columns([DELETED])
    kept, upserts = split_delta(base, delta, key, expire)
    return pa.concat_tables([kept, upserts]) if upserts.num_rows else kept


def split_delta(base: pa.Table, delta: pa.Table, key: Sequence[str],
                expire: Any = None) -> tuple[pa.Table, pa.Table]:
    """``apply_delta`` in two parts whose keys are disjoint: the base's rows that survive
    the delta (in the base's order) and the delta's upserts (as the base's columns)."""
    upserts, keys = _upserts_and_keys(delta, key)
    kept = expire_rows(rows_without_keys(base, keys, key), expire)
    # a delta of deletions or expiries only has just the key columns (and no upserts)
    return kept, _conform(upserts, kept.schema)


def _upserts_and_keys(delta: pa.Table, key: Sequence[str]) -> tuple[pa.Table, pa.Table]:
    """A delta's upserted rows, and the keys of all its rows (upserted or deleted)."""
    rows = delta.drop_columns([DELETED])
    if not pc.any(delta.column(DELETED)).as_py():   # (no deletion: no copy of the rows)
        return rows, rows.select(list(key))
    return rows.filter(pc.invert(delta.column(DELETED))), rows.select(list(key))


Part = tuple[pa.Table, str, Sequence[str], Any]


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with ``schema``'s columns (those it lacks: NULL)."""
    if table.schema.equals(schema):
        return table
    return pa.Table.from_arrays(
        [table.column(f.name).cast(f.type) if f.name in table.column_names
         else pa.nulls(table.num_rows, f.type) for f in schema], schema=schema)


def _plain_key(t: pa.DataType) -> bool:
    return (pa.types.is_integer(t) or pa.types.is_timestamp(t) or pa.types.is_date(t)
            or pa.types.is_string(t) or pa.types.is_large_string(t))


def _increasing(table: pa.Table, key: Sequence[str]) -> np.ndarray | None:
    """The values of a one-column integer key without NULLs when they strictly increase
    (so are unique: the row ids of a row store's deltas that only append, in order), or
    None. One pass, where a hash of every key costs ~10x that."""
    if len(key) != 1:
        return None
    column = table.column(key[0])
    if not pa.types.is_integer(column.type) or column.null_count:
        return None
    values = column.to_numpy()
    return values if len(values) < 2 or bool((values[1:] > values[:-1]).all()) else None


def _newest_rows(table: pa.Table, key: list[str]) -> np.ndarray:
    """The positions of each key's last row, in order (NULL keys equal). Integer, time and
    text keys by Arrow's hash group-by (a restore then imports no Polars: ~0.15 s), other
    key types by Polars; keys that strictly increase are unique already."""
    if _increasing(table, key) is not None:
        return np.arange(table.num_rows, dtype=np.int64)
    if all(_plain_key(table.schema.field(k).type) for k in key):
        rows = table.select(key).append_column(
            "_row", pa.array(np.arange(table.num_rows, dtype=np.int64)))
        last = rows.group_by(key, use_threads=False).aggregate([("_row", "max")])
        return np.sort(last.column("_row_max").to_numpy())
    import polars as pl

    frame = pl.from_arrow(table.select(key)).with_row_index("_row")
    newest = frame.unique(subset=key, keep="last", maintain_order=True)["_row"]
    return newest.to_numpy().astype(np.int64)


def merge_deltas(deltas: Sequence[Part], combine: bool = True
                 ) -> tuple[pa.Table, list[Expiry]]:
    """Several consecutive delta files as one: per key the newest row (or deletion), each
    row already put through the expiries of the later deltas (an upsert they expire becomes
    a deletion, so it still removes the older row of its key), and the expiries of all of
    them to apply to what lies below. Folding the result onto a base gives what
    folding the deltas one by one gives, with one join against the base instead of one per
    delta: how compaction merges a tier of deltas, and how a restore reads a chain.
    ``combine``: the result in one chunk per column (False: the files' chunks as they are,
    for a caller that folds it into a table of many chunks anyway: combining copies every
    row, and unifies the files' dictionaries row by row)."""
    key = list(deltas[0][2])
    # a delta of deletions only has just the key columns
    schema = pa.unify_schemas([t.schema for t, *_ in deltas])
    tables = [_conform(t, schema) for t, *_ in deltas]
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    source = np.repeat(np.arange(len(tables), dtype=np.int32), [t.num_rows for t in tables])
    if len(tables) > 1 and table.num_rows:
        rows = _newest_rows(table, key)
        if len(rows) < table.num_rows:   # (all of them, in order: nothing to take)
            table, source = table.take(pa.array(rows)), source[rows]
    if combine:
        table = table.combine_chunks()
    # per column, the highest threshold of the expiries after each delta
    rules: dict[str, list[Any]] = {}
    for i, (_, _, _, expire) in enumerate(deltas):
        for column, value in expiries(expire):
            rules.setdefault(column, [None] * len(deltas))[i] = value
    gone = table.column(DELETED).to_numpy(zero_copy_only=False).copy()
    combined: list[Expiry] = []
    for column, values in rules.items():
        after: list[Any] = []   # after[i]: the highest threshold of deltas i+1 ..
        best = None
        for v in reversed(values):
            after.append(best)
            best = v if best is None or (v is not None and v > best) else best
        after.reverse()
        combined.append((column, best))
        if table.num_rows and any(a is not None for a in after):
            threshold = pa.array(after).take(pa.array(source))
            survives = _survives(table.column(column), threshold)
            gone |= ~survives.to_numpy(zero_copy_only=False)
    if gone.any() and not table.column(DELETED).to_numpy(zero_copy_only=False).all():
        table = table.set_column(table.schema.get_field_index(DELETED), DELETED,
                                 pa.array(gone))
    return table, combined


@dataclass(frozen=True)
class Unfolded:
    """A restored state table as its whole table and the deltas after it merged into one
    (``merge_deltas``), not yet applied. Folding copies the whole table once more (and
    tests every row's key against the delta); an operator that copies the table into its
    own structures anyway (a SlotTable, keyed by a KeyIndex) can instead take the base
    and then write the delta's upserts where their keys are, in time proportional to
    the delta. Only operators that say so get one (``Operator.unfolded``); for every other
    the chain is folded when read.

    ``base`` is the whole table or, as a restore reads it, its Parquet file's bytes (size
    and checksum verified), so that the operator can decode it a row group at a time
    straight into its own arrays: a 1 GB state is then not decoded into 1 GB of Arrow
    memory first."""

    base: pa.Table | pa.Buffer
    #: the merged delta: unique by ``key``, ``DELETED`` marking deletions (None: the chain
    #: is the whole table alone)
    delta: pa.Table | None = None
    key: tuple[str, ...] = ()
    expire: tuple[Expiry, ...] = ()
    #: the checksum of ``base``'s bytes, still running while they are decoded (a restore
    #: from a cold page cache reads the file from disk as it decodes it): nothing decoded
    #: from them is handed out before it has passed, and a failed one is what a decoding
    #: error reports (None: checked already)
    verified: Future[None] | None = field(default=None, compare=False)

    def checked(self) -> None:
        """Wait until ``base`` has passed its checksum (raises what the check raised)."""
        if self.verified is not None:
            self.verified.result()

    @contextmanager
    def _decoding(self) -> Iterator[None]:
        """Decoding ``base``: an error from bytes that fail their checksum is reported as
        that failure (DamagedCheckpoint), not as what the decoder made of them."""
        try:
            yield
        except Exception:
            self.checked()
            raise

    def __getstate__(self) -> dict[str, Any]:
        # shipped to another process (Ray): checked first, and sent without the check
        self.checked()
        return {**self.__dict__, "verified": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)

    def _file(self) -> Any:
        import pyarrow.parquet as pq

        with self._decoding():
            return pq.ParquetFile(pa.BufferReader(self.base))

    @property
    def schema(self) -> pa.Schema:
        return self.base.schema if isinstance(self.base, pa.Table) else \
            self._file().schema_arrow

    @property
    def base_rows(self) -> int:
        return self.base.num_rows if isinstance(self.base, pa.Table) else \
            self._file().metadata.num_rows

    def base_table(self, columns: Sequence[str] | None = None, check: bool = True
                   ) -> pa.Table:
        """The base's ``columns`` (None: all), decoded. ``check=False``: without waiting for
        its checksum, for a caller that calls ``checked`` before it hands out anything made
        from them."""
        if isinstance(self.base, pa.Table):
            return self.base if columns is None else self.base.select(list(columns))
        with self._decoding():
            table = self._file().read(columns=None if columns is None else list(columns))
        if check:
            self.checked()
        return table

    def base_batches(self, columns: Sequence[str]) -> Iterator[pa.Table]:
        """The base's ``columns``, a row group at a time, in order; the next row group is
        decoded on another thread while the caller copies this one. The last row group
        comes once the file has passed its checksum: a caller that copies the row groups
        into its own structures has then taken nothing from a damaged file (it gets the
        error instead of the last one)."""
        if isinstance(self.base, pa.Table):
            yield from (pa.Table.from_batches([b]) for b in
                        self.base.select(list(columns)).to_batches())
            return
        from concurrent.futures import ThreadPoolExecutor

        file, names = self._file(), list(columns)
        count = file.metadata.num_row_groups
        with ThreadPoolExecutor(1, thread_name_prefix="caudal-restore-decode") as pool:
            ahead = pool.submit(file.read_row_group, 0, names) if count else None
            for i in range(count):
                with self._decoding():
                    table = ahead.result()
                if i + 1 < count:
                    ahead = pool.submit(file.read_row_group, i + 1, names)
                else:
                    self.checked()
                yield table
        if not count:
            self.checked()

    def table(self) -> pa.Table:
        """The folded state (what ``fold_chain`` returns)."""
        if self.delta is None:
            return self.base_table()
        return apply_delta(self.base_table(), self.delta, self.key, list(self.expire))

    def split(self, columns: Sequence[str] | None = None) -> tuple[pa.Table, pa.Table]:
        """The state in two parts with disjoint keys (``split_delta``): the base's rows the
        deltas leave, in the base's order, and the deltas' upserts; both with ``columns``
        only (None: all), so that a column the caller drops is not decoded at all. A base
        still in its file is split a row group at a time as it is decoded (the next one on
        another thread): each decoded row group is filtered and let go, so the decoder's
        memory is reused instead of a whole decoded table being held beside its filtered
        copy."""
        names = list(self.schema.names if columns is None else columns)
        if self.delta is None:
            base = self.base_table(names)
            return base, base.slice(0, 0)
        expire = list(self.expire)
        if isinstance(self.base, pa.Table):
            kept, upserts = split_delta(self.base, self.delta, self.key, expire)
            return kept.select(names), upserts.select(names)
        # the key and expiry columns are read even when the caller drops them
        needed = names + [c for c in (*self.key, *(e[0] for e in expire)) if c not in names]
        schema = pa.schema([self.schema.field(n) for n in needed])
        upserts, keys = _upserts_and_keys(self.delta, self.key)
        kept = [expire_rows(rows_without_keys(part, keys, self.key), expire)
                for part in self.base_batches(needed)]
        table = pa.concat_tables(kept) if kept else schema.empty_table()
        return table.select(names), _conform(upserts, schema).select(names)

    def upserts(self) -> pa.Table | None:
        """The delta's rows when it only inserts or replaces rows (no deletion, no expiry
        with a threshold), as the base's columns: applying it is writing them by key. None
        otherwise."""
        schema = self.schema
        if self.delta is None:
            return schema.empty_table()
        if any(v is not None for _, v in self.expire):
            return None
        if pc.any(self.delta.column(DELETED)).as_py():
            return None
        if not set(schema.names) <= set(self.delta.column_names):
            return None
        return _conform(self.delta, schema)


def unfold_chain(parts: Sequence[Part], verified: Future[None] | None = None
                 ) -> pa.Table | Unfolded:
    """What ``fold_chain`` returns, but a whole table followed by deltas as ``Unfolded``
    (the whole table may be given as its Parquet file's bytes, whose checksum
    ``verified`` may still be computing)."""
    start = max((i for i, p in enumerate(parts) if p[1] == "full"), default=-1)
    if start < 0:
        return fold_chain([(_decoded(p[0]), *p[1:]) for p in parts])
    if start == len(parts) - 1:
        return Unfolded(parts[start][0], verified=verified)
    deltas = parts[start + 1:]
    merged, expire = merge_deltas(deltas)
    return Unfolded(parts[start][0], merged, tuple(deltas[0][2]), tuple(expire), verified)


def _decoded(value: pa.Table | pa.Buffer) -> pa.Table:
    if isinstance(value, pa.Table):
        return value
    import pyarrow.parquet as pq

    return pq.read_table(pa.BufferReader(value))


#: a chain file's index and row number in a merge's plan (``merge_plan``)
_FILE, _POS = "_file", "_pos"


@dataclass
class LazyPart:
    """A chain file read only as needed (a Parquet file, pyarrow ``ParquetFile``): some of
    its columns whole, or all of them a row group at a time; with its kind, key and expiry
    (as a ``Part``)."""

    file: Any
    kind: str
    key: Sequence[str]
    expire: Any

    @property
    def schema(self) -> pa.Schema:
        return self.file.schema_arrow

    def groups(self) -> Iterator[pa.Table]:
        for i in range(self.file.num_row_groups):
            yield self.file.read_row_group(i)


def merge_plan(deltas: Sequence[LazyPart]) -> tuple[pa.Table, list[Expiry]]:
    """``merge_deltas`` of delta files decided on their key, ``_deleted`` and expiry columns
    alone: per row of the merged delta, the file and row it comes from (``_file``,
    ``_pos``, in that order) and whether it is a deletion; and the expiries. The rows
    themselves are then read a row group at a time (``merged_pieces``): a compaction never
    holds the deltas decoded whole (q20's deltas of 10 M events: ~400 MB of Arrow memory at
    the merge's peak)."""
    key = list(deltas[0].key)
    wanted = set(key) | {DELETED} | {c for d in deltas for c, _ in expiries(d.expire)}
    narrow: list[Part] = []
    for i, d in enumerate(deltas):
        t = d.file.read(columns=[n for n in d.schema.names if n in wanted])
        t = t.append_column(_FILE, pa.array(np.full(t.num_rows, i, dtype=np.int32)))
        t = t.append_column(_POS, pa.array(np.arange(t.num_rows, dtype=np.int64)))
        narrow.append((t, d.kind, d.key, d.expire))
    return merge_deltas(narrow)


def merged_pieces(deltas: Sequence[LazyPart], plan: pa.Table, schema: pa.Schema,
                  upserts: bool = False) -> Iterator[pa.Table]:
    """The rows of the merged delta ``plan`` (``merge_plan``) as pieces of ``schema``, a
    row group of a file at a time, with ``_deleted`` as the plan says (an upsert a later
    delta expired is a deletion); ``upserts``: only the rows not deleted, without it."""
    files = plan.column(_FILE).to_numpy()
    positions = plan.column(_POS).to_numpy()
    deleted = plan.column(DELETED).to_numpy(zero_copy_only=False)
    for i, d in enumerate(deltas):
        lo, hi = np.searchsorted(files, [i, i + 1])
        pos, gone = positions[lo:hi], deleted[lo:hi]
        start = 0
        for group in d.groups():
            a, b = np.searchsorted(pos, [start, start + group.num_rows])
            rows, dead = pos[a:b] - start, gone[a:b]
            start += group.num_rows
            if upserts:
                rows = rows[~dead]
            if not len(rows):
                continue
            piece = group if len(rows) == group.num_rows else group.take(pa.array(rows))
            if upserts:
                yield _conform(piece.drop_columns([DELETED]), schema)
            else:
                at = piece.schema.get_field_index(DELETED)
                yield _conform(piece.set_column(at, DELETED, pa.array(dead)), schema)


def fold_chain_pieces(schema: pa.Schema, base: Iterable[pa.Table],
                      deltas: Sequence[LazyPart]) -> Iterator[pa.Table]:
    """``fold_chain`` of a full file given as pieces of ``schema`` (its row groups, read
    one at a time) and the delta files after it: the folded table in pieces, the base's
    rows that survive the deltas piece by piece (what survives is decided row by row: the
    deltas' keys, their expiries), then the deltas' upserts a row group at a time. A
    compaction so holds one row group decoded at a time, not the whole state."""
    if not deltas:
        yield from base
        return
    key = list(deltas[0].key)
    plan, expire = merge_plan(deltas)
    keys = plan.select(key)
    for piece in base:
        kept = expire_rows(rows_without_keys(piece, keys, key), expire)
        if kept.num_rows:
            yield kept
    yield from merged_pieces(deltas, plan, schema, upserts=True)


def fold_chain(parts: Sequence[Part]) -> pa.Table:
    """The state a chain stands for: ``(table, kind, key, expire)`` per file, in order. The
    deltas after the last full file are merged first (``merge_deltas``), then applied to it
    at once."""
    start = max((i for i, p in enumerate(parts) if p[1] == "full"), default=-1)
    base = parts[start][0] if start >= 0 else None
    deltas = parts[start + 1:]
    if not deltas:
        assert base is not None, "a state chain has at least one file"
        return base
    # (not combined: the folded table is the base's chunks and the delta's anyway)
    merged, expire = merge_deltas(deltas, combine=False)
    return apply_delta(base, merged, deltas[0][2], expire)
