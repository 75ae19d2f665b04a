"""What serving Prometheus metrics costs a job: Nexmark q5 as whole processes, with and
without ``--metrics-port`` (scraped every second, as Prometheus would), interleaved.

    .venv/bin/python -m bench.metrics_overhead --events 10M --parallelism 2 --repeat 5 \
        --baseline-tree /tmp/caudal-before     # optional: a checkout without the counters

With ``--baseline-tree`` a third mode runs the same job with caudal from that directory (e.g.
``git archive <commit before the metrics hooks> | tar -x -C DIR``): what the always-on
counters (bytes, backpressure time) cost. Each scrape's response time is recorded too: at one
scrape a second it bounds the share of one core that serving metrics takes.

Throughput is the job's own figure (rows in / running time, printed by ``caudal run``), so
interpreter start-up and planning are left out; wall time of each process is shown too.
Runs alternate (plain, metrics, plain, …) so load from the rest of the (shared) machine falls
on both; the figure per mode is the median.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RATE = re.compile(r"caudal: ([\d,]+) rows in, .* in ([\d.]+)s")


def _events(text: str) -> int:
    units = {"k": 1_000, "M": 1_000_000}
    return int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(text)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_once(sql: Path, parallelism: int, metrics: bool, tree: Path = REPO) -> dict:
    cmd = [sys.executable, "-m", "caudal.cli", "run", str(sql), "-p", str(parallelism)]
    port = _free_port()
    if metrics:
        cmd += ["--metrics-port", str(port)]
    env = dict(os.environ, PYTHONPATH=str(tree))
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    scrapes: list[float] = []
    stop = threading.Event()

    def scrape() -> None:
        while not stop.wait(1.0):
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    if b"caudal_rows_in_total" in r.read():
                        scrapes.append(time.perf_counter() - t0)
            except OSError:
                pass

    scraper = threading.Thread(target=scrape, daemon=True)
    if metrics:
        scraper.start()
    _, err = proc.communicate()
    wall = time.monotonic() - started
    stop.set()
    m = RATE.search(err)
    if proc.returncode != 0 or m is None:
        raise SystemExit(f"caudal run failed ({proc.returncode}): {err.strip()[-500:]}")
    rows, seconds = int(m.group(1).replace(",", "")), float(m.group(2))
    return {"rows_per_s": rows / seconds, "job_s": seconds, "wall_s": wall,
            "scrapes": len(scrapes), "scrape_s": scrapes}


def cpu_cost(sql_text: str, parallelism: int, scrapes: int = 30) -> None:
    """CPU time of what serving metrics adds, measured inside one q5 job (precise where the
    whole-process comparison drowns in the load of a shared machine): a scrape (snapshot of
    every subtask + Prometheus text) timed with the scraping thread's CPU clock while the job
    runs; the always-on counters (``RecordBatch.nbytes`` per batch in and out) timed on the
    job's own batches."""
    import pyarrow as pa
    from prometheus_client import generate_latest
    from prometheus_client.registry import CollectorRegistry

    from caudal.job import compile_sql
    from caudal.runtime.local import LocalRuntime
    from caudal.server.metrics import SnapshotCollector, snapshot

    runtime = LocalRuntime()
    runtime.deploy(compile_sql(sql_text, parallelism).graph)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(lambda: [("q5", snapshot(runtime))]))
    done = threading.Event()
    result = {}

    def run() -> None:
        result["r"] = runtime.run()
        done.set()

    started = time.perf_counter()
    threading.Thread(target=run, daemon=True).start()
    cpu: list[float] = []
    while not done.is_set() and len(cpu) < scrapes:
        time.sleep(0.1)
        t0 = time.thread_time()
        generate_latest(registry)
        cpu.append(time.thread_time() - t0)
    done.wait()
    elapsed = time.perf_counter() - started
    batches = sum(s.batches_in for s in runtime.stats())
    rows = result["r"].rows_in
    sample = pa.record_batch({"a": pa.array(range(8192)), "b": pa.array(["x" * 20] * 8192)})
    n = 20000
    t0 = time.perf_counter()
    for _ in range(n):
        sample.nbytes  # noqa: B018 - what the counters call per batch
    per_batch = (time.perf_counter() - t0) / n
    print(f"in-process q5 ({rows:,} rows, {elapsed:.2f}s, {batches:,} batches read by all "
          f"subtasks):")
    print(f"  one scrape: median {statistics.median(cpu) * 1e3:.2f} ms of CPU (max "
          f"{max(cpu) * 1e3:.2f} ms, {len(cpu)} scrapes): at one scrape a second "
          f"{statistics.median(cpu) * 100:.2f}% of one core")
    print(f"  counters: RecordBatch.nbytes {per_batch * 1e6:.2f} us per call, ~2 per batch: "
          f"{2 * per_batch * batches * 1e3:.1f} ms over the job "
          f"({100 * 2 * per_batch * batches / elapsed:.3f}% of its wall time)")


