"""State files since format 2 (integer columns DELTA_BINARY_PACKED, floating point ones
BYTE_STREAM_SPLIT): every value comes back bit for bit, and checkpoints written before (plain
lz4 Parquet, no ``caudal.state`` mark) still restore, alone or with newer files after them in
the same chain."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from caudal.checkpoint.storage import STATE_COMPRESSION, STATE_FORMAT, CheckpointStorage
from caudal.checkpoint.written_file import WrittenFile

INT_TYPES = [pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint32(),
             pa.uint64(), pa.timestamp("us", "UTC"), pa.date32(), pa.duration("ns")]


def _bounds(t: pa.DataType) -> tuple[int, int]:
    if pa.types.is_unsigned_integer(t):
        return 0, (1 << t.bit_width) - 1
    if pa.types.is_date32(t):
        return -(1 << 31), (1 << 31) - 1
    bits = t.bit_width
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


@st.composite
def tables(draw) -> pa.Table:
    n = draw(st.integers(0, 40))
    columns = {}
    for i, t in enumerate(draw(st.lists(st.sampled_from(INT_TYPES), min_size=1, max_size=3))):
        lo, hi = _bounds(t)
        values = draw(st.lists(st.one_of(st.none(), st.integers(lo, hi),
                                         st.sampled_from([lo, hi, 0])), min_size=n, max_size=n))
        storage_type = pa.int64() if not pa.types.is_integer(t) else t
        if pa.types.is_date32(t):
            storage_type = pa.int32()
        columns[f"i{i}"] = pa.array(values, storage_type).view(t) \
            if not pa.types.is_integer(t) else pa.array(values, t)
    for i, t in enumerate(draw(st.lists(st.sampled_from([pa.float64(), pa.float32()]),
                                        max_size=2))):
        width = 64 if t == pa.float64() else 32
        floats = st.floats(allow_nan=True, allow_infinity=True, width=width)
        columns[f"f{i}"] = pa.array(draw(st.lists(st.one_of(st.none(), floats), min_size=n,
                                                  max_size=n)), t)
    columns["s"] = pa.array(draw(st.lists(st.one_of(st.none(), st.text(max_size=3)),
                                          min_size=n, max_size=n)))
    return pa.table(columns)


def _bits(table: pa.Table) -> list:
    """Every value, floats by their bytes (NaN payloads and -0.0 told apart)."""
    out = []
    for col in table.columns:
        if pa.types.is_floating(col.type):
            fmt = "<d" if col.type == pa.float64() else "<f"
            out.append([None if v is None else struct.pack(fmt, v) for v in col.to_pylist()])
        elif pa.types.is_temporal(col.type):   # by their integers (years past 9999)
            width = pa.int32() if pa.types.is_date32(col.type) else pa.int64()
            out.append(col.combine_chunks().view(width).to_pylist())
        else:
            out.append(col.to_pylist())
    return out


@settings(max_examples=80, deadline=None)
@given(tables())
def test_state_files_round_trip_bit_for_bit(tmp_path_factory, table):
    storage = CheckpointStorage(str(tmp_path_factory.mktemp("ck")))
    ref = storage.write_table("epoch-00000001/t.parquet", table)
    back = storage.read_table(ref)
    assert back.schema.remove_metadata().equals(table.schema)
    assert _bits(back) == _bits(table)
    meta = pq.ParquetFile(storage.full(ref.path)).schema_arrow.metadata
    assert meta[b"caudal.state"] == STATE_FORMAT


def test_integer_and_float_columns_get_their_encodings(tmp_path):
    storage = CheckpointStorage(str(tmp_path))
    n = 100_000
    table = pa.table({"k": np.arange(n, dtype=np.int64), "x": np.random.default_rng(1).random(n),
                      "s": pa.array(["a"] * n)})
    ref = storage.write_table("epoch-00000001/t.parquet", table)
    meta = pq.ParquetFile(storage.full(ref.path)).metadata.row_group(0)
    encodings = {meta.column(i).path_in_schema: meta.column(i).encodings
                 for i in range(meta.num_columns)}
    assert "DELTA_BINARY_PACKED" in encodings["k"]
    assert "BYTE_STREAM_SPLIT" in encodings["x"]
    assert meta.column(0).total_compressed_size < 10_000   # consecutive keys: ~nothing


def test_dictionary_columns_are_written_as_parquet_dictionaries(tmp_path):
    """Text a compact store keeps as codes is snapshotted as a dictionary array and written
    as a Parquet dictionary (its codes as they are); it reads back equal, still encoded."""
    storage = CheckpointStorage(str(tmp_path))
    n = 50_000
    codes = np.random.default_rng(2).integers(0, 40, n).astype(np.int32)
    urls = pa.array([f"https://example.com/{i}/" + "x" * 60 for i in range(40)])
    table = pa.table({"k": np.arange(n, dtype=np.int64),
                      "url": pa.DictionaryArray.from_arrays(
                          pa.array(codes, mask=codes == 3), urls),
                      "s": pa.array([str(i) for i in range(n)])})
    ref = storage.write_table("epoch-00000001/t.parquet", table)
    meta = pq.ParquetFile(storage.full(ref.path)).metadata.row_group(0)
    assert meta.column(1).has_dictionary_page and not meta.column(2).has_dictionary_page
    assert meta.column(1).total_compressed_size < 60_000   # 50 k rows of 75-byte urls
    back = storage.read_table(ref)
    assert back.column("url").type == table.column("url").type
    assert back.column("url").to_pylist() == table.column("url").to_pylist()
    assert back.column("s").equals(table.column("s"))


def _write_old(storage: CheckpointStorage, rel: str, table: pa.Table) -> WrittenFile:
    """A state file as caudal wrote them before format 2 (plain, lz4, no mark)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression=STATE_COMPRESSION, use_dictionary=False,
                   row_group_size=1 << 20, write_statistics=False)
    data = sink.getvalue()
    storage.write_bytes(rel, data)
    return WrittenFile(rel, data.size, zlib.crc32(memoryview(data)), table.num_rows)


