"""The Runtime interface: what the CLI and the checkpoint coordinator need of an executor.

The local runtime runs subtasks as threads of one process; a cluster runtime (Ray) runs the
same physical graph with subtasks in actors. Both share the subtask loop (runtime.subtask).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from caudal.plan.physical import PhysicalGraph


@dataclass
class SubtaskStats:
    """Counters one subtask updates as it runs (read racily by the status line)."""

    vertex: int
    index: int
    rows_in: int = 0
    rows_out: int = 0
    batches_in: int = 0
    #: Arrow buffer bytes of the batches read and emitted (metrics)
    bytes_in: int = 0
    bytes_out: int = 0
    #: seconds spent waiting for room in a full downstream channel (backpressure)
    backpressure_s: float = 0.0
    watermark: int | None = None
    bad_rows_dropped: int = 0
    late_rows: int = 0
    finished: bool = False


@dataclass
class JobResult:
    elapsed_s: float
    rows_in: int
    rows_out: int
    bad_rows_dropped: int = 0
    late_rows: int = 0
    bad_row_examples: list[str] = field(default_factory=list)
    metrics: dict[str, int] = field(default_factory=dict)


class Runtime(ABC):
    @abstractmethod
    def deploy(self, graph: PhysicalGraph, restore_from: str | None = None) -> None:
        """Create the subtasks of ``graph`` (restoring state from a checkpoint if given)."""

    @abstractmethod
    def run(self) -> JobResult:
        """Run until every source is exhausted (bounded) or ``stop`` is called."""

    @abstractmethod
    def stop(self, savepoint: bool = False) -> None:
        """Ask the job to stop, after a final checkpoint when ``savepoint``."""

    @abstractmethod
    def stats(self) -> list[SubtaskStats]:
        """A snapshot of every subtask's counters, for status lines and metrics."""
