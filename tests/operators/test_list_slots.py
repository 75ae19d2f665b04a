"""SlotTable's list columns kept as runs of a NumPy pool (operators.list_slots): any
sequence of puts (in place, moved, compacted, new keys, NULL lists) reads back as a dict of
lists would; a NULL among the values turns the column back into an Arrow array; a table
taken before a put keeps its values; a restored (sized, filled) table reads the same."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from caudal.operators.key_index import SlotTable

SCHEMA = pa.schema([("k", pa.int64()), ("v", pa.list_(pa.int64())),
                    ("w", pa.list_(pa.int64())), ("f", pa.list_(pa.float32()))])

_LIST = st.one_of(st.none(), st.lists(st.integers(-2**63, 2**63 - 1), max_size=12))


@st.composite
def puts(draw) -> list[tuple[list[int], list]]:
    out, size = [], 0
    for _ in range(draw(st.integers(1, 25))):
        new = draw(st.integers(0, 6))
        old = draw(st.lists(st.integers(0, size - 1), unique=True, max_size=size)) \
            if size else []
        ids = old + list(range(size, size + new))
        if not ids:
            continue
        order = draw(st.permutations(ids))
        out.append((order, [draw(_LIST) for _ in order]))
        size += new
    return out


def _rows(ids: list[int], lists: list) -> pa.Table:
    floats = [None if v is None else [float(x % 1000) for x in v] for v in lists]
    return pa.table({"k": pa.array(ids, pa.int64()), "v": pa.array(lists, SCHEMA[1].type),
                     "w": pa.array(lists, SCHEMA[2].type),
                     "f": pa.array(floats, SCHEMA[3].type)})


@settings(max_examples=150, deadline=None)
@given(steps=puts(), share=st.booleans())
def test_puts_read_back_as_a_dict(steps, share):
    table = SlotTable(SCHEMA)
    if share:
        table.share("w", "v")
    want: dict[int, tuple] = {}
    taken = None
    for ids, lists in steps:
        table.put(np.array(ids, dtype=np.int64), _rows(ids, lists))
        for row in _rows(ids, lists).to_pylist():
            want[row["k"]] = tuple(row.values())
        got = [tuple(r.values()) for r in table.table().to_pylist()]
        assert got == [want[i] for i in range(table.size)]
        if taken is not None:   # an earlier copy is not changed by later puts
            assert taken[1].to_pylist() == taken[0]
        snapshot = table.table()
        taken = (snapshot.to_pylist(), snapshot)
    assert table.lists("v") is not None
    assert (table.lists("w") is table.lists("v")) == share
    restored = SlotTable.of(table.table())
    assert restored.table().equals(table.table())
    pick = np.array(sorted(want)[::2], dtype=np.int64)
    assert table.take(pick).to_pylist() == [dict(zip(SCHEMA.names, want[i])) for i in pick]


def test_a_null_value_makes_the_column_arrow():
    table = SlotTable(SCHEMA)
    table.put(np.arange(3), _rows([0, 1, 2], [[1, 2], [], None]))
    assert table.lists("v") is not None
    rows = _rows([1], [[5]]).set_column(1, "v", pa.array([[5, None]], SCHEMA[1].type))
    table.put(np.array([1]), rows)
    assert table.lists("v") is None and table.lists("w") is not None
    assert table.table().column("v").to_pylist() == [[1, 2], [5, None], None]
    assert table.table().column("w").to_pylist() == [[1, 2], [5], None]


def test_runs_that_grow_move_and_the_pool_compacts():
    table = SlotTable(SCHEMA)
    n = 3000
    for step in range(1, 40):
        ids = np.arange(0, n, step)
        lists = [[int(i)] * (step % 7) for i in ids]
        table.put(ids, _rows(ids.tolist(), lists))
    slots = table.lists("v")
    assert slots is not None and slots.dropped <= max(slots.used // 2, 1024)
    got = table.table().column("v").to_pylist()
    for i in range(n):
        last = max(s for s in range(1, 40) if i % s == 0)
        assert got[i] == [i] * (last % 7)
