"""Helpers for tests of updating queries: run a query into a ``debezium_json`` filesystem sink,
read back every change the sink committed, and fold the changelog into the rows it stands for
(to compare with DuckDB's batch answer)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from caudal.connectors.base import SourceMetrics
from caudal.formats import debezium_json
from caudal.formats.bad_data import BadDataPolicy
from caudal.job import compile_sql, run_sql
from caudal.testing import fold
from tests.helpers import normalized_rows


def run_changelog(ddl: str, select: str, out_dir: Path, schema: pa.Schema | None = None,
                  parallelism: int = 1, settings: str = "", **runtime) -> pa.Table:
    """Run ``INSERT INTO out <select>`` into a debezium_json directory; the changes it holds
    (rows plus ``_op``), in file order. ``schema`` declares the sink's columns (default:
    the query's own, read back from the files' first objects)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    script = (f"{settings}\n{ddl}\nCREATE TABLE out WITH (connector = 'filesystem', "
              f"path = '{out_dir}', format = 'debezium_json');\nINSERT INTO out {select};")
    if schema is None:  # the sink's columns as planned
        schema = compile_sql(script).job.outputs[-1].plan.table.schema
    run_sql(script, parallelism=parallelism, **runtime)
    return read_changes(out_dir, schema)


def read_changes(out_dir: Path, schema: pa.Schema | None = None) -> pa.Table | None:
    files = sorted(p for p in Path(out_dir).iterdir()
                   if p.suffix == ".json" and not p.name.startswith((".", "_")))
    files = [f for f in files if f.stat().st_size]
    if not files:
        return None
    if schema is None:
        with open(files[0], "rb") as f:
            schema = debezium_json.infer_schema(f)
    policy = BadDataPolicy("fail", SourceMetrics(), "changelog")
    tables = []
    for path in files:
        with open(path, "rb") as f:
            tables.extend(debezium_json.read(f, schema, policy))
    return pa.concat_tables(tables)


def run_folded(tmp: Path, tables: dict[str, pa.Table], query: str, parallelism: int,
               declared: dict[str, str] | None = None, batch_rows: int = 4,
               row_group_rows: int | None = 5) -> list[tuple]:
    """Run ``query`` over ``tables`` (Parquet files of ``row_group_rows``-row groups, read
    by several source subtasks; None: one group, read in order; ``declared`` gives a
    table's column list with its WATERMARK / PRIMARY KEY / computed columns) into a changelog
    flushed after every batch of ``batch_rows``, and fold it into sorted rows."""
    script = "SET updating_flush = '0';\n"
    for name, table in tables.items():
        path = tmp / f"{name}.parquet"
        pq.write_table(table, path, row_group_size=row_group_rows)
        columns = f" ({declared[name]})" if declared and name in declared else ""
        script += (f"CREATE TABLE {name}{columns} WITH (connector = 'filesystem', "
                   f"path = '{path}');\n")
    out = tmp / f"out{parallelism}"
    script += (f"CREATE TABLE out WITH (connector = 'filesystem', path = '{out}', "
               f"format = 'debezium_json');\nINSERT INTO out {query};\n")
    schema = compile_sql(script).job.outputs[-1].plan.table.schema
    run_sql(script, parallelism=parallelism, batch_rows=batch_rows)
    return normalized_rows(fold(read_changes(out, schema)))
