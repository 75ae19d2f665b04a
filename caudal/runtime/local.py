"""The embedded runtime: every subtask of the graph is a thread of this process.

Arrow kernels release the GIL, so subtasks of a parallel job use several cores for the heavy
work while the Python glue stays per batch.
"""

from __future__ import annotations

import threading
import time

from caudal.connectors.registry import prepare_sinks
from caudal.errors import CaudalError, RuntimeFailure
from caudal.plan.physical import PhysicalGraph
from caudal.runtime.base import JobResult, Runtime, SubtaskStats
from caudal.runtime.channels import InputGate
from caudal.runtime.subtask import JobContext, SubtaskRunner
from caudal.runtime.wiring import open_source, output_edges, wire

#: batches (or control messages) a channel holds before its writer blocks
CHANNEL_CAPACITY = 8


class LocalRuntime(Runtime):
    def __init__(self, batch_rows: int = 65536, linger_s: float = 0.005,
                 channel_capacity: int = CHANNEL_CAPACITY):
        self.job = JobContext(batch_rows=batch_rows, linger_s=linger_s)
        self.channel_capacity = channel_capacity
        self.runners: list[SubtaskRunner] = []
        self.threads: list[threading.Thread] = []
        self._stats: list[SubtaskStats] = []
        self.graph: PhysicalGraph | None = None

    def fresh(self) -> LocalRuntime:
        """A new runtime with the same settings (a restart deploys the job again)."""
        runtime = LocalRuntime(batch_rows=self.job.batch_rows, linger_s=self.job.linger_s,
                               channel_capacity=self.channel_capacity)
        runtime.job.taps = self.job.taps
        return runtime

    def deploy(self, graph: PhysicalGraph, restore_from: str | None = None) -> None:
        self.graph = graph
        if self.job.checkpoints is None:
            # a run without checkpoints always starts from scratch (with checkpoints, the
            # supervisor prepares the sinks once, knowing whether the job resumes)
            prepare_sinks(graph, resuming=False)
        self.job.settings = dict(graph.settings)
        self.job.limits_open = graph.limited_outputs()
        wiring = wire(graph)
        gates = {key: InputGate(len(inputs), self.channel_capacity, self.job.cancel)
                 for key, inputs in wiring.channel_inputs.items()}
        for v in graph.vertices:
            for i in range(v.parallelism):
                outputs = output_edges(wiring.outputs[(v.id, i)], i, gates.__getitem__)
                stats = SubtaskStats(v.id, i)
                source, assigned = open_source(v, i)
                runner = SubtaskRunner(self.job, v, i, gates.get((v.id, i)),
                                       wiring.channel_inputs.get((v.id, i), []), outputs, stats,
                                       source, assigned)
                self.runners.append(runner)
                self._stats.append(stats)

    def start(self) -> None:
        for r in self.runners:
            t = threading.Thread(target=r.run, name=f"{r.vertex.name}#{r.index}", daemon=True)
            self.threads.append(t)
            t.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the job to end; True if it has."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self.threads:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            t.join(remaining)
            if t.is_alive():
                return False
        return True

    def run(self) -> JobResult:
        started = time.monotonic()
        self.start()
        try:
            while not self.wait(0.2):
                if self.job.errors:
                    self.job.cancel.set()
        except KeyboardInterrupt:
            self.stop()
            self.wait(5)
            raise
        return self.result(time.monotonic() - started)

    def result(self, elapsed: float) -> JobResult:
        if self.job.errors:
            error = self.job.errors[0]
            if isinstance(error, CaudalError):
                raise error
            raise RuntimeFailure(f"{type(error).__name__}: {error}") from error
        stats = self._stats
        sources = [s for s, r in zip(stats, self.runners) if r.source is not None]
        sinks = [r for r in self.runners if r.vertex.sink is not None]
        examples: list[str] = []
        for r in self.runners:
            if r.source is not None:
                examples.extend(r.source.metrics.bad_row_examples)
        rows_out = 0
        for r in sinks:
            for op in r.operators:
                rows_out += getattr(op, "rows", 0)
        metrics: dict[str, int] = {}
        for r in self.runners:  # operators' counters (corrupt_retractions, …), job-wide
            for name, value in r.ctx.metrics.items():
                metrics[name] = metrics.get(name, 0) + value
        return JobResult(
            elapsed_s=elapsed,
            rows_in=sum(s.rows_in for s in sources),
            rows_out=rows_out,
            bad_rows_dropped=sum(s.bad_rows_dropped for s in sources),
            late_rows=sum(s.late_rows for s in stats) + sum(
                r.ctx.metrics.get("late_rows", 0) for r in self.runners),
            bad_row_examples=examples[:5],
            metrics=metrics,
        )

    def stop(self, savepoint: bool = False) -> None:
        self.job.cancel.set()

    def stats(self) -> list[SubtaskStats]:
        return list(self._stats)
