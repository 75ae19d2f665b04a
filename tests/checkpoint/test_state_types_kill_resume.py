"""From the outside: operator state of every column type (unsigned keys past 2^63,
strings, timestamps, dates, times, decimals, booleans, floats, lists, structs) in an
updating aggregate, an updating join and a window aggregate, written to checkpoints (state
file format 2), survives SIGKILL and a resume at another parallelism: the outputs equal
those of a run that was never killed."""

from __future__ import annotations

import datetime as dt
import decimal
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from caudal.job import compile_sql, run_sql
from tests.changelog_helpers import fold, read_changes
from tests.helpers import kill_after_checkpoints, normalized_rows, read_committed

pytestmark = pytest.mark.timeout(300)

SCHEMA = pa.schema([
    ("k", pa.uint64()), ("s", pa.string()), ("ts", pa.timestamp("us")), ("d", pa.date32()),
    ("dec", pa.decimal128(14, 3)), ("b", pa.bool_()), ("l", pa.list_(pa.int64())),
    ("st", pa.struct([("a", pa.int64()), ("b", pa.string())])), ("u16", pa.uint16()),
    ("f", pa.float32()), ("t", pa.time64("us")), ("n", pa.int64())])
BASE = dt.datetime(2026, 1, 1)


def _rows(rng: random.Random, n: int, first: int) -> list[dict]:
    out = []
    for i in range(first, first + n):
        out.append(dict(
            k=rng.choice([0, 1, 7, 2**64 - 1, 2**63, None]),
            s=rng.choice(["a", "bé", "", None, "zzz" * 5]),
            ts=BASE + dt.timedelta(milliseconds=i, microseconds=rng.randrange(500)),
            d=None if rng.random() < .1 else dt.date(1969, 12, 1) + dt.timedelta(
                days=rng.randrange(30000)),
            dec=None if rng.random() < .1 else decimal.Decimal(
                rng.randrange(-10**11, 10**11)) / 1000,
            b=rng.choice([True, False, None]),
            l=rng.choice([None, [], [1, None, 3], [rng.randrange(100)]]),
            st=rng.choice([None, {"a": rng.randrange(5), "b": "x"}, {"a": None, "b": None}]),
            u16=rng.randrange(65536), f=rng.choice([1.5, -0.0, None, float("inf")]),
            t=rng.choice([None, dt.time(1, 2, 3, 456789), dt.time(23, 59, 59)]), n=i))
    return out


AGG = ("SELECT CAST(k AS TEXT) AS k, s, CAST(max(ts) AS TEXT) AS mts, CAST(min(d) AS TEXT) "
       "AS md, CAST(max(dec) AS TEXT) AS mdec, CAST(sum(dec) AS TEXT) AS sdec, bool_and(b) AS ba,"
       " bool_or(b) AS bo, CAST(min(u16) AS TEXT) AS mu, CAST(max(f) AS TEXT) AS mf, "
       "CAST(max(t) AS TEXT) AS mt, count(DISTINCT d) AS cd, count(*) AS c FROM a GROUP BY k, s")
JOIN = ("SELECT a.n AS an, b.n AS bn, a.k AS ak, a.l AS al, b.st AS bst, b.dec AS bdec, "
        "a.d AS ad, b.ts AS bts, a.b AS ab, b.f AS bf FROM a JOIN b ON a.u16 = b.u16 AND "
        "a.s = b.s")
WINDOW = ("SELECT window_start, s, d, max(dec) AS mdec, min(k) AS mk, count(*) AS c, "
          "max(f) AS mf, bool_or(b) AS bo, count(DISTINCT u16) AS cu FROM TABLE(TUMBLE(TABLE a,"
          " DESCRIPTOR(ts), INTERVAL '2' SECOND)) GROUP BY window_start, window_end, s, d")


def _script(data: Path, out: Path) -> str:
    tables = "".join(
        f"CREATE TABLE {n} (WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH (connector = "
        f"'filesystem', path = '{data / n}', format = 'parquet');\n" for n in ("a", "b"))
    return (f"SET updating_flush = '20ms';\n{tables}"
            f"CREATE TABLE agg WITH (connector = 'filesystem', path = '{out}/agg', "
            f"format = 'debezium_json');\nCREATE TABLE j WITH (connector = 'filesystem', "
            f"path = '{out}/j', format = 'parquet');\nCREATE TABLE w WITH (connector = "
            f"'filesystem', path = '{out}/w', format = 'parquet');\n"
            f"INSERT INTO agg {AGG};\nINSERT INTO j {JOIN};\nINSERT INTO w {WINDOW};\n")


def _results(data: Path, out: Path) -> list[list[tuple]]:
    schema = compile_sql(_script(data, out)).job.outputs[0].plan.table.schema
    results = [normalized_rows(fold(read_changes(out / "agg", schema)))]
    for name in ("j", "w"):
        table = read_committed(out / name)
        table = pa.table({c: pa.array([repr(v) for v in table.column(c).to_pylist()])
                          for c in table.column_names})   # lists, structs: comparable
        results.append(normalized_rows(table))
    return results


@pytest.mark.slow
@pytest.mark.parametrize("first,then", [(2, 3), (3, 1)])
def test_state_of_every_type_survives_kill_and_rescale(tmp_path, first, then):
    rng = random.Random(5)
    data = tmp_path / "data"
    for name in ("a", "b"):
        (data / name).mkdir(parents=True)
        for part in range(2):
            pq.write_table(pa.Table.from_pylist(_rows(rng, 40_000, part * 40_000), SCHEMA),
                           data / name / f"p{part}.parquet", row_group_size=2000)
    expected = None
    ref = tmp_path / "ref"
    run_sql(_script(data, ref), parallelism=1)
    expected = _results(data, ref)
    assert all(expected)
    job = tmp_path / "job.sql"
    job.write_text(_script(data, tmp_path / "out"))
    kill_after_checkpoints(job, tmp_path / "ck", batch_rows=256, first=first, then=then,
                           checkpoints=3)
    got = _results(data, tmp_path / "out")
    for name, g, e in zip(("updating aggregate", "join", "window"), got, expected):
        assert g == e, name
