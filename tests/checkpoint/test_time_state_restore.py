"""TIME values in operator state survive a kill and a resume. A CSV file's ``HH:MM:SS``
column is inferred by Arrow as ``time32[s]``, which Parquet cannot store: a checkpoint gave
it back as ``time32[ms]``, the restored state no longer matched the live batches' schema and
every restart failed ("Schema at index 1 was different"). Data read from outside now takes
TIME's one in-engine type (``time64[us]``, as declared TIME columns), so what a checkpoint
writes is what it reads."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pyarrow as pa
import pytest

import caudal as cd
from caudal.errors import DataError
from caudal.job import compile_sql, run_sql
from caudal.types import normalize_type
from tests.changelog_helpers import fold, read_changes
from tests.helpers import kill_after_checkpoints, normalized_rows

pytestmark = pytest.mark.timeout(200)


@pytest.mark.parametrize("t", [pa.time32("s"), pa.time32("ms"), pa.time64("us"),
                               pa.time64("ns")])
def test_every_time_type_is_one_engine_type(t):
    assert normalize_type(t) == pa.time64("us")
    assert normalize_type(pa.list_(t)) == pa.list_(pa.time64("us"))


def test_date64_is_date():
    """date64 is DATE too: Parquet (a checkpoint's state file) stores it as date32."""
    assert normalize_type(pa.date64()) == pa.date32()
    table = pa.table({"k": [1, 1], "d": pa.array([dt.date(2020, 1, 2), dt.date(1969, 1, 1)],
                                                 pa.date64())})
    frame = cd.from_arrow(table)
    assert frame.schema.field("d").type == pa.date32()
    got = cd.sql("SELECT k, max(d) AS m FROM t GROUP BY k", t=frame).collect(parallelism=2)
    assert got.to_pylist() == [{"k": 1, "m": dt.date(2020, 1, 2)}]


def test_from_arrow_time_seconds_is_read_as_time():
    table = pa.table({"k": [1, 1, 2], "t": pa.array([dt.time(1, 2, 3), dt.time(4, 5, 6), None],
                                                    pa.time32("s"))})
    frame = cd.from_arrow(table)
    assert frame.schema.field("t").type == pa.time64("us")
    got = cd.sql("SELECT k, max(t) AS m FROM t GROUP BY k", t=frame).collect(parallelism=2)
    assert sorted(got.to_pylist(), key=lambda r: r["k"]) == [
        {"k": 1, "m": dt.time(4, 5, 6)}, {"k": 2, "m": None}]


QUERY = ("SELECT k, CAST(m AS TEXT) AS m, CAST(lo AS TEXT) AS lo, c FROM (SELECT k, max(t) AS m,"
         " min(t) AS lo, count(*) AS c FROM src GROUP BY k)")


def _script(src: Path, out: Path) -> str:
    return (f"SET updating_flush = '20ms';\nCREATE TABLE src WITH (connector = 'filesystem', "
            f"path = '{src}', format = 'csv');\nCREATE TABLE out WITH (connector = "
            f"'filesystem', path = '{out}', format = 'debezium_json');\nINSERT INTO out {QUERY};\n")


@pytest.mark.slow
def test_time_seconds_from_csv_in_state_restores_after_kill(tmp_path):
    rng = random.Random(1)
    src = tmp_path / "in.csv"
    with open(src, "w") as f:
        f.write("k,t,n\n")
        for i in range(200_000):
            f.write(f"{rng.randrange(50)},{rng.randrange(24):02d}:{rng.randrange(60):02d}:"
                    f"{rng.randrange(60):02d},{i}\n")
    ref = tmp_path / "ref"
    run_sql(_script(src, ref), parallelism=1)
    schema = compile_sql(_script(src, ref)).job.outputs[0].plan.table.schema
    expected = normalized_rows(fold(read_changes(ref, schema)))
    out = tmp_path / "out"
    job = tmp_path / "job.sql"
    job.write_text(_script(src, out))
    kill_after_checkpoints(job, tmp_path / "ck", batch_rows=16, first=1, then=2)
    assert normalized_rows(fold(read_changes(out, schema))) == expected


def test_parquet_times_of_every_unit_are_read_as_time(tmp_path):
    import pyarrow.parquet as pq

    times = [dt.time(1, 2, 3), dt.time(23, 59, 59, 999_999), None]
    pq.write_table(pa.table({
        "ms": pa.array(times[:1] + [dt.time(23, 59, 59, 999_000), None], pa.time32("ms")),
        "us": pa.array(times, pa.time64("us")),
        "ns": pa.array([1_000_000_000, 86_399_999_999_000, None], pa.time64("ns"))}),
        tmp_path / "t.parquet")
    got = cd.read_parquet(str(tmp_path / "t.parquet")).collect()
    assert all(f.type == pa.time64("us") for f in got.schema)
    assert got.column("us").to_pylist() == times
    assert got.column("ns").to_pylist() == [dt.time(0, 0, 1), dt.time(23, 59, 59, 999_999),
                                            None]
    # a nanosecond time finer than a microsecond is refused, no longer truncated
    # (tests/formats/test_nanosecond_values.py)
    pq.write_table(pa.table({"ns": pa.array([1_000_000_001], pa.time64("ns"))}),
                   tmp_path / "fine.parquet")
    with pytest.raises(DataError, match="finer than a microsecond"):
        cd.read_parquet(str(tmp_path / "fine.parquet")).collect()
