"""Python UDFs and UDAFs inside caudal vs the same Python code outside it.

    .venv/bin/python -m bench.udf --rows 10000000

* Scalar UDF: ``SELECT heavy(x) FROM t`` into a blackhole, minus the same job without the UDF
  (``SELECT x FROM t``): what the UDF costs inside a job, batch by batch. Compared with
  ``heavy`` called once on the whole 10 M-row column, already in memory, outside caudal.
  Whole processes too: ``caudal run --udf`` of both jobs, wall time from start to exit.
* UDAF: ``py_avg(x)`` (tests/frame/udafs.py's vectorized mean) against the built-in
  ``avg(x)`` in the same job shapes: an updating GROUP BY over 1 000 keys and a tumbling
  window per key.
* Group UDAF (``--part group``): whole ``caudal run --udf tests/frame/udafs.py`` processes of
  a median per key in a 1-second tumbling window: the built-in ``median(x)``, the group UDAF
  ``py_median(x)`` (vectorized, one call per batch of groups) and ``py_median_each(x)``
  (``per_group=True``, one call per group), alternated round by round, beside DuckDB's
  whole process of the same median; wall and CPU seconds (user + sys) from ``time``.

Every figure is the best of ``--repeat`` runs (the machine is shared).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import caudal as cd
from caudal import col


def heavy(x: pa.Array) -> pa.Array:
    """A typical vectorized scalar function: a few arithmetic kernels over the column."""
    return pc.add(pc.multiply(pc.sqrt(x), 0.9), pc.ln(pc.add(x, 1.0)))


HEAVY = cd.register_udf(heavy, returns="DOUBLE")

UDF_FILE = textwrap.dedent('''
    import pyarrow.compute as pc
    import caudal as cd

    @cd.udf(returns="DOUBLE")
    def heavy(x):
        return pc.add(pc.multiply(pc.sqrt(x), 0.9), pc.ln(pc.add(x, 1.0)))
''')


def make_data(directory: Path, rows: int) -> Path:
    rng = np.random.default_rng(0)
    base = 1_767_225_600_000_000  # 2026-01-01 in µs
    table = pa.table({
        "k": pa.array(rng.integers(0, 1000, rows)),
        "x": pa.array(rng.random(rows) * 1000.0),
        "ts": pa.array(base + np.arange(rows, dtype=np.int64) * 10, pa.timestamp("us", "UTC")),
    })
    path = directory / "data.parquet"
    pq.write_table(table, path, row_group_size=1_000_000)
    return path


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def scalar(path: Path, repeat: int) -> dict[str, float]:
    column = pq.read_table(path, columns=["x"]).column("x").combine_chunks()
    outside = best(lambda: heavy(column), repeat)
    src = cd.read_parquet(path)
    with_udf = best(lambda: src.select(HEAVY(col("x")).alias("y")).sink("blackhole"), repeat)
    without = best(lambda: src.select("x").sink("blackhole"), repeat)
    return {"outside_s": outside, "job_with_udf_s": with_udf, "job_without_udf_s": without,
            "udf_in_job_s": with_udf - without,
            "ratio": (with_udf - without) / outside}


def processes(path: Path, directory: Path, repeat: int) -> dict[str, float]:
    (directory / "heavy_udf.py").write_text(UDF_FILE)
    table = f"CREATE TABLE t WITH (connector = 'filesystem', path = '{path}');\n" \
            "CREATE TABLE out WITH (connector = 'blackhole');\n"
    (directory / "with.sql").write_text(table + "INSERT INTO out SELECT heavy(x) FROM t;\n")
    (directory / "without.sql").write_text(table + "INSERT INTO out SELECT x FROM t;\n")

    def run(job: str, *extra: str):
        subprocess.run([sys.executable, "-m", "caudal.cli", "run", job, *extra],
                       cwd=directory, check=True, capture_output=True)

    return {"process_with_udf_s": best(lambda: run("with.sql", "--udf", "heavy_udf.py"),
                                       repeat),
            "process_without_udf_s": best(lambda: run("without.sql"), repeat)}


def udaf(path: Path, repeat: int) -> dict[str, float]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.frame.udafs import py_avg

    src = cd.read_parquet(path, event_time="ts")
    out = {}
    shapes = {
        "updating": lambda agg: src.group_by("k").agg(agg),
        "tumble": lambda agg: src.group_by("k", cd.tumble("ts", "1s")).agg(agg),
    }
    for shape, build in shapes.items():
        ours = best(lambda b=build: b(py_avg(col("x")).alias("a")).sink("blackhole"), repeat)
        builtin = best(lambda b=build: b(col("x").mean().alias("a")).sink("blackhole"),
                       repeat)
        out[f"{shape}_udaf_s"] = ours
        out[f"{shape}_builtin_s"] = builtin
        out[f"{shape}_ratio"] = ours / builtin
    return out


GROUP_JOB = """
CREATE TABLE t (k BIGINT, x DOUBLE, ts TIMESTAMP,
                WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
WITH (connector = 'filesystem', path = '{path}', format = 'parquet');
CREATE TABLE out WITH (connector = 'blackhole');
INSERT INTO out SELECT k, window_start, {agg}(x) AS m
FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' SECOND))
GROUP BY k, window_start, window_end;
"""
GROUP_DUCKDB = ("import duckdb; duckdb.sql(\"SELECT k, time_bucket(INTERVAL 1 SECOND, ts), "
                "median(x) FROM read_parquet('{path}') GROUP BY ALL\").fetch_arrow_table()")


def timed(command: list[str], cwd: Path) -> tuple[float, float]:
    """(wall s, CPU s: user + sys) of one whole process, as ``/usr/bin/time`` counts them."""
    done = subprocess.run(["/usr/bin/time", "-f", "%e %U %S", *command], cwd=cwd,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{command[:4]} failed: {done.stderr.strip()[-300:]}")
    wall, user, system = (float(v) for v in done.stderr.strip().splitlines()[-1].split())
    return wall, user + system


def group_processes(path: Path, directory: Path, repeat: int) -> dict[str, float]:
    """Median per key and second: built-in, group UDAF (vectorized, per group), DuckDB."""
    udafs = Path(__file__).resolve().parents[1] / "tests" / "frame" / "udafs.py"
    runs: dict[str, list[tuple[float, float]]] = {}
    for _ in range(repeat):  # alternated, so a change of load touches every variant
        for agg in ("median", "py_median", "py_median_each"):
            job = directory / f"{agg}.sql"
            job.write_text(GROUP_JOB.format(path=path, agg=agg))
            runs.setdefault(agg, []).append(timed(
                [sys.executable, "-m", "caudal.cli", "run", str(job), "--udf", str(udafs)],
                directory))
        runs.setdefault("duckdb", []).append(timed(
            [sys.executable, "-c", GROUP_DUCKDB.format(path=path)], directory))
    out = {}
    for name, figures in runs.items():
        out[f"group_{name}_wall_s"] = min(w for w, _ in figures)
        out[f"group_{name}_cpu_s"] = min(c for _, c in figures)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--part", choices=["all", "group"], default="all",
                        help="group: only the group UDAF processes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        path = make_data(directory, args.rows)
        results = {"rows": args.rows}
        if args.part == "all":
            results.update(scalar(path, args.repeat))
            results.update(processes(path, directory, args.repeat))
            results.update(udaf(path, args.repeat))
        results.update(group_processes(path, directory, args.repeat))
    for key, value in results.items():
        print(f"{key:24} {value:.3f}" if isinstance(value, float) else f"{key:24} {value}")


if __name__ == "__main__":
    main()
