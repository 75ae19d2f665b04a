"""The checkpoint barrier, apart from the coordinator's other messages (checkpoint.messages):
every job's channels know it, and a job without checkpoints imports no other message class
(six dataclasses, ~3 ms at import)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Barrier:
    """Checkpoint ``epoch``: everything before belongs to it, everything after to the next.
    Also travels in the data channels, in order with the batches."""

    epoch: int
    #: a savepoint stops the job after the checkpoint completes
    stop: bool = False
