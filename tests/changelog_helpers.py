"""Helpers for tests of updating queries: run a query into a ``debezium_json`` filesystem sink,
read back every change the sink committed, and fold the changelog into the rows it stands for
(to compare with DuckDB's batch answer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from caudal.connectors.base import SourceMetrics
from caudal.formats import debezium_json
from caudal.formats.bad_data import BadDataPolicy
from caudal.job import compile_sql, run_sql
from caudal.plan.changelog import OP


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


def fold(changes: pa.Table | None) -> pa.Table | None:
    """The rows a changelog leaves: each distinct row repeated by its net weight. Fails if a
    row's net weight is negative (a retraction of something never inserted)."""
    if changes is None:
        return None
    data = changes.drop_columns([OP])
    w = np.sign(changes.column(OP).to_numpy()).astype(np.int64)
    keyed = data.append_column("__w", pa.array(w))
    names = data.column_names
    grouped = keyed.group_by(names, use_threads=False).aggregate([("__w", "sum")])
    net = grouped.column("__w_sum").to_numpy()
    assert (net >= 0).all(), f"negative net weight for {grouped.filter(pa.array(net < 0))}"
    rows = grouped.select(names)
    return rows.take(pa.array(np.repeat(np.arange(len(net)), net)))
