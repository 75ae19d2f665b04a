"""Control messages that ride the data channels between subtasks, in order with the batches.

A channel carries ``pyarrow.RecordBatch`` items and these markers (``Barrier`` is the
checkpoint's own message, caudal.checkpoint.messages). Event time is an int of
microseconds since the Unix epoch (UTC).
"""

from __future__ import annotations

from dataclasses import dataclass

from caudal.checkpoint.barrier import Barrier
from caudal.watermark import WATERMARK_MAX, WATERMARK_MIN

__all__ = ["WATERMARK_MAX", "WATERMARK_MIN", "Barrier", "EndOfData", "Idle", "Watermark"]


@dataclass(frozen=True, slots=True)
class Watermark:
    """No row with event time below ``time`` (µs) will follow on this channel."""

    time: int


@dataclass(frozen=True, slots=True)
class Idle:
    """The sending subtask has had no input for ``idle_timeout``: exclude it from the
    watermark minimum until it sends data again."""


@dataclass(frozen=True, slots=True)
class EndOfData:
    """The sending subtask will send nothing more."""
