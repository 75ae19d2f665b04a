"""One input's state of an updating join: its rows in a CompactRows store, the per-row
counters the join's kind needs (the others have one value for every row and are not kept),
and the Polars frame of the key columns that a batch of the other side probes.

The frame is a view of the store's key buffers when every key is fixed-width (rebuilt after a
change at no copy), so the keys are not kept twice; text keys are kept plain in the store and
their frame grows with each append, as a copy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from caudal.operators.compact_rows import CompactRows
from caudal.operators.join_index import KeyRows, indexable
from caudal.operators.join_rows import _appended, match
from caudal.operators.keyed_tables import positional
from caudal.state.incremental import RowChanges, StateDelta

if TYPE_CHECKING:
    import polars as pl


class JoinSide:
    """Rows of one join input with the counters ``kept`` (name -> value of a new row) as
    int64 NumPy columns; ``get`` answers ``defaults`` for a counter not kept."""

    def __init__(self, schema: pa.Schema, keys: Sequence[str], kept: dict[str, int],
                 defaults: dict[str, int], dictionary: bool = True, indexed: bool = True):
        self.schema = schema
        self.keys = list(keys)
        self.kept = dict(kept)
        self.defaults = dict(defaults)
        self.dictionary = dictionary
        self.store = self._store()
        self.values: dict[str, np.ndarray] = {n: np.zeros(0, dtype=np.int64) for n in kept}
        self._frame: pl.DataFrame | None = None
        self._view_keys = all(self.store.fixed(k) for k in self.keys)
        #: keys of indexable types (and SQL ``=``, ``indexed``): a persistent key -> rows
        #: index answers probes instead of a hash join over all stored keys per batch
        self._indexed = indexed and bool(self.keys) and \
            all(indexable(schema.field(k).type) for k in self.keys)
        self.index = KeyRows(self.keys, schema) if self._indexed else None
        #: what changed since the last snapshot, so a checkpoint writes only that
        self.changes = RowChanges()

    def _store(self) -> CompactRows:
        """Keys as they are (the key frame views them); a side looked up by whole rows (a
        changelog's, ``dictionary`` False) keeps every column as it is, so that lookup views
        the state instead of decoding it for every batch."""
        plain = self.keys if self.dictionary else self.schema.names
        return CompactRows(self.schema, dictionary=self.dictionary, plain=plain)

    @property
    def size(self) -> int:
        return self.store.num_rows

    def has(self, name: str) -> bool:
        return name in self.values

    def __getitem__(self, name: str) -> np.ndarray:
        return self.values[name]

    def __setitem__(self, name: str, value: np.ndarray) -> None:
        self.values[name] = value

    def get(self, name: str, index: np.ndarray) -> np.ndarray:
        """Counter ``name`` of the rows ``index``."""
        if name in self.values:
            return self.values[name][index]
        return np.full(len(index), self.defaults[name], dtype=np.int64)

    def build(self) -> pa.Table | pl.DataFrame:
        """What ``join_rows.match`` probes: the key frame (the rows, for a keyless join)."""
        if not self.keys:
            return self.store.view()
        if self._frame is None:
            self._frame = positional(self.store.view(self.keys), self.keys)
        return self._frame

    def match(self, probe: pa.Table, probe_keys: Sequence[str], nulls_equal: bool = False
              ) -> tuple[np.ndarray, np.ndarray]:
        """``(probe rows, stored rows)`` of every pair with equal keys (``join_rows.match``
        against this side), through the key index where it applies."""
        if self.index is not None and not nulls_equal and len(probe_keys) == len(self.keys) \
                and all(probe.schema.field(p).type.equals(self.schema.field(k).type)
                        for p, k in zip(probe_keys, self.keys)):
            if self.store.num_rows > self.index.covered:   # (a view with NULLs costs a copy)
                self.index.cover(self.store.view(self.keys))
            return self.index.pairs(probe, probe_keys,
                                    lambda rows: self.store.take(rows, self.keys))
        return match(probe, probe_keys, self.build(), self.keys, nulls_equal)

    def view(self) -> pa.Table:
        """Every row, for reading now (not for keeping)."""
        return self.store.view()

    def take(self, index: np.ndarray) -> pa.Table:
        return self.store.take(index)

    def append(self, rows: pa.Table, **values: np.ndarray) -> None:
        if rows.num_rows == 0:
            return
        if self._frame is not None and not self._view_keys:
            import polars as pl

            self._frame = pl.concat([self._frame, positional(rows, self.keys)],
                                    rechunk=False)
        else:
            self._frame = None  # a view of the grown buffers, built when next probed
        self.store.append(rows)
        for name in self.values:
            value = values.get(name)
            if value is None:
                value = np.full(rows.num_rows, self.kept[name], dtype=np.int64)
            self.values[name] = _appended(self.values[name], value.astype(np.int64,
                                                                         copy=False))

    def keep(self, mask: np.ndarray) -> None:
        """Keep only the rows where ``mask`` is True."""
        if mask.all():
            return
        self.changes.keep(mask)
        self.store.keep(mask)
        self._frame = None
        if self.index is not None:
            self.index.keep(mask)
        for name in self.values:
            self.values[name] = self.values[name][mask]

    def snapshot(self, tag: Callable[[pa.Table], pa.Table]) -> pa.Table | StateDelta:
        """The rows and the kept counters (``tag`` adds key groups) for a checkpoint: the
        whole table the first time after open or restore, then what changed since the
        previous snapshot (state.incremental.RowChanges), in memory of its own or immutable
        (the counters change in place); text kept as codes stays encoded."""
        return self.changes.snapshot(
            self.size, lambda index: self.store.snapshot(index=index), self.values, tag,
            nbytes=self.store.nbytes + sum(v.nbytes for v in self.values.values()))

    def load(self, table: pa.Table | None, keep: np.ndarray | None = None) -> None:
        """The state of a snapshot's table (its rows where ``keep`` is True: a restore at
        another parallelism); a counter it lacks (one this join did not keep when it was
        taken) starts at its value for a new row."""
        self.store = self._store()
        self.values = {n: np.zeros(0, dtype=np.int64) for n in self.kept}
        self._frame = None
        if self.index is not None:
            self.index = KeyRows(self.keys, self.schema)
        self.changes = RowChanges()   # (a snapshot's row ids are not kept: numbered anew)
        if table is None or table.num_rows == 0 or (keep is not None and not keep.any()):
            return
        # a column at a time, its chunks (a folded chain is a few tables' chunks with
        # dictionaries of their own) copied into buffers sized once: no copy of the whole
        # table into one chunk first, no buffer doubled as it grows
        self.store.extend(table.select(self.schema.names), keep)
        for name in self.values:
            if name in table.column_names:
                chunks = [c.to_numpy(zero_copy_only=False) for c in table.column(name).chunks]
                value = np.concatenate(chunks).astype(np.int64, copy=False) if chunks else \
                    np.zeros(0, dtype=np.int64)
                if keep is not None:
                    value = value[keep]
            else:
                value = np.full(self.store.num_rows, self.kept[name], dtype=np.int64)
            self.values[name] = value   # (new memory: concatenate copies, full allocates)

