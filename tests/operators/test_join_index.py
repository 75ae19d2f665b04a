"""The key -> rows index of an updating join side (operators.join_index) against a brute
force model: appends and probes interleaved in any order, rows removed (the runs rebuilt),
NULL keys (never matched), dense and spread keys, int64, int32 and timestamp keys; and a
JoinSide's probes through the index equal the Polars hash join it replaces. The SQL-level
folds against DuckDB are in tests/sql (test_joins_sql, test_compact_state_sql,
test_join_index_sql)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from caudal.operators.join_index import KeyRows
from caudal.operators.join_rows import match
from caudal.operators.join_side import JoinSide

_keys = st.lists(st.one_of(st.none(), st.integers(-20, 60)), max_size=200)
_ops = st.lists(st.tuples(st.sampled_from(["append", "probe", "keep"]), _keys,
                          st.integers(0, 2**31)), min_size=1, max_size=25)


def _column(keys: list, scale: int, dtype: pa.DataType) -> pa.Array:
    return pa.array([None if k is None else k * scale for k in keys], pa.int64()).cast(dtype)


def _pairs(pi: np.ndarray, ri: np.ndarray) -> list[tuple[int, int]]:
    return sorted(zip(pi.tolist(), ri.tolist()))


@settings(max_examples=60, deadline=None)
@given(_ops, st.sampled_from([1, 7, 10**12]),
       st.sampled_from([pa.int64(), pa.int32(), pa.timestamp("us")]))
def test_pairs_equal_brute_force(ops, scale, dtype):
    """Scale 1 keeps the ids directly addressed, 10**12 spreads them over the hash table."""
    if dtype == pa.int32():
        scale = min(scale, 7)
    schema = pa.schema([("k", dtype)])
    index = KeyRows("k", schema)
    stored: list = []
    for op, keys, seed in ops:
        if op == "append":
            stored += keys
        elif op == "keep" and stored:
            mask = np.random.default_rng(seed).random(len(stored)) < 0.6
            stored = [k for k, m in zip(stored, mask) if m]
            index.reset()
        else:
            index.cover(_column(stored, scale, dtype))
            pi, ri = index.pairs(_column(keys, scale, dtype))
            expected = [(i, j) for i, k in enumerate(keys) if k is not None
                        for j, s in enumerate(stored) if s == k]
            assert _pairs(pi, ri) == expected


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.booleans(), _keys), min_size=1, max_size=12))
def test_join_side_probes_equal_the_hash_join(steps):
    """Batches of either side in turn: each probes the other through its index (many runs,
    merged as they come) and through the Polars join of all its stored keys."""
    schema = pa.schema([("k", pa.int64()), ("v", pa.string())])
    sides = [JoinSide(schema, ["k"], {}, {}) for _ in range(2)]
    assert all(s.index is not None for s in sides)
    for which, keys in steps:
        batch = pa.table({"k": pa.array(keys, pa.int64()),
                          "v": pa.array([str(k) for k in keys], pa.string())})
        other = sides[1 - which]
        got = other.match(batch, ["k"])
        expected = match(batch, ["k"], other.store.view(), ["k"])
        assert _pairs(*got) == _pairs(*expected)
        sides[which].append(batch)


def test_runs_stay_few_and_cover_every_row():
    """A side probed after every small append keeps O(log rows) runs, each row in one."""
    schema = pa.schema([("k", pa.int64())])
    index = KeyRows("k", schema)
    keys = np.random.default_rng(3).integers(0, 5000, 200_000)
    for stop in range(1000, len(keys) + 1, 1000):
        index.cover(pa.array(keys[:stop]))
        index.pairs(pa.array([1, 2, 3]))
    assert len(index.runs) <= 8
    covered = np.sort(np.concatenate([r.rows for r in index.runs]))
    assert (covered == np.arange(len(keys))).all()
    pi, ri = index.pairs(pa.array([7, 4999]))
    assert sorted(ri.tolist()) == np.flatnonzero((keys == 7) | (keys == 4999)).tolist()


def test_keys_at_the_ends_of_int64():
    """Stored and probed keys at both ends of int64 (differences from the direct table's
    base that overflow int64 must not be found)."""
    lo, hi = -(1 << 63), (1 << 63) - 1
    for stored in ([hi - 5, hi - 3, hi], [lo, lo + 2, lo + 9]):
        index = KeyRows("k", pa.schema([("k", pa.int64())]))
        index.cover(pa.array(stored, pa.int64()))
        assert index.keys._direct is not None
        probe = [lo, lo + 1, lo + 2, lo + 9, -1, 0, 1, hi - 5, hi - 4, hi, None]
        pi, ri = index.pairs(pa.array(probe, pa.int64()))
        expected = [(i, j) for i, k in enumerate(probe) for j, s in enumerate(stored)
                    if k is not None and k == s]
        assert _pairs(pi, ri) == expected


def test_sparse_keys_of_a_moderate_range_stay_directly_addressed():
    """Keys 40 apart over a range of 1.2 M (an id range split over subtasks and filtered)
    are looked up in the direct table, arriving out of order, not in the hash table."""
    index = KeyRows("k", pa.schema([("k", pa.int64())]))
    keys = np.arange(1000, 1_201_000, 40)
    order = np.random.default_rng(5).permutation(len(keys))
    for part in np.array_split(order, 30):
        index.keys.find_or_add(pa.array(keys[np.sort(part)]))
    assert index.keys._direct is not None
    assert (index.keys.find(pa.array(keys)) >= 0).all()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["append", "append", "probe", "keep"]),
                          st.integers(0, 40), st.booleans(), st.integers(0, 2**31)),
                min_size=1, max_size=30),
       st.sampled_from([pa.int64(), pa.timestamp("us")]))
def test_unique_keys_are_gathered_until_a_key_repeats(ops, dtype):
    """While no key has two stored rows the index keeps each key's row (no runs): appends
    of new keys (NULLs too), probes, rows removed by ``keep``, and then a key stored twice
    (``repeat``), from which on the runs answer. Every probe equals the brute force."""
    schema = pa.schema([("k", dtype)])
    index = KeyRows("k", schema)
    stored: list = []
    fresh = iter(range(10_000))
    was_unique = True
    for op, size, repeat, seed in ops:
        rng = np.random.default_rng(seed)
        if op == "append":
            keys = [None if rng.random() < 0.1 else next(fresh) * 3 for _ in range(size)]
            if repeat and stored:
                keys.append(stored[int(rng.integers(0, len(stored)))])
            stored += keys
            index.cover(_column(stored, 1, dtype))
        elif op == "keep" and stored:
            index.cover(_column(stored, 1, dtype))
            mask = rng.random(len(stored)) < 0.6
            stored = [k for k, m in zip(stored, mask) if m]
            index.keep(mask)
        else:
            index.cover(_column(stored, 1, dtype))
            probe = [None if rng.random() < 0.1 else int(k) for k in rng.integers(-3, 60, size)]
            probe += [k for k in stored[:3]]
            pi, ri = index.pairs(_column(probe, 1, dtype))
            expected = [(i, j) for i, k in enumerate(probe) if k is not None
                        for j, s in enumerate(stored) if s == k]
            assert _pairs(pi, ri) == expected
        present = [k for k in stored if k is not None]
        if len(set(present)) < len(present):
            was_unique = False
        if was_unique:   # no key stored twice so far: no runs
            assert index.unique is not None and not index.runs
