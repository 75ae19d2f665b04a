"""formats.parquet_pages reads the rows asked for from the pages holding them: the same
values as pyarrow's whole-chunk decode, over the layouts writers produce (dictionary pages
and their fallback to PLAIN, data pages v1 and v2, NULLs, every codec, tiny pages), and
None (so the caller reads another way) for layouts it does not decode."""

from __future__ import annotations

from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caudal.connectors.filesystem import _read_at
from caudal.formats.parquet_pages import read_rows


def _table(rng: np.random.Generator, n: int, distinct: int) -> pa.Table:
    nulls = rng.random(n) < 0.2
    words = [f"w{i}-" + "z" * int(rng.integers(0, 40)) for i in range(distinct)]
    return pa.table({
        "s": pa.array([words[i] for i in rng.integers(0, distinct, n)], pa.string(),
                      mask=nulls),
        "b": pa.array([bytes([i % 256]) * (i % 5) for i in range(n)], pa.binary()),
        "i": pa.array(rng.integers(-10**12, 10**12, n), pa.int64(), mask=rng.random(n) < 0.1),
        "j": pa.array(rng.integers(0, distinct, n).astype(np.int32), pa.int32()),
        "f": pa.array(rng.standard_normal(n), pa.float64()),
        "g": pa.array(rng.standard_normal(n).astype(np.float32), pa.float32(),
                      mask=nulls),
    })


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 10**6), n=st.integers(1, 3000),
       distinct=st.sampled_from([1, 3, 50, 5000]),
       codec=st.sampled_from(["snappy", "zstd", "gzip", "lz4", "brotli", "none"]),
       dictionary=st.booleans(), version=st.sampled_from(["1.0", "2.0"]),
       page=st.sampled_from([64, 1024, 1 << 20]), dict_limit=st.sampled_from([256, 1 << 20]),
       group=st.sampled_from([100, 1000, 5000]), picks=st.integers(1, 30))
def test_rows_equal_pyarrow(tmp_path_factory, seed, n, distinct, codec, dictionary, version,
                            page, dict_limit, group, picks):
    rng = np.random.default_rng(seed)
    table = _table(rng, n, distinct)
    path = tmp_path_factory.mktemp("p") / "t.parquet"
    pq.write_table(table, path, compression=codec, use_dictionary=dictionary,
                   data_page_version=version, data_page_size=page,
                   dictionary_pagesize_limit=dict_limit, row_group_size=group,
                   write_statistics=bool(seed % 2))
    file = pq.ParquetFile(path)
    handle = pafs.LocalFileSystem().open_input_file(str(path))
    for g in range(file.metadata.num_row_groups):
        rows = np.sort(rng.integers(0, file.metadata.row_group(g).num_rows, picks))
        whole = file.read_row_group(g)
        for name in table.column_names:
            got = read_rows(file, name, whole.schema.field(name).type, g, rows,
                            partial(_read_at, handle))
            if codec == "lz4":  # Parquet's LZ4 (hadoop framing) is not read here
                assert got is None
                continue
            assert got is not None, (name, g)
            assert got.to_pylist() == whole.column(name).take(pa.array(rows)).to_pylist()


def test_other_layouts_are_refused(tmp_path):
    path = tmp_path / "n.parquet"
    pq.write_table(pa.table({"l": [[1, 2], None, [3]], "u": pa.array([1, 2, 3], pa.uint32()),
                             "d": pa.array([1, 2, 3], pa.date32())}), path)
    file = pq.ParquetFile(path)
    handle = pafs.LocalFileSystem().open_input_file(str(path))
    for name, dtype in [("l.list.element", pa.int64()), ("u", pa.uint32()),
                        ("d", pa.date32())]:
        assert read_rows(file, name, dtype, 0, np.array([1]), partial(_read_at, handle)) is None
