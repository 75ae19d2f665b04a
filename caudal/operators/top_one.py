"""The top-1 of each partition over an append-only stream (Flink's Deduplication: Nexmark q18,
``ROW_NUMBER() OVER (PARTITION BY bidder, auction ORDER BY date_time DESC) <= 1``), kept in
structures that persist across flushes.

The general updating top-N (operators.updating_rank) takes out every stored row of the
partitions a flush touched, by a scan of the partition hash of every stored row, and sorts
them with the new rows by (hash, partition columns, ORDER BY, arrival) in one Arrow sort of
five or more keys; before that it sorts the waiting rows once or twice more to cut them to
the top N among themselves. For q18 those sorts were ~60% of the job's CPU. A top-1 needs
none of it:

* each partition has one slot: two partition columns whose values fit in 32 bits are
  packed by value into one int64, otherwise a persistent ``KeyIndex`` per column gives each
  value a dense id and the ids are packed two 32-bit halves at a time; the packed key of
  each partition's best row is looked up in one more ``KeyIndex``. A key costs integer
  lookups, never a hash of rows or a scan of the state;
* the ORDER BY values (integer-like columns: integers, timestamps, dates) become unsigned
  integers that sort in ranking order, with a 0/1 part per column for where NULLs go; the
  waiting rows are grouped by partition by one sort of one packed uint64 (the key's
  components and the position; a stable argsort when they do not fit in 64 bits) and each
  group's best row (ties: the earlier row, as everywhere in caudal's top-N) found by
  segmented minima, not a sort;
* each slot keeps its row's position in the PartitionRows store (4 bytes), so the candidate
  of a slot that has a row is compared with it in one vectorized step (the stored rows'
  ORDER BY values read from the store); a stored row wins ties (it came first).

The rows live in the same ``PartitionRows`` as the general path's (rank 1, emitted), so
snapshots, incremental checkpoints and restores (also at another parallelism) are unchanged;
the slots are rebuilt from the rows after a restore.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from caudal.operators.key_index import KeyIndex, _integer_like
from caudal.operators.partition_rows import SEQ, PartitionRows, pick_rows
from caudal.operators.row_index import RowIndex

_TOP = np.uint64(1 << 63)
_HALF = (1 << 31) - 1


def accepts(partition: list[str], order: list[tuple[str, bool, bool]],
            schema: pa.Schema) -> bool:
    """Whether the slots can hold these keys: partition and ORDER BY columns integer-like."""
    names = schema.names
    return all(c in names and _integer_like(schema.field(c).type) for c in partition) and \
        all(c in names and _integer_like(schema.field(c).type) for c, _, _ in order)


class _Slots:
    """Partition key (integer-like columns) -> a *group*: an int64, equal for the rows of
    one partition and only for them, from the columns' values (``raw``) or from persistent
    ids of them. The group of each partition's best row is its key in the ``RowIndex``."""

    def __init__(self, partition: list[str], schema: pa.Schema, raw: bool = True):
        self.partition = list(partition)
        self.columns = [KeyIndex([c], schema) for c in partition]
        pair = pa.schema([pa.field("_pair", pa.int64())])
        #: the ids of the columns before the last two, folded into one id per row
        self.pairs = [KeyIndex(["_pair"], pair) for _ in partition[2:]]
        #: one or two columns whose values all fit in 32 bits are packed by value (no lookup
        #: per column); the first value outside turns this off for good (``TopOne.rebuild``)
        self.raw = raw and len(self.partition) in (1, 2)

    def _codes(self, table: pa.Table) -> list[np.ndarray] | None:
        """Each partition column as codes below 2^32 (``codes``); None when a value does
        not fit."""
        return self.codes([KeyIndex._values(table.column(name)) for name in self.partition])

    @staticmethod
    def codes(columns: list[tuple[np.ndarray, np.ndarray | None]]) -> list[np.ndarray] | None:
        """Columns (int64 values, NULL mask) as codes below 2^32: 0 for NULL, the value +
        2^31 otherwise; None when a value does not fit."""
        out = []
        for values, nulls in columns:
            if len(values) and (int(values.min()) <= -(1 << 31) or
                                int(values.max()) >= (1 << 31)):
                return None
            codes = values + (1 << 31)
            if nulls is not None:
                codes[nulls] = 0
            out.append(codes)
        return out

    @staticmethod
    def pack(codes: list[np.ndarray]) -> np.ndarray:
        """The group of ``raw`` codes."""
        return codes[0] if len(codes) == 1 else (codes[0] << 32) | codes[1]

    def fits(self, table: pa.Table) -> bool:
        """Whether the rows can be packed by value (``raw``)."""
        return self._codes(table) is not None

    def groups(self, table: pa.Table) -> tuple[np.ndarray, list[np.ndarray]]:
        """Each row's group, and the small integers it is made of (sorting by them sorts
        by group): ``raw``, the columns' codes; otherwise one id per column (0 for NULL, a
        partition value of its own), the columns before the last two folded into one id
        per row through ``pairs``."""
        if not self.partition:
            zero = np.zeros(table.num_rows, dtype=np.int64)
            return zero, [zero]
        if self.raw:
            codes = self._codes(table)
            assert codes is not None   # (``fits`` was asked first)
            return self.pack(codes), codes
        ids = [index.find_or_add(table.column(name)) + 1
               for index, name in zip(self.columns, self.partition)]
        if any(index.size >= _HALF for index in self.columns):
            raise OverflowError("top-1: more than 2^31 distinct values in a partition column")
        if len(ids) == 1:
            return ids[0], ids
        first = ids[0]
        for pair, other in zip(self.pairs, ids[1:-1]):
            first = pair.find_or_add((first << 32) | other) + 1
            if pair.size >= _HALF:
                raise OverflowError("top-1: more than 2^31 distinct partition keys")
        return (first << 32) | ids[-1], [first, ids[-1]]


