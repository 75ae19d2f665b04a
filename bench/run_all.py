"""The whole benchmark suite (``make bench``): first the ratio table of issue 15 (bench.ratios:
caudal run vs DuckDB as whole processes over the same Parquet files), then every Nexmark
query at parallelism 1 and 2 with DuckDB beside it, the latency runs, then the README's
tables and the throughput plot, and last the table of caudal beside Bytewax, Pathway and
PyFlink (``bench.engines``).

    .venv/bin/python -m bench.run_all [--events 10M] [--quick] [--ratios-only]

Each query runs in its own process (``caudal bench nexmark``), so its peak RSS is its own.
Results go to bench/results/latest.jsonl (one JSON object per run); bench/README.md's
figures section and bench/nexmark_throughput.png are rewritten from it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from caudal.bench.queries import load_queries
from caudal.bench.report import QueryReport

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results" / "latest.jsonl"

#: (query, input rate, events): the latency runs, paced on the wall clock: q1 for 30 s (3 M
#: result rows timed), count1s for 60 s (one result per second: 60 windows timed)
LATENCY_RUNS = [("q1", "100k", "3M"), ("count1s", "100k", "6M")]


def _run(args: list[str], out: Path) -> int:
    command = [sys.executable, "-m", "caudal.cli", "bench", "nexmark", *args, "--json", str(out)]
    print("$ caudal " + " ".join(command[3:-2]), flush=True)
    return subprocess.run(command, cwd=BENCH.parent, env=dict(os.environ)).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", default="10M", help="events per throughput run")
    parser.add_argument("--parallelism", default="1,2", help="comma-separated (default 1,2)")
    parser.add_argument("--quick", action="store_true",
                        help="1M events, parallelism 1, a 3 s latency run: a fast check")
    parser.add_argument("--queries", default="all", help="comma-separated (default all)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per engine, the fastest kept (default 3)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--ratio-events", type=int, default=5_000_000,
                        help="events of the ratio table's input (--quick: 1M)")
    parser.add_argument("--ratios-only", action="store_true",
                        help="print the ratio table and stop")
    parser.add_argument("--engines", default="caudal,duckdb,bytewax,pathway,pyflink",
                        help="the engine comparison's engines (bench/engines; '' skips it)")
    args = parser.parse_args(argv)
    from bench.ratios import QUERIES as RATIO_QUERIES
    from bench.ratios import print_table

    print_table(1_000_000 if args.quick else args.ratio_events, 1, list(RATIO_QUERIES))
    if args.ratios_only:
        return 0
    events = "1M" if args.quick else args.events
    levels = ["1"] if args.quick else args.parallelism.split(",")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fresh = args.out.with_suffix(".partial")
    fresh.unlink(missing_ok=True)
    started = time.time()
    names = list(load_queries()) if args.queries == "all" else args.queries.split(",")
    failures = 0
    for name in names:
        for p in levels:
            failures += _run(["-q", name, "--events", events, "-p", p, "--compare", "duckdb",
                              "--repeat", "1" if args.quick else str(args.repeat)],
                             fresh) != 0
    for name, rate, count in LATENCY_RUNS:
        count = "300k" if args.quick else count
        failures += _run(["-q", name, "--rate", rate, "--events", count, "-p", "1"],
                         fresh) != 0
    fresh.replace(args.out)
    print(f"suite done in {time.time() - started:.0f}s; results in {args.out}")
    from bench.plot import plot
    from caudal.bench.report import update_readme

    reports = [QueryReport.from_json(line) for line in args.out.read_text().splitlines()
               if line.strip()]
    plot(reports, BENCH / "nexmark_throughput.png")
    update_readme(reports, BENCH / "README.md")
    print(f"updated {BENCH / 'README.md'} and {BENCH / 'nexmark_throughput.png'}")
    if args.engines:
        print("$ python -m bench.engines", flush=True)
        failures += subprocess.run(
            [sys.executable, "-m", "bench.engines", "--engines", args.engines,
             "--events", "100k" if args.quick else "1M"], cwd=BENCH.parent).returncode != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
