"""Updating queries over Nexmark data read from Parquet: caudal vs DuckDB, same run.

    .venv/bin/python -m bench.updating --events 5000000

Two queries:

* ``count+max``: ``count(*)`` and ``max(price)`` per auction over the bids of ``--events``
  Nexmark events, an updating (non-windowed) aggregate emitting a changelog (flushed every
  second, as by default);
* ``count+max/flush=0``: the same, emitting its changes after every batch (the most
  retractions: what a consumer wanting the freshest results costs);
* ``q3``: Nexmark q3, auctions of category 10 joined with their sellers from three states:
  an updating join of two unbounded inputs;
* ``q4``: Nexmark q4, each auction's winning bid (an interval join over the auction's
  lifetime and an updating max) averaged per category (a nested updating aggregate).

The inputs are generated once by caudal's Nexmark connector into bench/data and reused.
caudal runs each query as a streaming job (blackhole sink); DuckDB runs the batch query over
the same files and materializes the answer as Arrow. Once, caudal's changelog is written to a
debezium_json directory, folded, and checked equal to DuckDB's answer; then each engine's
best wall-clock time of ``--repeat`` runs is printed with the ratio.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.data import nexmark_parquet
from caudal.connectors.base import SourceMetrics
from caudal.formats import debezium_json
from caudal.formats.bad_data import BadDataPolicy
from caudal.job import compile_sql, run_sql
from caudal.plan.changelog import OP

#: name -> (tables read, query, SET statements for caudal)
QUERIES = {
    "count+max": (
        ["bid"],
        "SELECT auction, count(*) AS bids, max(price) AS top FROM bid GROUP BY auction",
        "",
    ),
    "count+max/flush=0": (
        ["bid"],
        "SELECT auction, count(*) AS bids, max(price) AS top FROM bid GROUP BY auction",
        "SET updating_flush = '0';",
    ),
    "q3": (
        ["auction", "person"],
        "SELECT P.name, P.city, P.state, A.id FROM auction AS A JOIN person AS P "
        "ON A.seller = P.id WHERE A.category = 10 AND (P.state = 'OR' OR P.state = 'ID' "
        "OR P.state = 'CA')",
        "",
    ),
    "q4": (
        ["auction", "bid"],
        "SELECT Q.category, avg(Q.final) AS avg_final FROM (SELECT max(B.price) AS final, "
        "A.category FROM auction AS A JOIN bid AS B ON A.id = B.auction AND B.date_time "
        "BETWEEN A.date_time AND A.expires GROUP BY A.id, A.category) AS Q "
        "GROUP BY Q.category",
        "",
    ),
}


def _ddl(paths: dict[str, Path]) -> str:
    return "\n".join(f"CREATE TABLE {kind} WITH (connector = 'filesystem', path = '{path}', "
                     f"event_time_field = 'date_time');" for kind, path in paths.items())


def run_caudal(query: str, paths: dict[str, Path], parallelism: int,
               out: Path | None = None, settings: str = "") -> float:
    sink = (f"CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', "
            f"format = 'debezium_json');" if out is not None
            else "CREATE TABLE out WITH (connector = 'blackhole');")
    script = f"{settings}\n{_ddl(paths)}\n{sink}\nINSERT INTO out {query};"
    started = time.perf_counter()
    run_sql(script, parallelism=parallelism)
    return time.perf_counter() - started


def run_duckdb(query: str, paths: dict[str, Path], threads: int) -> tuple[float, pa.Table]:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET threads = {threads}")
    text = query
    for kind, path in paths.items():
        text = text.replace(f"FROM {kind} ", f"FROM read_parquet('{path}/*.parquet') ")
        text = text.replace(f"JOIN {kind} ", f"JOIN read_parquet('{path}/*.parquet') ")
    started = time.perf_counter()
    table = con.sql(text).to_arrow_table()
    elapsed = time.perf_counter() - started
    con.close()
    return elapsed, table


def folded(out: Path, schema: pa.Schema) -> pa.Table:
    """The rows a debezium_json directory's changelog leaves."""
    policy = BadDataPolicy("fail", SourceMetrics(), str(out))
    tables = []
    for path in sorted(out.glob("*.json")):
        with open(path, "rb") as f:
            tables.extend(debezium_json.read(f, schema, policy))
    changes = pa.concat_tables(tables)
    data = changes.drop_columns([OP])
    w = np.sign(changes.column(OP).to_numpy()).astype(np.int64)
    grouped = data.append_column("__w", pa.array(w)).group_by(
        data.column_names, use_threads=False).aggregate([("__w", "sum")])
    net = grouped.column("__w_sum").to_numpy()
    if (net < 0).any():
        raise AssertionError("the changelog retracts rows it never inserted")
    return grouped.select(data.column_names).take(
        pa.array(np.repeat(np.arange(len(net)), net)))


def _sorted_rows(table: pa.Table) -> list[tuple]:
    return sorted(zip(*[c.to_pylist() for c in table.columns]),
                  key=lambda r: tuple((v is None, v) for v in r))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("--query", choices=sorted(QUERIES), action="append")
    parser.add_argument("--no-check", action="store_true",
                        help="skip the folded-changelog check against DuckDB")
    args = parser.parse_args()
    for name in args.query or list(QUERIES):
        kinds, query, settings = QUERIES[name]
        paths = {k: nexmark_parquet(k, args.events) for k in kinds}
        rows = {k: sum(pq.ParquetFile(p).metadata.num_rows for p in path.glob("*.parquet"))
                for k, path in paths.items()}
        print(f"\n== {name}: {settings} {query}".replace(":  ", ": "))
        print("   input: " + ", ".join(f"{n:,} {k} rows" for k, n in rows.items()) +
              f" ({args.events:,} events)")
        duck_best, expected = float("inf"), None
        for _ in range(args.repeat):
            seconds, expected = run_duckdb(query, paths, args.parallelism)
            duck_best = min(duck_best, seconds)
        if not args.no_check:
            out = Path(tempfile.mkdtemp(prefix="caudal-updating-"))
            try:
                run_caudal(query, paths, args.parallelism, out, settings)
                schema = compile_sql(f"{_ddl(paths)}\nCREATE TABLE out WITH (connector = "
                                     f"'filesystem', path = '{out}', format = "
                                     f"'debezium_json');\nINSERT INTO out {query};"
                                     ).job.outputs[0].plan.table.schema
                got = folded(out, schema)
                same = _sorted_rows(got) == _sorted_rows(expected.rename_columns(
                    got.column_names))
                print(f"   check: caudal's folded changelog {'==' if same else '!='} DuckDB's "
                      f"answer ({got.num_rows:,} rows)")
                if not same:
                    raise SystemExit(1)
            finally:
                shutil.rmtree(out, ignore_errors=True)
        caudal_best = float("inf")
        for _ in range(args.repeat):
            caudal_best = min(caudal_best, run_caudal(query, paths, args.parallelism,
                                                      settings=settings))
        total = sum(rows.values())
        print(f"   caudal (parallelism {args.parallelism}): {caudal_best:.2f}s "
              f"({total / caudal_best / 1e6:.2f} M rows/s)")
        print(f"   duckdb (threads {args.parallelism}):     {duck_best:.2f}s "
              f"({total / duck_best / 1e6:.2f} M rows/s)")
        print(f"   caudal / duckdb: {caudal_best / duck_best:.1f}x")


if __name__ == "__main__":
    main()
