"""CompactRows (the rows an updating join or top-N keeps): random appends and removals over
every kind of column (integers that force the narrow buffer to widen, and to give up
narrowing at the ends of int64; timestamps, dates, floats and booleans with NULLs; text with
few distinct values, kept as dictionary codes, and with many, which stops paying and turns
plain; a decimal, kept as Arrow arrays) read back exactly as a plain Arrow table holding the
same rows; what ``table()`` returned (a snapshot) does not change as the store does."""

from __future__ import annotations

import datetime as dt
import decimal

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caudal.operators import compact_rows
from caudal.operators.compact_rows import CompactRows

SCHEMA = pa.schema([
    ("id", pa.int64()), ("small", pa.int32()), ("at", pa.timestamp("us", tz="UTC")),
    ("day", pa.date32()), ("x", pa.float64()), ("flag", pa.bool_()),
    ("channel", pa.string()), ("note", pa.string()), ("blob", pa.binary()),
    ("amount", pa.decimal128(10, 2)),
])

_INT64 = st.one_of(st.integers(-300, 300), st.integers(-(1 << 40), 1 << 40),
                   st.integers(-(1 << 63), (1 << 63) - 1))
_ROW = st.tuples(
    _INT64, st.one_of(st.none(), st.integers(-(1 << 31), (1 << 31) - 1)),
    st.one_of(st.none(), st.integers(0, 10**12)), st.one_of(st.none(), st.integers(0, 40000)),
    st.one_of(st.none(), st.floats(allow_nan=False)), st.one_of(st.none(), st.booleans()),
    st.one_of(st.none(), st.sampled_from(["web", "app", "", "mail"])),
    st.one_of(st.none(), st.text(max_size=6)), st.one_of(st.none(), st.binary(max_size=3)),
    st.one_of(st.none(), st.integers(-10**6, 10**6)))
_OPS = st.lists(st.one_of(
    st.tuples(st.just("append"), st.lists(_ROW, max_size=12)),
    st.tuples(st.just("keep"), st.lists(st.booleans(), min_size=40, max_size=40)),
    st.tuples(st.just("drop prefix"), st.integers(0, 6)),
    st.tuples(st.just("extend"), st.tuples(st.lists(st.lists(_ROW, max_size=8), max_size=4),
                                           st.booleans()))), min_size=1, max_size=14)


def _chunked(chunks: list[list[tuple]], encode: bool) -> pa.Table:
    """A table of one chunk per list of rows; ``encode``: text as dictionary arrays, each
    chunk's dictionary its own (as a restored Parquet file's row groups are)."""
    tables = [_table(rows) for rows in chunks] or [SCHEMA.empty_table()]
    if encode:
        text = {"channel", "note", "blob"}
        tables = [pa.Table.from_arrays(
            [pa.compute.dictionary_encode(c) if f.name in text else c
             for f, c in zip(SCHEMA, t.columns)], names=SCHEMA.names) for t in tables]
    return pa.concat_tables(tables)


def _table(rows: list[tuple]) -> pa.Table:
    cols = list(zip(*rows)) if rows else [()] * len(SCHEMA)
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    values = [
        cols[0], cols[1],
        [None if v is None else epoch + dt.timedelta(microseconds=v) for v in cols[2]],
        [None if v is None else dt.date(1970, 1, 1) + dt.timedelta(days=v) for v in cols[3]],
        cols[4], cols[5], cols[6], cols[7], cols[8],
        [None if v is None else decimal.Decimal(v).scaleb(-2) for v in cols[9]],
    ]
    return pa.Table.from_arrays([pa.array(list(v), f.type) for v, f in zip(values, SCHEMA)],
                                schema=SCHEMA)