def scrape_forever(port: int) -> int:
    """A scrape a second of whatever job listens on ``port`` (none between two runs)."""
    answered = 0
    while True:
        t0 = time.perf_counter()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                if b"caudal_rows_in_total" in r.read():
                    answered += 1
                    print(f"{time.strftime('%H:%M:%S')} scrape {answered}: "
                          f"{(time.perf_counter() - t0) * 1e3:.1f} ms", flush=True)
        except OSError:
            pass
        time.sleep(max(0.0, 1.0 - (time.perf_counter() - t0)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", default="2M")
    p.add_argument("--parallelism", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--cpu-only", action="store_true",
                   help="only the in-process CPU cost of scrapes and counters")
    p.add_argument("--one", choices=("plain", "metrics"),
                   help="run one whole q5 process in this mode (with the scraper for "
                        "metrics) and print its figures: for an outside timer that pairs "
                        "the two modes (the scraper's own CPU counts against metrics)")
    p.add_argument("--scrape", type=int, metavar="PORT",
                   help="only scrape http://127.0.0.1:PORT/metrics every second, printing "
                        "each answer's time, until killed: Prometheus's part while whole "
                        "`caudal run --metrics-port PORT` processes are timed from outside")
    p.add_argument("--baseline-tree", type=Path,
                   help="a caudal checkout without the metrics counters, run as a third mode")
    args = p.parse_args(argv)
    modes = [("plain", False, REPO), ("metrics", True, REPO)]
    if args.baseline_tree:
        modes.insert(0, ("before", False, args.baseline_tree))
    text = (REPO / "bench/nexmark/q5.sql").read_text()
    text = re.sub(r"events = '\d+'", f"events = '{_events(args.events)}'", text)
    if args.scrape:
        return scrape_forever(args.scrape)
    if args.one:
        with tempfile.TemporaryDirectory() as tmp:
            sql = Path(tmp) / "q5.sql"
            sql.write_text(text)
            r = run_once(sql, args.parallelism, args.one == "metrics")
        print(f"{args.one}: {r['rows_per_s'] / 1e6:.3f} M rows/s, job {r['job_s']:.2f}s, "
              f"wall {r['wall_s']:.2f}s, scrapes {r['scrapes']}")
        return 0
    cpu_cost(text, args.parallelism)
    if args.cpu_only:
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        sql = Path(tmp) / "q5.sql"
        sql.write_text(text)
        results: dict[str, list[dict]] = {name: [] for name, _, _ in modes}
        for i in range(args.repeat):
            for name, metrics, tree in modes:
                r = run_once(sql, args.parallelism, metrics, tree)
                results[name].append(r)
                print(f"run {i + 1} {name:<7}: {r['rows_per_s'] / 1e6:.3f} M rows/s, job "
                      f"{r['job_s']:.2f}s, wall {r['wall_s']:.2f}s, scrapes {r['scrapes']}",
                      flush=True)
    print(f"q5, {args.events} events, parallelism {args.parallelism}, {args.repeat} runs each "
          f"(M rows/s)")
    med = {k: statistics.median(r["rows_per_s"] for r in v) for k, v in results.items()}
    best = {k: max(r["rows_per_s"] for r in v) for k, v in results.items()}
    print("| mode | median | best |\n|---|---|---|")
    for name in results:
        print(f"| {name} | {med[name] / 1e6:.3f} | {best[name] / 1e6:.3f} |")
    print(f"metrics vs plain: median {100 * (1 - med['metrics'] / med['plain']):+.1f}%, best "
          f"{100 * (1 - best['metrics'] / best['plain']):+.1f}% cost")
    if "before" in results:
        print(f"plain vs before: median {100 * (1 - med['plain'] / med['before']):+.1f}%, best "
              f"{100 * (1 - best['plain'] / best['before']):+.1f}% cost")
    times = [t for r in results["metrics"] for t in r["scrape_s"]]
    if times:
        print(f"scrapes: {len(times)}, response time median {statistics.median(times) * 1e3:.1f}"
              f" ms, max {max(times) * 1e3:.1f} ms")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # no interpreter teardown (polars + pyarrow pools: apache/arrow#34314)