def _state(op) -> list:
    """The operator's whole state as its snapshot would write it, rows sorted."""
    from bench.incremental_state import _reset_baseline

    _reset_baseline(op)
    snap = op.snapshot(1 << 20)
    return _rows(snap["panes"] if "panes" in snap else snap["table"])


def _rows(t: pa.Table) -> list:
    names = [c for c in t.column_names if c not in ("_seen", "_key_group")]
    return sorted(zip(*(t.column(c).to_pylist() for c in names)))


def _restored(rig, epoch):
    from caudal.checkpoint.manifest import read_manifest
    from caudal.checkpoint.recovery import load_state

    restored = load_state(rig.storage, read_manifest(rig.storage, epoch), rig.graph)
    op = rig.fresh()
    op.restore(restored.payloads[(rig.vertex, 0)]["operators"][rig.index])
    restored.checked()
    return op


def test_checkpoints_written_before_format_2_restore(tmp_path, monkeypatch):
    """A chain whose whole table and first delta were written the old way and whose last
    delta the new way restores to the operator's state, as does the old whole table alone;
    for the updating and the window aggregate."""
    from bench.incremental_state import Rig, _batch, _window_batch
    from caudal.checkpoint.manifest import read_manifest

    for window in (False, True):
        root = tmp_path / ("window" if window else "updating")
        root.mkdir()
        rig = Rig(root, window)
        batch = _window_batch if window else _batch
        rng = np.random.default_rng(5)
        with monkeypatch.context() as m:
            m.setattr(CheckpointStorage, "write_table", _write_old)
            rig.op.process(batch(np.arange(3000, dtype=np.int64), rng))
            old_whole, _, _ = rig.checkpoint()
            (written,) = [f.file.path for f in read_manifest(rig.storage, old_whole).files()
                          if ("panes" if window else "table") in f.file.path]
            assert _state(_restored(rig, old_whole)) == \
                _rows(pq.read_table(rig.storage.full(written)))
            rig.op.process(batch(np.arange(0, 4000, 3, dtype=np.int64), rng))
            rig.checkpoint()
        rig.op.process(batch(np.arange(1, 5000, 5, dtype=np.int64), rng))
        epoch, _, _ = rig.checkpoint()
        rig.coord.close()
        marks = [(pq.ParquetFile(rig.storage.full(f.file.path)).schema_arrow.metadata or {})
                 .get(b"caudal.state", b"")
                 for f in read_manifest(rig.storage, epoch).files()]
        # the old whole table and delta, and the new delta (and the other state's file)
        assert marks.count(b"") == 2 and STATE_FORMAT in marks
        assert _state(_restored(rig, epoch)) == _state(rig.op)
