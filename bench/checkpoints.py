"""What exactly-once costs: throughput with checkpoints every second vs none, and recovery time.

    .venv/bin/python -m bench.checkpoints [--events 10000000] [--state-mb 100]

1. Overhead: a tumbling-window count and sum per auction over Nexmark bids (generated as fast
   as possible, ``--events`` events: long enough for several checkpoints), written to Parquet
   (the exactly-once filesystem sink), parallelism 2; runs with ``--checkpoint-interval 1s``
   and without checkpoints alternate in the same invocation. The figure is the job's own run
   time (``caudal run``'s summary line: process start excluded), median of ``--repeat``.
2. Recovery: a job keeps one row of keyed window state per bid (a one-hour window by bidder,
   auction and price) and, from the same paced Nexmark stream, prints a count every 100 ms of
   event time. Once a checkpoint holds ``--state-mb`` of state the process is SIGKILLed and
   the same command started again; the time from the kill to the first line the new process
   prints is the recovery time: process start, planning, reading and restoring all the state
   (no subtask runs before every one is restored), then the first 100 ms of input.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from caudal.checkpoint.manifest import completed_epochs, read_manifest
from caudal.checkpoint.storage import CheckpointStorage

TUMBLING = ("SELECT auction, count(*) AS num, sum(price) AS total, "
            "tumble(INTERVAL '10' SECOND) AS window FROM bids GROUP BY auction, window")


def _caudal(args: list[str], **kw) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "CAUDAL_DEBUG"}
    return subprocess.Popen([sys.executable, "-m", "caudal.cli", *args], env=env, **kw)


def _run_seconds(stderr: str) -> tuple[float, int]:
    m = re.search(r"([\d,]+) rows in, .* in ([\d.]+)s", stderr)
    if m is None:
        raise RuntimeError(f"no summary line in: {stderr[-500:]}")
    return float(m.group(2)), int(m.group(1).replace(",", ""))


def overhead(events: int, repeat: int, parallelism: int) -> None:
    print(f"query: {TUMBLING}\ninput: {events:,} Nexmark events (parallelism {parallelism})")
    times: dict[str, list[float]] = {"none": [], "1s": []}
    cpu: dict[str, list[float]] = {"none": [], "1s": []}
    rows = 0
    for _ in range(repeat):
        for mode in ("none", "1s"):
            tmp = Path(tempfile.mkdtemp(prefix="caudal-bench-"))
            try:
                job = tmp / "job.sql"
                job.write_text(
                    f"CREATE TABLE bids WITH (connector = 'nexmark', table = 'bid', "
                    f"events = '{events}');\n"
                    f"CREATE TABLE out WITH (connector = 'filesystem', path = '{tmp / 'out'}', "
                    f"format = 'parquet');\nINSERT INTO out {TUMBLING};\n")
                extra = [] if mode == "none" else [
                    "--checkpoint-dir", str(tmp / "ck"), "--checkpoint-interval", "1s"]
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                proc = _caudal(["run", str(job), "-p", str(parallelism), *extra],
                               stderr=subprocess.PIPE, text=True)
                _, err = proc.communicate()
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu[mode].append(after.ru_utime + after.ru_stime - before.ru_utime
                                 - before.ru_stime)
                if proc.returncode:
                    raise RuntimeError(err)
                seconds, rows = _run_seconds(err)
                times[mode].append(seconds)
                if mode == "1s":
                    epochs = completed_epochs(CheckpointStorage(str(tmp / "ck")))
                    print(f"  run with checkpoints: {seconds:.2f}s (cpu {cpu[mode][-1]:.1f}s), "
                          f"{epochs[-1] if epochs else 0} checkpoints (the last one final)")
                else:
                    print(f"  run without:          {seconds:.2f}s (cpu {cpu[mode][-1]:.1f}s)")
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    none, every = statistics.median(times["none"]), statistics.median(times["1s"])
    print(f"throughput without checkpoints  {rows / none / 1e6:6.2f} M rows/s ({none:.2f}s)")
    print(f"throughput, checkpoint every 1s {rows / every / 1e6:6.2f} M rows/s ({every:.2f}s)")
    print(f"overhead {100 * (every - none) / none:+.1f}% (median of {repeat})")
    c_none, c_every = statistics.median(cpu["none"]), statistics.median(cpu["1s"])
    print(f"cpu time (whole process) {c_none:.1f}s vs {c_every:.1f}s: "
          f"{100 * (c_every - c_none) / c_none:+.1f}% (insensitive to other load on the machine)")


RECOVERY_JOB = """
CREATE TABLE bids WITH (connector = 'nexmark', table = 'bid', events = '2000000000',
                        event_rate = '1500000', pace = 'true');
CREATE TABLE big WITH (connector = 'blackhole');
CREATE TABLE ticks WITH (connector = 'stdout', format = 'json');
INSERT INTO big SELECT bidder, auction, price, count(*) AS n,
  tumble(INTERVAL '1' HOUR) AS window FROM bids GROUP BY bidder, auction, price, window;
INSERT INTO ticks SELECT count(*) AS n, tumble(INTERVAL '100' MILLISECOND) AS window
  FROM bids GROUP BY window;
"""


def recovery(state_mb: float, parallelism: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="caudal-bench-"))
    try:
        job = tmp / "job.sql"
        job.write_text(RECOVERY_JOB)
        ck = tmp / "ck"
        args = ["run", str(job), "-p", str(parallelism), "--checkpoint-dir", str(ck),
                "--checkpoint-interval", "1s"]
        first = _caudal(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        storage = CheckpointStorage(str(ck))
        size = 0
        while size < state_mb * 1e6:
            if first.poll() is not None:
                raise RuntimeError(first.stderr.read())
            epochs = completed_epochs(storage) if ck.exists() else []
            if epochs:
                try:
                    size = read_manifest(storage, epochs[-1]).bytes
                except Exception:  # noqa: BLE001 - deleted by retention meanwhile
                    pass
            time.sleep(0.02)
        os.kill(first.pid, signal.SIGKILL)
        killed = time.monotonic()
        first.communicate()
        second = _caudal(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = second.stdout.readline()
        recovered = time.monotonic() - killed
        second.send_signal(signal.SIGTERM)   # stop with a savepoint
        _, err = second.communicate(timeout=120)
        if not line:
            raise RuntimeError(err)
        resumed = re.search(r"resuming from checkpoint \d+ .*\((.*) of state read in "
                            r"([\d.]+)s\)", err)
        print(f"state in the checkpoint: {size / 1e6:.1f} MB on disk (parallelism "
              f"{parallelism})")
        if resumed:
            print(f"  restore read {resumed.group(1)} in {resumed.group(2)}s")
        print(f"recovery time (SIGKILL -> first new output): {recovered:.2f}s")
        if "stopped with savepoint" in err:
            print("  the resumed run then stopped with a savepoint on SIGTERM")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--parallelism", type=int, default=2)
    parser.add_argument("--state-mb", type=float, default=100.0)
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--skip-recovery", action="store_true")
    args = parser.parse_args()
    if not args.skip_overhead:
        overhead(args.events, args.repeat, args.parallelism)
    if not args.skip_recovery:
        recovery(args.state_mb, args.parallelism)


if __name__ == "__main__":
    main()
