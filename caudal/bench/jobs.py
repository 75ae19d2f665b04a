"""From a benchmark query and run settings to a compiled caudal job.

The query file stays as users read it; the run's settings (events, event rate, pacing, seed)
are applied to its nexmark tables, and its blackhole ``results`` table becomes the ``bench``
sink, by a catalog that edits each table's options as the planner defines it. Nothing is
rewritten in the SQL text.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

from caudal.bench.queries import Query
from caudal.errors import CaudalError
from caudal.job import CompiledJob, physical_graph
from caudal.plan.optimizer import optimize
from caudal.plan.tables import TableSpec
from caudal.sql.catalog import Catalog
from caudal.sql.planner import Planner

#: seconds from planning a paced run to its first event being due (covers deployment)
PACE_LEAD_S = 0.3


@dataclass
class RunSettings:
    """What one benchmark run varies; the same settings give the same events to DuckDB."""

    events: int = 10_000_000
    #: events per second of event time (with ``pace``, also of wall-clock time)
    event_rate: float = 100_000
    seed: int = 0
    parallelism: int = 1
    #: hand events out no earlier than their event time on the wall clock (latency runs)
    pace: bool = False
    #: keep the result rows in the bench sink (result checks on small runs)
    collect: bool = False
    #: "generator": the nexmark source generates events as the job runs; "memory": the
    #: replay source streams events generated before the clock started (as DuckDB gets them)
    source: str = "generator"

    def nexmark_options(self) -> dict[str, str]:
        options = {"events": str(self.events), "event_rate": f"{self.event_rate:g}",
                   "seed": str(self.seed), "pace": "false"}
        if self.pace:
            # event time = the wall-clock instant an event is due; the first is due a little
            # after planning, so deploying the job is not counted as latency of early events
            start = datetime.fromtimestamp(time.time() + PACE_LEAD_S, tz=UTC)
            options.update(pace="true",
                           base_time="now@" + start.isoformat(timespec="microseconds"))
        return options


class BenchCatalog(Catalog):
    """A catalog that applies the run's settings to tables as they are defined."""

    def __init__(self, query: Query, settings: RunSettings):
        super().__init__()
        self._query = query
        self._settings = settings

    def add_table(self, node, line: int) -> TableSpec:
        spec = super().add_table(node, line)
        if spec.connector == "nexmark":
            spec.options.update(self._settings.nexmark_options())
            if self._settings.source == "memory":
                spec.connector = "replay"
        elif spec.connector == "blackhole":
            spec.connector = "bench"
            if self._settings.pace and self._query.latency_column:
                spec.options["latency_column"] = self._query.latency_column
            if self._settings.collect:
                spec.options["collect"] = "true"
        return spec


class NotSupported(Exception):
    """caudal cannot plan the query yet; ``str()`` says what it needs and why."""


def compile_query(query: Query, settings: RunSettings) -> CompiledJob:
    """Plan the query for these settings, or raise NotSupported naming what is missing."""
    import caudal.bench  # noqa: F401  (registers the bench connector)

    try:
        job = Planner(BenchCatalog(query, settings)).plan_script(query.caudal_sql)
        sinks = [optimize(o.plan) for o in job.outputs]
        graph = physical_graph(sinks, settings.parallelism, job.catalog.settings)
    except (CaudalError, NotImplementedError, ImportError) as e:
        # ImportError: a planner module of a feature still being written
        needs = f" (needs {query.needs})" if query.needs else ""
        reason = str(e) if isinstance(e, CaudalError) else f"{type(e).__name__}: {e}"
        raise NotSupported(f"not yet supported by caudal{needs}: {reason}") from e
    return CompiledJob(job, graph)


def source_columns(compiled: CompiledJob) -> dict[str, set[str]]:
    """Per Nexmark kind, the columns the job's sources read (after projection pushdown)."""
    out: dict[str, set[str]] = defaultdict(set)
    for v in compiled.graph.vertices:
        spec = v.source
        if spec is None or spec.connector not in ("nexmark", "replay"):
            continue
        kind = spec.options.get("table")
        if kind:
            out[kind].update(spec.projection or spec.schema.names)
    return dict(out)


def plan_summary(compiled: CompiledJob) -> str:
    """How caudal runs the job, in a few words: its stateful vertices in graph order
    ("window hop(2s, 10s), updating aggregate, updating join"), or "stateless chain"."""
    names: list[str] = []
    for v in compiled.graph.vertices:
        if v.source is None and not v.name.startswith("sink ") and v.name not in names:
            names.append(v.name)
    return ", ".join(names) if names else "stateless chain"


def is_updating(compiled: CompiledJob) -> bool:
    """True when the job's result is a changelog (rows may be retracted)."""
    return any(getattr(o.plan.input, "updating", False) for o in compiled.job.outputs)
