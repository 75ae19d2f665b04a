"""caudal beside the Python streaming engines a user would pick instead, and DuckDB:

    .venv/bin/python -m bench.engines [--events 1M] [--engines caudal,duckdb,bytewax,…]

Every engine reads the same CSV file of Nexmark bids (Flink's CSV format has no header line,
so it reads a copy without one), runs the same three queries (bench/engines/queries.py) as a
whole process at parallelism 1, and writes its answer to files; the answer is folded (a
changelog to its final rows) and compared with DuckDB's. Bytewax, Pathway and PyFlink are
installed by pip, each into its own venv under ``--venvs`` (default
~/.cache/caudal/bench-engines), on first use; an engine that cannot be installed is skipped
with pip's last line. PyFlink needs Java (17 here).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import psutil

from bench.data import DATA_DIR, bids_parquet
from bench.engines.queries import COLUMNS, OUT_COLUMNS, QUERIES
from caudal.bench.command import count

HERE = Path(__file__).resolve().parent
#: engine -> the pip requirement installed into its venv
PACKAGES = {"bytewax": "bytewax", "pathway": "pathway", "pyflink": "apache-flink"}
ENGINES = ("caudal", "duckdb", *PACKAGES)
INSTALL_TIMEOUT = 1800


@dataclass
class Run:
    engine: str
    query: str
    wall: float | None = None
    cpu: float | None = None
    equal: bool | None = None
    note: str = ""


def _csv_inputs(events: int) -> tuple[Path, Path, int]:
    """The bids as CSV with a header line, and the same rows without it (for Flink)."""
    out = DATA_DIR / f"engines-bids-{events}"
    with_header, bare = out / "bids.csv", out / "bids-noheader.csv"
    if not bare.exists():
        out.mkdir(parents=True, exist_ok=True)
        source = f"read_parquet('{bids_parquet(events)}/*.parquet')"
        cols = ", ".join(COLUMNS)
        duckdb.sql(f"COPY (SELECT {cols} FROM {source} ORDER BY date_time) TO '{with_header}' "
                   "(HEADER true, TIMESTAMPFORMAT '%Y-%m-%d %H:%M:%S.%g')")
        duckdb.sql(f"COPY (SELECT * FROM read_csv('{with_header}')) TO '{bare}' "
                   "(HEADER false, TIMESTAMPFORMAT '%Y-%m-%d %H:%M:%S.%g')")
    rows = duckdb.sql(f"SELECT count(*) FROM read_csv('{with_header}')").fetchall()[0][0]
    return with_header, bare, rows


def _venv_python(engine: str, venvs: Path) -> tuple[Path | None, str]:
    """The venv's interpreter, installing the engine on first use; None and why on failure."""
    venv = venvs / engine
    python, ready = venv / "bin" / "python", venv / ".installed"
    if ready.exists():
        return python, ""
    print(f"installing {PACKAGES[engine]} into {venv} (first use; minutes)", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        done = subprocess.run([str(python), "-m", "pip", "install", "-q", PACKAGES[engine]],
                              capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    except (subprocess.SubprocessError, OSError) as exc:
        return None, f"could not be installed ({exc})"
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines()
                  if line.strip() and not line.startswith("WARNING")]
        return None, f"could not be installed ({errors[-1] if errors else 'pip failed'})"
    ready.touch()
    return python, ""


def _timed(command: list[str], stdout: Path | None = None,
           timeout: float = 600.0) -> tuple[float, float, str]:
    """Wall and CPU seconds (user + sys) of one whole process and every process it starts
    (PyFlink's JVM is a grandchild: the tree is sampled every 0.1 s, each process's last
    figures summed), and its last error line when it failed."""
    started = time.perf_counter()
    seen: dict[int, float] = {}
    with open(stdout or os.devnull, "w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.PIPE, text=True,
                                cwd=HERE.parent.parent)
        errors: list[str] = []
        reader = threading.Thread(target=lambda: errors.extend(proc.stderr), daemon=True)
        reader.start()
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            if time.perf_counter() - started > timeout:
                for p in [*root.children(recursive=True), root]:
                    try:
                        p.kill()
                    except psutil.Error:
                        pass
                proc.wait()
                break
            try:
                for p in [root, *root.children(recursive=True)]:
                    times = p.cpu_times()
                    seen[p.pid] = times.user + times.system
            except psutil.Error:
                pass
            time.sleep(0.1)
        reader.join()
    wall = time.perf_counter() - started
    cpu = sum(seen.values())
    if wall > timeout:
        return wall, cpu, f"stopped after {timeout:.0f} s"
    if proc.returncode != 0:
        lines = [line.rstrip() for line in errors  # skip Java's stack frames
                 if line.strip() and not line[0].isspace()]
        return wall, cpu, lines[-1] if lines else f"exit code {proc.returncode}"
    return wall, cpu, ""


def _caudal_script(query: str, source: Path, out: Path) -> str:
    columns = ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
    fmt = "debezium_json" if query == "updating" else "csv"
    return (f"CREATE TABLE bids ({columns}, WATERMARK FOR date_time AS date_time - "
            f"INTERVAL '1' SECOND) WITH (connector = 'filesystem', path = '{source}', "
            "format = 'csv');\n"
            f"CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', "
            f"format = '{fmt}');\n"
            f"INSERT INTO out {QUERIES[query][1]};\n")


def _command(engine: str, query: str, inputs: tuple[Path, Path], out: Path,
             python: Path | None) -> tuple[list[str], Path | None]:
    """The whole-process command line of one engine and query; the file its stdout goes to
    when the answer is printed there (Flink's print connector)."""
    with_header, bare = inputs
    if engine == "caudal":
        script = out.parent / f"{out.name}.sql"
        script.write_text(_caudal_script(query, with_header, out))
        return [sys.executable, "-m", "caudal.cli", "run", str(script)], None
    if engine == "duckdb":
        sql = QUERIES[query][2].replace("FROM bids", f"FROM read_csv('{with_header}')")
        code = ("import duckdb; con = duckdb.connect(); con.execute('SET threads = 1'); "
                f"con.execute(\"COPY ({sql}) TO '{out}.csv' (HEADER true)\")")
        return [sys.executable, "-c", code], None
    job = str(HERE / f"{engine}_job.py")
    if engine == "pyflink":
        kind = "updating" if query == "updating" else "append"
        printed = out.parent / f"{out.name}.printed"
        return [str(python), job, str(bare), str(out), QUERIES[query][1], OUT_COLUMNS[query],
                kind], printed if kind == "updating" else None
    return [str(python), job, query, str(with_header), f"{out}.csv"], None


def _columns(query: str) -> list[tuple[str, str]]:
    pairs = [part.strip().split(" ", 1) for part in OUT_COLUMNS[query].split(",")]
    return [(name, kind.replace("TIMESTAMP(3)", "TIMESTAMP")) for name, kind in pairs]


def _answer(con: duckdb.DuckDBPyConnection, engine: str, query: str, out: Path,
            printed: Path | None) -> duckdb.DuckDBPyRelation:
    """The engine's output folded to the rows of its answer, columns cast to one type each."""
    cols = _columns(query)
    names = ", ".join(name for name, _ in cols)
    typed = ", ".join(f"CAST({name} AS {kind}) AS {name}" for name, kind in cols)
    bare = "{" + ", ".join(f"'{name}': 'VARCHAR'" for name, _ in cols) + "}"
    if engine == "caudal" and query == "updating":
        row = "STRUCT(" + ", ".join(f"{name} {kind}" for name, kind in cols) + ")"
        changes = (f"read_json('{out}/*.json*', format = 'newline_delimited', columns = "
                   f"{{'before': '{row}', 'after': '{row}', 'op': 'VARCHAR'}})")
        rel = (f"SELECT after.*, 1 AS sign FROM {changes} WHERE op IN ('c', 'r', 'u') "
               f"UNION ALL SELECT before.*, -1 FROM {changes} WHERE op IN ('u', 'd')")
        return _net(con, rel, names, typed)
    if engine == "caudal":
        return con.sql(f"SELECT {typed} FROM read_csv('{out}/*.csv', header = true)")
    if engine == "duckdb":
        return con.sql(f"SELECT {typed} FROM read_csv('{out}.csv', header = true)")
    if engine == "pathway":
        rel = f"SELECT *, diff AS sign FROM read_csv('{out}.csv', header = true)"
        return _net(con, rel, names, typed)
    if engine == "bytewax" and query == "updating":  # every state in order: the last counts
        rows = f"read_csv('{out}.csv', header = false, columns = {bare})"
        return con.sql(f"SELECT {typed} FROM (SELECT *, row_number() OVER () AS line "
                       f"FROM {rows}) QUALIFY line = max(line) OVER (PARTITION BY auction)")
    if engine == "bytewax":
        return con.sql(f"SELECT {typed} FROM read_csv('{out}.csv', header = false, "
                       f"columns = {bare})")
    if query == "updating":  # Flink's print connector: +I[a, b, c] / -U[…] / +U[…] / -D[…]
        fields = ", ".join(f"trim(split_part(body, ',', {i + 1})) AS {name}"
                           for i, (name, _) in enumerate(cols))
        rel = (f"SELECT {fields}, CASE WHEN kind IN ('+I', '+U') THEN 1 ELSE -1 END AS sign "
               f"FROM (SELECT regexp_extract(line, '([+-][IUD])\\[', 1) AS kind, "
               f"regexp_extract(line, '\\[(.*)\\]', 1) AS body FROM read_csv('{printed}', "
               "header = false, columns = {'line': 'VARCHAR'}, delim = '\\t', quote = '') "
               "WHERE line SIMILAR TO '.*[+-][IUD]\\[.*') ")
        return _net(con, rel, names, typed)
    return con.sql(f"SELECT {typed} FROM read_csv('{out}/**/*', header = false, "
                   f"columns = {bare})")


def _net(con, changes: str, names: str, typed: str) -> duckdb.DuckDBPyRelation:
    """A changelog (rows with a +1/-1 sign) folded to the rows whose count stays positive."""
    return con.sql(f"SELECT {typed} FROM (SELECT {names}, sum(sign) AS copies FROM ({changes}) "
                   f"GROUP BY ALL HAVING sum(sign) > 0), range(CAST(copies AS BIGINT))")


def _same(con, got: duckdb.DuckDBPyRelation, expected: duckdb.DuckDBPyRelation) -> bool:
    con.register("got_rows", got.to_arrow_table())
    con.register("expected_rows", expected.to_arrow_table())
    extra = con.sql("SELECT count(*) FROM (SELECT * FROM got_rows EXCEPT ALL "
                    "SELECT * FROM expected_rows)").fetchall()[0][0]
    missing = con.sql("SELECT count(*) FROM (SELECT * FROM expected_rows EXCEPT ALL "
                      "SELECT * FROM got_rows)").fetchall()[0][0]
    return extra == 0 and missing == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", default="1M", help="Nexmark events (default 1M)")
    parser.add_argument("--engines", default=",".join(ENGINES),
                        help=f"comma-separated (default {','.join(ENGINES)})")
    parser.add_argument("--queries", default=",".join(QUERIES),
                        help=f"comma-separated (default {','.join(QUERIES)})")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds one engine may take on one query (default %(default)s)")
    parser.add_argument("--venvs", type=Path,
                        default=Path.home() / ".cache" / "caudal" / "bench-engines",
                        help="where each engine's venv is made (default %(default)s)")
    args = parser.parse_args(argv)
    engines, queries = args.engines.split(","), args.queries.split(",")
    with_header, bare, rows = _csv_inputs(count(args.events))
    print(f"input: {rows:,} bids in {with_header} (CSV)", flush=True)
    pythons: dict[str, Path | None] = {}
    runs: list[Run] = []
    for engine in engines:
        if engine in PACKAGES:
            pythons[engine], why = _venv_python(engine, args.venvs)
            if pythons[engine] is None:
                print(f"{engine}: skipped: {why}", flush=True)
                runs.extend(Run(engine, q, note=why) for q in queries)
    con = duckdb.connect()
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"caudal-bench-engines-{os.getpid()}"
    work.mkdir(parents=True)
    try:
        for query in queries:
            out = work / f"duckdb-{query}"
            wall, cpu, error = _timed(_command("duckdb", query, (with_header, bare), out, None)[0])
            if error:
                raise SystemExit(f"DuckDB failed on {query}: {error}")
            expected = _answer(con, "duckdb", query, out, None)
            runs.append(Run("duckdb", query, wall, cpu, True))
            for engine in engines:
                if engine == "duckdb" or (engine in PACKAGES and pythons[engine] is None):
                    continue
                out = work / f"{engine}-{query}"
                command, printed = _command(engine, query, (with_header, bare), out,
                                            pythons.get(engine))
                wall, cpu, error = _timed(command, printed, args.timeout)
                run = Run(engine, query, wall, cpu, note=error)
                if not error:
                    try:
                        run.equal = _same(con, _answer(con, engine, query, out, printed),
                                          expected)
                    except duckdb.Error as exc:
                        run.note = f"answer unreadable: {str(exc).splitlines()[0]}"
                runs.append(run)
                print(f"{query:9} {engine:8} {wall:7.2f} s wall {cpu:7.2f} s CPU "
                      f"{'' if run.equal is None else 'equal' if run.equal else 'DIFFERS'} "
                      f"{run.note}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(_table(runs, rows, engines, queries))
    return 1 if any(run.equal is False for run in runs) else 0


def _table(runs: list[Run], rows: int, engines: list[str], queries: list[str]) -> str:
    """A Markdown table: per query and engine, wall and CPU seconds, rows/s and the answer."""
    lines = ["| query | engine | wall s | CPU s | bids/s (wall) | wall vs caudal | "
             "CPU vs caudal | answer |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for query in queries:
        mine = next((r for r in runs if r.engine == "caudal" and r.query == query and
                     r.wall and not r.note), None)
        for engine in engines:
            for run in (r for r in runs if r.engine == engine and r.query == query):
                if run.wall is None or run.note:
                    lines.append(f"| {query} | {engine} | | | | | | {run.note or 'not run'} |")
                    continue
                ratio = f"{run.wall / mine.wall:.2f}x" if mine else ""
                cpu = f"{run.cpu / mine.cpu:.2f}x" if mine and mine.cpu else ""
                answer = "= DuckDB" if run.equal else "differs from DuckDB"
                lines.append(f"| {query} | {engine} | {run.wall:.2f} | {run.cpu:.2f} | "
                             f"{rows / run.wall:,.0f} | {ratio} | {cpu} | {answer} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
