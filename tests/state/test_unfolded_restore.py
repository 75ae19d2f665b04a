"""A chain restored unfolded (the whole table, possibly as its Parquet bytes, and the merged
deltas) stands for the same state as the folded chain; an updating aggregate restored from it
(row groups copied into its SlotTable, the deltas written by key) holds the same rows and
goes on to emit the same changes as one restored from the folded table."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caudal.operators.base import OperatorContext
from caudal.operators.key_index import SlotTable
from caudal.operators.updating_aggregate import UpdatingAggregate
from caudal.plan.aggregates import AggCall
from caudal.state.incremental import StateDelta, Unfolded, fold_chain, unfold_chain

IN = pa.schema([("k", pa.int64()), ("x", pa.int64())])
OUT = pa.schema([("k", pa.int64()), ("n", pa.int64()), ("s", pa.int64())])
SCHEMA = pa.schema([("k", pa.int64()), ("v", pa.int64())])


def _parquet(table: pa.Table, row_group: int = 3) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=row_group)
    return sink.getvalue()


def _rows(table: pa.Table) -> dict:
    return dict(zip(table.column("k").to_pylist(), table.column("v").to_pylist()))


steps = st.lists(st.tuples(st.dictionaries(st.integers(0, 12), st.integers(0, 9), max_size=5),
                           st.lists(st.integers(0, 12), max_size=3)), min_size=0, max_size=4)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.integers(0, 12), st.integers(0, 9), max_size=10), steps,
       st.booleans())
def test_unfolded_is_the_folded_chain(base, history, as_bytes):
    table = pa.table({"k": list(base), "v": list(base.values())}, schema=SCHEMA)
    parts = [(_parquet(table) if as_bytes else table, "full", (), None)]
    folded_parts = [(table, "full", (), None)]
    deleted = False
    for upserts, deletes in history:
        delta = StateDelta(["k"], upserts=pa.table({"k": list(upserts),
                                                    "v": list(upserts.values())},
                                                   schema=SCHEMA),
                           deletes=pa.table({"k": pa.array(deletes, pa.int64())}))
        deleted |= bool(deletes)
        part = (delta.encode(SCHEMA), "delta", ("k",), None)
        parts.append(part)
        folded_parts.append(part)
    unfolded = unfold_chain(parts)
    assert isinstance(unfolded, Unfolded)
    want = _rows(fold_chain(folded_parts))
    assert _rows(unfolded.table()) == want
    upserts = unfolded.upserts()
    if upserts is not None:   # base rows, then the upserts written by key
        got = {**_rows(unfolded.base_table()), **_rows(upserts)}
        assert got == want
    else:
        assert deleted
    assert unfolded.base_rows == table.num_rows
    # split a row group at a time from the bytes (the window aggregate's restore) or from
    # the table: the base's rows the deltas leave, in order, and the deltas' upserts
    kept, added = unfolded.split()
    assert not set(kept.column("k").to_pylist()) & set(added.column("k").to_pylist())
    assert {**_rows(kept), **_rows(added)} == want
    assert kept.column("k").to_pylist() == [k for k in table.column("k").to_pylist()
                                            if k in want and k not in _rows(added)]
    # a column left out is not returned (nor decoded); the key is still used
    only_v = unfolded.split(["v"])
    assert [t.column_names for t in only_v] == [["v"], ["v"]]
    assert [t.column("v").to_pylist() for t in only_v] == \
        [t.column("v").to_pylist() for t in (kept, added)]
    batches = list(unfolded.base_batches(["v"]))
    assert sum(b.num_rows for b in batches) == table.num_rows
    if batches:
        assert pa.concat_tables(batches).column("v").to_pylist() == \
            table.column("v").to_pylist()



@pytest.mark.parametrize("as_bytes", [False, True])
@pytest.mark.parametrize("deletes", [[], [1, 3]])
def test_split_after_a_delta_of_deletions_only(as_bytes, deletes):
    """A delta without upserts is written with the key columns only (StateDelta.encode
    without a schema, as the window aggregate writes one whose panes all fired): splitting
    a chain ending in one gave KeyError for the value columns (a resume after a kill failed
    with 'Field "_s0_n" does not exist in schema')."""
    table = pa.table({"k": [1, 2, 3], "v": [10, 20, 30]}, schema=SCHEMA)
    delta = StateDelta(["k"], deletes=pa.table({"k": pa.array(deletes, pa.int64())}))
    assert delta.encode().column_names == ["k", "_deleted"]
    unfolded = unfold_chain([(_parquet(table) if as_bytes else table, "full", (), None),
                             (delta.encode(), "delta", ("k",), None)])
    want = {k: v for k, v in _rows(table).items() if k not in deletes}
    kept, added = unfolded.split()
    assert _rows(kept) == want and added.num_rows == 0
    assert added.schema == kept.schema
    assert [t.column_names for t in unfolded.split(["v"])] == [["v"], ["v"]]


def test_sized_slot_table_is_filled_by_columns_and_row_groups():
    table = pa.table({"k": pa.array([1, 2, None, 4]), "v": pa.array([1.5, None, 3.0, 4.0]),
                      "s": pa.array(["a", None, "c", "d"])})
    store = SlotTable.sized(table.schema, 4, reserve=2)
    store.fill(0, table.select(["k"]))
    store.fill(0, table.select(["v", "s"]).slice(0, 3))
    store.fill(3, table.select(["v", "s"]).slice(3))
    store.seal()
    assert store.table().equals(table)
    store.put(np.array([4]), pa.table({"k": [5], "v": [5.0], "s": ["e"]}))
    assert store.table().column("s").to_pylist() == ["a", None, "c", "d", "e"]
    short = SlotTable.sized(table.schema, 4)
    short.fill(0, table.select(["k"]))
    try:
        short.seal()
    except ValueError as e:
        assert "not filled" in str(e)
    else:
        raise AssertionError("a column with no rows was sealed")


def _op() -> UpdatingAggregate:
    op = UpdatingAggregate(["k"], [AggCall("count", (), pa.int64()),
                                   AggCall("sum", ("x",), pa.int64())], IN, OUT, flush_us=0)
    op.open(OperatorContext())
    return op


def _batch(ks, xs):
    return pa.record_batch([pa.array(ks, pa.int64()), pa.array(xs, pa.int64())], schema=IN)


def _state(op: UpdatingAggregate) -> list:
    t = op.state.store.table()
    return sorted(zip(*(t.column(c).to_pylist() for c in t.column_names
                        if c != "_seen")))


def test_updating_aggregate_restored_unfolded_equals_folded():
    rng = np.random.default_rng(3)
    op = _op()
    op.process(_batch(rng.integers(0, 500, 2000), rng.integers(0, 100, 2000)))
    full = op.snapshot(1)["table"]
    parts = [(_parquet(full, 64), "full", (), None)]
    folded = [(full, "full", (), None)]
    for epoch in range(2, 5):   # updates of old keys and new keys (500..700)
        op.process(_batch(rng.integers(0, 700, 300), rng.integers(0, 100, 300)))
        delta = op.snapshot(epoch)["table"]
        assert isinstance(delta, StateDelta)
        part = (delta.encode(), "delta", tuple(delta.key), delta.expire)
        parts.append(part)
        folded.append(part)
    a, b = _op(), _op()
    a.restore({"table": unfold_chain(parts)})
    b.restore({"table": fold_chain(folded)})
    assert _state(a) == _state(b) == _state(op)
    more = _batch(rng.integers(0, 800, 400), rng.integers(0, 100, 400))
    out_a, out_b = a.process(more), b.process(more)

    def _changes(out):
        t = pa.Table.from_batches(out)
        return sorted(zip(*(c.to_pylist() for c in t.columns)))

    assert _changes(out_a) == _changes(out_b)
    assert _state(a) == _state(b)


@pytest.mark.parametrize("where", [0.02, 0.5, 0.98])
def test_a_corrupt_whole_table_left_to_the_operator_is_refused(tmp_path, where):
    """The whole table an operator decodes itself is checksummed beside the merging of the
    deltas and the operator's decoding of it: a byte changed anywhere in it (a row group
    at its start, the middle, the footer) fails the restore with the checksum's error,
    before the operator holds any of it, and ``Restored.checked`` (the supervisor's last
    look, after every operator restored) refuses it too."""
    from bench.incremental_state import Rig, _batch
    from caudal.checkpoint.errors import DamagedCheckpoint
    from caudal.checkpoint.manifest import read_manifest
    from caudal.checkpoint.recovery import load_state

    rig = Rig(tmp_path)
    rng = np.random.default_rng(1)
    rig.op.process(_batch(np.arange(5000, dtype=np.int64), rng))
    first, _, _ = rig.checkpoint()
    rig.op.process(_batch(np.arange(0, 5000, 7, dtype=np.int64), rng))
    epoch, _, _ = rig.checkpoint()
    rig.coord.close()
    manifest = read_manifest(rig.storage, epoch)
    whole = [f.file.path for f in manifest.files() if f.file.path.startswith(
        f"epoch-{first:08d}/")]
    assert len(whole) == 1   # the whole table of the first checkpoint (a delta follows)
    restored = load_state(rig.storage, manifest, rig.graph)
    chain = restored.payloads[(rig.vertex, 0)]["operators"][rig.index]["table"]
    assert isinstance(chain, Unfolded) and chain.delta is not None
    restored.checked()
    path = tmp_path / "ck" / whole[0]
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0xFF   # same size: only the checksum can tell
    path.write_bytes(bytes(data))
    restored = load_state(rig.storage, manifest, rig.graph)
    op = rig.fresh()
    with pytest.raises(DamagedCheckpoint, match="checksum"):
        op.restore(restored.payloads[(rig.vertex, 0)]["operators"][rig.index])
    assert op.state.store is None   # nothing of it became the operator's state
    with pytest.raises(DamagedCheckpoint, match="checksum"):
        restored.checked()
