"""``caudal`` run in this process with the CPU seconds of each of its threads recorded: the
figure that tells which subtask is the critical path of a parallel job on a shared machine,
where wall times are noise.

    python -m bench.thread_cpu OUT.json run -p 2 job.sql

Every Python thread's ``time.thread_time()`` is taken when its ``run`` returns (subtask
threads are named ``vertex#index``) and the main thread's at the end; ``other`` is the
process's CPU (user + system, ``os.times``) less those: the libraries' own thread pools
(Arrow's Parquet decode and compute, Polars), which Python does not see. ``wall`` is each
thread's running time, so ``cpu / wall`` near 1 marks a thread that was never waiting (on
an idle machine, the one that sets the job's time). Written as JSON to OUT.json after the
job; the command's exit code is kept.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time


def main() -> None:
    out, argv = sys.argv[1], sys.argv[2:]
    threads: dict[str, dict[str, float]] = {}
    lock = threading.Lock()
    original = threading.Thread.run

    def timed_run(self: threading.Thread) -> None:
        started = time.perf_counter()
        try:
            original(self)
        finally:
            cpu = time.thread_time()
            with lock:
                threads[self.name] = {"cpu": cpu, "wall": time.perf_counter() - started}

    threading.Thread.run = timed_run   # type: ignore[method-assign]
    from caudal.cli import main as cli_main

    code = 1
    try:
        code = cli_main(argv)
    finally:
        times = os.times()
        total = times.user + times.system
        with lock:
            named = dict(threads)
        named["main"] = {"cpu": time.thread_time(), "wall": float("nan")}
        named["other"] = {"cpu": total - sum(t["cpu"] for t in named.values()),
                          "wall": float("nan")}
        with open(out, "w") as f:
            json.dump({"total": total, "threads": named}, f)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    main()
