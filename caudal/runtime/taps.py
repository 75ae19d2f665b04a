"""Live preview of a vertex's output: a bounded side channel from a job's subtasks to a reader
(the job server's preview), which never blocks or slows the job.

Every subtask's chain passes its output through a ``TapPoint`` (in a sink vertex: the rows it
hands its sink). With no reader it costs a dict lookup per batch. A reader subscribes a ``Tap``
to a vertex; the subtasks offer it their batches and it keeps at most ``capacity_rows`` rows
until the reader takes them. What does not fit is dropped and counted: a slow reader (or a job
faster than anyone can read) loses preview rows, never the job's speed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

from caudal.operators.base import Operator
from caudal.operators.sink import SinkOperator

#: rows a tap holds for its reader; past that, offered rows are dropped (and counted)
CAPACITY_ROWS = 500


class Tap:
    """One reader's bounded buffer of one vertex's rows."""

    def __init__(self, capacity_rows: int = CAPACITY_ROWS):
        self.capacity = capacity_rows
        self._lock = threading.Lock()
        self._batches: list[pa.RecordBatch] = []
        self._rows = 0
        self._dropped = 0

    def offer(self, batch: pa.RecordBatch) -> None:
        """Keep what fits of ``batch`` (a copy: a few rows never pin a whole batch's
        buffers), drop and count the rest. Never waits for the reader."""
        n = batch.num_rows
        with self._lock:
            room = self.capacity - self._rows
            if room < n:
                self._dropped += n - max(room, 0)
                if room <= 0:
                    return
            kept = min(n, room)
            self._rows += kept
            self._batches.append(batch.take(pa.array(np.arange(kept, dtype=np.int64))))

    def add_dropped(self, rows: int) -> None:
        with self._lock:
            self._dropped += rows

    def take(self) -> tuple[list[pa.RecordBatch], int]:
        """The rows kept since the last take, and how many were dropped."""
        with self._lock:
            batches, dropped = self._batches, self._dropped
            self._batches, self._rows, self._dropped = [], 0, 0
        return batches, dropped


class Taps:
    """The readers of one job's vertices. The tuple per vertex is replaced, never changed, so
    subtasks read it without a lock. A runtime whose subtasks live elsewhere (Ray) sets
    ``listener`` to be told when a vertex gains its first reader or loses its last."""

    def __init__(self) -> None:
        self.active: dict[int, tuple[Tap, ...]] = {}
        self.listener: Callable[[int, bool], None] | None = None
        self._lock = threading.Lock()

    def subscribe(self, vertex: int, capacity_rows: int = CAPACITY_ROWS) -> Tap:
        tap = Tap(capacity_rows)
        with self._lock:
            before = self.active.get(vertex, ())
            self.active[vertex] = (*before, tap)
        if not before and self.listener is not None:
            self.listener(vertex, True)
        return tap

    def unsubscribe(self, vertex: int, tap: Tap) -> None:
        with self._lock:
            left = tuple(t for t in self.active.get(vertex, ()) if t is not tap)
            if left:
                self.active[vertex] = left
            else:
                self.active.pop(vertex, None)
        if not left and self.listener is not None:
            self.listener(vertex, False)

    def offer(self, vertex: int, batch: pa.RecordBatch) -> None:
        for tap in self.active.get(vertex, ()):
            tap.offer(batch)


class TapPoint(Operator):
    """The pass-through at a vertex's output (before its sink, in a sink vertex) where the
    vertex's readers are offered each batch. It is part of the chain only: it holds no state
    and is never snapshotted."""

    def __init__(self, taps: Taps, vertex: int):
        self.taps = taps
        self.vertex = vertex

    def process(self, batch: pa.RecordBatch, input: int = 0) -> Sequence[pa.RecordBatch]:
        readers = self.taps.active.get(self.vertex)
        if readers:
            for tap in readers:
                tap.offer(batch)
        return (batch,)


def tapped_chain(operators: Sequence[Operator], taps: Taps, vertex: int) -> list[Operator]:
    """``operators`` with a TapPoint before the first sink, or at the end."""
    ops = list(operators)
    at = next((i for i, op in enumerate(ops) if isinstance(op, SinkOperator)), len(ops))
    return ops[:at] + [TapPoint(taps, vertex)] + ops[at:]
