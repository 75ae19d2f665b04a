"""caudal.formats.parquet: reading row groups as the declared schema, and the writer."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caudal.errors import ConfigError, DataError
from caudal.formats import parquet
from caudal.types import TIMESTAMP


def test_writer_makes_large_row_groups(tmp_path) -> None:
    path = tmp_path / "a.parquet"
    schema = pa.schema([("x", pa.int64())])
    writer = parquet.Writer(pafs.LocalFileSystem().open_output_stream(str(path)), schema)
    for i in range(100):
        writer.write(pa.record_batch({"x": pa.array(range(i * 10, i * 10 + 10))}, schema=schema))
    writer.close()
    meta = pq.ParquetFile(path).metadata
    assert meta.num_row_groups == 1 and meta.num_rows == 1000


def test_writer_row_groups_have_no_small_tails(tmp_path, monkeypatch) -> None:
    """Row groups are the buffered batches whole: none but the last is small (the rows past
    ROW_GROUP_ROWS used to make a row group of their own after each large one)."""
    monkeypatch.setattr(parquet.Writer, "ROW_GROUP_ROWS", 1000)
    path = tmp_path / "a.parquet"
    schema = pa.schema([("x", pa.int64())])
    writer = parquet.Writer(pafs.LocalFileSystem().open_output_stream(str(path)), schema)
    for i in range(40):
        writer.write(pa.record_batch({"x": pa.array(range(i * 130, i * 130 + 130))},
                                     schema=schema))
    writer.close()
    meta = pq.ParquetFile(path).metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert sizes == [1040] * 5
    assert pq.read_table(path).column("x").to_pylist() == list(range(5200))


def test_reader_conforms_types_and_names(tmp_path) -> None:
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"T": pa.array([1_500, None], pa.timestamp("ms")),
                             "S": pa.array(["a", "b"]).dictionary_encode(),
                             "n": pa.array([1, 2], pa.int32())}), path, row_group_size=1)
    schema = pa.schema([("t", TIMESTAMP), ("s", pa.string()), ("n", pa.int64())])
    reader = parquet.FileReader(pafs.LocalFileSystem(), str(path), schema, "file a")
    assert reader.row_groups == [1, 1]
    table = reader.read(1)
    assert table.schema.equals(schema)
    assert table.to_pylist() == [{"t": None, "s": "b", "n": 2}]
    assert parquet.infer_schema(pafs.LocalFileSystem(), str(path)) == pa.schema(
        [("T", TIMESTAMP), ("S", pa.string()), ("n", pa.int32())])


def test_unreadable_columns(tmp_path) -> None:
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"s": ["x", "1"]}), path)
    fs = pafs.LocalFileSystem()
    with pytest.raises(ConfigError, match="has no column 'q'"):
        parquet.check_columns(fs, str(path), pa.schema([("q", pa.int64())]), "file a")
    with pytest.raises(ConfigError, match="is TEXT in file a, which cannot be read as BIGINT\\[\\]"):
        parquet.check_columns(fs, str(path), pa.schema([("s", pa.list_(pa.int64()))]), "file a")
    reader = parquet.FileReader(fs, str(path), pa.schema([("s", pa.int64())]), "file a")
    with pytest.raises(DataError, match="file a row group 0"):
        reader.read(0)


_DELTA_TYPES = [pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint32(),
                pa.uint64(), TIMESTAMP, pa.date32(), pa.time64("us")]


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(_DELTA_TYPES), st.lists(st.one_of(st.none(), st.integers()),
                                                max_size=300), st.sampled_from(["delta", "plain"]))
def test_writer_encodings_read_back_exactly(type_: pa.DataType, raw: list, encoding: str) -> None:
    """Integer and time columns written delta-encoded (or plain) read back as written, by
    pyarrow and by DuckDB, whatever the values: both ends of the type's range next to each
    other (the differences overflow), NULLs, runs of one value."""
    import duckdb

    bits = type_.bit_width
    signed = pa.types.is_signed_integer(type_) or not pa.types.is_integer(type_)
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if pa.types.is_date32(type_):
        low, high = -700_000, 2_900_000  # what DuckDB's DATE holds
    elif pa.types.is_time(type_):
        low, high = 0, 86_400_000_000 - 1
    elif pa.types.is_timestamp(type_):
        low, high = -(1 << 50), 1 << 50
    values = [None if v is None else (low if v % 3 == 0 else high if v % 3 == 1 else
                                      min(max(v, low), high)) for v in raw]
    storage = pa.int32() if type_ in (pa.date32(),) else pa.int64() \
        if not pa.types.is_integer(type_) else type_
    column = pa.array(values, storage).cast(type_) if storage != type_ else \
        pa.array(values, type_)
    table = pa.table({"x": column, "i": pa.array(range(len(values)), pa.int64())})
    out = pa.BufferOutputStream()
    writer = parquet.Writer(out, table.schema, {"parquet.integer_encoding": encoding})
    for batch in table.to_batches(max_chunksize=97):
        writer.write(batch)
    writer.close()
    data = out.getvalue()
    meta = pq.ParquetFile(pa.BufferReader(data)).metadata
    if meta.num_row_groups:
        used = meta.row_group(0).column(0).encodings
        assert ("DELTA_BINARY_PACKED" in used) == (encoding == "delta")
    assert pq.read_table(pa.BufferReader(data)).equals(table)
    path = f"/tmp/caudal-test-delta-{os.getpid()}.parquet"
    with open(path, "wb") as f:
        f.write(data.to_pybytes())
    try:
        con = duckdb.connect()
        back = con.sql(f"SELECT x FROM read_parquet('{path}') ORDER BY i").to_arrow_table()
        con.close()
    finally:
        os.unlink(path)
    assert back.column("x").cast(type_).to_pylist() == column.to_pylist()


def test_integer_encoding_option_is_checked() -> None:
    with pytest.raises(ConfigError, match="parquet.integer_encoding"):
        parquet.check_options({"parquet.integer_encoding": "rle"}, None, sink=True)
    parquet.check_options({"parquet.integer_encoding": "PLAIN"}, None, sink=True)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=6)), min_size=1, max_size=400),
       st.integers(1, 5), st.sampled_from([64, 1 << 20]), st.booleans())
def test_reader_text_columns_as_dictionaries_read_exactly(values: list, distinct: int,
                                                          dictionary_limit: int,
                                                          v2: bool) -> None:
    """Text columns whose pages are all dictionary-encoded are read as dictionaries and cast
    back; a chunk that fell back to plain pages (a dictionary past the writer's limit) is
    read as text. Either way the rows are the file's, NULLs and empty strings included."""
    import tempfile

    rows = [None if v is None else v * (i % distinct + 1) for i, v in enumerate(values)]
    table = pa.table({"s": pa.array(rows, pa.string()), "b": pa.array(
        [None if v is None else v.encode() for v in rows], pa.binary()),
        "n": pa.array(range(len(rows)), pa.int64())})
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/t.parquet"
        pq.write_table(table, path, row_group_size=97, dictionary_pagesize_limit=dictionary_limit,
                       data_page_size=128, write_batch_size=16,
                       data_page_version="2.0" if v2 else "1.0")
        reader = parquet.FileReader(pafs.LocalFileSystem(), path, table.schema, "file t")
        assert reader._texts == ["s", "b"]
        got = [reader.read(i) for i in range(len(reader.row_groups))]
        reader.close()
    assert pa.concat_tables(got).equals(table)
    assert all(t.schema.equals(table.schema) for t in got)


def test_reader_chooses_dictionaries_by_page_encodings(tmp_path) -> None:
    from caudal.formats.parquet_pages import dictionary_only

    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"few": ["a", "b"] * 500, "many": [str(i) for i in range(1000)]}),
                   path, dictionary_pagesize_limit=256, data_page_size=256, write_batch_size=10)
    file = pq.ParquetFile(path)
    mapped = pa.memory_map(str(path))

    def read_at(offset: int, length: int) -> pa.Buffer:
        return mapped.read_at(length, offset)

    assert dictionary_only(file, "few", 0, read_at)
    assert not dictionary_only(file, "many", 0, read_at)  # fell back to plain pages
    import pyarrow.compute  # noqa: F401  (the dictionary path casts with it)

    reader = parquet.FileReader(pafs.LocalFileSystem(), str(path), file.schema_arrow, "t")
    assert reader.read(0).equals(pq.read_table(path))
    assert list(reader._as_dictionary) == [frozenset({"few"})]
    reader.close()
