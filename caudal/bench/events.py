"""Nexmark events generated ahead of time, as Arrow tables kept in this process.

Both batch-style comparisons start from these tables: DuckDB loads them before its clock
starts, and caudal's ``replay`` source (caudal.bench.replay) streams them, so the two engines
are timed on the same input already in memory. They come from the nexmark connector itself
with the run's settings, so they are exactly the events the generator hands a streaming run.
Only the columns a query reads are generated (all columns of a kind cost ~200 bytes a bid).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterable

import pyarrow as pa

from caudal.connectors.nexmark import NexmarkSource
from caudal.connectors.nexmark_model import table_schema
from caudal.plan.tables import TableSpec

#: rows per generated batch (large: generation is not what is timed here)
_GENERATE_ROWS = 1 << 20

_CACHE: dict[tuple, pa.Table] = {}
_LOCK = threading.Lock()


def _key(kind: str, events: int, event_rate: float, seed: int) -> tuple:
    return (kind, int(events), float(event_rate), int(seed))


def generate(kind: str, events: int, event_rate: float, seed: int,
             columns: Iterable[str] | None = None) -> pa.Table:
    """Every event of one kind of the sequence (only ``columns``, default all), as the
    nexmark source hands them out; kept for the next caller asking for a subset."""
    schema = table_schema(kind)
    wanted = [n for n in schema.names if columns is None or n in set(columns)]
    key = _key(kind, events, event_rate, seed)
    with _LOCK:
        cached = _CACHE.get(key)
        if cached is not None and all(n in cached.column_names for n in wanted):
            return cached.select(wanted)
        if cached is not None:  # widen: regenerate with the union of the columns
            wanted = [n for n in schema.names if n in set(wanted) | set(cached.column_names)]
        options = {"table": kind, "events": str(events), "event_rate": f"{event_rate:g}",
                   "seed": str(seed), "pace": "false"}
        spec = TableSpec(name=kind, connector="nexmark", options=options, schema=schema,
                         event_time="date_time", projection=wanted)
        source = NexmarkSource(spec)
        source.open(source.partitions(1))
        batches = []
        while not source.finished():
            batch = source.poll(_GENERATE_ROWS, 0.0)
            if batch is not None:
                batches.append(batch)
        table = pa.Table.from_batches(batches, schema=source.schema)
        _CACHE[key] = table
        return table


def lookup(kind: str, events: int, event_rate: float, seed: int) -> pa.Table | None:
    with _LOCK:
        return _CACHE.get(_key(kind, events, event_rate, seed))


def clear() -> None:
    """Forget every generated table (and give the memory back)."""
    with _LOCK:
        _CACHE.clear()
    gc.collect()
    pa.default_memory_pool().release_unused()
