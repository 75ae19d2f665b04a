"""What the checkpoint coordinator and the subtasks tell each other: plain, picklable
dataclasses, so the coordinator can run in the driver while subtasks run in threads of the
same process (local runtime) or in actors on other machines (Ray runtime).

A remote subtask writes its own state (checkpoint.writer, in its worker) and tells the
coordinator only what it wrote: file paths, sizes, CRCs, offsets (a ``SubtaskState``).

Subtask -> coordinator: ``Acknowledge`` (a snapshot at a barrier, written), ``Finished`` (the
subtask's input ended), ``FinalWritten`` (its final state, written). Coordinator -> subtask:
``Barrier`` (to a source subtask: inject it now), ``CheckpointStatus`` (the newest complete
and failed epochs, so sinks commit and finished subtasks stop waiting), ``FinishedReply``
(the epoch whose completion commits a finished subtask's last rows, and where to write its
final state), ``WriteFinalAgain`` (that write failed: write it into a newer epoch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # a job without checkpoints imports no manifest (6 dataclasses, ~2 ms)
    from caudal.checkpoint.manifest import SubtaskState


@dataclass(slots=True)
class Acknowledge:
    """Subtask ``(vertex, subtask)`` snapshotted ``epoch`` and wrote it: ``state`` is what the
    manifest records of it, or ``error`` says why the write failed (the checkpoint fails)."""

    vertex: int
    subtask: int
    epoch: int
    state: SubtaskState | None = None
    error: str | None = None
    #: seconds the subtask spent in the snapshot and in barrier alignment
    timing: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Finished:
    """Subtask ``(vertex, subtask)``'s input ended; its state is final, its sinks
    pre-committed as epoch ``label``. It writes that state once told where."""

    vertex: int
    subtask: int
    label: int


@dataclass(frozen=True, slots=True)
class FinishedReply:
    """The epoch whose completion makes the finished subtask's last rows committable, and
    the epoch whose directory its final state goes to."""

    vertex: int
    subtask: int
    needed: int
    directory: int


@dataclass(slots=True)
class FinalWritten:
    """The finished subtask's final state as written (or why the write failed)."""

    vertex: int
    subtask: int
    state: SubtaskState | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class WriteFinalAgain:
    """Writing the final state failed: write it again, into the directory of ``epoch``."""

    vertex: int
    subtask: int
    epoch: int


@dataclass(frozen=True, slots=True)
class CheckpointStatus:
    """The coordinator's progress, as every subtask needs it."""

    completed: int
    failed: int
    final_done: bool = False
    final_error: str | None = None
    closed: bool = False
