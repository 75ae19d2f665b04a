"""Bounded channels into a subtask, grouped in an input gate.

Each upstream subtask writes to its own channel of the gate; a full channel blocks its writer
(backpressure up to the sources). The reader takes from any channel that is not *blocked*:
during checkpoint alignment, a channel that delivered the barrier is blocked until the
barrier arrived on all channels.

A reader may also take, without waiting, the batches queued at the head of other channels
(``more_batches``): at parallelism P each upstream subtask sends a downstream subtask about
1/P of every batch it routes, and an operator called once per piece pays its per-call cost
(a hash join's build, an aggregation's set-up, Python glue) P times as often as at
parallelism 1. Taking only channel heads keeps each channel's order, so this is one of the
interleavings the gate could have produced anyway.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import pyarrow as pa


class Cancelled(Exception):
    """The job is stopping; raised in threads waiting on a channel."""


class InputGate:
    def __init__(self, channels: int, capacity: int, cancel: threading.Event):
        self._lock = threading.Lock()
        self._readable = threading.Condition(self._lock)
        self._writable = threading.Condition(self._lock)
        self._queues: list[deque] = [deque() for _ in range(channels)]
        self._blocked = [False] * channels
        self._capacity = capacity
        self._cancel = cancel
        self._next = 0

    @property
    def channels(self) -> int:
        return len(self._queues)

    def put(self, channel: int, item: Any) -> float:
        """Append ``item``; the seconds the writer waited for room (backpressure)."""
        waited = 0.0
        with self._lock:
            queue = self._queues[channel]
            if len(queue) >= self._capacity:
                started = time.monotonic()
                while len(queue) >= self._capacity:
                    if self._cancel.is_set():
                        raise Cancelled
                    self._writable.wait(0.1)
                waited = time.monotonic() - started
            queue.append(item)
            self._readable.notify()
        return waited

    def flush(self) -> None:
        """Nothing to send: ``put`` delivers at once (a remote channel may hold a batch until
        its sender's step ends, runtime.ray.channels)."""

    def get(self, timeout: float) -> tuple[int, Any] | None:
        """The next item of any unblocked channel, fairly, or None after ``timeout``."""
        with self._lock:
            waited = False
            while True:
                n = len(self._queues)
                for i in range(n):
                    ch = (self._next + i) % n
                    if not self._blocked[ch] and self._queues[ch]:
                        self._next = (ch + 1) % n
                        item = self._queues[ch].popleft()
                        self._writable.notify_all()
                        return ch, item
                if self._cancel.is_set():
                    raise Cancelled
                if waited:
                    return None
                self._readable.wait(timeout)
                waited = True

    def more_batches(self, channels: Sequence[int], rows: int) -> list[tuple[int, pa.RecordBatch]]:
        """Batches at the head of ``channels`` (unblocked ones, each channel's queue in order,
        stopping at its first control message), while their rows add up to at most ``rows``;
        never waits."""
        taken: list[tuple[int, pa.RecordBatch]] = []
        with self._lock:
            for ch in channels:
                if self._blocked[ch]:
                    continue
                queue = self._queues[ch]
                while queue and isinstance(queue[0], pa.RecordBatch) and \
                        queue[0].num_rows <= rows:
                    batch = queue.popleft()
                    rows -= batch.num_rows
                    taken.append((ch, batch))
            if taken:
                self._writable.notify_all()
        return taken

    def block(self, channel: int) -> None:
        with self._lock:
            self._blocked[channel] = True

    def unblock_all(self) -> None:
        with self._lock:
            self._blocked = [False] * len(self._queues)
            self._readable.notify_all()

    def queued(self) -> int:
        return sum(len(q) for q in self._queues)
