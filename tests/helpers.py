"""Helpers for end-to-end tests: run a SELECT through caudal into Parquet files and read the
result back, and compare row multisets with a DuckDB answer."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

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
