"""From the outside: window aggregates whose two-phase local stage holds a pane's partials
across batches (count/min/max of integers per integer key: the dense path) give DuckDB's
answer at parallelism 1, 2 and 3, over tumbling, hopping (slide not dividing the size) and
cumulating windows, with small batches (many held batches per pane), several files (one
partition each), disorder under the watermark delay, NULL keys, negative and unsigned keys
and keys out of the dense range mid-stream."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import run_to_table
from tests.test_windows_vs_duckdb import DELAY, S, write_input
from tests.windows_reference import assert_same_rows, make_events, rows_of, window_rows

WINDOWS = {"tumble": ("TUMBLE", "INTERVAL '3' SECOND", window_rows("tumble", 3 * S)),
           "hop": ("HOP", "INTERVAL '4' SECOND, INTERVAL '10' SECOND",
                   window_rows("hop", 10 * S, 4 * S)),
           "cumulate": ("CUMULATE", "INTERVAL '2' SECOND, INTERVAL '8' SECOND",
                        window_rows("cumulate", 8 * S, 2 * S))}
AGGS = "count(*) AS n, count(price) AS np, min(price) AS lo, max(price) AS hi, max(bidder) AS b"
KEY_TYPES = {"BIGINT": pa.int64(), "INT": pa.int32(), "UBIGINT": pa.uint64(),
             "SMALLINT": pa.int16(), "UTINYINT": pa.uint8()}


def _events(n: int, seed: int, key_type: str, spread: bool, disorder_ms: int) -> pa.Table:
    events = make_events(n, seed, span_ms=40_000, keys=6, disorder_ms=disorder_ms)
    rng = np.random.default_rng(seed)
    key = events.column("auction").to_numpy(zero_copy_only=False)
    valid = events.column("auction").is_valid().to_numpy(zero_copy_only=False)
    key = np.nan_to_num(key.astype(np.float64), nan=0).astype(np.int64)
    if key_type != "UBIGINT":
        key = key - 3   # negative keys
    if spread and n:  # a few keys far out of any dense range, from the middle on
        far = (rng.random(n) < 0.05) & (np.arange(n) > n // 2)
        if key_type == "UBIGINT":
            big = (np.uint64(2**64 - 1) - rng.integers(0, 3, n).astype(np.uint64))
            key = np.where(far, big, key.astype(np.uint64))
        elif key_type == "BIGINT":
            key = np.where(far, rng.integers(-2**62, 2**62, n), key)
    keys = pa.array(key.astype(KEY_TYPES[key_type].to_pandas_dtype()), KEY_TYPES[key_type],
                    mask=~valid)
    return events.set_column(0, "auction", keys)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(0, 500), seed=st.integers(0, 10_000), kind=st.sampled_from(sorted(WINDOWS)),
       key_type=st.sampled_from(sorted(KEY_TYPES)), spread=st.booleans(),
       disorder_ms=st.integers(0, 1999), batch_rows=st.sampled_from([3, 17, 64]),
       parallelism=st.sampled_from([1, 2, 3]))
def test_held_window_partials_match_duckdb(tmp_path_factory, n, seed, kind, key_type, spread,
                                           disorder_ms, batch_rows, parallelism):
    tmp = tmp_path_factory.mktemp("held")
    events = _events(n, seed, key_type, spread, disorder_ms)
    path = write_input(events, tmp / "in", "parquet")
    # the columns' types as the Parquet files have them (no SQL spelling for unsigned)
    ddl = (f"CREATE TABLE bids (WATERMARK FOR date_time AS date_time - {DELAY}) WITH "
           f"(connector = 'filesystem', path = '{path}', format = 'parquet');")
    tvf, args, reference = WINDOWS[kind]
    got = run_to_table(ddl, f"SELECT window_start AS ws, window_end AS we, auction, {AGGS} "
                            f"FROM TABLE({tvf}(TABLE bids, DESCRIPTOR(date_time), {args})) "
                            f"GROUP BY window_start, window_end, auction",
                       tmp / "out", parallelism, batch_rows=batch_rows)
    con = duckdb.connect()
    con.register("bids", events)
    want = con.sql(f"SELECT ws, we, auction, {AGGS} FROM {reference} GROUP BY ws, we, auction"
                   ).to_arrow_table()
    columns = ["ws", "we", "auction", "n", "np", "lo", "hi", "b"]
    want = want.set_column(0, "ws", want.column("ws").cast(pa.int64()).cast(
        pa.timestamp("us", tz="UTC"))).set_column(1, "we", want.column("we").cast(
            pa.int64()).cast(pa.timestamp("us", tz="UTC")))
    assert_same_rows(rows_of(got, columns), rows_of(want, columns))


@pytest.mark.parametrize("parallelism", [2, 3])
def test_local_stage_is_held(parallelism):
    """The queries above do run two-phase (else they test nothing new)."""
    from caudal.job import explain_sql

    text = explain_sql("CREATE TABLE bid WITH (connector = 'nexmark', table = 'bid', "
                       "events = '10');\nSELECT window_start, auction, count(*), max(price) "
                       "FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '1' "
                       "SECOND)) GROUP BY window_start, window_end, auction;", parallelism)
    assert "local pre-aggregate tumble" in text
