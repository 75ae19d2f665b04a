"""Start-up of ``caudal run`` on a trivial job, as whole processes, beside the imports it
cannot avoid (issue 15, item 1: ≤ 150 ms).

    .venv/bin/python -m bench.startup --runs 15

Five commands run in turn, round after round (A B C D E A B C D E …), so that a drift in the
machine's speed touches them alike:

- ``cache hit``: ``caudal run triv.sql`` after a first run stored its plan (caudal.plan_cache);
- ``planned``: the same with ``--no-plan-cache``, what the first run of a new ``.sql`` pays;
- ``compiled``: ``caudal run triv.plan`` (``caudal compile``);
- ``import pyarrow`` and ``import pyarrow, sqlglot``: ``python -c`` of the imports alone, the
  floor a cached and a planned run stand on.

The job is ``SELECT 1 AS a, 'hello' AS b`` to standard output. Each figure is the median of
the rounds' wall seconds (with the minimum and maximum) and of CPU seconds (user + system of
the process and its threads, from ``getrusage`` of the children). The 1-minute load average
is printed before and after: anything above ~0 is other work, and wall times then read high.
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

JOB = "SELECT 1 AS a, 'hello' AS b;\n"


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall s, CPU s) of one process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="rounds (default 15)")
    args = parser.parse_args()
    if args.runs < 1:
        raise SystemExit("--runs must be at least 1")
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="caudal-startup-") as tmp:
        work = Path(tmp)
        (work / "triv.sql").write_text(JOB)
        env = dict(os.environ, CAUDAL_PLAN_CACHE=str(work / "cache"))
        caudal = [py, "-m", "caudal.cli"]
        timed([*caudal, "compile", "triv.sql", "-o", "triv.plan"], work, env)
        timed([*caudal, "run", "triv.sql"], work, env)  # stores the plan: later runs hit
        commands = {
            "cache hit": [*caudal, "run", "triv.sql"],
            "planned (--no-plan-cache)": [*caudal, "run", "--no-plan-cache", "triv.sql"],
            "compiled plan": [*caudal, "run", "triv.plan"],
            "import pyarrow": [py, "-c", "import pyarrow"],
            "import pyarrow, sqlglot": [py, "-c", "import pyarrow, sqlglot"],
        }
        load_before = os.getloadavg()[0]
        figures: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, argv in commands.items():
                figures[name].append(timed(argv, work, env))
        load_after = os.getloadavg()[0]
    print(f"{args.runs} rounds; load average {load_before:.2f} at the start, "
          f"{load_after:.2f} at the end\n")
    print("| command | wall s, median (min-max) | CPU s, median |")
    print("|---|---:|---:|")
    for name, runs in figures.items():
        walls = [w for w, _ in runs]
        cpus = [c for _, c in runs]
        print(f"| {name} | {statistics.median(walls):.3f} ({min(walls):.3f}-{max(walls):.3f}) "
              f"| {statistics.median(cpus):.3f} |")


if __name__ == "__main__":
    main()
