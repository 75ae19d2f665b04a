"""Control messages that ride the data channels between subtasks, in order with the batches.

A channel carries ``pyarrow.RecordBatch`` items and these markers. Event time is an int of
microseconds since the Unix epoch (UTC).
"""

from __future__ import annotations

from dataclasses import dataclass

#: the watermark a bounded source emits when it ends: every window closes
WATERMARK_MAX = 2**63 - 1
WATERMARK_MIN = -(2**63)


@dataclass(frozen=True, slots=True)
class Watermark:
    """No row with event time below ``time`` (µs) will follow on this channel."""

    time: int


@dataclass(frozen=True, slots=True)
class Barrier:
    """Checkpoint ``epoch``: everything before belongs to it, everything after to the next."""

    epoch: int
    #: a savepoint stops the job after the checkpoint completes
    stop: bool = False


@dataclass(frozen=True, slots=True)
class Idle:
    """The sending subtask has had no input for ``idle_timeout``: exclude it from the
    watermark minimum until it sends data again."""


@dataclass(frozen=True, slots=True)
class EndOfData:
    """The sending subtask will send nothing more."""
