"""min() and max() over an INTERVAL (a timestamp difference): Acero's hash kernels take no
durations, so the kernels aggregate the microseconds and give the INTERVAL back. Before, the
job failed with Arrow's own error text. Windowed, updating and OVER forms equal DuckDB at
parallelism 1 and 2 (compared in microseconds; DuckDB's intervals are not Arrow durations)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.changelog_helpers import fold, run_changelog
from tests.conftest import make_bids
from tests.helpers import normalized_rows, run_to_table

DDL = ("CREATE TABLE bids (auction BIGINT, bidder BIGINT, price BIGINT, channel TEXT, "
       "url TEXT, date_time TIMESTAMP, extra TEXT, "
       "WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND) "
       "WITH (connector = 'filesystem', path = '{path}', format = 'parquet');")
AGE = "date_time - TIMESTAMP '2000-01-01 00:00:00'"
AGE_US = "(epoch_us(date_time) - epoch_us(TIMESTAMP '2000-01-01 00:00:00'))"
BUCKET = "make_timestamp((epoch_us(date_time) // 10000000) * 10000000)"


def _as_micros(table: pa.Table) -> pa.Table:
    return pa.table({name: col.cast(pa.int64()) if pa.types.is_duration(col.type) else col
                     for name, col in zip(table.column_names, table.columns)})


@pytest.fixture(scope="module")
def bids_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("bids") / "bids.parquet"
    table = make_bids(2000, seed=5)
    pq.write_table(table, path, row_group_size=300)
    return path, table


@pytest.mark.parametrize("parallelism", [1, 2])
def test_windowed_min_max_of_interval_equal_duckdb(tmp_path, duck, bids_file, parallelism):
    path, table = bids_file
    got = run_to_table(DDL.format(path=path),
                       f"SELECT window_start, auction, min({AGE}) AS lo, max({AGE}) AS hi "
                       "FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), "
                       "INTERVAL '10' SECOND)) GROUP BY window_start, window_end, auction",
                       tmp_path / "out", parallelism=parallelism)
    assert pa.types.is_duration(got.schema.field("hi").type)
    bids = table  # noqa: F841 - DuckDB reads the local variable by name
    expected = duck.sql(f"SELECT {BUCKET} AS window_start, auction, min({AGE_US}) AS lo, "
                        f"max({AGE_US}) AS hi FROM bids GROUP BY 1, 2").to_arrow_table()
    assert normalized_rows(_as_micros(got)) == normalized_rows(expected)


@pytest.mark.parametrize("parallelism", [1, 2])
def test_updating_min_max_of_interval_equal_duckdb(tmp_path, duck, bids_file, parallelism):
    path, table = bids_file
    query = f"SELECT auction, min({AGE}) AS lo, max({AGE}) AS hi FROM bids GROUP BY auction"
    # the JSON changelog writes INTERVALs as ISO 8601 durations (PT<seconds>S); read as text
    schema = pa.schema([("auction", pa.int64()), ("lo", pa.string()), ("hi", pa.string())])
    changes = run_changelog(DDL.format(path=path), query, tmp_path / "out", schema=schema,
                            parallelism=parallelism)
    bids = table  # noqa: F841
    expected = duck.sql(f"SELECT auction, min({AGE_US}) AS lo, max({AGE_US}) AS hi "
                        "FROM bids GROUP BY auction").to_arrow_table()
    folded = fold(changes)
    micros = {name: [round(float(v[2:-1]) * 1_000_000) for v in folded.column(name).to_pylist()]
              for name in ("lo", "hi")}
    got = pa.table({"auction": folded.column("auction"), **micros})
    assert normalized_rows(got) == normalized_rows(expected)