def order_parts(table: pa.Table, order: list[tuple[str, bool, bool]]
                ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The ORDER BY values as uint64 arrays, compared in turn, smaller first: per column a
    NULL part (0 for the rows that go first) and the value part. Also those of them that
    can differ between the rows (a NULL part of a column without NULLs cannot)."""
    parts: list[np.ndarray] = []
    varying: list[np.ndarray] = []
    for name, desc, nulls_first in order:
        values, nulls = KeyIndex._values(table.column(name))
        u = values.view(np.uint64) ^ _TOP
        if desc:
            u = ~u
        if nulls is None:
            null_part = np.full(len(u), 1 if nulls_first else 0, dtype=np.uint64)
        else:
            null_part = (nulls != nulls_first).astype(np.uint64)
            u = np.where(nulls, np.uint64(0), u)
            varying.append(null_part)
        parts += [null_part, u]
        varying.append(u)
    return parts, varying


def _by_group(group: np.ndarray, small: list[np.ndarray]) -> np.ndarray:
    """Row positions sorted by group, then position: one sort of packed uint64s when the
    components' ranges and the position fit in 64 bits, else a stable argsort."""
    n = len(group)
    low = max(n - 1, 1).bit_length()
    packed = np.zeros(n, dtype=np.uint64)
    used = low
    for c in small:
        lo = c.min()
        r = (c - lo).view(np.uint64)
        w = int(r.max()).bit_length()
        used += w
        if used > 64:
            return np.argsort(group, kind="stable")
        if w:
            packed <<= np.uint64(w)
            packed |= r
    packed <<= np.uint64(low)
    packed |= np.arange(n, dtype=np.uint64)
    packed.sort()
    return (packed & np.uint64((1 << low) - 1)).astype(np.int64)


def best_of_groups(group: np.ndarray, small: list[np.ndarray], parts: list[np.ndarray]
                   ) -> np.ndarray:
    """The position of each group's first row in ranking order (by ``parts``, then
    position: the earlier row of a tie wins). One sort by group; the ranking within the
    groups is segmented minima (``reduceat``), not a sort."""
    n = len(group)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = _by_group(group, small)
    g = group[order]
    heads = np.ones(n, dtype=bool)
    heads[1:] = g[1:] != g[:-1]
    starts = np.flatnonzero(heads)
    if len(starts) == n:
        return order
    member = np.cumsum(heads) - 1
    candidate: np.ndarray | None = None
    top = np.uint64(np.iinfo(np.uint64).max)
    for part in parts:
        p = part[order]
        if candidate is not None:
            p = np.where(candidate, p, top)
        best = np.minimum.reduceat(p, starts)
        here = p == best[member]
        candidate = here if candidate is None else candidate & here
    if candidate is None:
        return order[starts]
    position = np.where(candidate, order, n)
    return np.minimum.reduceat(position, starts)


def _less(a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    """Rows where parts ``a`` rank strictly before parts ``b`` (lexicographically)."""
    n = len(a[0]) if a else 0
    less = np.zeros(n, dtype=bool)
    equal = np.ones(n, dtype=bool)
    for x, y in zip(a, b):
        less |= equal & (x < y)
        equal &= x == y
    return less


class TopOne:
    """The slots of a top-1 over ``state`` (see the module doc)."""

    def __init__(self, partition: list[str], order: list[tuple[str, bool, bool]],
                 state: PartitionRows, rank_name: str):
        self.partition = list(partition)
        self.order = list(order)
        self.state = state
        self.rank_name = rank_name
        self._reset()

    def _reset(self, raw: bool = True) -> None:
        self.slots = _Slots(self.partition, self.state.data_schema, raw)
        #: group -> the store row of the partition's best row
        self.index = RowIndex(self._stored_groups)

    def _stored_groups(self, rows: np.ndarray) -> np.ndarray:
        """The groups of stored rows, from their partition columns in the store (the
        index keeps no key of its own); packed values straight from the store's buffers."""
        store = self.state.store
        if self.slots.raw:
            codes = self.slots.codes([store.integers(name, rows) for name in self.partition])
            assert codes is not None   # (stored rows fit while ``raw``)
            return self.slots.pack(codes)
        return self.slots.groups(store.take(rows, self.partition))[0]

    def _stored_parts(self, rows: np.ndarray) -> list[np.ndarray]:
        """The ORDER BY parts of stored rows (read from the store: only the partitions a
        flush's rows already had pay for it, and no slot keeps a copy)."""
        names = [c for c, _, _ in self.order]
        return order_parts(self.state.store.take(rows, names), self.order)[0]

    def merge(self, pending: pa.Table) -> tuple[pa.Table, pa.Table, pa.Table]:
        """Fold waiting rows (data columns and ``_seq``) into the state. Returns the rows
        that left (their slots got a better row), the rows that replaced them (in the same
        order), and the rows of slots that had none (data columns)."""
        state = self.state
        data = pending.select(state.data_schema.names)
        if self.slots.raw and not self.slots.fits(data):
            self.rebuild(raw=False)   # the stored rows' slots by column ids from now on
        group, small = self.slots.groups(data)
        parts, varying = order_parts(data, self.order)
        cand = best_of_groups(group, small, varying)
        old, at = self.index.find(group[cand])
        had = old >= 0
        better = ~had
        where = np.flatnonzero(had)
        if len(where):
            better[where] = _less([p[cand[where]] for p in parts],
                                  self._stored_parts(old[where]))
        win, wat, replaced = cand[better], at[better], old[better]
        if len(win) == 0:
            empty = data.slice(0, 0)
            return empty, empty, empty
        # in order of position (``pick_rows`` then copies by a mask, not a take), by a
        # scatter over the positions, not a sort
        which = np.full(len(group), -1, dtype=np.int64)
        which[win] = np.arange(len(win))
        by_position = which[which >= 0]
        win, wat, replaced = win[by_position], wat[by_position], replaced[by_position]
        rows = pick_rows(data, win)
        seq = pending.column(SEQ).to_numpy()[win]
        was = replaced >= 0
        gone = replaced[was]
        left = state.store.take(gone, state.data_schema.names)
        state._kill(gone)
        base = state.store.num_rows
        if base + len(win) >= (1 << 31):
            raise OverflowError("top-1: more than 2^31 rows kept by one subtask")
        ranks = pa.table({self.rank_name: pa.array(np.ones(len(win), dtype=np.int64))})
        kept = state.put(rows, ranks, seq, None, np.ones(len(win), dtype=bool))
        stored = base + np.arange(len(win))
        if kept is not None:   # the store dropped its dead rows: row numbers follow
            below = np.cumsum(kept) - 1
            self.index.renumber(below)   # (the replaced rows' slots are set just below)
            stored = below[stored]
        self.index.set(wat[was], stored[was])
        self.index.add(group[win[~was]], stored[~was], wat[~was])
        if not len(gone):
            return left, left, rows
        return left, rows.filter(pa.array(was)), rows.filter(pa.array(~was))

    def rebuild(self, raw: bool = True) -> None:
        """The slots of the stored rows (after a restore, or to stop packing keys by
        value). A partition holding more than one row keeps its best (none should)."""
        state = self.state
        living = np.flatnonzero(state.alive.values)
        # only the columns the slots read (not a copy of every stored row's text)
        names = list(dict.fromkeys(self.partition + [c for c, _, _ in self.order]))
        rows = state.store.take(living, names)
        by_seq = np.argsort(state.seq.values[living], kind="stable")
        rows = rows.take(pa.array(by_seq))
        living = living[by_seq]
        self._reset(raw and _Slots(self.partition, state.data_schema).fits(rows))
        if not len(living):
            return
        group, small = self.slots.groups(rows)
        _, varying = order_parts(rows, self.order)
        best = best_of_groups(group, small, varying)
        extra = np.ones(len(living), dtype=bool)
        extra[best] = False
        if extra.any():
            state._kill(living[extra])
        self.index.add(group[best], living[best])
