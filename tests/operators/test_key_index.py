"""KeyIndex and SlotTable against a dict model: ids are stable, dense and in first-seen order,
over integer keys (the NumPy hash table, NULL included, many growths) and other keys (text,
several columns); a SlotTable's rows are the last ones put, and its table() is a copy."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from caudal.operators.key_index import KeyIndex, SlotTable

_batches = st.lists(st.lists(st.one_of(st.none(), st.integers(-50, 3000)), max_size=400),
                    min_size=1, max_size=12)


def _check(index: KeyIndex, batches: list[pa.Table], key) -> None:
    model: dict = {}
    for table in batches:
        ids, new = index.ids(table)
        for row, (i, n) in enumerate(zip(ids.tolist(), new.tolist())):
            k = key(table, row)
            assert n == (k not in model)
            model.setdefault(k, len(model))
            assert i == model[k]
    assert index.size == len(model)


@settings(max_examples=40, deadline=None)
@given(_batches, st.sampled_from([pa.int64(), pa.int32(), pa.timestamp("us")]),
       st.sampled_from([1, 997, 10**12]))
def test_integer_keys_match_a_dict(batches, dtype, scale):
    """Scale 1 keeps the keys dense (the direct table), 10**12 spreads them (the hash
    table), 997 starts direct and turns into the hash table as keys arrive."""
    if scale > 1 and dtype == pa.int32():
        scale = 1
    tables = [pa.table({"k": pa.array([None if v is None else v * scale
                                       for v in dict.fromkeys(b)], pa.int64()).cast(dtype)})
              for b in batches]
    index = KeyIndex(["k"], tables[0].schema)
    assert index.integer
    _check(index, tables, lambda t, r: t.column("k")[r].as_py())


def test_dense_keys_turn_into_the_hash_table_when_they_spread():
    index = KeyIndex(["k"], pa.schema([("k", pa.int64())]))
    first = np.arange(-1000, 9000, 3)
    ids, new = index.ids(pa.table({"k": first}))
    assert new.all() and index._direct is not None
    far = np.array([2**62, -2**63, 2**63 - 1, 18], dtype=np.int64)
    ids2, new2 = index.ids(pa.table({"k": far}))
    assert index._direct is None
    assert (ids2 == len(first) + np.arange(4)).all() and new2.all()
    ids3, new3 = index.ids(pa.table({"k": np.concatenate([far, first[::-1]])}))
    assert not new3.any()
    assert (ids3 == np.concatenate([ids2, ids[::-1]])).all()


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(-2**63, 2**63 - 1), min_size=1, max_size=3000, unique=True),
       st.integers(0, 50))
def test_bulk_build_in_two_halves_finds_every_key(keys, reserve):
    """A restore's bulk build of the hash table places two halves on two threads above
    ``_PARALLEL_BUILD`` keys (lowered here): key i gets id i, and keys added later follow."""
    from caudal.operators import key_index

    saved = key_index._PARALLEL_BUILD
    key_index._PARALLEL_BUILD = 2
    try:
        table = pa.table({"k": pa.array(keys, pa.int64())})
        index = KeyIndex.build(["k"], table, reserve)
        ids, new = index.ids(table)
        assert not new.any() and (ids == np.arange(len(keys))).all()
        extra = pa.table({"k": pa.array([k for k in range(-3, 3) if k not in set(keys)],
                                        pa.int64())})
        ids2, new2 = index.ids(extra)
        assert new2.all() and (ids2 == len(keys) + np.arange(extra.num_rows)).all()
    finally:
        key_index._PARALLEL_BUILD = saved


def test_sequential_keys_grow_the_table():
    index = KeyIndex(["k"], pa.schema([("k", pa.int64())]))
    for start in range(0, 200_000, 50_000):
        ids, new = index.ids(pa.table({"k": np.arange(start, start + 50_000)}))
        assert new.all() and (ids == np.arange(start, start + 50_000)).all()
    ids, new = index.ids(pa.table({"k": np.arange(199_999, -1, -7)}))
    assert not new.any() and (ids == np.arange(199_999, -1, -7)).all()


@settings(max_examples=20, deadline=None)
@given(st.lists(st.lists(st.tuples(st.sampled_from(["a", "b", None]), st.integers(0, 5)),
                         max_size=30), min_size=1, max_size=6))
def test_other_keys_match_a_dict(batches):
    tables = []
    for b in batches:
        rows = list(dict.fromkeys(b))
        tables.append(pa.table({"s": pa.array([r[0] for r in rows], pa.string()),
                                "n": pa.array([r[1] for r in rows], pa.int64())}))
    index = KeyIndex(["s", "n"], tables[0].schema)
    assert not index.integer
    _check(index, tables, lambda t, r: (t.column("s")[r].as_py(), t.column("n")[r].as_py()))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 60), st.one_of(st.none(), st.integers(-2**63, 2**63 - 1)),
                                   st.one_of(st.none(), st.text(max_size=3))),
                         max_size=40), min_size=1, max_size=8))
def test_slot_table_keeps_the_last_row_put(puts):
    schema = pa.schema([("v", pa.int64()), ("s", pa.string())])
    store, model = SlotTable(schema), {}
    index = KeyIndex(["k"], pa.schema([("k", pa.int64())]))
    for rows in puts:
        last = {k: (v, s) for k, v, s in rows}  # one row per key, as a flush has
        keys = list(last)
        ids, _ = index.ids(pa.table({"k": pa.array(keys, pa.int64())}))
        store.put(ids, pa.table({"v": pa.array([last[k][0] for k in keys], pa.int64()),
                                 "s": pa.array([last[k][1] for k in keys], pa.string())}))
        model.update({int(i): last[k] for i, k in zip(ids, keys)})
    table = store.table()
    assert table.num_rows == len(model) == store.size
    assert list(zip(table.column("v").to_pylist(), table.column("s").to_pylist())) == \
        [model[i] for i in range(len(model))]
    if store.size:  # a snapshot never shares memory with the live arrays
        store.put(np.array([0]), pa.table({"v": pa.array([-1], pa.int64()),
                                           "s": pa.array(["z"])}))
        assert table.column("v")[0].as_py() == model[0][0]