def _check(store: CompactRows, reference: pa.Table, rng: np.random.Generator) -> None:
    assert store.num_rows == reference.num_rows
    assert store.table().equals(reference)
    assert store.view().equals(reference)
    n = reference.num_rows
    index = rng.integers(-1, n, 25) if n else np.full(5, -1)
    got = store.take(index)
    expected = reference.take(pa.array(np.maximum(index, 0))) if n else \
        SCHEMA.empty_table()
    for i, f in enumerate(SCHEMA):
        want = expected.column(i).to_pylist() if n else [None] * len(index)
        want = [None if k < 0 else w for k, w in zip(index, want)]
        assert got.column(i).to_pylist() == want, f.name
    assert store.take(index[:3], ["note", "id"]).column_names == ["note", "id"]
    mask = rng.random(n) < 0.5
    assert store.filter(mask).equals(reference.filter(pa.array(mask, pa.bool_())))


@pytest.fixture
def tiny_probation(monkeypatch):
    """Dictionaries judged after 8 rows, so small examples turn text plain too."""
    monkeypatch.setattr(compact_rows, "DICTIONARY_PROBATION", 8)


@settings(max_examples=60, deadline=None)
@given(ops=_OPS, seed=st.integers(0, 1000))
def test_reads_equal_a_plain_table(ops, seed):
    _run(ops, seed)


@settings(max_examples=25, deadline=None)
@given(ops=_OPS, seed=st.integers(0, 1000))
def test_reads_equal_a_plain_table_as_dictionaries_stop_paying(ops, seed):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(compact_rows, "DICTIONARY_PROBATION", 8)
        _run(ops, seed)


