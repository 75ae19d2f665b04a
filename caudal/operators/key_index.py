"""A persistent key -> dense id index for keyed state that lives across batches.

Keyed operators keep one state row per key, at the row whose position is the key's id, and
need each batch's keys' ids. Building a hash table over all stored keys for every batch (a
join against the state) costs time proportional to the state, not to the batch. This index
is built once and grows: a lookup or an insert costs time proportional to the keys asked.

Keys that are one integer-like column (integers, timestamps, dates, times, durations: the
auction, person and id keys of most queries) are looked up in a NumPy open-addressing hash
table over their int64 values (a NULL key has an id of its own beside the table); every step
is a vectorized pass over the keys still probing, never a Python loop per key. While the
stored keys are dense (their range at most ``_DENSE_SPAN`` times their number, as auction and
person ids are), the table is direct instead: ``id = direct[key - base]``, one gather per
lookup and one scatter per insert, no probing; it turns into the hash table when the keys
spread out. Other keys
(text, several columns) are looked up by a hash join against the stored keys
(keyed_tables.lookup), as before: exact for every type, in time proportional to the state.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from caudal import compute as pc
from caudal.operators.keyed_tables import as_array, from_numpy, lookup
from caudal.operators.list_slots import ListSlots

_EMPTY = -1
#: the slot table is kept at most half full, so probe sequences stay short
_MIN_SLOTS = 1024
#: integer keys are addressed directly while their range spans at most this many slots per
#: key (or fewer than ``_MIN_DIRECT``): as much memory as the hash table's two arrays
_DENSE_SPAN = 4
_MIN_DIRECT = 1 << 16


def _integer_like(t: pa.DataType) -> bool:
    """Types whose every value is an int64 inside (uint64 is not: its values above 2^63
    take the generic path)."""
    if pa.types.is_uint64(t):
        return False
    return (pa.types.is_integer(t) or pa.types.is_timestamp(t) or pa.types.is_date(t)
            or pa.types.is_time(t) or pa.types.is_duration(t))


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: spreads nearby integers (sequential ids) over the slots."""
    z = values.view(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    t = z >> np.uint64(30)   # in place from here: two arrays, not seven
    z ^= t
    z *= np.uint64(0xBF58476D1CE4E5B9)
    np.right_shift(z, np.uint64(27), out=t)
    z ^= t
    z *= np.uint64(0x94D049BB133111EB)
    np.right_shift(z, np.uint64(31), out=t)
    z ^= t
    return z


#: from this many values a bulk build places them as two halves of the slot table, each on
#: its own thread
_PARALLEL_BUILD = 1 << 22


def _sorted_homes(home: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The permutation sorting ``home`` (uint64 slot numbers) and the sorted homes: each home
    and its position packed into one uint64 and sorted by value (NumPy's SIMD sort: on this
    machine 12 M keys in 0.34 CPU s where a stable argsort takes 2.1)."""
    n = len(home)
    low = max(n - 1, 1).bit_length()
    if int(home.max()).bit_length() + low > 64:
        order = np.argsort(home, kind="stable")
        return order, home[order]
    packed = home << np.uint64(low)
    packed |= np.arange(n, dtype=np.uint64)
    packed.sort()
    order = (packed & np.uint64((1 << low) - 1)).view(np.int64)
    packed >>= np.uint64(low)
    return order, packed


class KeyIndex:
    """Key -> id for the keys of ``schema``'s ``names`` columns; ids are 0, 1, 2… in order
    of first insertion, so a state table can keep key ``i``'s row at position ``i``."""

    def __init__(self, names: Sequence[str], schema: pa.Schema,
                 dense_span: int = _DENSE_SPAN, min_direct: int = _MIN_DIRECT):
        self.names = list(names)
        #: integer keys stay directly addressed while their range spans at most this many
        #: slots per key, or at most ``min_direct`` slots (``_DENSE_SPAN``, ``_MIN_DIRECT``
        #: unless a caller trades more memory for speed)
        self.dense_span = dense_span
        self.min_direct = min_direct
        self.integer = len(self.names) == 1 and _integer_like(schema.field(self.names[0]).type)
        self.size = 0
        self._null_id = _EMPTY
        self._slots = np.full(_MIN_SLOTS, _EMPTY, dtype=np.int64)  # slot -> id
        self._keys = np.zeros(_MIN_SLOTS, dtype=np.int64)          # slot -> key value
        self._stored: pa.Table | None = None  # the keys by id (generic keys only)
        #: direct addressing (integer keys while dense): ``_direct[key - _base]`` is the id
        self._direct: np.ndarray | None = np.zeros(0, dtype=np.int64) if self.integer \
            else None
        self._base = 0
        #: the smallest and largest key in the direct table (its density is judged by them)
        self._key_lo = self._key_hi = 0

    # ---- the integer table ----------------------------------------------------------------

    @staticmethod
    def _values(column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray | None]:
        """The int64 values of a key column and its NULL mask (None without NULLs)."""
        if isinstance(column, pa.ChunkedArray):
            column = as_array(column)   # (one chunk: itself, not a copy)
        if not pa.types.is_int64(column.type):
            if not pa.types.is_integer(column.type):
                # dates, times, timestamps, durations: their integers (date32 and time32
                # have no cast to int64, only a view as int32)
                column = column.view(pa.int32() if column.type.bit_width == 32
                                     else pa.int64())
            column = pc.cast(column, pa.int64())  # integer-like types are int64 inside
        nulls = column.null_count
        mask = pc.is_null(column).to_numpy(zero_copy_only=False) if nulls else None
        values = pc.fill_null(column, 0) if nulls else column
        return values.to_numpy(zero_copy_only=False).astype(np.int64, copy=False), mask

    def _fits_direct(self, values: np.ndarray, count: int) -> bool:
        """Whether the direct table covers ``values`` (growing it to), with ``count`` keys
        stored once they are added; False turns the index into the hash table."""
        direct = self._direct
        assert direct is not None
        if not len(values):
            return True
        lo, hi = int(values.min()), int(values.max())
        if len(direct):
            # the keys' own range decides (not the table's, whose room would count as keys)
            lo, hi = min(lo, self._key_lo), max(hi, self._key_hi)
        if len(direct) and self._base <= lo and hi < self._base + len(direct):
            self._key_lo, self._key_hi = lo, hi
            return True
        keys_span = hi - lo + 1
        limit = max(self.dense_span * count, self.min_direct)
        if keys_span > limit:
            self._to_hash()
            return False
        self._key_lo, self._key_hi = lo, hi
        if len(direct):   # the table keeps covering what it covers
            lo, hi = min(lo, self._base), max(hi, self._base + len(direct) - 1)
        span = hi - lo + 1
        # room to grow on the side that grew (sequential ids keep coming), within the limit
        room = min(keys_span, limit - keys_span)
        grow_down = len(direct) and lo < self._base
        start = lo - room if grow_down else lo
        size = span + room
        if start < -(1 << 63) or start + size > (1 << 63):
            start, size = lo, span
        grown = np.full(size, _EMPTY, dtype=np.int64)
        if len(direct):
            at = self._base - start
            grown[at:at + len(direct)] = direct
        self._direct, self._base = grown, start
        return True

    def _to_hash(self) -> None:
        """The stored keys move from the direct table into the hash table."""
        direct = self._direct
        assert direct is not None
        self._direct = None
        where = np.flatnonzero(direct != _EMPTY)
        keys = where.astype(np.int64) + np.int64(self._base)
        self._grow(len(keys))
        if len(keys):
            self._rehash(keys, direct[where])

    def _probe(self, values: np.ndarray) -> np.ndarray:
        """Each value's id, or -1."""
        if self._direct is not None:
            return self._direct[values - np.int64(self._base)] if len(self._direct) else \
                np.full(len(values), _EMPTY, dtype=np.int64)
        found = np.full(len(values), _EMPTY, dtype=np.int64)
        mask = np.uint64(len(self._slots) - 1)
        slot = (_mix(values) & mask).astype(np.int64)
        pending = np.arange(len(values))
        while len(pending):
            s = slot[pending]
            ids = self._slots[s]
            occupied = ids != _EMPTY
            hit = occupied & (self._keys[s] == values[pending])
            found[pending[hit]] = ids[hit]
            go_on = occupied & ~hit
            pending = pending[go_on]
            slot[pending] = (s[go_on] + 1) & int(mask)
        return found

    def _place(self, values: np.ndarray, ids: np.ndarray) -> None:
        """Put distinct values, none of them stored yet, into the slot table."""
        if self._direct is not None:
            self._direct[values - np.int64(self._base)] = ids
            return
        mask = len(self._slots) - 1
        slot = (_mix(values) & np.uint64(mask)).astype(np.int64)
        pending = np.arange(len(values))
        while len(pending):
            s = slot[pending]
            free = self._slots[s] == _EMPTY
            # of the values wanting one free slot, one takes it: each writes its (negative)
            # mark, the one whose mark stayed won (NumPy keeps one of repeated writes)
            mark = -2 - pending
            self._slots[s[free]] = mark[free]
            wins = free & (self._slots[s] == mark)
            self._slots[s[free & ~wins]] = _EMPTY  # (losers' slots hold a winner's mark)
            self._slots[s[wins]] = ids[pending[wins]]
            self._keys[s[wins]] = values[pending[wins]]
            lose = ~wins
            pending = pending[lose]
            slot[pending] = np.where(free[lose], s[lose], (s[lose] + 1) & mask)

    def _grow(self, extra: int) -> None:
        if self._direct is not None:
            return
        needed = 2 * (self.size + extra)
        if needed <= len(self._slots):
            return
        slots = len(self._slots)
        while slots < needed:
            slots *= 2
        occupied = self._slots != _EMPTY
        ids, keys = self._slots[occupied], self._keys[occupied]
        self._slots = np.full(slots, _EMPTY, dtype=np.int64)
        self._keys = np.zeros(slots, dtype=np.int64)
        self._rehash(keys, ids)

    def _rehash(self, values: np.ndarray, ids: np.ndarray | None) -> None:
        """Put distinct values into the empty slot table at once: inserted in order of their
        home slot, linear probing puts value i at ``max(home_i, slot_{i-1} + 1)``, which is
        ``i + running max of (home_j - j)``, one vectorized pass; the slots are then written
        in ascending order (sequential, not random, memory access). The few pushed past the
        last slot wrap around through ``_place``. ``ids`` None: value i has id i.

        Many values (a restore's index) are placed as two halves on two threads: those
        whose home is in the lower half of the table and those in the upper half, each
        sorted and placed in its half (NumPy lets go of the GIL in the sort, the running
        maximum and the scatter); the few of the lower half pushed past its end then probe
        from their home through ``_place``, as the wrapped ones do, so every value is still
        found by probing from its home."""
        n = len(values)
        if not n:
            return
        size = len(self._slots)
        home = _mix(values)
        home &= np.uint64(size - 1)
        if n < _PARALLEL_BUILD:
            rest = self._place_run(home, None, values, ids, size)
        else:
            from concurrent.futures import ThreadPoolExecutor

            below = home < np.uint64(size // 2)
            lower = np.flatnonzero(below)
            upper = np.flatnonzero(np.logical_not(below, out=below))
            with ThreadPoolExecutor(1, thread_name_prefix="caudal-index-build") as pool:
                high = pool.submit(self._place_run, home[upper], upper, values, ids, size)
                rest = self._place_run(home[lower], lower, values, ids, size // 2)
                rest = np.concatenate([rest, high.result()])
        if len(rest):
            self._place(values[rest], rest if ids is None else ids[rest])

    def _place_run(self, home: np.ndarray, where: np.ndarray | None, values: np.ndarray,
                   ids: np.ndarray | None, end: int) -> np.ndarray:
        """Place the values at positions ``where`` (None: all) of ``values``, whose homes
        are ``home``, in slots below ``end`` (``_rehash``); the positions of those that
        would land at ``end`` or past it are returned, not placed."""
        n = len(home)
        if not n:
            return np.zeros(0, dtype=np.int64)
        order, home = _sorted_homes(home)
        if where is not None:
            order = where[order]
        home = home.view(np.int64)
        rank = np.arange(n, dtype=np.int64)
        home -= rank
        slot = rank + np.maximum.accumulate(home, out=home)
        fits = slot < end
        if fits.all():
            self._slots[slot] = order if ids is None else ids[order]
            self._keys[slot] = values[order]
            return order[:0]
        placed = order[fits]
        self._slots[slot[fits]] = placed if ids is None else ids[placed]
        self._keys[slot[fits]] = values[placed]
        return order[~fits]

    # ---- the interface ----------------------------------------------------------------------

    def ids(self, keys: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """Each row's key id, adding the keys not seen before (``keys`` holds each key at
        most once), and which rows' keys are new."""
        n = keys.num_rows
        if not self.integer:
            found = lookup(keys, self.names, self._stored, self.names) \
                if self._stored is not None else np.full(n, _EMPTY, dtype=np.int64)
            new = found == _EMPTY
            found[new] = self.size + np.arange(int(new.sum()))
            if new.any():
                added = keys.select(self.names).filter(pa.array(new))
                self._stored = added if self._stored is None else pa.concat_tables(
                    [self._stored, added.cast(self._stored.schema)])
            self.size += int(new.sum())
            return found, new
        values, nulls = self._values(keys.column(self.names[0]))
        found = np.full(n, _EMPTY, dtype=np.int64)
        plain = np.arange(n) if nulls is None else np.flatnonzero(~nulls)
        if self._direct is not None:
            self._fits_direct(values[plain], self.size + len(plain))
        found[plain] = self._probe(values[plain])
        if nulls is not None and nulls.any():
            if self._null_id == _EMPTY:
                found[nulls] = _EMPTY
            else:
                found[nulls] = self._null_id
        new = found == _EMPTY
        count = int(new.sum())
        if count:
            found[new] = self.size + np.arange(count)
            added = new if nulls is None else new & ~nulls
            self._grow(int(added.sum()))
            self._place(values[added], found[added])
            if nulls is not None and (new & nulls).any():
                self._null_id = int(found[new & nulls][0])
            self.size += count
        return found, new

    def find(self, column: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Each value's id, or -1 for a key not stored and for NULL (which, compared with
        SQL ``=``, matches nothing); integer keys only, nothing is added."""
        assert self.integer
        values, nulls = self._values(column)
        found = self._stored_ids(values)
        if nulls is not None:
            found[nulls] = _EMPTY
        return found

    def _stored_ids(self, values: np.ndarray) -> np.ndarray:
        """``_probe`` for values the direct table may not cover."""
        if self._direct is None:
            return self._probe(values)
        if not len(self._direct):
            return np.full(len(values), _EMPTY, dtype=np.int64)
        # one gather for all (values outside clipped into the table, then replaced), not a
        # masked gather and a masked write
        inside = (values >= self._base) & (values <= self._base + len(self._direct) - 1)
        found = np.take(self._direct, values - np.int64(self._base), mode="clip")
        return found if inside.all() else np.where(inside, found, _EMPTY)

    def find_or_add(self, column: pa.Array | pa.ChunkedArray | np.ndarray,
                    distinct: bool = False) -> np.ndarray:
        """Each value's id, adding the keys not seen before (values may repeat, unless the
        caller knows them ``distinct``: no sort to find the new ones' distinct values); -1
        for NULL, which gets no id. Integer keys only (an int64 NumPy array: no NULLs)."""
        assert self.integer
        values, nulls = (column, None) if isinstance(column, np.ndarray) else \
            self._values(column)
        plain = None if nulls is None else np.flatnonzero(~nulls)
        if plain is not None:
            values = values[plain]
        found = self._stored_ids(values)
        new = found == _EMPTY
        if new.any():
            fresh = values[new]
            if distinct:
                added, where = fresh, np.arange(len(fresh))
            elif self._direct is not None and len(self._direct) and \
                    fresh.min() >= self._base and fresh.max() < self._base + len(self._direct):
                added, where = self._distinct_direct(fresh)
            else:
                added, where = np.unique(fresh, return_inverse=True)
            ids = self.size + np.arange(len(added), dtype=np.int64)
            if self._direct is not None:
                self._fits_direct(added, self.size + len(added))
            self._grow(len(added))
            self._place(added, ids)
            self.size += len(added)
            found[new] = ids[where]
        if plain is None:
            return found
        out = np.full(len(nulls), _EMPTY, dtype=np.int64)
        out[plain] = found
        return out

    def _distinct_direct(self, fresh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``np.unique(fresh, return_inverse=True)`` (ids in another order) for values not
        stored, inside the direct table, without a sort: each writes its (negative) mark
        into its empty slot, the one whose mark stayed stands for the value (``_place``'s
        way), then the slots are emptied again."""
        direct = self._direct
        assert direct is not None
        at = fresh - np.int64(self._base)
        mark = -2 - np.arange(len(fresh), dtype=np.int64)
        direct[at] = mark
        stands = direct[at]
        first = np.flatnonzero(stands == mark)
        direct[at] = _EMPTY
        number = np.empty(len(fresh), dtype=np.int64)
        number[first] = np.arange(len(first))
        return fresh[first], number[-2 - stands]

    @classmethod
    def build(cls, names: Sequence[str], keys: pa.Table, reserve: int = 0) -> KeyIndex:
        """An index whose ids are the row positions of ``keys`` (distinct keys), with room
        for ``reserve`` more without growing."""
        index = cls(names, keys.schema)
        if not keys.num_rows:
            return index
        if not index.integer:
            index.ids(keys)
            return index
        values, nulls = index._values(keys.column(index.names[0]))
        ids = None   # value i has id i
        if nulls is not None and nulls.any():
            index._null_id = int(np.flatnonzero(nulls)[0])
            ids = np.flatnonzero(~nulls)
            values = values[ids]
        if index._direct is not None and index._fits_direct(values, len(values)):
            index._place(values, np.arange(len(values)) if ids is None else ids)
        else:   # the hash table: distinct keys placed at once, nothing to look up
            index._grow(len(values) + reserve)
            index._rehash(values, ids)
        index.size = keys.num_rows
        return index



def _numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


class SlotTable:
    """Rows by key id: row ``i`` belongs to key ``i`` of a KeyIndex. Numeric columns are
    NumPy arrays (values and a validity mask) that grow by doubling and are written in place,
    so updating the rows of the keys a batch touched costs time proportional to those keys,
    not to the state. Lists of numbers without NULL values (a median's values) are runs of
    one NumPy pool (operators.list_slots), written in place too. Other columns are Arrow
    arrays rewritten by one take (text states: min/max of strings), and columns only ever
    appended to (the keys) are appended."""

    def __init__(self, schema: pa.Schema):
        self.schema = schema
        self.size = 0
        self._values: dict[str, np.ndarray] = {}
        self._valid: dict[str, np.ndarray] = {}
        self._arrow: dict[str, pa.ChunkedArray] = {}
        self._lists: dict[str, ListSlots] = {}
        #: column -> the column whose values it holds (``share``)
        self._shared: dict[str, str] = {}
        #: while a ``sized`` table is filled: chunks of its Arrow columns, rows per column
        self._filling: dict[str, list[pa.Array]] = {}
        self._filled: dict[str, int] = {}
        for f in schema:
            if _numeric(f.type):
                self._values[f.name] = np.zeros(_MIN_SLOTS, dtype=f.type.to_pandas_dtype())
                self._valid[f.name] = np.zeros(_MIN_SLOTS, dtype=bool)
            elif ListSlots.accepts(f.type):
                self._lists[f.name] = ListSlots(f.type)
            else:
                self._arrow[f.name] = pa.chunked_array([], f.type)

    def share(self, name: str, like: str) -> None:
        """Column ``name`` holds the values of column ``like`` from now on (a median and
        a percentile of one column keep the same values): ``take`` gives it ``like``'s
        values, ``put`` writes only ``like``."""
        if name in self._lists and like in self._lists and \
                self.schema.get_field_index(like) < self.schema.get_field_index(name):
            del self._lists[name]
            self._shared[name] = like

    def lists(self, name: str) -> ListSlots | None:
        """The list column ``name`` kept as runs (None when it is an Arrow array)."""
        return self._lists.get(self._shared.get(name, name))

    def take(self, ids: np.ndarray) -> pa.Table:
        """The rows of keys ``ids`` (a copy)."""
        index = from_numpy(np.asarray(ids, dtype=np.int64))
        columns: list[pa.Array] = []
        for f in self.schema:
            if f.name in self._shared:
                columns.append(columns[self.schema.get_field_index(self._shared[f.name])])
            elif f.name in self._values:
                valid = self._valid[f.name][ids]
                column = from_numpy(self._values[f.name][ids], None if valid.all() else ~valid)
                columns.append(column if column.type.equals(f.type) else
                               pc.cast(column, f.type))
            elif f.name in self._lists:
                columns.append(self._lists[f.name].take(ids))
            else:
                columns.append(pc.take(self._arrow[f.name], index).combine_chunks())
        return pa.Table.from_arrays(columns, schema=self.schema)

    def put(self, ids: np.ndarray, rows: pa.Table) -> None:
        """Row ``j`` of ``rows`` becomes the row of key ``ids[j]`` (ids past the end are new
        keys: every id below the new size is then written or was there)."""
        size = max(self.size, int(ids.max()) + 1) if len(ids) else self.size
        capacity = len(next(iter(self._values.values()))) if self._values else 0
        if size > capacity:
            while capacity < size:
                capacity *= 2
            for name, values in self._values.items():
                grown = np.zeros(capacity, dtype=values.dtype)
                grown[:self.size] = values[:self.size]
                self._values[name] = grown
                valid = np.zeros(capacity, dtype=bool)
                valid[:self.size] = self._valid[name][:self.size]
                self._valid[name] = valid
        old = ids < self.size
        appended = bool((~old).all()) and np.array_equal(ids, np.arange(self.size, size))
        # new keys only, in id order (as while the state grows): slices, not scatters
        where: slice | np.ndarray = slice(self.size, size) if appended else ids
        for f in self.schema:
            column = rows.column(f.name)
            if f.name in self._shared:   # written with the column it shares
                continue
            if f.name in self._lists:
                if self._lists[f.name].put(np.arange(self.size, size) if appended else ids,
                                           column):
                    continue
                # a NULL among the values: from now on the column is an Arrow array
                self._arrow[f.name] = pa.chunked_array(
                    [self._lists.pop(f.name).take(np.arange(self.size))], f.type)
            if f.name in self._values:
                column = as_array(column)
                if not column.type.equals(f.type):
                    column = pc.cast(column, f.type)
                if column.null_count:
                    self._valid[f.name][where] = pc.is_valid(column).to_numpy(
                        zero_copy_only=False)
                    column = pc.fill_null(column, 0)
                else:
                    self._valid[f.name][where] = True
                self._values[f.name][where] = column.to_numpy(zero_copy_only=False)
            elif appended:
                self._arrow[f.name] = pa.chunked_array(
                    self._arrow[f.name].chunks + pc.cast(column, f.type).chunks, f.type)
                if self._arrow[f.name].num_chunks > 32:
                    self._arrow[f.name] = pa.chunked_array(
                        [self._arrow[f.name].combine_chunks()], f.type)
            else:
                order = np.arange(size)
                order[ids] = self.size + np.arange(len(ids))
                both = pa.chunked_array(self._arrow[f.name].chunks +
                                        pc.cast(column, f.type).chunks, f.type).combine_chunks()
                self._arrow[f.name] = pa.chunked_array([pc.take(both, from_numpy(order))],
                                                       f.type)
        self.size = size

    def table(self) -> pa.Table:
        """All rows, in id order (a copy: never shares memory with the live arrays)."""
        return self.take(np.arange(self.size))

    @classmethod
    def of(cls, table: pa.Table, reserve: int = 0) -> SlotTable:
        """The rows of ``table``, row ``i`` as key ``i``'s, with room for ``reserve`` more
        rows without growing."""
        out = cls.sized(table.schema, table.num_rows, reserve)
        out.fill(0, table)
        out.seal()
        return out

    @classmethod
    def sized(cls, schema: pa.Schema, rows: int, reserve: int = 0) -> SlotTable:
        """A table of ``rows`` rows (room for ``reserve`` more) to be written with ``fill``,
        each column's rows once, then ``seal``: a restore copies a state file into it a
        row group at a time (one copy per column, no doubling, no scatter by id, no
        contiguous Arrow table first)."""
        out = cls(schema)
        for name, values in out._values.items():
            out._values[name] = np.empty(max(rows + reserve, _MIN_SLOTS), dtype=values.dtype)
            # the first ``rows`` are written by ``fill`` (on the thread that fills the
            # column: a restore's columns are filled on two threads), the room after them here
            out._valid[name] = np.empty(max(rows + reserve, _MIN_SLOTS), dtype=bool)
            out._valid[name][rows:] = True
        out.size = rows
        out._filling = {f.name: [] for f in schema
                        if f.name in out._arrow or f.name in out._lists}
        out._filled = dict.fromkeys(schema.names, 0)
        return out

    def fill(self, start: int, rows: pa.Table) -> None:
        """Copy ``rows`` (some of the columns) into rows ``start``… of a ``sized`` table."""
        n = rows.num_rows
        for name in rows.column_names:
            column = rows.column(name)
            t = self.schema.field(name).type
            if not column.type.equals(t):
                column = column.cast(t)
            if name in self._filling:
                self._filling[name].extend(column.chunks)
            else:
                at = start
                values, valid = self._values[name], self._valid[name]
                for chunk in column.chunks:
                    end = at + len(chunk)
                    if chunk.null_count:
                        valid[at:end] = chunk.is_valid().to_numpy(zero_copy_only=False)
                        chunk = chunk.fill_null(0)
                    else:
                        valid[at:end] = True
                    values[at:end] = chunk.to_numpy(zero_copy_only=False)
                    at = end
            self._filled[name] += n

    def seal(self) -> None:
        """The ``sized`` table is complete: every column must have had all its rows."""
        short = [name for name, n in self._filled.items() if n != self.size]
        if short:
            raise ValueError(f"SlotTable: columns {short} not filled to {self.size} rows")
        for name, chunks in self._filling.items():
            t = self.schema.field(name).type
            whole = pa.chunked_array(chunks, t).combine_chunks() if chunks else pa.array([], t)
            if name in self._lists:
                if self._lists[name].put(np.arange(self.size), whole):
                    continue
                del self._lists[name]   # a NULL among the values: an Arrow array
            self._arrow[name] = pa.chunked_array([whole], t)
        self._filling, self._filled = {}, {}
