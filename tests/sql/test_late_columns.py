"""Late materialization (plan.late_columns): the columns Nexmark q7 only carries past its
window max join are not decoded by the Parquet source; the source emits row locators and
the columns are read back for the kept rows. The answers equal DuckDB's (parallelism 1 and
2, several files and row group sizes, NULLs, renamed and computed-above columns); the
rewrite applies only where a column passes through unread; a changed file is refused."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caudal.connectors.filesystem import RowFetcher, file_key
from caudal.errors import DataError
from caudal.job import compile_sql, explain_sql
from caudal.plan.tables import LOCATOR_SCHEMA, TableSpec
from tests.helpers import normalized_rows, run_to_table

WINDOW = "TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '2' SECOND))"


def _q7(select: str = "B.auction, B.price, B.bidder, B.date_time, B.extra") -> str:
    return (f"SELECT {select} FROM bids AS B JOIN (SELECT max(price) AS maxprice, "
            f"window_end AS t FROM {WINDOW} GROUP BY window_start, window_end) AS B1 "
            f"ON B.price = B1.maxprice WHERE B.date_time BETWEEN B1.t - INTERVAL '2' SECOND "
            f"AND B1.t")


def _duck(select: str = "B.auction, B.price, B.bidder, B.date_time, B.extra") -> str:
    return (f"SELECT {select} FROM bids AS B JOIN (SELECT max(price) AS maxprice, "
            f"time_bucket(INTERVAL '2 seconds', date_time) + INTERVAL '2 seconds' AS t "
            f"FROM bids GROUP BY ALL) AS B1 ON B.price = B1.maxprice WHERE B.date_time "
            f"BETWEEN B1.t - INTERVAL '2' SECOND AND B1.t")


def _bids(n: int, seed: int) -> pa.Table:
    """Bids with ties, rows on window ends, NULL prices and NULL extras, in time order."""
    rng = np.random.default_rng(seed)
    base = np.datetime64("2026-01-01T00:00:00", "us").astype(np.int64)
    ticks = np.sort(rng.integers(0, 4 * 30, n))
    return pa.table({
        "auction": pa.array(rng.integers(0, 50, n), pa.int64()),
        "bidder": pa.array(np.arange(n), pa.int64()),
        "price": pa.array(rng.integers(0, 12, n), pa.int64(), mask=rng.random(n) < 0.05),
        "date_time": pa.array(base + ticks * 250_000, pa.timestamp("us", tz="UTC")),
        "extra": pa.array([f"extra-{i}-" + "x" * (i % 13) for i in range(n)], pa.string(),
                          mask=rng.random(n) < 0.1),
    })


def _write(directory: Path, table: pa.Table, files: int, group_rows: int) -> None:
    """``table`` as ``files`` Parquet files (in time order by name) of row groups of
    ``group_rows`` rows."""
    directory.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, table.num_rows, files + 1).astype(int)
    for i in range(files):
        pq.write_table(table.slice(bounds[i], bounds[i + 1] - bounds[i]),
                       directory / f"part-{i}.parquet", row_group_size=group_rows)


def _ddl(path: Path, fmt: str = "") -> str:
    return (f"CREATE TABLE bids (auction BIGINT, bidder BIGINT, price BIGINT, date_time "
            f"TIMESTAMP, extra TEXT, WATERMARK FOR date_time AS date_time - INTERVAL '1' "
            f"SECOND) WITH (connector = 'filesystem', path = '{path}'{fmt});")


def _source(select: str, ddl: str) -> TableSpec:
    graph = compile_sql(f"{ddl}\nCREATE TABLE o WITH (connector = 'blackhole');\n"
                        f"INSERT INTO o {select};").graph
    return next(v.source for v in graph.vertices if v.source is not None)


@pytest.fixture(scope="module")
def bids(tmp_path_factory) -> tuple[Path, pa.Table]:
    path = tmp_path_factory.mktemp("late")
    table = _bids(3000, seed=3)
    _write(path, table, 3, 170)
    return path, table


def test_q7_reads_carried_columns_late(bids):
    path, _ = bids
    assert _source(_q7(), _ddl(path)).late_columns == ["auction", "bidder", "extra"]
    text = explain_sql(f"{_ddl(path)}\nCREATE TABLE o WITH (connector = 'blackhole');\n"
                       f"INSERT INTO o {_q7()};")
    assert "LateColumns auction, bidder, extra" in text
    assert "row locators for [auction, bidder, extra] (read late)" in text


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("select", [
    "B.auction, B.price, B.bidder, B.date_time, B.extra",
    "B.extra AS e, B.price, upper(B.extra) AS u, B.bidder + 1 AS b1",  # renamed, used above
    "B.price, B.date_time",  # nothing carried
])
def test_equals_duckdb(tmp_path, duck, bids, select, parallelism):
    path, table = bids
    got = run_to_table(_ddl(path), _q7(select), tmp_path / "out", parallelism=parallelism,
                       batch_rows=97)
    duck.register("bids", table)
    expected = duck.sql(_duck(select)).to_arrow_table()
    assert expected.num_rows > 10
    assert got.schema.names == expected.schema.names  # no locator column reaches the sink
    assert normalized_rows(got) == normalized_rows(expected)


def test_not_applied_where_a_column_is_read_before(tmp_path, bids):
    path, table = bids
    # a computed column of the table: not rewritten
    computed = _ddl(path).replace("extra TEXT,", "extra TEXT, e2 AS upper(extra),")
    assert _source(_q7("B.e2, B.price"), computed).late_columns == []
    # JSON files cannot be read back by row
    json_dir = tmp_path / "json"
    json_dir.mkdir()
    with open(json_dir / "b.json", "w") as f:
        f.write('{"auction": 1, "bidder": 2, "price": 3, "date_time": '
                '"2026-01-01T00:00:00Z", "extra": "x"}\n')
    assert _source(_q7(), _ddl(json_dir)).late_columns == []
    # the value and time columns are decoded, not located
    assert "price" not in _source(_q7(), _ddl(path)).late_columns


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 1000), rows=st.integers(1, 900), files=st.integers(1, 3),
       group_rows=st.sampled_from([7, 64, 500]), parallelism=st.sampled_from([1, 2]),
       columns=st.lists(st.sampled_from(["B.auction", "B.bidder", "B.extra", "B.date_time"]),
                        min_size=0, max_size=4, unique=True))
def test_rewrite_equals_duckdb(tmp_path_factory, duck, seed, rows, files, group_rows,
                               parallelism, columns):
    """Random inputs, file and row group layouts and carried columns: the late columns
    are the rows' own (DuckDB's answer), whatever batches and subtasks carried them."""
    path = tmp_path_factory.mktemp("h")
    table = _bids(rows, seed)
    _write(path / "in", table, min(files, rows), group_rows)
    select = ", ".join(["B.price", *columns])
    got = run_to_table(_ddl(path / "in"), _q7(select), path / "out",
                       parallelism=parallelism, batch_rows=53)
    duck.register("bids", table)
    expected = duck.sql(_duck(select)).to_arrow_table()
    assert normalized_rows(got) == normalized_rows(expected)


def _table_spec(path: Path) -> TableSpec:
    schema = pa.schema([("auction", pa.int64()), ("bidder", pa.int64()),
                        ("price", pa.int64()), ("date_time", pa.timestamp("us", tz="UTC")),
                        ("extra", pa.string())])
    return TableSpec("bids", "filesystem", {"path": str(path)}, schema)


@pytest.mark.parametrize("reader", ["pages", "duckdb", "pyarrow"])
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 1000), picks=st.integers(0, 60))
def test_fetcher_reads_the_located_rows(tmp_path_factory, monkeypatch, reader, seed, picks):
    """RowFetcher returns the rows at the locators, in their order (repeats, several files),
    from the pages holding them (formats.parquet_pages) and, for layouts that reader
    refuses, through DuckDB (local files) or pyarrow (other filesystems)."""
    path = tmp_path_factory.mktemp("f")
    table = _bids(700, seed)
    _write(path, table, 2, 64)
    rng = np.random.default_rng(seed)
    fetcher = RowFetcher(_table_spec(path), ["extra", "auction"])
    if reader != "pages":
        monkeypatch.setattr(fetcher, "_pages", lambda *a: None)
    if reader == "pyarrow":
        monkeypatch.setattr(fetcher, "_duckdb", fetcher._pyarrow)
    files = sorted(path.iterdir())
    keys = [file_key(fetcher_fs(), str(f)) for f in files]
    starts = [0, pq.ParquetFile(files[0]).metadata.num_rows]
    which = rng.integers(0, 2, picks)
    row = np.array([rng.integers(0, pq.ParquetFile(files[w]).metadata.num_rows)
                    for w in which], dtype=np.int64)
    got = fetcher.fetch(np.array([keys[w] for w in which], dtype=np.int64), row)
    at = pa.array(np.array([starts[w] for w in which], dtype=np.int64) + row)
    assert got[0].to_pylist() == table.column("extra").take(at).to_pylist()
    assert got[1].to_pylist() == table.column("auction").take(at).to_pylist()


def fetcher_fs():
    import pyarrow.fs as pafs

    return pafs.LocalFileSystem()


def test_a_changed_file_is_refused(tmp_path):
    table = _bids(100, 1)
    _write(tmp_path, table, 1, 10)
    file = tmp_path / "part-0.parquet"
    key = file_key(fetcher_fs(), str(file))
    pq.write_table(table.slice(0, 50), file)  # replaced: another size
    os.utime(file, ns=(1, 1))
    fetcher = RowFetcher(_table_spec(tmp_path), ["extra"])
    with pytest.raises(DataError) as e:
        fetcher.fetch(np.array([key], np.int64), np.array([3], np.int64))
    assert "changed or disappeared" in str(e.value) and "\n" not in str(e.value)
    assert LOCATOR_SCHEMA.names[0] not in str(e.value)


def test_a_filtered_view_keeps_the_filtered_column_decoded(tmp_path, duck, bids):
    """Over a view with a filter (both sides of the join read it): the column the filter
    reads is decoded, the others are read late, and the rows are DuckDB's."""
    path, table = bids
    ddl = _ddl(path) + "\nCREATE VIEW vb AS SELECT * FROM bids WHERE auction > 10;"
    query = _q7("B.auction, B.price, B.bidder, B.extra").replace("bids", "vb")
    assert _source(query, ddl).late_columns == ["bidder", "extra"]
    got = run_to_table(ddl, query, tmp_path / "out", parallelism=2, batch_rows=97)
    duck.register("bids", table)
    duck.execute("CREATE VIEW vb AS SELECT * FROM bids WHERE auction > 10")
    expected = duck.sql(_duck("B.auction, B.price, B.bidder, B.extra").replace("bids", "vb"))
    assert normalized_rows(got) == normalized_rows(expected.to_arrow_table())
