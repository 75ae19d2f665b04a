"""Start-up of ``caudal run`` on a trivial job, as whole processes, beside the imports it
cannot avoid (issue 15, item 1: ≤ 150 ms).

    .venv/bin/python -m bench.startup --runs 15

Six commands run in turn, round after round (A B C D E F A B C D E F …), so that a drift in the
machine's speed touches them alike (nine with ``--baseline DIR``, another caudal tree whose
three runs are timed beside this one's):

- ``cache hit``: ``caudal run triv.sql`` after a first run stored its plan (caudal.plan_cache);
- ``planned``: the same with ``--no-plan-cache``, what the first run of a new ``.sql`` pays;
- ``compiled``: ``caudal run triv.plan`` (``caudal compile``);
- ``python -c pass``, ``import pyarrow`` and ``import pyarrow, sqlglot``: the interpreter
  alone, and ``python -c`` of the imports alone, the floors a cached and a planned run stand on.

caudal's modules are compiled to ``__pycache__`` first (``compileall``, what an installed
caudal has): with ``PYTHONDONTWRITEBYTECODE`` set and no ``.pyc``, every run would compile
caudal's ~250 modules from source, and time that instead of a start-up.

The job is ``SELECT 1 AS a, 'hello' AS b`` to standard output. Each figure is the median of
the rounds' wall seconds (with the minimum and maximum) and of CPU seconds (user + system of
the process and its threads, from ``getrusage`` of the children). The 1-minute load average
is printed before and after: anything above ~0 is other work, and wall times then read high.
"""

from __future__ import annotations

import argparse
import compileall
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
    parser.add_argument("--baseline", metavar="DIR",
                        help="another caudal tree (e.g. `git archive main | tar -x -C DIR`): its "
                             "three runs join the same rounds, with PYTHONPATH=DIR")
    args = parser.parse_args()
    if args.runs < 1:
        raise SystemExit("--runs must be at least 1")
    py = sys.executable
    import caudal

    trees = {"": str(Path(caudal.__file__).parents[1])}
    if args.baseline:
        trees[" (baseline)"] = str(Path(args.baseline).resolve())
        if not (Path(trees[" (baseline)"]) / "caudal" / "cli.py").is_file():
            raise SystemExit(f"--baseline {args.baseline}: no caudal/cli.py there")
    for tree in trees.values():
        compileall.compile_dir(str(Path(tree) / "caudal"), quiet=1)
    with tempfile.TemporaryDirectory(prefix="caudal-startup-") as tmp:
        work = Path(tmp)
        (work / "triv.sql").write_text(JOB)
        cli = [py, "-m", "caudal.cli"]
        commands: dict[str, tuple[list[str], dict[str, str]]] = {}
        for suffix, tree in trees.items():
            env = dict(os.environ, CAUDAL_PLAN_CACHE=str(work / f"cache{len(commands)}"),
                       PYTHONPATH=tree)
            plan = f"triv{len(commands)}.plan"
            timed([*cli, "compile", "triv.sql", "-o", plan], work, env)
            timed([*cli, "run", "triv.sql"], work, env)  # stores the plan: later runs hit
            commands.update({
                f"cache hit{suffix}": ([*cli, "run", "triv.sql"], env),
                f"planned (--no-plan-cache){suffix}": (
                    [*cli, "run", "--no-plan-cache", "triv.sql"], env),
                f"compiled plan{suffix}": ([*cli, "run", plan], env),
            })
        env = dict(os.environ)
        commands.update({
            "python -c pass": ([py, "-c", "pass"], env),
            "import pyarrow": ([py, "-c", "import pyarrow"], env),
            "import pyarrow, sqlglot": ([py, "-c", "import pyarrow, sqlglot"], env),
        })
        load_before = os.getloadavg()[0]
        figures: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, (argv, env) in commands.items():
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
