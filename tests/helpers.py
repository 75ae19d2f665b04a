"""Helpers for end-to-end tests: run a SELECT through caudal into Parquet files and read the
result back, and compare row multisets with a DuckDB answer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from caudal.checkpoint.manifest import completed_epochs
from caudal.checkpoint.storage import CheckpointStorage
from caudal.job import run_sql


def run_to_table(ddl: str, select: str, out_dir: Path, parallelism: int = 1,
                 **runtime) -> pa.Table:
    """Run ``INSERT INTO out <select>`` after ``ddl`` and return what the sink committed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    script = (f"{ddl}\nCREATE TABLE out WITH (connector = 'filesystem', path = '{out_dir}', "
              f"format = 'parquet');\nINSERT INTO out {select};")
    run_sql(script, parallelism=parallelism, **runtime)
    return read_committed(out_dir)


def read_committed(out_dir: Path) -> pa.Table:
    files = sorted(p for p in Path(out_dir).iterdir()
                   if p.suffix == ".parquet" and not p.name.startswith((".", "_")))
    if not files:
        return None  # type: ignore[return-value]
    return pa.concat_tables([pq.read_table(f) for f in files])


def normalized_rows(table: pa.Table | None, columns: list[str] | None = None) -> list[tuple]:
    """Rows as sorted tuples (floats rounded, timestamps compared as UTC instants)."""
    if table is None:
        return []
    if columns is not None:
        table = table.select(columns)
    cols = []
    for col in table.columns:
        if pa.types.is_timestamp(col.type):
            col = col.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
        cols.append(col.to_pylist())
    rows = []
    for row in zip(*cols):
        rows.append(tuple(round(v, 6) if isinstance(v, float) else v for v in row))
    return sorted(rows, key=lambda r: tuple((v is None, str(type(v)), v if v is not None
                                             else 0) for v in r))


def duckdb_rows(tables: dict[str, pa.Table], query: str) -> list[tuple]:
    """DuckDB's answer to ``query`` over ``tables`` (registered by name; UTC), as
    ``normalized_rows``."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for name, table in tables.items():
        con.register(name, table)
    return normalized_rows(con.sql(query).to_arrow_table())


def kill_after_checkpoints(script: Path, ck: Path, batch_rows: int, first: int,
                           then: int, checkpoints: int = 2,
                           before_resume: Callable[[], None] | None = None) -> None:
    """Run ``caudal run script`` at parallelism ``first`` with 50 ms checkpoints into
    ``ck``, SIGKILL it once ``checkpoints`` are complete, then (after ``before_resume``)
    run it to the end at parallelism ``then`` (resuming from the newest checkpoint). Fails
    if the first run ended before it was killed or the second fails (its stderr the
    message)."""
    command = [sys.executable, "-m", "caudal.cli", "run", str(script), "--checkpoint-dir",
               str(ck), "--checkpoint-interval", "50ms", "--batch-rows", str(batch_rows)]
    env = {k: v for k, v in os.environ.items() if k != "CAUDAL_DEBUG"}
    proc = subprocess.Popen(command + ["-p", str(first)], cwd=script.parent,
                            stderr=subprocess.PIPE, text=True, env=env)
    storage = CheckpointStorage(str(ck))
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if ck.exists() and len(completed_epochs(storage)) >= checkpoints:
                break
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the run ended before it was killed: {err}"
    if before_resume is not None:
        before_resume()
    final = subprocess.run(command + ["-p", str(then)], cwd=script.parent,
                           capture_output=True, text=True, env=env, timeout=100)
    assert final.returncode == 0, final.stderr
