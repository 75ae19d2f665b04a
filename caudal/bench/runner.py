"""Run one benchmark query through caudal and measure it.

Throughput: the nexmark source generates ``events`` events as fast as it can, the query runs
to the end, and the figure is events of the sequence / wall-clock seconds from deploying the
job to its end (planning excluded). Per core, it is events / CPU-seconds the process spent
(all threads), which does not flatter a run whose threads wait on each other. A short warm-up
run of the same query comes first, so module imports and the generator's text pools (built
once per process) are not counted: a streaming job runs long after they are built.

With ``settings.source == "memory"`` the events are generated before the clock starts and
streamed by the replay source: the time is then the engine's alone, comparable with DuckDB's.

Latency (``settings.pace``): the source hands events out at ``event_rate`` per second of
wall-clock time, and the bench sink records each result's arrival time minus the time it was
due (caudal.bench.sink).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import pyarrow as pa

from caudal.bench import events
from caudal.bench.jobs import RunSettings, compile_query, source_columns
from caudal.bench.memory import peak_rss_bytes, reset_peak, settle
from caudal.bench.queries import Query
from caudal.bench.sink import latency_percentiles, take_instances
from caudal.runtime.local import LocalRuntime

#: events of the warm-up run
WARMUP_EVENTS = 20_000


@dataclass
class StreamResult:
    """What one caudal run of a query measured."""

    seconds: float
    cpu_seconds: float
    rows_in: int
    rows_out: int
    #: rows of the result: rows_out, or inserts minus retractions of an updating query
    net_rows: int
    peak_rss: int
    late_rows: int = 0
    #: p50/p99/p999/max in ms and the number of samples (latency runs only)
    latency: dict[str, float] = field(default_factory=dict)
    #: latency runs: seconds from the first event's due time to the end of the run
    paced_seconds: float | None = None
    batches_out: int = 0
    table: pa.Table | None = None


def run_caudal(query: Query, settings: RunSettings, batch_rows: int = 65536,
               linger_s: float = 0.005, warmup: bool = True, repeat: int = 1) -> StreamResult:
    """Run ``query`` with ``settings`` on the embedded runtime and measure it: the fastest
    of ``repeat`` runs (on a shared machine the others lost time to other work), with the
    highest peak RSS of them."""
    if warmup:
        small = dataclasses.replace(settings, events=min(WARMUP_EVENTS, settings.events),
                                    pace=False, collect=False)
        _run(query, small, batch_rows, linger_s)
    runs = [_run(query, settings, batch_rows, linger_s) for _ in range(max(1, repeat))]
    best = min(runs, key=lambda r: r.seconds)
    best.peak_rss = max(r.peak_rss for r in runs)
    return best


def _run(query: Query, settings: RunSettings, batch_rows: int,
         linger_s: float) -> StreamResult:
    compiled = compile_query(query, settings)
    if settings.source == "memory":  # the input is made before the clock starts
        for kind, columns in source_columns(compiled).items():
            events.generate(kind, settings.events, settings.event_rate, settings.seed, columns)
    take_instances()
    settle()
    reset_peak()
    cpu0 = time.process_time()
    started = time.perf_counter()
    runtime = LocalRuntime(batch_rows=batch_rows, linger_s=linger_s)
    runtime.deploy(compiled.graph)
    result = runtime.run()
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    paced_seconds = None
    if settings.pace:  # from the first event's due time (a little after planning) to the end
        first_due = _first_due_s(compiled)
        if first_due is not None:
            paced_seconds = max(time.time() - first_due, 1e-9)
    peak = peak_rss_bytes()
    sinks = take_instances()
    table = None
    if settings.collect:
        batches = [b for s in sinks for b in s.kept]
        if batches:  # a changelog's batches carry _op beyond the sink's schema
            table = pa.Table.from_batches(batches)
        elif sinks:
            table = sinks[0].schema.empty_table()
    return StreamResult(
        seconds=seconds, cpu_seconds=cpu, rows_in=result.rows_in,
        rows_out=sum(s.rows for s in sinks), net_rows=sum(s.net_rows for s in sinks),
        peak_rss=peak, late_rows=result.late_rows,
        latency=latency_percentiles(sinks) if settings.pace else {},
        paced_seconds=paced_seconds, batches_out=sum(s.batches for s in sinks), table=table)


def _first_due_s(compiled) -> float | None:
    """The wall-clock instant (s) the first event of a paced nexmark source is due."""
    from caudal.connectors.nexmark import time_option

    for v in compiled.graph.vertices:
        if v.source is not None and v.source.connector == "nexmark":
            return time_option(v.source, "base_time", "now") / 1e6
    return None