def _run(ops: list, seed: int) -> None:
    rng = np.random.default_rng(seed)
    store = CompactRows(SCHEMA)
    reference = SCHEMA.empty_table()
    snapshots: list[tuple[pa.Table, pa.Table]] = []
    for op, arg in ops:
        if op == "append":
            batch = _table(arg)
            store.append(batch)
            reference = pa.concat_tables([reference, batch])
        elif op == "extend":   # many chunks at once, as a restore loads them
            chunks, encode = arg
            store.extend(_chunked(chunks, encode))
            reference = pa.concat_tables([reference, *(_table(rows) for rows in chunks)])
        elif op == "keep":
            mask = np.resize(np.array(arg, dtype=bool), reference.num_rows)
            store.keep(mask)
            reference = reference.filter(pa.array(mask, pa.bool_()))
        else:
            mask = np.arange(reference.num_rows) >= arg
            store.keep(mask)
            reference = reference.filter(pa.array(mask, pa.bool_()))
        _check(store, reference, rng)
        snapshots.append((store.table(), reference))
        encoded = store.snapshot()  # text kept as codes stays dictionary-encoded
        snapshots.append((encoded, reference))
        mask = rng.random(reference.num_rows) < 0.5
        snapshots.append((store.snapshot(mask), reference.filter(pa.array(mask, pa.bool_()))))
        again = CompactRows(SCHEMA)  # a restore takes a snapshot back as it is
        again.append(encoded)
        assert again.table().equals(reference)
        halves = [encoded.slice(0, encoded.num_rows // 2), encoded.slice(encoded.num_rows // 2)]
        extended = CompactRows(SCHEMA)   # or its chunks, each with its own dictionary
        extended.extend(pa.concat_tables([pa.Table.from_arrays(
            [a.combine_chunks().cast(a.type.value_type).dictionary_encode()
             if pa.types.is_dictionary(a.type) else a
             for a in h.columns], schema=encoded.schema) if h.num_rows else h for h in halves]))
        assert extended.table().equals(reference)
    for snapshot, expected in snapshots:  # later appends and removals left them alone
        assert snapshot.cast(SCHEMA).equals(expected)


def test_text_with_few_values_is_kept_as_codes_and_ids_narrow():
    rng = np.random.default_rng(0)
    n = 200_000
    batch = pa.table({
        "id": pa.array(10**12 + rng.integers(0, 50_000, n)),
        "channel": pa.array(np.array([f"channel-{i}" for i in range(300)])[
            rng.integers(0, 300, n)]),
        "extra": pa.array([f"{i:032d}" for i in range(n)]),  # all distinct
    })
    store = CompactRows(batch.schema)
    for piece in batch.to_batches(max_chunksize=4096):
        store.append(piece)
    kinds = {f.name: type(c).__name__ for f, c in zip(batch.schema, store.columns)}
    assert kinds == {"id": "_Fixed", "channel": "_Dictionary", "extra": "_Plain"}
    assert store.columns[0].data.buf.dtype == np.int32  # differences from the first id
    assert store.columns[1].nbytes() < n * 5
    assert store.table().equals(batch)


def test_keys_kept_plain_are_viewed_without_a_copy():
    store = CompactRows(pa.schema([("k", pa.int64()), ("v", pa.int64())]), plain=["k"])
    store.append(pa.table({"k": pa.array(np.arange(5000)), "v": pa.array(np.arange(5000))}))
    assert store.fixed("k") and not store.fixed("v")
    view = store.view(["k"]).column(0).chunk(0)
    assert view.buffers()[1].address == store.columns[0].data.buf.ctypes.data


def test_rows_without_columns_keep_their_count():
    """The side of a keyless semi join (``EXISTS (SELECT 1 …)``) keeps no column."""
    store = CompactRows(pa.schema([]))
    store.append(pa.table({"a": [1, 2, 3]}).select([]))
    assert (store.num_rows, store.view().num_rows, store.table().num_rows) == (3, 3, 3)
    assert store.take(np.array([0, 2, -1])).num_rows == 3
    store.keep(np.array([True, False, True]))
    assert store.num_rows == store.table().num_rows == 2


def test_text_appended_between_reads_is_looked_up_many_batches_at_once(tiny_probation):
    """Once a dictionary has proved itself, appended text waits for its codes until many
    batches have come (one lookup set of the dictionary for all of them) or a read needs
    them: batches with new values, NULLs, all-NULL batches and dictionary arrays mixed in
    keep their order, and every read sees every row."""
    rng = np.random.default_rng(7)
    schema = pa.schema([("k", pa.int64()), ("channel", pa.string())])
    store = CompactRows(schema)
    pieces = []
    for i in range(60):
        if i % 17 == 5:
            values = pa.nulls(50, pa.string())
        else:
            words = np.array([f"a-longer-value-{j:04d}" for j in range(40 + i)])   # new ones
            values = pa.array(list(words[rng.integers(0, len(words), 300)]))
            if i % 7 == 3:
                values = pc_dictionary_encode(values)
            elif i % 5 == 1:
                values = pa.array([None if j % 3 == 0 else v for j, v in
                                   enumerate(values.to_pylist())], pa.string())
        piece = pa.table({"k": pa.array(np.arange(len(values)) + 100 * i),
                          "channel": values})
        store.append(piece)
        pieces.append(piece.cast(schema))
        if i == 30:
            column = store.columns[1]
            assert type(column).__name__ == "_Dictionary" and column.pending_rows > 0
            assert store.take(np.array([0, 1, 6000])).num_rows == 3   # a read flushes
            assert column.pending_rows == 0
    reference = pa.concat_tables(pieces)
    assert store.table().equals(reference)
    mask = rng.random(reference.num_rows) < 0.5
    assert store.snapshot(mask).cast(schema).equals(reference.filter(pa.array(mask)))


def pc_dictionary_encode(values: pa.Array) -> pa.Array:
    """A dictionary array of the values (one appended as it comes from a snapshot)."""
    return pa.compute.dictionary_encode(values)


@settings(max_examples=40, deadline=None)
@given(chunks=st.lists(st.lists(_ROW, max_size=8), max_size=4), encode=st.booleans(),
       seed=st.integers(0, 1000))
def test_extend_of_some_rows_equals_extend_of_them_filtered(chunks, encode, seed):
    """A restore at another parallelism copies only its key groups' rows from the chunks
    (``extend(rows, keep)``): what a filtered copy of them extended gives."""
    table = _chunked(chunks, encode)
    keep = np.random.default_rng(seed).random(table.num_rows) < 0.5
    store = CompactRows(SCHEMA)
    store.append(_table(chunks[0][:2]) if chunks else SCHEMA.empty_table())
    before = store.table()
    store.extend(table, keep)
    expected = pa.concat_tables([before, table.filter(pa.array(keep, pa.bool_()))
                                 .cast(SCHEMA)])
    assert store.num_rows == expected.num_rows
    assert store.table().equals(expected)
