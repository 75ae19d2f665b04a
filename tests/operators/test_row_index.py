"""operators.row_index keeps no keys of its own: every answer must still be a dict's (keys
read back from a store, growth while adding, rows renumbered after a store dropped some,
tags that collide)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from caudal.operators.row_index import RowIndex


class _Store:
    def __init__(self) -> None:
        self.keys = np.zeros(0, dtype=np.int64)
        self.reads = 0

    def key_of(self, rows: np.ndarray) -> np.ndarray:
        self.reads += len(rows)
        return self.keys[rows]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(-50, 50) | st.integers(-(1 << 63), (1 << 63) - 1),
                         max_size=300), min_size=1, max_size=12),
       st.booleans(), st.booleans())
def test_index_agrees_with_a_dict(batches, use_at, compact):
    store, model = _Store(), {}
    index = RowIndex(store.key_of)
    for batch in batches:
        keys = np.unique(np.array(batch, dtype=np.int64))
        rows, at = index.find(keys)
        assert [int(r) for r in rows] == [model.get(int(k), -1) for k in keys]
        had = rows >= 0
        assert np.array_equal(index._rows[at[had]], rows[had])
        # every key gets a new row (the old ones' rows die): replaced and added
        base = len(store.keys)
        store.keys = np.concatenate([store.keys, keys])
        new_rows = base + np.arange(len(keys))
        index.set(at[had], new_rows[had])
        index.add(keys[~had], new_rows[~had], at[~had] if use_at else None)
        model.update({int(k): int(r) for k, r in zip(keys, new_rows)})
        if compact and len(store.keys):   # the store keeps only the living rows
            alive = np.zeros(len(store.keys), dtype=bool)
            alive[list(model.values())] = True
            below = np.cumsum(alive) - 1
            index.renumber(below)
            store.keys = store.keys[alive]
            model = {k: int(below[r]) for k, r in model.items()}
        assert index.size == len(model)
        assert index.size <= 0.75 * len(index._rows)
    probe = np.array(sorted(model) + [7, -7, 1 << 40], dtype=np.int64)
    rows, _ = index.find(probe)
    assert [int(r) for r in rows] == [model.get(int(k), -1) for k in probe]


def test_misses_read_no_key_back_and_growth_keeps_every_key():
    store = _Store()
    index = RowIndex(store.key_of)
    rng = np.random.default_rng(5)
    keys = np.unique(rng.integers(-(1 << 62), 1 << 62, 300_000))
    rng.shuffle(keys)
    store.keys = keys
    for start in range(0, len(keys), 7000):
        part = keys[start:start + 7000]
        rows, at = index.find(part)
        assert (rows == -1).all()
        index.add(part, start + np.arange(len(part)), at)
    assert len(index._rows) == 1 << 19   # 300 k keys at most 3/4 of the slots
    store.reads = 0
    absent = np.setdiff1d(rng.integers(-(1 << 62), 1 << 62, 100_000), keys)
    rows, _ = index.find(absent)
    assert (rows == -1).all()
    assert store.reads < len(absent) // 50   # only where an 8-bit tag matched
    rows, _ = index.find(keys)
    assert np.array_equal(rows, np.arange(len(keys)))
