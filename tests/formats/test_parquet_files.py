"""caudal.formats.parquet: reading row groups as the declared schema, and the writer."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

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
