"""The postgres connector's throughput, as whole ``caudal run`` processes.

    .venv/bin/python -m bench.postgres --events 2000000 [--connection 'host=… dbname=…']

Over the Nexmark bids of ``--events`` events (Parquet, generated once into bench/data):

* ``copy sink``: every bid appended to a new table (COPY, exactly-once: one prepared
  transaction per checkpoint, here the end of input);
* ``upsert sink``: every bid upserted by bidder into a table with that primary key
  (``PRIMARY KEY (bidder) NOT ENFORCED``; rows staged with COPY, applied with one
  INSERT … ON CONFLICT per chunk);
* ``lookup join``: every bid joined with a row of a 10k-row PostgreSQL table on
  ``auction % 10000`` (FOR SYSTEM_TIME AS OF, a cache large enough to be warm after the first
  batches), beside the same query with the join replaced by a projection computing the same
  columns (both into a blackhole);
* ``blackhole``: the bids read into a blackhole, what reading the input costs.

Rates are rows per second of wall clock and per CPU second of the caudal process (the
database's own CPU is not counted), best of ``--repeat`` runs.

``--pairs N`` runs only the lookup join and the query without it, alternated N times (on a
shared machine a pair sees about the same load), and prints each pair's wall and CPU ratios
with the load average, then their medians.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import psycopg
import pyarrow.dataset as ds

from bench.data import nexmark_parquet

REPO = Path(__file__).resolve().parents[1]
DIM_ROWS = 10_000


def server_cpu() -> float:
    """CPU seconds used so far by the PostgreSQL server's processes (this machine's: the
    benchmark is the only client that works it hard)."""
    total = 0.0
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in ("postgres", "postmaster"):
            try:
                times = proc.cpu_times()
                # exited backends count in their parent's (the postmaster's) children times
                total += times.user + times.system + times.children_user + \
                    times.children_system
            except psutil.Error:
                pass
    return total


def run_job(sql: str, workdir: Path) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds of caudal, CPU seconds of PostgreSQL) of ``caudal run``."""
    script = workdir / "job.sql"
    script.write_text(sql)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server = server_cpu()
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "caudal.cli", "run", str(script)],
                          capture_output=True, text=True, env=env, cwd=workdir)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server = server_cpu() - server
    if done.returncode != 0:
        raise SystemExit(f"caudal failed: {done.stderr.strip()}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), server


def pairs(without: str, joined: str, count: int, workdir: Path) -> None:
    """``count`` pairs of whole processes (without the join, then with it): each pair's
    figures and ratios, with the 1-minute load average before it; then the medians."""
    walls, cpus = [], []
    for i in range(count):
        load = os.getloadavg()[0]
        w0, c0, _ = run_job(without, workdir)
        w1, c1, _ = run_job(joined, workdir)
        walls.append(w1 / w0)
        cpus.append(c1 / c0)
        print(f"pair {i + 1}: load {load:5.2f} | without join {w0:5.2f}s wall {c0:5.2f}s CPU | "
              f"lookup join {w1:5.2f}s wall {c1:5.2f}s CPU | {w1 / w0:.2f}x wall, "
              f"{c1 / c0:.2f}x CPU", flush=True)
    print(f"median of {count} pairs: {statistics.median(walls):.2f}x wall, "
          f"{statistics.median(cpus):.2f}x CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--connection", default="host=127.0.0.1 user=postgres dbname=test")
    parser.add_argument("--pairs", type=int, default=0,
                        help="only the lookup join and the query without it, alternated")
    args = parser.parse_args()
    bids = nexmark_parquet("bid", args.events)
    conn = psycopg.connect(args.connection, autocommit=True)
    rows = ds.dataset(bids).count_rows()
    conn.execute("DROP TABLE IF EXISTS bench_dim")
    conn.execute("CREATE TABLE bench_dim (id bigint PRIMARY KEY, seller bigint, category int)")
    conn.execute(f"INSERT INTO bench_dim SELECT i, i % 1000, i % 10 FROM generate_series"
                 f"(0, {DIM_ROWS - 1}) i")
    source = f"CREATE TABLE bids WITH (connector = 'filesystem', path = '{bids}');"
    target = f"connector = 'postgres', connection = '{args.connection}'"
    jobs = {
        "blackhole": f"""{source}
            CREATE TABLE out WITH (connector = 'blackhole');
            INSERT INTO out SELECT auction, bidder, price, channel, date_time FROM bids;""",
        "copy sink": f"""{source}
            CREATE TABLE out WITH ({target}, table = 'bench_copy');
            INSERT INTO out SELECT auction, bidder, price, channel, date_time FROM bids;""",
        "upsert sink": f"""{source}
            CREATE TABLE out (bidder BIGINT, auction BIGINT, price BIGINT,
                              PRIMARY KEY (bidder) NOT ENFORCED)
              WITH ({target}, table = 'bench_upsert');
            INSERT INTO out SELECT bidder, auction, price FROM bids;""",
        "without join": f"""CREATE TABLE bids (auction BIGINT, bidder BIGINT, price BIGINT,
              p AS PROCTIME()) WITH (connector = 'filesystem', path = '{bids}');
            CREATE TABLE out WITH (connector = 'blackhole');
            INSERT INTO out SELECT b.auction, b.price, b.auction % 10000 % 1000 AS seller,
              CAST(b.auction % 10000 % 10 AS INT) AS category FROM bids AS b;""",
        "lookup join": f"""CREATE TABLE bids (auction BIGINT, bidder BIGINT, price BIGINT,
              p AS PROCTIME()) WITH (connector = 'filesystem', path = '{bids}');
            CREATE TABLE dim WITH ({target}, table = 'bench_dim',
                                   "lookup.cache.max_rows" = '{DIM_ROWS * 2}');
            CREATE TABLE out WITH (connector = 'blackhole');
            INSERT INTO out SELECT b.auction, b.price, d.seller, d.category FROM bids AS b
              JOIN dim FOR SYSTEM_TIME AS OF b.p AS d ON d.id = b.auction % 10000;""",
    }
    if args.pairs:
        with tempfile.TemporaryDirectory() as tmp:
            pairs(jobs["without join"], jobs["lookup join"], args.pairs, Path(tmp))
        conn.execute("DROP TABLE IF EXISTS bench_dim")
        return
    results: dict[str, tuple[float, float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, sql in jobs.items():
            best = None
            for _ in range(args.repeat):
                conn.execute("DROP TABLE IF EXISTS bench_copy, bench_upsert")
                wall, cpu, server = run_job(sql, Path(tmp))
                if name == "upsert sink":
                    upserted = conn.execute("SELECT count(*) FROM bench_upsert").fetchone()[0]
                best = (wall, cpu, server) if best is None or wall < best[0] else best
            results[name] = best
            both = best[1] + best[2]
            print(f"{name:14s} {rows:>10,} rows  {best[0]:6.2f}s wall {rows / best[0]:>10,.0f} "
                  f"rows/s | caudal {best[1]:5.2f}s CPU, PostgreSQL {best[2]:5.2f}s CPU: "
                  f"{rows / both:>10,.0f} rows per CPU second of both", flush=True)
    print(f"upsert table: {upserted:,} keys")
    ratio = results["lookup join"][0] / results["without join"][0]
    print(f"lookup join / without join: {ratio:.2f}x wall, "
          f"{results['lookup join'][1] / results['without join'][1]:.2f}x CPU")
    conn.execute("DROP TABLE IF EXISTS bench_copy, bench_upsert, bench_dim")


if __name__ == "__main__":
    main()
