"""DuckDB's batch answer to a benchmark query, over the events caudal's generator made.

The events come from the same nexmark connector with the same settings (events, event rate,
seed), read to the end as Arrow tables (caudal.bench.events), and are loaded into DuckDB
tables ``bid``, ``auction`` and ``person`` before the clock starts: only DuckDB's query is
timed, the way a user of a batch engine would query data already loaded. The answer is
materialized as an Arrow table (the result in Python's hands, as caudal's sink receives Arrow
batches); its row count is kept to check that both engines computed the same thing. DuckDB
gets as many threads as caudal has subtasks per operator.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pyarrow as pa

from caudal.bench.events import generate
from caudal.bench.jobs import RunSettings
from caudal.bench.memory import peak_rss_bytes, reset_peak, settle
from caudal.bench.queries import Query


@dataclass
class BatchResult:
    """What one DuckDB run of a query's batch version measured."""

    seconds: float
    rows: int
    threads: int
    peak_rss: int
    #: seconds spent generating and loading the input (not part of ``seconds``)
    load_seconds: float
    table: pa.Table | None = None


def run_duckdb(query: Query, settings: RunSettings, columns: dict[str, set[str]] | None = None,
               keep: bool = False, repeat: int = 1) -> BatchResult:
    """Load the query's tables into DuckDB (``columns`` per kind: those caudal's plan reads;
    default all) and time its batch query (best of ``repeat``)."""
    import duckdb

    if query.duckdb_sql is None:
        raise ValueError(f"{query.name} has no batch version: {query.batch_reason}")
    started = time.perf_counter()
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"SET threads = {max(1, settings.parallelism)}")
        for kind in query.tables:
            data = generate(kind, settings.events, settings.event_rate, settings.seed,
                            (columns or {}).get(kind))
            con.register(f"{kind}_arrow", data)
            con.execute(f"CREATE TABLE {kind} AS SELECT * FROM {kind}_arrow")
            con.unregister(f"{kind}_arrow")
            del data
        load = time.perf_counter() - started
        best = float("inf")
        result = None
        settle()
        reset_peak()
        for _ in range(max(1, repeat)):
            t0 = time.perf_counter()
            result = con.sql(query.duckdb_sql).to_arrow_table()
            best = min(best, time.perf_counter() - t0)
        peak = peak_rss_bytes()
        assert result is not None
        return BatchResult(best, result.num_rows, max(1, settings.parallelism), peak, load,
                           result if keep else None)
    finally:
        con.close()
