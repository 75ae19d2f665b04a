"""From SQL text to a running job: plan, optimize, lower to a physical graph, execute.

This is also the Python entry point: ``caudal.job.run_sql(text)`` runs a script to the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from caudal.errors import PlanError
from caudal.plan.logical import SinkWrite
from caudal.plan.optimizer import optimize
from caudal.plan.physical import PhysicalGraph
from caudal.plan.physical_planner import build_graph
from caudal.plan_file import CompiledPlan, job_notices
from caudal.runtime.base import JobResult
from caudal.sql.planner import Job, Planner


@dataclass
class CompiledJob:
    job: Job
    graph: PhysicalGraph

    def explain(self) -> str:
        parts = []
        for out in self.job.outputs:
            parts.append(f"-- {out.statement.text.splitlines()[0][:70]}")
            parts.append(out.plan.explain(1))
        return "Logical plan:\n" + "\n".join(parts) + "\n\nPhysical dataflow:\n" + \
            self.graph.explain()

    @property
    def sql(self) -> str:
        """The text of the statements that write (a checkpoint directory records it)."""
        return "\n".join(o.statement.text for o in self.job.outputs)

    def notices(self) -> list[str]:
        return job_notices(self.graph)

    def plan(self, parallelism: int, compiled_from: str = "") -> CompiledPlan:
        """This job as a plan file holds it (caudal.plan_file): the graph, and the schemas
        the planner inferred from the tables' data, to be checked again before a run."""
        inferred = {}
        for v in self.graph.vertices:
            declared = self.job.catalog.tables.get(v.source.name.lower()) if v.source else None
            if declared is not None and declared.schema is None:
                inferred[v.source.name] = v.source.schema
        from caudal.connectors.python import shipment  # what Ray ships to its workers

        return CompiledPlan(self.graph, self.sql, parallelism, inferred, compiled_from,
                            shipment(self.graph.vertices))


def _require_query(job: Job, text: str) -> None:
    """An empty script, or one without INSERT INTO / SELECT, has nothing to run: say so
    rather than run nothing and exit 0."""
    if job.outputs or job.explains:
        return
    hint = "add INSERT INTO <table> SELECT … or a SELECT (printed to stdout)"
    if not any(line.strip() and not line.strip().startswith("--")
               for line in text.splitlines()):
        raise PlanError("the script is empty: no statement to run", line=1, col=1, hint=hint)
    raise PlanError("the script has no query (INSERT INTO or SELECT): nothing to run",
                    line=text.rstrip().count("\n") + 1, col=1, hint=hint)


class _WindowPartials:
    """``caudal.operators.local_window_partials``, imported when lowering first asks it
    something (an aggregate it may split): a job without one does not load the aggregate
    kernels (~5 ms of a start-up)."""

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        from caudal.operators import local_window_partials

        return getattr(local_window_partials, name)


def physical_graph(sinks: list[SinkWrite], parallelism: int, settings: dict) -> PhysicalGraph:
    """Lower optimized plans to one dataflow graph, with the aggregate kernels at hand so
    that window aggregates at parallelism > 1 pre-aggregate before their shuffle."""
    return build_graph(sinks, parallelism, settings, split=_WindowPartials())  # type: ignore[arg-type]


def compile_sql(text: str, parallelism: int = 1) -> CompiledJob:
    """Plan every statement of a script into one physical dataflow graph."""
    job = Planner().plan_script(text)
    _require_query(job, text)
    sinks = [optimize(o.plan) for o in job.outputs]
    graph = physical_graph(sinks, parallelism, job.catalog.settings)
    return CompiledJob(job, graph)


def explain_sql(text: str, parallelism: int = 1) -> str:
    """EXPLAIN output for a script: each statement's logical plan and the dataflow graph.
    Statements prefixed with EXPLAIN inside the script are explained the same way."""
    job = Planner().plan_script(text)
    _require_query(job, text)
    outputs = job.explains or job.outputs
    blocks = []
    for out in outputs:
        logical = optimize(out.plan)
        graph = physical_graph([logical], parallelism, job.catalog.settings)
        blocks.append(f"-- {out.statement.text.splitlines()[0][:70]}\nLogical plan:\n"
                      f"{logical.explain(1)}\nPhysical dataflow:\n{graph.explain()}")
    return "\n\n".join(blocks)


def run_sql(text: str, parallelism: int = 1, runtime: str = "local",
            **runtime_options) -> JobResult:
    """Run a script until its bounded sources are exhausted, on the embedded runtime (threads
    of this process) or with ``runtime="ray"`` on Ray (``address=…``; default: the Ray this
    process is connected to, or a local one)."""
    compiled = compile_sql(text, parallelism)
    if runtime == "ray":
        from caudal.runtime.ray.executor import RayRuntime

        executor: Any = RayRuntime(**runtime_options)
    else:
        from caudal.runtime.local import LocalRuntime

        executor = LocalRuntime(**runtime_options)
    executor.deploy(compiled.graph)
    return executor.run()
