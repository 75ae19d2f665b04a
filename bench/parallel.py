"""Parallelism 2 against parallelism 1: whole ``caudal run`` processes over the same Parquet
input, one query kind each (stateless, windowed, updating, join).

    .venv/bin/python -m bench.parallel --events 20000000 --rounds 3

Each round runs every query at parallelism 1 and then 2, back to back, so both see the same
machine; the figures are medians over the rounds. ``speed-up`` is the wall time at
parallelism 1 divided by the wall time at 2 (throughput at 2 / throughput at 1). CPU seconds
are user + system of the whole process (its threads and the libraries' thread pools): on a
machine shared with other work, wall times and so the speed-up understate what two idle cores
give, while CPU seconds say what parallelism costs in work; ``cores`` is CPU / wall. The load
average is printed at the start and the end.

Beside the whole process, ``job s`` is the job's own running time as ``caudal run`` reports it
(from the subtasks' start to the end of the input, the figure in its summary line): the ~0.4 s
of import, planning and deployment before it is serial whatever the parallelism, and in a job
of one or two seconds it hides what a second core gives to the running part. ``job speed-up``
is the P=1 job time over the P=2 job time. Both are printed; the whole-process one is the
figure a user waits for.

``--threads`` runs each process under ``bench.thread_cpu`` and prints a second table: the CPU
seconds of each vertex's subtask threads (their sum, and the busiest one), of the main
thread (import, planning, deployment: serial) and of the libraries' own pools (``other``:
Arrow's Parquet decode and kernels), and an estimate of the shortest job time two idle
cores allow, ``bound``: the larger of the busiest thread's CPU and the job's CPU (all but
the main thread) over 2. On a shared machine the wall times say little; this says which
thread is the critical path and how far P=2 can go beyond P=1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.data import nexmark_parquet

#: name -> (Nexmark tables read, the statements after the CREATE TABLEs of the inputs)
QUERIES = {
    "stateless": (["bid"], "CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', "
                           "format = 'parquet');\nINSERT INTO out SELECT auction, bidder, "
                           "price * 908 / 1000 AS price_eur, channel, date_time FROM bid "
                           "WHERE price > 1000 AND channel <> 'Apple';"),
    "tumble": (["bid"], "CREATE TABLE out WITH (connector = 'blackhole');\nINSERT INTO out "
                        "SELECT window_start, window_end, auction, count(*) AS num FROM "
                        "TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) "
                        "GROUP BY window_start, window_end, auction;"),
    "updating": (["bid"], "CREATE TABLE out WITH (connector = 'blackhole');\nINSERT INTO out "
                          "SELECT auction, count(*) AS bids, max(price) AS top FROM bid "
                          "GROUP BY auction;"),
    "join": (["bid", "auction"], "CREATE TABLE out WITH (connector = 'blackhole');\nINSERT "
                                 "INTO out SELECT B.auction, B.bidder, B.price, B.channel, "
                                 "B.date_time, A.item_name, A.seller, A.category FROM bid AS B "
                                 "JOIN auction AS A ON B.auction = A.id WHERE A.category = 10;"),
}


def script(name: str, events: int, out: Path) -> str:
    kinds, rest = QUERIES[name]
    ddl = "\n".join(f"CREATE TABLE {k} WITH (connector = 'filesystem', path = "
                    f"'{nexmark_parquet(k, events)}', event_time_field = 'date_time', "
                    f"watermark_delay = '1s');" for k in kinds)
    return f"{ddl}\n{rest.format(out=out)}\n"


def run_once(path: Path, parallelism: int, threads: Path | None = None
             ) -> tuple[float, float, str]:
    """(wall s, CPU s, the job's summary line) of one ``caudal run`` process (with
    ``threads``, its threads' CPU written there as JSON by ``bench.thread_cpu``)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    command = ["-m", "caudal.cli"] if threads is None else \
        ["-m", "bench.thread_cpu", str(threads)]
    done = subprocess.run([sys.executable, *command, "run", "-p", str(parallelism),
                           str(path)], capture_output=True, text=True, cwd=path.parent)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"caudal run failed: {done.stderr.strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    summary = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
    return wall, cpu, summary


def thread_figures(path: Path) -> dict[str, float]:
    """Per vertex (subtask threads ``name#i``): the CPU of all its subtasks (``name``) and
    of the busiest (``name max``); ``main``, ``other`` and ``bound`` (see the module)."""
    data = json.loads(path.read_text())
    out: dict[str, float] = {}
    busiest = 0.0
    for name, t in data["threads"].items():
        vertex, sep, _ = name.rpartition("#")
        if not sep:
            out[name] = out.get(name, 0.0) + t["cpu"]
            continue
        out[vertex] = out.get(vertex, 0.0) + t["cpu"]
        out[f"{vertex} max"] = max(out.get(f"{vertex} max", 0.0), t["cpu"])
        busiest = max(busiest, t["cpu"])
    out["bound"] = max(busiest, (data["total"] - out.get("main", 0.0)) / 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--query", choices=sorted(QUERIES), action="append")
    parser.add_argument("--threads", action="store_true",
                        help="also print each vertex's thread CPU and the idle bound")
    args = parser.parse_args()
    names = args.query or list(QUERIES)
    tmp = Path(tempfile.mkdtemp(prefix="caudal-parallel-"))
    env_root = str(Path(__file__).resolve().parent.parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (env_root, os.environ.get("PYTHONPATH")) if p)
    try:
        jobs = {}
        for name in names:
            jobs[name] = tmp / f"{name}.sql"
            jobs[name].write_text(script(name, args.events, tmp / f"{name}-out"))
        print(f"{args.events:,} Nexmark events; load average {os.getloadavg()[0]:.2f} at the "
              f"start")
        figures: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
        per_thread: dict[tuple[str, int], list[dict[str, float]]] = {}
        rows: dict[str, str] = {}
        for _ in range(args.rounds):
            for name in names:
                for p in (1, 2):
                    shutil.rmtree(tmp / f"{name}-out", ignore_errors=True)
                    threads = tmp / "threads.json" if args.threads else None
                    wall, cpu, summary = run_once(jobs[name], p, threads)
                    if threads is not None:
                        per_thread.setdefault((name, p), []).append(thread_figures(threads))
                    job = re.search(r"rows out in ([\d.]+)s", summary)
                    figures.setdefault((name, p), []).append(
                        (wall, cpu, float(job.group(1)) if job else float("nan")))
                    match = re.search(r"([\d,]+) rows in", summary)
                    rows[name] = match.group(1) if match else "?"
        print(f"load average {os.getloadavg()[0]:.2f} at the end\n")
        print("| query | rows in | P | wall s | CPU s | cores | speed-up (P=1 wall / P=2 wall) "
              "| job s | job speed-up |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name in names:
            walls = {p: statistics.median(f[0] for f in figures[(name, p)]) for p in (1, 2)}
            jobs_s = {p: statistics.median(f[2] for f in figures[(name, p)]) for p in (1, 2)}
            for p in (1, 2):
                cpu = statistics.median(f[1] for f in figures[(name, p)])
                ratio = f"{walls[1] / walls[2]:.2f}x" if p == 2 else ""
                job_ratio = f"{jobs_s[1] / jobs_s[2]:.2f}x" if p == 2 else ""
                print(f"| {name} | {rows[name]} | {p} | {walls[p]:.2f} | {cpu:.2f} | "
                      f"{cpu / walls[p]:.2f} | {ratio} | {jobs_s[p]:.2f} | {job_ratio} |")
        if per_thread:
            print_threads(names, per_thread)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def print_threads(names: list[str], per_thread: dict[tuple[str, int], list[dict[str, float]]]
                  ) -> None:
    """The thread CPU table: medians over the rounds, per vertex sum (busiest subtask)."""
    print("\n| query | P | thread CPU s, median: vertex sum (busiest subtask) | main | other "
          "| bound s (2 idle cores) | bound speed-up |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for name in names:
        bounds = {}
        for p in (1, 2):
            runs = per_thread[(name, p)]
            keys = sorted({k for r in runs for k in r})
            med = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in keys}
            bounds[p] = med["bound"]
            vertices = [k for k in keys if k not in ("main", "other", "bound")
                        and not k.endswith(" max")]
            parts = ", ".join(f"{v} {med[v]:.2f} ({med.get(v + ' max', med[v]):.2f})"
                              for v in vertices)
            ratio = f"{bounds[1] / bounds[2]:.2f}x" if p == 2 else ""
            print(f"| {name} | {p} | {parts} | {med.get('main', 0):.2f} | "
                  f"{med.get('other', 0):.2f} | {bounds[p]:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
