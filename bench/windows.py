"""Windowed count per auction over Nexmark bids read from Parquet: caudal vs DuckDB, same run.

    .venv/bin/python -m bench.windows --events 5000000

``--events`` is the number of bids wanted (bids are 92% of Nexmark events, so about
events / 0.92 events are generated once, to bench/data, and reused). Two queries:

* tumbling: ``count(*)`` per auction per 10 s window;
* hopping: ``count(*)`` per auction per 10 s window sliding by 2 s; DuckDB runs it as the
  plain batch query (each row joined to its 5 windows), and again (``hopping/panes``)
  counting per 2 s pane first, as caudal does.

caudal runs them as streaming jobs (watermarks, window state, a blackhole sink); DuckDB runs
the equivalent batch queries over the same files and materializes the result as Arrow. The
two results are checked equal once, then each engine's best time of ``--repeat`` runs is
printed with the ratio.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from bench.data import bids_parquet
from caudal.job import run_sql

SOURCE = ("CREATE TABLE bids WITH (connector = 'filesystem', path = '{data}', "
          "event_time_field = 'date_time', watermark_delay = '1s');")

QUERIES = {
    "tumbling": (
        "SELECT window_start, window_end, auction, count(*) AS num FROM TABLE(TUMBLE(TABLE "
        "bids, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) "
        "GROUP BY window_start, window_end, auction",
        "SELECT time_bucket(INTERVAL '10 seconds', date_time) AS window_start, "
        "window_start + INTERVAL '10 seconds' AS window_end, auction, count(*) AS num "
        "FROM {src} GROUP BY ALL"),
    "hopping": (
        "SELECT window_start, window_end, auction, count(*) AS num FROM TABLE(HOP(TABLE "
        "bids, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND)) "
        "GROUP BY window_start, window_end, auction",
        "SELECT window_start, window_start + INTERVAL '10 seconds' AS window_end, auction, "
        "count(*) AS num FROM (SELECT auction, time_bucket(INTERVAL '2 seconds', date_time) "
        "- to_seconds(2 * i) AS window_start FROM {src}, range(5) AS r(i)) GROUP BY ALL"),
    # the same hopping query, with DuckDB given caudal's trick: count per 2 s pane first
    "hopping/panes": (
        "SELECT window_start, window_end, auction, count(*) AS num FROM TABLE(HOP(TABLE "
        "bids, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND)) "
        "GROUP BY window_start, window_end, auction",
        "SELECT pane - to_seconds(2 * i) AS window_start, window_start + INTERVAL '10 seconds' "
        "AS window_end, auction, sum(n)::BIGINT AS num FROM (SELECT auction, "
        "time_bucket(INTERVAL '2 seconds', date_time) AS pane, count(*) AS n FROM {src} "
        "GROUP BY ALL), range(5) AS r(i) GROUP BY ALL"),
}


def events_for(bids: int) -> int:
    """Nexmark events holding about ``bids`` bids (46 of every 50 events are bids)."""
    return math.ceil(bids * 50 / 46 / 1000) * 1000


def run_caudal(data: Path, query: str, parallelism: int, out: Path | None = None,
               **runtime) -> tuple[float, pa.Table | None]:
    sink = (f"CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', "
            f"format = 'parquet');" if out is not None
            else "CREATE TABLE out WITH (connector = 'blackhole');")
    script = f"{SOURCE.format(data=data)}\n{sink}\nINSERT INTO out {query};"
    started = time.perf_counter()
    run_sql(script, parallelism=parallelism, **runtime)
    elapsed = time.perf_counter() - started
    result = None
    if out is not None:
        files = sorted(out.glob("*.parquet"))
        result = pa.concat_tables([pq.read_table(f) for f in files]) if files else None
    return elapsed, result


def run_duckdb(data: Path, query: str) -> tuple[float, pa.Table]:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    sql = query.format(src=f"read_parquet('{data}/*.parquet')")
    started = time.perf_counter()
    result = con.sql(sql).to_arrow_table()
    elapsed = time.perf_counter() - started
    con.close()
    return elapsed, result


def _rows(table: pa.Table) -> list[tuple]:
    cols = [c.cast(pa.int64()) if pa.types.is_timestamp(c.type) else c
            for c in table.select(["window_start", "window_end", "auction", "num"]).columns]
    return sorted(zip(*[c.to_pylist() for c in cols]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000_000, help="bids wanted")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--parallelism", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--no-check", action="store_true", help="skip the equality check")
    args = parser.parse_args()
    data = bids_parquet(events_for(args.events))
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in data.glob("*.parquet"))
    print(f"input: {rows:,} bids in {data}")
    import tempfile

    for name, (query, duck_query) in QUERIES.items():
        if not args.no_check:
            with tempfile.TemporaryDirectory() as tmp:
                _, got = run_caudal(data, query, max(args.parallelism), Path(tmp) / "out")
            _, want = run_duckdb(data, duck_query)
            same = _rows(got) == _rows(want)
            print(f"{name}: {want.num_rows:,} result rows; caudal == duckdb: {same}")
            if not same:
                raise SystemExit(f"{name}: results differ")
        for parallelism in args.parallelism:
            best_c = best_d = float("inf")
            for _ in range(args.repeat):
                best_c = min(best_c, run_caudal(data, query, parallelism)[0])
                best_d = min(best_d, run_duckdb(data, duck_query)[0])
            print(f"{name:13s} parallelism={parallelism}  caudal {best_c:.3f}s "
                  f"({rows / best_c / 1e6:.1f} M rows/s)  duckdb {best_d:.3f}s  "
                  f"ratio {best_c / best_d:.2f}x")


if __name__ == "__main__":
    main()
