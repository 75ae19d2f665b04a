"""The ratio table of issue 15: caudal vs DuckDB as whole processes, same Parquet input, same
output, one run each (``make bench`` prints it first; ``--quick`` for a fast look).

    .venv/bin/python -m bench.ratios [--events 5000000] [--parallelism 1] [--quick]
                                     [--baseline DIR]  # another checkout's caudal beside

Each query runs as ``caudal run job.sql`` and as a Python process that imports DuckDB
(``SET threads`` = the parallelism) and ``COPY``s the batch answer to Parquet, both over the
Parquet files of the bids of ``--events`` Nexmark events (``bench/data.py``, made once). The
two processes alternate; each is timed by ``/usr/bin/time`` (wall, user, sys), so start-up,
imports, decoding and encoding count for both. Appending queries write Parquet; the updating
aggregate writes its changelog as debezium_json (a Parquet file only appends), flushed every
second as by default. The machine's load average is printed beside: under load read the CPU
seconds (user + sys), not the wall clock. The last column says whether caudal's Parquet files
hold DuckDB's rows (the timed runs' outputs, compared by DuckDB afterwards, outside the timing).

``caudal run job.sql`` keeps the plans it makes (caudal.plan_cache). Each repeat here writes
its job into a new directory, so each timed run is a job's first (planned, then stored):
``--plan-cache warm`` runs each job once, untimed, before its timed run, which then starts
from the cached plan, as a job run again does.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.data import bids_parquet

ROOT = Path(__file__).resolve().parent.parent

#: name -> (caudal's query over ``bid``, DuckDB's query over ``bid``, caudal's sink format)
QUERIES: dict[str, tuple[str, str, str]] = {
    "filter": (
        "SELECT * FROM bid WHERE price > 1000 AND channel <> 'Apple'",
        "SELECT * FROM bid WHERE price > 1000 AND channel <> 'Apple'",
        "parquet"),
    "map": (
        "SELECT auction, bidder, price * 908 / 1000 AS price_eur, date_time, extra FROM bid",
        "SELECT auction, bidder, (price * 908) // 1000 AS price_eur, date_time, extra FROM bid",
        "parquet"),
    "count+max (updating)": (
        "SELECT auction, count(*) AS bids, max(price) AS top FROM bid GROUP BY auction",
        "SELECT auction, count(*) AS bids, max(price) AS top FROM bid GROUP BY auction",
        "debezium_json"),
    "tumble count": (
        "SELECT window_start, window_end, auction, count(*) AS num FROM TABLE(TUMBLE(TABLE "
        "bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) "
        "GROUP BY window_start, window_end, auction",
        "SELECT time_bucket(INTERVAL '10 seconds', date_time) AS window_start, "
        "window_start + INTERVAL '10 seconds' AS window_end, auction, count(*) AS num "
        "FROM bid GROUP BY ALL",
        "parquet"),
    "hop count": (
        "SELECT window_start, window_end, auction, count(*) AS num FROM TABLE(HOP(TABLE "
        "bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND)) "
        "GROUP BY window_start, window_end, auction",
        "SELECT window_start, window_start + INTERVAL '10 seconds' AS window_end, auction, "
        "count(*) AS num FROM (SELECT auction, time_bucket(INTERVAL '2 seconds', date_time) "
        "- to_seconds(2 * i) AS window_start FROM bid, range(5) AS r(i)) GROUP BY ALL",
        "parquet"),
    "session count": (
        "SELECT window_start, window_end, bidder, count(*) AS num FROM TABLE(SESSION(TABLE "
        "bid PARTITION BY bidder, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) "
        "GROUP BY window_start, window_end, bidder",
        "SELECT min(date_time) AS window_start, max(date_time) + INTERVAL '10 seconds' AS "
        "window_end, bidder, count(*) AS num FROM (SELECT bidder, date_time, sum(new) OVER "
        "(PARTITION BY bidder ORDER BY date_time ROWS UNBOUNDED PRECEDING) AS session FROM "
        "(SELECT bidder, date_time, CASE WHEN date_time - lag(date_time) OVER (PARTITION BY "
        "bidder ORDER BY date_time) <= INTERVAL '10 seconds' THEN 0 ELSE 1 END AS new "
        "FROM bid)) GROUP BY bidder, session",
        "parquet"),
    "tumble median": (
        "SELECT window_start, window_end, auction, median(price) AS med, "
        "percentile_cont(0.9) WITHIN GROUP (ORDER BY price) AS p90 FROM TABLE(TUMBLE(TABLE "
        "bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) "
        "GROUP BY window_start, window_end, auction",
        "SELECT time_bucket(INTERVAL '10 seconds', date_time) AS window_start, "
        "window_start + INTERVAL '10 seconds' AS window_end, auction, median(price) AS med, "
        "percentile_cont(0.9) WITHIN GROUP (ORDER BY price) AS p90 FROM bid GROUP BY ALL",
        "parquet"),
    "median (updating)": (
        "SELECT auction, median(price) AS med, percentile_cont(0.9) WITHIN GROUP (ORDER BY "
        "price) AS p90 FROM bid GROUP BY auction",
        "SELECT auction, median(price) AS med, percentile_cont(0.9) WITHIN GROUP (ORDER BY "
        "price) AS p90 FROM bid GROUP BY auction",
        "debezium_json"),
    "q7": (
        (ROOT / "bench" / "nexmark" / "q7.sql").read_text().split("INSERT INTO results")[1]
        .strip().rstrip(";"),
        "WITH maxes AS (SELECT max(price) AS maxprice, (epoch_us(date_time) // 10000000 + 1) "
        "* 10000000 AS end_us FROM bid GROUP BY end_us) SELECT B.auction, B.price, B.bidder, "
        "B.date_time, B.extra FROM bid AS B JOIN maxes AS B1 ON B.price = B1.maxprice WHERE "
        "epoch_us(B.date_time) BETWEEN B1.end_us - 10000000 AND B1.end_us",
        "parquet"),
}

DUCKDB_SCRIPT = """
import sys, duckdb
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
con.execute(f"SET threads = {sys.argv[1]}")
con.execute(f"CREATE VIEW bid AS SELECT * FROM read_parquet('{sys.argv[2]}/*.parquet')")
con.execute(f"COPY ({sys.argv[4]}) TO '{sys.argv[3]}' (FORMAT parquet)")
"""


@dataclass
class Timing:
    """One whole process: wall clock and CPU seconds."""

    wall: float
    user: float
    sys: float

    @property
    def cpu(self) -> float:
        return self.user + self.sys


def timed(command: list[str], env: dict[str, str] | None = None,
          cwd: Path | None = None) -> Timing:
    """Run ``command`` under /usr/bin/time; fail loudly if it fails."""
    fd, report = tempfile.mkstemp(suffix=".time")
    os.close(fd)
    try:
        done = subprocess.run(["/usr/bin/time", "-o", report, "-f", "%e %U %S", *command],
                              env=env, capture_output=True, text=True, cwd=cwd)
        if done.returncode != 0:
            raise SystemExit(f"failed ({done.returncode}): {' '.join(command[:4])}…\n"
                             f"{done.stderr.strip()[-2000:]}")
        wall, user, system = (float(v) for v in Path(report).read_text().split()[-3:])
        return Timing(wall, user, system)
    finally:
        os.unlink(report)


def caudal_script(query: str, data: Path, out: Path, fmt: str) -> str:
    return (f"CREATE TABLE bid WITH (connector = 'filesystem', path = '{data}', "
            f"event_time_field = 'date_time');\n"
            f"CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', "
            f"format = '{fmt}');\nINSERT INTO out {query};\n")


def _env(tree: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(tree)
    return env


def run_caudal(name: str, data: Path, parallelism: int, work: Path,
               tree: Path = ROOT) -> Timing:
    """One ``caudal run`` process (the caudal of ``tree``) for query ``name``."""
    query, _, fmt = QUERIES[name]
    out = work / "caudal"
    shutil.rmtree(out, ignore_errors=True)
    job = work / "job.sql"
    job.write_text(caudal_script(query, data, out, fmt))
    # run in ``tree``: ``python -m`` puts the working directory first on sys.path, so from
    # another checkout its caudal, not ``tree``'s, would run
    return timed([sys.executable, "-m", "caudal.cli", "run", str(job),
                  "--parallelism", str(parallelism)], _env(tree), cwd=tree)


def run_duckdb(name: str, data: Path, parallelism: int, work: Path) -> Timing:
    """One DuckDB process writing the answer of query ``name`` to Parquet."""
    return timed([sys.executable, "-c", DUCKDB_SCRIPT, str(parallelism), str(data),
                  str(work / "duck.parquet"), QUERIES[name][1]])


def same_answer(name: str, work: Path) -> str:
    """Whether caudal's Parquet files hold DuckDB's rows (as multisets; "changelog" for the
    updating query, whose changelog the tests fold and compare instead)."""
    if QUERIES[name][2] != "parquet":
        return "changelog"
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        mine = f"SELECT * FROM read_parquet('{work / 'caudal'}/*.parquet')"
        theirs = f"SELECT * FROM read_parquet('{work / 'duck.parquet'}')"
        differ = sum(con.sql(f"SELECT count(*) FROM (({a}) EXCEPT ALL ({b}))").fetchall()[0][0]
                     for a, b in ((mine, theirs), (theirs, mine)))
    finally:
        con.close()
    return "yes" if differ == 0 else f"NO ({differ} rows differ)"


def _fastest(a: Timing | None, b: Timing) -> Timing:
    return b if a is None or b.wall < a.wall else a


def print_table(events: int, parallelism: int, names: list[str], repeat: int = 1,
                baseline: Path | None = None, warm: bool = False) -> None:
    data = bids_parquet(events)
    for tree in [ROOT] + ([baseline] if baseline else []):  # bytecode once, not in a timing
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "caudal")],
                       env=_env(tree), capture_output=True)
    load = os.getloadavg()
    print(f"\nRatios, whole processes: caudal run vs DuckDB (threads {parallelism}), bids of "
          f"{events:,} events from Parquet, parallelism {parallelism}, fastest of {repeat}, "
          f"{'cached plans (a second run)' if warm else 'planned (a first run)'}; "
          f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    before = " caudal before s (CPU s) |" if baseline else ""
    print(f"| query |{before} caudal s (CPU s) | DuckDB s (CPU s) | ratio wall | ratio CPU | "
          f"same rows |")
    print("|---|" + ("---:|" if baseline else "") + "---:|---:|---:|---:|---|")
    for name in names:
        c = d = b = None
        same = ""
        for _ in range(repeat):
            work = Path(tempfile.mkdtemp(prefix="caudal-ratio-"))
            try:
                for tree in [baseline] if baseline else []:
                    if warm:
                        run_caudal(name, data, parallelism, work, tree)
                    b = _fastest(b, run_caudal(name, data, parallelism, work, tree))
                if warm:
                    run_caudal(name, data, parallelism, work)
                c = _fastest(c, run_caudal(name, data, parallelism, work))
                d = _fastest(d, run_duckdb(name, data, parallelism, work))
                same = same_answer(name, work)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        assert c is not None and d is not None
        was = f" {b.wall:.2f} ({b.cpu:.2f}) |" if b is not None else ""
        print(f"| {name} |{was} {c.wall:.2f} ({c.cpu:.2f}) | {d.wall:.2f} ({d.cpu:.2f}) | "
              f"{c.wall / d.wall:.2f}x | {c.cpu / d.cpu:.2f}x | {same} |", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1, help="runs each, fastest kept")
    parser.add_argument("--quick", action="store_true", help="1M events")
    parser.add_argument("--query", choices=sorted(QUERIES), action="append")
    parser.add_argument("--baseline", type=Path,
                        help="a directory holding another caudal package, run beside")
    parser.add_argument("--plan-cache", choices=("cold", "warm"), default="cold",
                        help="cold (default): every timed caudal run plans its job; warm: "
                             "each job is run once untimed first, so the timed run starts "
                             "from the plan cache")
    args = parser.parse_args(argv)
    print_table(1_000_000 if args.quick else args.events, args.parallelism,
                args.query or list(QUERIES), args.repeat, args.baseline,
                args.plan_cache == "warm")


if __name__ == "__main__":
    main()
