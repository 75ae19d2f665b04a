"""Filter + projection over Nexmark bids read from Parquet: caudal vs DuckDB, same run.

    .venv/bin/python -m bench.stateless --events 5000000

Both engines read the same Parquet files and write their result to Parquet; a second pair of
figures discards the result (caudal's blackhole sink, DuckDB materializing to Arrow).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from bench.data import bids_parquet
from caudal.job import run_sql

QUERY = ("SELECT auction, bidder, price * 908 / 1000 AS price_eur, channel, date_time "
         "FROM bids WHERE price > 1000 AND channel <> 'Apple'")
DUCK_QUERY = QUERY.replace("price * 908 / 1000", "(price * 908) // 1000")


def run_caudal(data: Path, sink: str, out: Path, parallelism: int) -> float:
    sink_ddl = (f"CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', "
                f"format = 'parquet');" if sink == "parquet"
                else "CREATE TABLE out WITH (connector = 'blackhole');")
    script = (f"CREATE TABLE bids WITH (connector = 'filesystem', path = '{data}');\n"
              f"{sink_ddl}\nINSERT INTO out {QUERY};")
    started = time.perf_counter()
    run_sql(script, parallelism=parallelism)
    return time.perf_counter() - started


def run_duckdb(data: Path, sink: str, out: Path) -> float:
    con = duckdb.connect()
    query = DUCK_QUERY.replace("FROM bids", f"FROM read_parquet('{data}/*.parquet')")
    started = time.perf_counter()
    if sink == "parquet":
        con.execute(f"COPY ({query}) TO '{out}/duck.parquet' (FORMAT parquet)")
    else:
        con.sql(query).to_arrow_table()
    elapsed = time.perf_counter() - started
    con.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data = bids_parquet(args.events)
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in data.glob("*.parquet"))
    print(f"input: {rows:,} bids in {data}")
    print(f"query: {QUERY}")
    for sink in ("parquet", "discard"):
        for parallelism in (1, 2):
            best_c = best_d = float("inf")
            for _ in range(args.repeat):
                tmp = Path(tempfile.mkdtemp())
                try:
                    best_c = min(best_c, run_caudal(data, "parquet" if sink == "parquet"
                                                    else "blackhole", tmp / "c", parallelism))
                    (tmp / "d").mkdir()
                    best_d = min(best_d, run_duckdb(data, sink, tmp / "d"))
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
            print(f"sink={sink:8s} parallelism={parallelism}  caudal {best_c:.3f}s "
                  f"({rows / best_c / 1e6:.1f} M rows/s)  duckdb {best_d:.3f}s  "
                  f"ratio {best_c / best_d:.2f}x")


if __name__ == "__main__":
    main()
