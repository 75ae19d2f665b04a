"""What the checkpoint coordinator and the subtasks tell each other: plain, picklable
dataclasses, so the coordinator can run in the driver while subtasks run in threads of the
same process (local runtime) or in actors on other machines (Ray runtime).

Subtask -> coordinator: ``Acknowledge`` (a snapshot at a barrier), ``Finished`` (the final
state of a subtask whose input ended). Coordinator -> subtask: ``Barrier`` (to a source
subtask: inject it now), ``CheckpointStatus`` (the newest complete and failed epochs, so
sinks commit and finished subtasks stop waiting), ``FinishedReply`` (the epoch whose
completion commits a finished subtask's last rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Barrier:
    """Checkpoint ``epoch``: everything before belongs to it, everything after to the next.
    Also travels in the data channels, in order with the batches."""

    epoch: int
    #: a savepoint stops the job after the checkpoint completes
    stop: bool = False


@dataclass(slots=True)
class Acknowledge:
    """Subtask ``(vertex, subtask)`` snapshotted ``epoch``: ``state`` is its payload
    (operators' states, a source's offsets and watermark)."""

    vertex: int
    subtask: int
    epoch: int
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Finished:
    """Subtask ``(vertex, subtask)``'s input ended; ``state`` is final, its sinks
    pre-committed as epoch ``label``."""

    vertex: int
    subtask: int
    label: int
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FinishedReply:
    """The epoch whose completion makes the finished subtask's last rows committable."""

    vertex: int
    subtask: int
    needed: int


@dataclass(frozen=True, slots=True)
class CheckpointStatus:
    """The coordinator's progress, as every subtask needs it."""

    completed: int
    failed: int
    final_done: bool = False
    final_error: str | None = None
    closed: bool = False
